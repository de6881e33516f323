//! The steps of a plan before its overrides and passes: choosing the instances `--target`
//! selects, comparing an instance's observed state with its desired state into a change,
//! and the deletes of recorded instances no longer in git.

use std::collections::{BTreeSet, HashMap};

use nimbus_schemas::Kind;
use serde_json::Value;

use super::diff::{field_changes, fold_secret_fields, texts_for_digests};
use super::guards::{delete_change, not_observed, not_planned};
use super::types::*;
use crate::instances::InstanceGraph;
use crate::record::{Observed, Record};
use crate::rules::KindSchema;

/// The instances a plan may touch: all (`None`), or the targets and what they depend on
/// (for a destroy, what depends on them).
pub(super) fn select(
    graph: &InstanceGraph,
    input: &PlanInput<'_>,
    records: &HashMap<&str, &Record>,
) -> Result<Option<BTreeSet<usize>>, PlanError> {
    if input.targets.is_empty() {
        return Ok(None);
    }
    {
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
        Ok(Some(chosen))
    }
}

/// What comparing one instance needs besides its bare change and what it shows now.
pub(super) struct Compared<'a> {
    /// Its desired spec in its provider's normal form.
    pub comparable: &'a Value,
    /// Its desired spec as the plan carries it.
    pub desired: &'a Value,
    pub secret_locations: &'a [String],
    pub schema: &'a KindSchema,
    pub record: Option<&'a Record>,
    pub observed: &'a Observed,
    pub protected: bool,
    /// An `Import` record or `nimbus import` names it.
    pub imported: bool,
    /// An import names it that must find it (not `--force-conflicts`'s take-over).
    pub import_required: bool,
    /// It manages what is already there by design (a Host, a Service without `unit`, a
    /// Tenant without a Cluster): found without a record, it is neither refused nor imported.
    pub adopts: bool,
}

/// What the plan says of an object that exists where a manifest declares an instance and
/// that state does not record: nimbus leaves it as it is.
pub fn unmanaged_error(address: &str) -> String {
    let resource = nimbus_schemas::Address::resource_of(address);
    format!(
        "{address} exists, not managed: nimbus did not make it and state records no such instance, so it is left as it is; import it (`nimbus import {address}`, or a `kind: Import` record with `to: {resource}`) or remove it"
    )
}

/// An instance's change from what it shows now (`current`, normalised; none: it is not
/// there): a create, a read (a Host on first contact), nothing, an update or a replace, with
/// why.
pub(super) fn compare(base: Change, current: Option<Value>, c: &Compared<'_>) -> Change {
    let unrecorded = c.record.is_none() && !c.adopts;
    match current {
        None if unrecorded && c.import_required => Change {
            action: Action::NoOp,
            error: Some(format!(
                "nothing to import at {}: no such object exists there; remove the import to let nimbus create it",
                base.address
            )),
            ..base
        },
        Some(current) if unrecorded && c.imported => {
            let fields = fold_secret_fields(
                field_changes(&current, c.comparable, c.schema),
                c.secret_locations,
            );
            Change {
                action: Action::Import,
                before: Some(current),
                fields,
                reason: Some(Why::Imported.into()),
                ..base
            }
        }
        Some(current) if unrecorded => Change {
            action: Action::NoOp,
            before: Some(current),
            error: Some(unmanaged_error(&base.address)),
            ..base
        },
        None => Change {
            action: Action::Create,
            reason: match (c.record, c.observed) {
                (Some(_), Observed::Absent) => Some(Why::DeletedOutside.into()),
                _ => None,
            },
            ..base
        },
        Some(current) => {
            let fields = fold_secret_fields(
                field_changes(&current, c.comparable, c.schema),
                c.secret_locations,
            );
            let fields = texts_for_digests(fields, c.schema, c.record, c.desired);
            if fields.is_empty() && c.record.is_none() && base.kind == Kind::Host {
                // A Host is observed, not created: on first contact its facts are read
                // and recorded.
                Change {
                    action: Action::Read,
                    reason: Some(Why::FirstContact.into()),
                    ..base
                }
            } else if fields.is_empty() {
                // Nothing to do: the plan says so without carrying the spec twice.
                Change {
                    after: None,
                    ..base
                }
            } else {
                let drift = c.record.is_some_and(|r| {
                    let mut applied = r.applied.clone();
                    c.schema.normalize(&mut applied);
                    applied == *c.comparable
                }) && matches!(c.observed, Observed::Present(_));
                let replacing: Vec<String> = fields
                    .iter()
                    .filter(|f| f.forces_replacement)
                    .map(|f| f.path.clone())
                    .collect();
                let (action, reason) = if !replacing.is_empty() {
                    if c.protected {
                        (
                            Action::NoOp,
                            Some(Why::ProtectedFromReplace(replacing).into()),
                        )
                    } else {
                        (Action::Replace, Some(Why::Replacing(replacing).into()))
                    }
                } else if drift {
                    (Action::Update, Some(Why::ChangedOutside.into()))
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
    }
}

/// The changes of recorded instances no longer in git: deletes of what nimbus owns (kept in
/// place under `nimbus.dev/prune: "false"`), each observed first.
pub(super) fn removed(
    graph: &InstanceGraph,
    input: &PlanInput<'_>,
    targeted: bool,
    unobserved: &mut Vec<Unobserved>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let desired: BTreeSet<&str> = graph.instances.iter().map(|i| i.address.as_str()).collect();
    let mut removed: Vec<&Record> = input
        .records
        .iter()
        .filter(|r| !desired.contains(r.address.as_str()))
        .filter(|r| {
            !targeted
                || input
                    .targets
                    .iter()
                    .any(|t| *t == r.address || r.address.starts_with(&format!("{t}@")))
        })
        .collect();
    removed.sort_by(|a, b| a.address.cmp(&b.address));
    for record in removed {
        if !record.owned {
            continue;
        }
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
        if let Some(reason) = not_observed(input, &record.address) {
            changes.push(not_planned(base, reason, unobserved));
            continue;
        }
        let mut change = delete_change(base, record, record.protected, &observed);
        if record.keep_on_removal && change.action == Action::Delete {
            change.action = Action::NoOp;
            change.reason = Some(Why::KeptOnRemoval.into());
        }
        changes.push(change);
    }
    changes
}
