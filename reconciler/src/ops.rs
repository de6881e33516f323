//! One operations path: a [`Session`] opens, once and in the same order for every command
//! that plans or applies, what the command needs: the loaded repository, the state lock
//! (for writes), recovery of changes an interrupted run left behind, the providers the
//! manifests choose (SPEC §11), state, and the run's secrets. `plan`, `apply`, `apply
//! PLANFILE`, `destroy`, `preview --refresh` and the reconcile daemon all go through it, so
//! that no path can skip a step.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::plan::{self, Action, Observed, Plan, PlanInput, Record};
use nimbus_planner::rules::MEMORY;
use nimbus_providers::memory::MemoryProvider;
use nimbus_providers::{Provider, Registry};
use nimbus_schemas::Kind;

use crate::engine::{self, Loaded, LockGuard, PlanOptions, RunSecrets};
use crate::executor::{self, Report, lock_state};
use crate::render::print_stderr;
use crate::state::StateStore;

/// The environment variable that asks for the in-memory provider, kept in a directory: the
/// only way it is ever used (docs/cli.md).
pub const MEMORY_PROVIDER_ENV: &str = "NIMBUS_MEMORY_PROVIDER";

/// How a session is opened.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Take the state lock as this holder (`nimbus apply`), and recover interrupted changes;
    /// `None` for a read-only session (`nimbus plan`, a preview).
    pub lock_as: Option<String>,
    /// `--identity`: decrypts secrets; when an SSH key, also logs in to hosts.
    pub identity: Option<PathBuf>,
    /// The in-memory provider's directory, when asked for (`NIMBUS_MEMORY_PROVIDER`).
    pub memory: Option<PathBuf>,
    /// Decrypt the repository's secrets (a preview without state makes its own key).
    pub secret_key: Option<Vec<u8>>,
    /// `--force-conflicts`: Kubernetes fields another field manager owns are taken over.
    pub force_conflicts: bool,
    /// `--override-daemon`: lock and apply even though a `nimbus reconcile` daemon reconciles
    /// this state (recorded in the run's history, with who did it).
    pub override_daemon: bool,
    /// The lock's lease, when not the default (the daemon's: its leader lease).
    pub lock_lease: Option<std::time::Duration>,
}

