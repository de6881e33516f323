//! Diff and plan: desired state (from git) against observed state (from providers) and the
//! state nimbus recorded, instance by instance, into a plan of changes in apply order.
//!
//! Pure: the caller hands in what was observed and recorded; nothing here reads anything.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nimbus_schemas::{Kind, Spec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::instances::InstanceGraph;
use crate::load::Model;
use crate::resolve::Resolution;

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

pub use crate::record::{Observed, Record};
pub use crate::resolve::{
    SECRET_FILE_MODE, UNRESOLVED_SECRET, apply_defaults, desired_spec, pointer_mut,
    secret_references,
};
pub use crate::rules::{KindSchema, ProviderSchema, Rules};

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
    pub reason: Option<String>,
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
        self.changes
            .iter()
            .any(|c| c.action.is_change() && c.error.is_none())
    }

    /// Changes, or reads, for apply to carry out.
    pub fn has_work(&self) -> bool {
        self.changes.iter().any(Change::is_work)
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

/// Field changes under a secret's location are one sensitive change of that location:
/// `~ content: (sensitive value changed)`.
fn fold_secret_fields(fields: Vec<FieldChange>, locations: &[String]) -> Vec<FieldChange> {
    if locations.is_empty() {
        return fields;
    }
    let mut out: Vec<FieldChange> = Vec::new();
    for mut field in fields {
        if let Some(location) = locations.iter().find(|l| {
            field.path == **l
                || field.path.starts_with(&format!("{l}."))
                || field.path.starts_with(&format!("{l}["))
        }) {
            if out.iter().any(|f| f.path == *location) {
                continue;
            }
            field.path = location.clone();
            field.sensitive = true;
            field.before = field.before.map(|_| Value::String(SENSITIVE.into()));
            field.after = field.after.map(|_| Value::String(SENSITIVE.into()));
        }
        out.push(field);
    }
    out
}

/// Why a plan could not be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
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

/// A SHA-256 digest of a canonical rendering of `value`, in hex.
pub fn fingerprint<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn annotation(model: &Model, document: usize, key: &str) -> Option<String> {
    model.documents[document]
        .resource
        .metadata
        .annotations
        .get(key)
        .cloned()
}

/// Compares two JSON values field by field, marking what the kind's schema says is sensitive
/// or forces a replacement.
pub fn field_changes(before: &Value, after: &Value, schema: &KindSchema) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    for change in &mut out {
        change.sensitive = schema.is_sensitive(&change.path);
        change.forces_replacement = schema.forces_replacement(&change.path);
    }
    out
}

fn walk(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(&child, a.get(key), b.get(key), out);
            }
        }
        (Some(a), Some(b)) if a == b => {}
        (None, None) => {}
        (a, b) => out.push(FieldChange {
            path: path.to_owned(),
            before: a.cloned(),
            after: b.cloned(),
            sensitive: false,
            forces_replacement: false,
        }),
    }
}

/// Makes the plan: resolves every instance's desired state ([`crate::resolve`]) and plans
/// against it. Changes come in apply order: creates and updates after what they depend on,
/// deletes before what they depend on (reverse order), each group stable by address.
pub fn plan(
    model: &Model,
    graph: &InstanceGraph,
    input: &PlanInput<'_>,
) -> Result<Plan, PlanError> {
    let mut resolution = crate::resolve::resolve(
        model,
        graph,
        &crate::resolve::ResolveInput {
            records: input.records,
            sources: input.sources,
            secrets: input.secrets,
        },
    );
    resolution.settle(model, graph, input.records, input.observed);
    plan_resolved(model, graph, &resolution, input)
}

