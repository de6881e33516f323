//! nimbus's Kubernetes provider (SPEC §11): the `k3s` Cluster installed over SSH ([`k3s`]),
//! and its Tenants and Workloads on its API, by server-side apply with field manager `nimbus`
//! through kube-rs, the API reached through a server's SSH connection ([`tunnel`]). What each
//! Tenant and Workload becomes is in [`objects`].
//!
//! Observing lists each kind once for all namespaces (by the `managed-by` label): a no-change
//! plan makes one list call per kind, and no per-object GET. Drift is read on the fields nimbus
//! sets only: a label another tool adds is not drift; a replica count changed by `kubectl
//! scale` is. An apply of an object nimbus applied before takes back the fields it declares
//! (forced, as drift correction); creating over an object another manager owns is a conflict,
//! reported with the fields and their managers, and forced only when asked
//! ([`KubeProvider::force_conflicts`]).

mod discover;
pub mod k3s;
mod nodes;
pub mod objects;
mod observe;
pub mod tunnel;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use nimbus_planner::plan::{Action, Change, KindSchema, Observed, ProviderSchema};
use nimbus_provider_core::{Applied, BoxFuture, Cancel, ObserveRequest, Provider, ProviderError};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

use crate::objects::{MANAGED_BY, Object};

/// The provider's id.
pub const PROVIDER: &str = nimbus_planner::rules::KUBERNETES;
/// The field manager of every apply.
pub const MANAGER: &str = "nimbus";

/// Listed objects by (namespace, name).
type ByName = BTreeMap<(String, String), Value>;

/// k3s Clusters, and Tenants and Workloads on their APIs.
pub struct KubeProvider {
    target: Target,
    rollout_timeout: Duration,
    force_conflicts: bool,
}

/// Where the Tenants and Workloads go.
enum Target {
    /// One API, whatever their Cluster (tests and the benchmark).
    Fixed(kube::Client),
    /// Each Tenant's k3s Cluster, found through the run's SSH connections.
    K3s(k3s::Clusters),
}

/// The Kubernetes provider of a run: its k3s Clusters on the run's SSH connections; without
/// them (no key), its instances fail with the reason. `force_conflicts`: `--force-conflicts`.
pub fn configure(
    context: &nimbus_providers::configure::Context<'_>,
    pool: &Result<std::sync::Arc<nimbus_providers::ssh::Pool>, String>,
    force_conflicts: bool,
) -> std::sync::Arc<dyn Provider> {
    use nimbus_schemas::ClusterType;
    let pool = match pool {
        Ok(pool) => std::sync::Arc::clone(pool),
        Err(reason) => {
            return std::sync::Arc::new(nimbus_provider_core::Unavailable {
                name: PROVIDER.to_owned(),
                reason: reason.clone(),
                kinds: vec![Kind::Cluster, Kind::Tenant, Kind::Workload],
            });
        }
    };
    let topology = context.topology;
    let (mut clusters, mut sources, mut files) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (name, cluster) in &topology.clusters {
        if cluster.cluster_type != ClusterType::K3s {
            continue;
        }
        // Its nodes as the plan has them: on a Network, with their overlay addresses.
        clusters.insert(name.clone(), cluster.nodes.clone());
        let Some(source) = &cluster.k3s else {
            continue;
        };
        sources.insert(
            name.clone(),
            k3s::Source {
                source: source.source.clone(),
                sha256: source.sha256.to_ascii_lowercase(),
            },
        );
        // A binary in the repository is read now, at the revision in use.
        if !source.source.starts_with("http://") && !source.source.starts_with("https://") {
            let path = source.source.trim_start_matches("./").to_owned();
            let read = (context.read_file)(&path)
                .map(std::sync::Arc::new)
                .map_err(|e| e.to_string());
            files.insert(path, read);
        }
    }
    let tenants = topology
        .tenants
        .iter()
        .filter_map(|(tenant, cluster)| Some((tenant.clone(), cluster.clone()?)))
        .collect();
    let interfaces = topology.interfaces.clone();
    let mut clusters =
        k3s::Clusters::new(pool, clusters, sources, tenants, files).with_interfaces(interfaces);
    if let Some(seconds) = (context.env)(k3s::READY_TIMEOUT_ENV).and_then(|s| s.parse().ok()) {
        clusters.ready_timeout = Duration::from_secs(seconds);
    }
    std::sync::Arc::new(KubeProvider::on_k3s(clusters).force_conflicts(force_conflicts))
}

