//! The pieces a session (`ops`) is made of: loading and checking a repository (working tree
//! or revision), state and its lock, the run's secrets, saved plans, and running a plan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::graph::ResourceGraph;
use nimbus_planner::instances::InstanceGraph;
use nimbus_planner::plan::{Observed, Plan};
use nimbus_planner::{Checked, InputFile};
use nimbus_providers::Registry;
use nimbus_schemas::Spec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::executor::{self, ExecutorOptions, Report};
use crate::render::{count_phrase, print_stderr, problems_text, stderr_is_terminal};
use crate::state::{StateError, StateStore};
use crate::workdir::read_working_tree;

/// How long a lock lease lasts; the holder renews it at a third of that.
pub const LOCK_LEASE: Duration = Duration::from_secs(30);

/// A loaded, checked repository and the graph of its instances.
pub struct Loaded {
    pub root: PathBuf,
    pub checked: Checked,
    pub graph: InstanceGraph,
    /// A digest of the manifests, every other path, and the content of every `source` file.
    pub fingerprint: String,
    /// The text of every file a File's `source` names.
    pub sources: HashMap<String, String>,
    /// The git commit the repository was read at (`--rev`); `None` for the working tree.
    pub revision: Option<String>,
    /// Where the repository's other files (sources, secrets) are read from.
    files: Option<crate::gitsource::RevisionFiles>,
}

impl Loaded {
    /// A repository file by its path: from the revision, else from the working tree.
    pub fn read_file(&self, path: &str) -> std::io::Result<Vec<u8>> {
        read_repository_file(self.files.as_ref(), &self.root, path)
    }
}

/// Loads and checks `root`'s working tree; a repository with errors prints them and is
/// refused.
pub fn load(root: &Path) -> Result<Loaded> {
    load_at(root, None)
}

/// Loads and checks `root` at a git revision (`--rev`), or its working tree.
pub fn load_at(root: &Path, rev: Option<&str>) -> Result<Loaded> {
    load_from(root, rev, root)
}

fn load_from(repository: &Path, rev: Option<&str>, root: &Path) -> Result<Loaded> {
    match load_checked(repository, rev, root)? {
        Ok(loaded) => Ok(loaded),
        Err(invalid) => {
            let checked = &invalid.checked;
            print_stderr(&problems_text(
                &checked.problems,
                &checked.model.sources,
                stderr_is_terminal(),
            ));
            miette::bail!(
                "{}: {}; fix them first: a repository with errors is never planned or applied, in any part",
                root.display(),
                count_phrase(checked.error_count(), checked.warning_count())
            );
        }
    }
}

/// A repository (or revision) that does not validate: its problems, for the caller to show.
pub struct Invalid {
    pub checked: Checked,
    /// The commit, when a revision was read.
    pub revision: Option<String>,
}

