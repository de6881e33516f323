//! Reading a config repository's working tree into the loader's (path, bytes) pairs.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use miette::{Context, IntoDiagnostic, Result};
use nimbus_planner::load::OutsideLink;
use nimbus_planner::{InputFile, ManifestFilter, RepositoryInput};
use nimbus_providers::plugin::inside_repository;

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
    let top = fs::canonicalize(root)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot resolve {}", root.display()))?;
    let mut input = RepositoryInput {
        manifests: Vec::new(),
        other_paths: BTreeSet::new(),
        outside_links: Vec::new(),
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
            // A link is read only when it, and every link after it, stays inside the root.
            if file_type.is_symlink()
                && let Err(target) = inside_repository(&top, Path::new(&path))
            {
                if !filter.is_ignored(&path, false) {
                    input.outside_links.push(OutsideLink { path, target });
                }
                continue;
            }
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

/// The file at `relative` in the working tree at `root`, read only when it lies inside the
/// root once every link is followed (docs/security.md): a link out of the repository is an
/// error naming the link and its target, and nothing of the target is read.
pub fn read_inside(root: &Path, relative: &str) -> std::io::Result<Vec<u8>> {
    let path = root.join(relative);
    match inside_repository(root, Path::new(relative)) {
        Ok(full) => fs::read(full),
        Err(target) if path.symlink_metadata().is_ok() => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{relative} leads to {target}, outside the repository; nimbus reads nothing outside it"
            ),
        )),
        Err(_) => fs::read(path),
    }
}
