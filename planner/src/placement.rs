//! The scheduler's inputs, read from the manifests and state: each Host's room (declared
//! `capacity`, else the facts recorded when it was last applied), the load of what names its
//! host, and what is to be placed (SPEC §11, docs/scheduler.md).

use std::collections::{BTreeMap, HashMap, HashSet};

use nimbus_schemas::{Bytes, Cpu, Placement as Where, Spec, WorkloadSpec};
use serde_json::Value;

use crate::load::Model;
use crate::record::Record;
use crate::scheduler::{Fixed, HostRoom, Placement, Request, schedule};
use crate::tree::Segment;

/// A standalone Workload's request: cpu and memory times its replicas.
fn workload_load(w: &WorkloadSpec) -> (u64, u64) {
    let replicas = u64::from(w.replicas);
    (
        w.cpu.map_or(0, |c| c.millicores) * replicas,
        w.memory.map_or(0, |m| m.bytes) * replicas,
    )
}

/// The Tenants that name no cluster: their Workloads are containers on single hosts.
pub fn standalone_tenants(model: &Model) -> HashSet<&str> {
    model
        .documents
        .iter()
        .filter(|d| matches!(&d.resource.spec, Spec::Tenant(t) if t.cluster.is_none()))
        .map(|d| d.resource.name())
        .collect()
}

