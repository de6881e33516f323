//! The HTTP side: the Kubernetes API's paths for the kinds nimbus manages, over plain HTTP on
//! loopback (tests reach it directly, or through an SSH `direct-tcpip` channel as they would a
//! k3s server's 6443).
//!
//! Served: `/version`, discovery (`/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION`); for each
//! kind: list (with `labelSelector`), get, create (POST), replace (PUT, with `resourceVersion`
//! conflicts), patch (server-side apply `application/apply-patch+yaml` with `fieldManager` and
//! `force`, JSON merge patch, strategic merge patch as a merge patch), delete; a namespace's
//! delete takes everything in it; a Deployment's `scale` subresource. Objects get `uid`,
//! `resourceVersion`, `generation`, `creationTimestamp` and `managedFields`. A simulated
//! deployment controller brings a Deployment's status to its replicas, or reports a failed
//! rollout (images that contain [`Options::failing_image`]) or pods the namespace's
//! ResourceQuota refuses. Every request is counted by verb, kind and namespace.
//!
//! Not served: watch, authentication and authorisation (every request is allowed), admission
//! beyond the quota of a Deployment's pods, OpenAPI schemas (clients must not validate:
//! `kubectl --validate=false`), pods, ReplicaSets and their garbage collection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::catalogue::*;
use crate::checks::*;
pub use crate::config::{Options, tls_config};
use crate::ssa::{self, Managed};

/// Objects by (plural, namespace, name), and the bookkeeping around them.
#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<(String, String, String), Value>,
    revision: u64,
    uids: u64,
    /// Requests by `VERB KIND NAMESPACE` (`list deployments acme`).
    pub requests: BTreeMap<String, u64>,
    options: Options,
}

impl Store {
    pub fn new(options: Options) -> Store {
        let mut store = Store {
            options,
            ..Store::default()
        };
        store.load();
        store
    }

    /// The objects of `state_file`, when there is one.
    fn load(&mut self) {
        let Some(path) = &self.options.state_file else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        let Ok(saved) = serde_json::from_str::<Value>(&text) else {
            return;
        };
        self.revision = saved["revision"].as_u64().unwrap_or(0);
        self.uids = saved["uids"].as_u64().unwrap_or(0);
        for entry in saved["objects"].as_array().into_iter().flatten() {
            let part = |i: usize| entry[i].as_str().unwrap_or_default().to_owned();
            self.objects
                .insert((part(0), part(1), part(2)), entry[3].clone());
        }
    }

    /// Writes the objects to `state_file` (a temporary file, then renamed).
    fn save(&self) {
        let Some(path) = &self.options.state_file else {
            return;
        };
        let objects: Vec<Value> = self
            .objects
            .iter()
            .map(|((plural, namespace, name), object)| json!([plural, namespace, name, object]))
            .collect();
        let text = json!({"revision": self.revision, "uids": self.uids, "objects": objects});
        let partial = path.with_extension("partial");
        if std::fs::write(&partial, text.to_string()).is_ok() {
            let _ = std::fs::rename(&partial, path);
        }
    }

    /// Creates an object as a client's `POST` would (the binary registers its own Node so).
    pub fn create_object(
        &mut self,
        plural: &str,
        namespace: &str,
        body: Value,
        manager: &str,
    ) -> Result<Value, String> {
        let resource = RESOURCES
            .iter()
            .find(|r| r.plural == plural)
            .ok_or_else(|| format!("the server has no resource {plural}"))?;
        let created = self
            .create(resource, namespace, body, manager)
            .map_err(|failure| failure.message)?;
        self.save();
        Ok(created)
    }

    fn count(&mut self, verb: &str, resource: &Resource, namespace: &str) {
        *self
            .requests
            .entry(
                format!("{verb} {} {namespace}", resource.plural)
                    .trim_end()
                    .to_owned(),
            )
            .or_default() += 1;
    }

