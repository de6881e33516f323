//! A File's rules: one host field, one content field, an absolute path, a source inside the
//! repository that exists, a secret that exists, a mode written as meant.

use crate::diagnostics::{Problem, did_you_mean};
use crate::tree::Segment;
use nimbus_schemas::{FileMode, FileSpec};

use super::common::is_safe_repo_path;

use super::common::Check;

/// A File's own rules.
pub(super) fn check_file(at: &Check<'_>, f: &FileSpec, problems: &mut Vec<Problem>) {
    let Check {
        model, document, ..
    } = at;
    at.one_of(
        &[("host", f.host.is_some()), ("hosts", f.hosts.is_some())],
        "a File",
        problems,
    );
    at.one_of(
        &[
            ("content", f.content.is_some()),
            ("source", f.source.is_some()),
            ("secret", f.secret.is_some()),
        ],
        "a File",
        problems,
    );
    if !f.path.starts_with('/') {
        problems.push(
            Problem::error(
                "nimbus::value::path",
                format!("file path `{}` is not absolute", f.path),
                document.label(document.spec_span(&[Segment::Key("path")]), "relative path"),
            )
            .with_help(format!(
                "write the full path on the host, such as `/{}`",
                f.path.trim_start_matches("./")
            )),
        );
    }
    if let Some(source) = &f.source {
        if !is_safe_repo_path(source) {
            problems.push(
                Problem::error(
                    "nimbus::value::path",
                    format!("source `{source}` is not a path inside the repository"),
                    document.label(
                        document.spec_span(&[Segment::Key("source")]),
                        "outside the repository",
                    ),
                )
                .with_help("write a path relative to the repository root, without `..`"),
            );
        } else if let Some(target) = model.outside_links.get(source.trim_start_matches("./")) {
            problems.push(
                Problem::error(
                    "nimbus::repository::outside_link",
                    format!(
                        "source `{source}` is a symbolic link to {target}, outside the repository"
                    ),
                    document.label(
                        document.spec_span(&[Segment::Key("source")]),
                        "leads outside the repository",
                    ),
                )
                .with_help("copy the file into the repository instead of linking to it"),
            );
        } else if !model.paths.contains(source.trim_start_matches("./")) {
            let near = did_you_mean(source, model.paths.iter().map(String::as_str));
            problems.push(
                Problem::error(
                    "nimbus::reference::missing_source",
                    format!("source file `{source}` does not exist in the repository"),
                    document.label(
                        document.spec_span(&[Segment::Key("source")]),
                        "no such file",
                    ),
                )
                .with_help(match near {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => "paths are relative to the repository root".into(),
                }),
            );
        }
    }
    if let Some(secret) = &f.secret {
        at.secret(&[Segment::Key("secret")], secret.name(), problems);
    }
    if let Some(FileMode {
        bits,
        decimal_looks_octal: true,
    }) = f.mode
    {
        problems.push(
            Problem::warning(
                "nimbus::value::mode",
                format!("mode {bits} is a decimal number (octal {bits:o})"),
                document.label(document.spec_span(&[Segment::Key("mode")]), "decimal"),
            )
            .with_help(format!("if you meant octal, quote it: \"0{bits}\"")),
        );
    }
}
