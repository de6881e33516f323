//! The hosts provider, over SSH: Host (facts), File and Service (systemd). One connection per
//! host, opened on first use and shared by every operation on that host. Observing all of a
//! host's instances is one command, whatever their number. Content is never fetched to compare
//! it: files and unit files are compared by SHA-256.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use nimbus_planner::plan::{Action, Change, KindSchema, Observed, ProviderSchema};
use nimbus_schemas::Kind;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::ssh::{SshSession, SshTarget};
use crate::{Applied, BoxFuture, Cancel, ObserveRequest, Provider, ProviderError};

mod discover;
pub mod service;

use crate::quote::shell_quote;
use service::{UNIT_DIR, observed_service, unit_name};
pub use service::{remove_service_script, service_script};

/// How this provider compares its kinds, as data. A File compares as what can be seen on
/// the host: path, content digest, and the mode, owner and group it sets. A Service compares
/// as its unit file's digest, whether it is enabled, and whether it runs. A Host compares as
/// its connection settings. A File's content is written to the host, secret or not.
pub fn schema() -> ProviderSchema {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let file = KindSchema {
        compare_fields: Some(strings(&["path", "mode", "owner", "group", "content"])),
        digest_fields: strings(&["content"]),
        delivers_secrets: true,
        ..KindSchema::default_for(Kind::File)
    };
    let service = KindSchema {
        compare_fields: Some(strings(&["enabled", "state", "unit"])),
        digest_fields: strings(&["unit"]),
        ..KindSchema::default_for(Kind::Service)
    };
    ProviderSchema {
        provider: PROVIDER.to_owned(),
        kinds: vec![
            KindSchema::default_for(Kind::Host),
            file,
            service,
            crate::vm::kind_schema(),
            crate::volume::kind_schema(),
        ],
    }
}

/// The schema of one of this provider's kinds.
pub fn kind_schema(kind: Kind) -> KindSchema {
    schema()
        .kinds
        .into_iter()
        .find(|k| k.kind == kind)
        .unwrap_or_else(|| KindSchema::default_for(kind))
}

/// This provider's id.
pub const PROVIDER: &str = nimbus_planner::rules::SSH;

/// A File write waiting to go to its host with the others that arrive with it.
struct PendingWrite {
    change: Change,
    reply: oneshot::Sender<Result<Applied, ProviderError>>,
}

pub struct HostsProvider {
    /// The run's connections, one per host, shared with the other providers that go over SSH.
    pool: Arc<crate::ssh::Pool>,
    /// File writes per host, gathered while the first of them waits for its connection.
    pending: std::sync::Mutex<HashMap<String, Vec<PendingWrite>>>,
    /// Remote commands run so far, over every host.
    commands: std::sync::atomic::AtomicUsize,
    file_schema: KindSchema,
    service_schema: KindSchema,
}

impl std::fmt::Debug for HostsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostsProvider")
            .field("hosts", &self.pool.hosts().collect::<Vec<_>>())
            .finish()
    }
}

impl HostsProvider {
    /// A provider for these hosts, by Host name.
    pub fn new(targets: impl IntoIterator<Item = SshTarget>) -> Self {
        Self::with_pool(Arc::new(crate::ssh::Pool::new(targets)))
    }

    /// A provider on a pool of connections that other providers share.
    pub fn with_pool(pool: Arc<crate::ssh::Pool>) -> Self {
        HostsProvider {
            pool,
            pending: std::sync::Mutex::new(HashMap::new()),
            commands: std::sync::atomic::AtomicUsize::new(0),
            file_schema: kind_schema(Kind::File),
            service_schema: kind_schema(Kind::Service),
        }
    }

    /// The connection to `host`, from the run's pool.
    async fn session(&self, host: &str) -> Result<Arc<SshSession>, ProviderError> {
        self.pool.session(host).await
    }

