//! What the daemon knows, for /status, /metrics and the pages.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::estate::Estate;
use crate::gitsource::CommitInfo;

/// What the daemon knows, for /status and /metrics.
#[derive(Default)]
pub struct Status {
    pub revision_seen: Option<String>,
    pub revision_applied: Option<String>,
    pub applied_at: Option<f64>,
    pub last_run: Option<Value>,
    /// Diagnostics of the newest commit, when it does not validate (it is then not applied).
    pub errors: Vec<String>,
    /// Instance address → last outcome.
    pub resources: BTreeMap<String, String>,
    pub drift_events: u64,
    pub runs_by_outcome: BTreeMap<String, u64>,
    pub run_durations: Histogram,
    pub fetch_seconds: Histogram,
    pub fetch_error: Option<String>,
    pub webhooks_refused: u64,
    /// The signature policy of the revision in force: (required, allowed signers). A new
    /// commit is held to it, so that it cannot lift the policy or add its own signer.
    pub policy: Option<(bool, Vec<String>)>,
    /// Where the Repository keeps state, once a revision named it.
    pub state_path: Option<crate::state::StateLocation>,
    /// Whether this daemon leads on its state (fetches and applies) or stands by, and who
    /// leads; `None` until it first asked.
    pub role: Option<Role>,
    /// What the reader must know first (the in-memory provider is in use).
    pub notes: Vec<String>,
    /// The branch head whose run failed (it is not in force), and what happened.
    pub head_failed: Option<(String, String)>,
    /// Every instance's health, for the pages.
    pub estate: Estate,
    /// Commits the pages name, read once each.
    pub commits: BTreeMap<String, CommitInfo>,
    /// The providers' schemas of the last run: which fields the pages hide.
    pub rules: nimbus_planner::plan::Rules,
    /// Each Host's facts and load as its agent reported them after the last run, and when.
    pub hosts: BTreeMap<String, Value>,
    pub hosts_at: Option<f64>,
}

impl Status {
    /// What state remembers of earlier runs, so that /status is not empty after a restart:
    /// the last revision applied, the last run, and every instance recorded.
    pub fn fill_from_state(&mut self, state_path: &crate::state::StateLocation) {
        self.state_path = Some(state_path.clone());
        if let Ok(store) = crate::state::StateStore::open(state_path) {
            self.fill_from(&store);
        }
    }

    /// [`Status::fill_from_state`] from a store already open.
    pub fn fill_from(&mut self, store: &crate::state::StateStore) {
        self.state_path = Some(store.location().clone());
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
        let last: BTreeMap<String, crate::state::ResourceResult> = store
            .last_results()
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.address.clone(), r))
            .collect();
        if let Ok(resources) = store.resources() {
            let now = super::now();
            for resource in resources {
                let result = last.get(&resource.record.address);
                self.estate.remember(&resource, result, now);
                self.resources
                    .entry(resource.record.address)
                    .or_insert_with(|| "applied".to_owned());
            }
        }
    }
}

const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A Prometheus histogram kept as counts per bucket: constant in size however long the
/// daemon runs.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Observations at or under each of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        for (bucket, count) in BUCKETS.iter().zip(&mut self.buckets) {
            if value <= *bucket {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bucket, count) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bucket}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// A daemon's part among the replicas on one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Leader {
        replica: String,
        token: i64,
    },
    Standby {
        replica: String,
        leader: crate::state::Leader,
    },
}

impl Role {
    pub fn is_standby(&self) -> bool {
        matches!(self, Role::Standby { .. })
    }

    /// One line for people: `leader (replica a)`, `standby (leader b on host-2)`.
    pub fn describe(&self) -> String {
        match self {
            Role::Leader { replica, .. } => format!("leader (replica {replica})"),
            Role::Standby { replica, leader } => format!(
                "standby (replica {replica}; leader {} on {}, pid {})",
                leader.replica, leader.host, leader.pid
            ),
        }
    }

    fn json(&self) -> Value {
        match self {
            Role::Leader { replica, token } => {
                json!({"role": "leader", "replica": replica, "token": token})
            }
            Role::Standby { replica, leader } => json!({
                "role": "standby", "replica": replica, "leader": leader,
            }),
        }
    }
}

