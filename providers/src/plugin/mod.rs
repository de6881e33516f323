//! A provider in another process: an executable named in the Repository
//! (`providers: [{name, command, kinds}]`) that speaks the protocol of [`crate::protocol`] on
//! its stdin and stdout, one JSON message per line. nimbus starts it on first use, says hello
//! (the versions must match), configures it and asks what it serves; then observe and apply
//! go to it one call at a time, or up to the `concurrency` its `describe` declares, each reply
//! matched to its request by id.
//!
//! A plugin that crashes, hangs past its timeout, writes garbage or speaks another version
//! fails the instances it serves with a sentence saying so (with the end of what it wrote to
//! stderr), never the run; it is started again for the next call.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_planner::plan::{Change, KindSchema, Observed, ProviderSchema};
use nimbus_schemas::Kind;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::protocol::{
    self, ApplyParams, Call, CancelParams, Configure, Hello, Observations, ObserveParams, Outcome,
    PROTOCOL_VERSION, Request, Response,
};
use crate::{Applied, BoxFuture, Cancel, ObserveRequest, Provider, ProviderError};

/// The longest line a plugin may write: a larger one is garbage.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Lines of a plugin's stderr kept for error messages.
const STDERR_LINES: usize = 10;

/// How to start a plugin.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    pub name: String,
    /// The program and its arguments; a relative program path (with a `/`) is relative to
    /// `repository`.
    pub argv: Vec<String>,
    pub kinds: Vec<Kind>,
    pub settings: Value,
    pub repository: PathBuf,
    /// How long one call may take.
    pub timeout: Duration,
}

