//! The resources the stand-in serves, as the API's discovery documents list them.

use serde_json::{Value, json};

/// A kind the server serves.
#[derive(Clone, Copy, Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short: &'static [&'static str],
}

impl Resource {
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub const RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        kind: "Node",
        namespaced: false,
        short: &["no"],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
        short: &["svc"],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        short: &[],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "resourcequotas",
        kind: "ResourceQuota",
        namespaced: true,
        short: &["quota"],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "limitranges",
        kind: "LimitRange",
        namespaced: true,
        short: &["limits"],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        short: &["ev"],
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        short: &["deploy"],
    },
    Resource {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        namespaced: true,
        short: &["netpol"],
    },
    Resource {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        kind: "Role",
        namespaced: true,
        short: &[],
    },
    Resource {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        kind: "RoleBinding",
        namespaced: true,
        short: &[],
    },
];

pub(crate) fn discovery(path: &str) -> Option<Value> {
    let groups = || {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
            if !seen.contains(&(r.group, r.version)) {
                seen.push((r.group, r.version));
            }
        }
        seen
    };
    let resource_list = |group: &str, version: &str| {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .flat_map(|r| {
                let mut entries = vec![json!({
                    "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                    "kind": r.kind, "shortNames": r.short,
                    "verbs": ["create", "delete", "get", "list", "patch", "update"],
                })];
                if r.kind == "Deployment" {
                    entries.push(json!({"name": "deployments/scale", "singularName": "", "namespaced": true,
                        "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
                }
                entries
            })
            .collect();
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") },
               "resources": resources})
    };
    match path.trim_end_matches('/') {
        "/version" => Some(
            json!({"major": "1", "minor": "30", "gitVersion": "v1.30.0+nimbus-testserver",
                                  "platform": "linux/amd64"}),
        ),
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})),
        "/apis" => Some(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups().iter().map(|(g, v)| json!({
            "name": g, "versions": [{"groupVersion": format!("{g}/{v}"), "version": v}],
            "preferredVersion": {"groupVersion": format!("{g}/{v}"), "version": v}})).collect::<Vec<_>>()}),
        ),
        "/api/v1" => Some(resource_list("", "v1")),
        other => {
            let rest = other.strip_prefix("/apis/")?;
            let (group, version) = rest.split_once('/')?;
            groups()
                .contains(&(group, version))
                .then(|| resource_list(group, version))
        }
    }
}