impl Status {
    pub fn json(&self) -> Value {
        json!({
            "replica": self.role.as_ref().map(Role::json),
            "revision_applied": self.revision_applied,
            "revision_seen": self.revision_seen,
            "applied_at": self.applied_at,
            "last_run": self.last_run,
            "errors": self.errors,
            "fetch_error": self.fetch_error,
            "drift_events": self.drift_events,
            "resources": self.resources,
            "notes": self.notes,
            "hosts": self.hosts,
        })
    }

    pub fn metrics(&self) -> String {
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
        self.run_durations.write(
            &mut out,
            "nimbus_run_duration_seconds",
            "How long plan and apply of a run took.",
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
        self.fetch_seconds.write(
            &mut out,
            "nimbus_fetch_duration_seconds",
            "How long fetching the branch took.",
        );
        let _ = writeln!(
            out,
            "# HELP nimbus_webhooks_refused_total Webhook calls refused (bad or missing signature).\n# TYPE nimbus_webhooks_refused_total counter\nnimbus_webhooks_refused_total {}",
            self.webhooks_refused
        );
        self.host_metrics(&mut out);
        out
    }

    /// Each host's facts and load, as its agent reported them (a host that did not answer
    /// has `nimbus_host_up 0` and nothing else).
    fn host_metrics(&self, out: &mut String) {
        const GAUGES: [(&str, &str, &str, &str); 9] = [
            ("nimbus_host_cpus", "facts", "cpus", "CPUs the host has."),
            (
                "nimbus_host_memory_bytes",
                "facts",
                "memory",
                "Memory the host has.",
            ),
            (
                "nimbus_host_disk_bytes",
                "facts",
                "disk",
                "Size of the host's root file system.",
            ),
            (
                "nimbus_host_load1",
                "load",
                "load1",
                "Load average over 1 minute.",
            ),
            (
                "nimbus_host_load5",
                "load",
                "load5",
                "Load average over 5 minutes.",
            ),
            (
                "nimbus_host_load15",
                "load",
                "load15",
                "Load average over 15 minutes.",
            ),
            (
                "nimbus_host_memory_available_bytes",
                "load",
                "memoryAvailable",
                "Memory available.",
            ),
            (
                "nimbus_host_disk_available_bytes",
                "load",
                "diskAvailable",
                "Free space on the root file system.",
            ),
            (
                "nimbus_host_uptime_seconds",
                "load",
                "uptime",
                "Seconds since the host booted.",
            ),
        ];
        if self.hosts.is_empty() {
            return;
        }
        out.push_str("# HELP nimbus_host_up Whether the host's agent answered after the last run.\n# TYPE nimbus_host_up gauge\n");
        for (host, seen) in &self.hosts {
            let up = u8::from(seen.get("error").is_none());
            let _ = writeln!(out, "nimbus_host_up{{host=\"{host}\"}} {up}");
        }
        for (name, part, field, help) in GAUGES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (host, seen) in &self.hosts {
                if let Some(value) = seen[part][field].as_f64() {
                    let _ = writeln!(out, "{name}{{host=\"{host}\"}} {value}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /metrics does not grow with the daemon's age: a histogram is counts per bucket.
    #[test]
    fn metrics_stay_the_same_size_however_many_runs() {
        let mut status = Status::default();
        status.run_durations.observe(0.3);
        status.fetch_seconds.observe(0.01);
        let small = status.metrics().len();
        for i in 0..100_000 {
            status.run_durations.observe(f64::from(i % 90));
            status.fetch_seconds.observe(0.02);
        }
        let big = status.metrics();
        assert!(big.len() < small + 200, "{} vs {small}", big.len());
        assert!(
            big.contains("nimbus_run_duration_seconds_count 100001"),
            "{big}"
        );
        assert!(big.contains("nimbus_run_duration_seconds_bucket{le=\"+Inf\"} 100001"));
        assert!(big.contains("nimbus_fetch_duration_seconds_bucket{le=\"0.05\"} 100001"));
    }
}
