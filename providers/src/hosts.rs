//! The hosts provider, over SSH: Host (facts), File and Service (systemd). One connection per
//! host, opened on first use and shared by every operation on that host. Observing all of a
//! host's instances is one command, whatever their number. Content is never fetched to compare
//! it: files and unit files are compared by SHA-256.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use nimbus_planner::plan::{Action, Change, DefaultRules, KindRules, Observed};
use nimbus_schemas::Kind;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::ssh::{SshSession, SshTarget};
use crate::{Applied, BoxFuture, ObserveRequest, Provider, ProviderError};

/// Single-quotes a string for the remote shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The rules of Host and File as this provider sees them.
#[derive(Debug, Default)]
pub struct HostRules;

impl KindRules for HostRules {
    fn replace_fields(&self, kind: Kind) -> &[&'static str] {
        DefaultRules.replace_fields(kind)
    }

    fn sensitive_fields(&self, kind: Kind) -> &[&'static str] {
        DefaultRules.sensitive_fields(kind)
    }

    /// A File compares as what can be seen on the host: path, content digest, and the mode,
    /// owner and group it sets. A Service compares as its unit file's digest, whether it is
    /// enabled, and whether it runs. A Host compares as its connection settings.
    fn normalize(&self, kind: Kind, spec: &mut Value) {
        let (fields, text_field): (&[&str], &str) = match kind {
            Kind::File => (&["path", "mode", "owner", "group"], "content"),
            Kind::Service => (&["enabled", "state"], "unit"),
            _ => return,
        };
        let Value::Object(map) = spec else { return };
        let mut comparable = Map::new();
        for &key in fields {
            if let Some(value) = map.get(key).filter(|v| !v.is_null()) {
                comparable.insert(key.into(), value.clone());
            }
        }
        // Content compares by digest, `{"sha256": ...}`; an observed spec already has it.
        match map.get(text_field) {
            Some(Value::String(text)) => {
                comparable.insert(
                    text_field.into(),
                    json!({"sha256": sha256_hex(text.as_bytes())}),
                );
            }
            Some(digest @ Value::Object(_)) => {
                comparable.insert(text_field.into(), digest.clone());
            }
            _ => {}
        }
        *map = comparable;
    }
}

pub struct HostsProvider {
    targets: HashMap<String, SshTarget>,
    /// One connection per host, made once even when many changes ask at the same time.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<SshSession>>>>>,
    rules: HostRules,
}

