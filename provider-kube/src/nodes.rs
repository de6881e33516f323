//! A k3s Cluster's nodes: as its spec carries them (servers first), as the Kubernetes API
//! lists them (Ready, labels), and the labels nimbus sets on them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A node as a Cluster's spec carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub host: String,
    pub server: bool,
    pub labels: BTreeMap<String, String>,
    /// The overlay address, when the Cluster runs on a Network.
    pub address: Option<String>,
}

impl Node {
    pub(crate) fn unit(&self) -> &'static str {
        if self.server { "k3s" } else { "k3s-agent" }
    }
}

/// The nodes of a Cluster spec (`nodes: {host: {role, labels, address}}`): servers first,
/// then agents, each by host name.
pub fn nodes_of(spec: &Value) -> Vec<Node> {
    let mut nodes: Vec<Node> = spec["nodes"]
        .as_object()
        .map(|nodes| {
            nodes
                .iter()
                .map(|(host, node)| Node {
                    host: host.clone(),
                    server: node["role"] == "manager",
                    labels: node["labels"]
                        .as_object()
                        .map(|labels| {
                            labels
                                .iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    address: node["address"].as_str().map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort_by(|a, b| (!a.server, &a.host).cmp(&(!b.server, &b.host)));
    nodes
}

/// The nodes the API lists: readiness and labels, by name.
/// The nodes the API lists, by name: whether each is Ready, and its labels.
pub(crate) type ApiNodes = BTreeMap<String, (bool, BTreeMap<String, String>)>;

pub(crate) async fn api_nodes(client: &kube::Client) -> Result<ApiNodes, kube::Error> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let listed = nodes.list(&Default::default()).await?;
    Ok(listed
        .items
        .into_iter()
        .map(|node| {
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let name = node.metadata.name.clone().unwrap_or_default();
            let labels = node.metadata.labels.clone().unwrap_or_default();
            (name, (ready, labels))
        })
        .collect())
}

/// The Host's labels on its Node, applied with field manager `nimbus`.
pub(crate) async fn label(client: &kube::Client, node: &Node) -> Result<(), kube::Error> {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let patch = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.host, "labels": node.labels},
    });
    nodes
        .patch(
            &node.host,
            &kube::api::PatchParams::apply(crate::MANAGER).force(),
            &kube::api::Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
}

/// A member node as observed: the role and labels its unit was written with, the labels as the
/// API has them for the keys nimbus declares (a label changed by hand is drift; one another
/// tool added is not), and its address.
pub(crate) fn shown(written: &Value, listed: &Result<ApiNodes, String>, host: &str) -> Value {
    let mut shown = json!({
        "role": if written["role"] == "server" { "manager" } else { "worker" },
        "labels": written["labels"].clone(),
    });
    if let Ok(listed) = listed
        && let Some((_, labels)) = listed.get(host)
        && let Some(declared) = shown["labels"].as_object().cloned()
    {
        let now: serde_json::Map<String, Value> = declared
            .keys()
            .filter_map(|k| labels.get(k).map(|v| (k.clone(), json!(v))))
            .collect();
        shown["labels"] = Value::Object(now);
    }
    if let Some(at) = written["address"].as_str() {
        shown["address"] = json!(at);
    }
    shown
}