/// Where each instance that needs placing goes (by address), or why it cannot. Empty when
/// nothing in the model needs the scheduler.
pub fn placements(model: &Model, records: &HashMap<&str, &Record>) -> BTreeMap<String, Placement> {
    let standalone = standalone_tenants(model);
    let mut fixed = Vec::new();
    // Containers that name their one host, by address: checked against its whole capacity.
    let mut pinned: Vec<(String, Fixed)> = Vec::new();
    let mut requests = Vec::new();
    for document in &model.documents {
        let address = document.resource.address();
        // A request of `load` (millicores, bytes) to place by `placement`.
        let request = |placement: &Where, (cpu, memory): (u64, u64)| Request {
            address: address.clone(),
            selector: placement.selector.0.clone(),
            hosts: placement.hosts.clone(),
            cpu,
            memory,
            previous: records
                .get(address.as_str())
                .and_then(|r| r.applied.get("host"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let fixed_on = |host: &str, (cpu, memory): (u64, u64)| Fixed {
            host: host.to_owned(),
            cpu,
            memory,
        };
        match &document.resource.spec {
            Spec::Vm(vm) => {
                let load = (u64::from(vm.cpus) * 1000, vm.memory.bytes);
                match (&vm.host, &vm.placement) {
                    (Some(host), _) => fixed.push(fixed_on(host, load)),
                    (None, Some(placement)) => requests.push(request(placement, load)),
                    (None, None) => {}
                }
            }
            Spec::Workload(w)
                if document
                    .resource
                    .tenant
                    .as_deref()
                    .is_some_and(|t| standalone.contains(t)) =>
            {
                let Some(placement) = &w.placement else {
                    continue;
                };
                let load = workload_load(w);
                match placement.hosts.as_slice() {
                    [host] if placement.selector.is_empty() => {
                        pinned.push((address.clone(), fixed_on(host, load)));
                    }
                    _ => requests.push(request(placement, load)),
                }
            }
            _ => {}
        }
    }
    if requests.is_empty() && pinned.is_empty() {
        return BTreeMap::new();
    }
    let hosts: Vec<HostRoom> = model
        .documents
        .iter()
        .filter_map(|d| match &d.resource.spec {
            Spec::Host(host) => {
                let name = d.resource.name();
                let facts = records
                    .get(format!("Host/{name}").as_str())
                    .map(|r| &r.outputs["facts"]);
                let declared = host.capacity.as_ref();
                let cpu = declared
                    .and_then(|c| c.cpu)
                    .map(|c| c.millicores)
                    .or_else(|| facts.and_then(|f| f["cpus"].as_u64()).map(|n| n * 1000));
                let memory = declared
                    .and_then(|c| c.memory)
                    .map(|m| m.bytes)
                    .or_else(|| facts.and_then(|f| f["memory"].as_u64()));
                Some(HostRoom {
                    name: name.to_owned(),
                    labels: d.resource.metadata.labels.0.clone(),
                    capacity: match (cpu, memory) {
                        (Some(cpu), Some(memory)) => Ok((cpu, memory)),
                        _ => Err(
                            "capacity not known (declare `capacity` on the Host, or apply the Host once so that its facts are recorded)"
                                .to_owned(),
                        ),
                    },
                })
            }
            _ => None,
        })
        .collect();
    // A container that asks for more than its host has in all can never run there: it is
    // not planned, and its request is no load on that host.
    let mut refused = BTreeMap::new();
    for (address, load) in pinned {
        let capacity = hosts
            .iter()
            .find(|h| h.name == load.host)
            .and_then(|h| h.capacity.clone().ok());
        let mut over = Vec::new();
        if let Some((cpu, memory)) = capacity {
            if load.cpu > cpu {
                over.push(format!(
                    "{} cpu, more than the {} it has",
                    Cpu {
                        millicores: load.cpu
                    },
                    Cpu { millicores: cpu }
                ));
            }
            if load.memory > memory {
                over.push(format!(
                    "{} memory, more than the {} it has",
                    Bytes { bytes: load.memory },
                    Bytes { bytes: memory }
                ));
            }
        }
        if over.is_empty() {
            fixed.push(load);
        } else {
            refused.insert(
                address,
                Placement::Nowhere {
                    reason: format!(
                        "it asks Host/{} for {}; lower the request or name a larger host",
                        load.host,
                        over.join(" and ")
                    ),
                },
            );
        }
    }
    reserve_observed_load(model, records, &hosts, &requests, &mut fixed);
    let mut placed = schedule(&hosts, &fixed, &requests);
    placed.append(&mut refused);
    // What cannot be placed says where it is declared: the file, line and column of its
    // placement, as diagnostics do.
    for document in &model.documents {
        if let Some(Placement::Nowhere { reason }) = placed.get_mut(&document.resource.address()) {
            let at = crate::locate::locate(
                model.sources.get(document.file),
                document,
                &[Segment::Key("placement")],
            );
            *reason = format!("{at}: cannot be placed: {reason}");
        }
    }
    placed
}

/// The load nimbus did not put on a host, where it is known: for a Host sized by its facts
/// (no declared `capacity`), the memory in use when they were read (`memory` less
/// `memoryAvailable`, the figure the agent reports) less what nimbus itself has there (VMs and
/// containers fixed on it or placed there before), held back from what the scheduler hands out.
/// It is read from state, so the same inputs give the same placement.
fn reserve_observed_load(
    model: &Model,
    records: &HashMap<&str, &Record>,
    hosts: &[HostRoom],
    requests: &[Request],
    fixed: &mut Vec<Fixed>,
) {
    // One pass over the documents and over what nimbus has on each host.
    let declared: HashSet<&str> = model
        .documents
        .iter()
        .filter(|d| {
            matches!(&d.resource.spec, Spec::Host(h) if h.capacity.as_ref().is_some_and(|c| c.memory.is_some()))
        })
        .map(|d| d.resource.name())
        .collect();
    let mut ours: HashMap<&str, u64> = HashMap::new();
    for load in fixed.iter() {
        *ours.entry(load.host.as_str()).or_default() += load.memory;
    }
    for request in requests {
        if let Some(previous) = request.previous.as_deref() {
            *ours.entry(previous).or_default() += request.memory;
        }
    }
    let mut reserved = Vec::new();
    for host in hosts {
        if declared.contains(host.name.as_str()) {
            continue;
        }
        let Some(facts) = records
            .get(format!("Host/{}", host.name).as_str())
            .map(|r| &r.outputs["facts"])
        else {
            continue;
        };
        let (Some(total), Some(available)) =
            (facts["memory"].as_u64(), facts["memoryAvailable"].as_u64())
        else {
            continue;
        };
        let ours = ours.get(host.name.as_str()).copied().unwrap_or(0);
        let others = total.saturating_sub(available).saturating_sub(ours);
        if others > 0 {
            reserved.push(Fixed {
                host: host.name.clone(),
                cpu: 0,
                memory: others,
            });
        }
    }
    fixed.extend(reserved);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";

    fn model(text: &str) -> Model {
        let checked = crate::check(crate::load::RepositoryInput {
            manifests: vec![crate::load::InputFile {
                path: "all.yaml".into(),
                bytes: text.as_bytes().to_vec(),
            }],
            other_paths: Default::default(),
            outside_links: Vec::new(),
        });
        assert!(!checked.has_errors(), "{:?}", checked.problems);
        checked.model
    }

    fn host_record(name: &str, memory: u64, available: u64) -> Record {
        Record {
            address: format!("Host/{name}"),
            kind: nimbus_schemas::Kind::Host,
            applied: json!({}),
            owned: true,
            protected: false,
            keep_on_removal: false,
            depends_on: Vec::new(),
            provider: "ssh".into(),
            outputs: json!({"facts": {"cpus": 4, "memory": memory, "memoryAvailable": available}}),
            tainted: None,
        }
    }

    #[test]
    fn memory_in_use_by_others_is_held_back_from_a_host_sized_by_its_facts() {
        const GIB: u64 = 1 << 30;
        let text = format!(
            "{HEADER}kind: Host\nmetadata: {{name: a, labels: {{vm: \"yes\"}}}}\nspec: {{address: 10.0.0.1}}\n---\n\
             {HEADER}kind: Host\nmetadata: {{name: b, labels: {{vm: \"yes\"}}}}\nspec: {{address: 10.0.0.2}}\n---\n\
             {HEADER}kind: VM\nmetadata: {{name: big}}\nspec: {{placement: {{vm: \"yes\"}}, cpus: 1, memory: 3Gi, disk: {{size: 1Gi}}}}\n"
        );
        let model = model(&text);
        // Both have 4Gi; on `a` something else uses 2Gi: the 3Gi VM fits only on `b`.
        let kept = [
            host_record("a", 4 * GIB, 2 * GIB),
            host_record("b", 4 * GIB, 4 * GIB),
        ];
        let records: HashMap<&str, &Record> =
            kept.iter().map(|r| (r.address.as_str(), r)).collect();
        let placed = placements(&model, &records);
        assert!(
            matches!(placed.get("VM/big"), Some(Placement::On { host, .. }) if host == "b"),
            "{placed:?}"
        );
        // Without the load, the tie goes to `a` by name.
        let bare = [
            host_record("a", 4 * GIB, 4 * GIB),
            host_record("b", 4 * GIB, 4 * GIB),
        ];
        let records: HashMap<&str, &Record> =
            bare.iter().map(|r| (r.address.as_str(), r)).collect();
        let placed = placements(&model, &records);
        assert!(
            matches!(placed.get("VM/big"), Some(Placement::On { host, .. }) if host == "a"),
            "{placed:?}"
        );
    }
}
