//! What `nimbus agent` serves on a host, through the provider protocol (SPEC §11): the host's
//! facts and load, read from the kernel's own files, with no shell and no command run. It is
//! the first part of the agent (issue 12): the WireGuard mesh, the install over SSH and the
//! forwarded socket come next; nothing on the controller's side speaks to it yet.
//!
//! Served: `observe` of a Host gives `{facts: {...}, load: {...}}`; `apply` of a Host reads
//! the facts again (as the SSH provider's does, into outputs). Any other kind is refused with
//! a sentence: the agent does only what its protocol names.

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
}

impl Local {
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Local { root: root.into() }
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
        })
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
        })
    }

    fn refuse(kind: Kind) -> ProviderError {
        ProviderError::Failed(format!(
            "the agent does not serve {kind} in this release (it reports a Host's facts and load)"
        ))
    }
}

impl Default for Local {
    fn default() -> Self {
        Local::new(Path::new("/"))
    }
}

impl Provider for Local {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn describe(&self) -> ProviderSchema {
        ProviderSchema {
            provider: PROVIDER.to_owned(),
            kinds: vec![KindSchema {
                // Facts and load are read, never compared against a manifest.
                compare_fields: Some(Vec::new()),
                ..KindSchema::default_for(Kind::Host)
            }],
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
                kind => Err(Self::refuse(kind)),
            }
        })
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
                   "memory": 16_384_000_u64 * 1024, "hostname": "web-1", "uptime": 3600})
        );
        assert_eq!(
            local.load(),
            json!({"load1": 0.5, "load5": 0.25, "load15": 0.1, "memoryAvailable": 8_192_000_u64 * 1024})
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
        let refused = local.observe(None, &[request(Kind::Network)]).await;
        assert!(
            matches!(&refused, Err(ProviderError::Failed(m)) if m.contains("does not serve Network")),
            "{refused:?}"
        );
    }
}
