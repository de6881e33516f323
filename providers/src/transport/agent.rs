//! What `nimbus agent` serves on a host, through the provider protocol (SPEC §11): the host's
//! facts and load, read from the kernel's own files, with no shell and no command run; and the
//! controller's side that puts it on a host and speaks to it through the forwarded socket
//! ([`Installer`]); and a Network's WireGuard interface on the host ([`crate::wireguard`]).
//!
//! Served: `observe` of a Host gives `{facts: {...}, load: {...}}`; `apply` of a Host reads
//! the facts again (as the SSH provider's does, into outputs). `observe` of a Network instance
//! takes `{interface}` as its desired spec and answers what the host has of that interface
//! (never its private key); `apply` of a Network takes one operation in `after`:
//! `{operation: "configure", config, arm?}`, `{operation: "key", interface}` (the public key,
//! the private one made first when missing), `{operation: "confirm", token}` and
//! `{operation: "remove", interface}`. Any other kind is refused with a sentence: the agent
//! does only what its protocol names.

use std::path::Path;

use nimbus_planner::plan::{Change, KindSchema, Observed, ProviderSchema};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

use crate::{Applied, BoxFuture, Cancel, ObserveRequest, Provider, ProviderError};

/// The agent's provider id.
pub const PROVIDER: &str = nimbus_planner::rules::AGENT;

/// The agent's provider, on the host it runs on. `root` is where the host's files are read
/// from (`/` on a host; a fixture directory in tests).
#[derive(Debug)]
pub struct Local {
    root: std::path::PathBuf,
    wireguard: crate::wireguard::Host,
}

/// One operation on a Network's interface, as the agent's `apply` takes it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "operation", rename_all = "camelCase")]
pub enum NetworkOperation {
    Configure {
        config: crate::wireguard::InterfaceConfig,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arm: Option<crate::wireguard::Arm>,
        /// Answer first, then change: the answer would travel the path the change may cut
        /// (a member nimbus reaches through the network).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deferred: bool,
    },
    Key {
        interface: String,
        /// Read only: `None` when there is no key (an observation makes nothing).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        read_only: bool,
    },
    Confirm {
        token: String,
    },
    Remove {
        interface: String,
    },
}

impl Local {
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Local {
            root: root.into(),
            wireguard: crate::wireguard::Host::system(),
        }
    }

    /// With the WireGuard side given (tests).
    pub fn with_wireguard(mut self, wireguard: crate::wireguard::Host) -> Self {
        self.wireguard = wireguard;
        self
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/'))).ok()
    }

    /// `/proc/meminfo`'s value of `key`, in bytes.
    fn meminfo(&self, key: &str) -> Option<u64> {
        self.read("/proc/meminfo")?.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
    }

    fn first_number(&self, path: &str) -> Option<f64> {
        self.read(path)?.split_whitespace().next()?.parse().ok()
    }

    /// What the host is: the same facts the SSH provider reads (`os`, `kernel`, `cpus`,
    /// `memory` in bytes, `hostname`, `uptime` in seconds), without running anything.
    pub fn facts(&self) -> Value {
        let os = self.read("/etc/os-release").and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        });
        let cpus = self
            .read("/proc/cpuinfo")
            .map(|text| text.lines().filter(|l| l.starts_with("processor")).count());
        json!({
            "os": os,
            "kernel": self.read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
            "cpus": cpus.filter(|n| *n > 0),
            "memory": self.meminfo("MemTotal"),
            "hostname": self.read("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()),
            "uptime": self.first_number("/proc/uptime").map(|s| s as u64),
            "disk": self.disk().map(|(total, _)| total),
        })
    }

    /// The root file system's size and the bytes free to unprivileged users, in bytes.
    fn disk(&self) -> Option<(u64, u64)> {
        let seen = rustix::fs::statvfs(&self.root).ok()?;
        Some((
            seen.f_blocks.saturating_mul(seen.f_frsize),
            seen.f_bavail.saturating_mul(seen.f_frsize),
        ))
    }

    /// How busy it is now: load averages (1, 5, 15 minutes) and memory available, in bytes.
    pub fn load(&self) -> Value {
        let averages: Vec<f64> = self
            .read("/proc/loadavg")
            .map(|text| {
                text.split_whitespace()
                    .take(3)
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "load1": averages.first(),
            "load5": averages.get(1),
            "load15": averages.get(2),
            "memoryAvailable": self.meminfo("MemAvailable"),
            "diskAvailable": self.disk().map(|(_, free)| free),
            "uptime": self.first_number("/proc/uptime").map(|s| s as u64),
        })
    }

    fn refuse(kind: Kind) -> ProviderError {
        ProviderError::Failed(format!(
            "the agent does not serve {kind} in this release (it reports a Host's facts and load, and configures a Network's interface)"
        ))
    }
}

