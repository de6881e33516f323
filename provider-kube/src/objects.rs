//! What a Tenant and a Workload become on Kubernetes (SPEC §11), as the apply configurations
//! nimbus sends by server-side apply: only the fields nimbus has an opinion on, each object
//! labelled `app.kubernetes.io/managed-by: nimbus`.

use serde_json::{Map, Value, json};

/// The label on everything nimbus makes.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The Workload an object belongs to.
pub const WORKLOAD: &str = "dev.nimbus/workload";
/// On a Workload's Secret: the fingerprints of its values, by env name (never the values).
pub const FINGERPRINTS: &str = "dev.nimbus/fingerprints";

/// A kind as the API addresses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

pub const NAMESPACE: Kind = Kind {
    api_version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    namespaced: false,
};
pub const RESOURCE_QUOTA: Kind = Kind {
    api_version: "v1",
    kind: "ResourceQuota",
    plural: "resourcequotas",
    namespaced: true,
};
pub const LIMIT_RANGE: Kind = Kind {
    api_version: "v1",
    kind: "LimitRange",
    plural: "limitranges",
    namespaced: true,
};
pub const NETWORK_POLICY: Kind = Kind {
    api_version: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    plural: "networkpolicies",
    namespaced: true,
};
pub const ROLE: Kind = Kind {
    api_version: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    plural: "roles",
    namespaced: true,
};
pub const ROLE_BINDING: Kind = Kind {
    api_version: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    plural: "rolebindings",
    namespaced: true,
};
pub const SECRET: Kind = Kind {
    api_version: "v1",
    kind: "Secret",
    plural: "secrets",
    namespaced: true,
};
pub const DEPLOYMENT: Kind = Kind {
    api_version: "apps/v1",
    kind: "Deployment",
    plural: "deployments",
    namespaced: true,
};
pub const SERVICE: Kind = Kind {
    api_version: "v1",
    kind: "Service",
    plural: "services",
    namespaced: true,
};

/// One object to apply: its kind, namespace, name and apply configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
    pub body: Value,
}

fn object(kind: Kind, namespace: Option<&str>, name: &str, labels: Value, rest: Value) -> Object {
    let mut metadata = json!({"name": name, "labels": labels});
    if let Some(namespace) = namespace {
        metadata["namespace"] = json!(namespace);
    }
    let mut body = json!({"apiVersion": kind.api_version, "kind": kind.kind, "metadata": metadata});
    if let (Value::Object(body), Value::Object(rest)) = (&mut body, rest) {
        body.extend(rest);
    }
    Object {
        kind,
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
        body,
    }
}