impl SessionOptions {
    /// Options for a command: the in-memory provider only when the environment asks for it.
    pub fn for_command(lock_as: Option<&str>, identity: Option<&Path>) -> Self {
        SessionOptions {
            lock_as: lock_as.map(str::to_owned),
            identity: identity.map(Path::to_owned),
            memory: std::env::var_os(MEMORY_PROVIDER_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            secret_key: None,
            force_conflicts: false,
            override_daemon: false,
            lock_lease: None,
        }
    }
}

/// What a command works with.
pub struct Session {
    pub loaded: Loaded,
    pub state_location: crate::state::StateLocation,
    pub state: Arc<Mutex<StateStore>>,
    pub registry: Registry,
    /// The run's SSH connections, when any provider goes over SSH.
    pub pool: Option<Arc<nimbus_providers::ssh::Pool>>,
    pub secrets: RunSecrets,
    /// What every plan of this session says first (the in-memory provider is in use).
    pub notes: Vec<String>,
    /// The state's serial before recovery: what a saved plan made before it is checked
    /// against.
    pub serial_before_recovery: u64,
    /// Records of changes an interrupted run made that a read-only session found done (not
    /// written: the next apply records them).
    recovered_records: Vec<Found>,
    /// Plugins the Repository names that could not be started (each reported at its
    /// `providers` entry): the run goes on without them, and fails.
    pub plugin_errors: usize,
    /// What this session's runs record they overrode (`--override-daemon`), and who did.
    pub run_note: Option<String>,
    _lock: Option<LockGuard>,
}

impl Session {
    /// Opens a session on a loaded repository: lock, providers, state, recovery, secrets.
    pub async fn open(mut loaded: Loaded, options: SessionOptions) -> Result<Session> {
        let state_location = loaded.state_location()?;
        let mut store = engine::open_state(&state_location)?;
        let run_note = match &options.lock_as {
            Some(holder) if holder != DAEMON_HOLDER => {
                daemon_at_work(&store, &state_location, holder, options.override_daemon)?
            }
            _ => None,
        };
        let lock = match &options.lock_as {
            Some(holder) => {
                let lease = options.lock_lease.unwrap_or_else(engine::lock_lease);
                // The daemon waits out a lock whose holder's lease is about to run out (a
                // leader that died); commands say who holds it at once.
                let patience = if options.lock_lease.is_some() {
                    lease * 2
                } else {
                    std::time::Duration::ZERO
                };
                Some(LockGuard::acquire_waiting(
                    &state_location,
                    holder,
                    lease,
                    patience,
                )?)
            }
            None => None,
        };
        if options.force_conflicts {
            // `--force-conflicts` asks to take over what another field manager made: an object
            // found under a declared name on a Kubernetes API is imported, not refused.
            let taken: Vec<String> = loaded
                .graph
                .instances
                .iter()
                .filter(|i| i.provider == nimbus_provider_kube::PROVIDER)
                .map(|i| i.address.clone())
                .collect();
            for address in taken {
                loaded
                    .checked
                    .model
                    .imports
                    .push(nimbus_planner::modules::imported::Import {
                        to: address.clone(),
                        resource: address,
                        host: None,
                        id: None,
                        at: None,
                        if_present: true,
                    });
            }
        }
        let mut notes = Vec::new();
        if let Some(directory) = &options.memory {
            // Asked for explicitly: every instance goes to the in-memory provider.
            for instance in &mut loaded.graph.instances {
                instance.provider = MEMORY.to_owned();
            }
            notes.push(format!(
                "the in-memory provider is in use ({MEMORY_PROVIDER_ENV}={}): nothing here reaches a real machine",
                directory.display()
            ));
        }
        // Before the providers: the S3 provider signs with keys from the repository's secrets.
        let secrets = match &options.secret_key {
            Some(key) => {
                engine::resolve_secrets_with_key(&loaded, options.identity.as_deref(), key)?
            }
            None => engine::resolve_secrets(&loaded, options.identity.as_deref())?,
        };
        // Its writes are fenced by the lock this session holds.
        store.fence_with(lock.as_ref().and_then(LockGuard::token));
        let (registry, pool) = providers(&loaded, &store, &options, &secrets).await?;
        check_served(&loaded, &registry)?;
        if let Some(ssh) = registry.get(nimbus_planner::rules::SSH)
            && loaded
                .graph
                .instances
                .iter()
                .any(|i| i.provider == nimbus_planner::rules::SSH)
            && let Some(reason) = ssh.unavailable()
        {
            // No key to log in with is the user's to fix before anything is planned.
            miette::bail!(
                help = "hosts are reached over SSH by default (SPEC §11)",
                "{reason}"
            );
        }
        let plugin_problems = unavailable_plugins(&loaded, &registry);
        if !plugin_problems.is_empty() {
            print_stderr(&crate::render::problems_text(
                &plugin_problems,
                &loaded.checked.model.sources,
                crate::render::stderr_is_terminal(),
            ));
        }
        let (_, serial_before_recovery) = store.snapshot()?;
        let state = Arc::new(Mutex::new(store));
        let (recovered_records, recovery_notes) =
            recover_intents(&state, &registry, options.lock_as.is_some()).await?;
        for note in recovery_notes {
            print_stderr(&format!("note: {note}\n"));
        }
        Ok(Session {
            loaded,
            state_location,
            run_note,
            state,
            registry,
            pool,
            secrets,
            notes,
            serial_before_recovery,
            recovered_records,
            plugin_errors: plugin_problems.len(),
            _lock: lock,
        })
    }

    /// State's records (with what a read-only session found an interrupted run did) and
    /// serial.
    pub fn records(&self) -> Result<(Vec<Record>, u64)> {
        let (mut records, serial) = lock_state(&self.state).snapshot()?;
        for found in &self.recovered_records {
            records.retain(|r| r.address != found.record.address);
            if !found.delete {
                records.push(found.record.clone());
            }
        }
        Ok((records, serial))
    }