impl Default for Local {
    fn default() -> Self {
        Local::new(Path::new("/"))
    }
}

/// One Network operation on this host's WireGuard side (blocking: commands and socket calls).
fn network(
    host: &crate::wireguard::Host,
    operation: NetworkOperation,
) -> Result<Applied, ProviderError> {
    match operation {
        NetworkOperation::Configure {
            config,
            arm: Some(arm),
            deferred: true,
        } => Ok(Applied {
            observed: Value::Null,
            outputs: json!({"publicKey": host.apply_deferred(config, arm)?, "deferred": true}),
        }),
        NetworkOperation::Configure { config, arm, .. } => {
            host.apply(&config, arm.as_ref())?;
            let observed = host.observe(&config.interface)?.unwrap_or(Value::Null);
            let public = observed["publicKey"].clone();
            Ok(Applied {
                observed,
                outputs: json!({"publicKey": public}),
            })
        }
        NetworkOperation::Key {
            interface,
            read_only: true,
        } => Ok(Applied {
            observed: Value::Null,
            outputs: json!({"publicKey": host.public_key(&interface)}),
        }),
        NetworkOperation::Key { interface, .. } => Ok(Applied {
            observed: Value::Null,
            outputs: json!({"publicKey": host.ensure_key(&interface)?}),
        }),
        NetworkOperation::Confirm { token } => {
            host.confirm(&token)?;
            Ok(Applied {
                observed: Value::Null,
                outputs: json!({"confirmed": token}),
            })
        }
        NetworkOperation::Remove { interface } => {
            host.remove(&interface)?;
            Ok(Applied {
                observed: Value::Null,
                outputs: Value::Null,
            })
        }
    }
}

impl Provider for Local {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn describe(&self) -> ProviderSchema {
        ProviderSchema {
            provider: PROVIDER.to_owned(),
            kinds: vec![
                KindSchema {
                    // Facts and load are read, never compared against a manifest.
                    compare_fields: Some(Vec::new()),
                    ..KindSchema::default_for(Kind::Host)
                },
                KindSchema::default_for(Kind::Network),
            ],
        }
    }

    fn observe<'a>(
        &'a self,
        _target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move {
            batch
                .iter()
                .map(|request| match request.kind {
                    Kind::Host => Ok((
                        request.address.clone(),
                        Observed::Present(json!({"facts": self.facts(), "load": self.load()})),
                    )),
                    Kind::Network => {
                        let interface = request
                            .desired
                            .as_ref()
                            .and_then(|d| d["interface"].as_str())
                            .ok_or_else(|| {
                                ProviderError::Failed(format!(
                                    "{}: observing a Network needs its `interface`",
                                    request.address
                                ))
                            })?;
                        let seen = match self.wireguard.observe(interface)? {
                            Some(value) => Observed::Present(value),
                            None => Observed::Absent,
                        };
                        Ok((request.address.clone(), seen))
                    }
                    kind => Err(Self::refuse(kind)),
                })
                .collect()
        })
    }

    fn apply<'a>(
        &'a self,
        change: &'a Change,
        _cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            match change.kind {
                Kind::Host => Ok(Applied {
                    observed: change.after.clone().unwrap_or(Value::Null),
                    outputs: json!({"facts": self.facts()}),
                }),
                Kind::Network => {
                    let operation: NetworkOperation =
                        serde_json::from_value(change.after.clone().unwrap_or(Value::Null))
                            .map_err(|e| {
                                ProviderError::Failed(format!(
                                    "{}: not a Network operation the agent knows: {e}",
                                    change.address
                                ))
                            })?;
                    let wireguard = self.wireguard.clone();
                    // Commands and socket calls block: off the runtime's threads.
                    tokio::task::spawn_blocking(move || network(&wireguard, operation))
                        .await
                        .map_err(|e| ProviderError::Bug(e.to_string()))?
                        .map_err(|e| e.naming(&change.address))
                }
                kind => Err(Self::refuse(kind)),
            }
        })
    }
}

/// The controller's side: this very binary, put on a host over its SSH connection into a
/// versioned path checked by sha256, started there as a systemd unit, and spoken to through a
/// forwarded socket (`direct-streamlocal`): no port is opened. An agent of another build is
/// stopped, never spoken to.
#[derive(Debug, Clone)]
pub struct Installer {
    binary: std::path::PathBuf,
    sha256: String,
}

/// Where agents live on a host.
const AGENT_DIR: &str = "/var/lib/nimbus/agent";