impl std::fmt::Debug for KubeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeProvider")
            .field("rollout_timeout", &self.rollout_timeout)
            .finish()
    }
}

/// Its kinds and how they compare.
pub fn schema() -> ProviderSchema {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    ProviderSchema {
        provider: PROVIDER.to_owned(),
        kinds: vec![
            KindSchema {
                // `status` (each node's readiness) is shown, not compared: a node that is not
                // Ready is missing from `nodes`.
                compare_fields: Some(strings(&["type", "nodes", "k3s", "version"])),
                ..KindSchema::default_for(Kind::Cluster)
            },
            KindSchema {
                compare_fields: Some(strings(&["quota", "members"])),
                ..KindSchema::default_for(Kind::Tenant)
            },
            KindSchema {
                compare_fields: Some(strings(&[
                    "image", "replicas", "cpu", "memory", "ports", "env", "command",
                ])),
                // Env secrets become a Kubernetes Secret: the executor hands their values over.
                delivers_secrets: true,
                ..KindSchema::default_for(Kind::Workload)
            },
        ],
    }
}

fn api_error(what: &str, error: kube::Error) -> ProviderError {
    match error {
        kube::Error::Api(response) if response.code == 409 && response.reason == "Conflict" => {
            ProviderError::Failed(format!(
                "{what}: {} (another field manager owns these fields; nimbus takes them over only with --force-conflicts)",
                response.message
            ))
        }
        kube::Error::Api(response) if response.code >= 500 => ProviderError::Transient(format!(
            "{what}: the API answered {}: {}",
            response.code, response.message
        )),
        kube::Error::Api(response) => ProviderError::Failed(format!(
            "{what}: {} ({})",
            response.message, response.reason
        )),
        other => ProviderError::Transient(format!(
            "{what}: cannot reach the Kubernetes API: {}",
            with_causes(&other)
        )),
    }
}

/// An error and its causes on one line (kube's own message hides why a connection failed:
/// TLS, the tunnel, a refused port).
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn is_missing(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(response) if response.code == 404)
}

/// `(tenant, name)` of `Workload/TENANT/NAME`, or the Tenant's name twice.
fn parts(address: &str) -> (String, String) {
    match address.parse::<nimbus_schemas::Address>() {
        Ok(parsed) => {
            let tenant = parsed.tenant().unwrap_or(&parsed.name).to_owned();
            (tenant, parsed.name)
        }
        Err(_) => (address.to_owned(), address.to_owned()),
    }
}

impl KubeProvider {
    /// Tenants and Workloads on `client`'s API, whatever their Cluster.
    pub fn new(client: kube::Client) -> KubeProvider {
        KubeProvider {
            target: Target::Fixed(client),
            rollout_timeout: Duration::from_secs(120),
            force_conflicts: false,
        }
    }

    /// How long an apply waits for a Workload's rollout.
    pub fn with_rollout_timeout(mut self, timeout: Duration) -> KubeProvider {
        self.rollout_timeout = timeout;
        self
    }

    /// Takes over fields another manager owns, even on create.
    pub fn force_conflicts(mut self, force: bool) -> KubeProvider {
        self.force_conflicts = force;
        self
    }

    /// k3s Clusters, and the Tenants and Workloads on them.
    pub fn on_k3s(clusters: k3s::Clusters) -> KubeProvider {
        KubeProvider {
            target: Target::K3s(clusters),
            rollout_timeout: Duration::from_secs(120),
            force_conflicts: false,
        }
    }

    /// How long a k3s node may take to be listed Ready.
    pub fn with_ready_timeout(mut self, timeout: Duration) -> KubeProvider {
        if let Target::K3s(clusters) = &mut self.target {
            clusters.ready_timeout = timeout;
        }
        self
    }

    /// The API of the Cluster of the Tenant or Workload at `address`; none while the Cluster
    /// has no server answering with a kubeconfig.
    async fn client_for(
        &self,
        address: &str,
        recorded: Option<&Value>,
    ) -> Result<Option<kube::Client>, ProviderError> {
        match &self.target {
            Target::Fixed(client) => Ok(Some(client.clone())),
            Target::K3s(clusters) => match self.cluster_of(address, recorded) {
                Some(cluster) => clusters.client(&cluster).await,
                None => Err(ProviderError::Failed(format!(
                    "{address}: Tenant/{} names no k3s Cluster",
                    parts(address).0
                ))),
            },
        }
    }

