//! The plan and its parts: actions, changes, field changes, what planning needs, and why a plan
//! could not be made.

use crate::record::{Observed, Record};
use crate::rules::Rules;

pub use super::reason::{Reason, Why};
use nimbus_schemas::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// The version of the JSON plan format (docs/plan-format.md).
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Shown wherever a sensitive value would be.
pub const SENSITIVE: &str = "(sensitive)";

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    Replace,
    Delete,
    Read,
    /// An object that exists and state does not record, taken under management (an `Import`
    /// record or `nimbus import`): recorded as owned, and updated where it differs.
    Import,
}

impl Action {
    /// The symbol in text plans.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Read => "<=",
            Action::Import => "<-",
        }
    }

    pub fn is_change(self) -> bool {
        !matches!(self, Action::NoOp | Action::Read)
    }

    /// What apply carries out: changes and reads.
    pub fn is_work(self) -> bool {
        self != Action::NoOp
    }
}

/// One field that differs, by dotted path (`disk.image`, `env.LOG_LEVEL`, `ports[0]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

/// What the plan does to one instance, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Change {
    pub address: String,
    pub resource: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The provider that applies it (SPEC §11).
    #[serde(default)]
    pub provider: String,
    /// The provider it was recorded under, when that is another one: the change is then a
    /// replace across providers (deleted there, created here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_provider: Option<String>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Addresses of the instances this change must wait for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Annotations recorded with the instance.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_on_removal: bool,
    /// A Service's `restartOn` Files that this plan changes on its host: the service is
    /// restarted after them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_for: Vec<String>,
    /// Why this instance cannot be planned (a secret that cannot be decrypted): it is not
    /// applied, and the run fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A Network change that can cut nimbus off from a member it reaches through that
    /// network: applied with a confirm-or-revert timer on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<Confirm>,
}

/// How a change that can cut nimbus off is confirmed: the members nimbus must reach again
/// through the network after it, and how long the hosts wait before they restore their
/// previous configuration by themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Confirm {
    pub through: Vec<String>,
    pub timeout_seconds: u64,
    /// Every change of the Network in this plan (they are confirmed together).
    pub group: Vec<String>,
}

/// A plan: the changes in apply order, and what it was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    /// The git revision the desired state came from, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
    /// A digest of every manifest and referenced file the plan was made from.
    pub source_fingerprint: String,
    /// The state's serial when the plan was made.
    pub state_serial: u64,
    /// A digest of everything observed.
    pub observed_fingerprint: String,
    /// What the reader must know before the changes (the in-memory provider is in use, ...):
    /// the first lines of every rendering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub changes: Vec<Change>,
    /// Instances that could not be observed, each with why: nothing is planned for them, and
    /// the plan never says the observed state matches while one is listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unobserved: Vec<Unobserved>,
    /// Instances state records under another address or module path than the manifests
    /// now give (a `Moved` record, or a move into a module): apply renames them in state,
    /// with no delete and no create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<crate::modules::moved::PlannedMove>,
    /// The module path of every resource a module produced (`File/motd` →
    /// `module.base[web]`), for showing and grouping; state keeps it at apply.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub modules: std::collections::BTreeMap<String, String>,
    /// The environment the plan was made for (`--env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// An instance that could not be observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unobserved {
    pub address: String,
    pub reason: String,
}