impl Installer {
    /// The running binary, hashed once; or the file `NIMBUS_AGENT_BINARY` names (the same
    /// version stripped, or built for the hosts' architecture): the hello checks that it
    /// speaks this nimbus's protocol.
    pub fn of_current_exe() -> Result<Installer, ProviderError> {
        if let Some(path) = std::env::var_os("NIMBUS_AGENT_BINARY").filter(|p| !p.is_empty()) {
            return Installer::of(std::path::PathBuf::from(path));
        }
        let binary = std::env::current_exe()
            .map_err(|e| ProviderError::Failed(format!("cannot find nimbus's own binary: {e}")))?;
        Installer::of(binary)
    }

    pub fn of(binary: std::path::PathBuf) -> Result<Installer, ProviderError> {
        let bytes = std::fs::read(&binary)
            .map_err(|e| ProviderError::Failed(format!("cannot read {}: {e}", binary.display())))?;
        let sha256 = crate::sha256_hex(&bytes);
        Ok(Installer { binary, sha256 })
    }

    /// This build's short name: version and the start of its digest.
    pub fn build(&self) -> String {
        format!("{}-{}", env!("CARGO_PKG_VERSION"), &self.sha256[..16])
    }

    /// The binary's path on a host.
    pub fn remote_path(&self) -> String {
        format!("{AGENT_DIR}/{}/nimbus", self.build())
    }

    /// The agent's socket on a host: one per build, so that a caller never reaches another
    /// build's agent.
    pub fn socket(&self) -> String {
        format!("/run/nimbus/agent-{}.sock", self.build())
    }

    fn unit(&self) -> String {
        format!("nimbus-agent-{}.service", self.build())
    }