    fn key(resource: &Resource, namespace: &str, name: &str) -> (String, String, String) {
        (
            resource.plural.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        )
    }

    /// Stores `object` (its content as given) with the server's metadata, after `previous`.
    fn store(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        object: Value,
        previous: Option<&Value>,
        managed: &[Managed],
    ) -> Value {
        self.revision += 1;
        let mut object = object;
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        let meta = object["metadata"]
            .as_object_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut meta = meta;
        meta.insert("name".into(), json!(name));
        if resource.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        }
        let generation = match previous {
            Some(old) => {
                let old_gen = old["metadata"]["generation"].as_u64().unwrap_or(1);
                if old.get("spec") != object.get("spec") {
                    old_gen + 1
                } else {
                    old_gen
                }
            }
            None => 1,
        };
        let uid = match previous {
            Some(old) => old["metadata"]["uid"].clone(),
            None => {
                self.uids += 1;
                json!(format!("00000000-0000-4000-8000-{:012x}", self.uids))
            }
        };
        let created = previous
            .map(|old| old["metadata"]["creationTimestamp"].clone())
            .unwrap_or(json!(NOW));
        meta.insert("uid".into(), uid);
        meta.insert("resourceVersion".into(), json!(self.revision.to_string()));
        meta.insert("generation".into(), json!(generation));
        meta.insert("creationTimestamp".into(), created);
        meta.insert(
            "managedFields".into(),
            managed_json(managed, &resource.api_version()),
        );
        object["metadata"] = Value::Object(meta);
        if let Some(status) = previous.and_then(|p| p.get("status")) {
            object["status"] = status.clone();
        }
        if resource.kind == "Namespace" {
            object["status"] = json!({"phase": "Active"});
        }
        if resource.kind == "Secret"
            && let Some(Value::Object(text)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            use base64::Engine;
            for (key, value) in text {
                let bytes = value.as_str().unwrap_or_default().as_bytes().to_vec();
                object["data"][key] =
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
        }
        if resource.kind == "Deployment" {
            object["status"] = self.rollout(namespace, &object);
        }
        // The simulated kubelet: a node that registers is Ready at the address k3s annotates.
        if resource.kind == "Node" && previous.is_none() {
            let mut status = json!({"conditions": [{"type": "Ready", "status": "True",
                "reason": "KubeletReady", "message": "kubelet is posting ready status"}]});
            if let Some(ip) = object["metadata"]["annotations"]["k3s.io/internal-ip"].as_str() {
                status["addresses"] = json!([{"type": "InternalIP", "address": ip}]);
            }
            object["status"] = status;
        }
        self.objects
            .insert(Self::key(resource, namespace, name), object.clone());
        object
    }

