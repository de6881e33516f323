//! What the daemon knows of every instance, for the status page: its place in the graph (kind,
//! host, tenant, dependencies), its provider, and its health with the sentence that explains
//! it. Updated from each run's plan and results; filled from state after a restart.

use std::collections::BTreeMap;

use nimbus_planner::plan::{Action, Change, FieldChange, Plan};
use nimbus_schemas::Kind;
use serde::Serialize;

use crate::executor::{Outcome, Report};

/// An instance's health, most alarming first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Failed,
    Drifted,
    Changing,
    Unknown,
    InSync,
}

impl Health {
    pub const ALL: [Health; 5] = [
        Health::Failed,
        Health::Drifted,
        Health::Changing,
        Health::Unknown,
        Health::InSync,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Health::Failed => "failed",
            Health::Drifted => "drifted",
            Health::Changing => "changing",
            Health::Unknown => "unknown",
            Health::InSync => "in sync",
        }
    }

    /// A sign that says the status without colour.
    pub fn glyph(self) -> &'static str {
        match self {
            Health::Failed => "\u{2717}",
            Health::Drifted => "\u{2260}",
            Health::Changing => "\u{2026}",
            Health::Unknown => "?",
            Health::InSync => "\u{2713}",
        }
    }

    /// The CSS class that colours it.
    pub fn class(self) -> &'static str {
        match self {
            Health::Failed => "failed",
            Health::Drifted => "drifted",
            Health::Changing => "changing",
            Health::Unknown => "unknown",
            Health::InSync => "ok",
        }
    }
}

/// One instance as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceView {
    pub address: String,
    pub kind: Kind,
    pub provider: String,
    pub health: Health,
    /// The sentence a person reads: the provider's reason, what drifted, what is under way.
    pub reason: Option<String>,
    /// The run that last changed or failed it, and its revision.
    pub run: Option<i64>,
    pub revision: Option<String>,
    pub depends_on: Vec<String>,
    /// What differed between what was observed and what git wants, when the last plan
    /// changed it (sensitive values already redacted by the planner).
    pub fields: Vec<FieldChange>,
    /// When its health last changed (Unix seconds).
    pub since: f64,
    /// The module path of its resource, when a module produced it (`module.web[acme]`).
    pub module: Option<String>,
}

impl InstanceView {
    /// Its address as people read it: with its module path, when a module produced it.
    pub fn shown(&self) -> String {
        match &self.module {
            Some(module) => format!("{module}/{}", self.address),
            None => self.address.clone(),
        }
    }

    fn parsed(&self) -> Option<nimbus_schemas::Address> {
        self.address.parse().ok()
    }

    /// The host of a per-host instance (`File/motd@web-1`).
    pub fn host(&self) -> Option<String> {
        self.parsed().and_then(|a| a.host)
    }

    /// The tenant of a tenant-scoped instance (`Workload/acme/web`), or a Tenant's own name.
    pub fn tenant(&self) -> Option<String> {
        nimbus_schemas::Address::tenant_of(&self.address)
    }

    /// The resource it is an instance of (the address without `@host`).
    pub fn resource(&self) -> String {
        nimbus_schemas::Address::resource_of(&self.address)
    }

    /// The resource's name: what a node is labelled with.
    pub fn name(&self) -> String {
        self.parsed()
            .map_or_else(|| self.address.clone(), |a| a.name)
    }
}

/// Every instance, by address.
#[derive(Clone, Debug, Default)]
pub struct Estate {
    pub instances: BTreeMap<String, InstanceView>,
    /// The environment the last plan was made for (`--env`).
    pub environment: Option<String>,
}

fn fields_of(change: &Change) -> String {
    let paths: Vec<&str> = change.fields.iter().map(|f| f.path.as_str()).collect();
    if paths.is_empty() {
        String::new()
    } else {
        format!(" ({})", paths.join(", "))
    }
}

impl Estate {
    fn set(
        &mut self,
        change: &Change,
        health: Health,
        reason: Option<String>,
        run: Option<i64>,
        revision: Option<&str>,
        now: f64,
    ) {
        let entry = self
            .instances
            .entry(change.address.clone())
            .or_insert_with(|| InstanceView {
                address: change.address.clone(),
                kind: change.kind,
                provider: change.provider.clone(),
                health,
                reason: None,
                run: None,
                revision: None,
                depends_on: Vec::new(),
                fields: Vec::new(),
                since: now,
                module: None,
            });
        if entry.health != health {
            entry.since = now;
        }
        entry.kind = change.kind;
        entry.provider.clone_from(&change.provider);
        entry.health = health;
        entry.reason = reason;
        entry.depends_on.clone_from(&change.depends_on);
        if run.is_some() {
            entry.run = run;
            entry.revision = revision.map(str::to_owned);
        }
    }

