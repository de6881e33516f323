//! Instances: what is planned, applied, recorded and reported one by one. A resource that
//! targets several hosts (a File or Service by selector, a Network's members) expands into one
//! instance per host, `File/motd@web-1`, so that one unreachable host fails only its own
//! instances. Every other resource is a single instance with the resource's address.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use nimbus_schemas::{Kind, Spec};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

use crate::graph::{LabelIndex, ResourceGraph};
use crate::load::Model;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// `Kind/name`, `Kind/tenant/name`, or `Kind/name@host` for per-host instances.
    pub address: String,
    /// The resource's address, without `@host`.
    pub resource: String,
    pub kind: nimbus_schemas::Kind,
    /// The document in the model this instance comes from.
    #[serde(skip)]
    pub document: usize,
    /// The host a per-host instance is applied to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The provider that applies it (SPEC §11), chosen from the manifests.
    pub provider: String,
}

/// The instances of a model and their dependencies: an edge points from an instance to one
/// it depends on.
#[derive(Debug)]
pub struct InstanceGraph {
    pub instances: Vec<Instance>,
    pub graph: DiGraph<usize, ()>,
    nodes: Vec<NodeIndex>,
    by_address: HashMap<String, usize>,
}

/// The hosts (document indices) a per-host document targets, or `None` for a single instance.
fn targets(
    model: &Model,
    hosts: &LabelIndex<'_>,
    by_name: &HashMap<&str, usize>,
    spec: &Spec,
) -> Option<Vec<usize>> {
    let (host, selector) = match spec {
        Spec::File(f) => (f.host.as_deref(), f.hosts.as_ref()),
        Spec::Service(s) => (s.host.as_deref(), s.hosts.as_ref()),
        Spec::Network(n) => (None, Some(&n.members)),
        _ => return None,
    };
    let mut chosen: Vec<usize> = match (host, selector) {
        (Some(name), _) => by_name.get(name).copied().into_iter().collect(),
        (None, Some(selector)) => hosts.matching(selector),
        (None, None) => Vec::new(),
    };
    chosen.sort_by(|a, b| {
        model.documents[*a]
            .resource
            .name()
            .cmp(model.documents[*b].resource.name())
    });
    Some(chosen)
}

impl InstanceGraph {
    pub fn build(model: &Model, resources: &ResourceGraph) -> Self {
        let host_documents: Vec<(usize, &nimbus_schemas::Labels)> = model
            .documents
            .iter()
            .enumerate()
            .filter(|(_, d)| d.resource.kind == Kind::Host)
            .map(|(i, d)| (i, &d.resource.metadata.labels))
            .collect();
        let hosts = LabelIndex::new(host_documents.iter().copied());
        let by_name: HashMap<&str, usize> = host_documents
            .iter()
            .map(|(i, _)| (model.documents[*i].resource.name(), *i))
            .collect();

        let providers = crate::rules::providers_of(model);
        let mut instances = Vec::new();
        // For every document, its instances, and for per-host ones, by host document.
        let mut of_document: Vec<Vec<usize>> = vec![Vec::new(); model.documents.len()];
        let mut host_of: Vec<Option<usize>> = Vec::new();
        for (d, document) in model.documents.iter().enumerate() {
            let resource = &document.resource;
            if resource.kind == Kind::Repository {
                continue;
            }
            let address = resource.address();
            match targets(model, &hosts, &by_name, &resource.spec) {
                None => {
                    // A VM or Volume on a named host is one instance, but its dependencies on
                    // per-host instances (the Network on that host) are that host's only.
                    let anchored = match &resource.spec {
                        Spec::Vm(v) => v.host.as_deref(),
                        Spec::Volume(v) => v.host.as_deref(),
                        _ => None,
                    };
                    of_document[d].push(instances.len());
                    host_of.push(anchored.and_then(|name| by_name.get(name).copied()));
                    instances.push(Instance {
                        address: address.clone(),
                        resource: address,
                        kind: resource.kind,
                        document: d,
                        host: None,
                        provider: providers[d].clone(),
                    });
                }
                Some(targets) => {
                    for h in targets {
                        let host = model.documents[h].resource.name().to_owned();
                        of_document[d].push(instances.len());
                        host_of.push(Some(h));
                        instances.push(Instance {
                            address: format!("{address}@{host}"),
                            resource: address.clone(),
                            kind: resource.kind,
                            document: d,
                            host: Some(host),
                            provider: providers[d].clone(),
                        });
                    }
                }
            }
        }
        let mut graph = DiGraph::with_capacity(instances.len(), instances.len());
        let nodes: Vec<NodeIndex> = (0..instances.len()).map(|i| graph.add_node(i)).collect();
        let mut seen = std::collections::HashSet::new();
        for edge in resources.graph.raw_edges() {
            let (from, to) = (
                resources.graph[edge.source()],
                resources.graph[edge.target()],
            );
            let to_is_host = model.documents[to].resource.kind == Kind::Host;
            for &a in &of_document[from] {
                let own_host = host_of[a];
                let candidates: Vec<usize> = match own_host {
                    // A per-host instance depends on its own host, not on the others its
                    // selector matched.
                    Some(h) if to_is_host => of_document[to]
                        .iter()
                        .copied()
                        .filter(|_| to == h)
                        .collect(),
                    // And on the same host's instance of another per-host resource, if any.
                    Some(h) => {
                        let same: Vec<usize> = of_document[to]
                            .iter()
                            .copied()
                            .filter(|&b| host_of[b] == Some(h))
                            .collect();
                        if same.is_empty() {
                            of_document[to].clone()
                        } else {
                            same
                        }
                    }
                    None => of_document[to].clone(),
                };
                for b in candidates {
                    if a != b && seen.insert((a, b)) {
                        graph.add_edge(nodes[a], nodes[b], ());
                    }
                }
            }
        }
        let by_address = instances
            .iter()
            .enumerate()
            .map(|(i, inst)| (inst.address.clone(), i))
            .collect();
        InstanceGraph {
            instances,
            graph,
            nodes,
            by_address,
        }
    }