/// Makes the plan from desired states already resolved (the same the instances were observed
/// against).
pub fn plan_resolved(
    model: &Model,
    graph: &InstanceGraph,
    resolution: &Resolution,
    input: &PlanInput<'_>,
) -> Result<Plan, PlanError> {
    let records: HashMap<&str, &Record> = input
        .records
        .iter()
        .map(|r| (r.address.as_str(), r))
        .collect();
    let mut changes: Vec<Change> = Vec::new();
    let mut unobserved: Vec<Unobserved> = Vec::new();
    let order = graph.order();

    // Which instances the plan may touch: all, or the targets and what they depend on.
    let selected: Option<BTreeSet<usize>> = if input.targets.is_empty() {
        None
    } else {
        let mut chosen = BTreeSet::new();
        let mut stack = Vec::new();
        for target in input.targets {
            let matching: Vec<usize> = (0..graph.instances.len())
                .filter(|&i| {
                    graph.instances[i].address == *target || graph.instances[i].resource == *target
                })
                .collect();
            if matching.is_empty()
                && !records
                    .keys()
                    .any(|a| *a == target.as_str() || a.starts_with(&format!("{target}@")))
            {
                return Err(PlanError::UnknownTarget(target.clone()));
            }
            stack.extend(matching);
        }
        // Applying a target needs what it depends on; destroying it first destroys what
        // depends on it.
        while let Some(i) = stack.pop() {
            if chosen.insert(i) {
                if input.destroy {
                    stack.extend(graph.dependents(i));
                } else {
                    stack.extend(graph.dependencies(i));
                }
            }
        }
        Some(chosen)
    };

    for &i in &order {
        if selected.as_ref().is_some_and(|s| !s.contains(&i)) {
            continue;
        }
        let instance = &graph.instances[i];
        let document = instance.document;
        let spec = &model.documents[document].resource.spec;
        // The plan carries the desired state as resolved, for apply; comparisons use the
        // provider's normal form of both sides.
        let Some(resolved) = resolution.get(&instance.address) else {
            continue;
        };
        let desired = resolved.value();
        let secret_locations = resolved.secret_locations();
        let placement = resolved.placement.as_ref();
        let schema = input.rules.get(&instance.provider, instance.kind);
        let mut comparable = desired.clone();
        schema.normalize(&mut comparable);
        let record = records.get(instance.address.as_str()).copied();
        let observed = input
            .observed
            .get(&instance.address)
            .cloned()
            .unwrap_or(Observed::Unknown(String::new()));
        let protected = annotation(model, document, "nimbus.dev/protect").as_deref()
            == Some("true")
            || record.is_some_and(|r| r.protected);
        let keep_on_removal =
            annotation(model, document, "nimbus.dev/prune").as_deref() == Some("false");
        let depends_on: Vec<String> = {
            let mut d: Vec<String> = graph
                .dependencies(i)
                .map(|j| graph.instances[j].address.clone())
                .collect();
            d.sort();
            d
        };
        let base = Change {
            address: instance.address.clone(),
            resource: instance.resource.clone(),
            kind: instance.kind,
            host: instance.host.clone(),
            provider: instance.provider.clone(),
            previous_provider: None,
            action: Action::NoOp,
            before: None,
            after: Some(desired.clone()),
            fields: Vec::new(),
            reason: None,
            depends_on,
            protected,
            keep_on_removal,
            restart_for: Vec::new(),
            confirm: None,
            error: None,
        };
        if let Some(reason) = not_observed(input, &instance.address) {
            // Nothing is planned for what could not be seen: the plan names it instead.
            changes.push(not_planned(base, reason, &mut unobserved));
            continue;
        }
        if input.destroy {
            if let Some(record) = record
                && record.owned
            {
                changes.push(delete_change(base, record, protected, &observed));
            }
            continue;
        }
        let mut current = match (&observed, record) {
            (Observed::Present(value), _) => Some(value.clone()),
            (Observed::Absent, _) => None,
            (Observed::Unknown(_), Some(record)) => Some(record.applied.clone()),
            (Observed::Unknown(_), None) => None,
        };
        if let Some(current) = &mut current {
            schema.normalize(current);
        }
        let change = match current.clone() {
            None => Change {
                action: Action::Create,
                reason: match (record, &observed) {
                    (Some(_), Observed::Absent) => Some("drift: deleted outside nimbus".into()),
                    _ => None,
                },
                ..base
            },
            Some(current) => {
                let fields = fold_secret_fields(
                    field_changes(&current, &comparable, schema),
                    &secret_locations,
                );
                let fields = texts_for_digests(fields, schema, record, &desired);
                if fields.is_empty() && record.is_none() && instance.kind == Kind::Host {
                    // A Host is observed, not created: on first contact its facts are read
                    // and recorded.
                    Change {
                        action: Action::Read,
                        reason: Some("first contact: its facts are read and recorded".into()),
                        ..base
                    }
                } else if fields.is_empty() {
                    // Nothing to do: the plan says so without carrying the spec twice.
                    Change {
                        after: None,
                        ..base
                    }
                } else {
                    let drift = record.is_some_and(|r| {
                        let mut applied = r.applied.clone();
                        schema.normalize(&mut applied);
                        applied == comparable
                    }) && matches!(observed, Observed::Present(_));
                    let replacing: Vec<&str> = fields
                        .iter()
                        .filter(|f| f.forces_replacement)
                        .map(|f| f.path.as_str())
                        .collect();
                    let (action, reason) = if !replacing.is_empty() {
                        if protected {
                            (
                                Action::NoOp,
                                Some(format!(
                                    "protected: {} changed, but a protected resource is never replaced",
                                    replacing.join(", ")
                                )),
                            )
                        } else {
                            (
                                Action::Replace,
                                Some(format!("{} changed", replacing.join(", "))),
                            )
                        }
                    } else if record.is_none() {
                        (
                            Action::Update,
                            Some("exists but is not managed yet: nimbus takes it over".into()),
                        )
                    } else if drift {
                        (Action::Update, Some("drift: changed outside nimbus".into()))
                    } else {
                        (Action::Update, None)
                    };
                    Change {
                        action,
                        before: Some(current),
                        fields,
                        reason,
                        ..base
                    }
                }
            }
        };
        // Recorded under another provider: never silently planned under this one; it is
        // replaced (deleted there, created here), visibly.
        let change = match record {
            Some(record)
                if !record.provider.is_empty()
                    && record.provider != instance.provider
                    && change.action != Action::Create =>
            {
                Change {
                    action: Action::Replace,
                    before: change
                        .before
                        .clone()
                        .or_else(|| Some(record.applied.clone())),
                    previous_provider: Some(record.provider.clone()),
                    reason: Some(format!(
                        "provider changed: recorded under `{}`, now served by `{}`",
                        record.provider, instance.provider
                    )),
                    ..change
                }
            }
            _ => change,
        };
        // Made by an apply that failed: made again, whatever it shows now (also when it
        // cannot be observed: it is known not to be right). Gone: created, as planned above.
        let change = match record.and_then(|r| r.tainted.as_deref()) {
            Some(why)
                if !protected
                    && current.is_some()
                    && matches!(change.action, Action::NoOp | Action::Update) =>
            {
                Change {
                    action: Action::Replace,
                    before: current,
                    after: Some(desired.clone()),
                    reason: Some(format!(
                        "tainted: the apply that made it failed ({}); it is made again",
                        first_line(why)
                    )),
                    ..change
                }
            }
            _ => change,
        };
        // The scheduler's reason goes with a placement that changes something.
        let change = match placement {
            Some(crate::scheduler::Placement::On { reason, .. }) if change.action.is_change() => {
                Change {
                    reason: Some(match &change.reason {
                        Some(first) => format!("{first}; {reason}"),
                        None => reason.clone(),
                    }),
                    ..change
                }
            }
            // The reason says where in the repository and why (`placement::placements`).
            Some(crate::scheduler::Placement::Nowhere { reason }) => Change {
                error: Some(reason.clone()),
                ..change
            },
            _ => change,
        };
        // A secret that cannot be decrypted leaves the instance unknown: it is not planned,
        // whatever the target shows, and the run fails with the reason.
        let change = match resolved.secret_problem() {
            Some(problem) => {
                let help = if problem.contains("--identity") {
                    String::new()
                } else {
                    "; give the identity that decrypts it with --identity FILE, \
                     NIMBUS_AGE_IDENTITY=FILE or the Repository's secrets.identityFile"
                        .to_owned()
                };
                Change {
                    error: Some(format!(
                        "{problem}; nimbus cannot tell whether it changed, so it is not applied{help}"
                    )),
                    ..change
                }
            }
            None => change,
        };
        let change = match spec {
            Spec::Service(service) => {
                restart_if_changed(change, &desired, &service.restart_on, &changes)
            }
            _ => change,
        };
        let change = match resolved.member_problem() {
            Some(reason) => Change {
                error: Some(reason.to_owned()),
                ..change
            },
            None => change,
        };
        changes.push(change);
    }

    // Recorded instances that are no longer desired.
    if !input.destroy {
        let desired: BTreeSet<&str> = graph.instances.iter().map(|i| i.address.as_str()).collect();
        let mut removed: Vec<&Record> = input
            .records
            .iter()
            .filter(|r| !desired.contains(r.address.as_str()))
            .filter(|r| {
                selected.is_none()
                    || input
                        .targets
                        .iter()
                        .any(|t| *t == r.address || r.address.starts_with(&format!("{t}@")))
            })
            .collect();
        removed.sort_by(|a, b| a.address.cmp(&b.address));
        for record in removed {
            let observed = input
                .observed
                .get(&record.address)
                .cloned()
                .unwrap_or(Observed::Unknown(String::new()));
            let base = Change {
                address: record.address.clone(),
                resource: nimbus_schemas::Address::resource_of(&record.address),
                kind: record.kind,
                host: record
                    .address
                    .parse::<nimbus_schemas::Address>()
                    .ok()
                    .and_then(|a| a.host),
                provider: record.provider.clone(),
                previous_provider: None,
                action: Action::NoOp,
                before: None,
                after: None,
                fields: Vec::new(),
                reason: None,
                depends_on: Vec::new(),
                protected: record.protected,
                keep_on_removal: record.keep_on_removal,
                restart_for: Vec::new(),
                confirm: None,
                error: None,
            };
            if !record.owned {
                continue;
            }
            if let Some(reason) = not_observed(input, &record.address) {
                changes.push(not_planned(base, reason, &mut unobserved));
                continue;
            }
            let mut change = delete_change(base, record, record.protected, &observed);
            if record.keep_on_removal && change.action == Action::Delete {
                change.action = Action::NoOp;
                change.reason =
                    Some("removed from git, kept in place: nimbus.dev/prune is \"false\"".into());
            }
            changes.push(change);
        }
    }

    let changes = order_deletes_first(changes, input.records);
    let changes = keep_volumes_with_data(changes, input);
    let changes = vm_restarts(changes);
    let changes = confirm_or_revert(changes, &resolution.mesh);
    let changes = redact(changes, input.rules);
    check_deletion_budget(model, input, &changes)?;
    let observed_fingerprint = fingerprint(&input.observed.iter().collect::<BTreeMap<_, _>>());
    // Containers of tenants without a cluster publish on their host, without a routing mesh.
    let changes = refuse_without_kvm(changes, &records);
    let mut notes = ingress_warnings(&changes, &resolution.standalone);
    notes.extend(tcg_warnings(&changes, &records));
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION,
        source_revision: input.source_revision.clone(),
        source_fingerprint: input.source_fingerprint.clone(),
        state_serial: input.state_serial,
        observed_fingerprint,
        notes,
        changes,
        unobserved,
    })
}