    /// The k3s Cluster of the Tenant or Workload at `address`: its Tenant's, as declared, else
    /// as recorded when it was applied (a Tenant removed from the manifests).
    fn cluster_of(&self, address: &str, recorded: Option<&Value>) -> Option<String> {
        let Target::K3s(clusters) = &self.target else {
            return None;
        };
        clusters
            .cluster_of_tenant(&parts(address).0)
            .map(str::to_owned)
            .or_else(|| {
                recorded
                    .and_then(|spec| spec["cluster"].as_str())
                    .map(str::to_owned)
            })
    }

    /// The API of `address`'s Cluster, or why there is none to apply to.
    async fn client_to_apply(&self, change: &Change) -> Result<kube::Client, ProviderError> {
        self.client_for(&change.address, change.before.as_ref())
            .await?
            .ok_or_else(|| {
                ProviderError::Failed(format!(
                    "{}: its Cluster has no API yet (no server of it has k3s running)",
                    change.address
                ))
            })
    }

    /// The API to delete from; none when the Cluster has no API (not installed, or gone
    /// with everything on it). A Tenant gone from the manifests is looked for in every
    /// declared k3s Cluster: the one whose API has its namespace, made by nimbus.
    async fn client_to_delete(
        &self,
        change: &Change,
    ) -> Result<Option<kube::Client>, ProviderError> {
        let address = &change.address;
        let Target::K3s(clusters) = &self.target else {
            return self.client_for(address, change.before.as_ref()).await;
        };
        if self.cluster_of(address, change.before.as_ref()).is_some() {
            return self.client_for(address, change.before.as_ref()).await;
        }
        let tenant = &parts(address).0;
        for cluster in clusters.names() {
            let Some(client) = clusters.client(cluster).await? else {
                continue;
            };
            if self.made_namespace(&client, address, tenant).await? {
                return Ok(Some(client));
            }
        }
        Ok(None)
    }

    fn api(
        &self,
        client: &kube::Client,
        kind: objects::Kind,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        let (group, version) = kind
            .api_version
            .split_once('/')
            .unwrap_or(("", kind.api_version));
        let resource = ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: kind.api_version.to_owned(),
            kind: kind.kind.to_owned(),
            plural: kind.plural.to_owned(),
        };
        match namespace {
            Some(namespace) if kind.namespaced => {
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            _ => Api::all_with(client.clone(), &resource),
        }
    }

    /// Everything of `kind` that nimbus manages, in every namespace: one list call.
    async fn managed(
        &self,
        client: &kube::Client,
        kind: objects::Kind,
    ) -> Result<Vec<Value>, ProviderError> {
        self.listed(client, kind, &format!("{MANAGED_BY}=nimbus"))
            .await
    }

