//! Observing and applying: the only place that runs providers concurrently.
//!
//! `observe` asks each provider once per target for every instance there. `execute` applies
//! a plan's changes in graph order (the plan already lists deletes first, in reverse), as
//! many at once as `parallelism` allows, retrying transient failures with backoff. A failed
//! change skips only the changes that wait for it. Each result is committed to state the
//! moment it completes. When shutdown is asked for, changes in flight finish and are
//! recorded, and nothing new starts.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_planner::instances::InstanceGraph;
use nimbus_planner::plan::{Action, Change, Observed, Plan};
use nimbus_planner::resolve::Resolution;
use nimbus_providers::{ObserveRequest, ProviderError, Registry};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::state::StateStore;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Failed(String),
    Skipped(String),
    /// Not started: the run was asked to stop.
    NotStarted,
}

#[derive(Clone, Debug)]
pub struct ChangeResult {
    pub address: String,
    pub action: Action,
    pub outcome: Outcome,
    pub attempts: u32,
    pub elapsed: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub results: Vec<ChangeResult>,
    pub interrupted: bool,
}

impl Report {
    /// The closing summary of an apply.
    pub fn summary(&self) -> String {
        self.summary_of("Apply")
    }

    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }

    pub fn succeeded(&self) -> bool {
        !self.interrupted && self.results.iter().all(|r| r.outcome == Outcome::Applied)
    }

    /// The closing summary of `command` (`Apply`, `Destroy`): counts, then every failed and
    /// skipped change with its reason.
    pub fn summary_of(&self, command: &str) -> String {
        let applied = self.count(|o| *o == Outcome::Applied);
        let failed = self.count(|o| matches!(o, Outcome::Failed(_)));
        let skipped = self.count(|o| matches!(o, Outcome::Skipped(_)));
        let not_started = self.count(|o| *o == Outcome::NotStarted);
        let mut out = format!(
            "{command} {}: {applied} applied, {failed} failed, {skipped} skipped",
            if self.succeeded() {
                "complete"
            } else {
                "incomplete"
            }
        );
        if not_started > 0 {
            out.push_str(&format!(", {not_started} not started (interrupted)"));
        }
        out.push_str(".\n");
        for result in &self.results {
            match &result.outcome {
                Outcome::Failed(reason) => out.push_str(&format!(
                    "  failed   {}: {}\n",
                    result.address,
                    unprefixed(&result.address, reason)
                )),
                Outcome::Skipped(reason) => {
                    out.push_str(&format!("  skipped  {}: {reason}\n", result.address))
                }
                _ => {}
            }
        }
        out
    }
}

/// How a run reports its progress on stderr.
#[derive(Clone, Debug, Default)]
pub enum Progress {
    #[default]
    Quiet,
    /// A line per change as it starts and as it ends (logs, CI).
    Lines,
    /// The same lines above a bar for the whole run (a terminal).
    Bar(indicatif::ProgressBar),
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise.
    pub fn for_stderr(total: usize) -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} changes, {elapsed}")
            {
                bar.set_style(style);
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines
        }
    }

    fn line(&self, text: String) {
        match self {
            Progress::Quiet => {}
            Progress::Lines => eprintln!("{text}"),
            Progress::Bar(bar) => bar.println(text),
        }
    }

    fn finished_one(&self) {
        if let Progress::Bar(bar) = self {
            bar.inc(1);
        }
    }

    fn close(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    /// Changes applied at once (`--parallelism`).
    pub parallelism: usize,
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// The first backoff; it doubles with each attempt.
    pub backoff: Duration,
    /// Lines per change and a bar, on stderr.
    pub progress: Progress,
    /// The decrypted secrets of this run, by reference, handed to a provider only inside
    /// the change it applies (never to state, the plan or logs).
    pub secrets: Arc<SecretValues>,
    /// The spec a provider is given, by address, where the plan shows `(sensitive)` for a
    /// field its schema declares sensitive: the value from the revision the plan was made from
    /// (state and logs keep the redacted spec).
    pub sensitive: Arc<HashMap<String, serde_json::Value>>,
    /// The manifests of the plan's resources: a failure that names a field of one is shown
    /// with the file, line and column that write it.
    pub manifests: Arc<nimbus_planner::locate::Manifests>,
}