/// The change of an instance that could not be observed: nothing is done to it, it says why,
/// and it is listed in `unobserved`.
fn not_planned(base: Change, reason: &str, unobserved: &mut Vec<Unobserved>) -> Change {
    unobserved.push(Unobserved {
        address: base.address.clone(),
        reason: reason.to_owned(),
    });
    Change {
        action: Action::NoOp,
        after: None,
        reason: Some(format!("not observed: {reason}")),
        ..base
    }
}

/// Why an instance could not be observed, when its provider was asked and could not tell.
fn not_observed<'a>(input: &'a PlanInput<'_>, address: &str) -> Option<&'a String> {
    match input.observed.get(address) {
        Some(Observed::Unknown(reason)) => Some(reason),
        _ => None,
    }
}

/// A VM's update says what it does to the guest: a change of its unit (cpus, memory, disk
/// size, boot, ports, bridge, cloudInit) restarts it; a VM found not running is started again.
fn vm_restarts(mut changes: Vec<Change>) -> Vec<Change> {
    for change in changes
        .iter_mut()
        .filter(|c| c.kind == Kind::Vm && c.action == Action::Update)
    {
        let mut restarting: Vec<&str> = change
            .fields
            .iter()
            .map(|f| f.path.split(['.', '[']).next().unwrap_or_default())
            .filter(|field| *field != "state")
            .collect();
        restarting.dedup();
        let was = change
            .fields
            .iter()
            .find(|f| f.path == "state")
            .and_then(|f| f.before.as_ref())
            .and_then(Value::as_str);
        let note = if restarting.is_empty() {
            match was {
                Some("paused") => "resumes the VM (QMP cont): it is paused".to_owned(),
                Some("suspended") => {
                    "wakes the VM (QMP system_wakeup): its guest suspended it".to_owned()
                }
                _ => "starts the VM again: it is not running".to_owned(),
            }
        } else {
            format!("restarts the VM: {} changed", restarting.join(", "))
        };
        change.reason = Some(match change.reason.take() {
            Some(reason) => format!("{reason}; {note}"),
            None => note,
        });
    }
    changes
}

