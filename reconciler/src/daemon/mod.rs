//! The GitOps daemon behind `nimbus reconcile`: the fetch loop, one run per new commit (and
//! per drift check) through the operations session, and the HTTP side: `http` (routes),
//! `status` (what /status and /metrics say), `webhook` (signature checks), and the pages
//! people read: `estate` (every instance's health), `graph` (the estate as SVG), `page`.

pub mod estate;
pub mod graph;
mod http;
mod links;
pub mod notify;
pub mod page;
pub mod status;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::plan::Action;
use serde_json::json;
use tokio::sync::Notify;

use crate::engine::{self, PlanOptions};
use crate::ops::{Session, SessionOptions};
use crate::render::problems_text;
use status::Status;

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Where commits come from.
enum Source {
    /// A local repository, read in place.
    Local(PathBuf),
    /// A remote one, mirrored in the cache.
    Remote(crate::gitsource::Mirror),
}

impl Source {
    fn repository(&self) -> &Path {
        match self {
            Source::Local(path) => path,
            Source::Remote(mirror) => &mirror.path,
        }
    }

    fn tip(&self, branch: &str) -> Result<String> {
        match self {
            Source::Local(path) => crate::gitsource::branch_tip(path, branch),
            Source::Remote(mirror) => mirror.fetch(branch),
        }
    }
}

/// What the daemon is told to do: the command line's `nimbus reconcile` flags, as the daemon
/// takes them (the command converts its arguments; tests and embedders make one directly).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The config repository: a URL fetched into a cache, or a local git repository.
    pub repo: String,
    pub branch: String,
    /// How often to fetch (jittered by up to a tenth).
    pub interval: Duration,
    /// How often to observe and correct drift.
    pub drift_interval: Duration,
    /// Where the HTTP endpoints listen.
    pub listen: String,
    /// The webhook secret's file; none: webhooks are refused.
    pub webhook_secret_file: Option<PathBuf>,
    /// The bearer token's file; none: the pages are open.
    pub token_file: Option<PathBuf>,
    /// Where state and the in-memory provider live.
    pub workdir: PathBuf,
    /// Where remote repositories are mirrored.
    pub cache: Option<PathBuf>,
    /// For an ssh:// remote: the known_hosts file that pins the git server's key.
    pub known_hosts: Option<PathBuf>,
    /// For an ssh:// remote: the private key to log in with.
    pub ssh_key: Option<PathBuf>,
    /// The identity that decrypts secrets (and, an SSH key, logs in to hosts).
    pub identity: Option<PathBuf>,
    /// The forge whose commits get a status per run.
    pub forge: Option<crate::forge::Forge>,
    /// How people reach the pages (links in statuses and notifications).
    pub public_url: Option<String>,
}

pub fn run(args: Settings) -> Result<i32> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(daemon(args))
}

