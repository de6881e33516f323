//! Checks shared by the families: names Linux, S3 and DNS accept, a field's label, a safe path in
//! the repository.

use crate::diagnostics::{Label, Problem, did_you_mean};
use crate::graph::{OwnedSegment, segments};
use crate::load::{Document, Model};
use crate::tree::Segment;

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

/// One document under check: what each family's rules read.
pub(super) struct Check<'a> {
    pub model: &'a Model,
    pub document: &'a Document,
    pub address: String,
}

impl Check<'_> {
    /// Exactly one of `present`'s fields is set: two set is a conflict at the second, none a
    /// missing field at the name.
    pub fn one_of(&self, present: &[(&str, bool)], what: &str, problems: &mut Vec<Problem>) {
        let Check {
            document, address, ..
        } = self;
        let set: Vec<&str> = present
            .iter()
            .filter(|(_, p)| *p)
            .map(|(n, _)| *n)
            .collect();
        let names: Vec<String> = present.iter().map(|(n, _)| format!("`{n}`")).collect();
        if set.len() > 1 {
            problems.push(
                Problem::error(
                    "nimbus::manifest::conflicting_fields",
                    format!("{address} sets both `{}` and `{}`", set[0], set[1]),
                    document.label(document.spec_key_span(&[Segment::Key(set[1])]), "set here"),
                )
                .with_label(
                    document.label(document.spec_key_span(&[Segment::Key(set[0])]), "and here"),
                )
                .with_help(format!("{what} takes exactly one of {}", names.join(", "))),
            );
        } else if set.is_empty() {
            problems.push(
                Problem::error(
                    "nimbus::manifest::missing_field",
                    format!("{address} needs one of {}", names.join(", ")),
                    document.label(document.name_span(), "declared here"),
                )
                .with_help(format!("{what} takes exactly one of {}", names.join(", "))),
            );
        }
    }

    /// The secret `name`, named at `path`, exists in the repository (`secrets/NAME.age`).
    pub fn secret(&self, path: &[Segment<'_>], name: &str, problems: &mut Vec<Problem>) {
        let Check {
            model, document, ..
        } = self;
        if model.paths.contains(&format!("secrets/{name}.age")) {
            return;
        }
        let known: Vec<&str> = model
            .paths
            .iter()
            .filter_map(|p| {
                p.strip_prefix("secrets/")
                    .and_then(|p| p.strip_suffix(".age"))
            })
            .collect();
        let help = match did_you_mean(name, known.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("create it with `nimbus secret encrypt {name}`"),
        };
        problems.push(
            Problem::error(
                "nimbus::secret::missing",
                format!("secret `{name}` does not exist (no secrets/{name}.age)"),
                document.label(document.spec_span(path), "no such secret"),
            )
            .with_help(help),
        );
    }
}
