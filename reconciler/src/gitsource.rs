//! Reading a config repository at a git revision straight from the object database (gix),
//! with no checkout: the manifests as (path, bytes) pairs, and every other file by path for
//! `source:` files and secrets.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::{InputFile, ManifestFilter, RepositoryInput};

/// The files of one revision that are not manifests, read on demand.
pub struct RevisionFiles {
    repository: PathBuf,
    blobs: HashMap<String, gix::ObjectId>,
}

impl RevisionFiles {
    pub fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        let id = self.blobs.get(path).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no {path} at this revision"),
            )
        })?;
        let repo = gix::open(&self.repository).map_err(std::io::Error::other)?;
        let object = repo.find_object(*id).map_err(std::io::Error::other)?;
        Ok(object.data.clone())
    }
}

/// Manifests loaded on their own, by path and blob id, kept for the life of the process: a
/// new commit loads only the files it changed. Entries a revision no longer has are dropped.
type LoadedFiles =
    HashMap<(String, gix::ObjectId, bool), std::sync::Arc<nimbus_planner::load::LoadedFile>>;
static LOADED: std::sync::LazyLock<std::sync::Mutex<LoadedFiles>> =
    std::sync::LazyLock::new(Default::default);

/// A revision, loaded: the model and its problems (before validation), its other files, the
/// commit, and the tree id (which changes exactly when any file's content does).
pub struct LoadedRevision {
    pub model: nimbus_planner::load::Model,
    pub problems: Vec<nimbus_planner::Problem>,
    pub files: RevisionFiles,
    pub commit: String,
    pub tree: String,
    /// How many manifests had to be parsed (the others came from the cache).
    pub parsed: usize,
}

/// Loads `rev` like [`read_revision`] and `nimbus_planner::load::load`, parsing only the
/// manifests whose (path, blob id) is not loaded already.
pub fn load_revision(dir: &Path, rev: &str) -> Result<LoadedRevision> {
    let listing = list_revision(dir, rev)?;
    let repo = gix::open(&listing.files.repository).into_diagnostic()?;
    let mut cache = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    let mut loaded = Vec::new();
    let mut keep = std::collections::HashSet::new();
    let mut parsed = 0;
    let modules =
        nimbus_planner::modules::module_dirs(listing.manifests.iter().map(String::as_str));
    for path in &listing.manifests {
        let id = listing.files.blobs[path];
        // A file of a module's folder is kept as trees, to be filled in by each use.
        let template = nimbus_planner::modules::module_of(path, &modules).is_some();
        let key = (path.clone(), id, template);
        let file = match cache.get(&key) {
            Some(file) => std::sync::Arc::clone(file),
            None => {
                let bytes = repo.find_object(id).into_diagnostic()?.data.clone();
                parsed += 1;
                let input = InputFile {
                    path: path.clone(),
                    bytes,
                };
                let file = std::sync::Arc::new(if template {
                    nimbus_planner::load::LoadedFile::load_template(input)
                } else {
                    nimbus_planner::load::LoadedFile::load(input)
                });
                cache.insert(key.clone(), std::sync::Arc::clone(&file));
                file
            }
        };
        keep.insert(key);
        loaded.push(file);
    }
    cache.retain(|key, _| keep.contains(key));
    drop(cache);
    let (model, problems) =
        nimbus_planner::load::load_files(loaded, listing.other_paths, &listing.outside_links);
    Ok(LoadedRevision {
        model,
        problems,
        files: listing.files,
        commit: listing.commit,
        tree: listing.tree,
        parsed,
    })
}

/// A revision's files: manifests and other paths (as the working tree reader sorts them),
/// nothing read yet.
struct Listing {
    outside_links: Vec<nimbus_planner::load::OutsideLink>,
    commit: String,
    tree: String,
    manifests: Vec<String>,
    other_paths: BTreeSet<String>,
    invalid_patterns: Vec<String>,
    files: RevisionFiles,
}

/// A revision, read: its commit id, the loader's input and its other files.
pub struct Revision {
    pub commit: String,
    pub input: RepositoryInput,
    pub invalid_patterns: Vec<String>,
    pub files: RevisionFiles,
}