/// Every secret reference of a run: its value, or why it could not be decrypted.
pub type SecretValues = HashMap<String, Result<crate::secrets::Plaintext, String>>;

impl Default for ExecutorOptions {
    fn default() -> Self {
        ExecutorOptions {
            parallelism: 10,
            retries: 3,
            backoff: Duration::from_millis(200),
            progress: Progress::Quiet,
            secrets: Arc::new(HashMap::new()),
            sensitive: Arc::new(HashMap::new()),
            manifests: Arc::new(Default::default()),
        }
    }
}

/// The change a provider is given: with the values of its secrets in place, at their
/// locations in the spec, when the provider's schema says it delivers them (a File's content
/// over SSH; `{secret, fingerprint}` objects gain `"value"` elsewhere), else as planned. A
/// secret that could not be decrypted fails the change, with the reason.
fn with_secret_values(
    change: &Change,
    provider: &dyn nimbus_providers::Provider,
    secrets: &SecretValues,
) -> Result<Option<Change>, String> {
    let Some(after) = &change.after else {
        return Ok(None);
    };
    let references = nimbus_planner::plan::secret_references(change.kind, after);
    if references.is_empty() {
        return Ok(None);
    }
    let delivers = provider
        .describe()
        .kinds
        .iter()
        .any(|k| k.kind == change.kind && k.delivers_secrets);
    let mut resolved = delivers.then(|| change.clone());
    for (location, reference) in &references {
        let value = match secrets.get(reference) {
            Some(Ok(value)) => value,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(format!("secret `{reference}` was not resolved")),
        };
        let Some(after) = resolved.as_mut().and_then(|c| c.after.as_mut()) else {
            continue;
        };
        let text = value.text().map_err(|e| {
            format!("secret `{reference}` {e}; a secret delivered in a spec must be text")
        })?;
        if change.kind == nimbus_schemas::Kind::File && location == "content" {
            after["content"] = serde_json::Value::String(text.to_owned());
        } else if let Some(serde_json::Value::Object(map)) =
            nimbus_planner::plan::pointer_mut(after, location)
        {
            map.insert("value".into(), serde_json::Value::String(text.to_owned()));
        }
    }
    Ok(resolved)
}

pub fn verb(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("creating", "created"),
        Action::Update => ("updating", "updated"),
        Action::Replace => ("replacing", "replaced"),
        Action::Delete => ("destroying", "destroyed"),
        Action::Read => ("reading", "read"),
        Action::NoOp => ("checking", "checked"),
        Action::Import => ("importing", "imported"),
    }
}

