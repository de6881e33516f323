//! Reading a config repository's working tree into the loader's (path, bytes) pairs.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use miette::{Context, IntoDiagnostic, Result};
use nimbus_planner::load::OutsideLink;
use nimbus_planner::{InputFile, ManifestFilter, RepositoryInput};
use nimbus_providers::plugin::inside_repository;

/// The names the Repository manifest may have, at a repository's root.
pub const ROOT_MANIFESTS: [&str; 3] = ["nimbus.yaml", "nimbus.yml", "nimbus.kdl"];

/// The config repository `dir` is in: `dir` or the nearest folder above it that holds
/// `nimbus.yaml` (or `nimbus.yml`, `nimbus.kdl`), as git and cargo find theirs. A folder with
/// none above it is not a repository: an error that says what to do.
pub fn repository_root(dir: &Path) -> Result<std::path::PathBuf> {
    let metadata = fs::metadata(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the repository at {}", dir.display()))?;
    if !metadata.is_dir() {
        miette::bail!(
            "{} is not a directory; give the root of a config repository",
            dir.display()
        );
    }
    let absolute = fs::canonicalize(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot resolve {}", dir.display()))?;
    let mut relative_up = std::path::PathBuf::new();
    for folder in absolute.ancestors() {
        if ROOT_MANIFESTS
            .iter()
            .any(|name| folder.join(name).is_file())
        {
            // Said as the user said it: `infra`, or `infra/..` for a folder above it.
            return Ok(if relative_up.as_os_str().is_empty() {
                dir.to_owned()
            } else {
                dir.join(&relative_up)
            });
        }
        relative_up.push("..");
    }
    Err(miette::miette!(
        help = format!(
            "run nimbus in a config repository (or give its folder), or make one with `nimbus init {}`",
            dir.display()
        ),
        "{} is not in a nimbus repository: neither it nor any folder above it has a nimbus.yaml (or nimbus.kdl)",
        dir.display()
    ))
}

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
    // Ignored folders are not manifests, but their files can still be a File's `source`
    // (examples/ of `nimbus init`): they are listed as other paths.
    let mut pending = vec![(String::new(), false)];
    while let Some((relative, ignored)) = pending.pop() {
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
                if !ignored && !filter.is_ignored(&path, false) {
                    input.outside_links.push(OutsideLink { path, target });
                }
                continue;
            }
            let is_dir = file_type.is_dir();
            if is_dir {
                let ignored = ignored || filter.is_ignored(&path, true);
                pending.push((path, ignored));
                continue;
            }
            if file_type.is_symlink() && entry.path().is_dir() {
                continue;
            }
            if !ignored && filter.is_manifest(&path) {
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
