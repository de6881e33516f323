//! Each instance's desired state, resolved once: the spec as written (with nimbus's defaults)
//! and, as typed facts beside it, what the rest of the repository and state decide for it:
//! the host it lives on (named, placed by the scheduler with its reason, or pinned), a
//! Cluster's nodes with the addresses they advertise and its k3s binary, a Network member's
//! address and peers, a File's content read from its `source`, and the fingerprints of the
//! secrets it refers to.
//!
//! Observation, planning and apply all take an instance's desired state from here: the
//! executor observes against [`Desired::observing`], the plan compares and carries
//! [`Desired::value`], and providers are configured with the [`Topology`] (hosts, clusters,
//! tenants, networks) rather than the model. Pure, like the rest of the planner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nimbus_schemas::{ClusterType, HostSpec, K3sSource, Kind, Spec};
use serde_json::Value;

use crate::instances::InstanceGraph;
use crate::load::Model;
use crate::mesh::{Member, Mesh};
use crate::record::{Observed, Record};
use crate::scheduler::Placement;
use crate::topology::{ClusterNode, HostIndex};

/// The mode of a File whose content is a secret and whose manifest names none.
pub const SECRET_FILE_MODE: &str = "0600";

/// The fingerprint of a secret that could not be decrypted: such an instance plans as a
/// change, and applying it fails with the reason.
pub const UNRESOLVED_SECRET: &str = "(cannot decrypt)";

/// What resolving needs besides the model: state's records (recorded hosts and overlay
/// addresses stay put), the text of every File `source`, and every secret's fingerprint.
pub struct ResolveInput<'a> {
    pub records: &'a [Record],
    /// The text of every repository file a File's `source` names, by path.
    pub sources: &'a HashMap<String, String>,
    /// The keyed fingerprint of every secret reference, or why it could not be decrypted.
    pub secrets: &'a HashMap<String, Result<String, String>>,
}

/// A Cluster as its manifests resolve it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterFacts {
    pub cluster_type: ClusterType,
    /// The Network it runs on, when it names one.
    pub network: Option<String>,
    /// Its nodes, by host: on a Network, each advertises its overlay address.
    pub nodes: Vec<ClusterNode>,
    /// Its k3s binary: its own, else the Repository's.
    pub k3s: Option<K3sSource>,
}

/// What providers are configured with: the estate as the manifests resolve it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Topology {
    /// Every declared Host, by name.
    pub hosts: BTreeMap<String, HostSpec>,
    /// Every Cluster, by name.
    pub clusters: BTreeMap<String, ClusterFacts>,
    /// Every Tenant's Cluster, by Tenant name; none: its Workloads are containers on single
    /// hosts.
    pub tenants: BTreeMap<String, Option<String>>,
    /// Every Network's WireGuard interface, by Network name.
    pub interfaces: BTreeMap<String, String>,
}

/// A secret an instance refers to, where, and its fingerprint (or why it has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Its location in the spec (`content` for a File, `env.TOKEN`, `cloudInit`).
    pub location: String,
    /// `NAME` or `NAME#key`.
    pub reference: String,
    pub fingerprint: Result<String, String>,
}

/// One instance's desired state.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub kind: Kind,
    /// The spec as written, with nimbus's defaults (a secret File's mode).
    pub spec: Value,
    /// A File's content, read from its `source`.
    pub content: Option<String>,
    /// A Cluster's nodes and binary.
    pub cluster: Option<ClusterFacts>,
    /// A Network member's address and peers, or why it has no address.
    pub member: Option<Result<Member, String>>,
    /// Where the scheduler puts it, with why, or why it fits nowhere.
    pub placement: Option<Placement>,
    /// A standalone container's one host, named by its placement.
    pub pinned: Option<String>,
    /// The host state recorded it on (VMs, Volumes, containers): it is observed there, so
    /// that a host that changed is a replace whose delete runs where it was.
    pub recorded_host: Option<String>,
    pub secrets: Vec<SecretRef>,
}

impl Desired {
    /// The host the plan puts it on, when the scheduler or a pinned placement decides it.
    pub fn host(&self) -> Option<&str> {
        match &self.placement {
            Some(Placement::On { host, .. }) => Some(host),
            _ => self.pinned.as_deref(),
        }
    }

