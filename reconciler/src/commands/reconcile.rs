//! `nimbus reconcile --repo URL|DIR --branch main`: the GitOps daemon. It fetches the branch
//! (every `--interval`, jittered, and at once when a verified webhook arrives), validates,
//! plans and applies each new commit under the state lock, keeps the last good revision in
//! force when a commit does not validate, corrects drift every `--drift-interval`, and serves
//! its status, runs and metrics on `--listen`. SIGTERM: the changes under way finish and are
//! recorded, then it exits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::plan::Action;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::engine::{self, PlanOptions};
use crate::ops::{Session, SessionOptions};
use crate::render::problems_text;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The config repository: a URL (file://, git://, http(s)://) fetched into a cache, or a
    /// local git repository read in place.
    #[arg(long)]
    pub repo: String,
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// How often to fetch, e.g. 30s, 5m (jittered by up to a tenth).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How often to observe and correct drift.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub drift_interval: Duration,
    /// Where the status, runs, metrics and webhook endpoints listen.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// A file holding the webhook secret; without it, POST /hooks/git is refused.
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// The directory state and the in-memory provider live in (the Repository's state.path
    /// is relative to it).
    #[arg(long, default_value = ".")]
    pub workdir: PathBuf,
    /// Where remote repositories are mirrored.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// For an ssh:// remote: the known_hosts file that pins the git server's key (required;
    /// a key is never trusted on first use).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// For an ssh:// remote: the private key to log in with (else ssh's defaults and agent).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// The age identity that decrypts secrets (else NIMBUS_AGE_IDENTITY, else the
    /// Repository's secrets.identityFile); an SSH key also logs in to hosts.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

/// `30s`, `5m`, `1h`, `250ms` or plain seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| (&text[..at], &text[at..]));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (30s, 5m, 1h, 250ms)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if seconds <= 0.0 {
        return Err(format!("`{text}` must be more than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What the daemon knows, for /status and /metrics.
#[derive(Default)]
struct Status {
    revision_seen: Option<String>,
    revision_applied: Option<String>,
    applied_at: Option<f64>,
    last_run: Option<Value>,
    /// Diagnostics of the newest commit, when it does not validate (it is then not applied).
    errors: Vec<String>,
    /// Instance address → last outcome.
    resources: BTreeMap<String, String>,
    drift_events: u64,
    runs_by_outcome: BTreeMap<String, u64>,
    run_durations: Vec<f64>,
    fetch_seconds: Vec<f64>,
    fetch_error: Option<String>,
    webhooks_refused: u64,
    /// The signature policy of the revision in force: (required, allowed signers). A new
    /// commit is held to it, so that it cannot lift the policy or add its own signer.
    policy: Option<(bool, Vec<String>)>,
    /// Where the Repository keeps state (its `state.path`), once a revision named it.
    state_path: Option<PathBuf>,
    /// What the reader must know first (the in-memory provider is in use).
    notes: Vec<String>,
}

impl Status {
    /// What state remembers of earlier runs, so that /status is not empty after a restart:
    /// the last revision applied, the last run, and every instance recorded.
    fn fill_from_state(&mut self, state_path: &Path) {
        self.state_path = Some(state_path.to_owned());
        let Ok(store) = crate::state::StateStore::open(state_path) else {
            return;
        };
        if let Ok(history) = store.history() {
            if let Some(run) = history.last() {
                self.last_run = Some(json!({
                    "id": run.id,
                    "command": run.command,
                    "revision": run.revision,
                    "outcome": run.outcome,
                    "at": run.ended_at.unwrap_or(run.started_at),
                    "from_state": true,
                }));
            }
            if let Some(run) = history
                .iter()
                .rev()
                .find(|r| r.revision.is_some() && r.outcome.as_deref() == Some("succeeded"))
            {
                self.revision_applied.clone_from(&run.revision);
                self.applied_at = run.ended_at.map(|t| t as f64);
            }
        }
        if let Ok(resources) = store.resources() {
            for resource in resources {
                self.resources
                    .entry(resource.record.address)
                    .or_insert_with(|| "applied".to_owned());
            }
        }
    }
}

const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

fn histogram(out: &mut String, name: &str, help: &str, values: &[f64]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for bucket in BUCKETS {
        let count = values.iter().filter(|v| **v <= bucket).count();
        let _ = writeln!(out, "{name}_bucket{{le=\"{bucket}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", values.len());
    let _ = writeln!(out, "{name}_sum {}", values.iter().sum::<f64>());
    let _ = writeln!(out, "{name}_count {}", values.len());
}

impl Status {
    fn json(&self) -> Value {
        json!({
            "revision_applied": self.revision_applied,
            "revision_seen": self.revision_seen,
            "applied_at": self.applied_at,
            "last_run": self.last_run,
            "errors": self.errors,
            "fetch_error": self.fetch_error,
            "drift_events": self.drift_events,
            "resources": self.resources,
            "notes": self.notes,
        })
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP nimbus_runs_total Runs by outcome.\n# TYPE nimbus_runs_total counter\n",
        );
        for outcome in ["succeeded", "failed", "invalid"] {
            let _ = writeln!(
                out,
                "nimbus_runs_total{{outcome=\"{outcome}\"}} {}",
                self.runs_by_outcome.get(outcome).copied().unwrap_or(0)
            );
        }
        histogram(
            &mut out,
            "nimbus_run_duration_seconds",
            "How long plan and apply of a run took.",
            &self.run_durations,
        );
        out.push_str("# HELP nimbus_resources Instances by their last outcome.\n# TYPE nimbus_resources gauge\n");
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        for status in self.resources.values() {
            *by_status.entry(status.as_str()).or_default() += 1;
        }
        for (status, count) in by_status {
            let _ = writeln!(out, "nimbus_resources{{status=\"{status}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP nimbus_drift_events_total Instances found drifted and corrected.\n# TYPE nimbus_drift_events_total counter\nnimbus_drift_events_total {}",
            self.drift_events
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_last_applied_timestamp_seconds When the applied revision was last applied.\n# TYPE nimbus_last_applied_timestamp_seconds gauge\nnimbus_last_applied_timestamp_seconds {}",
            self.applied_at.unwrap_or(0.0)
        );
        histogram(
            &mut out,
            "nimbus_fetch_duration_seconds",
            "How long fetching the branch took.",
            &self.fetch_seconds,
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_webhooks_refused_total Webhook calls refused (bad or missing signature).\n# TYPE nimbus_webhooks_refused_total counter\nnimbus_webhooks_refused_total {}",
            self.webhooks_refused
        );
        out
    }
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

pub fn run(args: ReconcileArgs) -> Result<i32> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(daemon(args))
}

async fn daemon(args: ReconcileArgs) -> Result<i32> {
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
    let secret = match &args.webhook_secret_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read the webhook secret {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
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
    {
        let status = Arc::clone(&status);
        let wake = Arc::clone(&wake);
        let workdir = args.workdir.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let status = Arc::clone(&status);
                let wake = Arc::clone(&wake);
                let secret = secret.clone();
                let workdir = workdir.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &status, &wake, secret.as_deref(), &workdir).await;
                });
            }
        });
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .into_diagnostic()?;
    let mut last_drift = Instant::now();
    let mut first = true;
    loop {
        if !first {
            let jitter = args.interval.mul_f64(jitter_fraction() * 0.1);
            // Wake for the next fetch, or for the next drift check if that comes first.
            let drift_in = args.drift_interval.saturating_sub(last_drift.elapsed());
            tokio::select! {
                () = tokio::time::sleep((args.interval + jitter).min(drift_in)) => {}
                () = wake.notified() => {}
                _ = terminate.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        first = false;
        let started = Instant::now();
        let branch = args.branch.clone();
        let fetching = Arc::clone(&source);
        let tip = tokio::task::spawn_blocking(move || fetching.tip(&branch))
            .await
            .into_diagnostic()?;
        let fetched = started.elapsed().as_secs_f64();
        let commit = {
            let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
            status.fetch_seconds.push(fetched);
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
                engine::state_path_of(source.repository(), Some(&commit), &args.workdir)
            {
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .fill_from_state(&path);
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
        if seen.as_deref() != Some(commit.as_str()) {
            status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .revision_seen = Some(commit.clone());
            reconcile(&args, &source, &commit, &status, false, &wake).await;
            last_drift = Instant::now();
        } else if drift_due && let Some(applied) = applied {
            reconcile(&args, &source, &applied, &status, true, &wake).await;
            last_drift = Instant::now();
        }
    }
    crate::render::print_stderr("nimbus reconcile: stopped\n");
    Ok(0)
}

fn jitter_fraction() -> f64 {
    crate::secrets::random_key()
        .map(|k| f64::from(k[0]) / 255.0)
        .unwrap_or(0.5)
}

/// Validates, plans and applies `commit`; with `drift`, the applied revision again, counting
/// what had drifted.
async fn reconcile(
    args: &ReconcileArgs,
    source: &Arc<Source>,
    commit: &str,
    status: &Mutex<Status>,
    drift: bool,
    wake: &Arc<Notify>,
) {
    let started = Instant::now();
    let outcome = apply_commit(args, source, commit, status, drift, wake).await;
    let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
    status.run_durations.push(started.elapsed().as_secs_f64());
    let label = match &outcome {
        Ok(true) => "succeeded",
        Ok(false) => "failed",
        Err(_) => "invalid",
    };
    *status.runs_by_outcome.entry(label.to_owned()).or_default() += 1;
    if let Err(e) = outcome {
        tracing::warn!(revision = %commit, "not applied");
        status.errors = vec![e];
    }
}

/// Ok(succeeded) when the commit was planned and applied; Err(diagnostics) when it does not
/// validate or cannot be planned (nothing is applied).
async fn apply_commit(
    args: &ReconcileArgs,
    source: &Arc<Source>,
    commit: &str,
    status: &Mutex<Status>,
    drift: bool,
    wake: &Arc<Notify>,
) -> std::result::Result<bool, String> {
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
    let parallelism = loaded.parallelism();
    // The session every apply opens: lock, providers, recovery of an interrupted run (this
    // daemon's own, killed), state, secrets.
    let session = Session::open(
        loaded,
        SessionOptions::for_command(Some("nimbus reconcile"), args.identity.as_deref()),
    )
    .await
    .map_err(|e| format!("{e:?}"))?;
    let options = PlanOptions {
        refresh: true,
        ..PlanOptions::default()
    };
    let plan = session.plan(&options).await.map_err(|e| format!("{e:?}"))?;
    {
        let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
        status.notes = session.notes.clone();
        status.state_path = Some(session.state_path.clone());
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
                    newer_commit(
                        Arc::clone(source),
                        args.branch.clone(),
                        commit.to_owned(),
                        Arc::clone(wake),
                        args.interval,
                    ),
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
    let succeeded = report.as_ref().is_none_or(|r| r.succeeded()) && plan.errors().next().is_none();
    let superseded = report.as_ref().is_some_and(|r| r.interrupted);
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
    }
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

/// A constant-time comparison.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a webhook call carries the secret: GitHub's `X-Hub-Signature-256`
/// (`sha256=` + HMAC-SHA256 of the body), GitLab's `X-Gitlab-Token` (the secret itself),
/// Gitea's `X-Gitea-Signature` (hex HMAC-SHA256), or `X-Nimbus-Signature` (as GitHub's).
pub fn verify_webhook(secret: &str, headers: &BTreeMap<String, String>, body: &[u8]) -> bool {
    let mac = crate::secrets::fingerprint(secret.as_bytes(), body);
    let hex = mac.trim_start_matches("hmac-sha256:");
    let prefixed = format!("sha256={hex}");
    if let Some(sig) = headers.get("x-hub-signature-256") {
        return same(sig.trim().as_bytes(), prefixed.as_bytes());
    }
    if let Some(sig) = headers.get("x-nimbus-signature") {
        return same(sig.trim().as_bytes(), prefixed.as_bytes());
    }
    if let Some(sig) = headers.get("x-gitea-signature") {
        return same(sig.trim().as_bytes(), hex.as_bytes());
    }
    if let Some(token) = headers.get("x-gitlab-token") {
        return same(token.trim().as_bytes(), secret.as_bytes());
    }
    false
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    status: &Mutex<Status>,
    wake: &Notify,
    secret: Option<&str>,
    workdir: &Path,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 {
            return respond(&mut stream, 431, "text/plain", b"headers too large\n").await;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default().to_owned();
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if length > 4 * 1024 * 1024 {
        return respond(&mut stream, 413, "text/plain", b"body too large\n").await;
    }
    let mut body = buffer[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = path.split('?').next().unwrap_or("/");
    match (method, path) {
        ("POST", "/hooks/git") => {
            let verified = secret.is_some_and(|s| verify_webhook(s, &headers, &body));
            if verified {
                wake.notify_one();
                respond(&mut stream, 202, "text/plain", b"fetching\n").await
            } else {
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .webhooks_refused += 1;
                respond(
                    &mut stream,
                    401,
                    "text/plain",
                    b"bad or missing signature\n",
                )
                .await
            }
        }
        ("GET", "/status") => {
            let body = status.lock().unwrap_or_else(|e| e.into_inner()).json();
            respond_json(&mut stream, &body).await
        }
        ("GET", "/metrics") => {
            let body = status.lock().unwrap_or_else(|e| e.into_inner()).metrics();
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                body.as_bytes(),
            )
            .await
        }
        ("GET", "/runs") | ("GET", _) if path == "/runs" || path.starts_with("/runs/") => {
            let state_path = status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .state_path
                .clone()
                .unwrap_or_else(|| workdir.join(".nimbus/state.db"));
            let runs = runs(&state_path);
            let body = match path.strip_prefix("/runs/") {
                Some(id) => runs.as_array().and_then(|r| {
                    r.iter()
                        .find(|r| id.parse::<i64>().is_ok_and(|id| r["id"] == id))
                        .cloned()
                }),
                None => Some(runs),
            };
            match body {
                Some(body) => respond_json(&mut stream, &body).await,
                None => respond(&mut stream, 404, "text/plain", b"no such run\n").await,
            }
        }
        ("GET", "/") => {
            let page = page(&status.lock().unwrap_or_else(|e| e.into_inner()));
            respond(
                &mut stream,
                200,
                "text/html; charset=utf-8",
                page.as_bytes(),
            )
            .await
        }
        _ => respond(&mut stream, 404, "text/plain", b"not found\n").await,
    }
}

/// The runs recorded in state (at the Repository's `state.path`).
fn runs(path: &Path) -> Value {
    match crate::state::StateStore::open(path).and_then(|s| s.history()) {
        Ok(history) => serde_json::to_value(history).unwrap_or(Value::Null),
        Err(_) => json!([]),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The page a person reads: server-rendered, refreshing itself every 5 s.
fn page(status: &Status) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\"><title>nimbus reconcile</title>\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}pre{background:#f4f4f4;padding:1em}</style></head><body><h1>nimbus reconcile</h1>",
    );
    let _ = write!(
        out,
        "<p>Applied: <code>{}</code><br>Seen: <code>{}</code><br>Drift events: {}</p>",
        escape(status.revision_applied.as_deref().unwrap_or("none yet")),
        escape(status.revision_seen.as_deref().unwrap_or("none yet")),
        status.drift_events
    );
    if let Some(error) = &status.fetch_error {
        let _ = write!(out, "<h2>Fetch error</h2><pre>{}</pre>", escape(error));
    }
    if !status.errors.is_empty() {
        out.push_str("<h2>The newest commit is not applied</h2>");
        for error in &status.errors {
            let _ = write!(out, "<pre>{}</pre>", escape(error));
        }
    }
    if let Some(run) = &status.last_run {
        let _ = write!(
            out,
            "<h2>Last run</h2><pre>{}</pre>",
            escape(&serde_json::to_string_pretty(run).unwrap_or_default())
        );
    }
    out.push_str("<h2>Resources</h2><table><tr><th>instance</th><th>status</th></tr>");
    for (address, state) in &status.resources {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            escape(address),
            escape(state)
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

async fn respond_json(stream: &mut tokio::net::TcpStream, body: &Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(body).unwrap_or_default();
    respond(stream, 200, "application/json", text.as_bytes()).await
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    code: u16,
    kind: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        202 => "Accepted",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn webhook_signatures() {
        let body = b"{\"ref\":\"refs/heads/main\"}";
        let hex = crate::secrets::fingerprint(b"s3cret", body)
            .trim_start_matches("hmac-sha256:")
            .to_owned();
        let with = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(verify_webhook(
            "s3cret",
            &with("x-hub-signature-256", &format!("sha256={hex}")),
            body
        ));
        assert!(!verify_webhook(
            "s3cret",
            &with("x-hub-signature-256", &format!("sha256={hex}")),
            b"tampered"
        ));
        assert!(verify_webhook(
            "s3cret",
            &with("x-gitea-signature", &hex),
            body
        ));
        assert!(verify_webhook(
            "s3cret",
            &with("x-gitlab-token", "s3cret"),
            body
        ));
        assert!(!verify_webhook(
            "s3cret",
            &with("x-gitlab-token", "guess"),
            body
        ));
        assert!(verify_webhook(
            "s3cret",
            &with("x-nimbus-signature", &format!("sha256={hex}")),
            body
        ));
        assert!(!verify_webhook("s3cret", &BTreeMap::new(), body));
    }
}