    /// The simulated deployment controller: the status a Deployment reaches.
    fn rollout(&self, namespace: &str, deployment: &Value) -> Value {
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
        let generation = deployment["metadata"]["generation"].clone();
        let containers = deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let failing = self.options.failing_image.as_deref().is_some_and(|bad| {
            containers
                .iter()
                .any(|c| c["image"].as_str().is_some_and(|i| i.contains(bad)))
        });
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        if failing {
            return json!({
                "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": 0, "availableReplicas": 0, "unavailableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                     "message": "Deployment does not have minimum availability."},
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": format!("ReplicaSet \"{name}-7d4b9c\" has timed out progressing.")}
                ]
            });
        }
        // The namespace's quota admits pods while their requests fit.
        let (fit, refusal) = self.admitted(namespace, name, replicas, &containers);
        let mut conditions = vec![
            json!({"type": "Available", "status": if fit == replicas { "True" } else { "False" },
                   "reason": if fit == replicas { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }}),
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}),
        ];
        if let Some(message) = refusal {
            conditions.push(json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message}));
        }
        json!({
            "observedGeneration": generation, "replicas": fit, "updatedReplicas": fit,
            "readyReplicas": fit, "availableReplicas": fit, "conditions": conditions
        })
    }

    /// How many of `replicas` pods the namespace's ResourceQuotas admit (pods, requests.cpu,
    /// requests.memory, limits.*), and the refusal of the first one refused.
    /// Containers as the LimitRanger admission leaves them: a missing request takes the
    /// namespace's LimitRange `defaultRequest` (else its `default`), a missing limit its
    /// `default`.
    fn with_limit_defaults(&self, namespace: &str, containers: &[Value]) -> Vec<Value> {
        let ranges: Vec<&Value> = self
            .objects
            .iter()
            .filter(|((plural, ns, _), _)| plural == "limitranges" && ns == namespace)
            .flat_map(|(_, range)| range["spec"]["limits"].as_array().into_iter().flatten())
            .filter(|limit| limit["type"] == "Container")
            .collect();
        containers
            .iter()
            .map(|container| {
                let mut container = container.clone();
                for range in &ranges {
                    for resource in ["cpu", "memory"] {
                        let default = range["default"].get(resource);
                        let request = range["defaultRequest"].get(resource).or(default);
                        for (field, value) in [("requests", request), ("limits", default)] {
                            if let Some(value) = value
                                && container["resources"][field].get(resource).is_none()
                            {
                                container["resources"][field][resource] = value.clone();
                            }
                        }
                    }
                }
                container
            })
            .collect()
    }

    fn admitted(
        &self,
        namespace: &str,
        name: &str,
        replicas: u64,
        containers: &[Value],
    ) -> (u64, Option<String>) {
        fn per_pod(containers: &[Value], field: &str, resource: &str) -> f64 {
            containers
                .iter()
                .map(|c| quantity(c["resources"][field][resource].as_str().unwrap_or("0")))
                .sum()
        }
        let each_of = |containers: &[Value], key: &str| -> Option<f64> {
            Some(match key {
                "pods" => 1.0,
                "cpu" | "requests.cpu" => per_pod(containers, "requests", "cpu"),
                "memory" | "requests.memory" => per_pod(containers, "requests", "memory"),
                "limits.cpu" => per_pod(containers, "limits", "cpu"),
                "limits.memory" => per_pod(containers, "limits", "memory"),
                _ => return None,
            })
        };
        // The LimitRanger admission first: containers without requests or limits get the
        // namespace's LimitRange defaults.
        let containers = &self.with_limit_defaults(namespace, containers);
        // What the namespace's other Deployments' pods use already.
        let others: Vec<(u64, Vec<Value>)> = self
            .objects
            .iter()
            .filter(|((plural, ns, other), _)| {
                plural == "deployments" && ns == namespace && other != name
            })
            .map(|(_, d)| {
                (
                    d["status"]["replicas"].as_u64().unwrap_or(0),
                    self.with_limit_defaults(
                        namespace,
                        d["spec"]["template"]["spec"]["containers"]
                            .as_array()
                            .map_or(&[][..], Vec::as_slice),
                    ),
                )
            })
            .collect();
        for ((plural, ns, quota_name), quota) in &self.objects {
            if plural != "resourcequotas" || ns != namespace {
                continue;
            }
            let Some(hard) = quota["spec"]["hard"].as_object() else {
                continue;
            };
            let mut fit = replicas;
            let mut limited = None;
            for (key, limit) in hard {
                let limit = quantity(limit.as_str().unwrap_or(&limit.to_string()));
                let Some(each) = each_of(containers, key) else {
                    continue;
                };
                if each <= 0.0 {
                    // A quota on a compute resource refuses pods that do not say how much of
                    // it they use (what the LimitRange's defaults are for).
                    let resource = key.rsplit('.').next().unwrap_or(key);
                    return (
                        0,
                        Some(format!(
                            "pods is forbidden: failed quota: {quota_name}: must specify {resource}"
                        )),
                    );
                }
                let used: f64 = others
                    .iter()
                    .filter_map(|(pods, c)| each_of(c, key).map(|e| e * *pods as f64))
                    .sum();
                let allowed = ((limit - used).max(0.0) / each + 1e-9).floor() as u64;
                if allowed < fit {
                    fit = allowed;
                    limited = Some(format!(
                        "pods is forbidden: exceeded quota: {quota_name}, requested: {key}={}, used: {key}={}, limited: {key}={}",
                        fmt_quantity(each),
                        fmt_quantity(used + each * allowed as f64),
                        fmt_quantity(limit)
                    ));
                }
            }
            if let Some(message) = limited {
                return (fit, Some(message));
            }
        }
        (replicas, None)
    }

    fn list(&mut self, resource: &Resource, namespace: &str, selector: Option<&str>) -> Value {
        self.count("list", resource, namespace);
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((plural, ns, _), _)| {
                plural == resource.plural && (namespace.is_empty() || ns == namespace)
            })
            .map(|(_, object)| object)
            .filter(|object| {
                selector.is_none_or(|s| {
                    let empty = Map::new();
                    selects(
                        s,
                        object["metadata"]["labels"].as_object().unwrap_or(&empty),
                    )
                })
            })
            .cloned()
            .collect();
        json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": self.revision.to_string()},
            "items": items,
        })
    }

    /// A namespaced object's namespace, which must exist before it.
    fn namespace_must_exist(&self, resource: &Resource, namespace: &str) -> Result<(), Failure> {
        let exists = self.objects.contains_key(&(
            "namespaces".to_owned(),
            String::new(),
            namespace.to_owned(),
        ));
        if resource.namespaced && !exists {
            return Err(failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("namespaces \"{namespace}\" not found"),
            ));
        }
        Ok(())
    }

    fn create(
        &mut self,
        resource: &Resource,
        namespace: &str,
        body: Value,
        manager: &str,
    ) -> Result<Value, Failure> {
        self.count("create", resource, namespace);
        let name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err(failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name: Required value: name is required",
            ));
        }
        self.namespace_must_exist(resource, namespace)?;
        if self
            .objects
            .contains_key(&Self::key(resource, namespace, &name))
        {
            return Err(failure(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.plural),
            ));
        }
        let managed = ssa::update(None, &content(&body), &[], manager);
        validate(resource, &name, &body, None)?;
        Ok(self.store(resource, namespace, &name, content(&body), None, &managed))
    }

    fn replace(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        body: Value,
        manager: &str,
    ) -> Result<Value, Failure> {
        self.count("update", resource, namespace);
        let Some(old) = self
            .objects
            .get(&Self::key(resource, namespace, name))
            .cloned()
        else {
            return Err(not_found(resource, name));
        };
        if let Some(version) = body["metadata"]["resourceVersion"].as_str()
            && version
                != old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
        {
            return Err(failure(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    resource.plural
                ),
            ));
        }
        let managed = ssa::update(
            Some(&content(&old)),
            &content(&body),
            &managed_of(&old),
            manager,
        );
        validate(resource, name, &content(&body), Some(&old))?;
        Ok(self.store(
            resource,
            namespace,
            name,
            content(&body),
            Some(&old),
            &managed,
        ))
    }

    fn apply(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        body: Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, Failure> {
        self.count("patch", resource, namespace);
        if manager.is_empty() {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "PATCH, application/apply-patch+yaml: fieldManager is required",
            ));
        }
        self.namespace_must_exist(resource, namespace)?;
        let old = self
            .objects
            .get(&Self::key(resource, namespace, name))
            .cloned();
        let live = old.as_ref().map(content);
        let managed = old.as_ref().map(managed_of).unwrap_or_default();
        match ssa::apply(live.as_ref(), &managed, &content(&body), manager, force) {
            Ok((object, managed)) => {
                validate(resource, name, &object, old.as_ref())?;
                Ok(self.store(resource, namespace, name, object, old.as_ref(), &managed))
            }
            Err(conflicts) => {
                let listed: Vec<String> = conflicts
                    .iter()
                    .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
                    .collect();
                Err(Failure {
                    code: StatusCode::CONFLICT,
                    reason: "Conflict",
                    message: format!(
                        "Apply failed with {} conflict{}: {}",
                        conflicts.len(),
                        if conflicts.len() == 1 { "" } else { "s" },
                        listed.join(", ")
                    ),
                    causes: conflicts
                        .iter()
                        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
                        .collect(),
                })
            }
        }
    }

    fn patch(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
        patch: &Value,
        manager: &str,
    ) -> Result<Value, Failure> {
        let Some(old) = self
            .objects
            .get(&Self::key(resource, namespace, name))
            .cloned()
        else {
            self.count("patch", resource, namespace);
            return Err(not_found(resource, name));
        };
        let new = merge_patch(&old, patch);
        self.count("patch", resource, namespace);
        let managed = ssa::update(
            Some(&content(&old)),
            &content(&new),
            &managed_of(&old),
            manager,
        );
        validate(resource, name, &content(&new), Some(&old))?;
        Ok(self.store(
            resource,
            namespace,
            name,
            content(&new),
            Some(&old),
            &managed,
        ))
    }

    fn delete(
        &mut self,
        resource: &Resource,
        namespace: &str,
        name: &str,
    ) -> Result<Value, Failure> {
        self.count("delete", resource, namespace);
        let Some(old) = self.objects.remove(&Self::key(resource, namespace, name)) else {
            return Err(not_found(resource, name));
        };
        if resource.kind == "Namespace" {
            // Everything in it goes with it.
            self.objects.retain(|(_, ns, _), _| ns != name);
        }
        self.revision += 1;
        Ok(old)
    }

    fn get(&mut self, resource: &Resource, namespace: &str, name: &str) -> Result<Value, Failure> {
        self.count("get", resource, namespace);
        self.objects
            .get(&Self::key(resource, namespace, name))
            .cloned()
            .ok_or_else(|| not_found(resource, name))
    }
}