/// Loads and checks revision `rev` of `repository` (or, without one, the working tree of
/// `root`), with state and relative settings under `root`. A repository with errors comes
/// back as `Err(Invalid)` for the caller to show; nothing is printed.
pub fn load_checked(
    repository: &Path,
    rev: Option<&str>,
    root: &Path,
) -> Result<std::result::Result<Loaded, Box<Invalid>>> {
    let (checked, files, revision, fingerprint) = match rev {
        Some(rev) => {
            // Manifests a previous load in this process already parsed are not parsed again;
            // the tree id stands for the content of every file.
            let revision = crate::gitsource::load_revision(repository, rev)?;
            tracing::debug!(commit = %revision.commit, parsed = revision.parsed, "read the revision");
            (
                nimbus_planner::check_loaded(revision.model, revision.problems),
                Some(revision.files),
                Some(revision.commit),
                format!("git-tree:{}", revision.tree),
            )
        }
        None => {
            let (input, _) = read_working_tree(root)?;
            let fingerprint = source_fingerprint(&input.manifests, input.other_paths.iter());
            (nimbus_planner::check(input), None, None, fingerprint)
        }
    };
    if checked.has_errors() {
        return Ok(Err(Box::new(Invalid { checked, revision })));
    }
    let resources = ResourceGraph::build(&checked.model);
    let graph = InstanceGraph::build(&checked.model, &resources);
    let mut sources = HashMap::new();
    let mut hasher = Sha256::new();
    hasher.update(fingerprint.as_bytes());
    for document in &checked.model.documents {
        let Spec::File(file) = &document.resource.spec else {
            continue;
        };
        let Some(path) = file
            .source
            .as_deref()
            .map(|p| p.trim_start_matches("./").to_owned())
        else {
            continue;
        };
        if sources.contains_key(&path) {
            continue;
        }
        let bytes = read_repository_file(files.as_ref(), root, &path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read the source file {path}"))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            miette::miette!("{path}, the source of File/{}, is not UTF-8 text; binary files are not supported yet", document.resource.name())
        })?;
        hasher.update(path.as_bytes());
        hasher.update(text.as_bytes());
        sources.insert(path, text);
    }
    let fingerprint: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tracing::info!(
        repository = %root.display(),
        documents = checked.model.documents.len(),
        instances = graph.instances.len(),
        warnings = checked.warning_count(),
        "loaded the repository"
    );
    Ok(Ok(Loaded {
        root: root.to_owned(),
        checked,
        graph,
        fingerprint,
        sources,
        revision,
        files,
    }))
}

/// A repository file by its path: from the revision's files, else from the working tree.
fn read_repository_file(
    files: Option<&crate::gitsource::RevisionFiles>,
    root: &Path,
    path: &str,
) -> std::io::Result<Vec<u8>> {
    match files {
        Some(files) => files.read(path),
        None => std::fs::read(root.join(path)),
    }
}

/// Where state lives for a repository's settings: `state.path` (relative to `root`), else
/// `.nimbus/state.db`.
pub fn state_path_in(
    repository: Option<&nimbus_schemas::RepositorySpec>,
    root: &Path,
) -> Result<PathBuf> {
    match repository.map(|r| &r.state) {
        Some(settings) if settings.url.is_some() => {
            miette::bail!(
                "a PostgreSQL state backend (state.url) is not supported yet; use state.path (SQLite)"
            )
        }
        Some(settings) => Ok(root.join(settings.path.as_deref().unwrap_or(".nimbus/state.db"))),
        None => Ok(root.join(".nimbus/state.db")),
    }
}

/// Where state lives for a repository (or revision) that may not validate: its Repository
/// settings as far as they loaded. For commands that must work on a broken repository
/// (`nimbus state unlock`) and for the daemon's start.
pub fn state_path_of(repository: &Path, rev: Option<&str>, root: &Path) -> Result<PathBuf> {
    let model = match load_checked(repository, rev, root)? {
        Ok(loaded) => return loaded.state_path(),
        Err(invalid) => invalid.checked.model,
    };
    let settings = model.repository().and_then(|d| match &d.resource.spec {
        Spec::Repository(r) => Some(r),
        _ => None,
    });
    state_path_in(settings, root)
}

