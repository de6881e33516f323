//! The resource graph: every reference between documents (names, selectors, `dependsOn`),
//! each with the field it came from, so problems and cycles can point at it.

use std::collections::HashMap;

use nimbus_schemas::{Kind, Labels, Spec};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::load::Model;
use crate::tree::Segment;

/// What a field refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A resource by address, `Kind/name` or `Kind/tenant/name`.
    Address(String),
    /// Hosts by labels.
    Hosts(Labels),
}

/// A field of document `from` that refers to something.
#[derive(Clone, Debug)]
pub struct Reference {
    pub from: usize,
    /// Path of the field inside `spec`.
    pub path: Vec<OwnedSegment>,
    pub target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedSegment {
    Key(&'static str),
    MapKey(String),
    Index(usize),
}

pub fn segments(path: &[OwnedSegment]) -> Vec<Segment<'_>> {
    path.iter()
        .map(|s| match s {
            OwnedSegment::Key(k) => Segment::Key(k),
            OwnedSegment::MapKey(k) => Segment::Key(k),
            OwnedSegment::Index(i) => Segment::Index(*i),
        })
        .collect()
}

fn key(k: &'static str) -> OwnedSegment {
    OwnedSegment::Key(k)
}

/// Normalises a reference written as a bare name or as an address into an address.
pub fn address_of(kind: Kind, tenant: Option<&str>, written: &str) -> String {
    if written.contains('/') {
        written.to_owned()
    } else {
        nimbus_schemas::Address::resource(kind, tenant, written).to_string()
    }
}

/// Every reference of every document.
pub fn references(model: &Model) -> Vec<Reference> {
    let mut out = Vec::new();
    for (from, document) in model.documents.iter().enumerate() {
        macro_rules! by_name {
            ($path:expr, $kind:expr, $name:expr) => {
                out.push(Reference {
                    from,
                    path: $path,
                    target: Target::Address(address_of($kind, None, $name)),
                })
            };
        }
        let tenant = document.resource.tenant.as_deref();
        let spec = &document.resource.spec;
        match spec {
            Spec::Repository(_) => {}
            Spec::Host(h) => {
                if let Some(via) = &h.via {
                    by_name!(vec![key("via")], Kind::Host, via);
                }
            }
            Spec::File(f) => {
                if let Some(host) = &f.host {
                    by_name!(vec![key("host")], Kind::Host, host);
                }
            }
            Spec::Service(s) => {
                if let Some(host) = &s.host {
                    by_name!(vec![key("host")], Kind::Host, host);
                }
                for (i, file) in s.restart_on.iter().enumerate() {
                    by_name!(
                        vec![key("restartOn"), OwnedSegment::Index(i)],
                        Kind::File,
                        file
                    );
                }
            }
            Spec::Network(n) => {
                for host in n.addresses.keys() {
                    by_name!(
                        vec![key("addresses"), OwnedSegment::MapKey(host.clone())],
                        Kind::Host,
                        host
                    );
                }
            }
            Spec::Cluster(c) => {
                if let Some(network) = &c.network {
                    by_name!(vec![key("network")], Kind::Network, network);
                }
            }
            Spec::Tenant(t) => {
                if let Some(cluster) = &t.cluster {
                    by_name!(vec![key("cluster")], Kind::Cluster, cluster);
                }
            }
            Spec::Workload(w) => {
                if let Some(t) = &w.tenant {
                    by_name!(vec![key("tenant")], Kind::Tenant, t);
                } else if let Some(t) = tenant {
                    out.push(Reference {
                        from,
                        path: Vec::new(),
                        target: Target::Address(format!("Tenant/{t}")),
                    });
                }
                for (i, mount) in w.volumes.iter().enumerate() {
                    out.push(Reference {
                        from,
                        path: vec![key("volumes"), OwnedSegment::Index(i)],
                        target: Target::Address(address_of(Kind::Volume, tenant, &mount.name)),
                    });
                }
                if let Some(placement) = &w.placement {
                    for (i, host) in placement.hosts.iter().enumerate() {
                        out.push(Reference {
                            from,
                            path: vec![key("placement"), key("hosts"), OwnedSegment::Index(i)],
                            target: Target::Address(address_of(Kind::Host, None, host)),
                        });
                    }
                }
            }
            Spec::Vm(v) => {
                if let Some(host) = &v.host {
                    by_name!(vec![key("host")], Kind::Host, host);
                }
                if let Some(network) = &v.network {
                    by_name!(vec![key("network")], Kind::Network, network);
                }
                if let Some(placement) = &v.placement {
                    for (i, host) in placement.hosts.iter().enumerate() {
                        by_name!(
                            vec![key("placement"), key("hosts"), OwnedSegment::Index(i)],
                            Kind::Host,
                            host
                        );
                    }
                }
            }
            Spec::Volume(v) => {
                if let Some(t) = &v.tenant {
                    by_name!(vec![key("tenant")], Kind::Tenant, t);
                } else if let Some(t) = tenant {
                    out.push(Reference {
                        from,
                        path: Vec::new(),
                        target: Target::Address(format!("Tenant/{t}")),
                    });
                }
                if let Some(host) = &v.host {
                    by_name!(vec![key("host")], Kind::Host, host);
                }
            }
        }
        for (path, selector) in selectors(spec) {
            out.push(Reference {
                from,
                path,
                target: Target::Hosts(selector.clone()),
            });
        }
        for (i, address) in spec.depends_on().iter().enumerate() {
            out.push(Reference {
                from,
                path: vec![key("dependsOn"), OwnedSegment::Index(i)],
                target: Target::Address(address.clone()),
            });
        }
    }
    out
}

/// Every host selector of a spec, with its field.
pub fn selectors(spec: &Spec) -> Vec<(Vec<OwnedSegment>, &Labels)> {
    let mut out = Vec::new();
    match spec {
        Spec::File(f) => out.extend(f.hosts.as_ref().map(|l| (vec![key("hosts")], l))),
        Spec::Service(s) => out.extend(s.hosts.as_ref().map(|l| (vec![key("hosts")], l))),
        Spec::Network(n) => out.push((vec![key("members")], &n.members)),
        Spec::Cluster(c) => {
            out.extend(c.managers.as_ref().map(|l| (vec![key("managers")], l)));
            out.extend(c.servers.as_ref().map(|l| (vec![key("servers")], l)));
            out.extend(c.workers.as_ref().map(|l| (vec![key("workers")], l)));
            out.extend(c.agents.as_ref().map(|l| (vec![key("agents")], l)));
        }
        Spec::Workload(w) => out.extend(
            w.placement
                .as_ref()
                .filter(|p| !p.selector.is_empty())
                .map(|p| (vec![key("placement")], &p.selector)),
        ),
        Spec::Vm(v) => out.extend(
            v.placement
                .as_ref()
                .filter(|p| !p.selector.is_empty())
                .map(|p| (vec![key("placement")], &p.selector)),
        ),
        _ => {}
    }
    out
}

/// Hosts indexed by label, so that a selector finds its hosts without scanning them all.
pub struct LabelIndex<'a> {
    labels: Vec<(usize, &'a Labels)>,
    postings: HashMap<(&'a str, &'a str), Vec<usize>>,
}

impl<'a> LabelIndex<'a> {
    /// `items` are (id, labels) pairs; ids come back from [`LabelIndex::matching`].
    pub fn new(items: impl IntoIterator<Item = (usize, &'a Labels)>) -> Self {
        let labels: Vec<(usize, &Labels)> = items.into_iter().collect();
        let mut postings: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (position, (_, l)) in labels.iter().enumerate() {
            for (k, v) in &l.0 {
                postings
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(position);
            }
        }
        LabelIndex { labels, postings }
    }

    /// The ids of every item the selector matches, in insertion order.
    pub fn matching(&self, selector: &Labels) -> Vec<usize> {
        let mut shortest: Option<&Vec<usize>> = None;
        for (k, v) in &selector.0 {
            match self.postings.get(&(k.as_str(), v.as_str())) {
                None => return Vec::new(),
                Some(list) if shortest.is_none_or(|s| list.len() < s.len()) => {
                    shortest = Some(list)
                }
                Some(_) => {}
            }
        }
        match shortest {
            None => self.labels.iter().map(|(id, _)| *id).collect(),
            Some(list) => list
                .iter()
                .map(|&position| self.labels[position])
                .filter(|(_, labels)| selector.matches(labels))
                .map(|(id, _)| id)
                .collect(),
        }
    }

    pub fn any_match(&self, selector: &Labels) -> bool {
        if selector.is_empty() {
            return !self.labels.is_empty();
        }
        !self.matching(selector).is_empty()
    }
}

/// The graph of documents (nodes are indices into `model.documents`), with the reference
/// behind each edge. An edge points from the dependent to what it depends on.
pub struct ResourceGraph {
    pub graph: DiGraph<usize, usize>,
    pub nodes: Vec<NodeIndex>,
    pub references: Vec<Reference>,
    pub by_address: HashMap<String, usize>,
}

impl ResourceGraph {
    pub fn build(model: &Model) -> Self {
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..model.documents.len())
            .map(|i| graph.add_node(i))
            .collect();
        let mut by_address = HashMap::new();
        for (i, document) in model.documents.iter().enumerate() {
            by_address.entry(document.resource.address()).or_insert(i);
        }
        let hosts = LabelIndex::new(
            model
                .documents
                .iter()
                .enumerate()
                .filter(|(_, d)| d.resource.kind == Kind::Host)
                .map(|(i, d)| (i, &d.resource.metadata.labels)),
        );
        let references = references(model);
        for (r, reference) in references.iter().enumerate() {
            match &reference.target {
                Target::Address(address) => {
                    if let Some(&to) = by_address.get(address) {
                        graph.add_edge(nodes[reference.from], nodes[to], r);
                    }
                }
                Target::Hosts(selector) => {
                    for to in hosts.matching(selector) {
                        graph.add_edge(nodes[reference.from], nodes[to], r);
                    }
                }
            }
        }
        ResourceGraph {
            graph,
            nodes,
            references,
            by_address,
        }
    }

