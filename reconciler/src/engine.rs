//! The steps `plan`, `apply` and `destroy` share: load and check the repository, open state,
//! pick providers, recover interrupted changes, observe, plan, and run the plan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::graph::ResourceGraph;
use nimbus_planner::instances::InstanceGraph;
use nimbus_planner::plan::{self, Action, Observed, Plan, PlanInput, Record};
use nimbus_planner::{Checked, InputFile};
use nimbus_providers::Registry;
use nimbus_providers::memory::MemoryProvider;
use nimbus_schemas::Spec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::executor::{self, ExecutorOptions, Report};
use crate::render::{count_phrase, print_stderr, problems_text, stderr_is_terminal};
use crate::state::{StateError, StateStore};
use crate::workdir::read_working_tree;

/// The environment variable that points the in-memory provider at a directory; until the
/// real providers land it is the only backend.
pub const MEMORY_PROVIDER_ENV: &str = "NIMBUS_MEMORY_PROVIDER";

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
        match self.repository().map(|r| &r.state) {
            Some(settings) if settings.url.is_some() => {
                miette::bail!(
                    "a PostgreSQL state backend (state.url) is not supported yet; use state.path (SQLite)"
                )
            }
            Some(settings) => Ok(self
                .root
                .join(settings.path.as_deref().unwrap_or(".nimbus/state.db"))),
            None => Ok(self.root.join(".nimbus/state.db")),
        }
    }

    pub fn parallelism(&self) -> usize {
        self.repository()
            .map_or(nimbus_schemas::DEFAULT_PARALLELISM, |r| r.parallelism) as usize
    }
}

/// Where this run's changes go.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The in-memory provider, kept in this directory.
    Memory(PathBuf),
    /// The hosts provider over SSH for Host, File and Service; the kinds whose providers are
    /// still to come go to the in-memory provider in this directory, when the model has any.
    Ssh(Option<PathBuf>),
}

