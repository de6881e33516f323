//! Notifications: the daemon's events (a run applied or failed, a commit refused, drift
//! corrected, an instance failed, leadership taken) sent to the Repository's receivers: a
//! webhook (JSON, signed with HMAC-SHA256), a Slack-compatible incoming webhook, or mail by
//! SMTP. Filtered by event and tenant. Each delivery is a file in the outbox
//! (`WORKDIR/.nimbus/outbox/`) until it succeeds, retried with backoff; the outbox is read
//! again when the daemon starts, so a restart loses nothing pending. Reconciling never waits
//! on a receiver: an event is queued, and one task delivers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nimbus_schemas::{EventKind, Receiver, ReceiverType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

/// One event, as receivers get it (the webhook's JSON body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event: EventKind,
    /// What happened, in a sentence.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
    /// The run's page on the daemon, when it serves pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The instance it is about, and its tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Unix seconds.
    pub at: f64,
}

impl Event {
    pub fn new(event: EventKind, message: impl Into<String>) -> Event {
        Event {
            event,
            message: message.into(),
            revision: None,
            run: None,
            url: None,
            address: None,
            tenant: None,
            environment: None,
            at: super::now(),
        }
    }
}

/// A receiver with what it needs to deliver (its webhook key, decrypted in memory).
#[derive(Clone, Debug)]
pub struct Target {
    pub receiver: Receiver,
    pub key: Option<String>,
}

impl Target {
    /// Whether this receiver wants `event`.
    pub fn wants(&self, event: &Event) -> bool {
        let kinds = &self.receiver.events;
        let tenants = &self.receiver.tenants;
        // With tenants named, an event about an instance reaches it only when the instance
        // is one of theirs; an event about no instance (a run, a commit) reaches it always.
        (kinds.is_empty() || kinds.contains(&event.event))
            && (tenants.is_empty()
                || event.address.is_none()
                || event.tenant.as_ref().is_some_and(|t| tenants.contains(t)))
    }
}

/// A delivery waiting in the outbox: the receiver (as configured when it was queued) and the
/// event.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    receiver: Receiver,
    event: Event,
    attempts: u32,
}

/// How many tries a delivery gets before it is given up (logged, and its file removed).
const ATTEMPTS: u32 = 8;

/// The first wait before a retry (doubling each time): 1 s, or `NIMBUS_NOTIFY_BACKOFF_MS`.
fn backoff() -> Duration {
    std::env::var("NIMBUS_NOTIFY_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis)
}

/// The daemon's notifier (one daemon per process), once it is started.
static NOTIFIER: std::sync::OnceLock<Arc<Notifier>> = std::sync::OnceLock::new();

/// Queues `event` with the daemon's notifier; nothing when no daemon runs here.
pub fn notify(event: Event) {
    if let Some(notifier) = NOTIFIER.get() {
        notifier.send(event);
    }
}

/// The daemon's notifier, for the revision in force to set its receivers.
pub fn notifier() -> Option<&'static Arc<Notifier>> {
    NOTIFIER.get()
}