    /// How many remote commands this provider has run, over every host: observing a host is
    /// one, a batch of File writes is one.
    pub fn commands_run(&self) -> usize {
        self.commands.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn exec(
        &self,
        session: &SshSession,
        script: &str,
        input: Option<&[u8]>,
    ) -> Result<crate::ssh::ExecOutput, ProviderError> {
        self.commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        session.exec(script, input).await
    }

    /// Writes a File, in one command with every other File write to the same host that is
    /// under way at the same time: the executor only runs changes together whose
    /// dependencies are done, so their order among themselves does not matter.
    async fn write_file(&self, host: &str, change: &Change) -> Result<Applied, ProviderError> {
        let (reply, answer) = oneshot::channel();
        let leader = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let queue = pending.entry(host.to_owned()).or_default();
            queue.push(PendingWrite {
                change: change.clone(),
                reply,
            });
            queue.len() == 1
        };
        if leader {
            // The connection (opened on first use) is the natural moment to gather: writes
            // dispatched with this one join its batch meanwhile.
            let session = self.session(host).await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let batch = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(host)
                .unwrap_or_default();
            match session {
                Ok(session) => self.write_batch(&session, batch).await,
                Err(e) => {
                    for write in batch {
                        let _ = write.reply.send(Err(e.clone()));
                    }
                }
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(ProviderError::Bug(format!(
                "{}: the batch of writes ended without an answer",
                change.address
            )))
        })
    }

    async fn write_batch(&self, session: &SshSession, batch: Vec<PendingWrite>) {
        let mut files = Vec::new();
        let mut input = Vec::new();
        let mut accepted = Vec::new();
        for write in batch {
            let after = write.change.after.as_ref();
            let (Some(path), Some(content)) = (
                after.and_then(|a| a["path"].as_str()),
                after.and_then(|a| a["content"].as_str()),
            ) else {
                let _ = write.reply.send(Err(ProviderError::Failed(format!(
                    "{}: no content to write (a File needs content, source or secret)",
                    write.change.address
                ))));
                continue;
            };
            let after = after.cloned().unwrap_or(Value::Null);
            let chown = match (after["owner"].as_str(), after["group"].as_str()) {
                (Some(o), Some(g)) => format!("{o}:{g}"),
                (Some(o), None) => o.to_owned(),
                (None, Some(g)) => format!(":{g}"),
                (None, None) => String::new(),
            };
            files.push(FileWrite {
                path: path.to_owned(),
                len: content.len(),
                mode: after["mode"].as_str().unwrap_or("0644").to_owned(),
                chown,
            });
            input.extend_from_slice(content.as_bytes());
            accepted.push((write, after));
        }
        if accepted.is_empty() {
            return;
        }
        let script = write_files_script(&files);
        let output = self.exec(session, &script, Some(&input)).await;
        let stdout = match &output {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(_) => String::new(),
        };
        // What failed: the field whose value the failing step used, and why.
        let mut results: HashMap<usize, Result<(), (String, String)>> = HashMap::new();
        for line in stdout.lines() {
            match line.split('\t').collect::<Vec<_>>().as_slice() {
                ["W", index, "ok"] => {
                    if let Ok(i) = index.parse() {
                        results.insert(i, Ok(()));
                    }
                }
                ["W", index, "err", step, message] => {
                    if let Ok(i) = index.parse() {
                        results.insert(i, Err(((*step).to_owned(), (*message).trim().to_owned())));
                    }
                }
                _ => {}
            }
        }
        for (i, (write, after)) in accepted.into_iter().enumerate() {
            let result = match (&output, results.remove(&i)) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Some(Ok(()))) => {
                    let mut observed = after;
                    self.file_schema.normalize(&mut observed);
                    Ok(Applied {
                        observed,
                        outputs: Value::Null,
                    })
                }
                (Ok(_), Some(Err((step, message)))) => {
                    let field = match step.as_str() {
                        "mode" => "mode",
                        "chown" if message.contains("group") && after["group"].is_string() => {
                            "group"
                        }
                        "chown" if after["owner"].is_string() => "owner",
                        "chown" => "group",
                        _ => "path",
                    };
                    Err(ProviderError::field(
                        field,
                        format!(
                            "{}: writing {} failed: {message}",
                            write.change.address, files[i].path
                        ),
                    ))
                }
                (Ok(output), None) => Err(ProviderError::Failed(format!(
                    "{}: writing {} did not finish: {}",
                    write.change.address,
                    files[i].path,
                    String::from_utf8_lossy(&output.stderr).trim()
                ))),
            };
            let _ = write.reply.send(result);
        }
    }

    /// Applies a VM's or Volume's change on `host`.
    async fn apply_on_host(&self, host: &str, change: &Change) -> Result<Applied, ProviderError> {
        let session = self.session(host).await?;
        self.commands
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if change.kind == Kind::Vm {
            crate::vm::apply(&session, change).await
        } else {
            crate::volume::apply(&session, change).await
        }
    }

    /// VMs and Volumes, each on its host (one command per host and kind); one with no host
    /// yet is not observed.
    async fn observe_on_their_hosts(
        &self,
        batch: &[ObserveRequest],
    ) -> Result<Vec<(String, Observed)>, ProviderError> {
        let mut by_host: std::collections::BTreeMap<(&str, bool), Vec<ObserveRequest>> =
            std::collections::BTreeMap::new();
        let mut seen = Vec::new();
        for request in batch {
            match request.desired.as_ref().and_then(crate::vm::host_in) {
                Some(host) if matches!(request.kind, Kind::Vm | Kind::Volume) => {
                    by_host
                        .entry((host, request.kind == Kind::Vm))
                        .or_default()
                        .push(request.clone());
                }
                // A VM the scheduler has not placed and state does not record is nowhere.
                None if request.kind == Kind::Vm => {
                    seen.push((request.address.clone(), Observed::Absent))
                }
                _ => seen.push((
                    request.address.clone(),
                    Observed::Unknown("it names no host to look on".into()),
                )),
            }
        }
        for ((host, vms), requests) in by_host {
            let session = self.session(host).await?;
            self.commands
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            seen.extend(if vms {
                crate::vm::observe(&session, &requests).await?
            } else {
                crate::volume::observe(&session, &requests).await?
            });
        }
        Ok(seen)
    }

    fn host_of(address: &str) -> Option<String> {
        nimbus_schemas::Address::target_of(address)
    }
}