/// The state store, even if a thread panicked while holding it.
pub fn lock_state(state: &Mutex<StateStore>) -> std::sync::MutexGuard<'_, StateStore> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Applies the plan's changes. `shutdown` resolving means: finish what is in flight, start
/// nothing new.
pub async fn execute(
    plan: &Plan,
    registry: &Registry,
    state: Arc<Mutex<StateStore>>,
    run: i64,
    options: &ExecutorOptions,
    shutdown: impl Future<Output = ()>,
) -> Report {
    let changes: Vec<Change> = plan
        .changes
        .iter()
        .filter(|c| c.is_work())
        .cloned()
        .collect();
    let index: HashMap<&str, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.address.as_str(), i))
        .collect();
    // What each change waits for, among the changes of this plan (no-ops are already done).
    let waits_for: Vec<Vec<usize>> = changes
        .iter()
        .map(|c| {
            c.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let mut outcomes: Vec<Option<ChangeResult>> = vec![None; changes.len()];
    let mut remaining: Vec<usize> = waits_for.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); changes.len()];
    for (i, list) in waits_for.iter().enumerate() {
        for &d in list {
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::VecDeque<usize> =
        (0..changes.len()).filter(|&i| remaining[i] == 0).collect();
    // The bound protects the targets (and the provider's connections) from too many changes
    // at once; it is `--parallelism`.
    let permits = Arc::new(Semaphore::new(options.parallelism.max(1)));
    let mut tasks: JoinSet<(usize, ChangeResult)> = JoinSet::new();
    let mut stopping = false;
    // Changes wait for a permit inside their task; those still waiting when a stop is asked
    // for must not start.
    let stop = nimbus_providers::Cancel::new();
    tokio::pin!(shutdown);

    loop {
        while let Some(i) = ready.pop_front().filter(|_| !stopping) {
            let change = changes[i].clone();
            let provider = registry.get(&change.provider).cloned();
            let previous = change
                .previous_provider
                .as_deref()
                .map(|name| registry.get(name).cloned());
            let state = Arc::clone(&state);
            let permits = Arc::clone(&permits);
            let options = options.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if stop.is_cancelled() {
                    let outcome = Outcome::NotStarted;
                    return (
                        i,
                        ChangeResult {
                            address: change.address.clone(),
                            action: change.action,
                            outcome,
                            attempts: 0,
                            elapsed: Duration::ZERO,
                        },
                    );
                }
                let (attempts, outcome, elapsed) =
                    apply_one(&change, provider, previous, &state, run, &options, &stop).await;
                (
                    i,
                    ChangeResult {
                        address: change.address.clone(),
                        action: change.action,
                        outcome,
                        attempts,
                        elapsed,
                    },
                )
            });
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            finished = tasks.join_next() => {
                match finished {
                    Some(Ok((i, result))) => {
                        let applied = result.outcome == Outcome::Applied;
                        let address = result.address.clone();
                        outcomes[i] = Some(result);
                        if applied {
                            for &j in &dependents[i] {
                                remaining[j] -= 1;
                                if remaining[j] == 0 {
                                    ready.push_back(j);
                                }
                            }
                        } else if outcomes[i].as_ref().is_some_and(|r| r.outcome != Outcome::NotStarted) {
                            skip_dependents(i, &address, &dependents, &changes, &mut outcomes, &state, run, &options.progress);
                        }
                    }
                    Some(Err(join_error)) => {
                        // A panicking task is a bug in nimbus; its change is reported failed below.
                        {
                            options.progress.line(format!("  bug in nimbus: a change task ended abnormally: {join_error}"));
                        }
                    }
                    None => break,
                }
            }
            () = &mut shutdown, if !stopping => {
                stopping = true;
                stop.cancel();
                {
                    options.progress.line(format!("  stopping: waiting for {} change(s) in flight; nothing new starts", tasks.len()));
                }
            }
        }
    }
    options.progress.close();
    let results = outcomes
        .into_iter()
        .zip(&changes)
        .map(|(result, change)| {
            result.unwrap_or_else(|| ChangeResult {
                address: change.address.clone(),
                action: change.action,
                outcome: if stopping {
                    Outcome::NotStarted
                } else {
                    Outcome::Failed("bug in nimbus: the change never finished".into())
                },
                attempts: 0,
                elapsed: Duration::ZERO,
            })
        })
        .collect();
    Report {
        results,
        interrupted: stopping,
    }
}

/// Marks every change that waits, directly or not, for `failed` as skipped, and records it.
#[allow(clippy::too_many_arguments)]
fn skip_dependents(
    failed: usize,
    address: &str,
    dependents: &[Vec<usize>],
    changes: &[Change],
    outcomes: &mut [Option<ChangeResult>],
    state: &Mutex<StateStore>,
    run: i64,
    progress: &Progress,
) {
    let mut stack: Vec<(usize, String)> = dependents[failed]
        .iter()
        .map(|&j| (j, address.to_owned()))
        .collect();
    while let Some((j, because)) = stack.pop() {
        if outcomes[j].is_some() {
            continue;
        }
        let change = &changes[j];
        let reason = format!("{because} did not apply");
        let _ = lock_state(state).fail(run, change, "skipped", &reason);
        {
            progress.line(format!("  skipped {}: {reason}", change.address));
        }
        outcomes[j] = Some(ChangeResult {
            address: change.address.clone(),
            action: change.action,
            outcome: Outcome::Skipped(reason),
            attempts: 0,
            elapsed: Duration::ZERO,
        });
        stack.extend(dependents[j].iter().map(|&k| (k, change.address.clone())));
    }
}

