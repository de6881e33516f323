//! `nimbus discover` on a Kubernetes API: what nimbus did not label as its own, and (asked
//! for contents) the Tenant and Workload manifests that would take it over, with the values of
//! the Secrets its Deployments read and the env values that look secret set apart, to be
//! encrypted, never written in clear.

use std::collections::BTreeMap;

use nimbus_provider_core::{DiscoverRequest, Discovered, ProviderError, label_of, secret_name};
use serde_json::{Map, Value, json};

use crate::KubeProvider;
use crate::objects::{self, MANAGED_BY};

/// The namespaces the API and k3s make for themselves.
const SYSTEM: [&str; 4] = ["kube-system", "kube-public", "kube-node-lease", "default"];

/// What one API has that nimbus did not label as its own: namespaces (but the system's),
/// Deployments and Services (but the API's own `kubernetes`), one list call each (and, for
/// contents, one for Secrets).
pub(crate) async fn on(
    provider: &KubeProvider,
    client: &kube::Client,
    cluster: Option<&str>,
    request: &DiscoverRequest,
) -> Result<Vec<Discovered>, ProviderError> {
    let unmanaged = format!("{MANAGED_BY}!=nimbus");
    let secrets: BTreeMap<(String, String), Value> = if request.contents {
        provider
            .listed(client, objects::SECRET, "")
            .await?
            .into_iter()
            .map(|s| ((text(&s, "namespace"), text(&s, "name")), s))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut found = Vec::new();
    for (kind, what) in [
        (objects::NAMESPACE, "Tenant"),
        (objects::DEPLOYMENT, "Workload"),
        (objects::SERVICE, "Workload"),
    ] {
        for object in &provider.listed(client, kind, &unmanaged).await? {
            let name = text(object, "name");
            let namespace = text(object, "namespace");
            let (identity, address) = if kind.namespaced {
                if SYSTEM.contains(&namespace.as_str()) {
                    continue;
                }
                (
                    format!("{namespace}/{name}"),
                    format!("Workload/{namespace}/{name}"),
                )
            } else {
                if SYSTEM.contains(&name.as_str()) {
                    continue;
                }
                (name.clone(), format!("Tenant/{name}"))
            };
            let mut discovered = Discovered {
                kind: what.to_owned(),
                identity,
                detail: match cluster {
                    Some(cluster) => format!("Kubernetes {} on Cluster/{cluster}", kind.kind),
                    None => format!("Kubernetes {} on the API", kind.kind),
                },
                name: label_of(&name),
                address: Some(address),
                spec: None,
                secrets: BTreeMap::new(),
            };
            if request.contents {
                if kind == objects::NAMESPACE {
                    discovered.spec = Some(match cluster {
                        Some(cluster) => json!({"cluster": cluster}),
                        None => json!({}),
                    });
                } else if kind == objects::DEPLOYMENT {
                    let (spec, values) = workload_of(object, &namespace, &secrets);
                    discovered.spec = Some(spec);
                    discovered.secrets = values;
                }
            }
            found.push(discovered);
        }
    }
    Ok(found)
}

fn text(object: &Value, field: &str) -> String {
    object["metadata"][field]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A Deployment as a Workload manifest's spec (its first container: image, requests, command,
/// ports, env), and the env values that must be stored as secrets, by `env.KEY`: those read
/// from a Secret and those whose name says they are one.
fn workload_of(
    deployment: &Value,
    namespace: &str,
    secrets: &BTreeMap<(String, String), Value>,
) -> (Value, BTreeMap<String, String>) {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut spec = Map::new();
    spec.insert("tenant".into(), json!(namespace));
    spec.insert("image".into(), container["image"].clone());
    spec.insert(
        "replicas".into(),
        json!(deployment["spec"]["replicas"].as_u64().unwrap_or(1)),
    );
    for field in ["cpu", "memory"] {
        if let Some(value) = container["resources"]["requests"].get(field) {
            spec.insert(field.into(), value.clone());
        }
    }
    if let Some(command) = container["command"].as_array() {
        spec.insert("command".into(), Value::Array(command.clone()));
    }
    let ports: Vec<Value> = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            json!({"port": p["containerPort"],
                   "protocol": p["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase()})
        })
        .collect();
    if !ports.is_empty() {
        spec.insert("ports".into(), Value::Array(ports));
    }
    let mut env = Map::new();
    let mut values = BTreeMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let Some(key) = var["name"].as_str() else {
            continue;
        };
        let reference = &var["valueFrom"]["secretKeyRef"];
        if let (Some(secret), Some(item)) = (reference["name"].as_str(), reference["key"].as_str())
        {
            let value = secrets
                .get(&(namespace.to_owned(), secret.to_owned()))
                .and_then(|s| s["data"][item].as_str())
                .and_then(decode);
            if let Some(value) = value {
                values.insert(format!("env.{key}"), value);
            }
            // Without its value (no such Secret), the variable is left out of the manifest.
            continue;
        }
        match var["value"].as_str() {
            Some(value) if secret_name(key) => {
                values.insert(format!("env.{key}"), value.to_owned());
            }
            Some(value) => {
                env.insert(key.to_owned(), json!(value));
            }
            None => {}
        }
    }
    if !env.is_empty() {
        spec.insert("env".into(), Value::Object(env));
    }
    (Value::Object(spec), values)
}

fn decode(text: &str) -> Option<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_becomes_a_workload_with_its_secrets_set_apart() {
        let deployment = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{
        "name": "nginx", "image": "nginx:1.27", "command": ["nginx", "-g", "daemon off;"],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "env": [
            {"name": "MODE", "value": "prod"},
            {"name": "API_TOKEN", "value": "t0ken"},
            {"name": "DB_PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "x"}}}
        ]}]}}}});
        let secrets = BTreeMap::from([(
            ("shop".to_owned(), "db".to_owned()),
            json!({"data": {"pw": "aHVudGVyMg=="}}),
        )]);
        let (spec, values) = workload_of(&deployment, "shop", &secrets);
        assert_eq!(
            spec,
            json!({"tenant": "shop", "image": "nginx:1.27", "replicas": 2, "cpu": "100m",
                   "memory": "64Mi", "command": ["nginx", "-g", "daemon off;"],
                   "ports": [{"port": 80, "protocol": "tcp"}], "env": {"MODE": "prod"}})
        );
        assert_eq!(
            values,
            BTreeMap::from([
                ("env.API_TOKEN".to_owned(), "t0ken".to_owned()),
                ("env.DB_PASS".to_owned(), "hunter2".to_owned()),
            ])
        );
    }
}