/// The daemon's side: receivers in force, and the queue's wake-up.
pub struct Notifier {
    outbox: PathBuf,
    /// None until a revision has been loaded: events made before (a standby taking over)
    /// wait in `held` for the receivers to be known.
    targets: std::sync::Mutex<Option<Vec<Target>>>,
    held: std::sync::Mutex<Vec<Event>>,
    wake: Notify,
    keys: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Notifier {
    /// A notifier whose outbox is under `workdir`; its delivery task is started by
    /// [`Notifier::spawn`].
    pub fn new(workdir: &Path) -> Arc<Notifier> {
        Arc::new(Notifier {
            outbox: workdir.join(".nimbus/outbox"),
            targets: std::sync::Mutex::new(None),
            held: std::sync::Mutex::new(Vec::new()),
            wake: Notify::new(),
            keys: std::sync::Mutex::new(Default::default()),
        })
    }

    /// The receivers of the revision in force.
    pub fn set_targets(&self, targets: Vec<Target>) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for target in &targets {
            if let Some(key) = &target.key {
                keys.insert(target.receiver.name.clone(), key.clone());
            }
        }
        let held = {
            // Under the targets' lock, as in `send`: no event is held after this takes them.
            let mut current = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            *current = Some(targets);
            std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()))
        };
        for event in held {
            self.send(event);
        }
    }

    /// Queues `event` for every receiver that wants it. Never waits on a receiver: the
    /// delivery is a file in the outbox, and the delivery task is woken.
    pub fn send(&self, event: Event) {
        let targets = {
            let current = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            match &*current {
                Some(targets) => targets.clone(),
                None => {
                    self.held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(event);
                    return;
                }
            }
        };
        for target in targets.iter().filter(|t| t.wants(&event)) {
            let pending = Pending {
                receiver: target.receiver.clone(),
                event: event.clone(),
                attempts: 0,
            };
            if let Err(e) = self.write(&pending) {
                tracing::warn!(receiver = %target.receiver.name, "cannot queue a notification: {e}");
            }
        }
        self.wake.notify_one();
    }

    fn write(&self, pending: &Pending) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.outbox)?;
        let name = format!(
            "{:020}-{:09}-{}.json",
            (pending.event.at * 1000.0) as u64,
            std::process::id(),
            sanitize(&pending.receiver.name)
        );
        let path = self.outbox.join(&name);
        let unique = unique_path(&path);
        let staged = unique.with_extension("tmp");
        std::fs::write(&staged, serde_json::to_vec(pending).unwrap_or_default())?;
        std::fs::rename(&staged, &unique)?;
        Ok(unique)
    }

    /// Makes this the process's notifier and delivers what is in the outbox (also what an
    /// earlier run of the daemon left there), in order, each with retries, until `shutdown`.
    pub fn spawn(self: &Arc<Self>, shutdown: nimbus_providers::Cancel) {
        let _ = NOTIFIER.set(Arc::clone(self));
        let notifier = Arc::clone(self);
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            loop {
                let next = notifier.next_due();
                match next {
                    Some((path, mut pending)) => {
                        let key = notifier
                            .keys
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&pending.receiver.name)
                            .cloned();
                        match deliver(&client, &pending, key.as_deref()).await {
                            Ok(()) => {
                                tracing::info!(receiver = %pending.receiver.name, event = pending.event.event.as_str(), "notified");
                                let _ = std::fs::remove_file(&path);
                            }
                            Err(e) => {
                                pending.attempts += 1;
                                if pending.attempts >= ATTEMPTS {
                                    tracing::warn!(receiver = %pending.receiver.name, event = pending.event.event.as_str(), "notification given up after {ATTEMPTS} tries: {e}");
                                    let _ = std::fs::remove_file(&path);
                                    continue;
                                }
                                tracing::warn!(receiver = %pending.receiver.name, attempt = pending.attempts, "notification failed, will retry: {e}");
                                let _ = std::fs::write(
                                    &path,
                                    serde_json::to_vec(&pending).unwrap_or_default(),
                                );
                                let wait = backoff() * 2u32.saturating_pow(pending.attempts - 1);
                                tokio::select! {
                                    () = tokio::time::sleep(wait) => {}
                                    () = shutdown.cancelled() => return,
                                }
                            }
                        }
                    }
                    None => {
                        tokio::select! {
                            () = notifier.wake.notified() => {}
                            () = tokio::time::sleep(Duration::from_secs(5)) => {}
                            () = shutdown.cancelled() => return,
                        }
                    }
                }
            }
        });
    }

    /// The oldest delivery in the outbox.
    fn next_due(&self) -> Option<(PathBuf, Pending)> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&self.outbox)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        entries.sort();
        for path in entries {
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Pending>(&b).ok())
            {
                Some(pending) => return Some((path, pending)),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        None
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn unique_path(path: &Path) -> PathBuf {
    let mut candidate = path.to_path_buf();
    let mut n = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!(
            "{}-{n}.json",
            path.file_stem().unwrap_or_default().to_string_lossy()
        ));
        n += 1;
    }
    candidate
}

/// One try at one delivery.
async fn deliver(
    client: &reqwest::Client,
    pending: &Pending,
    key: Option<&str>,
) -> Result<(), String> {
    let receiver = &pending.receiver;
    let event = &pending.event;
    match receiver.receiver_type {
        ReceiverType::Webhook | ReceiverType::Slack => {
            let url = receiver.url.as_deref().ok_or("no url")?;
            let body = if receiver.receiver_type == ReceiverType::Slack {
                serde_json::to_vec(&serde_json::json!({"text": text_of(event)}))
            } else {
                serde_json::to_vec(event)
            }
            .map_err(|e| e.to_string())?;
            let mut request = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-nimbus-event", event.event.as_str());
            if let Some(key) = key.filter(|_| receiver.receiver_type == ReceiverType::Webhook) {
                let mac = crate::secrets::fingerprint(key.as_bytes(), &body);
                request = request.header(
                    "x-nimbus-signature",
                    format!("sha256={}", mac.trim_start_matches("hmac-sha256:")),
                );
            }
            let response = request.body(body).send().await.map_err(|e| e.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("{url} answered {}", response.status()))
            }
        }
        ReceiverType::Email => {
            let server = receiver.smtp.as_deref().ok_or("no smtp server")?;
            let from = receiver.from.as_deref().unwrap_or("nimbus@localhost");
            tokio::time::timeout(
                Duration::from_secs(20),
                smtp_send(server, from, &receiver.to, event),
            )
            .await
            .map_err(|_| format!("{server} did not answer in time"))?
        }
    }
}