/// Applies one change with retries, recording the intent first and the result after.
#[allow(clippy::too_many_arguments)]
async fn apply_one(
    change: &Change,
    provider: Option<Arc<dyn nimbus_providers::Provider>>,
    previous: Option<Option<Arc<dyn nimbus_providers::Provider>>>,
    state: &Mutex<StateStore>,
    run: i64,
    options: &ExecutorOptions,
    stop: &nimbus_providers::Cancel,
) -> (u32, Outcome, Duration) {
    let begun = Instant::now();
    let (doing, done) = verb(change.action);
    {
        options
            .progress
            .line(format!("  {doing} {}", change.address));
    }
    if let Some(error) = &change.error {
        let _ = lock_state(state).fail(run, change, "failed", error);
        options.progress.line(format!(
            "  failed {}: {}",
            change.address,
            unprefixed(&change.address, error)
        ));
        options.progress.finished_one();
        return (0, Outcome::Failed(error.clone()), begun.elapsed());
    }
    let Some(provider) = provider else {
        let reason = format!(
            "no provider `{}` in this run serves {}",
            change.provider, change.kind
        );
        let _ = lock_state(state).fail(run, change, "failed", &reason);
        return (0, Outcome::Failed(reason), begun.elapsed());
    };
    // The values of sensitive fields, for the provider only.
    let given;
    let base = match options.sensitive.get(&change.address) {
        Some(after) => {
            given = Change {
                after: Some(after.clone()),
                ..change.clone()
            };
            &given
        }
        None => change,
    };
    let resolved = match with_secret_values(base, provider.as_ref(), &options.secrets) {
        Ok(resolved) => resolved,
        Err(reason) => {
            let _ = lock_state(state).fail(run, change, "failed", &reason);
            return (0, Outcome::Failed(reason), begun.elapsed());
        }
    };
    if let Err(e) = lock_state(state).intend(run, change) {
        if e.is_fenced() {
            // Another holder took the lock over: nothing more starts in this run.
            stop.cancel();
        }
        return (
            0,
            Outcome::Failed(format!("cannot record the change in state: {e}")),
            begun.elapsed(),
        );
    }
    // Recorded under another provider: deleted there first, then created here.
    let mut change_here = resolved.as_ref().unwrap_or(base);
    let created;
    if let Some(previous) = previous {
        let Some(previous) = previous else {
            let reason = format!(
                "{} is recorded under provider `{}`, which this run does not have: run with it to delete it there, or forget it with `nimbus state rm {}`",
                change.address,
                change.previous_provider.as_deref().unwrap_or_default(),
                change.address
            );
            let _ = lock_state(state).fail(run, change, "failed", &reason);
            return (0, Outcome::Failed(reason), begun.elapsed());
        };
        let delete = Change {
            action: Action::Delete,
            after: None,
            provider: previous.name().to_owned(),
            previous_provider: None,
            ..change.clone()
        };
        if let Err(error) = previous.apply(&delete, stop).await {
            let reason = format!(
                "cannot delete it under provider `{}` first: {error}",
                previous.name()
            );
            let _ = lock_state(state).fail(run, change, "failed", &reason);
            return (1, Outcome::Failed(reason), begun.elapsed());
        }
        created = Change {
            action: Action::Create,
            before: None,
            previous_provider: None,
            ..change_here.clone()
        };
        change_here = &created;
    }
    // An import is recorded as it is, or updated where it differs from its manifest or
    // where its provider marks what it owns.
    let updating;
    if change.action == Action::Import
        && (!change.fields.is_empty() || provider.marks_owned(change.kind))
    {
        updating = Change {
            action: Action::Update,
            ..change_here.clone()
        };
        change_here = &updating;
    }
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        tracing::debug!(address = %change.address, action = ?change.action, attempt = attempts, provider = provider.name(), "applying");
        let applied = if change_here.action == Action::Import {
            Ok(nimbus_providers::Applied::default())
        } else {
            provider.apply(change_here, stop).await
        };
        match applied {
            Ok(applied) => {
                test_pause_after_apply().await;
                break match lock_state(state).complete(
                    run,
                    change,
                    provider.name(),
                    &applied.outputs,
                ) {
                    Ok(()) => Outcome::Applied,
                    Err(e) => {
                        if e.is_fenced() {
                            stop.cancel();
                        }
                        Outcome::Failed(format!("applied, but state could not record it: {e}"))
                    }
                };
            }
            Err(error) if error.is_transient() && attempts <= options.retries => {
                let wait = options.backoff * 2u32.saturating_pow(attempts - 1);
                {
                    options.progress.line(format!(
                        "  retrying {} in {:?}: {error}",
                        change.address, wait
                    ));
                }
                // A stop (Ctrl-C, SIGTERM, or a newer commit superseding this run) ends the
                // wait: a change that has not taken effect is not retried.
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => {}
                }
                if stop.is_cancelled() {
                    let reason = format!("{error}; not retried: the run was stopped");
                    record_failure(state, run, change, provider.as_ref(), &reason).await;
                    break Outcome::Failed(reason);
                }
            }
            Err(error) => {
                let reason = match &error {
                    ProviderError::Transient(_) => {
                        format!("{error}; gave up after {attempts} attempts")
                    }
                    _ => located(&error, change, &options.manifests),
                };
                record_failure(state, run, change, provider.as_ref(), &reason).await;
                break Outcome::Failed(reason);
            }
        }
    };
    let elapsed = begun.elapsed();
    match &outcome {
        Outcome::Applied => {
            tracing::info!(address = %change.address, action = ?change.action, attempts, elapsed_ms = elapsed.as_millis() as u64, "applied")
        }
        Outcome::Failed(reason) => {
            tracing::warn!(address = %change.address, action = ?change.action, attempts, %reason, "failed")
        }
        _ => {}
    }
    match &outcome {
        Outcome::Applied => options.progress.line(format!(
            "  {done} {} ({:.1}s)",
            change.address,
            elapsed.as_secs_f64()
        )),
        Outcome::Failed(reason) => options.progress.line(format!(
            "  failed {}: {}",
            change.address,
            unprefixed(&change.address, reason)
        )),
        _ => {}
    }
    options.progress.finished_one();
    (attempts, outcome, elapsed)
}