/// Reads `rev` (anything `git rev-parse` takes: a branch, a tag, `HEAD~2`, an id) of the git
/// repository that `dir` is in. `dir` may be a subdirectory of the repository; paths are
/// then relative to it, as in the working tree.
pub fn read_revision(dir: &Path, rev: &str) -> Result<Revision> {
    let listing = list_revision(dir, rev)?;
    let repo = gix::open(&listing.files.repository).into_diagnostic()?;
    let mut input = RepositoryInput {
        manifests: Vec::new(),
        other_paths: listing.other_paths,
        outside_links: listing.outside_links,
    };
    for path in listing.manifests {
        let id = listing.files.blobs[&path];
        input.manifests.push(InputFile {
            bytes: repo.find_object(id).into_diagnostic()?.data.clone(),
            path,
        });
    }
    Ok(Revision {
        commit: listing.commit,
        input,
        invalid_patterns: listing.invalid_patterns,
        files: listing.files,
    })
}

fn list_revision(dir: &Path, rev: &str) -> Result<Listing> {
    let repo = gix::discover(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("{} is not in a git repository", dir.display()))?;
    let workdir = repo
        .workdir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo.git_dir().to_path_buf());
    let prefix = std::fs::canonicalize(dir)
        .ok()
        .zip(std::fs::canonicalize(&workdir).ok())
        .and_then(|(dir, top)| {
            dir.strip_prefix(&top)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}/"))
        .unwrap_or_default();
    let commit = repo
        .rev_parse_single(rev)
        .into_diagnostic()
        .wrap_err_with(|| format!("no revision `{rev}` in {}", workdir.display()))?
        .object()
        .into_diagnostic()?
        .peel_to_commit()
        .into_diagnostic()
        .wrap_err_with(|| format!("`{rev}` is not a commit"))?;
    let tree = commit.tree().into_diagnostic()?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the tree of `{rev}`"))?;
    let mut blobs: HashMap<String, gix::ObjectId> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    for entry in recorder.records {
        let path = entry.filepath.to_string();
        let Some(relative) = path.strip_prefix(&prefix) else {
            continue;
        };
        if entry.mode.is_link() {
            let target = repo.find_object(entry.oid).into_diagnostic()?.data.clone();
            links.insert(
                relative.to_owned(),
                String::from_utf8_lossy(&target).into_owned(),
            );
        } else if entry.mode.is_blob() {
            blobs.insert(relative.to_owned(), entry.oid);
        }
    }
    // A committed link is read as the file it leads to when its chain stays inside the
    // directory read (one that leads to no file is like a missing file); a link that leaves
    // it is a problem, and nothing is read through it.
    let mut outside_links = Vec::new();
    let mut link_paths: Vec<&String> = links.keys().collect();
    link_paths.sort();
    for link in link_paths {
        match resolve_link(link, &links) {
            Ok(target) => {
                if let Some(id) = blobs.get(&target).copied() {
                    blobs.insert(link.clone(), id);
                }
            }
            Err(target) => outside_links.push(nimbus_planner::load::OutsideLink {
                path: link.clone(),
                target,
            }),
        }
    }
    let ignore_text = match blobs.get(".nimbusignore") {
        Some(id) => Some(
            String::from_utf8_lossy(&repo.find_object(*id).into_diagnostic()?.data).into_owned(),
        ),
        None => None,
    };
    let (filter, invalid_patterns) = ManifestFilter::new(ignore_text.as_deref());
    let mut manifests = Vec::new();
    let mut other_paths = BTreeSet::new();
    let mut paths: Vec<&String> = blobs.keys().collect();
    paths.sort();
    for path in paths {
        // As in the working tree: hidden paths are skipped; files in ignored directories are
        // not manifests, but can be a File's `source`.
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| ManifestFilter::is_hidden(p)) {
            continue;
        }
        let ignored_dir = (1..parts.len()).any(|n| filter.is_ignored(&parts[..n].join("/"), true));
        if !ignored_dir && filter.is_manifest(path) {
            manifests.push(path.clone());
        } else {
            other_paths.insert(path.clone());
        }
    }
    // The tree of the directory read (the whole commit's tree when it is the top).
    let tree_id = if prefix.is_empty() {
        tree.id.to_string()
    } else {
        tree.lookup_entry_by_path(prefix.trim_end_matches('/'))
            .ok()
            .flatten()
            .map_or_else(|| tree.id.to_string(), |e| e.oid().to_string())
    };
    let outside_links = outside_links
        .into_iter()
        .filter(|l| {
            let parts: Vec<&str> = l.path.split('/').collect();
            !parts.iter().any(|p| ManifestFilter::is_hidden(p))
                && !filter.is_ignored(&l.path, false)
        })
        .collect();
    Ok(Listing {
        outside_links,
        commit: commit.id.to_string(),
        tree: tree_id,
        manifests,
        other_paths,
        invalid_patterns,
        files: RevisionFiles {
            repository: repo.git_dir().to_path_buf(),
            blobs,
        },
    })
}