/// A Tenant's objects, in the order they are applied: its Namespace; a ResourceQuota from
/// `quota`; a LimitRange whose defaults give containers without requests some, so that the
/// quota does not refuse them; a NetworkPolicy that lets in only the namespace's own pods;
/// a Role and RoleBinding that let `members` edit the namespace's workloads.
pub fn tenant(name: &str, spec: &Value) -> Vec<Object> {
    let labels = json!({MANAGED_BY: "nimbus", "dev.nimbus/tenant": name});
    let ns = Some(name);
    let mut objects = vec![object(NAMESPACE, None, name, labels.clone(), json!({}))];
    let quota = &spec["quota"];
    let mut hard = Map::new();
    if let Some(cpu) = quota.get("cpu").filter(|v| !v.is_null()) {
        hard.insert("requests.cpu".into(), text_of(cpu));
        hard.insert("limits.cpu".into(), text_of(cpu));
    }
    if let Some(memory) = quota.get("memory").filter(|v| !v.is_null()) {
        hard.insert("requests.memory".into(), text_of(memory));
        hard.insert("limits.memory".into(), text_of(memory));
    }
    if let Some(pods) = quota.get("pods").filter(|v| !v.is_null()) {
        hard.insert("pods".into(), text_of(pods));
    }
    if !hard.is_empty() {
        objects.push(object(
            RESOURCE_QUOTA,
            ns,
            "nimbus-quota",
            labels.clone(),
            json!({"spec": {"hard": hard}}),
        ));
        objects.push(object(
            LIMIT_RANGE,
            ns,
            "nimbus-defaults",
            labels.clone(),
            json!({"spec": {"limits": [{"type": "Container",
                "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
                "default": {"cpu": "500m", "memory": "256Mi"}}]}}),
        ));
    }
    objects.push(object(
        NETWORK_POLICY,
        ns,
        "nimbus-isolation",
        labels.clone(),
        json!({"spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {}}]}]}}),
    ));
    let members: Vec<Value> = spec["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .map(|m| json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": m}))
        .collect();
    if !members.is_empty() {
        objects.push(object(
            ROLE,
            ns,
            "nimbus-members",
            labels.clone(),
            json!({"rules": [{"apiGroups": ["", "apps"],
                "resources": ["deployments", "services", "pods", "pods/log", "configmaps"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
        ));
        objects.push(object(
            ROLE_BINDING,
            ns,
            "nimbus-members",
            labels,
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nimbus-members"},
                   "subjects": members}),
        ));
    }
    objects
}

/// A quantity as the API writes it: text as it is, a number as its digits.
fn text_of(value: &Value) -> Value {
    match value {
        Value::String(_) => value.clone(),
        other => Value::String(other.to_string()),
    }
}

/// What a Deployment nimbus did not make keeps when it is taken over (imported): its selector,
/// which the API never lets change, and its container's name, the key its containers are
/// merged by (another name would add a second container beside the first).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kept {
    pub selector: Option<Map<String, Value>>,
    pub container: Option<String>,
}

impl Kept {
    /// What the live Deployment `live` keeps, where it differs from what nimbus gives one.
    pub fn of(name: &str, live: &Value) -> Kept {
        let own = |s: &&Map<String, Value>| s.len() == 1 && s.get(WORKLOAD) == Some(&json!(name));
        let selector = live["spec"]["selector"]["matchLabels"]
            .as_object()
            .filter(|s| !own(s))
            .cloned();
        let container = live["spec"]["template"]["spec"]["containers"][0]["name"]
            .as_str()
            .filter(|c| *c != name)
            .map(str::to_owned);
        Kept {
            selector,
            container,
        }
    }
}

/// A Workload's objects: a Secret for its env secrets (values delivered by the executor,
/// fingerprints kept as an annotation), its Deployment, and a Service when it has ports.
/// A Deployment taken over keeps its selector and container name (`kept`).
pub fn workload(
    tenant: &str,
    name: &str,
    spec: &Value,
    kept: &Kept,
) -> Result<Vec<Object>, String> {
    let labels = json!({MANAGED_BY: "nimbus", WORKLOAD: name});
    let ns = Some(tenant);
    let mut objects = Vec::new();
    let mut env = Vec::new();
    let mut secret_data = Map::new();
    let mut fingerprints = Map::new();
    if let Some(vars) = spec["env"].as_object() {
        for (key, value) in vars {
            match value {
                Value::Object(secret) => {
                    let value = secret.get("value").and_then(Value::as_str).ok_or_else(|| {
                        format!("the value of env {key}'s secret was not delivered")
                    })?;
                    secret_data.insert(key.clone(), json!(value));
                    fingerprints.insert(
                        key.clone(),
                        secret.get("fingerprint").cloned().unwrap_or(Value::Null),
                    );
                    env.push(json!({"name": key, "valueFrom": {"secretKeyRef": {"name": format!("{name}-env"), "key": key}}}));
                }
                other => env.push(json!({"name": key, "value": text_of(other)})),
            }
        }
    }
    if !secret_data.is_empty() {
        let mut secret = object(
            SECRET,
            ns,
            &format!("{name}-env"),
            labels.clone(),
            json!({"type": "Opaque", "stringData": secret_data}),
        );
        secret.body["metadata"]["annotations"] =
            json!({FINGERPRINTS: Value::Object(fingerprints).to_string()});
        objects.push(secret);
    }
    let container_name = kept.container.as_deref().unwrap_or(name);
    let mut container = json!({"name": container_name, "image": spec["image"]});
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    let mut requests = Map::new();
    if let Some(cpu) = spec.get("cpu").filter(|v| !v.is_null()) {
        requests.insert("cpu".into(), text_of(cpu));
    }
    if let Some(memory) = spec.get("memory").filter(|v| !v.is_null()) {
        requests.insert("memory".into(), text_of(memory));
    }
    if !requests.is_empty() {
        container["resources"] = json!({"requests": requests.clone(), "limits": requests});
    }
    match &spec["command"] {
        Value::String(text) => {
            container["command"] = json!(text.split_whitespace().collect::<Vec<_>>())
        }
        Value::Array(items) => container["command"] = Value::Array(items.clone()),
        _ => {}
    }
    let ports: Vec<Value> = spec["ports"].as_array().cloned().unwrap_or_default();
    if !ports.is_empty() {
        container["ports"] = Value::Array(
            ports
                .iter()
                .map(|p| json!({"containerPort": p["port"], "protocol": protocol(p)}))
                .collect(),
        );
    }
    let selector = match &kept.selector {
        Some(selector) => Value::Object(selector.clone()),
        None => json!({WORKLOAD: name}),
    };
    // The pods carry nimbus's labels and whatever the selector asks for.
    let mut pod_labels = json!({MANAGED_BY: "nimbus", WORKLOAD: name});
    if let (Value::Object(pod), Value::Object(selected)) = (&mut pod_labels, &selector) {
        pod.extend(selected.clone());
    }
    let mut pod_spec = json!({"containers": [container]});
    if let Some(placement) = spec
        .get("placement")
        .and_then(|p| p.get("selector"))
        .and_then(Value::as_object)
        && !placement.is_empty()
    {
        let terms: Vec<Value> = placement
            .iter()
            .map(|(k, v)| json!({"key": k, "operator": "In", "values": [v]}))
            .collect();
        pod_spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": terms}]}}});
    }
    objects.push(object(
        DEPLOYMENT,
        ns,
        name,
        labels.clone(),
        json!({"spec": {"replicas": spec["replicas"].as_u64().unwrap_or(1),
            "selector": {"matchLabels": selector.clone()},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}}}),
    ));
    if !ports.is_empty() {
        let service_ports: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut port = json!({"name": format!("{}-{}", protocol(p).to_lowercase(), p["port"]),
                    "port": p["port"], "targetPort": p["port"], "protocol": protocol(p)});
                if let Some(node_port) = p.get("hostPort").filter(|v| !v.is_null()) {
                    port["nodePort"] = node_port.clone();
                }
                port
            })
            .collect();
        let node_ports = ports
            .iter()
            .any(|p| p.get("hostPort").is_some_and(|v| !v.is_null()));
        objects.push(object(
            SERVICE,
            ns,
            name,
            labels,
            json!({"spec": {"type": if node_ports { "NodePort" } else { "ClusterIP" },
                            "selector": selector, "ports": service_ports}}),
        ));
    }
    Ok(objects)
}