impl std::fmt::Debug for HostsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostsProvider")
            .field("hosts", &self.targets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HostsProvider {
    /// A provider for these hosts, by Host name.
    pub fn new(targets: impl IntoIterator<Item = SshTarget>) -> Self {
        HostsProvider {
            targets: targets.into_iter().map(|t| (t.name.clone(), t)).collect(),
            sessions: Mutex::new(HashMap::new()),
            rules: HostRules,
        }
    }

    /// The connection to `host`, opened on first use (through its bastion, if it has one).
    fn session<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Arc<SshSession>, ProviderError>> {
        Box::pin(async move {
            let cell = {
                let mut sessions = self.sessions.lock().await;
                Arc::clone(sessions.entry(host.to_owned()).or_default())
            };
            let session = cell
                .get_or_try_init(|| async {
                    let target = self.targets.get(host).ok_or_else(|| {
                        ProviderError::Failed(format!("Host/{host} is not declared"))
                    })?;
                    let bastion = match &target.via {
                        Some(via) if via == host => {
                            return Err(ProviderError::Failed(format!(
                                "Host/{host} is its own bastion"
                            )));
                        }
                        Some(via) => Some(self.session(via).await?),
                        None => None,
                    };
                    SshSession::connect_via(target, bastion.as_deref())
                        .await
                        .map(Arc::new)
                })
                .await?;
            Ok(Arc::clone(session))
        })
    }

    fn host_of(address: &str) -> Option<&str> {
        address
            .split_once('@')
            .map(|(_, host)| host)
            .or_else(|| address.strip_prefix("Host/"))
    }
}

/// The facts script: one line of tab-separated values.
const FACTS: &str = r#"( . /etc/os-release 2>/dev/null; printf 'H\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${PRETTY_NAME:-unknown}" "$(uname -r)" "$(uname -m)" "$(nproc)" "$(awk '/^MemTotal:/{printf "%.0f", $2 * 1024}' /proc/meminfo)" "$(df -P -B1 / | awk 'NR==2{print $2}')" "$(hostname)" "$(cut -d. -f1 /proc/uptime)" )"#;

/// The unit name of `Service/NAME`.
fn unit_name(resource: &str) -> String {
    let name = resource.strip_prefix("Service/").unwrap_or(resource);
    if name.ends_with(".service") {
        name.to_owned()
    } else {
        format!("{name}.service")
    }
}

const UNIT_DIR: &str = "/etc/systemd/system";

fn service_probe(index: usize, unit: &str) -> String {
    let n = shell_quote(unit);
    format!(
        "if command -v systemctl >/dev/null; then u={UNIT_DIR}/{n}; if [ -f \"$u\" ]; then d=$(sha256sum < \"$u\" | cut -d' ' -f1); else d=-; fi; printf 'S\\t{index}\\t%s\\t%s\\n' \"$d\" \"$(systemctl show -p LoadState -p ActiveState -p UnitFileState {n} 2>/dev/null | tr '\\n' ' ')\"; else printf 'N\\t{index}\\n'; fi\n"
    )
}

/// What `systemctl show` says of a service, as the manifest would say it.
fn observed_service(desired: &Value, digest: &str, properties: &str) -> Observed {
    let property = |key: &str| {
        properties
            .split_whitespace()
            .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    };
    let wants_unit = desired["unit"].is_string();
    if (wants_unit && digest == "-") || (!wants_unit && property("LoadState") == "not-found") {
        return Observed::Absent;
    }
    let mut value = Map::new();
    if wants_unit {
        value.insert("unit".into(), json!({"sha256": digest}));
    }
    // A static, generated or transient unit cannot be enabled or disabled: it is as wanted.
    let enabled = match property("UnitFileState") {
        "enabled" | "enabled-runtime" | "alias" | "linked" | "linked-runtime" => true,
        "static" | "generated" | "transient" | "indirect" => {
            desired["enabled"].as_bool().unwrap_or(true)
        }
        _ => false,
    };
    value.insert("enabled".into(), Value::Bool(enabled));
    let running = matches!(
        property("ActiveState"),
        "active" | "activating" | "reloading"
    );
    value.insert(
        "state".into(),
        Value::String(if running { "running" } else { "stopped" }.into()),
    );
    Observed::Present(Value::Object(value))
}

/// The script that brings a service to its desired spec; the unit file's content, if any, is
/// its standard input. The unit is written (atomically) and systemd reloaded only when the
/// content differs; a running service is restarted when its unit changed or `restart` is set.
fn service_script(unit: &str, desired: &Value, restart: bool) -> String {
    let n = shell_quote(unit);
    let mut script = format!(
        "set -e\nn={n}\nu={UNIT_DIR}/$n\nchanged=0\n\
         command -v systemctl >/dev/null || {{ echo \"this host has no systemctl: a Service needs a host that runs systemd\" >&2; exit 1; }}\n"
    );
    if desired["unit"].is_string() {
        script.push_str(
            "mkdir -p \"$(dirname \"$u\")\"\nt=$(mktemp \"$(dirname \"$u\")/.nimbus.XXXXXX\")\ntrap 'rm -f \"$t\"' EXIT\ncat > \"$t\"\n\
             if [ -f \"$u\" ] && cmp -s \"$t\" \"$u\"; then rm -f \"$t\"; else chmod 0644 \"$t\"; sync \"$t\"; mv -f \"$t\" \"$u\"; changed=1; fi\n\
             trap - EXIT\nif [ $changed = 1 ]; then systemctl daemon-reload; fi\n",
        );
    }
    if desired["enabled"].as_bool().unwrap_or(true) {
        script.push_str("systemctl enable --quiet \"$n\"\n");
    } else {
        script.push_str("systemctl disable --quiet \"$n\"\n");
    }
    if desired["state"].as_str() == Some("stopped") {
        script.push_str("systemctl stop \"$n\"\n");
    } else {
        let _ = writeln!(
            script,
            "if [ $changed = 1 ] || [ {restart} = true ]; then systemctl restart \"$n\"; else systemctl start \"$n\"; fi\n\
             if ! systemctl is-active --quiet \"$n\"; then echo \"$n is not running after start:\" >&2; systemctl status --no-pager --lines=5 \"$n\" >&2 || true; exit 1; fi"
        );
    }
    script
}

fn file_probe(index: usize, path: &str) -> String {
    let p = shell_quote(path);
    format!(
        "if [ -f {p} ]; then printf 'F\\t{index}\\t%s\\t%s\\n' \"$(stat -c '%a %U %G' {p})\" \"$(sha256sum < {p} | cut -d' ' -f1)\"; else printf 'A\\t{index}\\n'; fi\n"
    )
}

impl Provider for HostsProvider {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn kinds(&self) -> &[Kind] {
        &[Kind::Host, Kind::File, Kind::Service]
    }

    fn rules(&self) -> &dyn KindRules {
        &self.rules
    }

    fn observe<'a>(
        &'a self,
        target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move {
            // Host instances are not per host in the graph; each one is its own target.
            let host = match target {
                Some(host) => host.to_owned(),
                None => match batch.iter().find_map(|r| Self::host_of(&r.address)) {
                    Some(host) => host.to_owned(),
                    None => return Ok(Vec::new()),
                },
            };
            let mut script = String::from("set +e\n");
            for (i, request) in batch.iter().enumerate() {
                match request.kind {
                    Kind::Host => {
                        let _ = writeln!(script, "{FACTS}");
                    }
                    Kind::File => {
                        let path = request
                            .desired
                            .as_ref()
                            .and_then(|d| d["path"].as_str())
                            .unwrap_or("/nonexistent");
                        script.push_str(&file_probe(i, path));
                    }
                    Kind::Service => {
                        let resource = request.address.split('@').next().unwrap_or_default();
                        script.push_str(&service_probe(i, &unit_name(resource)));
                    }
                    _ => {}
                }
            }
            let session = self.session(&host).await?;
            let output = session.exec(&script, None).await?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let mut observed = Vec::new();
            for line in stdout.lines() {
                let fields: Vec<&str> = line.split('\t').collect();
                match fields.as_slice() {
                    ["H", ..] => {
                        for request in batch.iter().filter(|r| r.kind == Kind::Host) {
                            // A reachable Host is as declared; its facts go to outputs on apply.
                            observed.push((
                                request.address.clone(),
                                Observed::Present(request.desired.clone().unwrap_or(Value::Null)),
                            ));
                        }
                    }
                    ["F", index, ownership, digest] => {
                        let mut parts = ownership.split_whitespace();
                        let (mode, owner, group) = (
                            parts.next().unwrap_or("0"),
                            parts.next().unwrap_or(""),
                            parts.next().unwrap_or(""),
                        );
                        let Some(request) = index.parse::<usize>().ok().and_then(|i| batch.get(i))
                        else {
                            continue;
                        };
                        let desired = request.desired.clone().unwrap_or(Value::Null);
                        let mut value = Map::new();
                        value.insert("path".into(), desired["path"].clone());
                        value.insert("content".into(), json!({"sha256": digest}));
                        // Only what the manifest sets is compared.
                        if !desired["mode"].is_null() {
                            value.insert("mode".into(), Value::String(format!("{:0>4}", mode)));
                        }
                        if !desired["owner"].is_null() {
                            value.insert("owner".into(), Value::String((*owner).into()));
                        }
                        if !desired["group"].is_null() {
                            value.insert("group".into(), Value::String((*group).into()));
                        }
                        observed.push((
                            request.address.clone(),
                            Observed::Present(Value::Object(value)),
                        ));
                    }
                    ["S", index, digest, properties] => {
                        if let Some(request) =
                            index.parse::<usize>().ok().and_then(|i| batch.get(i))
                        {
                            let desired = request.desired.clone().unwrap_or(Value::Null);
                            observed.push((
                                request.address.clone(),
                                observed_service(&desired, digest, properties),
                            ));
                        }
                    }
                    // No systemd: left unknown here; applying says why it cannot be done.
                    ["N", _] => {}
                    ["A", index] => {
                        if let Some(request) =
                            index.parse::<usize>().ok().and_then(|i| batch.get(i))
                        {
                            observed.push((request.address.clone(), Observed::Absent));
                        }
                    }
                    _ => {}
                }
            }
            Ok(observed)
        })
    }

    fn apply<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            let host = Self::host_of(&change.address)
                .ok_or_else(|| ProviderError::Bug(format!("{} names no host", change.address)))?
                .to_owned();
            let session = self.session(&host).await?;
            match (change.kind, change.action) {
                (Kind::Host, Action::Delete) => Ok(Applied {
                    observed: Value::Null,
                    outputs: Value::Null,
                }),
                (Kind::Host, _) => {
                    let output = session.exec(FACTS, None).await?;
                    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                    let f: Vec<&str> = line.split('\t').collect();
                    let number = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
                    let facts = json!({
                        "os": f.get(1), "kernel": f.get(2), "arch": f.get(3), "cpus": number(4),
                        "memory": number(5), "disk": number(6), "hostname": f.get(7), "uptime": number(8),
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
                    let output = session
                        .exec(&format!("rm -f {}", shell_quote(path)), None)
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
                (Kind::File, _) => {
                    let after = change.after.as_ref().ok_or_else(|| {
                        ProviderError::Bug(format!("{} has no desired spec", change.address))
                    })?;
                    let path = after["path"].as_str().unwrap_or_default();
                    let content = after["content"].as_str().ok_or_else(|| {
                        ProviderError::Failed(format!(
                            "{}: only inline `content` is supported by this provider so far",
                            change.address
                        ))
                    })?;
                    let mut script = format!(
                        "set -e\np={p}\nd=$(dirname \"$p\")\nmkdir -p \"$d\"\nt=$(mktemp \"$d/.nimbus.XXXXXX\")\ntrap 'rm -f \"$t\"' EXIT\ncat > \"$t\"\n",
                        p = shell_quote(path)
                    );
                    if let Some(mode) = after["mode"].as_str() {
                        let _ = writeln!(script, "chmod {} \"$t\"", shell_quote(mode));
                    } else {
                        script.push_str("chmod 0644 \"$t\"\n");
                    }
                    match (after["owner"].as_str(), after["group"].as_str()) {
                        (Some(o), Some(g)) => {
                            let _ = writeln!(
                                script,
                                "chown {}:{} \"$t\"",
                                shell_quote(o),
                                shell_quote(g)
                            );
                        }
                        (Some(o), None) => {
                            let _ = writeln!(script, "chown {} \"$t\"", shell_quote(o));
                        }
                        (None, Some(g)) => {
                            let _ = writeln!(script, "chgrp {} \"$t\"", shell_quote(g));
                        }
                        (None, None) => {}
                    }
                    // Atomic: fsync the temporary file, then rename it over the old one.
                    script.push_str("sync \"$t\"\nmv -f \"$t\" \"$p\"\ntrap - EXIT\n");
                    let output = session.exec(&script, Some(content.as_bytes())).await?;
                    if output.status != 0 {
                        return Err(ProviderError::Failed(format!(
                            "{}: writing {path} failed: {}",
                            change.address,
                            String::from_utf8_lossy(&output.stderr).trim()
                        )));
                    }
                    let mut observed = after.clone();
                    self.rules.normalize(Kind::File, &mut observed);
                    Ok(Applied {
                        observed,
                        outputs: Value::Null,
                    })
                }
                (Kind::Service, Action::Delete) => {
                    let unit = unit_name(&change.resource);
                    // Stop and disable; the unit file goes only if nimbus wrote it.
                    let wrote_unit = change.before.as_ref().is_some_and(|b| !b["unit"].is_null());
                    let mut script = format!(
                        "n={}\nsystemctl disable --now --quiet \"$n\" 2>/dev/null || true\n",
                        shell_quote(&unit)
                    );
                    if wrote_unit {
                        let _ = writeln!(
                            script,
                            "rm -f {UNIT_DIR}/\"$n\"\nsystemctl daemon-reload\nsystemctl reset-failed \"$n\" 2>/dev/null || true"
                        );
                    }
                    let output = session.exec(&script, None).await?;
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
                    let output = session.exec(&script, input).await?;
                    if output.status != 0 {
                        return Err(ProviderError::Failed(format!(
                            "{}: {}",
                            change.address,
                            String::from_utf8_lossy(&output.stderr).trim()
                        )));
                    }
                    let mut observed = after.clone();
                    self.rules.normalize(Kind::Service, &mut observed);
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