/// A Volume that holds data is deleted only with `--allow-deletes`: otherwise its delete is
/// not applied, and the run says why.
fn keep_volumes_with_data(mut changes: Vec<Change>, input: &PlanInput<'_>) -> Vec<Change> {
    if input.allow_deletes {
        return changes;
    }
    for change in changes
        .iter_mut()
        .filter(|c| c.kind == Kind::Volume && matches!(c.action, Action::Delete | Action::Replace))
    {
        if let Some(Observed::Present(seen)) = input.observed.get(&change.address)
            && seen["empty"] == false
        {
            let used = seen["used"].as_u64().unwrap_or(0);
            let moved = change.fields.iter().find(|f| f.path == "host");
            change.error = Some(match moved {
                Some(field) => format!(
                    "{} holds data ({used} bytes) on Host/{}: moving it to Host/{} would leave that data behind (it is deleted there, not copied); nimbus does that only with --allow-deletes, and leaves it as it is until then",
                    change.address,
                    field.before.as_ref().and_then(Value::as_str).unwrap_or("?"),
                    field.after.as_ref().and_then(Value::as_str).unwrap_or("?"),
                ),
                None => format!(
                    "{} holds data ({used} bytes): nimbus deletes (or replaces) a volume with data only with --allow-deletes, and leaves it as it is until then",
                    change.address,
                ),
            });
        }
    }
    changes
}