    pub fn get(&self, address: &str) -> Option<usize> {
        self.by_address.get(address).copied()
    }

    /// The instances `i` depends on directly.
    pub fn dependencies(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(self.nodes[i], Direction::Outgoing)
            .map(|n| self.graph[n])
    }

    /// The instances that depend on `i` directly.
    pub fn dependents(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(self.nodes[i], Direction::Incoming)
            .map(|n| self.graph[n])
    }

    /// Every instance, dependencies before dependents; ties broken by address, so the order
    /// is the same for the same repository. The graph is acyclic once validation passed;
    /// instances on a cycle, if any, come last.
    pub fn order(&self) -> Vec<usize> {
        let mut remaining: Vec<usize> = (0..self.instances.len())
            .map(|i| self.dependencies(i).count())
            .collect();
        let mut ready: BTreeMap<&str, usize> = (0..self.instances.len())
            .filter(|&i| remaining[i] == 0)
            .map(|i| (self.instances[i].address.as_str(), i))
            .collect();
        let mut order = Vec::with_capacity(self.instances.len());
        while let Some((_, i)) = ready.pop_first() {
            order.push(i);
            for dependent in self.dependents(i) {
                remaining[dependent] -= 1;
                if remaining[dependent] == 0 {
                    ready.insert(self.instances[dependent].address.as_str(), dependent);
                }
            }
        }
        if order.len() < self.instances.len() {
            let placed: std::collections::HashSet<usize> = order.iter().copied().collect();
            order.extend((0..self.instances.len()).filter(|i| !placed.contains(i)));
        }
        order
    }

    /// Graphviz: `nimbus graph --format dot | dot -Tsvg`.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph nimbus {\n  rankdir=LR;\n  node [shape=box];\n");
        for i in self.order() {
            let _ = writeln!(out, "  \"{}\";", self.instances[i].address);
        }
        for (from, to) in self.sorted_edges() {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                self.instances[from].address, self.instances[to].address
            );
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid, for markdown that renders it (GitHub, GitLab).
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("graph LR\n");
        for i in self.order() {
            let _ = writeln!(out, "  n{i}[\"{}\"]", self.instances[i].address);
        }
        for (from, to) in self.sorted_edges() {
            let _ = writeln!(out, "  n{from} --> n{to}");
        }
        out
    }

    /// `{"instances": [...], "edges": [{"from", "to"}]}`, in dependency order.
    pub fn to_json(&self) -> serde_json::Value {
        let instances: Vec<&Instance> = self
            .order()
            .into_iter()
            .map(|i| &self.instances[i])
            .collect();
        let edges: Vec<serde_json::Value> = self
            .sorted_edges()
            .into_iter()
            .map(|(from, to)| serde_json::json!({"from": self.instances[from].address, "to": self.instances[to].address}))
            .collect();
        serde_json::json!({"instances": instances, "edges": edges})
    }

    fn sorted_edges(&self) -> Vec<(usize, usize)> {
        let mut edges: Vec<(usize, usize)> = self
            .graph
            .raw_edges()
            .iter()
            .map(|e| (self.graph[e.source()], self.graph[e.target()]))
            .collect();
        edges.sort_by(|a, b| {
            (&self.instances[a.0].address, &self.instances[a.1].address)
                .cmp(&(&self.instances[b.0].address, &self.instances[b.1].address))
        });
        edges
    }
}