/// A digest of every manifest's path and bytes and of every other path.
pub fn source_fingerprint<'a>(
    manifests: &[InputFile],
    other_paths: impl Iterator<Item = &'a String>,
) -> String {
    let mut hasher = Sha256::new();
    let mut files: Vec<&InputFile> = manifests.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for file in files {
        hasher.update(file.path.as_bytes());
        hasher.update([0]);
        hasher.update((file.bytes.len() as u64).to_le_bytes());
        hasher.update(&file.bytes);
    }
    for path in other_paths {
        hasher.update(path.as_bytes());
        hasher.update([1]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Loaded {
    pub fn repository(&self) -> Option<&nimbus_schemas::RepositorySpec> {
        self.checked
            .model
            .repository()
            .and_then(|d| match &d.resource.spec {
                Spec::Repository(r) => Some(r),
                _ => None,
            })
    }

    /// Where state lives: the Repository's `state.path`, else `.nimbus/state.db`.
    pub fn state_path(&self) -> Result<PathBuf> {
        state_path_in(self.repository(), &self.root)
    }

    pub fn parallelism(&self) -> usize {
        self.repository()
            .map_or(nimbus_schemas::DEFAULT_PARALLELISM, |r| r.parallelism) as usize
    }
}

pub fn open_state(path: &Path) -> Result<StateStore> {
    StateStore::open(path).map_err(|e| miette::miette!("{e}"))
}

/// Holds the state lock for as long as it lives, renewing the lease in the background.
pub struct LockGuard {
    path: PathBuf,
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl LockGuard {
    pub fn acquire(path: &Path, holder: &str) -> Result<Self> {
        let mut store = open_state(path)?;
        match store.acquire_lock(holder, LOCK_LEASE) {
            Ok(Some(previous)) => print_stderr(&format!(
                "note: took over the state lock left by {} (pid {} on {}), which is no longer running\n",
                previous.holder, previous.pid, previous.host
            )),
            Ok(None) => {}
            Err(StateError::Locked(info)) => {
                return Err(miette::miette!("{}", StateError::Locked(info)));
            }
            Err(e) => return Err(miette::miette!("{e}")),
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let renewer = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(LOCK_LEASE / 3)
            {
                let _ = store.renew_lock(LOCK_LEASE);
            }
        });
        Ok(LockGuard {
            path: path.to_owned(),
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if let Ok(store) = StateStore::open(&self.path) {
            let _ = store.release_lock();
        }
    }
}

/// Options of `plan`, `apply` and `destroy`.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    pub refresh: bool,
    pub targets: Vec<String>,
    pub allow_deletes: bool,
    pub destroy: bool,
}

/// The secrets of a run: every reference the repository makes, decrypted once; what plans
/// see of them (keyed fingerprints) and what providers are given (values, in memory).
#[derive(Default)]
pub struct RunSecrets {
    pub fingerprints: HashMap<String, Result<String, String>>,
    pub values: Arc<crate::executor::SecretValues>,
}

/// Decrypts every secret the repository refers to, with the identity from `--identity`,
/// `NIMBUS_AGE_IDENTITY` or the Repository's `secrets.identityFile`. A secret that cannot be
/// decrypted is an error only for the instances that use it; without references, nothing is
/// read at all.
pub fn resolve_secrets(loaded: &Loaded, identity: Option<&Path>) -> Result<RunSecrets> {
    if secret_references(loaded).is_empty() {
        return Ok(RunSecrets::default());
    }
    let key = open_state(&loaded.state_path()?)?
        .secret_key()
        .map_err(|e| miette::miette!("{e}"))?;
    resolve_secrets_with_key(loaded, identity, &key)
}

/// Every secret reference the repository makes, sorted, once each.
fn secret_references(loaded: &Loaded) -> Vec<String> {
    let mut references: Vec<String> = loaded
        .checked
        .model
        .documents
        .iter()
        .flat_map(|d| {
            nimbus_planner::plan::secret_references(
                d.resource.kind,
                &nimbus_planner::plan::desired_spec(&d.resource.spec),
            )
        })
        .map(|(_, reference)| reference)
        .collect();
    references.sort();
    references.dedup();
    references
}

/// As [`resolve_secrets`], with the fingerprints keyed by `key` (a preview makes its own, so
/// that it writes no state).
pub fn resolve_secrets_with_key(
    loaded: &Loaded,
    identity: Option<&Path>,
    key: &[u8],
) -> Result<RunSecrets> {
    let references = secret_references(loaded);
    if references.is_empty() {
        return Ok(RunSecrets::default());
    }
    let identity = crate::secrets::identity_path(
        identity,
        &loaded.root,
        loaded
            .repository()
            .and_then(|r| r.secrets.identity_file.as_deref()),
    );
    let mut secrets =
        crate::secrets::Secrets::new(Box::new(|path| loaded.read_file(path)), identity);
    let mut fingerprints = HashMap::new();
    let mut values = HashMap::new();
    for reference in references {
        match secrets.value(&reference) {
            Ok(value) => {
                fingerprints.insert(
                    reference.clone(),
                    Ok(crate::secrets::fingerprint(key, value.bytes())),
                );
                values.insert(
                    reference,
                    Ok(crate::secrets::Plaintext::new(value.bytes().to_vec())),
                );
            }
            Err(e) => {
                tracing::warn!(secret = %reference, "a secret cannot be decrypted");
                fingerprints.insert(reference.clone(), Err(e.clone()));
                values.insert(reference, Err(e));
            }
        }
    }
    Ok(RunSecrets {
        fingerprints,
        values: Arc::new(values),
    })
}

/// What the host shows of a File whose content is a secret, as its fingerprint: the host's
/// SHA-256 is compared with the value's, in memory, and neither goes further.
pub fn observed_secret_files(
    loaded: &Loaded,
    secrets: &RunSecrets,
    observed: &mut HashMap<String, Observed>,
) {
    for instance in &loaded.graph.instances {
        let Spec::File(file) = &loaded.checked.model.documents[instance.document]
            .resource
            .spec
        else {
            continue;
        };
        let Some(reference) = &file.secret else {
            continue;
        };
        let Some(Observed::Present(value)) = observed.get_mut(&instance.address) else {
            continue;
        };
        let Some(host_digest) = value["content"]["sha256"].as_str() else {
            continue;
        };
        let fingerprint = match (
            secrets.values.get(&reference.0),
            secrets.fingerprints.get(&reference.0),
        ) {
            (Some(Ok(plaintext)), Some(Ok(fingerprint))) => {
                let digest: String = Sha256::digest(plaintext.bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if digest == host_digest {
                    fingerprint.clone()
                } else {
                    "(another value)".to_owned()
                }
            }
            _ => nimbus_planner::plan::UNRESOLVED_SECRET.to_owned(),
        };
        value["content"] = serde_json::json!({ "fingerprint": fingerprint });
    }
}

/// A plan saved with `--out`: the plan and the repository it was made from.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub repository: PathBuf,
    /// The revision the plan was made from (`--rev`), applied at that same commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub refresh: bool,
    pub plan: Plan,
}

/// Runs a plan's changes under the caller's lock: Ctrl-C and SIGTERM stop it cleanly, and
/// so does `superseded` completing (the reconcile daemon's newer commit).
pub async fn run_plan_until(
    plan: &Plan,
    registry: &Registry,
    state: Arc<Mutex<StateStore>>,
    command: &str,
    parallelism: usize,
    secrets: &RunSecrets,
    superseded: impl std::future::Future<Output = ()>,
) -> Result<Report> {
    let run = crate::executor::lock_state(&state)
        .begin_run(command, plan.source_revision.as_deref())
        .map_err(|e| miette::miette!("{e}"))?;
    let total = plan.changes.iter().filter(|c| c.action.is_work()).count();
    let defaults = ExecutorOptions::default();
    let options = ExecutorOptions {
        parallelism,
        progress: executor::Progress::for_stderr(total),
        secrets: Arc::clone(&secrets.values),
        // For tests and demos: the first wait before a retry (it doubles each time).
        backoff: std::env::var("NIMBUS_RETRY_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(defaults.backoff, Duration::from_millis),
        ..defaults
    };
    // Ctrl-C or SIGTERM: the changes under way finish and are recorded; nothing new starts.
    let shutdown = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match terminate.as_mut() {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => {
                if interrupted.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            () = term => {}
            () = superseded => {
                tracing::info!("a newer revision supersedes this run");
            }
        }
    };
    let report =
        executor::execute(plan, registry, Arc::clone(&state), run, &options, shutdown).await;
    let outcome = if report.interrupted {
        "interrupted"
    } else if report.succeeded() {
        "succeeded"
    } else {
        "failed"
    };
    crate::executor::lock_state(&state)
        .end_run(run, outcome)
        .map_err(|e| miette::miette!("{e}"))?;
    Ok(report)
}