/// The facts script: one line of tab-separated values.
const FACTS: &str = r#"( . /etc/os-release 2>/dev/null; printf 'H\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${PRETTY_NAME:-unknown}" "$(uname -r)" "$(uname -m)" "$(nproc)" "$(awk '/^MemTotal:/{printf "%.0f", $2 * 1024}' /proc/meminfo)" "$(df -P -B1 / | awk 'NR==2{print $2}')" "$(hostname)" "$(cut -d. -f1 /proc/uptime)" "$( [ -r /dev/kvm ] && [ -w /dev/kvm ] && echo yes || echo no)" "$(awk '/^MemAvailable:/{printf "%.0f", $2 * 1024}' /proc/meminfo)" )"#;

/// What observing one host's instances asks of it: one command of a few processes, whatever
/// the number of instances. Every file and unit file is `stat`ed in one call and hashed in
/// another; every service is shown by one `systemctl show`. (Paths with a newline or a
/// backslash, which `sha256sum` escapes, are probed on their own.)
struct Probe {
    /// File paths to stat and hash, once each.
    files: Vec<String>,
    /// Unit names to show, once each.
    units: Vec<String>,
    host: bool,
}

const STAT_FORMAT: &str = "F\\t%a\\t%U\\t%G\\t%F\\t%n\\n";

impl Probe {
    fn new(batch: &[ObserveRequest]) -> Self {
        let mut probe = Probe {
            files: Vec::new(),
            units: Vec::new(),
            host: false,
        };
        let add = |list: &mut Vec<String>, key: String| {
            if !list.contains(&key) {
                list.push(key);
            }
        };
        for request in batch {
            match request.kind {
                Kind::Host => probe.host = true,
                Kind::File => {
                    let path = request
                        .desired
                        .as_ref()
                        .and_then(|d| d["path"].as_str())
                        .unwrap_or("/nonexistent");
                    add(&mut probe.files, path.to_owned());
                }
                Kind::Service => {
                    let unit = unit_name(&nimbus_schemas::Address::resource_of(&request.address));
                    add(&mut probe.files, format!("{UNIT_DIR}/{unit}"));
                    add(&mut probe.units, unit);
                }
                _ => {}
            }
        }
        probe
    }

