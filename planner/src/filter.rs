//! Which paths of a repository are manifests: by extension, outside hidden folders, not
//! matched by `.nimbusignore`.

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::tree::Format;

/// Which paths are manifests: `*.yaml`, `*.yml` and `*.kdl`, outside hidden directories and
/// not matched by `.nimbusignore` (gitignore syntax).
pub struct ManifestFilter {
    ignore: Gitignore,
}

impl ManifestFilter {
    /// `nimbusignore` is the text of the root `.nimbusignore`, if there is one. Lines that are
    /// not valid patterns are returned so the caller can warn about them.
    pub fn new(nimbusignore: Option<&str>) -> (Self, Vec<String>) {
        let mut builder = GitignoreBuilder::new("");
        let mut invalid = Vec::new();
        for line in nimbusignore.unwrap_or("").lines() {
            if builder.add_line(None, line).is_err() {
                invalid.push(line.to_owned());
            }
        }
        let ignore = builder.build().unwrap_or_else(|_| Gitignore::empty());
        (ManifestFilter { ignore }, invalid)
    }

    /// A hidden file or directory anywhere on the path.
    pub fn is_hidden(path: &str) -> bool {
        path.split('/')
            .any(|part| part.starts_with('.') && part != "." && part != "..")
    }

    pub fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        Self::is_hidden(path)
            || self
                .ignore
                .matched_path_or_any_parents(path, is_dir)
                .is_ignore()
    }

    pub fn format_of(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Some(Format::Yaml)
        } else if lower.ends_with(".kdl") {
            Some(Format::Kdl)
        } else {
            None
        }
    }

    pub fn is_manifest(&self, path: &str) -> bool {
        Self::format_of(path).is_some() && !self.is_ignored(path, false)
    }
}