async fn daemon(args: Settings) -> Result<i32> {
    let source = if args.repo.contains("://") {
        let cache = args
            .cache
            .clone()
            .unwrap_or_else(|| args.workdir.join(".nimbus/cache"));
        let url = args.repo.clone();
        let ssh_command = if url.starts_with("ssh://") {
            let known_hosts = args.known_hosts.as_deref().ok_or_else(|| {
                miette::miette!(
                    "{url}: an ssh:// remote needs --known-hosts FILE, which pins the git server's host key (it is never trusted on first use)"
                )
            })?;
            let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
            Some(crate::gitsource::pinned_ssh_command(
                &absolute(known_hosts),
                args.ssh_key.as_deref().map(absolute).as_deref(),
            ))
        } else {
            None
        };
        let mirror = tokio::task::spawn_blocking(move || {
            crate::gitsource::Mirror::open(&url, &cache, ssh_command)
        })
        .await
        .into_diagnostic()??;
        Source::Remote(mirror)
    } else {
        Source::Local(PathBuf::from(&args.repo))
    };
    let source = Arc::new(source);
    let read = |path: &Option<PathBuf>, what: &'static str| {
        path.as_deref()
            .map(|p| http::read_secret(p, what))
            .transpose()
    };
    let secret = read(&args.webhook_secret_file, "webhook secret")?;
    let token = read(&args.token_file, "bearer token")?;
    let status = Arc::new(Mutex::new(Status::default()));
    let wake = Arc::new(Notify::new());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {}", args.listen))?;
    crate::render::print_stderr(&format!(
        "nimbus reconcile: {} ({}), listening on http://{}\n",
        args.repo,
        args.branch,
        listener.local_addr().into_diagnostic()?
    ));
    tokio::spawn(http::accept_loop(
        listener,
        Arc::new(http::Front {
            status: Arc::clone(&status),
            wake: Arc::clone(&wake),
            secret,
            token,
            workdir: args.workdir.clone(),
        }),
        std::future::pending(),
    ));
    // SIGTERM or Ctrl-C: an input to every phase. What is under way stops at the next step
    // (a fetch, load, observation or plan is abandoned; changes in flight finish and are
    // recorded), and nothing new starts.
    let shutdown = nimbus_providers::Cancel::new();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .into_diagnostic()?;
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("asked to stop");
            shutdown.cancel();
        });
    }
    // Events to the Repository's receivers, from an outbox that outlives a restart.
    notify::Notifier::new(&args.workdir).spawn(shutdown.clone());
    let mut last_drift = Instant::now();
    let mut first = true;
    let presence = Presence::new(&args);
    tokio::spawn(keep_leadership(
        presence.clone(),
        Arc::clone(&status),
        Arc::clone(&wake),
        shutdown.clone(),
    ));
    loop {
        if !first {
            let jitter = args.interval.mul_f64(jitter_fraction() * 0.1);
            // Wake for the next fetch, or for the next drift check if that comes first.
            let drift_in = args.drift_interval.saturating_sub(last_drift.elapsed());
            tokio::select! {
                () = tokio::time::sleep((args.interval + jitter).min(drift_in)) => {}
                () = wake.notified() => {}
                () = shutdown.cancelled() => break,
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        first = false;
        let started = Instant::now();
        let branch = args.branch.clone();
        let fetching = Arc::clone(&source);
        let fetch = async {
            test_pause("fetch").await;
            tokio::task::spawn_blocking(move || fetching.tip(&branch)).await
        };
        let tip = tokio::select! {
            tip = fetch => tip.into_diagnostic()?,
            // The fetch's thread is left to end on its own; nothing reads what it fetched.
            () = shutdown.cancelled() => break,
        };
        let fetched = started.elapsed().as_secs_f64();
        let commit = {
            let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
            status.fetch_seconds.observe(fetched);
            match tip {
                Ok(commit) => {
                    status.fetch_error = None;
                    commit
                }
                Err(e) => {
                    status.fetch_error = Some(format!("{e:?}"));
                    tracing::warn!(error = %e, "fetch failed");
                    continue;
                }
            }
        };
        if status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .state_path
            .is_none()
        {
            // After a restart, /status shows what state remembers until the first run ends.
            if let Ok(path) =
                engine::state_location_of(source.repository(), Some(&commit), &args.workdir)
            {
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fill_from_state(&path);
            }
        }
        // The state learns (again) that this daemon reconciles it: local applies are refused.
        let location = status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .state_path
            .clone();
        if let Some(location) = location {
            let presence = presence.clone();
            let shared = Arc::clone(&status);
            let standby = tokio::task::spawn_blocking(move || {
                let store = match crate::state::StateStore::open(&location) {
                    Ok(store) => store,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the state to tell who leads");
                        return false;
                    }
                };
                presence.announce(&store);
                // Only the leader fetches on and applies; a standby keeps its pages fresh
                // from the shared state.
                let role = presence.claim(&store, &shared);
                let standby = role.as_ref().is_some_and(status::Role::is_standby);
                if standby {
                    shared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .fill_from(&store);
                }
                standby
            })
            .await
            .unwrap_or(false);
            if standby {
                continue;
            }
        }
        let (seen, applied) = {
            let status = status.lock().unwrap_or_else(|e| e.into_inner());
            (
                status.revision_seen.clone(),
                status.revision_applied.clone(),
            )
        };
        let drift_due = last_drift.elapsed() >= args.drift_interval;
        // The pages name commits by subject, author and time: each read once, from git,
        // without holding the status that the HTTP side reads.
        let unknown: Vec<String> = {
            let status = status.lock().unwrap_or_else(|e| e.into_inner());
            [Some(&commit), applied.as_ref()]
                .into_iter()
                .flatten()
                .filter(|id| !status.commits.contains_key(*id))
                .cloned()
                .collect()
        };
        for id in unknown {
            if let Some(info) = crate::gitsource::commit_info(source.repository(), &id) {
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .commits
                    .insert(id, info);
            }
        }
        if seen.as_deref() != Some(commit.as_str()) {
            status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .revision_seen = Some(commit.clone());
            reconcile(&args, &source, &commit, &status, false, &wake, &shutdown).await;
            last_drift = Instant::now();
        } else if drift_due && let Some(applied) = applied {
            reconcile(&args, &source, &applied, &status, true, &wake, &shutdown).await;
            last_drift = Instant::now();
        } else if drift_due
            && let Some(seen) = seen
            && shared_state(&status)
        {
            // Nothing applied yet by this daemon, one of several on a shared state (a standby
            // that took over from a leader that died, and whose first run failed): the branch
            // head is tried again rather than left until the next push.
            reconcile(&args, &source, &seen, &status, false, &wake, &shutdown).await;
            last_drift = Instant::now();
        }
    }
    let location = status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .state_path
        .clone();
    if let Some(location) = location {
        let _ = tokio::task::spawn_blocking(move || presence.retire(&location)).await;
    }
    crate::render::print_stderr("nimbus reconcile: stopped\n");
    Ok(0)
}

