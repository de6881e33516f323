//! Diff and plan: desired state (from git) against observed state (from providers) and the
//! state nimbus recorded, instance by instance, into a plan of changes in apply order.
//!
//! Pure: the caller hands in what was observed and recorded; nothing here reads anything.

use std::collections::{BTreeMap, HashMap};

use nimbus_schemas::Spec;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::instances::InstanceGraph;
use crate::load::Model;
use crate::resolve::Resolution;

mod diff;
mod guards;
mod overrides;
mod passes;
mod reason;
mod steps;
mod types;

pub use diff::field_changes;
pub use guards::unredacted;
pub use reason::and as add_reason;
pub use steps::unmanaged_error;
pub use types::*;

use guards::{check_deletion_budget, delete_change, not_observed, not_planned, redact};
use passes::{
    confirm_or_revert, ingress_warnings, keep_volumes_with_data, order_deletes_first,
    refuse_without_kvm, restart_if_changed, tcg_warnings, vm_restarts,
};

pub use crate::record::{Observed, Record};
pub use crate::resolve::{
    SECRET_FILE_MODE, UNRESOLVED_SECRET, apply_defaults, desired_spec, pointer_mut,
    secret_references,
};
pub use crate::rules::{KindSchema, ProviderSchema, Rules};

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
    plan_resolved(model, graph, resolution, input)
}

/// Makes the plan from desired states already resolved (the same the instances were observed
/// against); each instance's spec moves into its change.
pub fn plan_resolved(
    model: &Model,
    graph: &InstanceGraph,
    mut resolution: Resolution,
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
    let selected = steps::select(graph, input, &records)?;

    for &i in &order {
        if selected.as_ref().is_some_and(|s| !s.contains(&i)) {
            continue;
        }
        let instance = &graph.instances[i];
        let document = instance.document;
        let spec = &model.documents[document].resource.spec;
        // The plan carries the desired state as resolved, for apply; comparisons use the
        // provider's normal form of both sides.
        let Some(resolved) = resolution.desired.get_mut(i).and_then(Option::take) else {
            continue;
        };
        let secret_problem = resolved.secret_problem().map(str::to_owned);
        let member_problem = resolved.member_problem().map(str::to_owned);
        let placement = resolved.placement.clone();
        let secret_locations = resolved.secret_locations();
        let desired = resolved.into_value();
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
        let change = steps::compare(
            base,
            current.clone(),
            &steps::Compared {
                comparable: &comparable,
                desired: &desired,
                secret_locations: &secret_locations,
                schema,
                record,
                observed: &observed,
                protected,
                imported: model.imports.iter().any(|m| m.covers(&instance.address)),
                import_required: model
                    .imports
                    .iter()
                    .any(|m| !m.if_present && m.covers(&instance.address)),
                adopts: match spec {
                    Spec::Host(_) => true,
                    Spec::Service(service) => service.unit.is_none(),
                    // A Tenant without a Cluster is a name for its Workloads' containers:
                    // nothing of its own exists anywhere to be made or imported.
                    Spec::Tenant(tenant) => tenant.cluster.is_none(),
                    _ => false,
                },
            },
        );
        let change = overrides::provider_switch(change, record, &instance.provider);
        let change = overrides::taint(change, record, protected, current, &desired);
        let change = overrides::placement(change, placement.as_ref());
        let change = overrides::undecryptable(change, secret_problem.as_deref());
        let change = match spec {
            Spec::Service(service) => {
                restart_if_changed(change, &desired, &service.restart_on, &changes)
            }
            _ => change,
        };
        let change = match member_problem {
            Some(reason) => Change {
                error: Some(reason),
                ..change
            },
            None => change,
        };
        changes.push(change);
    }

    // Recorded instances that are no longer desired.
    if !input.destroy {
        changes.extend(steps::removed(
            graph,
            input,
            selected.is_some(),
            &mut unobserved,
        ));
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
        moves: Vec::new(),
        modules: crate::modules::layout(model),
        environment: model.environment.clone(),
    })
}