/// Where a committed link leads, through any chain of links, as a path inside the directory
/// read; or, when it leaves it (an absolute target, `..` above the top, a loop), where it
/// leads as written. Purely lexical: a revision is read from the object database, never from
/// the file system.
fn resolve_link(link: &str, links: &HashMap<String, String>) -> Result<String, String> {
    let mut path = link.to_owned();
    for _ in 0..40 {
        let Some(target) = links.get(&path) else {
            return Ok(path);
        };
        if target.starts_with('/') {
            return Err(target.clone());
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        parts.pop();
        for segment in target.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(target.clone());
                    }
                }
                other => parts.push(other),
            }
        }
        path = parts.join("/");
    }
    Err(format!(
        "{} (a loop of links)",
        links.get(link).cloned().unwrap_or_default()
    ))
}

/// A bare mirror of a remote config repository in a cache directory: cloned on first use,
/// then fetched incrementally (only the objects the remote has and the mirror lacks).
pub struct Mirror {
    pub url: String,
    pub path: PathBuf,
    /// `core.sshCommand` for ssh:// remotes: the ssh client with the pinned known_hosts file
    /// and key, never trusting a new host key.
    ssh_command: Option<String>,
}

/// The ssh command a mirror of an ssh:// remote fetches with: strict host-key checking
/// against `known_hosts` only (pinned; never trust on first use), batch mode, and `key` if
/// given.
pub fn pinned_ssh_command(known_hosts: &Path, key: Option<&Path>) -> String {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let mut command = format!(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile={}",
        quote(known_hosts)
    );
    if let Some(key) = key {
        command.push_str(&format!(" -o IdentitiesOnly=yes -i {}", quote(key)));
    }
    command
}

impl Mirror {
    /// The mirror of `url` under `cache`, cloned if it is not there yet.
    pub fn open(url: &str, cache: &Path, ssh_command: Option<String>) -> Result<Mirror> {
        let name: String = url
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mirror = Mirror {
            url: url.to_owned(),
            path: cache.join(&name),
            ssh_command,
        };
        if !mirror.path.join("HEAD").exists() {
            std::fs::create_dir_all(cache)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create the cache {}", cache.display()))?;
            let interrupt = std::sync::atomic::AtomicBool::new(false);
            let temporary = cache.join(format!(".{name}.cloning"));
            let _ = std::fs::remove_dir_all(&temporary);
            gix::prepare_clone_bare(url, &temporary)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot clone {url}"))?
                .with_in_memory_config_overrides(mirror.overrides())
                .fetch_only(gix::progress::Discard, &interrupt)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot clone {url}"))?;
            std::fs::rename(&temporary, &mirror.path)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot move the clone of {url} into place"))?;
        }
        Ok(mirror)
    }

    fn overrides(&self) -> Vec<String> {
        self.ssh_command
            .iter()
            .map(|c| format!("core.sshCommand={c}"))
            .collect()
    }