/// The providers of this run.
///
/// - `NIMBUS_MEMORY_PROVIDER=DIR`: the in-memory provider for every kind, kept in DIR.
/// - `--identity` names an SSH private key, or the Repository sets `ssh.identityFile` (or
///   `ssh.agent`): the hosts provider over SSH serves Host, File and Service; the other kinds, whose providers are still to come, go to the in-memory provider
///   kept in `memory/` beside the state.
/// - Otherwise the in-memory provider for every kind, kept in `memory/` beside the state.
pub fn registry(
    loaded: &Loaded,
    state_path: &Path,
    cli_identity: Option<&Path>,
) -> Result<(Registry, Backend)> {
    let ssh = loaded
        .repository()
        .map(|r| r.ssh.clone())
        .unwrap_or_default();
    // `--identity` is the user's private key: when it is an SSH key, it logs in (before the
    // Repository's ssh.identityFile) as well as decrypting secrets.
    let cli_key = cli_identity.filter(|path| is_ssh_private_key(path));
    let identity = match (cli_key, &ssh.identity_file, ssh.agent) {
        (Some(key), _, _) => Some(key.to_owned()),
        (None, Some(file), _) => Some(loaded.root.join(file)),
        (None, None, true) => {
            if std::env::var_os("SSH_AUTH_SOCK").is_none_or(|s| s.is_empty()) {
                miette::bail!(
                    "the Repository sets ssh.agent, but SSH_AUTH_SOCK names no ssh-agent: start one (eval $(ssh-agent); ssh-add KEY) or set ssh.identityFile"
                );
            }
            // No identity file: the agent's keys log in.
            Some(PathBuf::new())
        }
        (None, None, false) => None,
    };
    if std::env::var_os(MEMORY_PROVIDER_ENV).is_none()
        && let Some(identity) = identity
    {
        // Keys pinned on first contact (trust on first use) are in state, as Host outputs.
        let recorded: HashMap<String, String> = StateStore::open(state_path)
            .and_then(|store| store.resources())
            .map(|resources| {
                resources
                    .into_iter()
                    .filter(|r| r.record.kind == nimbus_schemas::Kind::Host)
                    .filter_map(|r| {
                        let key = r.outputs["hostKey"]
                            .as_str()
                            .filter(|k| !k.is_empty())?
                            .to_owned();
                        Some((r.record.address.trim_start_matches("Host/").to_owned(), key))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let provider = hosts_provider(loaded, &identity, &recorded)?;
        let registry = Registry::new().with(Arc::new(provider));
        let others = loaded
            .graph
            .instances
            .iter()
            .any(|i| registry.for_kind(i.kind).is_none());
        let directory = memory_directory(state_path);
        let memory = MemoryProvider::persistent(&directory)
            .into_diagnostic()
            .wrap_err_with(|| {
                format!(
                    "cannot open the in-memory provider at {}",
                    directory.display()
                )
            })?;
        return Ok((
            registry.with(Arc::new(memory)),
            Backend::Ssh(others.then_some(directory)),
        ));
    }
    let directory = match std::env::var_os(MEMORY_PROVIDER_ENV) {
        Some(directory) => PathBuf::from(directory),
        None => memory_directory(state_path),
    };
    let mut provider = MemoryProvider::persistent(&directory)
        .into_diagnostic()
        .wrap_err_with(|| {
            format!(
                "cannot open the in-memory provider at {}",
                directory.display()
            )
        })?;
    if let Some(ms) = std::env::var("NIMBUS_MEMORY_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        provider = provider.with_delay(Duration::from_millis(ms));
    }
    if let Ok(list) = std::env::var("NIMBUS_MEMORY_FAIL_TRANSIENT") {
        for item in list.split(',').filter(|a| !a.is_empty()) {
            let (address, times) = item.rsplit_once(':').unwrap_or((item, "1"));
            provider.fail_transiently(address, times.parse().unwrap_or(1));
        }
    }
    if let Ok(list) = std::env::var("NIMBUS_MEMORY_FAIL") {
        for address in list.split(',').filter(|a| !a.is_empty()) {
            provider.fail(address);
        }
    }
    Ok((
        Registry::new().with(Arc::new(provider)),
        Backend::Memory(directory),
    ))
}

/// Whether a file is an SSH private key (OpenSSH or PEM), rather than an age identity.
fn is_ssh_private_key(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
            || (text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----"))
    })
}

/// The in-memory provider's directory beside the state: `memory/`.
fn memory_directory(state_path: &Path) -> PathBuf {
    state_path
        .parent()
        .map_or_else(|| PathBuf::from("memory"), |p| p.join("memory"))
}

/// The pinned key of a host: its `hostKey`, else the Repository's known_hosts file.
fn pinned_key(loaded: &Loaded, name: &str, address: &str) -> Option<String> {
    let path = loaded
        .repository()
        .and_then(|r| r.ssh.known_hosts.clone())?;
    // In the repository (at the revision being applied), unless the path is absolute.
    let bytes = if Path::new(&path).is_absolute() {
        std::fs::read(&path).ok()?
    } else {
        loaded.read_file(path.trim_start_matches("./")).ok()?
    };
    let text = String::from_utf8_lossy(&bytes);
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let hosts = parts.next()?;
        let (kind, key) = (parts.next()?, parts.next()?);
        hosts
            .split(',')
            .any(|h| h == name || h == address || h == format!("[{address}]:22"))
            .then(|| format!("{kind} {key}"))
    })
}

fn hosts_provider(
    loaded: &Loaded,
    identity: &Path,
    recorded: &HashMap<String, String>,
) -> Result<nimbus_providers::hosts::HostsProvider> {
    let trust_on_first_use = loaded
        .repository()
        .is_some_and(|r| r.ssh.trust_on_first_use);
    let timeout = loaded
        .repository()
        .and_then(|r| r.ssh.connect_timeout)
        .unwrap_or(10);
    let mut targets = Vec::new();
    for document in &loaded.checked.model.documents {
        let Spec::Host(host) = &document.resource.spec else {
            continue;
        };
        let name = document.resource.name();
        let host_key = host
            .host_key
            .clone()
            .or_else(|| pinned_key(loaded, name, &host.address))
            .or_else(|| recorded.get(name).cloned());
        targets.push(nimbus_providers::ssh::SshTarget {
            name: name.to_owned(),
            address: host.address.clone(),
            port: host.port.0,
            user: host
                .user
                .clone()
                .or_else(|| loaded.repository().and_then(|r| r.ssh.user.clone()))
                .unwrap_or_else(|| nimbus_schemas::DEFAULT_SSH_USER.to_owned()),
            host_key: host_key.unwrap_or_default(),
            identity: identity.to_owned(),
            connect_timeout: Duration::from_secs(u64::from(timeout)),
            via: host.via.clone(),
            trust_on_first_use,
            agent: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
        });
    }
    Ok(nimbus_providers::hosts::HostsProvider::new(targets))
}

/// Says, once per run that changes things, where changes go.
pub fn note_backend(backend: &Backend) {
    match backend {
        Backend::Memory(directory) => print_stderr(&format!(
            "note: this release applies to nimbus's in-memory provider, kept in {} (real providers come next)\n",
            directory.display()
        )),
        Backend::Ssh(Some(directory)) => print_stderr(&format!(
            "note: Host, File and Service are applied over SSH; the other kinds go to nimbus's in-memory provider, kept in {} (their providers come next)\n",
            directory.display()
        )),
        Backend::Ssh(None) => {}
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

/// Finishes the changes an interrupted run started: if the target shows the change was made,
/// it is recorded now; otherwise the intent is dropped and the plan makes the change again.
pub async fn recover(state: &Mutex<StateStore>, registry: &Registry) -> Result<Vec<String>> {
    let intents = crate::executor::lock_state(state)
        .intents()
        .map_err(|e| miette::miette!("{e}"))?;
    let mut notes = Vec::new();
    for intent in intents {
        let change = intent.change;
        let Some(provider) = registry.for_kind(change.kind) else {
            continue;
        };
        let host = crate::executor::target_of(&change.address, change.kind);
        let request = nimbus_providers::ObserveRequest {
            address: change.address.clone(),
            kind: change.kind,
            desired: change.after.clone(),
        };
        let observed = provider
            .observe(host.as_deref(), std::slice::from_ref(&request))
            .await;
        let done = match (
            observed
                .ok()
                .and_then(|o| o.into_iter().next())
                .map(|(_, o)| o),
            change.action,
        ) {
            (Some(Observed::Absent), Action::Delete) => true,
            (Some(Observed::Present(value)), _) => Some(&value) == change.after.as_ref(),
            _ => false,
        };
        let store = crate::executor::lock_state(state);
        if done {
            let run = store
                .begin_run("recover", None)
                .map_err(|e| miette::miette!("{e}"))?;
            drop(store);
            let mut store = crate::executor::lock_state(state);
            store
                .complete(run, &change, provider.name(), &serde_json::Value::Null)
                .map_err(|e| miette::miette!("{e}"))?;
            store
                .end_run(run, "recovered")
                .map_err(|e| miette::miette!("{e}"))?;
            notes.push(format!(
                "recovered {}: it was applied before an interruption; now recorded",
                change.address
            ));
        } else {
            store
                .forget_intent(&change.address)
                .map_err(|e| miette::miette!("{e}"))?;
            notes.push(format!(
                "{} was interrupted before it took effect; it is planned again",
                change.address
            ));
        }
    }
    Ok(notes)
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
fn observed_secret_files(
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

/// Observes (unless told not to) and plans.
pub async fn make_plan(
    loaded: &Loaded,
    records: &[Record],
    serial: u64,
    registry: &Registry,
    options: &PlanOptions,
    secrets: &RunSecrets,
) -> Result<Plan> {
    let mut observed: HashMap<String, Observed> = if options.refresh && !registry.is_empty() {
        // Recorded instances no longer in git are observed as they were applied.
        let extra: Vec<(String, nimbus_schemas::Kind, serde_json::Value)> = records
            .iter()
            .filter(|r| loaded.graph.get(&r.address).is_none())
            .map(|r| (r.address.clone(), r.kind, r.applied.clone()))
            .collect();
        let (observed, problems) =
            executor::observe(&loaded.checked.model, &loaded.graph, &extra, registry).await;
        for problem in problems {
            print_stderr(&format!("warning: {problem}\n"));
        }
        observed
    } else {
        HashMap::new()
    };
    observed_secret_files(loaded, secrets, &mut observed);
    let input = PlanInput {
        records,
        observed: &observed,
        rules: registry,
        state_serial: serial,
        source_revision: loaded.revision.clone(),
        source_fingerprint: loaded.fingerprint.clone(),
        targets: &options.targets,
        allow_deletes: options.allow_deletes,
        destroy: options.destroy,
        sources: &loaded.sources,
        secrets: &secrets.fingerprints,
    };
    let plan = plan::plan(&loaded.checked.model, &loaded.graph, &input)
        .map_err(|e| miette::miette!("{e}"))?;
    tracing::info!(
        create = plan.count(Action::Create),
        update = plan.count(Action::Update),
        replace = plan.count(Action::Replace),
        delete = plan.count(Action::Delete),
        observed = input.observed.len(),
        "planned"
    );
    Ok(plan)
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

/// Runs a plan's changes under the caller's lock; Ctrl-C stops it cleanly.
pub async fn run_plan(
    plan: &Plan,
    registry: &Registry,
    state: Arc<Mutex<StateStore>>,
    command: &str,
    parallelism: usize,
    secrets: &RunSecrets,
) -> Result<Report> {
    run_plan_until(
        plan,
        registry,
        state,
        command,
        parallelism,
        secrets,
        std::future::pending(),
    )
    .await
}

/// As [`run_plan`], also stopping (cleanly) when `superseded` completes: the reconcile
/// daemon's newer commit.
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