/// What this daemon tells the state of itself: who it is, where, which branch, until when;
/// and its claim to lead the daemons on that state.
#[derive(Clone)]
struct Presence {
    info: crate::state::DaemonInfo,
    /// How long its word holds after each fetch: three fetch intervals and half a minute.
    hold: Duration,
    /// The leader's lease (renewed at a third of it): a standby takes over within it once
    /// the leader is gone. Also the lease of the lock the leader's runs take.
    lease: Duration,
}

/// The default lease of a leader and of its runs' lock: a standby takes over within this
/// (and a third of it) of the leader's death.
pub const LEADER_LEASE: Duration = Duration::from_secs(10);

/// The leader's lease: [`LEADER_LEASE`], or `NIMBUS_LEADER_LEASE_SECS`.
pub fn leader_lease() -> Duration {
    std::env::var("NIMBUS_LEADER_LEASE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(LEADER_LEASE, Duration::from_secs)
}

/// Renews this daemon's leadership (or tries to take it) every third of the lease, also
/// while a run is under way; a standby that becomes leader, and a leader that a standby asked
/// to fetch (a webhook it received), fetch at once.
async fn keep_leadership(
    presence: Presence,
    status: Arc<Mutex<Status>>,
    wake: Arc<Notify>,
    shutdown: nimbus_providers::Cancel,
) {
    let mut wakes_seen: Option<i64> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(presence.lease / 3) => {}
            () = shutdown.cancelled() => return,
        }
        let location = status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .state_path
            .clone();
        let Some(location) = location else { continue };
        let was_standby = status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .role
            .as_ref()
            .is_some_and(status::Role::is_standby);
        let (presence_now, status_now) = (presence.clone(), Arc::clone(&status));
        let checked = tokio::task::spawn_blocking(move || {
            let store = crate::state::StateStore::open(&location).ok()?;
            let role = presence_now.claim(&store, &status_now);
            Some((role, store.wake_requests().ok()))
        })
        .await;
        let Ok(Some((role, wakes))) = checked else {
            continue;
        };
        let leading = role.as_ref().is_some_and(|r| !r.is_standby());
        if leading && was_standby {
            wake.notify_one();
        }
        if leading
            && let (Some(seen), Some(now)) = (wakes_seen, wakes)
            && now > seen
        {
            // A standby received a push for the leader.
            wake.notify_one();
        }
        if wakes.is_some() {
            wakes_seen = wakes;
        }
    }
}

