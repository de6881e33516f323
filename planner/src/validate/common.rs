//! Checks shared by the families: names Linux, S3 and DNS accept, a field's label, a safe path in
//! the repository.

use crate::diagnostics::Label;
use crate::graph::{OwnedSegment, segments};
use crate::load::Document;

/// Whether Linux takes `name` as a network interface's name: 1 to 15 letters, digits, `-`,
/// `_` or `.`.
pub fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why `name` is not a bucket name S3 accepts, if it is not.
pub fn bucket_name_problem(name: &str) -> Option<&'static str> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&name.len()) {
        Some("a bucket name is 3 to 63 characters long")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        Some("a bucket name holds only lower-case letters, digits, `-` and `.`")
    } else if !edge(name.chars().next()) || !edge(name.chars().last()) {
        Some("a bucket name starts and ends with a letter or a digit")
    } else if name.contains("..") {
        Some("a bucket name has no two dots in a row")
    } else {
        None
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

pub(super) fn field_label(
    document: &Document,
    path: &[OwnedSegment],
    message: impl Into<String>,
) -> Label {
    let segs = segments(path);
    let span = match path.last() {
        // A map key (`addresses: {web-1: ...}`) is labelled at the key.
        Some(OwnedSegment::MapKey(_)) => document.spec_key_span(&segs),
        Some(_) => document.spec_span(&segs),
        None => document.name_span(),
    };
    document.label(span, message)
}

pub(super) fn is_safe_repo_path(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|p| p == "..")
}