    /// Observes (unless told not to) and plans.
    pub async fn plan(&self, options: &PlanOptions) -> Result<Plan> {
        let (records, serial) = self.records()?;
        let recorded_modules = lock_state(&self.state).modules()?;
        let mut plan = make_plan(
            &self.loaded,
            &records,
            &recorded_modules,
            serial,
            &self.registry,
            options,
            &self.secrets,
        )
        .await?;
        // The session's notes first (the in-memory provider), then the plan's own warnings.
        plan.notes.splice(0..0, self.notes.iter().cloned());
        Ok(plan)
    }

    /// Applies a plan's changes under this session's lock; Ctrl-C and SIGTERM stop it
    /// cleanly, and so does `superseded` completing (the daemon's newer commit).
    pub async fn apply(
        &self,
        plan: &Plan,
        command: &str,
        parallelism: usize,
        superseded: impl std::future::Future<Output = ()>,
    ) -> Result<Report> {
        engine::run_plan_until(
            plan,
            &self.registry,
            Arc::clone(&self.state),
            command,
            self.run_note.as_deref(),
            parallelism,
            &self.secrets,
            Arc::new(self.sensitive_values(plan)),
            Arc::new(nimbus_planner::locate::Manifests::of(
                &self.loaded.checked.model,
                plan.changes
                    .iter()
                    .filter(|c| c.is_work())
                    .map(|c| c.resource.as_str()),
            )),
            superseded,
        )
        .await
    }

    /// The specs the plan's changes show with `(sensitive)` in fields their providers declare
    /// sensitive, with the values of this session's revision (the one the plan was made from:
    /// a saved plan whose source changed is refused before this).
    fn sensitive_values(&self, plan: &Plan) -> HashMap<String, serde_json::Value> {
        let rules = self.registry.rules();
        let mut out = HashMap::new();
        for change in &plan.changes {
            let paths = &rules.get(&change.provider, change.kind).sensitive_fields;
            let (false, Some(after)) = (paths.is_empty(), &change.after) else {
                continue;
            };
            let Some(index) = self.loaded.graph.get(&change.address) else {
                continue;
            };
            let instance = &self.loaded.graph.instances[index];
            let document = &self.loaded.checked.model.documents[instance.document];
            let written = plan::desired_spec(&document.resource.spec);
            if let Some(restored) = plan::unredacted(after, &written, paths) {
                out.insert(change.address.clone(), restored);
            }
        }
        out
    }
}

/// A diagnostic at the Repository's `providers` entry of each plugin that could not be
/// started, for the instances it serves (they are not observed, and the run fails).
fn unavailable_plugins(loaded: &Loaded, registry: &Registry) -> Vec<nimbus_planner::Problem> {
    let Some(document) = loaded.checked.model.repository() else {
        return Vec::new();
    };
    let Some(repository) = loaded.repository() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, plugin) in repository.providers.iter().enumerate() {
        let Some(reason) = registry.get(&plugin.name).and_then(|p| p.unavailable()) else {
            continue;
        };
        let span = document.spec_span(&[
            nimbus_planner::tree::Segment::Key("providers"),
            nimbus_planner::tree::Segment::Index(i),
        ]);
        out.push(
            nimbus_planner::Problem::error(
                "nimbus::provider::unavailable",
                format!(
                    "the provider plugin `{}` could not be started: {reason}",
                    plugin.name
                ),
                document.label(span, "this plugin"),
            )
            .with_help(
                "its instances are not observed or applied in this run; fix its command \
                 (see docs/protocol.md) and run again",
            ),
        );
    }
    out
}

/// A change an interrupted run made that a read-only session found done.
struct Found {
    record: Record,
    delete: bool,
}