struct Process {
    child: Child,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    stdout: BufReader<ChildStdout>,
    /// The task that keeps the last lines of its stderr: it ends when the pipe closes.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

pub struct PluginProvider {
    spec: PluginSpec,
    schema: ProviderSchema,
    /// One call at a time, for a plugin that does not declare `concurrency` (and for hello,
    /// configure and describe): its reply is read by the caller.
    process: tokio::sync::Mutex<Option<Process>>,
    /// A plugin that declares `concurrency`: one process, replies matched to callers by id.
    shared: tokio::sync::Mutex<Option<Arc<Shared>>>,
    /// Requests in flight at once: what `describe` declared (1 without it).
    permits: tokio::sync::Semaphore,
    concurrency: usize,
    stderr: Arc<Mutex<VecDeque<String>>>,
    next_id: AtomicU64,
}

/// A running plugin that answers requests concurrently: a task reads every reply and hands
/// it to the caller waiting for its id.
struct Shared {
    child: tokio::sync::Mutex<Child>,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    pending: Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<Response>>>,
    /// Why the reader stopped (the process exited, or wrote what is not a reply).
    closed: Mutex<Option<String>>,
    stderr_reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for PluginProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProvider")
            .field("name", &self.spec.name)
            .field("argv", &self.spec.argv)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PluginProvider {
    /// Starts the plugin, checks its version, configures it and reads its schema. A plugin
    /// that cannot be started is an error with the reason, for the caller to turn into
    /// failures of its instances.
    pub async fn start(spec: PluginSpec) -> Result<PluginProvider, ProviderError> {
        let mut provider = PluginProvider {
            schema: ProviderSchema {
                provider: spec.name.clone(),
                kinds: spec
                    .kinds
                    .iter()
                    .map(|k| KindSchema::default_for(*k))
                    .collect(),
            },
            spec,
            process: tokio::sync::Mutex::new(None),
            shared: tokio::sync::Mutex::new(None),
            permits: tokio::sync::Semaphore::new(1),
            concurrency: 1,
            stderr: Arc::new(Mutex::new(VecDeque::new())),
            next_id: AtomicU64::new(1),
        };
        let protocol::results::Described {
            schema: described,
            concurrency,
        } = provider.call(Call::Describe, None).await?;
        let concurrency = concurrency.map_or(1, |n| n.clamp(1, 256) as usize);
        provider.concurrency = concurrency;
        provider.permits = tokio::sync::Semaphore::new(concurrency);
        // Only the kinds the Repository gives it; SPEC's defaults for any it does not describe.
        let mut kinds = Vec::new();
        for kind in &provider.spec.kinds {
            kinds.push(
                described
                    .kinds
                    .iter()
                    .find(|k| k.kind == *kind)
                    .cloned()
                    .unwrap_or_else(|| KindSchema::default_for(*kind)),
            );
        }
        provider.schema = ProviderSchema {
            provider: provider.spec.name.clone(),
            kinds,
        };
        Ok(provider)
    }

    fn who(&self) -> String {
        format!("plugin `{}`", self.spec.name)
    }

    fn stderr_tail(&self) -> String {
        let lines = lock(&self.stderr);
        if lines.is_empty() {
            String::new()
        } else {
            format!(
                "; its stderr ends: {}",
                lines.iter().cloned().collect::<Vec<_>>().join(" | ")
            )
        }
    }

    fn program(&self) -> Result<PathBuf, ProviderError> {
        let first = self.spec.argv.first().ok_or_else(|| {
            ProviderError::Failed(format!(
                "{} has an empty command; set providers[].command in the Repository",
                self.who()
            ))
        })?;
        let path = Path::new(first);
        if path.is_relative() && first.contains('/') {
            // A repository path: run only if it, and every link on its way, stays inside the
            // repository (docs/security.md, "the repository is a jail").
            return inside_repository(&self.spec.repository, path).map_err(|target| {
                ProviderError::Failed(format!(
                    "{}'s command {first} leads to {target}, outside the repository; nimbus runs nothing from outside it",
                    self.who()
                ))
            });
        }
        Ok(path.to_owned())
    }

    /// Starts the process and says hello and configure.
    async fn spawn(&self) -> Result<Process, ProviderError> {
        let program = self.program()?;
        let mut child = Command::new(&program)
            .args(&self.spec.argv[1..])
            .current_dir(&self.spec.repository)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ProviderError::Failed(format!(
                    "{} cannot be started ({}): {e}",
                    self.who(),
                    program.display()
                ))
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ProviderError::Bug("a plugin's pipes were not made".into()));
        };
        lock(&self.stderr).clear();
        let tail = Arc::clone(&self.stderr);
        let name = self.spec.name.clone();
        let stderr_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(plugin = %name, "{line}");
                let mut tail = lock(&tail);
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut process = Process {
            child,
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            stdout: BufReader::new(stdout),
            stderr_reader: Some(stderr_reader),
        };
        let hello: Hello = self
            .exchange(
                &mut process,
                Call::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    software: env!("CARGO_PKG_VERSION").to_owned(),
                }),
                None,
            )
            .await?;
        protocol::check_hello(&self.who(), &hello)?;
        let _: protocol::results::Empty = self
            .exchange(
                &mut process,
                Call::Configure(Configure {
                    name: self.spec.name.clone(),
                    settings: self.spec.settings.clone(),
                    repository: self.spec.repository.display().to_string(),
                }),
                None,
            )
            .await?;
        Ok(process)
    }

    /// One request and its reply on a running process, within the timeout.
    async fn exchange<T: DeserializeOwned>(
        &self,
        process: &mut Process,
        call: Call,
        cancel: Option<&Cancel>,
    ) -> Result<T, ProviderError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let method = method_name(&call);
        if let Err(e) = write_line(&process.stdin, &Request { id, call }).await {
            return Err(self
                .gone(process, &format!("cannot be written to ({e})"))
                .await);
        }
        let deadline = tokio::time::Instant::now() + self.spec.timeout;
        let mut told_to_cancel = false;
        loop {
            let cancelled = async {
                match cancel {
                    Some(cancel) if !told_to_cancel => cancel.cancelled().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                read = tokio::time::timeout_at(deadline, read_response(&mut process.stdout)) => {
                    let response = match read {
                        Err(_) => {
                            let _ = process.child.start_kill();
                            return Err(ProviderError::Failed(format!(
                                "{} did not answer `{method}` within {}s and was stopped{}",
                                self.who(),
                                self.spec.timeout.as_secs(),
                                self.stderr_tail()
                            )));
                        }
                        Ok(Err(Unread::Closed)) => {
                            return Err(self.gone(process, &format!("exited during `{method}`")).await);
                        }
                        Ok(Err(Unread::Io(e))) => {
                            return Err(self.gone(process, &format!("cannot be read ({e})")).await);
                        }
                        Ok(Err(unread)) => {
                            let _ = process.child.start_kill();
                            let tail = match unread {
                                Unread::Garbage(..) => self.stderr_tail(),
                                _ => String::new(),
                            };
                            return Err(ProviderError::Failed(format!(
                                "{} {}{tail}",
                                self.who(),
                                unread.sentence(Some(method)),
                            )));
                        }
                        Ok(Ok(response)) => response,
                    };
                    if response.id != id {
                        // The reply to a cancel, or a stale one: not this call's.
                        continue;
                    }
                    return self.outcome(response, method);
                }
                () = cancelled => {
                    told_to_cancel = true;
                    self.tell_to_cancel(&process.stdin, id).await;
                }
            }
        }
    }

    /// The process is gone (or going): why, with its exit status and stderr.
    async fn gone(&self, process: &mut Process, what: &str) -> ProviderError {
        let status = tokio::time::timeout(Duration::from_secs(2), process.child.wait()).await;
        let status = match status {
            Ok(Ok(status)) => format!(" ({status})"),
            _ => {
                let _ = process.child.start_kill();
                String::new()
            }
        };
        // Every line it wrote before it went, not only those read by now: the reader reaches
        // the end of the pipe once the process (and whatever it left holding the pipe) is gone.
        if let Some(reader) = process.stderr_reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        ProviderError::Failed(format!(
            "{} {what}{status}{}",
            self.who(),
            self.stderr_tail()
        ))
    }

    /// A call on the running process, started (again) if need be. Any failure of the process
    /// itself drops it, so that the next call starts a fresh one. A plugin that declared
    /// `concurrency` gets up to that many calls at once.
    async fn call<T: DeserializeOwned>(
        &self,
        call: Call,
        cancel: Option<&Cancel>,
    ) -> Result<T, ProviderError> {
        if self.concurrency > 1 && matches!(call, Call::Observe(_) | Call::Apply(_)) {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| ProviderError::Bug(e.to_string()))?;
            let shared = self.shared_process().await?;
            let result = self.exchange_shared(&shared, call, cancel).await;
            if lock(&shared.closed).is_some() {
                let mut slot = self.shared.lock().await;
                if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &shared)) {
                    *slot = None;
                }
            }
            return result;
        }
        self.call_one(call, cancel).await
    }

    /// The running process of a concurrent plugin, started (or taken from the one-at-a-time
    /// slot, where hello, configure and describe ran) with its reply reader.
    async fn shared_process(&self) -> Result<Arc<Shared>, ProviderError> {
        let mut slot = self.shared.lock().await;
        if let Some(shared) = slot.as_ref()
            && lock(&shared.closed).is_none()
        {
            return Ok(Arc::clone(shared));
        }
        let taken = self.process.lock().await.take();
        let process = match taken {
            Some(process) => process,
            None => self.spawn().await?,
        };
        let Process {
            child,
            stdin,
            mut stdout,
            stderr_reader,
        } = process;
        let shared = Arc::new(Shared {
            child: tokio::sync::Mutex::new(child),
            stdin,
            pending: Mutex::new(std::collections::HashMap::new()),
            closed: Mutex::new(None),
            stderr_reader: Mutex::new(stderr_reader),
        });
        let reader = Arc::clone(&shared);
        tokio::spawn(async move {
            let why = loop {
                match read_response(&mut stdout).await {
                    Ok(response) => {
                        if let Some(waiting) = lock(&reader.pending).remove(&response.id) {
                            let _ = waiting.send(response);
                        }
                    }
                    Err(Unread::Closed) => break "exited".to_owned(),
                    Err(Unread::Io(e)) => break format!("cannot be read ({e})"),
                    Err(unread) => {
                        let _ = reader.child.lock().await.start_kill();
                        break unread.sentence(None);
                    }
                }
            };
            *lock(&reader.closed) = Some(why);
            // Every caller still waiting learns it at once (its sender is dropped).
            lock(&reader.pending).clear();
        });
        *slot = Some(Arc::clone(&shared));
        Ok(shared)
    }

    /// One request on a concurrent plugin, its reply matched by id, within the timeout.
    async fn exchange_shared<T: DeserializeOwned>(
        &self,
        shared: &Shared,
        call: Call,
        cancel: Option<&Cancel>,
    ) -> Result<T, ProviderError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let method = method_name(&call);
        let (sender, mut reply) = tokio::sync::oneshot::channel();
        lock(&shared.pending).insert(id, sender);
        let written = write_line(&shared.stdin, &Request { id, call }).await;
        if let Err(e) = written {
            lock(&shared.pending).remove(&id);
            *lock(&shared.closed) = Some(format!("cannot be written to ({e})"));
            return Err(self.gone_shared(shared, method).await);
        }
        let deadline = tokio::time::Instant::now() + self.spec.timeout;
        let mut told_to_cancel = false;
        loop {
            let cancelled = async {
                match cancel {
                    Some(cancel) if !told_to_cancel => cancel.cancelled().await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                answered = tokio::time::timeout_at(deadline, &mut reply) => {
                    return match answered {
                        Err(_) => {
                            lock(&shared.pending).remove(&id);
                            let _ = shared.child.lock().await.start_kill();
                            *lock(&shared.closed) = Some("was stopped".into());
                            Err(ProviderError::Failed(format!(
                                "{} did not answer `{method}` within {}s and was stopped{}",
                                self.who(),
                                self.spec.timeout.as_secs(),
                                self.stderr_tail()
                            )))
                        }
                        Ok(Err(_)) => Err(self.gone_shared(shared, method).await),
                        Ok(Ok(response)) => self.outcome(response, method),
                    };
                }
                () = cancelled => {
                    told_to_cancel = true;
                    self.tell_to_cancel(&shared.stdin, id).await;
                }
            }
        }
    }

    /// A concurrent plugin's process stopped answering: why, with its exit status and stderr.
    async fn gone_shared(&self, shared: &Shared, method: &str) -> ProviderError {
        let why = lock(&shared.closed)
            .clone()
            .unwrap_or_else(|| "exited".to_owned());
        let status = {
            let mut child = shared.child.lock().await;
            match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(Ok(status)) => format!(" ({status})"),
                _ => {
                    let _ = child.start_kill();
                    String::new()
                }
            }
        };
        let reader = lock(&shared.stderr_reader).take();
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        let what = if why == "exited" {
            format!("exited during `{method}`{status}")
        } else {
            why
        };
        ProviderError::Failed(format!("{} {what}{}", self.who(), self.stderr_tail()))
    }

    /// A reply's outcome as the caller's result type.
    fn outcome<T: DeserializeOwned>(
        &self,
        response: Response,
        method: &str,
    ) -> Result<T, ProviderError> {
        match response.outcome {
            Outcome::Result(value) => serde_json::from_value(value).map_err(|e| {
                ProviderError::Failed(format!(
                    "{} answered `{method}` with a result nimbus cannot read: {e}",
                    self.who()
                ))
            }),
            Outcome::Error(error) => Err(error),
        }
    }

    /// Asks the plugin to stop the request `id` between its steps (its reply is not awaited).
    async fn tell_to_cancel(&self, stdin: &tokio::sync::Mutex<ChildStdin>, id: u64) {
        let cancel_id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let call = Call::Cancel(CancelParams { request: id });
        let _ = write_line(
            stdin,
            &Request {
                id: cancel_id,
                call,
            },
        )
        .await;
    }

    /// A call on the one-at-a-time process.
    async fn call_one<T: DeserializeOwned>(
        &self,
        call: Call,
        cancel: Option<&Cancel>,
    ) -> Result<T, ProviderError> {
        let mut slot = self.process.lock().await;
        if slot.is_none() {
            *slot = Some(self.spawn().await?);
        }
        let Some(process) = slot.as_mut() else {
            return Err(ProviderError::Bug("a plugin's process vanished".into()));
        };
        let result = self.exchange(process, call, cancel).await;
        // A process that exited, hung or spoke garbage is not asked again.
        let broken = match &result {
            Ok(_) => false,
            Err(ProviderError::Failed(m))
            | Err(ProviderError::Field { message: m, .. })
            | Err(ProviderError::Bug(m)) => {
                !matches!(process.child.try_wait(), Ok(None))
                    || m.contains("did not answer")
                    || m.contains("does not speak the protocol")
                    || m.contains("not the protocol")
            }
            Err(ProviderError::Transient(_)) => !matches!(process.child.try_wait(), Ok(None)),
        };
        if broken {
            *slot = None;
        }
        result
    }
}