/// The one-line text of an event (Slack's `text`, mail's subject).
pub fn text_of(event: &Event) -> String {
    let mut text = format!("nimbus {}: {}", event.event.as_str(), event.message);
    if let Some(url) = &event.url {
        text.push_str(&format!(" ({url})"));
    }
    text
}

/// Sends one mail by SMTP (no authentication, no TLS: a relay on the local network).
async fn smtp_send(server: &str, from: &str, to: &[String], event: &Event) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    async fn expect(
        lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
        code: &str,
    ) -> Result<(), String> {
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the server closed the connection")?;
            if line.len() >= 4 && line.as_bytes()[3] == b'-' {
                continue;
            }
            return if line.starts_with(code) {
                Ok(())
            } else {
                Err(format!("the server said: {line}"))
            };
        }
    }
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    expect(&mut lines, "220").await?;
    let commands: Vec<(String, &str)> = std::iter::once(("EHLO nimbus".to_owned(), "250"))
        .chain(std::iter::once((
            format!("MAIL FROM:<{}>", clean(from)),
            "250",
        )))
        .chain(
            to.iter()
                .map(|t| (format!("RCPT TO:<{}>", clean(t)), "250")),
        )
        .chain(std::iter::once(("DATA".to_owned(), "354")))
        .collect();
    for (command, code) in commands {
        let line = format!("{command}\r\n");
        write
            .write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        expect(&mut lines, code).await?;
    }
    let body = serde_json::to_string_pretty(event).unwrap_or_default();
    let mut message = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n\r\n{}\r\n",
        clean(from),
        to.iter().map(|t| clean(t)).collect::<Vec<_>>().join(", "),
        clean(&text_of(event)),
        clean(&event.message),
        body
    );
    // Dot-stuffing: a line that starts with `.` gets another.
    message = message.replace("\r\n.", "\r\n..");
    message.push_str(".\r\n");
    write
        .write_all(message.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    expect(&mut lines, "250").await?;
    let _ = write.write_all(b"QUIT\r\n").await;
    Ok(())
}

/// The receivers of a loaded revision, with webhook keys decrypted from the repository's age
/// secrets (with `identity`, `NIMBUS_AGE_IDENTITY` or `secrets.identityFile`). A key that
/// cannot be decrypted leaves its receiver unsigned, and says so.
pub fn targets_of(loaded: &crate::engine::Loaded, identity: Option<&Path>) -> Vec<Target> {
    let Some(repository) = loaded.repository() else {
        return Vec::new();
    };
    repository
        .notifications
        .iter()
        .map(|receiver| {
            let key = receiver.secret.as_deref().and_then(|name| {
                match loaded.repository_secret(name, identity, "notifications.secret") {
                    Ok(key) => Some(key),
                    Err(e) => {
                        tracing::warn!(receiver = %receiver.name, "its secret `{name}` cannot be decrypted ({e}); its webhooks go unsigned");
                        None
                    }
                }
            });
            Target {
                receiver: receiver.clone(),
                key,
            }
        })
        .collect()
}

/// What one run was, for its notifications.
pub struct NotifiedRun<'a> {
    pub commit: &'a str,
    pub drift: bool,
    pub changes: usize,
    pub succeeded: bool,
    pub environment: Option<&'a str>,
    pub run: Option<i64>,
    pub failure: Option<&'a str>,
    /// The run's page.
    pub url: Option<String>,
}

