//! Who is what in a cluster, resolved from the manifests: the hosts a Cluster's selectors
//! choose, each a manager (or server) or a worker (or agent), with its address and labels.
//! Pure: the plan carries it (a Cluster's desired `nodes`), and providers read it when they
//! are configured, so that both agree.

use std::collections::BTreeMap;

use nimbus_schemas::{ClusterSpec, Spec};
use serde_json::{Value, json};

use crate::load::Model;

/// One host of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub host: String,
    /// How nimbus reaches it, and what it advertises to the other nodes.
    pub address: String,
    /// A manager (docker-swarm) or server (k3s); else a worker or agent.
    pub manager: bool,
    /// The Host's labels: node labels, for placement.
    pub labels: BTreeMap<String, String>,
}

/// The declared Hosts, indexed by label once, so that every Cluster's selectors find their
/// hosts without scanning them all.
pub struct HostIndex<'a> {
    hosts: Vec<(&'a str, &'a str, &'a nimbus_schemas::Labels)>,
    index: crate::graph::LabelIndex<'a>,
}

impl<'a> HostIndex<'a> {
    pub fn new(model: &'a Model) -> Self {
        let hosts: Vec<(&str, &str, &nimbus_schemas::Labels)> = model
            .documents
            .iter()
            .filter_map(|d| match &d.resource.spec {
                Spec::Host(host) => Some((
                    d.resource.name(),
                    host.address.as_str(),
                    &d.resource.metadata.labels,
                )),
                _ => None,
            })
            .collect();
        let index = crate::graph::LabelIndex::new(
            hosts
                .iter()
                .enumerate()
                .map(|(i, (_, _, labels))| (i, *labels)),
        );
        HostIndex { hosts, index }
    }

    /// The nodes of `cluster`, by host name: the hosts its manager (server) selector matches
    /// are managers; those its worker (agent) selector matches and are not managers are
    /// workers.
    pub fn cluster_nodes(&self, cluster: &ClusterSpec) -> Vec<ClusterNode> {
        let managers = cluster.managers.as_ref().or(cluster.servers.as_ref());
        let workers = cluster.workers.as_ref().or(cluster.agents.as_ref());
        let mut chosen: BTreeMap<usize, bool> = BTreeMap::new();
        if let Some(selector) = workers {
            for i in self.index.matching(selector) {
                chosen.insert(i, false);
            }
        }
        if let Some(selector) = managers {
            for i in self.index.matching(selector) {
                chosen.insert(i, true);
            }
        }
        let mut nodes: Vec<ClusterNode> = chosen
            .into_iter()
            .map(|(i, manager)| {
                let (name, address, labels) = self.hosts[i];
                ClusterNode {
                    host: name.to_owned(),
                    address: address.to_owned(),
                    manager,
                    labels: labels.0.clone(),
                }
            })
            .collect();
        nodes.sort_by(|a, b| a.host.cmp(&b.host));
        nodes
    }
}

/// The nodes of `cluster` (see [`HostIndex::cluster_nodes`]); index the hosts once with
/// [`HostIndex`] where there are many clusters.
pub fn cluster_nodes(model: &Model, cluster: &ClusterSpec) -> Vec<ClusterNode> {
    HostIndex::new(model).cluster_nodes(cluster)
}

/// The Cluster named `name`, with its nodes.
pub fn cluster_named<'a>(model: &'a Model, name: &str) -> Option<&'a ClusterSpec> {
    model.documents.iter().find_map(|d| match &d.resource.spec {
        Spec::Cluster(c) if d.resource.name() == name => Some(c),
        _ => None,
    })
}

/// The nodes as a Cluster's desired spec carries them: `{host: {role, labels}}`, and each
/// node's `address` when the cluster runs on a Network (its overlay address, advertised to
/// the other nodes).
pub fn nodes_value(nodes: &[ClusterNode], with_address: bool) -> Value {
    let map: serde_json::Map<String, Value> = nodes
        .iter()
        .map(|n| {
            let mut node = json!({
                "role": if n.manager { "manager" } else { "worker" },
                "labels": n.labels,
            });
            if with_address {
                node["address"] = json!(n.address);
            }
            (n.host.clone(), node)
        })
        .collect();
    Value::Object(map)
}