    /// Its spec as the plan carries it (for apply) and compares it: the spec with the facts
    /// in the fields providers read (`content`, `nodes`, `k3s`, `host`, a member's `address`
    /// and `peers`, each secret's `fingerprint`).
    pub fn value(&self) -> Value {
        self.clone().into_value()
    }

    /// [`Desired::value`], moving the spec rather than copying it.
    pub fn into_value(mut self) -> Value {
        let spec = std::mem::take(&mut self.spec);
        let mut value = self.base(spec);
        if let (Some(text), Value::Object(map)) = (&self.content, &mut value) {
            map.insert("content".into(), Value::String(text.clone()));
        }
        if let (Some(host), Value::Object(map)) = (self.host(), &mut value) {
            map.insert("host".into(), Value::String(host.to_owned()));
        }
        for secret in &self.secrets {
            let fingerprint = match &secret.fingerprint {
                Ok(fingerprint) => fingerprint.as_str(),
                Err(_) => UNRESOLVED_SECRET,
            };
            let fingerprint = Value::String(fingerprint.to_owned());
            if self.kind == Kind::File && secret.location == "content" {
                value["content"] = serde_json::json!({ "fingerprint": fingerprint });
            } else if let Some(Value::Object(map)) = pointer_mut(&mut value, &secret.location) {
                map.insert("fingerprint".into(), fingerprint);
            }
        }
        value
    }

    /// What a provider is asked to observe it against: the spec with its cluster's nodes or
    /// its member's peers; an instance that lives on one host names the host state recorded
    /// it on, else the scheduler's.
    pub fn observing(&self) -> Value {
        let mut value = self.base(self.spec.clone());
        if matches!(self.kind, Kind::Vm | Kind::Volume | Kind::Workload)
            && let Value::Object(map) = &mut value
        {
            let placed = match &self.placement {
                Some(Placement::On { host, .. }) if !map.contains_key("host") => Some(host),
                _ => None,
            };
            if let Some(host) = self.recorded_host.as_ref().or(placed) {
                map.insert("host".into(), Value::String(host.clone()));
            }
        }
        value
    }

    /// `spec` (a member's configuration in its place) with a Cluster's nodes and binary.
    fn base(&self, spec: Value) -> Value {
        let mut value = match &self.member {
            Some(Ok(member)) => member.value(),
            _ => spec,
        };
        if let (Some(cluster), Value::Object(map)) = (&self.cluster, &mut value) {
            map.insert(
                "nodes".into(),
                crate::topology::nodes_value(&cluster.nodes, cluster.network.is_some()),
            );
            if cluster.cluster_type == ClusterType::K3s
                && !map.contains_key("k3s")
                && let Some(k3s) = &cluster.k3s
            {
                map.insert(
                    "k3s".into(),
                    serde_json::to_value(k3s).unwrap_or(Value::Null),
                );
            }
        }
        value
    }

    /// Where its spec holds secrets.
    pub fn secret_locations(&self) -> Vec<String> {
        self.secrets.iter().map(|s| s.location.clone()).collect()
    }

    /// The first reason one of its secrets could not be decrypted.
    pub fn secret_problem(&self) -> Option<&str> {
        self.secrets
            .iter()
            .find_map(|s| s.fingerprint.as_ref().err())
            .map(String::as_str)
    }

    /// Why a Network member cannot be planned (no address left).
    pub fn member_problem(&self) -> Option<&str> {
        match &self.member {
            Some(Err(reason)) => Some(reason),
            _ => None,
        }
    }
}

/// Every instance's desired state, and what it was resolved from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolution {
    /// By instance, in the order of the instance graph (`InstanceGraph::instances`); taken
    /// out by the plan, which moves each spec into its change rather than copy it.
    pub desired: Vec<Option<Desired>>,
    /// Every Network's members, and which ones nimbus reaches through it.
    pub mesh: Mesh,
    pub topology: Topology,
    /// The Tenants that name no cluster.
    pub standalone: BTreeSet<String>,
}

impl Resolution {
    /// The desired state of the `i`th instance of the graph.
    pub fn get(&self, i: usize) -> Option<&Desired> {
        self.desired.get(i)?.as_ref()
    }