/// Why a plugin's stdout gave no reply.
enum Unread {
    /// The pipe closed: the process exited.
    Closed,
    Io(std::io::Error),
    /// A line longer than [`MAX_LINE`].
    TooLong,
    /// A line that is not a reply: its start, and why.
    Garbage(String, serde_json::Error),
}

impl Unread {
    /// What the plugin did, for `{plugin} {sentence}` (a line too long, or no reply to
    /// `method`).
    fn sentence(&self, method: Option<&str>) -> String {
        let to = method.map(|m| format!(" `{m}`")).unwrap_or_default();
        match self {
            Unread::Closed => "exited".to_owned(),
            Unread::Io(e) => format!("cannot be read ({e})"),
            Unread::TooLong => {
                format!("wrote a line longer than {MAX_LINE} bytes: not the protocol")
            }
            Unread::Garbage(shown, e) => {
                format!("does not speak the protocol: it answered{to} with `{shown}` ({e})")
            }
        }
    }
}

/// The next reply on a plugin's stdout: one line of at most [`MAX_LINE`] bytes.
async fn read_response(stdout: &mut BufReader<ChildStdout>) -> Result<Response, Unread> {
    let mut text = String::new();
    let n = (&mut *stdout)
        .take(MAX_LINE as u64)
        .read_line(&mut text)
        .await
        .map_err(Unread::Io)?;
    if n == 0 {
        return Err(Unread::Closed);
    }
    if !text.ends_with('\n') && n >= MAX_LINE {
        return Err(Unread::TooLong);
    }
    serde_json::from_str(text.trim_end())
        .map_err(|e| Unread::Garbage(text.trim_end().chars().take(120).collect(), e))
}