    /// Fetches, and returns the commit `branch` points at on the remote.
    pub fn fetch(&self, branch: &str) -> Result<String> {
        let repo = gix::open_opts(
            &self.path,
            gix::open::Options::default().config_overrides(self.overrides()),
        )
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open the mirror {}", self.path.display()))?;
        let interrupt = std::sync::atomic::AtomicBool::new(false);
        repo.find_remote("origin")
            .into_diagnostic()?
            // Every branch, force-updated, into refs/remotes/origin/ (a bare clone has no
            // fetch refspec of its own).
            .with_refspecs(
                ["+refs/heads/*:refs/remotes/origin/*"],
                gix::remote::Direction::Fetch,
            )
            .into_diagnostic()?
            .connect(gix::remote::Direction::Fetch)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot reach {}", self.url))?
            .prepare_fetch(gix::progress::Discard, Default::default())
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot fetch from {}", self.url))?
            .receive(gix::progress::Discard, &interrupt)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot fetch from {}", self.url))?;
        branch_tip(&self.path, branch)
    }
}

/// The commit a branch points at in a repository: `refs/remotes/origin/BRANCH` in a mirror,
/// else `refs/heads/BRANCH`.
pub fn branch_tip(repository: &Path, branch: &str) -> Result<String> {
    let repo = gix::open(repository)
        .into_diagnostic()
        .wrap_err_with(|| format!("{} is not a git repository", repository.display()))?;
    for name in [
        format!("refs/remotes/origin/{branch}"),
        format!("refs/heads/{branch}"),
    ] {
        if let Ok(Some(mut reference)) = repo.try_find_reference(name.as_str())
            && let Ok(id) = reference.peel_to_id()
        {
            return Ok(id.to_string());
        }
    }
    miette::bail!("no branch `{branch}` in {}", repository.display())
}

/// A commit as people name it: subject, author, time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    pub subject: String,
    pub author: String,
    /// Commit time, Unix seconds.
    pub time: i64,
}

/// A commit's subject, author and time (for the status page); `None` when it cannot be read.
pub fn commit_info(repository: &Path, commit: &str) -> Option<CommitInfo> {
    let repo = gix::open(repository).ok()?;
    let id = gix::ObjectId::from_hex(commit.as_bytes()).ok()?;
    let object = repo.find_object(id).ok()?;
    let text = String::from_utf8_lossy(&object.data);
    let (headers, message) = text.split_once("\n\n").unwrap_or((&text, ""));
    let author = headers.lines().find_map(|l| l.strip_prefix("author "))?;
    // `Name <email> 1700000000 +0100`
    let mut parts = author.rsplitn(3, ' ');
    let _zone = parts.next()?;
    let seconds: i64 = parts.next()?.parse().ok()?;
    let who = parts.next()?;
    let name = who.split(" <").next().unwrap_or(who);
    Some(CommitInfo {
        subject: message.lines().next().unwrap_or("").trim().to_owned(),
        author: name.to_owned(),
        time: seconds,
    })
}

/// Checks that `commit` carries an SSH signature (git's `gpg.format=ssh`, namespace `git`)
/// made by one of `allowed` (OpenSSH public keys, as in git's allowedSignersFile). Verified
/// in-process; nothing is spawned.
pub fn verify_commit_signature(
    repository: &Path,
    commit: &str,
    allowed: &[String],
) -> std::result::Result<String, String> {
    use nimbus_providers::ssh_key::{PublicKey, SshSig};
    let repo = gix::open(repository).map_err(|e| e.to_string())?;
    let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| e.to_string())?;
    let commit_object = repo
        .find_object(id)
        .map_err(|e| e.to_string())?
        .try_into_commit()
        .map_err(|e| e.to_string())?;
    let Some((signature, signed)) = commit_object.signature().map_err(|e| e.to_string())? else {
        return Err(format!("commit {commit} is not signed"));
    };
    let signature = SshSig::from_pem(signature.as_ref() as &[u8]).map_err(|_| {
        format!("commit {commit} is not signed with an SSH key (only SSH signatures are accepted)")
    })?;
    let message = signed.to_bstring();
    for line in allowed {
        // An allowed-signers line may start with principals: take the key from its type on.
        let Some(at) = line.find("ssh-").or_else(|| line.find("ecdsa-")) else {
            continue;
        };
        let Ok(key) = PublicKey::from_openssh(line[at..].trim()) else {
            continue;
        };
        if key.verify("git", &message, &signature).is_ok() {
            return Ok(key.fingerprint(Default::default()).to_string());
        }
    }
    Err(format!(
        "commit {commit} is signed by {}, which is not an allowed signer (policy.allowedSigners)",
        signature.public_key().fingerprint(Default::default())
    ))
}