    /// Everything of `kind` whose labels match `selector` (empty: all), in every namespace.
    pub(crate) async fn listed(
        &self,
        client: &kube::Client,
        kind: objects::Kind,
        selector: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        let listed = self
            .api(client, kind, None)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| api_error(&format!("listing {}", kind.plural), e))?;
        Ok(listed
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
            .collect())
    }

    async fn apply_object(
        &self,
        client: &kube::Client,
        address: &str,
        object: &Object,
        force: bool,
    ) -> Result<(), ProviderError> {
        let mut params = PatchParams::apply(MANAGER);
        if force || self.force_conflicts {
            params = params.force();
        }
        self.api(client, object.kind, object.namespace.as_deref())
            .patch(&object.name, &params, &Patch::Apply(&object.body))
            .await
            .map(|_| ())
            .map_err(|e| {
                api_error(
                    &format!("{address}: {} {}", object.kind.kind, object.name),
                    e,
                )
            })
    }

    async fn delete_object(
        &self,
        client: &kube::Client,
        address: &str,
        kind: objects::Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), ProviderError> {
        match self
            .api(client, kind, namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(api_error(
                &format!("{address}: deleting {} {name}", kind.kind),
                e,
            )),
        }
    }

    /// Waits until the Deployment's rollout is done, or says why it failed.
    async fn rollout(
        &self,
        client: &kube::Client,
        address: &str,
        namespace: &str,
        name: &str,
        cancel: &Cancel,
    ) -> Result<Value, ProviderError> {
        let started = Instant::now();
        let api = self.api(client, objects::DEPLOYMENT, Some(namespace));
        loop {
            let live = api
                .get(name)
                .await
                .map_err(|e| api_error(&format!("{address}: reading its Deployment"), e))?;
            let live = serde_json::to_value(live).unwrap_or(Value::Null);
            let status = &live["status"];
            let wanted = live["spec"]["replicas"].as_u64().unwrap_or(1);
            let condition = |kind: &str| {
                status["conditions"]
                    .as_array()
                    .and_then(|list| list.iter().find(|c| c["type"] == kind))
                    .cloned()
            };
            if let Some(failed) = condition("Progressing").filter(|c| c["status"] == "False") {
                return Err(ProviderError::Failed(format!(
                    "{address}: the rollout failed: {} ({})",
                    failed["message"].as_str().unwrap_or_default(),
                    failed["reason"].as_str().unwrap_or_default()
                )));
            }
            if let Some(refused) = condition("ReplicaFailure").filter(|c| c["status"] == "True") {
                return Err(ProviderError::Failed(format!(
                    "{address}: the rollout is stuck: {}",
                    refused["message"].as_str().unwrap_or_default()
                )));
            }
            let observed = status["observedGeneration"].as_u64().unwrap_or(0);
            let generation = live["metadata"]["generation"].as_u64().unwrap_or(0);
            let count = |field: &str| status[field].as_u64().unwrap_or(0);
            if observed >= generation
                && count("updatedReplicas") == wanted
                && count("availableReplicas") == wanted
            {
                return Ok(live);
            }
            if cancel.is_cancelled() || started.elapsed() > self.rollout_timeout {
                return Err(ProviderError::Failed(format!(
                    "{address}: the rollout did not finish in {} s ({} of {wanted} replicas available)",
                    self.rollout_timeout.as_secs(),
                    count("availableReplicas")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the namespace `name` exists and carries nimbus's `managed-by` label.
    async fn made_namespace(
        &self,
        client: &kube::Client,
        address: &str,
        name: &str,
    ) -> Result<bool, ProviderError> {
        let namespace = self
            .api(client, objects::NAMESPACE, None)
            .get_opt(name)
            .await
            .map_err(|e| api_error(&format!("{address}: reading its namespace"), e))?;
        Ok(namespace.is_some_and(|n| {
            n.metadata
                .labels
                .is_some_and(|l| l.get(MANAGED_BY).is_some_and(|v| v == "nimbus"))
        }))
    }

    async fn apply_tenant(&self, change: &Change) -> Result<Applied, ProviderError> {
        let address = &change.address;
        let name = &parts(address).0;
        if change.action == Action::Delete {
            let Some(client) = self.client_to_delete(change).await? else {
                return Ok(Applied::default());
            };
            // Only a namespace nimbus made goes (with everything in it).
            if self.made_namespace(&client, address, name).await? {
                self.delete_object(&client, address, objects::NAMESPACE, None, name)
                    .await?;
            }
            return Ok(Applied::default());
        }
        let client = self.client_to_apply(change).await?;
        let spec = change.after.clone().unwrap_or(Value::Null);
        let wanted = objects::tenant(name, &spec);
        let existed = self
            .api(&client, objects::NAMESPACE, None)
            .get_opt(name)
            .await
            .map_err(|e| api_error(&format!("{address}: reading its namespace"), e))?
            .is_some();
        for object in &wanted {
            if let Err(e) = self
                .apply_object(&client, address, object, change.before.is_some())
                .await
            {
                // A new tenant the API refuses leaves nothing behind.
                if !existed {
                    self.delete_object(&client, address, objects::NAMESPACE, None, name)
                        .await?;
                }
                return Err(e);
            }
        }
        // What an earlier spec made and this one does not (no quota, no members any more).
        for (kind, object_name) in [
            (objects::RESOURCE_QUOTA, "nimbus-quota"),
            (objects::LIMIT_RANGE, "nimbus-defaults"),
            (objects::ROLE, "nimbus-members"),
            (objects::ROLE_BINDING, "nimbus-members"),
        ] {
            if change.before.is_some() && !wanted.iter().any(|o| o.kind == kind) {
                self.delete_object(&client, address, kind, Some(name), object_name)
                    .await?;
            }
        }
        Ok(Applied {
            observed: spec,
            outputs: json!({"namespace": name}),
        })
    }

    async fn apply_workload(
        &self,
        change: &Change,
        cancel: &Cancel,
    ) -> Result<Applied, ProviderError> {
        let address = &change.address;
        let (tenant, name) = parts(address);
        let (tenant, name) = (tenant.as_str(), name.as_str());
        if change.action == Action::Delete {
            let Some(client) = self.client_to_delete(change).await? else {
                return Ok(Applied::default());
            };
            self.delete_object(&client, address, objects::SERVICE, Some(tenant), name)
                .await?;
            self.delete_object(&client, address, objects::DEPLOYMENT, Some(tenant), name)
                .await?;
            self.delete_object(
                &client,
                address,
                objects::SECRET,
                Some(tenant),
                &format!("{name}-env"),
            )
            .await?;
            return Ok(Applied::default());
        }
        let client = self.client_to_apply(change).await?;
        let spec = change.after.clone().unwrap_or(Value::Null);
        // A Deployment being taken over keeps its selector and container name.
        let kept = match change.before {
            Some(_) => self
                .api(&client, objects::DEPLOYMENT, Some(tenant))
                .get_opt(name)
                .await
                .map_err(|e| api_error(&format!("{address}: reading its Deployment"), e))?
                .map(|live| {
                    objects::Kept::of(name, &serde_json::to_value(live).unwrap_or_default())
                })
                .unwrap_or_default(),
            None => objects::Kept::default(),
        };
        let wanted = objects::workload(tenant, name, &spec, &kept)
            .map_err(|e| ProviderError::Failed(format!("{address}: {e}")))?;
        for object in &wanted {
            self.apply_object(&client, address, object, change.before.is_some())
                .await?;
        }
        if change.before.is_some() {
            if !wanted.iter().any(|o| o.kind == objects::SERVICE) {
                self.delete_object(&client, address, objects::SERVICE, Some(tenant), name)
                    .await?;
            }
            if !wanted.iter().any(|o| o.kind == objects::SECRET) {
                self.delete_object(
                    &client,
                    address,
                    objects::SECRET,
                    Some(tenant),
                    &format!("{name}-env"),
                )
                .await?;
            }
        }
        let live = self.rollout(&client, address, tenant, name, cancel).await?;
        // What is recorded: the spec with its secrets' fingerprints, never their values.
        let mut recorded = spec;
        // Its Cluster, for its removal once its Tenant is gone from the manifests.
        if let Some(cluster) = self.cluster_of(address, None)
            && let Value::Object(map) = &mut recorded
        {
            map.insert("cluster".into(), json!(cluster));
        }
        if let Some(Value::Object(env)) = recorded.get_mut("env") {
            for value in env.values_mut() {
                if let Value::Object(secret) = value {
                    secret.remove("value");
                }
            }
        }
        Ok(Applied {
            observed: recorded,
            outputs: json!({"namespace": tenant, "deployment": name,
                            "generation": live["metadata"]["generation"]}),
        })
    }
}

impl Provider for KubeProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn marks_owned(&self, kind: Kind) -> bool {
        matches!(kind, Kind::Tenant | Kind::Workload)
    }

    fn discover<'a>(
        &'a self,
        target: Option<&'a str>,
        request: &'a nimbus_provider_core::DiscoverRequest,
    ) -> BoxFuture<'a, Result<Vec<nimbus_provider_core::Discovered>, ProviderError>> {
        Box::pin(async move {
            if target.is_some() {
                return Ok(Vec::new());
            }
            let mut found = Vec::new();
            match &self.target {
                Target::Fixed(client) => {
                    found.extend(discover::on(self, client, None, request).await?)
                }
                Target::K3s(clusters) => {
                    for cluster in clusters.names() {
                        if let Some(client) = clusters.client(cluster).await? {
                            found
                                .extend(discover::on(self, &client, Some(cluster), request).await?);
                        }
                    }
                }
            }
            Ok(found)
        })
    }

    fn describe(&self) -> ProviderSchema {
        schema()
    }

    fn observe<'a>(
        &'a self,
        _target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move {
            let mut seen = Vec::new();
            // Tenants and Workloads by Cluster: one API each, listed once per kind.
            let mut by_cluster: BTreeMap<Option<&str>, Vec<&ObserveRequest>> = BTreeMap::new();
            for request in batch {
                match (request.kind, &self.target) {
                    (Kind::Cluster, Target::K3s(clusters)) => {
                        let desired = request.desired.clone().unwrap_or(Value::Null);
                        let observed = match clusters.observe(&request.address, &desired).await {
                            Ok(Some(live)) => Observed::Present(live),
                            Ok(None) => Observed::Absent,
                            Err(error) => Observed::Unknown(error.to_string()),
                        };
                        seen.push((request.address.clone(), observed));
                    }
                    (Kind::Tenant | Kind::Workload, Target::Fixed(_)) => {
                        by_cluster.entry(None).or_default().push(request);
                    }
                    (Kind::Tenant | Kind::Workload, Target::K3s(clusters)) => {
                        let tenant = &parts(&request.address).0;
                        // As declared, else as its Tenant was recorded (removed from the
                        // manifests, it is in the batch with its recorded spec).
                        let cluster = clusters.cluster_of_tenant(tenant).or_else(|| {
                            batch
                                .iter()
                                .find(|r| {
                                    r.kind == Kind::Tenant
                                        && r.address.strip_prefix("Tenant/") == Some(tenant)
                                })
                                .and_then(|r| r.desired.as_ref())
                                .and_then(|spec| spec["cluster"].as_str())
                                .and_then(|c| clusters.cluster_named(c))
                        });
                        match cluster {
                            Some(cluster) => {
                                by_cluster.entry(Some(cluster)).or_default().push(request)
                            }
                            None => seen.push((
                                request.address.clone(),
                                Observed::Unknown(format!(
                                    "its tenant `{tenant}` is on no k3s Cluster"
                                )),
                            )),
                        }
                    }
                    (other, _) => {
                        return Err(ProviderError::Bug(format!(
                            "the kubernetes provider does not serve {other} here"
                        )));
                    }
                }
            }
            for (cluster, requests) in by_cluster {
                let client = match (cluster, &self.target) {
                    (_, Target::Fixed(client)) => Ok(Some(client.clone())),
                    (Some(cluster), Target::K3s(clusters)) => clusters.client(cluster).await,
                    (None, Target::K3s(_)) => Ok(None),
                };
                let found = match client {
                    // No API yet: the Cluster is not installed, nor anything on it.
                    Ok(None) => Ok(requests
                        .iter()
                        .map(|r| (r.address.clone(), Observed::Absent))
                        .collect()),
                    Ok(Some(client)) => self.observe_on(&client, &requests, cluster).await,
                    Err(error) => Err(error),
                };
                match found {
                    Ok(found) => seen.extend(found),
                    Err(error) => {
                        // Its instances are not observed (the plan names them); the other
                        // Clusters' are.
                        let reason = match cluster {
                            Some(cluster) => format!("Cluster/{cluster}: {error}"),
                            None => error.to_string(),
                        };
                        seen.extend(
                            requests
                                .iter()
                                .map(|r| (r.address.clone(), Observed::Unknown(reason.clone()))),
                        );
                    }
                }
            }
            Ok(seen)
        })
    }

    fn apply<'a>(
        &'a self,
        change: &'a Change,
        cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            match (change.kind, &self.target) {
                (Kind::Cluster, Target::K3s(clusters)) => {
                    let address = &change.address;
                    match (change.action, &change.after) {
                        (Action::Delete, _) | (_, None) => {
                            let spec = change.before.clone().unwrap_or(Value::Null);
                            clusters.remove(address, &spec).await?;
                            Ok(Applied::default())
                        }
                        (_, Some(after)) => {
                            let applied = clusters
                                .converge(address, change.before.as_ref(), after)
                                .await?;
                            Ok(Applied {
                                observed: applied,
                                outputs: json!({"api": format!("https://127.0.0.1:{} on each server, through its SSH connection", k3s::API_PORT)}),
                            })
                        }
                    }
                }
                (Kind::Tenant, _) => self.apply_tenant(change).await,
                (Kind::Workload, _) => self.apply_workload(change, cancel).await,
                (other, _) => Err(ProviderError::Bug(format!(
                    "the kubernetes provider does not serve {other}"
                ))),
            }
        })
    }
}