impl Presence {
    fn new(args: &Settings) -> Presence {
        let host = crate::state::this_host();
        let pid = std::process::id();
        Presence {
            info: crate::state::DaemonInfo {
                replica: std::env::var("NIMBUS_REPLICA")
                    .ok()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| format!("{host}:{pid}")),
                host,
                pid,
                branch: args.branch.clone(),
                url: Some(format!("http://{}", args.listen)),
                since: now() as i64,
                seen_until: 0,
            },
            hold: args.interval * 3 + Duration::from_secs(30),
            lease: leader_lease(),
        }
    }

    /// Claims (or renews) leadership on `store`; the role goes to `status`.
    fn claim(
        &self,
        store: &crate::state::StateStore,
        status: &Mutex<Status>,
    ) -> Option<status::Role> {
        let claimed = store.claim_leadership(&self.info, self.lease);
        let role = match claimed {
            Ok(crate::state::Leadership::Leading { token, took_over }) => {
                if let Some(previous) = took_over {
                    tracing::info!(previous = %previous.replica, token, "leading: the previous leader's lease ran out");
                }
                status::Role::Leader {
                    replica: self.info.replica.clone(),
                    token,
                }
            }
            Ok(crate::state::Leadership::Following(leader)) => status::Role::Standby {
                replica: self.info.replica.clone(),
                leader,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell who leads");
                return None;
            }
        };
        // The fetch loop and the lease's renewal both claim: whichever sees a standby become
        // the leader tells it, once.
        let was_standby = {
            let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
            let was = status.role.as_ref().is_some_and(status::Role::is_standby);
            status.role = Some(role.clone());
            was
        };
        if was_standby && !role.is_standby() {
            tracing::info!("took over as leader");
            notify::notify(notify::Event::new(
                nimbus_schemas::EventKind::LeaderChanged,
                format!(
                    "{} on {} leads now",
                    self.info.replica,
                    crate::state::this_host()
                ),
            ));
        }
        Some(role)
    }

    fn announce(&self, store: &crate::state::StateStore) {
        let info = crate::state::DaemonInfo {
            seen_until: now() as i64 + self.hold.as_secs() as i64,
            ..self.info.clone()
        };
        match store.announce_daemon(&info) {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "cannot tell the state this daemon reconciles it"),
        }
    }

    fn retire(&self, location: &crate::state::StateLocation) {
        if let Ok(store) = crate::state::StateStore::open(location) {
            let _ = store.retire_daemon(&self.info.replica);
            let _ = store.step_down(&self.info.replica);
        }
    }
}

/// Whether this daemon's state is shared (PostgreSQL): replicas may take over from each other.
fn shared_state(status: &Mutex<Status>) -> bool {
    status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .state_path
        .as_ref()
        .is_some_and(crate::state::StateLocation::is_shared)
}

fn jitter_fraction() -> f64 {
    crate::secrets::random_key()
        .map(|k| f64::from(k[0]) / 255.0)
        .unwrap_or(0.5)
}

/// Validates, plans and applies `commit`; with `drift`, the applied revision again, counting
/// what had drifted.
async fn reconcile(
    args: &Settings,
    source: &Arc<Source>,
    commit: &str,
    status: &Mutex<Status>,
    drift: bool,
    wake: &Arc<Notify>,
    shutdown: &nimbus_providers::Cancel,
) {
    let started = Instant::now();
    let stop = RunStop {
        shutdown,
        applying: AtomicBool::new(false),
    };
    let outcome = tokio::select! {
        outcome = apply_commit(args, source, commit, status, drift, wake, &stop) => outcome,
        // Asked to stop before anything was applied: the run does not start (load, observe
        // and plan are abandoned at their next step; no lock or state is left behind).
        () = stop.before_apply() => {
            tracing::info!(revision = %commit, "stopped before applying");
            return;
        }
    };
    let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
    status
        .run_durations
        .observe(started.elapsed().as_secs_f64());
    let label = match &outcome {
        Ok(true) => "succeeded",
        Ok(false) => "failed",
        Err(_) => "invalid",
    };
    *status.runs_by_outcome.entry(label.to_owned()).or_default() += 1;
    if let Err(e) = outcome {
        tracing::warn!(revision = %commit, "not applied");
        let mut event = notify::Event::new(
            nimbus_schemas::EventKind::CommitRefused,
            format!(
                "{} was not applied: {}",
                &commit[..commit.len().min(12)],
                e.lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
            ),
        );
        event.revision = Some(commit.to_owned());
        args.commit_status(
            commit,
            crate::forge::State::Failure,
            event.message.clone(),
            None,
        );
        notify::notify(event);
        status.errors = vec![e];
    }
}

/// A stop (SIGTERM, Ctrl-C) as one run sees it: before the run applies anything, the run is
/// abandoned; once it applies, the executor stops it (changes in flight finish and are
/// recorded).
struct RunStop<'a> {
    shutdown: &'a nimbus_providers::Cancel,
    /// The run has begun applying.
    applying: AtomicBool,
}