/// Handles one request against the store.
pub async fn handle(
    store: Arc<Mutex<Store>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut store = store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(token) = &store.options.token {
        let given = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(format!("Bearer {token}").as_str()) {
            let refused = failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
            return Ok(respond(refused.code, &status_of(&refused)));
        }
    }
    let answered = answer(&mut store, &parts, &bytes);
    if parts.method != Method::GET && answered.is_ok() {
        store.save();
    }
    Ok(match answered {
        Ok((code, value)) => respond(code, &value),
        Err(failure) => respond(failure.code, &status_of(&failure)),
    })
}

fn answer(
    store: &mut Store,
    parts: &hyper::http::request::Parts,
    bytes: &[u8],
) -> Result<(StatusCode, Value), Failure> {
    let path = parts.uri.path();
    if parts.method == Method::GET
        && let Some(found) = discovery(path)
    {
        return Ok((StatusCode::OK, found));
    }
    // Not Kubernetes: the requests served so far, for benchmarks in other processes.
    if parts.method == Method::GET && path == "/nimbus-test/requests" {
        return Ok((StatusCode::OK, json!(store.requests)));
    }
    let target = parse_path(path).ok_or_else(|| {
        failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    })?;
    let params = query(&parts.uri);
    let manager = params.get("fieldManager").cloned().unwrap_or_else(|| {
        parts
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .unwrap_or("unknown")
            .to_owned()
    });
    let resource = target.resource;
    let namespace = target.namespace.as_str();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ok = |value| Ok((StatusCode::OK, value));
    match (
        &parts.method,
        target.name.as_deref(),
        target.subresource.as_deref(),
    ) {
        (&Method::GET, None, _) => ok(store.list(
            resource,
            namespace,
            params.get("labelSelector").map(String::as_str),
        )),
        (&Method::POST, None, _) => {
            let body = parse_body(bytes)?;
            store
                .create(resource, namespace, body, &manager)
                .map(|v| (StatusCode::CREATED, v))
        }
        (&Method::GET, Some(name), None) => ok(store.get(resource, namespace, name)?),
        (&Method::PUT, Some(name), None) => {
            ok(store.replace(resource, namespace, name, parse_body(bytes)?, &manager)?)
        }
        (&Method::PATCH, Some(name), None) => {
            let body = parse_body(bytes)?;
            if content_type.starts_with("application/apply-patch") {
                let force = params.get("force").is_some_and(|f| f == "true");
                let created = !store
                    .objects
                    .contains_key(&Store::key(resource, namespace, name));
                store
                    .apply(resource, namespace, name, body, &manager, force)
                    .map(|v| {
                        (
                            if created {
                                StatusCode::CREATED
                            } else {
                                StatusCode::OK
                            },
                            v,
                        )
                    })
            } else {
                ok(store.patch(resource, namespace, name, &body, &manager)?)
            }
        }
        (&Method::DELETE, Some(name), None) => ok(store.delete(resource, namespace, name)?),
        (method, Some(name), Some("scale")) if resource.kind == "Deployment" => {
            let deployment = store.get(resource, namespace, name)?;
            let scale = |d: &Value| {
                json!({
                    "kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": namespace, "resourceVersion": d["metadata"]["resourceVersion"]},
                    "spec": {"replicas": d["spec"]["replicas"]},
                    "status": {"replicas": d["status"]["replicas"], "selector": ""},
                })
            };
            match *method {
                Method::GET => ok(scale(&deployment)),
                Method::PATCH | Method::PUT => {
                    let body = parse_body(bytes)?;
                    let replicas = body["spec"]["replicas"].clone();
                    let updated = store.patch(
                        resource,
                        namespace,
                        name,
                        &json!({"spec": {"replicas": replicas}}),
                        &manager,
                    )?;
                    ok(scale(&updated))
                }
                _ => Err(failure(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "not allowed",
                )),
            }
        }
        (&Method::GET | &Method::PUT | &Method::PATCH, Some(name), Some("status")) => {
            ok(store.get(resource, namespace, name)?)
        }
        _ => Err(failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{} {path} is not served", parts.method),
        )),
    }
}