    fn script(&self) -> String {
        let mut script = String::from("set +e\n");
        if self.host {
            script.push_str("printf 'H\\n'\n");
        }
        let plain: Vec<String> = self
            .files
            .iter()
            .filter(|p| !p.contains(['\n', '\\']))
            .map(|p| shell_quote(p))
            .collect();
        if !plain.is_empty() {
            let list = plain.join(" ");
            let _ = writeln!(
                script,
                "stat --printf '{STAT_FORMAT}' -- {list} 2>/dev/null\nsha256sum -- {list} 2>/dev/null"
            );
        }
        for (index, path) in self.files.iter().enumerate() {
            if !path.contains(['\n', '\\']) {
                continue;
            }
            // Rare: one path at a time, its name given back as an index into `files`.
            let p = shell_quote(path);
            let _ = writeln!(
                script,
                "if [ -f {p} ]; then printf 'X\\t{index}\\t%s\\t%s\\n' \"$(stat -c '%a %U %G' {p})\" \"$(sha256sum < {p} | cut -d' ' -f1)\"; fi"
            );
        }
        if !self.units.is_empty() {
            let list: Vec<String> = self.units.iter().map(|u| shell_quote(u)).collect();
            let _ = writeln!(
                script,
                "if command -v systemctl >/dev/null; then systemctl show -p Id -p LoadState -p ActiveState -p UnitFileState -- {} 2>/dev/null; fi",
                list.join(" ")
            );
        }
        script
    }

    /// Reads the command's output back into one observation per request.
    fn read(&self, batch: &[ObserveRequest], stdout: &str) -> Vec<(String, Observed)> {
        // path -> (mode, owner, group, regular file?), path -> digest, unit -> properties
        let mut stats: HashMap<&str, (&str, &str, &str, bool)> = HashMap::new();
        let mut digests: HashMap<&str, &str> = HashMap::new();
        let mut shown: HashMap<String, String> = HashMap::new();
        let mut reachable = false;
        let mut unit_block: Vec<&str> = Vec::new();
        let flush = |block: &mut Vec<&str>, shown: &mut HashMap<String, String>| {
            if let Some(id) = block.iter().find_map(|l| l.strip_prefix("Id=")) {
                shown.insert(id.to_owned(), block.join(" "));
            }
            block.clear();
        };
        for line in stdout.lines() {
            if line == "H" {
                reachable = true;
            } else if let Some(rest) = line.strip_prefix("F\t") {
                let f: Vec<&str> = rest.splitn(5, '\t').collect();
                if let [mode, owner, group, kind, path] = f.as_slice() {
                    stats.insert(path, (mode, owner, group, kind.starts_with("regular")));
                }
            } else if let Some(rest) = line.strip_prefix("X\t") {
                let f: Vec<&str> = rest.split('\t').collect();
                if let [index, ownership, digest] = f.as_slice()
                    && let Some(path) = index.parse::<usize>().ok().and_then(|i| self.files.get(i))
                {
                    let mut parts = ownership.split_whitespace();
                    let (mode, owner, group) = (
                        parts.next().unwrap_or("0"),
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                    );
                    stats.insert(path.as_str(), (mode, owner, group, true));
                    digests.insert(path.as_str(), digest);
                }
            } else if line.contains('=') && !line.contains("  ") {
                unit_block.push(line);
            } else if line.is_empty() {
                flush(&mut unit_block, &mut shown);
            } else if let Some((digest, path)) = line.split_once("  ")
                && digest.len() == 64
            {
                digests.insert(path, digest);
            }
        }
        flush(&mut unit_block, &mut shown);

        let mut observed = Vec::new();
        for request in batch {
            let desired = request.desired.clone().unwrap_or(Value::Null);
            let observation = match request.kind {
                // A reachable Host is as declared; its facts go to outputs on apply.
                Kind::Host if reachable => Observed::Present(desired),
                Kind::File => {
                    let path = desired["path"].as_str().unwrap_or("/nonexistent");
                    match (stats.get(path), digests.get(path)) {
                        (Some(&(mode, owner, group, true)), Some(digest)) => {
                            let mut value = Map::new();
                            value.insert("path".into(), desired["path"].clone());
                            value.insert("content".into(), json!({"sha256": digest}));
                            // Only what the manifest sets is compared.
                            if !desired["mode"].is_null() {
                                value.insert("mode".into(), Value::String(format!("{mode:0>4}")));
                            }
                            if !desired["owner"].is_null() {
                                value.insert("owner".into(), Value::String(owner.into()));
                            }
                            if !desired["group"].is_null() {
                                value.insert("group".into(), Value::String(group.into()));
                            }
                            Observed::Present(Value::Object(value))
                        }
                        _ => Observed::Absent,
                    }
                }
                Kind::Service => {
                    let unit = unit_name(&nimbus_schemas::Address::resource_of(&request.address));
                    match shown.get(&unit) {
                        Some(properties) => {
                            let path = format!("{UNIT_DIR}/{unit}");
                            let digest = digests.get(path.as_str()).copied().unwrap_or("-");
                            observed_service(&desired, digest, properties)
                        }
                        // No systemd: left unknown here; applying says why it cannot be done.
                        None => continue,
                    }
                }
                _ => continue,
            };
            observed.push((request.address.clone(), observation));
        }
        observed
    }
}