/// Marks the changes of a Network that nimbus reaches some member through (SPEC §11): they
/// are applied with a timer, the members reached through it first (through the old path),
/// and confirmed together once those members answer through the new one.
fn confirm_or_revert(mut changes: Vec<Change>, mesh: &crate::mesh::Mesh) -> Vec<Change> {
    for (network, through) in &mesh.through {
        let resource = format!("Network/{network}");
        let group: Vec<String> = changes
            .iter()
            .filter(|c| c.resource == resource && c.action.is_change() && c.error.is_none())
            .map(|c| c.address.clone())
            .collect();
        if group.is_empty() {
            continue;
        }
        let first: Vec<String> = group
            .iter()
            .filter(|a| {
                a.parse::<nimbus_schemas::Address>()
                    .ok()
                    .and_then(|a| a.host)
                    .is_some_and(|h| through.contains(&h))
            })
            .cloned()
            .collect();
        let confirm = Confirm {
            through: through.clone(),
            timeout_seconds: mesh.confirm_timeout.get(network).copied().unwrap_or(30),
            group: group.clone(),
        };
        for change in changes.iter_mut().filter(|c| group.contains(&c.address)) {
            change.confirm = Some(confirm.clone());
            if !first.contains(&change.address) {
                for address in &first {
                    if !change.depends_on.contains(address) {
                        change.depends_on.push(address.clone());
                    }
                }
            }
        }
    }
    changes
}