impl RunStop<'_> {
    /// Completes once a stop is asked for while the run has not begun applying.
    async fn before_apply(&self) {
        self.shutdown.cancelled().await;
        if self.applying.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

/// For tests of shutdown: `NIMBUS_TEST_PAUSE_PHASE=fetch:MS` holds that phase of the daemon's
/// loop for MS milliseconds, so that a test can signal it there.
async fn test_pause(phase: &str) {
    if let Some(ms) = std::env::var("NIMBUS_TEST_PAUSE_PHASE").ok().and_then(|v| {
        v.strip_prefix(phase)
            .and_then(|r| r.strip_prefix(':'))
            .and_then(|ms| ms.parse::<u64>().ok())
    }) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Ok(succeeded) when the commit was planned and applied; Err(diagnostics) when it does not
/// validate or cannot be planned (nothing is applied).
async fn apply_commit(
    args: &Settings,
    source: &Arc<Source>,
    commit: &str,
    status: &Mutex<Status>,
    drift: bool,
    wake: &Arc<Notify>,
    stop: &RunStop<'_>,
) -> std::result::Result<bool, String> {
    test_pause("load").await;
    // One load: the commit validated, and ready to plan if it does.
    let loaded = match engine::load_checked(source.repository(), Some(commit), &args.workdir) {
        Err(e) => return Err(format!("{e:?}")),
        Ok(Err(invalid)) => {
            return Err(problems_text(
                &invalid.checked.problems,
                &invalid.checked.model.sources,
                false,
            ));
        }
        Ok(Ok(loaded)) => loaded,
    };
    // Signed commits: the policy in force (else the commit's own, for the first one).
    let own = loaded.repository().map_or((false, Vec::new()), |r| {
        (
            r.policy.require_signed_commits,
            r.policy.allowed_signers.clone(),
        )
    });
    let in_force = status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .policy
        .clone();
    let (required, signers) = match in_force {
        Some((required, signers)) => (required || own.0, signers),
        None => own.clone(),
    };
    if required && !drift {
        let signer =
            crate::gitsource::verify_commit_signature(source.repository(), commit, &signers)
                .map_err(|e| format!("refused: {e}; the last good revision stays in force"))?;
        tracing::info!(revision = %commit, %signer, "signature verified");
    }
    // The receivers of the revision in force (a refused commit is told to the last ones).
    if let Some(notifier) = notify::notifier() {
        notifier.set_targets(notify::targets_of(&loaded, args.identity.as_deref()));
    }
    let environment = loaded.checked.model.environment.clone();
    let parallelism = loaded.parallelism();
    // The session every apply opens: lock, providers, recovery of an interrupted run (this
    // daemon's own, killed), state, secrets.
    let session = Session::open(
        loaded,
        SessionOptions {
            lock_lease: Some(leader_lease()),
            ..SessionOptions::for_command(Some(crate::ops::DAEMON_HOLDER), args.identity.as_deref())
        },
    )
    .await
    .map_err(|e| format!("{e:?}"))?;
    let options = PlanOptions {
        refresh: true,
        ..PlanOptions::default()
    };
    test_pause("plan").await;
    let plan = session.plan(&options).await.map_err(|e| format!("{e:?}"))?;
    if stop.shutdown.is_cancelled() {
        // Planned, but asked to stop: nothing starts (the caller ends the run).
        std::future::pending::<()>().await;
    }
    // From here the executor stops the run (changes in flight finish and are recorded).
    stop.applying.store(true, Ordering::SeqCst);
    {
        let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
        status.notes = session.notes.clone();
        status.state_path = Some(session.state_location.clone());
        status.rules = session.registry.rules().clone();
        status.estate.planned(&plan, commit, drift, now());
    }
    let changes = plan.changes.iter().filter(|c| c.action.is_change()).count();
    let report = if plan.has_work() {
        Some(
            session
                .apply(
                    &plan,
                    if drift {
                        "reconcile (drift)"
                    } else {
                        "reconcile"
                    },
                    parallelism,
                    {
                        let newer = newer_commit(
                            Arc::clone(source),
                            args.branch.clone(),
                            commit.to_owned(),
                            Arc::clone(wake),
                            args.interval,
                        );
                        async move {
                            tokio::select! {
                                () = newer => {}
                                () = stop.shutdown.cancelled() => {}
                            }
                        }
                    },
                )
                .await
                .map_err(|e| format!("{e:?}"))?,
        )
    } else {
        // A new commit with nothing to change is still recorded as a run, with its revision
        // (a drift check that finds nothing is not).
        if !drift {
            let store = crate::executor::lock_state(&session.state);
            let run = store
                .begin_run("reconcile", Some(commit))
                .map_err(|e| e.to_string())?;
            store.end_run(run, "succeeded").map_err(|e| e.to_string())?;
        }
        None
    };
    let run_id = crate::executor::lock_state(&session.state)
        .recent_runs(1)
        .ok()
        .and_then(|runs| runs.first().map(|r| r.id));
    if let Some(report) = &report {
        let run = run_id;
        status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .estate
            .applied(&plan, report, run, commit, drift, now());
    }
    // What could not be observed was not applied: the commit is not yet applied in full.
    let succeeded = report.as_ref().is_none_or(|r| r.succeeded())
        && plan.errors().next().is_none()
        && plan.unobserved.is_empty()
        && session.plugin_errors == 0;
    let superseded = report.as_ref().is_some_and(|r| r.interrupted);
    // The hosts' facts and load, from their agents, for /metrics and the pages.
    let loads = session.host_loads().await;
    let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
    status.errors.clear();
    if drift {
        status.drift_events += plan.changes.iter().filter(|c| c.action.is_change()).count() as u64;
    }
    if let Some(report) = &report {
        for result in &report.results {
            let outcome = match &result.outcome {
                crate::executor::Outcome::Applied => "applied",
                crate::executor::Outcome::Failed(_) => "failed",
                crate::executor::Outcome::Skipped(_) => "skipped",
                crate::executor::Outcome::NotStarted => "not started",
            };
            status
                .resources
                .insert(result.address.clone(), outcome.to_owned());
        }
    }
    for unobserved in &plan.unobserved {
        status
            .resources
            .insert(unobserved.address.clone(), "unknown".to_owned());
    }
    for change in plan.changes.iter().filter(|c| c.action == Action::NoOp) {
        status
            .resources
            .entry(change.address.clone())
            .or_insert_with(|| "in sync".to_owned());
    }
    if succeeded {
        status.revision_applied = Some(commit.to_owned());
        status.applied_at = Some(now());
        status.policy = Some(own);
        status.head_failed = None;
    } else if !drift {
        // Unplannable instances fail in the run too, when it has one.
        let failed = report
            .as_ref()
            .map_or(0, |r| {
                r.count(|o| matches!(o, crate::executor::Outcome::Failed(_)))
            })
            .max(plan.errors().count());
        let mut message = format!(
            "applied with failures: {failed} instance{} failed",
            if failed == 1 { "" } else { "s" }
        );
        if !plan.unobserved.is_empty() {
            message.push_str(&format!(
                ", {} not observed ({})",
                plan.unobserved.len(),
                plan.unobserved
                    .iter()
                    .map(|u| u.address.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        status.head_failed = Some((commit.to_owned(), message));
    }
    if !drift {
        args.commit_status(
            commit,
            if succeeded {
                crate::forge::State::Success
            } else {
                crate::forge::State::Failure
            },
            if succeeded {
                format!("applied: {changes} changes")
            } else {
                status
                    .head_failed
                    .as_ref()
                    .map_or_else(|| "applied with failures".to_owned(), |(_, m)| m.clone())
            },
            report.as_ref().and(run_id),
        );
    }
    notify::notify_run(
        &notify::NotifiedRun {
            commit,
            drift,
            changes,
            succeeded,
            environment: environment.as_deref(),
            run: report.as_ref().and(run_id),
            failure: status.head_failed.as_ref().map(|(_, m)| m.as_str()),
            url: report.as_ref().and(run_id).map(|id| args.run_url(id)),
        },
        report.as_ref(),
    );
    status.hosts = loads;
    status.hosts_at = Some(now());
    status.last_run = Some(json!({
        "revision": commit,
        "drift": drift,
        "changes": changes,
        "succeeded": succeeded,
        "summary": report.as_ref().map(|r| r.summary()),
        "interrupted": superseded,
        "at": now(),
    }));
    Ok(succeeded)
}

/// Completes when the branch moves past `commit` (checked on every webhook and every
/// interval while a run is under way): a newer commit supersedes the run, whose changes
/// waiting on retries then give up, so that the newer one is applied at once.
async fn newer_commit(
    source: Arc<Source>,
    branch: String,
    commit: String,
    wake: Arc<Notify>,
    interval: Duration,
) {
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
        let source = Arc::clone(&source);
        let branch = branch.clone();
        let tip = tokio::task::spawn_blocking(move || source.tip(&branch)).await;
        if let Ok(Ok(tip)) = tip
            && tip != commit
        {
            // The main loop fetches again at once.
            wake.notify_one();
            return;
        }
    }
}