/// One file of a batch: its content is the next `len` bytes of the batch's standard input.
struct FileWrite {
    path: String,
    len: usize,
    mode: String,
    /// `owner:group`, `owner`, `:group`, or empty to leave them.
    chown: String,
}

/// The script that writes a batch of files, each atomically: first every content is read, in
/// order, from standard input into a temporary file beside its destination (parents created),
/// then each is given its mode and owner, fsynced, and renamed over the destination. Prints
/// `W<TAB>i<TAB>ok` or `W<TAB>i<TAB>err<TAB>message` for each file; one failure stops no other.
fn write_files_script(files: &[FileWrite]) -> String {
    let mut script = String::from(
        "set +e\n\
         stage() { d=$(dirname \"$1\"); if mkdir -p \"$d\" 2>/dev/null && T=$(mktemp \"$d/.nimbus.XXXXXX\" 2>/dev/null); then head -c \"$2\" > \"$T\"; else T=; head -c \"$2\" > /dev/null; fi; }\n\
         fin() { if [ -z \"$2\" ]; then printf 'W\\t%s\\terr\\tpath\\tcannot create %s or a temporary file in it\\n' \"$1\" \"$(dirname \"$3\")\"; return; fi; \
         f=mode; err=$(chmod \"$4\" \"$2\" 2>&1) && { f=chown; [ -z \"$5\" ] || err=$(chown -- \"$5\" \"$2\" 2>&1); } && { f=path; err=$( { sync \"$2\" && mv -f \"$2\" \"$3\"; } 2>&1 ); }; \
         if [ $? -eq 0 ]; then printf 'W\\t%s\\tok\\n' \"$1\"; else rm -f \"$2\"; printf 'W\\t%s\\terr\\t%s\\t%s\\n' \"$1\" \"$f\" \"$(printf %s \"$err\" | tr '\\n\\t' '  ')\"; fi; }\n",
    );
    // Interrupted (the connection dropped: nimbus was killed), the script takes its staged
    // temporary files away: a file either reached its path whole or left nothing behind.
    let staged: Vec<String> = (0..files.len()).map(|i| format!("\"$t{i}\"")).collect();
    let _ = writeln!(
        script,
        "cleanup() {{ rm -f -- {} 2>/dev/null; }}\ntrap cleanup EXIT\ntrap 'exit 129' HUP PIPE INT TERM",
        staged.join(" ")
    );
    for (i, file) in files.iter().enumerate() {
        let _ = writeln!(
            script,
            "stage {} {}; t{i}=$T",
            shell_quote(&file.path),
            file.len
        );
    }
    for (i, file) in files.iter().enumerate() {
        let _ = writeln!(
            script,
            "fin {i} \"$t{i}\" {} {} {}",
            shell_quote(&file.path),
            shell_quote(&file.mode),
            shell_quote(&file.chown)
        );
    }
    script
}