/// Writes one request as a line.
async fn write_line(
    stdin: &tokio::sync::Mutex<ChildStdin>,
    request: &Request,
) -> std::io::Result<()> {
    let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut stdin = stdin.lock().await;
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}

fn method_name(call: &Call) -> &'static str {
    match call {
        Call::Hello(_) => "hello",
        Call::Configure(_) => "configure",
        Call::Describe => "describe",
        Call::Observe(_) => "observe",
        Call::Apply(_) => "apply",
        Call::Cancel(_) => "cancel",
    }
}

impl Provider for PluginProvider {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn describe(&self) -> ProviderSchema {
        self.schema.clone()
    }

    fn observe<'a>(
        &'a self,
        target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move {
            let found: Observations = self
                .call(
                    Call::Observe(ObserveParams {
                        target: target.map(str::to_owned),
                        batch: batch.to_vec(),
                    }),
                    None,
                )
                .await?;
            Ok(found
                .observations
                .into_iter()
                .map(protocol::Observation::into_observed)
                .collect())
        })
    }

    fn apply<'a>(
        &'a self,
        change: &'a Change,
        cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            self.call(
                Call::Apply(Box::new(ApplyParams {
                    change: change.clone(),
                })),
                Some(cancel),
            )
            .await
        })
    }
}