/// VMs going to a host whose recorded facts say it has no usable `/dev/kvm`: they run under
/// TCG, software emulation (SPEC §11).
/// A VM with `runtime: cloud-hypervisor` on a Host whose recorded facts show no usable KVM
/// cannot start there (cloud-hypervisor has no software emulation): refused at plan time, not
/// found out at apply.
fn refuse_without_kvm(mut changes: Vec<Change>, records: &HashMap<&str, &Record>) -> Vec<Change> {
    for change in changes.iter_mut().filter(|c| {
        c.kind == Kind::Vm
            && c.error.is_none()
            && matches!(c.action, Action::Create | Action::Update | Action::Replace)
    }) {
        let Some(after) = &change.after else {
            continue;
        };
        if after.get("runtime").and_then(Value::as_str) != Some("cloud-hypervisor") {
            continue;
        }
        let Some(host) = after.get("host").and_then(Value::as_str) else {
            continue;
        };
        let kvm = records
            .get(format!("Host/{host}").as_str())
            .map(|r| &r.outputs["facts"]["kvm"]);
        if kvm == Some(&Value::Bool(false)) {
            change.error = Some(format!(
                "runtime cloud-hypervisor needs KVM, and Host/{host} has no usable /dev/kvm (its recorded facts say so); use runtime: qemu, which runs under TCG there, or a host with KVM"
            ));
        }
    }
    changes
}

fn tcg_warnings(changes: &[Change], records: &HashMap<&str, &Record>) -> Vec<String> {
    changes
        .iter()
        .filter(|c| c.kind == Kind::Vm && c.action.is_change() && c.action != Action::Delete)
        .filter_map(|c| {
            let host = c.after.as_ref()?.get("host")?.as_str()?;
            let facts = &records.get(format!("Host/{host}").as_str())?.outputs["facts"];
            (facts["kvm"] == false).then(|| {
                format!(
                    "warning: {} runs on Host/{host}, which has no usable /dev/kvm: under TCG (software emulation), many times slower",
                    c.address
                )
            })
        })
        .collect()
}

/// Swarm services that publish in `ingress` mode (Docker's default) answer only where the
/// nodes' kernel has IPVS: each such change says so.
fn ingress_warnings(changes: &[Change], standalone: &BTreeSet<String>) -> Vec<String> {
    changes
        .iter()
        .filter(|c| c.kind == Kind::Workload && c.provider == crate::rules::DOCKER)
        .filter(|c| !nimbus_schemas::Address::tenant_of(&c.address).is_some_and(|t| standalone.contains(&t)))
        .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Replace))
        .filter_map(|c| {
            let ports = c.after.as_ref()?.get("ports")?.as_array()?;
            let ingress: Vec<String> = ports
                .iter()
                .filter(|p| p.get("mode").and_then(Value::as_str) != Some("host"))
                .filter_map(|p| p.get("port").map(ToString::to_string))
                .collect();
            (!ingress.is_empty()).then(|| {
                format!(
                    "warning: {} publishes port {} in ingress mode (Docker's default), which answers only where the nodes' kernel has IPVS; `mode: host` answers on the nodes that run a task",
                    c.address,
                    ingress.join(", ")
                )
            })
        })
        .collect()
}

