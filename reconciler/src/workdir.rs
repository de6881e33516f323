//! Reading a config repository's working tree into the loader's (path, bytes) pairs.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use miette::{Context, IntoDiagnostic, Result};
use nimbus_planner::{InputFile, ManifestFilter, RepositoryInput};

/// Walks `root`: manifests (not hidden, not matched by `.nimbusignore`) are read; every other
/// file's path is listed for `source:` and secret references. Symlinked directories are not
/// followed.
pub fn read_working_tree(root: &Path) -> Result<(RepositoryInput, Vec<String>)> {
    let metadata = fs::metadata(root)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the repository at {}", root.display()))?;
    if !metadata.is_dir() {
        miette::bail!(
            "{} is not a directory; give the root of a config repository",
            root.display()
        );
    }
    let ignore_text = match fs::read(root.join(".nimbusignore")) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err("cannot read .nimbusignore");
        }
    };
    let (filter, invalid_patterns) = ManifestFilter::new(ignore_text.as_deref());
    let mut input = RepositoryInput {
        manifests: Vec::new(),
        other_paths: BTreeSet::new(),
    };
    let mut pending = vec![String::new()];
    while let Some(relative) = pending.pop() {
        let directory = if relative.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&relative)
        };
        let mut entries: Vec<_> = fs::read_dir(&directory)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot list {}", directory.display()))?
            .collect::<std::io::Result<_>>()
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot list {}", directory.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if relative.is_empty() {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            if ManifestFilter::is_hidden(&name) {
                continue;
            }
            let file_type = entry.file_type().into_diagnostic()?;
            let is_dir = file_type.is_dir();
            if is_dir {
                if !filter.is_ignored(&path, true) {
                    pending.push(path);
                }
                continue;
            }
            if file_type.is_symlink() && entry.path().is_dir() {
                continue;
            }
            if filter.is_manifest(&path) {
                let bytes = fs::read(entry.path())
                    .into_diagnostic()
                    .wrap_err_with(|| format!("cannot read {}", entry.path().display()))?;
                input.manifests.push(InputFile { path, bytes });
            } else {
                input.other_paths.insert(path);
            }
        }
    }
    Ok((input, invalid_patterns))
}