impl Provider for HostsProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn describe(&self) -> ProviderSchema {
        schema()
    }

    fn observe<'a>(
        &'a self,
        target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move {
            // VMs are not per host in the graph: each is observed on the host it names or
            // was placed on, with the other VMs of that host.
            if target.is_none()
                && batch
                    .iter()
                    .any(|r| matches!(r.kind, Kind::Vm | Kind::Volume))
            {
                return self.observe_on_their_hosts(batch).await;
            }
            // Host instances are not per host in the graph; each one is its own target.
            let host = match target {
                Some(host) => host.to_owned(),
                None => match batch.iter().find_map(|r| Self::host_of(&r.address)) {
                    Some(host) => host.to_owned(),
                    None => return Ok(Vec::new()),
                },
            };
            let probe = Probe::new(batch);
            let session = self.session(&host).await?;
            let output = self.exec(&session, &probe.script(), None).await?;
            Ok(probe.read(batch, &String::from_utf8_lossy(&output.stdout)))
        })
    }

    fn discover<'a>(
        &'a self,
        target: Option<&'a str>,
        request: &'a nimbus_provider_core::DiscoverRequest,
    ) -> BoxFuture<'a, Result<Vec<nimbus_provider_core::Discovered>, ProviderError>> {
        Box::pin(async move {
            match target {
                Some(host) => discover::discover(self, host, request).await,
                None => Ok(Vec::new()),
            }
        })
    }

    fn apply<'a>(
        &'a self,
        change: &'a Change,
        _cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            if matches!(change.kind, Kind::Vm | Kind::Volume) {
                // Moved to another host: the old one goes from the host state records, then
                // the new one is made on its new host.
                let old = change.before.as_ref().and_then(crate::vm::host_in);
                let new = change.after.as_ref().and_then(crate::vm::host_in);
                if change.action == Action::Replace
                    && let (Some(old), Some(new)) = (old, new)
                    && old != new
                {
                    let delete = Change {
                        action: Action::Delete,
                        after: None,
                        ..change.clone()
                    };
                    self.apply_on_host(old, &delete).await.map_err(|e| {
                        e.with_context(&format!("removing it from Host/{old}"))
                            .naming(&change.address)
                    })?;
                    let create = Change {
                        action: Action::Create,
                        before: None,
                        ..change.clone()
                    };
                    return self.apply_on_host(new, &create).await;
                }
                let host = change
                    .after
                    .as_ref()
                    .or(change.before.as_ref())
                    .and_then(crate::vm::host_in)
                    .ok_or_else(|| {
                        ProviderError::Failed(format!(
                            "{}: no host: name one with `host`, or a `placement` the scheduler can place it by",
                            change.address
                        ))
                    })?
                    .to_owned();
                return self.apply_on_host(&host, change).await;
            }
            let host = Self::host_of(&change.address)
                .ok_or_else(|| ProviderError::Bug(format!("{} names no host", change.address)))?
                .to_owned();
            if change.kind == Kind::File && change.action != Action::Delete {
                let applied = self.write_file(&host, change).await?;
                // A replace that moved the file removes it from where it was.
                let old = change.before.as_ref().and_then(|b| b["path"].as_str());
                let new = change.after.as_ref().and_then(|a| a["path"].as_str());
                if let (Action::Replace, Some(old)) = (change.action, old)
                    && Some(old) != new
                {
                    let session = self.session(&host).await?;
                    let output = self
                        .exec(&session, &format!("rm -f {}", shell_quote(old)), None)
                        .await?;
                    if output.status != 0 {
                        return Err(ProviderError::Failed(format!(
                            "{}: written at its new path, but removing {old} failed: {}",
                            change.address,
                            String::from_utf8_lossy(&output.stderr).trim()
                        )));
                    }
                }
                return Ok(applied);
            }
            let session = self.session(&host).await?;
            match (change.kind, change.action) {
                (Kind::Host, Action::Delete) => Ok(Applied {
                    observed: Value::Null,
                    outputs: Value::Null,
                }),
                (Kind::Host, _) => {
                    let output = self.exec(&session, FACTS, None).await?;
                    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                    let f: Vec<&str> = line.split('\t').collect();
                    let number = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                    let facts = json!({
                        "os": f.get(1), "kernel": f.get(2), "arch": f.get(3), "cpus": number(4),
                        "memory": number(5), "disk": number(6), "hostname": f.get(7), "uptime": number(8),
                        // Whether VMs get KVM there, or run under TCG.
                        "kvm": f.get(9).map(|v| *v == "yes"),
                        // The load: memory available then (the figure the agent reports), for
                        // the scheduler's reservation of what nimbus did not put there.
                        "memoryAvailable": number(10),
                    });
                    // The key the host presented is recorded: with trust on first use, it is
                    // pinned from then on.
                    Ok(Applied {
                        observed: change.after.clone().unwrap_or(Value::Null),
                        outputs: json!({"facts": facts, "hostKey": session.host_key()}),
                    })
                }
                (Kind::File, Action::Delete) => {
                    let path = change
                        .before
                        .as_ref()
                        .and_then(|b| b["path"].as_str())
                        .unwrap_or_default();
                    if path.is_empty() {
                        return Err(ProviderError::Bug(format!(
                            "{}: no path to delete",
                            change.address
                        )));
                    }
                    let output = self
                        .exec(&session, &format!("rm -f {}", shell_quote(path)), None)
                        .await?;
                    if output.status != 0 {
                        return Err(ProviderError::Failed(format!(
                            "{}: rm failed: {}",
                            change.address,
                            String::from_utf8_lossy(&output.stderr).trim()
                        )));
                    }
                    Ok(Applied {
                        observed: Value::Null,
                        outputs: Value::Null,
                    })
                }
                (Kind::Service, Action::Delete) => {
                    let unit = unit_name(&change.resource);
                    // Stop and disable; the unit file goes only if nimbus wrote it.
                    let wrote_unit = change.before.as_ref().is_some_and(|b| !b["unit"].is_null());
                    let script = remove_service_script(&unit, wrote_unit);
                    let output = self.exec(&session, &script, None).await?;
                    if output.status != 0 {
                        return Err(ProviderError::Failed(format!(
                            "{}: removing {unit} failed: {}",
                            change.address,
                            String::from_utf8_lossy(&output.stderr).trim()
                        )));
                    }
                    Ok(Applied {
                        observed: Value::Null,
                        outputs: Value::Null,
                    })
                }
                (Kind::Service, _) => {
                    let after = change.after.as_ref().ok_or_else(|| {
                        ProviderError::Bug(format!("{} has no desired spec", change.address))
                    })?;
                    let unit = unit_name(&change.resource);
                    let script = service_script(&unit, after, !change.restart_for.is_empty());
                    let input = after["unit"].as_str().map(str::as_bytes);
                    let output = self.exec(&session, &script, input).await?;
                    if output.status != 0 {
                        let mut reason = format!(
                            "{}: {}",
                            change.address,
                            String::from_utf8_lossy(&output.stderr).trim()
                        );
                        // A service created now that cannot run is taken away again, so a
                        // failed create leaves no unit behind that nothing owns.
                        if change.action == Action::Create && !after["unit"].is_null() {
                            let undo = remove_service_script(&unit, true);
                            if self.exec(&session, &undo, None).await.is_ok() {
                                reason.push_str(" (the unit written for it was removed again)");
                            }
                        }
                        return Err(ProviderError::Failed(reason));
                    }
                    let mut observed = after.clone();
                    self.service_schema.normalize(&mut observed);
                    Ok(Applied {
                        observed,
                        outputs: Value::Null,
                    })
                }
                (kind, _) => Err(ProviderError::Bug(format!(
                    "the hosts provider does not serve {kind}"
                ))),
            }
        })
    }
}