/// The run's providers: the in-memory one when asked for, else those the manifests choose
/// (SSH for hosts by default, the Repository's plugins).
async fn providers(
    loaded: &Loaded,
    store: &StateStore,
    options: &SessionOptions,
    secrets: &RunSecrets,
) -> Result<(Registry, Option<Arc<nimbus_providers::ssh::Pool>>)> {
    let mut registry = Registry::new();
    let mut shared_pool = None;
    let wanted = |id: &str| loaded.graph.instances.iter().any(|i| i.provider == id);
    if let Some(directory) = &options.memory {
        registry.add(Arc::new(memory_provider(directory)?));
    }
    // State's records may name a provider too: their deletes go there.
    let recorded: Vec<Record> = store.records().unwrap_or_default();
    let wanted_by_state = |id: &str| recorded.iter().any(|r| r.provider == id);
    let context_files = |path: &str| loaded.read_file(path);
    let secret = |reference: &str| match secrets.values.get(reference) {
        Some(Ok(value)) => value.text().map(str::to_owned),
        Some(Err(e)) => Err(e.clone()),
        None => Err("was not resolved".to_owned()),
    };
    let env = |name: &str| std::env::var(name).ok();
    // The estate as the plan resolves it (the same rules, the same records).
    let topology =
        nimbus_planner::resolve::topology_of(&loaded.checked.model, &loaded.graph, &recorded);
    let context = nimbus_providers::configure::Context {
        repository: loaded.repository(),
        topology: &topology,
        root: &loaded.root,
        read_file: &context_files,
        identity: options
            .identity
            .clone()
            .filter(|path| is_ssh_private_key(path)),
        recorded_host_keys: recorded_host_keys(store),
        agent_socket: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
        home: std::env::var_os("HOME").map(PathBuf::from),
        secret: &secret,
        env: &env,
    };
    let ssh = nimbus_planner::rules::SSH;
    let docker = nimbus_planner::rules::DOCKER;
    let needs_ssh = wanted(ssh) || wanted_by_state(ssh);
    let needs_docker = wanted(docker) || wanted_by_state(docker);
    let agent = nimbus_planner::rules::AGENT;
    let needs_agent = wanted(agent) || wanted_by_state(agent);
    let kubernetes = nimbus_planner::rules::KUBERNETES;
    let needs_kubernetes = wanted(kubernetes) || wanted_by_state(kubernetes);
    if needs_ssh || needs_docker || needs_agent || needs_kubernetes {
        // One connection per host, shared by every provider that goes over SSH (k3s is
        // installed over them, and its APIs reached through them).
        let pool = nimbus_providers::configure::ssh_pool(&context);
        shared_pool = pool.as_ref().ok().cloned();
        if needs_ssh {
            registry.add(nimbus_providers::configure::ssh(&pool));
        }
        if needs_docker {
            registry.add(nimbus_provider_docker::configure(&context, &pool));
        }
        if needs_agent {
            registry.add(nimbus_providers::configure::mesh(&pool));
        }
        if needs_kubernetes {
            registry.add(nimbus_provider_kube::configure(
                &context,
                &pool,
                options.force_conflicts,
            ));
        }
    }
    let s3 = nimbus_providers::s3::PROVIDER;
    // Also whenever the Repository names an endpoint: `nimbus discover` lists its buckets.
    if wanted(s3) || wanted_by_state(s3) || loaded.repository().is_some_and(|r| r.s3.is_some()) {
        registry.add(nimbus_providers::configure::s3(&context));
    }
    let plugin_names: Vec<String> = loaded
        .repository()
        .map(|r| r.providers.iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default();
    if plugin_names
        .iter()
        .any(|name| wanted(name) || wanted_by_state(name))
    {
        for plugin in nimbus_providers::configure::plugins(&context).await {
            registry.add(plugin);
        }
    }
    Ok((registry, shared_pool))
}

impl Session {
    /// Every declared Host's facts and load, asked of `nimbus agent` on it (put there first
    /// when it is not): `{facts, load}`, or `{error}` for a host that does not answer.
    pub async fn host_loads(&self) -> BTreeMap<String, serde_json::Value> {
        let Some(pool) = &self.pool else {
            return BTreeMap::new();
        };
        let installer = match nimbus_providers::agent::Installer::of_current_exe() {
            Ok(installer) => installer,
            Err(e) => {
                tracing::warn!(error = %e, "no agent to ask for the hosts' load");
                return BTreeMap::new();
            }
        };
        let hosts: Vec<String> = self
            .loaded
            .graph
            .instances
            .iter()
            .filter(|i| i.kind == Kind::Host)
            .map(|i| i.address.trim_start_matches("Host/").to_owned())
            .collect();
        let mut asked = tokio::task::JoinSet::new();
        for host in hosts {
            let pool = Arc::clone(pool);
            let installer = installer.clone();
            asked.spawn(async move {
                let seen = async {
                    let session = pool.session(&host).await?;
                    installer.ensure(&session).await?;
                    let mut connection = installer.connect(&session).await?;
                    let found: nimbus_providers::protocol::Observations = connection
                        .call(nimbus_providers::protocol::Call::Observe(
                            nimbus_providers::protocol::ObserveParams {
                                target: Some(host.clone()),
                                batch: vec![nimbus_providers::ObserveRequest {
                                    address: format!("Host/{host}"),
                                    kind: Kind::Host,
                                    desired: None,
                                }],
                            },
                        ))
                        .await?;
                    Ok::<_, nimbus_providers::ProviderError>(
                        found
                            .observations
                            .into_iter()
                            .next()
                            .map(|o| o.spec)
                            .unwrap_or_default(),
                    )
                };
                let value = match tokio::time::timeout(Duration::from_secs(30), seen).await {
                    Ok(Ok(value)) => value,
                    Ok(Err(e)) => serde_json::json!({"error": e.to_string()}),
                    Err(_) => serde_json::json!({"error": "no answer within 30 s"}),
                };
                (host, value)
            });
        }
        let mut loads = BTreeMap::new();
        while let Some(Ok((host, value))) = asked.join_next().await {
            loads.insert(host, value);
        }
        loads
    }
}

/// The in-memory provider kept in `directory`, with the faults the environment injects (for
/// tests and demos).
fn memory_provider(directory: &Path) -> Result<MemoryProvider> {
    let mut provider = MemoryProvider::persistent(directory)
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
    Ok(provider)
}

/// Keys pinned on first contact (trust on first use), from state's Host outputs.
fn recorded_host_keys(store: &StateStore) -> HashMap<String, String> {
    store
        .resources()
        .map(|resources| {
            resources
                .into_iter()
                .filter(|r| r.record.kind == Kind::Host)
                .filter_map(|r| {
                    let key = r.record.outputs["hostKey"]
                        .as_str()
                        .filter(|k| !k.is_empty())?
                        .to_owned();
                    Some((r.record.address.trim_start_matches("Host/").to_owned(), key))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a file is an SSH private key (OpenSSH or PEM), rather than an age identity.
fn is_ssh_private_key(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
            || (text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----"))
    })
}

/// Every instance must have a provider that serves its kind: otherwise the plan is refused
/// with what to do, never applied somewhere else.
fn check_served(loaded: &Loaded, registry: &Registry) -> Result<()> {
    // Each provider describes itself once, not once per instance.
    let served: std::collections::HashSet<(&str, Kind)> = registry
        .names()
        .flat_map(|name| {
            let kinds = registry
                .get(name)
                .map(|p| p.describe().kinds)
                .unwrap_or_default();
            kinds.into_iter().map(move |k| (name, k.kind))
        })
        .collect();
    let mut unserved: BTreeMap<(String, Kind), Vec<&str>> = BTreeMap::new();
    for instance in &loaded.graph.instances {
        if !served.contains(&(instance.provider.as_str(), instance.kind)) {
            unserved
                .entry((instance.provider.clone(), instance.kind))
                .or_default()
                .push(&instance.address);
        }
    }
    if unserved.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::new();
    for ((provider, kind), addresses) in &unserved {
        let shown: Vec<&str> = addresses.iter().take(3).copied().collect();
        let more = addresses.len().saturating_sub(shown.len());
        let why = if registry.get(provider).is_some() {
            format!("provider `{provider}` does not serve {kind} in this release")
        } else {
            format!("it goes to provider `{provider}`, which this release does not have yet")
        };
        lines.push(format!(
            "  {kind}: {why}: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    Err(miette::miette!(
        code = "nimbus::provider::missing",
        help = format!(
            "serve the kind with a provider plugin (the Repository's `providers: [{{name, command, kinds}}]`, see docs/protocol.md), \
                remove those resources, or try the repository on the in-memory provider with {MEMORY_PROVIDER_ENV}=DIR (nothing then reaches a machine)"
        ),
        "no provider serves some of the repository's instances; nothing was planned\n{}",
        lines.join("\n")
    ))
}

/// Finishes the changes an interrupted run started. With the lock (`write`): if the target
/// shows a change was made, it is recorded now; otherwise its intent is dropped and the plan
/// makes it again. Without the lock: what was found is returned, for a read-only plan to
/// count, and nothing is written.
/// Recovers (and records) what an interrupted run left: the notes say what was found.
pub async fn recover(state: &Mutex<StateStore>, registry: &Registry) -> Result<Vec<String>> {
    Ok(recover_intents(state, registry, true).await?.1)
}

async fn recover_intents(
    state: &Mutex<StateStore>,
    registry: &Registry,
    write: bool,
) -> Result<(Vec<Found>, Vec<String>)> {
    let intents = lock_state(state).intents()?;
    let mut found = Vec::new();
    let mut notes = Vec::new();
    for intent in intents {
        let change = intent.change;
        let Some(provider) = registry.get(&change.provider) else {
            if write {
                notes.push(format!(
                    "{} was interrupted under provider `{}`, which this run does not have; it stays pending",
                    change.address, change.provider
                ));
            }
            continue;
        };
        let done = change_took_effect(provider.as_ref(), &change).await;
        if !write {
            if done && let Some(record) = change.record() {
                found.push(Found {
                    record,
                    delete: false,
                });
            } else if done && change.action == Action::Delete {
                found.push(Found {
                    record: Record {
                        address: change.address.clone(),
                        kind: change.kind,
                        applied: serde_json::Value::Null,
                        owned: false,
                        protected: false,
                        keep_on_removal: false,
                        depends_on: Vec::new(),
                        provider: change.provider.clone(),
                        outputs: serde_json::Value::Null,
                        tainted: None,
                    },
                    delete: true,
                });
            }
            continue;
        }
        if done {
            let run = lock_state(state).begin_run("recover", None)?;
            let mut store = lock_state(state);
            store.complete(run, &change, provider.name(), &serde_json::Value::Null)?;
            store.end_run(run, "recovered")?;
            notes.push(format!(
                "recovered {}: it was applied before an interruption; now recorded",
                change.address
            ));
        } else {
            lock_state(state).forget_intent(&change.address)?;
            notes.push(format!(
                "{} was interrupted before it took effect; it is planned again",
                change.address
            ));
        }
    }
    Ok((found, notes))
}

/// Whether the target shows a change made: present as planned, or gone for a delete.
async fn change_took_effect(provider: &dyn Provider, change: &plan::Change) -> bool {
    let observed = executor::observe_one(provider, change).await;
    let schema = provider
        .describe()
        .kinds
        .into_iter()
        .find(|k| k.kind == change.kind)
        .unwrap_or_else(|| plan::KindSchema::default_for(change.kind));
    match (observed, change.action) {
        (Some(Observed::Absent), Action::Delete) => true,
        (Some(Observed::Present(mut value)), action) if action != Action::Delete => {
            let Some(mut after) = change.after.clone() else {
                return false;
            };
            schema.normalize(&mut value);
            schema.normalize(&mut after);
            plan::field_changes(&value, &after, &schema)
                .iter()
                .all(|f| f.sensitive)
        }
        _ => false,
    }
}

/// Observes (unless told not to) and plans.
#[allow(clippy::too_many_arguments)]
pub async fn make_plan(
    loaded: &Loaded,
    records: &[Record],
    recorded_modules: &std::collections::BTreeMap<String, String>,
    serial: u64,
    registry: &Registry,
    options: &PlanOptions,
    secrets: &RunSecrets,
) -> Result<Plan> {
    // Each instance's desired state, resolved once: observed against, then planned.
    let model = &loaded.checked.model;
    // Moves first: what state records at an old address is planned at its new one.
    let (moved_records, moves) = nimbus_planner::modules::moved::plan_moves(
        records,
        recorded_modules,
        &model.moves,
        &nimbus_planner::modules::desired_modules(model),
    )
    .map_err(|e| miette::miette!(code = "nimbus::moved::onto", "{e}"))?;
    let records = &moved_records[..];
    let mut resolution = nimbus_planner::resolve::resolve(
        model,
        &loaded.graph,
        &nimbus_planner::resolve::ResolveInput {
            records,
            sources: &loaded.sources,
            secrets: &secrets.fingerprints,
        },
    );
    let mut observed: HashMap<String, Observed> = if options.refresh && !registry.is_empty() {
        // Recorded instances no longer in git are observed as they were applied.
        let extra: Vec<(String, Kind, serde_json::Value, String)> = records
            .iter()
            .filter(|r| loaded.graph.get(&r.address).is_none())
            .map(|r| {
                (
                    r.address.clone(),
                    r.kind,
                    r.applied.clone(),
                    r.provider.clone(),
                )
            })
            .collect();
        executor::observe(&resolution, &loaded.graph, &extra, registry).await
    } else {
        HashMap::new()
    };
    // Also on stderr, for a run whose stdout is JSON or goes to a file.
    let mut unobserved: Vec<(&String, &String)> = observed
        .iter()
        .filter_map(|(address, o)| match o {
            Observed::Unknown(reason) => Some((address, reason)),
            _ => None,
        })
        .collect();
    unobserved.sort();
    for (address, reason) in unobserved {
        print_stderr(&format!("warning: not observed: {address}: {reason}\n"));
    }
    engine::observed_secret_files(loaded, secrets, &mut observed);
    let input = PlanInput {
        records,
        observed: &observed,
        rules: registry.rules(),
        state_serial: serial,
        source_revision: loaded.revision.clone(),
        source_fingerprint: loaded.fingerprint.clone(),
        targets: &options.targets,
        allow_deletes: options.allow_deletes,
        destroy: options.destroy,
        sources: &loaded.sources,
        secrets: &secrets.fingerprints,
    };
    resolution.settle(model, &loaded.graph, records, &observed);
    let mut plan = plan::plan_resolved(model, &loaded.graph, resolution, &input)?;
    plan.moves = moves;
    tracing::info!(
        create = plan.count(Action::Create),
        update = plan.count(Action::Update),
        replace = plan.count(Action::Replace),
        delete = plan.count(Action::Delete),
        errors = plan.errors().count(),
        observed = input.observed.len(),
        "planned"
    );
    Ok(plan)
}

/// The holder name the `nimbus reconcile` daemon takes the lock as.
pub const DAEMON_HOLDER: &str = "nimbus reconcile";

/// A local command that would take the lock while a `nimbus reconcile` daemon reconciles the
/// same state is refused, naming the daemon and its host; with `--override-daemon` it goes on,
/// and the note its runs record says so and who did it.
fn daemon_at_work(
    store: &StateStore,
    location: &crate::state::StateLocation,
    holder: &str,
    override_daemon: bool,
) -> Result<Option<String>> {
    let daemons = store.daemons()?;
    let Some(daemon) = daemons.first() else {
        return Ok(None);
    };
    let who = format!(
        "nimbus reconcile {} on {} (pid {}, branch {})",
        daemon.replica, daemon.host, daemon.pid, daemon.branch
    );
    if !override_daemon {
        miette::bail!(
            code = "nimbus::state::daemon",
            help = "push to the branch and let the daemon apply it; `nimbus plan` still works; in an emergency, --override-daemon (recorded in the run history)",
            "{location} is reconciled by {who}: `{holder}` here would race it"
        );
    }
    let note = format!(
        "override: {holder} by {}@{} while {who} reconciles this state",
        crate::state::this_user(),
        crate::state::this_host()
    );
    print_stderr(&format!("warning: {note}\n"));
    Ok(Some(note))
}