    /// A plan was made: what it leaves alone is in sync, what it changes is under way (or
    /// drifted, on a drift check), what it cannot plan has failed.
    pub fn planned(&mut self, plan: &Plan, revision: &str, drift: bool, now: f64) {
        let unobserved: BTreeMap<&str, &str> = plan
            .unobserved
            .iter()
            .map(|u| (u.address.as_str(), u.reason.as_str()))
            .collect();
        for change in &plan.changes {
            if let Some(error) = &change.error {
                let reason = format!("cannot be planned: {error}");
                self.set(
                    change,
                    Health::Failed,
                    Some(reason),
                    None,
                    Some(revision),
                    now,
                );
                continue;
            }
            if let Some(why) = unobserved.get(change.address.as_str()) {
                let reason = format!("not observed: {why}");
                self.set(change, Health::Unknown, Some(reason), None, None, now);
                continue;
            }
            match change.action {
                Action::NoOp | Action::Read => {
                    self.set(change, Health::InSync, None, None, None, now);
                    if let Some(entry) = self.instances.get_mut(&change.address) {
                        entry.fields.clear();
                    }
                    continue;
                }
                action if drift => {
                    let reason = format!(
                        "drifted from the repository{}: to be {}",
                        fields_of(change),
                        crate::executor::verb(action).1
                    );
                    self.set(change, Health::Drifted, Some(reason), None, None, now);
                }
                action => {
                    let reason = format!(
                        "to be {} by the run under way{}",
                        crate::executor::verb(action).1,
                        fields_of(change)
                    );
                    self.set(change, Health::Changing, Some(reason), None, None, now);
                }
            }
            if let Some(entry) = self.instances.get_mut(&change.address) {
                entry.fields.clone_from(&change.fields);
            }
        }
        // Where each instance comes from, as this plan says.
        for (address, view) in &mut self.instances {
            let resource = address.split('@').next().unwrap_or_default();
            view.module = plan.modules.get(resource).cloned();
        }
        self.environment.clone_from(&plan.environment);
    }

    /// A run applied `plan`: each change's outcome, in the words a person reads.
    pub fn applied(
        &mut self,
        plan: &Plan,
        report: &Report,
        run: Option<i64>,
        revision: &str,
        drift: bool,
        now: f64,
    ) {
        let changes: BTreeMap<&str, &Change> = plan
            .changes
            .iter()
            .map(|c| (c.address.as_str(), c))
            .collect();
        for result in &report.results {
            let Some(change) = changes.get(result.address.as_str()) else {
                continue;
            };
            let (health, reason) = match &result.outcome {
                Outcome::Applied if result.action == Action::Delete => {
                    self.instances.remove(&result.address);
                    continue;
                }
                Outcome::Applied if drift => (
                    Health::Drifted,
                    Some(format!(
                        "drifted from the repository{}; corrected",
                        fields_of(change)
                    )),
                ),
                Outcome::Applied => (Health::InSync, None),
                Outcome::Failed(reason) => (Health::Failed, Some(reason.clone())),
                Outcome::Skipped(reason) => {
                    (Health::Unknown, Some(format!("not applied: {reason}")))
                }
                Outcome::NotStarted => (
                    Health::Unknown,
                    Some("not started: the run was stopped first".to_owned()),
                ),
            };
            self.set(change, health, reason, run, Some(revision), now);
        }
    }

    /// An instance as state recorded it, before this daemon has observed it: unknown, or
    /// failed when its last result failed.
    pub fn remember(
        &mut self,
        stored: &crate::state::StoredResource,
        last: Option<&crate::state::ResourceResult>,
        now: f64,
    ) {
        let (health, reason) = match last {
            Some(result) if result.outcome == "failed" => (
                Health::Failed,
                result.message.clone().or(Some("failed".to_owned())),
            ),
            _ => (
                Health::Unknown,
                Some("recorded in state; not observed since the daemon started".to_owned()),
            ),
        };
        self.instances
            .entry(stored.record.address.clone())
            .or_insert_with(|| InstanceView {
                address: stored.record.address.clone(),
                kind: stored.record.kind,
                provider: stored.record.provider.clone(),
                health,
                reason,
                run: last.map(|r| r.run),
                revision: None,
                depends_on: stored.record.depends_on.clone(),
                fields: Vec::new(),
                since: now,
                module: None,
            });
    }

    /// Instances by module path (`(root)` for those no module produced), counted by health.
    pub fn by_module(&self) -> BTreeMap<String, BTreeMap<Health, usize>> {
        let mut out: BTreeMap<String, BTreeMap<Health, usize>> = BTreeMap::new();
        for instance in self.instances.values() {
            let module = instance
                .module
                .clone()
                .unwrap_or_else(|| "(root)".to_owned());
            *out.entry(module)
                .or_default()
                .entry(instance.health)
                .or_default() += 1;
        }
        out
    }

    /// Counts by health.
    pub fn counts(&self) -> BTreeMap<Health, usize> {
        let mut counts: BTreeMap<Health, usize> = Health::ALL.iter().map(|h| (*h, 0)).collect();
        for instance in self.instances.values() {
            *counts.entry(instance.health).or_default() += 1;
        }
        counts
    }
}