/// A failure's sentence; for one caused by a field of the instance's spec, where the manifest
/// writes that field (`... (at tenants/acme/api.yaml:6:10, spec.image)`).
fn located(
    error: &ProviderError,
    change: &Change,
    manifests: &nimbus_planner::locate::Manifests,
) -> String {
    match error.field_name() {
        Some(field) => match manifests.field(&change.resource, field) {
            Some(at) => format!("{error} (at {at}, spec.{field})"),
            None => format!("{error} (spec.{field})"),
        },
        None => error.to_string(),
    }
}

/// What the target shows of a change's instance now; `None` when it cannot be observed.
pub async fn observe_one(
    provider: &dyn nimbus_providers::Provider,
    change: &Change,
) -> Option<Observed> {
    let host = target_of(&change.address);
    let request = ObserveRequest {
        address: change.address.clone(),
        kind: change.kind,
        desired: change.after.clone(),
    };
    provider
        .observe(host.as_deref(), std::slice::from_ref(&request))
        .await
        .ok()
        .and_then(|o| o.into_iter().next())
        .map(|(_, o)| o)
}

/// Records a change that failed. A create (or the create of a replace) that failed having made
/// its instance (the target shows it now) keeps it in state, tainted: the next plan replaces
/// it, and removing its manifest deletes it, instead of leaving it behind unknown to nimbus.
async fn record_failure(
    state: &Mutex<StateStore>,
    run: i64,
    change: &Change,
    provider: &dyn nimbus_providers::Provider,
    reason: &str,
) {
    if matches!(change.action, Action::Create | Action::Replace)
        && matches!(
            observe_one(provider, change).await,
            Some(Observed::Present(_))
        )
    {
        let _ = lock_state(state).taint(run, change, provider.name(), reason);
        return;
    }
    let _ = lock_state(state).fail(run, change, "failed", reason);
}