/// A text field a provider compares by digest (a File's content over SSH) changes as
/// `content.sha256: A -> B`; when the text last applied is recorded and has digest A, the
/// change is shown as that text against the desired one, line by line.
fn texts_for_digests(
    fields: Vec<FieldChange>,
    schema: &KindSchema,
    record: Option<&Record>,
    desired: &Value,
) -> Vec<FieldChange> {
    let Some(record) = record else {
        return fields;
    };
    fields
        .into_iter()
        .map(|field| {
            let Some(name) = field.path.strip_suffix(".sha256") else {
                return field;
            };
            let (Some(Value::String(before)), Some(Value::String(after))) =
                (record.applied.get(name), desired.get(name))
            else {
                return field;
            };
            let digest: String = Sha256::digest(before.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if !schema.digest_fields.iter().any(|f| f == name)
                || field.sensitive
                || field.before.as_ref().and_then(Value::as_str) != Some(digest.as_str())
            {
                return field;
            }
            FieldChange {
                path: name.to_owned(),
                before: Some(Value::String(before.clone())),
                after: Some(Value::String(after.clone())),
                ..field
            }
        })
        .collect()
}

/// Deletes go first, each after the deletes of what depended on it (its `depends_on` becomes
/// the list of those); the other changes keep their dependency order.
fn order_deletes_first(changes: Vec<Change>, records: &[Record]) -> Vec<Change> {
    let (mut deletes, rest): (Vec<Change>, Vec<Change>) = changes
        .into_iter()
        .partition(|c| c.action == Action::Delete);
    let deleting: BTreeSet<String> = deletes.iter().map(|c| c.address.clone()).collect();
    let recorded: HashMap<&str, &Vec<String>> = records
        .iter()
        .map(|r| (r.address.as_str(), &r.depends_on))
        .collect();
    // Who depended on whom, from the graph (for changes still in git) and from state.
    let mut dependents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for change in &deletes {
        let mut on: BTreeSet<&String> = change.depends_on.iter().collect();
        if let Some(r) = recorded.get(change.address.as_str()) {
            on.extend(r.iter());
        }
        for dependency in on {
            if deleting.contains(dependency) {
                dependents
                    .entry(dependency.clone())
                    .or_default()
                    .insert(change.address.clone());
            }
        }
    }
    for change in &mut deletes {
        change.depends_on = dependents
            .remove(&change.address)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
    }
    // Stable topological order over the reversed edges.
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(deletes.len());
    deletes.sort_by(|a, b| a.address.cmp(&b.address));
    while !deletes.is_empty() {
        let ready = deletes
            .iter()
            .position(|c| c.depends_on.iter().all(|d| placed.contains(d)))
            .unwrap_or(0);
        let change = deletes.remove(ready);
        placed.insert(change.address.clone());
        ordered.push(change);
    }
    ordered.extend(rest);
    ordered
}

/// Replaces every sensitive value in a change by `(sensitive)`, so that no plan, saved plan
/// or rendering ever holds one.
fn redact(mut changes: Vec<Change>, rules: &Rules) -> Vec<Change> {
    for change in &mut changes {
        let sensitive = &rules.get(&change.provider, change.kind).sensitive_fields;
        if sensitive.is_empty() {
            continue;
        }
        for value in [&mut change.before, &mut change.after]
            .into_iter()
            .flatten()
        {
            for path in sensitive {
                redact_path(value, path);
            }
        }
        for field in &mut change.fields {
            if field.sensitive {
                for value in [&mut field.before, &mut field.after].into_iter().flatten() {
                    *value = Value::String(SENSITIVE.into());
                }
            }
        }
    }
    changes
}

/// `after` (a redacted spec) with each of `paths` that shows `(sensitive)` given its value
/// from `written` (the spec as the manifest has it); `None` when nothing was redacted.
pub fn unredacted(after: &Value, written: &Value, paths: &[String]) -> Option<Value> {
    let mut restored = after.clone();
    let mut any = false;
    for path in paths {
        let pointer: String = path.split('.').map(|p| format!("/{p}")).collect();
        if restored.pointer(&pointer).and_then(Value::as_str) == Some(SENSITIVE)
            && let Some(value) = written.pointer(&pointer)
            && let Some(slot) = restored.pointer_mut(&pointer)
        {
            *slot = value.clone();
            any = true;
        }
    }
    any.then_some(restored)
}

fn redact_path(value: &mut Value, path: &str) {
    let mut current = value;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(next) = current.get_mut(part) else {
            return;
        };
        if parts.peek().is_none() {
            if !next.is_null() {
                *next = Value::String(SENSITIVE.into());
            }
            return;
        }
        current = next;
    }
}