    /// Puts the binary on the host when it is not there with this digest, stops agents of
    /// other builds, and starts this one when it does not answer. Returns whether it copied.
    pub async fn ensure(&self, session: &crate::ssh::SshSession) -> Result<bool, ProviderError> {
        // This build's socket answers only for this build: nothing to check or copy.
        if self.hello(session).await.is_ok() {
            return Ok(false);
        }
        let host = session.name();
        let path = self.remote_path();
        let present = session
            .exec(&format!("sha256sum {path} 2>/dev/null"), None)
            .await?;
        let copied = !String::from_utf8_lossy(&present.stdout).starts_with(&self.sha256);
        if copied {
            let bytes = std::fs::read(&self.binary).map_err(|e| {
                ProviderError::Failed(format!("cannot read {}: {e}", self.binary.display()))
            })?;
            let dir = format!("{AGENT_DIR}/{}", self.build());
            let wrote = session
                .exec(
                    &format!(
                        "set -e; mkdir -p -m 0700 {dir}; cat > {path}.tmp; chmod 0700 {path}.tmp; \
                         if [ \"$(sha256sum < {path}.tmp | cut -d' ' -f1)\" = {sha} ]; then mv {path}.tmp {path}; \
                         else rm -f {path}.tmp; echo 'the copy does not have the digest it was sent with' >&2; exit 1; fi",
                        sha = self.sha256
                    ),
                    Some(&bytes),
                )
                .await?;
            if wrote.status != 0 {
                return Err(ProviderError::Failed(format!(
                    "Host/{host}: cannot install the agent at {path}: {}",
                    String::from_utf8_lossy(&wrote.stderr).trim()
                )));
            }
        }
        if self.hello(session).await.is_ok() {
            return Ok(copied);
        }
        // Other builds' agents go; this one starts.
        let unit = self.unit();
        let started = session
            .exec(
                &format!(
                    "for u in $(systemctl list-units --all --plain --no-legend 'nimbus-agent-*' | awk '{{print $1}}'); do \
                       [ \"$u\" = {unit} ] || systemctl stop \"$u\"; done; \
                     systemctl reset-failed {unit} 2>/dev/null; \
                     systemd-run --quiet --unit={unit} --collect {path} agent --socket {socket}",
                    socket = self.socket()
                ),
                None,
            )
            .await?;
        if started.status != 0 {
            return Err(ProviderError::Failed(format!(
                "Host/{host}: the agent does not start: {}",
                String::from_utf8_lossy(&started.stderr).trim()
            )));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match self.hello(session).await {
                Ok(()) => return Ok(copied),
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(ProviderError::Failed(format!(
                        "Host/{host}: the agent started but does not answer: {e}"
                    )));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    }

    /// A connection to this build's agent on the host, through the SSH connection.
    pub async fn connect(
        &self,
        session: &crate::ssh::SshSession,
    ) -> Result<Connection, ProviderError> {
        let stream = session.open_socket(&self.socket()).await?;
        Ok(Connection {
            host: session.name().to_owned(),
            stream: tokio::io::BufReader::new(stream),
            next_id: 1,
        })
    }

    async fn hello(&self, session: &crate::ssh::SshSession) -> Result<(), ProviderError> {
        let mut connection = self.connect(session).await?;
        let hello: crate::protocol::Hello = connection
            .call(crate::protocol::Call::Hello(crate::protocol::Hello {
                protocol_version: crate::protocol::PROTOCOL_VERSION,
                software: env!("CARGO_PKG_VERSION").to_owned(),
            }))
            .await?;
        crate::protocol::check_hello(&format!("the agent on Host/{}", connection.host), &hello)
    }
}

/// One connection to an agent: calls answered in order.
pub struct Connection {
    host: String,
    stream: tokio::io::BufReader<russh::ChannelStream<russh::client::Msg>>,
    next_id: u64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .finish()
    }
}

impl Connection {
    /// Sends one call and reads its answer.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        call: crate::protocol::Call,
    ) -> Result<T, ProviderError> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let id = self.next_id;
        self.next_id += 1;
        let host = self.host.clone();
        let lost =
            |e: std::io::Error| ProviderError::Transient(format!("the agent on Host/{host}: {e}"));
        let mut line = serde_json::to_string(&crate::protocol::Request { id, call })
            .map_err(|e| ProviderError::Bug(e.to_string()))?;
        line.push('\n');
        self.stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .map_err(lost)?;
        let mut answer = String::new();
        if self.stream.read_line(&mut answer).await.map_err(lost)? == 0 {
            return Err(ProviderError::Transient(format!(
                "the agent on Host/{} closed the connection",
                self.host
            )));
        }
        let response: crate::protocol::Response = serde_json::from_str(&answer).map_err(|e| {
            ProviderError::Failed(format!(
                "the agent on Host/{} answered garbage: {e}",
                self.host
            ))
        })?;
        match response.outcome {
            crate::protocol::Outcome::Result(value) => serde_json::from_value(value).map_err(|e| {
                ProviderError::Failed(format!(
                    "the agent on Host/{} answered something unexpected: {e}",
                    self.host
                ))
            }),
            crate::protocol::Outcome::Error(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap_or(dir.path()))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        };
        write(
            "proc/meminfo",
            "MemTotal:       16384000 kB\nMemFree:  100 kB\nMemAvailable:    8192000 kB\n",
        );
        write(
            "proc/cpuinfo",
            "processor\t: 0\nmodel\t: x\n\nprocessor\t: 1\n",
        );
        write("proc/loadavg", "0.50 0.25 0.10 1/100 4242\n");
        write("proc/uptime", "3600.42 7000.00\n");
        write("proc/sys/kernel/osrelease", "6.1.0-test\n");
        write("proc/sys/kernel/hostname", "web-1\n");
        write(
            "etc/os-release",
            "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        );
        dir
    }

    #[test]
    fn facts_and_load_come_from_the_kernels_files() {
        let dir = fixture();
        let local = Local::new(dir.path());
        assert_eq!(
            local.facts(),
            json!({"os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0-test", "cpus": 2,
                   "memory": 16_384_000_u64 * 1024, "hostname": "web-1", "uptime": 3600,
                   "disk": local.disk().map(|(total, _)| total)})
        );
        let load = local.load();
        assert_eq!(
            (
                &load["load1"],
                &load["load5"],
                &load["load15"],
                &load["memoryAvailable"],
                &load["uptime"]
            ),
            (
                &json!(0.5),
                &json!(0.25),
                &json!(0.1),
                &json!(8_192_000_u64 * 1024),
                &json!(3600)
            )
        );
        // The fixture's directory is on a real file system: it has a size and free space.
        assert!(
            local
                .disk()
                .is_some_and(|(total, free)| total > 0 && free <= total)
        );
    }

    #[tokio::test]
    async fn only_hosts_are_served() {
        let dir = fixture();
        let local = Local::new(dir.path());
        let request = |kind| ObserveRequest {
            address: "Host/web-1".into(),
            kind,
            desired: None,
        };
        let seen = local
            .observe(None, &[request(Kind::Host)])
            .await
            .unwrap_or_default();
        assert!(
            matches!(&seen[..], [(_, Observed::Present(v))] if v["facts"]["cpus"] == 2),
            "{seen:?}"
        );
        let refused = local.observe(None, &[request(Kind::Workload)]).await;
        assert!(
            matches!(&refused, Err(ProviderError::Failed(m)) if m.contains("does not serve Workload")),
            "{refused:?}"
        );
    }
}