/// For crash tests: `NIMBUS_TEST_PAUSE_AFTER_APPLY_MS` holds each change between taking
/// effect and being recorded, so that a test can kill nimbus in that window.
async fn test_pause_after_apply() {
    if let Some(ms) = std::env::var("NIMBUS_TEST_PAUSE_AFTER_APPLY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// A failure's reason after its instance's address: providers name the instance in their
/// reasons (the contract asks it), and the line already starts with it.
fn unprefixed<'a>(address: &str, reason: &'a str) -> &'a str {
    reason
        .strip_prefix(address)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(reason)
}

/// The target an instance is observed on: its host for per-host instances, the Host itself
/// for a Host, and none (cluster-level) otherwise.
pub fn target_of(address: &str) -> Option<String> {
    nimbus_schemas::Address::target_of(address)
}

/// What every provider observes of the model's instances, each against its desired state as
/// resolved (and of recorded instances no longer in git, with the spec they were applied
/// with): one call per provider and target. An unreachable target leaves its instances
/// unknown and is reported.
pub async fn observe(
    resolution: &Resolution,
    graph: &InstanceGraph,
    extra: &[(String, nimbus_schemas::Kind, serde_json::Value, String)],
    registry: &Registry,
) -> HashMap<String, Observed> {
    let mut batches: BTreeMap<(String, Option<String>), Vec<ObserveRequest>> = BTreeMap::new();
    for (i, instance) in graph.instances.iter().enumerate() {
        let (Some(provider), Some(desired)) = (registry.get(&instance.provider), resolution.get(i))
        else {
            continue;
        };
        batches
            .entry((provider.name().to_owned(), target_of(&instance.address)))
            .or_default()
            .push(ObserveRequest {
                address: instance.address.clone(),
                kind: instance.kind,
                desired: Some(desired.observing()),
            });
    }
    for (address, kind, applied, provider) in extra {
        let Some(provider) = registry.get(provider) else {
            continue;
        };
        batches
            .entry((provider.name().to_owned(), target_of(address)))
            .or_default()
            .push(ObserveRequest {
                address: address.clone(),
                kind: *kind,
                desired: Some(applied.clone()),
            });
    }
    let mut observed = HashMap::new();
    let mut tasks = JoinSet::new();
    for ((name, host), batch) in batches {
        let Some(provider) = registry.get(&name).cloned() else {
            continue;
        };
        tasks.spawn(async move {
            // Transports retry what is worth retrying (SSH connects with backoff); what still
            // fails leaves the batch not observed.
            let result = provider.observe(host.as_deref(), &batch).await;
            (host, batch, result)
        });
    }
    while let Some(Ok((host, batch, result))) = tasks.join_next().await {
        observed.extend(answers(host.as_deref(), batch, result));
    }
    observed
}

/// A batch's observations by address: every instance asked about is answered, as the
/// provider saw it or as unknown with why (the provider failed, skipped it, or gave no reason).
fn answers(
    host: Option<&str>,
    batch: Vec<ObserveRequest>,
    result: Result<Vec<(String, Observed)>, ProviderError>,
) -> HashMap<String, Observed> {
    let mut out = HashMap::new();
    match result {
        Ok(list) => {
            let mut list: HashMap<String, Observed> = list.into_iter().collect();
            for request in batch {
                let observed = match list.remove(&request.address) {
                    Some(Observed::Unknown(reason)) if reason.trim().is_empty() => {
                        Observed::Unknown("its provider could not observe it".into())
                    }
                    Some(observed) => observed,
                    None => Observed::Unknown("its provider did not answer for it".into()),
                };
                out.insert(request.address, observed);
            }
        }
        Err(error) => {
            let reason = match host {
                Some(host) => format!("cannot observe {host}: {error}"),
                None => error.to_string(),
            };
            for request in batch {
                out.insert(request.address, Observed::Unknown(reason.clone()));
            }
        }
    }
    out
}