/// A running Service whose `restartOn` Files change on its host in this plan is restarted
/// after them (they come first: `restartOn` is a dependency). An otherwise unchanged service
/// becomes an update that only restarts it.
fn restart_if_changed(
    mut change: Change,
    desired: &Value,
    restart_on: &[String],
    planned: &[Change],
) -> Change {
    let running = desired["state"].as_str() != Some("stopped");
    if restart_on.is_empty() || !running || change.action == Action::Create {
        return change;
    }
    let changed: Vec<String> = planned
        .iter()
        .filter(|c| {
            matches!(c.action, Action::Create | Action::Update | Action::Replace)
                && c.host == change.host
                && restart_on.contains(&c.resource)
        })
        .map(|c| c.address.clone())
        .collect();
    if changed.is_empty() {
        return change;
    }
    if change.action == Action::NoOp && change.reason.is_none() {
        change.action = Action::Update;
        change.after = Some(desired.clone());
        change.reason = Some(format!("restart: {} changed", changed.join(", ")));
    }
    if change.action == Action::Update {
        change.restart_for = changed;
    }
    change
}

/// A reason's first line, at most 200 characters, for a plan's one-line reasons.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

fn delete_change(base: Change, record: &Record, protected: bool, observed: &Observed) -> Change {
    let before = match observed {
        Observed::Present(v) => Some(v.clone()),
        _ => Some(record.applied.clone()),
    };
    if protected {
        return Change {
            before,
            after: None,
            reason: Some("protected: nimbus.dev/protect is \"true\"; lift it with `nimbus state unprotect` to delete".into()),
            ..base
        };
    }
    let reason = match observed {
        Observed::Absent => Some("already gone; removed from state".into()),
        _ => None,
    };
    Change {
        action: Action::Delete,
        before,
        after: None,
        reason,
        ..base
    }
}

fn check_deletion_budget(
    model: &Model,
    input: &PlanInput<'_>,
    changes: &[Change],
) -> Result<(), PlanError> {
    if input.allow_deletes || input.destroy {
        return Ok(());
    }
    let Some(budget) = model.repository().and_then(|d| match &d.resource.spec {
        Spec::Repository(r) => r.policy.deletion_budget.clone(),
        _ => None,
    }) else {
        return Ok(());
    };
    let deletes = changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .count();
    let managed = input.records.iter().filter(|r| r.owned).count();
    let over_count = budget.max_resources.is_some_and(|n| deletes > n as usize);
    let over_percent = budget
        .max_percent
        .is_some_and(|p| managed > 0 && deletes * 100 > p as usize * managed);
    if over_count || over_percent {
        let mut parts = Vec::new();
        if let Some(n) = budget.max_resources {
            parts.push(format!("at most {n}"));
        }
        if let Some(p) = budget.max_percent {
            parts.push(format!("at most {p}%"));
        }
        return Err(PlanError::DeletionBudget {
            deletes,
            managed,
            budget: parts.join(" and "),
        });
    }
    Ok(())
}