fn protocol(port: &Value) -> String {
    port["protocol"].as_str().unwrap_or("tcp").to_uppercase()
}

/// The Workload as its live Deployment (and Secret) show it, in the manifest's terms: what is
/// compared against the desired spec. Fields nimbus does not set are not read.
pub fn observed_workload(desired: &Value, deployment: &Value, secret: Option<&Value>) -> Value {
    let mut seen = desired.clone();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    seen["image"] = container["image"].clone();
    seen["replicas"] = deployment["spec"]["replicas"].clone();
    let requests = &container["resources"]["requests"];
    for field in ["cpu", "memory"] {
        match requests.get(field) {
            Some(value) => seen[field] = value.clone(),
            None => {
                if let Value::Object(map) = &mut seen {
                    map.remove(field);
                }
            }
        }
    }
    let fingerprints: Map<String, Value> = secret
        .and_then(|s| s["metadata"]["annotations"][FINGERPRINTS].as_str())
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let mut env = Map::new();
    for var in container["env"].as_array().cloned().unwrap_or_default() {
        let Some(key) = var["name"].as_str() else {
            continue;
        };
        if let Some(reference) = var.get("valueFrom") {
            let desired_secret = desired["env"][key]["secret"].clone();
            env.insert(
                key.to_owned(),
                json!({"secret": desired_secret, "fingerprint": fingerprints.get(key).cloned().unwrap_or(Value::Null),
                       "from": reference["secretKeyRef"]["name"]}),
            );
            if let Some(Value::Object(entry)) = env.get_mut(key) {
                entry.remove("from");
            }
        } else {
            env.insert(key.to_owned(), var["value"].clone());
        }
    }
    if let Value::Object(map) = &mut seen {
        if env.is_empty() {
            map.remove("env");
        } else {
            map.insert("env".into(), Value::Object(env));
        }
    }
    match &container["command"] {
        Value::Array(items) => {
            // As written: text when the manifest gave text.
            seen["command"] = match &desired["command"] {
                Value::String(text)
                    if text
                        .split_whitespace()
                        .map(|s| json!(s))
                        .collect::<Vec<_>>()
                        == *items =>
                {
                    desired["command"].clone()
                }
                _ => Value::Array(items.clone()),
            };
        }
        _ => {
            if let Value::Object(map) = &mut seen {
                map.remove("command");
            }
        }
    }
    let live_ports: Vec<(Value, String)> = container["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["containerPort"].clone(),
                p["protocol"].as_str().unwrap_or("TCP").to_uppercase(),
            )
        })
        .collect();
    let desired_ports: Vec<(Value, String)> = desired["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| (p["port"].clone(), protocol(p)))
        .collect();
    if live_ports != desired_ports {
        seen["ports"] = Value::Array(
            live_ports
                .iter()
                .map(|(port, proto)| json!({"port": port, "protocol": proto.to_lowercase()}))
                .collect(),
        );
    }
    seen
}