impl Change {
    /// A bare change of `resource` (its instance on `target`, for per-host kinds): no
    /// provider, fields, reason or dependencies. For providers and tests that make a change
    /// themselves rather than take it from a plan.
    pub fn of(
        kind: Kind,
        resource: &str,
        target: Option<&str>,
        action: Action,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Change {
        Change {
            address: match target {
                Some(target) => format!("{resource}@{target}"),
                None => resource.to_owned(),
            },
            resource: resource.to_owned(),
            kind,
            host: target.map(str::to_owned),
            provider: String::new(),
            previous_provider: None,
            action,
            before: before.cloned(),
            after: after.cloned(),
            fields: Vec::new(),
            reason: None,
            depends_on: Vec::new(),
            protected: false,
            keep_on_removal: false,
            restart_for: Vec::new(),
            error: None,
            confirm: None,
        }
    }

    /// What state records once this change is applied; `None` for a delete.
    pub fn record(&self) -> Option<Record> {
        let applied = match self.action {
            Action::Delete => return None,
            Action::NoOp | Action::Read => self.before.clone().or_else(|| self.after.clone())?,
            // Imported as it is (`nimbus import`): what was observed; with differences, the
            // desired spec it is updated to.
            Action::Import => self.after.clone().or_else(|| self.before.clone())?,
            _ => self.after.clone()?,
        };
        Some(Record {
            address: self.address.clone(),
            kind: self.kind,
            applied,
            owned: true,
            protected: self.protected,
            keep_on_removal: self.keep_on_removal,
            depends_on: self.depends_on.clone(),
            provider: self.provider.clone(),
            outputs: Value::Null,
            tainted: None,
        })
    }

    /// Whether apply carries it out (or, for an unplannable instance, reports it failed).
    pub fn is_work(&self) -> bool {
        self.action.is_work() || self.error.is_some()
    }
}

impl Plan {
    /// Changes of this action (instances that cannot be planned are not counted).
    pub fn count(&self, action: Action) -> usize {
        self.changes
            .iter()
            .filter(|c| c.action == action && c.error.is_none())
            .count()
    }

    /// Whether apply would change anything (instances that cannot be planned change nothing).
    pub fn has_changes(&self) -> bool {
        !self.moves.is_empty()
            || self
                .changes
                .iter()
                .any(|c| c.action.is_change() && c.error.is_none())
    }

    /// Changes, reads or moves, for apply to carry out.
    pub fn has_work(&self) -> bool {
        !self.moves.is_empty() || self.changes.iter().any(Change::is_work)
    }

    /// An address as people read it: with the module path of its resource, when a module
    /// produced it (`module.web[acme]/Workload/acme/api`).
    pub fn display_address(&self, address: &str) -> String {
        let resource = address.split_once('@').map_or(address, |(r, _)| r);
        match self.modules.get(resource) {
            Some(module) => format!("{module}/{address}"),
            None => address.to_owned(),
        }
    }

    /// Instances that cannot be planned: the run that carries this plan fails.
    pub fn errors(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.error.is_some())
    }
}

/// What planning needs besides the model.
pub struct PlanInput<'a> {
    pub records: &'a [Record],
    pub observed: &'a HashMap<String, Observed>,
    pub rules: &'a Rules,
    pub state_serial: u64,
    pub source_revision: Option<String>,
    pub source_fingerprint: String,
    /// `--target`: only these (resource or instance addresses) and what they depend on.
    pub targets: &'a [String],
    /// `--allow-deletes`: lift the Repository's deletion budget.
    pub allow_deletes: bool,
    /// `nimbus destroy`: every owned instance is to go.
    pub destroy: bool,
    /// The text of every repository file a File's `source` names, by path: the reconciler
    /// reads them, so that a changed source file is a changed File.
    pub sources: &'a HashMap<String, String>,
    /// The keyed fingerprint of every secret reference (`NAME`, `NAME#key`) the reconciler
    /// could decrypt, or why it could not. Plans carry fingerprints, never values.
    pub secrets: &'a HashMap<String, Result<String, String>>,
}

/// Why a plan could not be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    #[error("no resource or instance has the address `{0}`")]
    UnknownTarget(String),
    #[error(
        "this plan deletes {deletes} of {managed} managed instances, more than the deletion budget allows ({budget}); \
         rerun with --allow-deletes if that is intended"
    )]
    DeletionBudget {
        deletes: usize,
        managed: usize,
        budget: String,
    },
}