/// The events of a run: applied, failed or drift corrected, and each instance that failed.
/// A drift check that changed nothing says nothing.
pub fn notify_run(run: &NotifiedRun<'_>, report: Option<&crate::executor::Report>) {
    use nimbus_schemas::EventKind;
    let short = &run.commit[..run.commit.len().min(12)];
    let (kind, message) = match (run.succeeded, run.drift) {
        (true, true) if run.changes > 0 => (
            EventKind::DriftCorrected,
            format!("drift corrected at {short}: {} changes", run.changes),
        ),
        (true, true) => return,
        (true, false) => (
            EventKind::RunApplied,
            format!("{short} applied: {} changes", run.changes),
        ),
        (false, _) => (
            EventKind::RunFailed,
            format!("{short} {}", run.failure.unwrap_or("applied with failures")),
        ),
    };
    let url = run.url.clone();
    let event = |kind, message: String| {
        let mut event = Event::new(kind, message);
        event.revision = Some(run.commit.to_owned());
        event.run = run.run;
        event.url.clone_from(&url);
        event.environment = run.environment.map(str::to_owned);
        event
    };
    notify(event(kind, message));
    for result in report.map_or(&[][..], |r| r.results.as_slice()) {
        if let crate::executor::Outcome::Failed(why) = &result.outcome {
            let mut failed = event(
                EventKind::InstanceFailed,
                format!("{} failed: {why}", result.address),
            );
            failed.tenant = nimbus_schemas::Address::tenant_of(&result.address);
            failed.address = Some(result.address.clone());
            notify(failed);
        }
    }
}

/// Links and commit statuses: how a run is told to the forge.
impl super::Settings {
    /// The page of run `id`, as people reach it.
    pub fn run_url(&self, id: i64) -> String {
        match &self.public_url {
            Some(url) => format!("{}/run/{id}", url.trim_end_matches('/')),
            None => format!("http://{}/run/{id}", self.listen),
        }
    }

    /// Sets `commit`'s status on the forge, if there is one, in a task of its own (three
    /// tries): reconciling never waits on it.
    pub(super) fn commit_status(
        &self,
        commit: &str,
        state: crate::forge::State,
        description: String,
        run: Option<i64>,
    ) {
        let Some(forge) = self.forge.clone() else {
            return;
        };
        let (commit, url) = (commit.to_owned(), run.map(|id| self.run_url(id)));
        tokio::spawn(async move {
            for attempt in 0..3u32 {
                match forge
                    .set_status(
                        &commit,
                        state,
                        &description,
                        url.as_deref(),
                        "nimbus/reconcile",
                    )
                    .await
                {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(attempt, "commit status not set: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(2u64.pow(attempt))).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(events: Vec<EventKind>, tenants: Vec<String>) -> Target {
        Target {
            receiver: Receiver {
                name: "r".into(),
                receiver_type: ReceiverType::Webhook,
                url: Some("http://127.0.0.1:9/".into()),
                secret: None,
                smtp: None,
                from: None,
                to: Vec::new(),
                events,
                tenants,
            },
            key: None,
        }
    }

    #[test]
    fn receivers_filter_by_event_and_tenant() {
        let mut failed = Event::new(EventKind::InstanceFailed, "Workload/acme/web failed");
        failed.tenant = Some("acme".into());
        failed.address = Some("Workload/acme/web".into());
        let mut infrastructure = Event::new(EventKind::InstanceFailed, "File/motd@h1 failed");
        infrastructure.address = Some("File/motd@h1".into());
        assert!(!receiver(vec![], vec!["acme".into()]).wants(&infrastructure));
        let refused = Event::new(EventKind::CommitRefused, "refused");
        assert!(receiver(vec![], vec![]).wants(&failed));
        assert!(!receiver(vec![EventKind::RunApplied], vec![]).wants(&failed));
        assert!(receiver(vec![], vec!["acme".into()]).wants(&failed));
        assert!(!receiver(vec![], vec!["globex".into()]).wants(&failed));
        assert!(
            receiver(vec![], vec!["globex".into()]).wants(&refused),
            "an event about no tenant reaches every tenant's receiver"
        );
    }

    #[test]
    fn events_before_the_first_revision_wait_for_its_receivers() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let notifier = Notifier::new(dir.path());
        let outbox = || {
            std::fs::read_dir(dir.path().join(".nimbus/outbox"))
                .map(|entries| entries.count())
                .unwrap_or(0)
        };
        // A standby taking over has loaded no revision yet: its event is held, not dropped.
        notifier.send(Event::new(EventKind::LeaderChanged, "b leads now"));
        assert_eq!(outbox(), 0);
        notifier.set_targets(vec![receiver(vec![EventKind::LeaderChanged], vec![])]);
        assert_eq!(
            outbox(),
            1,
            "the held event is queued once receivers are known"
        );
        notifier.set_targets(vec![receiver(vec![], vec![])]);
        assert_eq!(outbox(), 1, "and only once");
    }
}