    /// Takes what was observed into account: a Network member whose last change its host
    /// rolled back (not confirmed in time) keeps the address it has, and its peers are told
    /// that one. Nothing changes when no member was rolled back.
    pub fn settle(
        &mut self,
        model: &Model,
        graph: &InstanceGraph,
        records: &[Record],
        observed: &HashMap<String, Observed>,
    ) {
        let rolled_back = observed.iter().any(|(address, o)| {
            address.starts_with("Network/")
                && matches!(o, Observed::Present(seen) if seen["rolledBack"] == true)
        });
        if !rolled_back {
            return;
        }
        let records: HashMap<&str, &Record> =
            records.iter().map(|r| (r.address.as_str(), r)).collect();
        self.mesh = crate::mesh::plan(model, graph, &records, observed);
        self.topology = topology(model, &self.mesh);
        for (instance, desired) in graph.instances.iter().zip(&mut self.desired) {
            let Some(desired) = desired else {
                continue;
            };
            if let Some(member) = self.mesh.members.get(&instance.address) {
                desired.member = Some(member.clone());
            }
            if desired.cluster.is_some() {
                desired.cluster = instance
                    .resource
                    .strip_prefix("Cluster/")
                    .and_then(|name| self.topology.clusters.get(name))
                    .cloned();
            }
        }
    }
}

