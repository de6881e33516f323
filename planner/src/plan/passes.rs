//! The per-kind passes over the planned changes: VM restarts, Volumes kept with their data, confirm
//! groups of Networks, KVM, ingress, deletes first, Services restarted after their Files.

use crate::record::{Observed, Record};
use nimbus_schemas::Kind;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::types::*;

/// A VM's update says what it does to the guest: a change of its unit (cpus, memory, disk
/// size, boot, ports, bridge, cloudInit) restarts it; a VM found not running is started again.
pub(super) fn vm_restarts(mut changes: Vec<Change>) -> Vec<Change> {
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
                Some("paused") => Why::VmResume,
                Some("suspended") => Why::VmWake,
                _ => Why::VmStart,
            }
        } else {
            Why::VmRestart(restarting.into_iter().map(str::to_owned).collect())
        };
        change.reason = super::reason::and(change.reason.take(), note);
    }
    changes
}

/// A Volume that holds data is deleted only with `--allow-deletes`: otherwise its delete is
/// not applied, and the run says why.
pub(super) fn keep_volumes_with_data(
    mut changes: Vec<Change>,
    input: &PlanInput<'_>,
) -> Vec<Change> {
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
pub(super) fn confirm_or_revert(mut changes: Vec<Change>, mesh: &crate::mesh::Mesh) -> Vec<Change> {
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
pub(super) fn refuse_without_kvm(
    mut changes: Vec<Change>,
    records: &HashMap<&str, &Record>,
) -> Vec<Change> {
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

pub(super) fn tcg_warnings(changes: &[Change], records: &HashMap<&str, &Record>) -> Vec<String> {
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
pub(super) fn ingress_warnings(changes: &[Change], standalone: &BTreeSet<String>) -> Vec<String> {
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

/// Deletes go first, each after the deletes of what depended on it (its `depends_on` becomes
/// the list of those); the other changes keep their dependency order.
pub(super) fn order_deletes_first(changes: Vec<Change>, records: &[Record]) -> Vec<Change> {
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

/// A running Service whose `restartOn` Files change on its host in this plan is restarted
/// after them (they come first: `restartOn` is a dependency). An otherwise unchanged service
/// becomes an update that only restarts it.
pub(super) fn restart_if_changed(
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
        change.reason = Some(Why::Restart(changed.clone()).into());
    }
    if change.action == Action::Update {
        change.restart_for = changed;
    }
    change
}