/// `root/relative` resolved through every link, if it stays inside `root` (resolved too); else
/// where it leads, or the link's own words when it leads nowhere. The one check behind the
/// repository jail (docs/security.md), for the working tree's files and plugin commands alike.
pub fn inside_repository(root: &Path, relative: &Path) -> Result<PathBuf, String> {
    let path = root.join(relative);
    let top = std::fs::canonicalize(root).map_err(|e| format!("{} ({e})", root.display()))?;
    match std::fs::canonicalize(&path) {
        Ok(full) if full.starts_with(&top) => Ok(full),
        Ok(full) => Err(full.display().to_string()),
        Err(_) => Err(std::fs::read_link(&path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| format!("{} (which does not exist)", path.display()))),
    }
}

#[cfg(test)]
mod jail_tests {
    use super::*;

    #[test]
    fn a_repository_path_that_leads_outside_is_refused_with_where_it_leads() {
        let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let repo = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tool = outside.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(repo.path().join("plugins")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(repo.path().join("plugins/inside"), "#!/bin/sh\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let link = |target: &Path, at: &str| {
            std::os::unix::fs::symlink(target, repo.path().join(at))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        link(&tool, "plugins/out");
        link(Path::new("out"), "plugins/chain");
        link(Path::new("inside"), "plugins/alias");
        let inside = |p: &str| inside_repository(repo.path(), Path::new(p));
        assert!(inside("plugins/inside").is_ok());
        assert!(inside("plugins/alias").is_ok());
        for escaping in ["plugins/out", "plugins/chain", "../outside"] {
            let refused = inside(escaping);
            assert!(refused.is_err(), "{escaping}: {refused:?}");
        }
        let target = inside("plugins/chain").err().unwrap_or_default();
        assert!(target.contains(&tool.display().to_string()), "{target}");
    }
}