/// Resolves every instance of the graph.
pub fn resolve(model: &Model, graph: &InstanceGraph, input: &ResolveInput<'_>) -> Resolution {
    let records: HashMap<&str, &Record> = input
        .records
        .iter()
        .map(|r| (r.address.as_str(), r))
        .collect();
    let mesh = crate::mesh::plan(model, graph, &records, &HashMap::new());
    let topology = topology(model, &mesh);
    let standalone: BTreeSet<String> = topology
        .tenants
        .iter()
        .filter(|(_, cluster)| cluster.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    let mut placements = crate::placement::placements(model, &records);
    let mut desired = Vec::with_capacity(graph.instances.len());
    for instance in &graph.instances {
        let resource = &model.documents[instance.document].resource;
        let spec = &resource.spec;
        let mut written = desired_spec(spec);
        apply_defaults(spec, &mut written);
        let content = match spec {
            Spec::File(file) if file.content.is_none() => file
                .source
                .as_deref()
                .and_then(|path| input.sources.get(path.trim_start_matches("./")))
                .cloned(),
            _ => None,
        };
        let cluster = match spec {
            Spec::Cluster(_) => topology.clusters.get(resource.name()).cloned(),
            _ => None,
        };
        let pinned = match spec {
            Spec::Workload(workload)
                if resource
                    .tenant
                    .as_deref()
                    .is_some_and(|t| standalone.contains(t)) =>
            {
                match workload.placement.as_ref().map(|p| p.hosts.as_slice()) {
                    Some([host]) => Some(host.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        let recorded_host = records
            .get(instance.address.as_str())
            .and_then(|r| r.applied.get("host"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let secrets = secret_references(instance.kind, &written)
            .into_iter()
            .map(|(location, reference)| SecretRef {
                fingerprint: match input.secrets.get(&reference) {
                    Some(found) => found.clone(),
                    None => Err(format!("secret `{reference}` was not resolved")),
                },
                location,
                reference,
            })
            .collect();
        desired.push(Some(Desired {
            kind: instance.kind,
            spec: written,
            content,
            cluster,
            member: mesh.members.get(&instance.address).cloned(),
            placement: placements.remove(&instance.address),
            pinned,
            recorded_host,
            secrets,
        }));
    }
    Resolution {
        desired,
        mesh,
        topology,
        standalone,
    }
}

/// The estate providers are configured with, as the manifests and state's records resolve it
/// (the same rules as [`resolve`]: a Cluster on a Network advertises its nodes' overlay
/// addresses).
pub fn topology_of(model: &Model, graph: &InstanceGraph, records: &[Record]) -> Topology {
    let records: HashMap<&str, &Record> = records.iter().map(|r| (r.address.as_str(), r)).collect();
    topology(
        model,
        &crate::mesh::plan(model, graph, &records, &HashMap::new()),
    )
}

fn topology(model: &Model, mesh: &Mesh) -> Topology {
    let repository_k3s = model.repository().and_then(|d| match &d.resource.spec {
        Spec::Repository(r) => r.k3s.clone(),
        _ => None,
    });
    let mut topology = Topology::default();
    let mut index: Option<HostIndex<'_>> = None;
    for document in &model.documents {
        let name = document.resource.name().to_owned();
        match &document.resource.spec {
            Spec::Host(host) => {
                topology.hosts.insert(name, host.clone());
            }
            Spec::Cluster(cluster) => {
                let mut nodes = index
                    .get_or_insert_with(|| HostIndex::new(model))
                    .cluster_nodes(cluster);
                if let Some(network) = &cluster.network {
                    for node in &mut nodes {
                        if let Some(ip) = mesh.address_of(network, &node.host) {
                            node.address = ip.to_string();
                        }
                    }
                }
                let k3s = match cluster.cluster_type {
                    ClusterType::K3s => cluster.k3s.clone().or_else(|| repository_k3s.clone()),
                    _ => None,
                };
                topology.clusters.insert(
                    name,
                    ClusterFacts {
                        cluster_type: cluster.cluster_type,
                        network: cluster.network.clone(),
                        nodes,
                        k3s,
                    },
                );
            }
            Spec::Tenant(tenant) => {
                topology.tenants.insert(name, tenant.cluster.clone());
            }
            Spec::Network(network) => {
                let interface = network.interface_name(&name);
                topology.interfaces.insert(name, interface);
            }
            _ => {}
        }
    }
    topology
}

/// The spec as written, as JSON.
pub fn desired_spec(spec: &Spec) -> Value {
    serde_json::to_value(spec).unwrap_or(Value::Null)
}

/// The defaults nimbus gives a spec beyond what it says: a File whose content is a secret is
/// readable by its owner only ([`SECRET_FILE_MODE`]) unless its `mode` says otherwise, and
/// the plan shows that mode.
pub fn apply_defaults(spec: &Spec, desired: &mut Value) {
    if let Spec::File(file) = spec
        && file.secret.is_some()
        && file.mode.is_none()
        && let Value::Object(map) = desired
    {
        map.insert("mode".into(), Value::String(SECRET_FILE_MODE.into()));
    }
}

/// Where a spec refers to secrets: (location in the spec, reference). A File's `secret` stands
/// for its `content`; elsewhere (`env.KEY`, `cloudInit`) an object `{secret: NAME}` is the
/// location.
pub fn secret_references(kind: Kind, spec: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if kind == Kind::File {
        if let Some(reference) = spec["secret"].as_str() {
            found.push(("content".to_owned(), reference.to_owned()));
        }
        return found;
    }
    fn walk(path: &str, value: &Value, found: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("secret") {
                    found.push((path.to_owned(), reference.clone()));
                    return;
                }
                for (key, child) in map {
                    let next = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(&next, child, found);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), child, found);
                }
            }
            _ => {}
        }
    }
    walk("", spec, &mut found);
    found
}

/// The value at a dotted path with `[i]` indices.
pub fn pointer_mut<'v>(value: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    let mut current = value;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            current = current.get_mut(key)?;
        }
        for index in indices
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<usize>().ok())
        {
            current = current.get_mut(index)?;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";

    fn resolved(
        text: &str,
        records: &[Record],
        secrets: &[(&str, Result<&str, &str>)],
    ) -> (Resolution, InstanceGraph) {
        let checked = crate::check(crate::load::RepositoryInput {
            manifests: vec![crate::load::InputFile {
                path: "all.yaml".into(),
                bytes: text.as_bytes().to_vec(),
            }],
            other_paths: ["secrets/token.age".to_owned()].into(),
            outside_links: Vec::new(),
        });
        assert!(!checked.has_errors(), "{:?}", checked.problems);
        let resources = crate::graph::ResourceGraph::build(&checked.model);
        let graph = InstanceGraph::build(&checked.model, &resources);
        let secrets = secrets
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned).map_err(str::to_owned)))
            .collect();
        let resolution = resolve(
            &checked.model,
            &graph,
            &ResolveInput {
                records,
                sources: &HashMap::new(),
                secrets: &secrets,
            },
        );
        (resolution, graph)
    }

    fn at<'r>(resolved: &'r (Resolution, InstanceGraph), address: &str) -> &'r Desired {
        resolved
            .1
            .get(address)
            .and_then(|i| resolved.0.get(i))
            .unwrap_or_else(|| panic!("no {address}"))
    }

    fn hosts() -> String {
        format!(
            "{HEADER}kind: Host\nmetadata: {{name: a, labels: {{mesh: \"yes\"}}}}\nspec: {{address: 192.0.2.1}}\n---\n\
             {HEADER}kind: Host\nmetadata: {{name: b, labels: {{mesh: \"yes\"}}}}\nspec: {{address: 192.0.2.2}}\n---\n"
        )
    }

    fn record(address: &str, applied: Value) -> Record {
        Record {
            address: address.to_owned(),
            kind: Kind::Vm,
            applied,
            owned: true,
            protected: false,
            keep_on_removal: false,
            depends_on: Vec::new(),
            provider: "ssh".into(),
            outputs: Value::Null,
            tainted: None,
        }
    }

    /// The fault this module ends: a Cluster on a Network is planned, observed and given to
    /// its provider with the same node addresses, the overlay ones.
    #[test]
    fn a_cluster_on_a_network_advertises_its_overlay_addresses_everywhere() {
        let text = format!(
            "{}{HEADER}kind: Network\nmetadata: {{name: mesh}}\nspec: {{members: {{mesh: \"yes\"}}}}\n---\n\
             {HEADER}kind: Cluster\nmetadata: {{name: apps}}\nspec: {{type: docker-swarm, network: mesh, managers: {{mesh: \"yes\"}}}}\n",
            hosts()
        );
        let both = resolved(&text, &[], &[]);
        let resolution = &both.0;
        let cluster = at(&both, "Cluster/apps");
        let overlay = |value: &Value| {
            ["a", "b"].map(|h| {
                value["nodes"][h]["address"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
        };
        assert_eq!(overlay(&cluster.value()), ["10.106.103.1", "10.106.103.2"]);
        assert_eq!(overlay(&cluster.observing()), overlay(&cluster.value()));
        let nodes = &resolution.topology.clusters["apps"].nodes;
        let given: Vec<&str> = nodes.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(given, ["10.106.103.1", "10.106.103.2"]);
        // Each member's peers are the other member at its overlay address.
        let member = at(&both, "Network/mesh@a").value();
        assert_eq!(member["peers"]["b"]["address"], json!("10.106.103.2"));
    }

    /// A VM whose manifest moved it is planned on its new host and observed on the one
    /// state recorded, so that the move is a replace whose delete runs where it was.
    #[test]
    fn an_instance_on_one_host_is_observed_where_state_recorded_it() {
        let text = format!(
            "{}{HEADER}kind: VM\nmetadata: {{name: vm}}\nspec: {{host: b, cpus: 1, memory: 1Gi, disk: {{size: 1Gi}}}}\n",
            hosts()
        );
        let records = [record("VM/vm", json!({"host": "a"}))];
        let both = resolved(&text, &records, &[]);
        let vm = at(&both, "VM/vm");
        assert_eq!(vm.value()["host"], "b");
        assert_eq!(vm.observing()["host"], "a");
        assert_eq!(vm.recorded_host.as_deref(), Some("a"));
    }

    /// Secrets are carried as fingerprints at their place; one that cannot be decrypted is
    /// the instance's problem, and its value never appears.
    #[test]
    fn secrets_are_fingerprints_and_an_undecryptable_one_is_a_problem() {
        let text = format!(
            "{}{HEADER}kind: File\nmetadata: {{name: token}}\nspec: {{path: /etc/token, secret: token, hosts: {{mesh: \"yes\"}}}}\n",
            hosts()
        );
        let good = resolved(&text, &[], &[("token", Ok("f1ngerprint"))]);
        let file = at(&good, "File/token@a");
        assert_eq!(
            file.value()["content"],
            json!({"fingerprint": "f1ngerprint"})
        );
        assert_eq!(file.value()["mode"], SECRET_FILE_MODE);
        assert_eq!(file.secret_problem(), None);
        let bad = resolved(&text, &[], &[("token", Err("no identity decrypts it"))]);
        let file = at(&bad, "File/token@a");
        assert_eq!(
            file.value()["content"],
            json!({"fingerprint": UNRESOLVED_SECRET})
        );
        assert_eq!(file.secret_problem(), Some("no identity decrypts it"));
    }
}