    /// Every dependency cycle, each as the list of edges (reference indices) around it.
    pub fn cycles(&self) -> Vec<Vec<(usize, usize, usize)>> {
        let mut cycles = Vec::new();
        for component in petgraph::algo::tarjan_scc(&self.graph) {
            let self_loop =
                component.len() == 1 && self.graph.find_edge(component[0], component[0]).is_some();
            if component.len() < 2 && !self_loop {
                continue;
            }
            // Walk from the smallest document around the component until we come back.
            let members: std::collections::HashSet<NodeIndex> = component.iter().copied().collect();
            let Some(&start) = component.iter().min_by_key(|n| self.graph[**n]) else {
                continue;
            };
            if let Some(path) = self.cycle_through(start, &members) {
                cycles.push(path);
            }
        }
        cycles.sort();
        cycles
    }

    /// A shortest cycle from `start` back to itself inside `members`, as (from, to, reference).
    fn cycle_through(
        &self,
        start: NodeIndex,
        members: &std::collections::HashSet<NodeIndex>,
    ) -> Option<Vec<(usize, usize, usize)>> {
        use petgraph::visit::EdgeRef;
        let mut previous: HashMap<NodeIndex, (NodeIndex, usize)> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            let mut edges: Vec<_> = self
                .graph
                .edges(node)
                .filter(|e| members.contains(&e.target()))
                .collect();
            edges.sort_by_key(|e| (self.graph[e.target()], *e.weight()));
            for edge in edges {
                let next = edge.target();
                if next == start {
                    let mut path = vec![(self.graph[node], self.graph[next], *edge.weight())];
                    let mut at = node;
                    while at != start {
                        let (before, reference) = previous[&at];
                        path.push((self.graph[before], self.graph[at], reference));
                        at = before;
                    }
                    path.reverse();
                    return Some(path);
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = previous.entry(next) {
                    slot.insert((node, *edge.weight()));
                    queue.push_back(next);
                }
            }
        }
        None
    }
}