/// A running server: its address and store (for tests to look in), stopped when dropped.
pub struct Running {
    pub address: SocketAddr,
    pub store: Arc<Mutex<Store>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig that points a client (kubectl, the Python client) at this server, with no
    /// credentials.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: \"{}\"}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: t, user: u}}}}]\ncurrent-context: c\n",
            self.url()
        )
    }

    /// The requests served so far, by `VERB KIND NAMESPACE`.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.store
            .lock()
            .map(|store| store.requests.clone())
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves on `address` (port 0: any free one) in the current tokio runtime.
pub async fn serve(address: SocketAddr, options: Options) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let tls = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let store = Arc::new(Mutex::new(Store::new(options)));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let shared = Arc::clone(&store);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = &mut stopped => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let store = Arc::clone(&shared);
            let tls = tls.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| handle(Arc::clone(&store), request));
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match tls {
                    Some(tls) => match tls.accept(stream).await {
                        Ok(stream) => {
                            http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await
                        }
                        Err(_) => return,
                    },
                    None => {
                        http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await
                    }
                };
            });
        }
    });
    Ok(Running {
        address,
        store,
        stop: Some(stop),
    })
}

/// Serves on a free loopback port from a runtime of its own, in a thread of its own, for as
/// long as the process lives: for callers whose own runtime blocks (tests whose hands run
/// kubectl) or that have none.
pub fn spawn(options: Options) -> std::io::Result<Running> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = sender.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let started = serve(SocketAddr::from(([127, 0, 0, 1], 0)), options).await;
            let failed = started.is_err();
            let _ = sender.send(started);
            if !failed {
                std::future::pending::<()>().await;
            }
        });
    });
    receiver
        .recv()
        .map_err(|e| std::io::Error::other(format!("the test server's thread ended: {e}")))?
}
