//! nimbus's Docker provider (SPEC §11): a `docker-swarm` Cluster, its Tenants (an overlay
//! network each) and their Workloads (Swarm services), on the hosts' own Docker engines,
//! reached through each host's SSH connection (`engine`). Only this crate knows bollard.

pub mod container;
pub mod engine;
pub mod labels;
pub mod secrets;
pub mod service;
pub mod swarm;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::UpdateServiceOptionsBuilder;
use futures_util::StreamExt;
use nimbus_planner::plan::{Action, Change, KindSchema, Observed, ProviderSchema};
use nimbus_planner::topology::ClusterNode;
use nimbus_providers::configure::Context;
use nimbus_providers::ssh::Pool;
use nimbus_providers::{
    Applied, BoxFuture, Cancel, ObserveRequest, Provider, ProviderError, Unavailable,
};
use nimbus_schemas::{ClusterType, Kind, WorkloadSpec};
use serde_json::{Value, json};

use engine::{Engines, failed, is_missing, labelled};
use labels::{ADDRESS_LABEL, MANAGED_LABEL};
use service::{network_name, service_name};

/// This provider's id.
pub const PROVIDER: &str = nimbus_planner::rules::DOCKER;

/// Each tenant's manager (host and engine), or none, found once per batch.
type Managers = std::collections::HashMap<String, Result<Option<(String, Docker)>, ProviderError>>;

/// How many instances of a batch are observed at once.
const OBSERVE_AT_ONCE: usize = 8;

/// How long a rollout may take before it counts as failed.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);

/// Its kinds and how they compare: only the fields the engine can show are compared.
pub fn schema() -> ProviderSchema {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    ProviderSchema {
        provider: PROVIDER.to_owned(),
        kinds: vec![
            KindSchema {
                compare_fields: Some(strings(&["type", "nodes"])),
                ..KindSchema::default_for(Kind::Cluster)
            },
            KindSchema {
                compare_fields: Some(strings(&["cluster"])),
                ..KindSchema::default_for(Kind::Tenant)
            },
            KindSchema {
                compare_fields: Some(strings(&[
                    "host",
                    "tenant",
                    "image",
                    "replicas",
                    "cpu",
                    "memory",
                    "ports",
                    "env",
                    "command",
                    "placement",
                ])),
                // Env secrets become Docker secrets: the executor hands their values over.
                delivers_secrets: true,
                // A container placed on another host is a new one there (the old one goes).
                replace_fields: strings(&["tenant", "host"]),
                ..KindSchema::default_for(Kind::Workload)
            },
        ],
    }
}

/// The Docker provider of a run, on the run's SSH connections; without them (no key), its
/// instances fail with the reason.
pub fn configure(context: &Context<'_>, pool: &Result<Arc<Pool>, String>) -> Arc<dyn Provider> {
    let unavailable = |reason: String| -> Arc<dyn Provider> {
        Arc::new(Unavailable {
            name: PROVIDER.to_owned(),
            reason,
            kinds: vec![Kind::Cluster, Kind::Tenant, Kind::Workload],
        })
    };
    let pool = match pool {
        Ok(pool) => Arc::clone(pool),
        Err(reason) => return unavailable(reason.clone()),
    };
    let clusters = context
        .topology
        .clusters
        .iter()
        .filter(|(_, cluster)| cluster.cluster_type == ClusterType::DockerSwarm)
        .map(|(name, cluster)| (name.clone(), cluster.nodes.clone()))
        .collect();
    let tenants = context.topology.tenants.clone();
    match Engines::new(pool) {
        Ok(engines) => Arc::new(DockerProvider {
            engines,
            tasks: service::TaskSnapshots::default(),
            clusters,
            tenants,
        }),
        Err(e) => unavailable(e.to_string()),
    }
}

pub struct DockerProvider {
    engines: Engines,
    /// Each docker-swarm Cluster's nodes, as the manifests resolve them.
    clusters: BTreeMap<String, Vec<ClusterNode>>,
    /// The swarms' tasks, listed once per poll for every rollout waiting.
    tasks: service::TaskSnapshots,
    /// Each Tenant's Cluster; none: its Workloads are containers on single hosts.
    tenants: BTreeMap<String, Option<String>>,
}

impl std::fmt::Debug for DockerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProvider")
            .field("clusters", &self.clusters.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn name_of(address: &str) -> &str {
    address.rsplit('/').next().unwrap_or(address)
}

/// The tenant a Tenant's or Workload's address belongs to.
fn tenant_of(address: &str) -> String {
    nimbus_schemas::Address::tenant_of(address).unwrap_or_default()
}

impl DockerProvider {
    pub fn new(
        pool: Arc<Pool>,
        clusters: BTreeMap<String, Vec<ClusterNode>>,
        tenants: BTreeMap<String, Option<String>>,
    ) -> Result<Self, ProviderError> {
        Ok(DockerProvider {
            engines: Engines::new(pool)?,
            tasks: service::TaskSnapshots::default(),
            clusters,
            tenants,
        })
    }

    fn nodes_of_cluster(&self, cluster: &str) -> Result<&[ClusterNode], ProviderError> {
        self.clusters
            .get(cluster)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                ProviderError::Failed(format!("Cluster/{cluster} is not a docker-swarm Cluster"))
            })
    }

    /// A Cluster's nodes as its spec carries them (`nodes: {host: {role, labels}}`, as the
    /// plan shows them), each reached at its Host's address; the manifests' nodes when the
    /// spec has none.
    fn nodes_in_spec(
        &self,
        address: &str,
        spec: Option<&Value>,
    ) -> Result<Vec<ClusterNode>, ProviderError> {
        let Some(Value::Object(nodes)) = spec.and_then(|s| s.get("nodes")) else {
            return self.nodes_of_cluster(name_of(address)).map(<[_]>::to_vec);
        };
        nodes
            .iter()
            .map(|(host, node)| {
                let target = self.engines.pool().target(host).ok_or_else(|| {
                    ProviderError::Failed(format!(
                        "{address}: its node Host/{host} is not a declared Host"
                    ))
                })?;
                Ok(ClusterNode {
                    host: host.clone(),
                    // Its overlay address when the cluster runs on a Network.
                    address: node
                        .get("address")
                        .and_then(Value::as_str)
                        .map_or_else(|| target.address.clone(), str::to_owned),
                    manager: node.get("role").and_then(Value::as_str) == Some("manager"),
                    labels: node
                        .get("labels")
                        .and_then(|l| serde_json::from_value(l.clone()).ok())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Whether the tenant's Workloads are containers on single hosts: it names no cluster
    /// (or it is no longer declared and `spec` names one host).
    fn standalone(&self, tenant: &str, parsed: &container::Parsed) -> bool {
        match self.tenants.get(tenant) {
            Some(cluster) => cluster.is_none(),
            None => {
                parsed.host.is_some()
                    || parsed
                        .spec
                        .placement
                        .as_ref()
                        .is_some_and(|p| p.hosts.len() == 1)
            }
        }
    }

    /// A manager of the tenant's cluster (`None`: there is no swarm yet), or why it cannot
    /// be told.
    async fn find_tenant_manager(
        &self,
        tenant: &str,
    ) -> Result<Option<(String, Docker)>, ProviderError> {
        let cluster = self
            .tenants
            .get(tenant)
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                ProviderError::Failed(format!("Tenant/{tenant} is not declared on a Cluster"))
            })?;
        let nodes = self.nodes_of_cluster(cluster)?;
        swarm::find_manager(&self.engines, nodes)
            .await
            .map_err(|e| ProviderError::Failed(format!("Cluster/{cluster}: {e}")))
    }

    /// A manager of the tenant's cluster, where its network and services live.
    async fn manager_for_tenant(&self, tenant: &str) -> Result<(String, Docker), ProviderError> {
        self.find_tenant_manager(tenant).await?.ok_or_else(|| {
            ProviderError::Failed(format!(
                "Tenant/{tenant}: its Cluster has no swarm yet: apply the Cluster first"
            ))
        })
    }

    /// A manager of the tenant's cluster, found once per batch of observations.
    async fn cached_manager(
        &self,
        tenant: &str,
        managers: &tokio::sync::Mutex<Managers>,
    ) -> Result<Option<(String, Docker)>, ProviderError> {
        // Held while a manager is looked for: the batch's other observations of the same
        // tenant wait for it rather than look too.
        let mut managers = managers.lock().await;
        if let Some(found) = managers.get(tenant) {
            return found.clone();
        }
        let found = self.find_tenant_manager(tenant).await;
        managers.insert(tenant.to_owned(), found.clone());
        found
    }

    async fn observe_one(
        &self,
        request: &ObserveRequest,
        managers: &tokio::sync::Mutex<Managers>,
    ) -> Result<Observed, ProviderError> {
        let address = &request.address;
        let desired = request.desired.clone().unwrap_or(Value::Null);
        match request.kind {
            Kind::Cluster => {
                let nodes = self.nodes_in_spec(address, request.desired.as_ref())?;
                let Some((manager, docker)) = swarm::find_manager(&self.engines, &nodes).await?
                else {
                    return Ok(Observed::Absent);
                };
                let mut observed = desired.clone();
                // On a Network, the addresses the nodes advertise are part of the cluster.
                let with_address = desired.get("network").is_some_and(Value::is_string);
                let mut nodes_seen = swarm::observed_nodes(&docker, &manager, with_address).await?;
                if let Value::Object(map) = &mut nodes_seen {
                    let hosts: Vec<String> = map.keys().cloned().collect();
                    for host in hosts {
                        if swarm::is_member(&self.engines, &host).await == Some(false) {
                            map.remove(&host);
                        }
                    }
                }
                observed["nodes"] = nodes_seen;
                Ok(Observed::Present(observed))
            }
            Kind::Tenant if desired.get("cluster").is_none_or(Value::is_null) => {
                // Nothing of its own on the machines: each host's network `nimbus-<tenant>`
                // comes and goes with the tenant's containers there.
                Ok(Observed::Present(desired))
            }
            Kind::Tenant => {
                let tenant = name_of(address);
                // No swarm: absent. A swarm that cannot be asked: not observed (an error).
                let Some((manager, docker)) = self.cached_manager(tenant, managers).await? else {
                    return Ok(Observed::Absent);
                };
                match docker
                    .inspect_network(
                        &network_name(tenant),
                        None::<bollard::query_parameters::InspectNetworkOptions>,
                    )
                    .await
                {
                    Ok(network) => {
                        if !labelled(address, network.labels.as_ref()) {
                            return Err(ProviderError::Failed(format!(
                                "{address}: a network named {} exists on Host/{manager} and nimbus did not create it",
                                network_name(tenant)
                            )));
                        }
                        Ok(Observed::Present(desired))
                    }
                    Err(e) if is_missing(&e) => Ok(Observed::Absent),
                    Err(e) => Err(failed(&manager, "cannot read the tenant's network", &e)),
                }
            }
            Kind::Workload => {
                let tenant = &tenant_of(address);
                let parsed = container::Parsed::new(address, &desired)?;
                if self.standalone(tenant, &parsed) {
                    let host = parsed.host_of(address)?;
                    let docker = self.engines.engine(&host).await?;
                    return container::observe(&docker, &host, address, &parsed).await;
                }
                let (workload, secrets) = (parsed.spec, parsed.secrets);
                // No swarm: absent. A swarm that cannot be asked: not observed (an error).
                let Some((manager, docker)) = self.cached_manager(tenant, managers).await? else {
                    return Ok(Observed::Absent);
                };
                let name = service_name(address);
                match docker
                    .inspect_service(
                        &name,
                        None::<bollard::query_parameters::InspectServiceOptions>,
                    )
                    .await
                {
                    Ok(service) => {
                        // One nimbus did not make is shown as it is: the plan refuses it
                        // ("exists, not managed") unless it is imported, and an import labels it.
                        let spec = service.spec.unwrap_or_default();
                        let made = if secrets.is_empty() {
                            std::collections::HashMap::new()
                        } else {
                            secrets::existing(&docker, &manager, address).await?
                        };
                        Ok(Observed::Present(service::observed_spec(
                            address, &spec, &workload, &secrets, &made, tenant,
                        )))
                    }
                    Err(e) if is_missing(&e) => Ok(Observed::Absent),
                    Err(e) => Err(failed(&manager, &format!("cannot read service {name}"), &e)),
                }
            }
            kind => Err(ProviderError::Bug(format!(
                "the docker provider does not serve {kind}"
            ))),
        }
    }

    async fn apply_one(&self, change: &Change) -> Result<Applied, ProviderError> {
        let address = &change.address;
        let spec = change.after.as_ref().or(change.before.as_ref());
        let standalone_tenant = change.kind == Kind::Tenant
            && spec
                .and_then(|s| s.get("cluster"))
                .is_none_or(Value::is_null);
        let mut outputs = json!(null);
        match (change.kind, change.action) {
            (Kind::Cluster, Action::Delete) => {
                let nodes = self.nodes_in_spec(address, spec)?;
                swarm::dissolve(&self.engines, &nodes).await?;
            }
            (Kind::Cluster, _) => {
                let nodes = self.nodes_in_spec(address, spec)?;
                swarm::converge(&self.engines, &nodes).await?;
            }
            // Nothing of its own on the machines (see observe).
            (Kind::Tenant, _) if standalone_tenant => {}
            (Kind::Tenant, Action::Delete) => {
                let tenant = name_of(address);
                let (manager, docker) = self.manager_for_tenant(tenant).await?;
                match docker.remove_network(&network_name(tenant)).await {
                    Ok(()) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => {
                        return Err(failed(&manager, "cannot remove the tenant's network", &e));
                    }
                }
            }
            (Kind::Tenant, _) => {
                let tenant = name_of(address);
                let (manager, docker) = self.manager_for_tenant(tenant).await?;
                if let Observed::Absent = self
                    .observe_one(
                        &ObserveRequest {
                            address: address.clone(),
                            kind: Kind::Tenant,
                            desired: change.after.clone(),
                        },
                        &tokio::sync::Mutex::new(Managers::new()),
                    )
                    .await?
                {
                    docker
                        .create_network(NetworkCreateRequest {
                            name: network_name(tenant),
                            driver: Some("overlay".to_owned()),
                            attachable: Some(true),
                            labels: Some(
                                [
                                    (ADDRESS_LABEL.to_owned(), address.clone()),
                                    (MANAGED_LABEL.to_owned(), "nimbus".to_owned()),
                                ]
                                .into(),
                            ),
                            ..NetworkCreateRequest::default()
                        })
                        .await
                        .map_err(|e| failed(&manager, "cannot create the tenant's network", &e))?;
                }
            }
            (Kind::Workload, action) if self.standalone_change(change) => {
                let tenant = &tenant_of(address);
                let parsed = container::Parsed::new(address, spec.unwrap_or(&Value::Null))?;
                let host = parsed.host_of(address)?;
                // Moved to another host: the old container goes first.
                if action == Action::Replace
                    && let Some(before) = &change.before
                    && let Ok(old) = container::Parsed::new(address, before)
                    && let Ok(old_host) = old.host_of(address)
                    && old_host != host
                {
                    let docker = self.engines.engine(&old_host).await?;
                    container::delete(&docker, &old_host, address, tenant).await?;
                }
                let docker = self.engines.engine(&host).await?;
                if action == Action::Delete {
                    container::delete(&docker, &host, address, tenant).await?;
                } else {
                    let image = container::apply(
                        &docker,
                        &host,
                        address,
                        &parsed.spec,
                        &parsed.secrets,
                        tenant,
                    )
                    .await?;
                    outputs = json!({ "imageId": image });
                }
            }
            (Kind::Workload, Action::Delete) => {
                let (manager, docker) = self.manager_for_tenant(&tenant_of(address)).await?;
                let name = service_name(address);
                match docker.delete_service(&name).await {
                    Ok(()) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => {
                        return Err(failed(
                            &manager,
                            &format!("cannot remove service {name}"),
                            &e,
                        ));
                    }
                }
                // Its secrets, once no task holds them any more.
                let mut attempts = 0;
                while let Err(error) = secrets::prune(&docker, &manager, address, &[]).await {
                    attempts += 1;
                    if attempts > 40 {
                        return Err(error);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            (Kind::Workload, _) => {
                let tenant = &tenant_of(address);
                let mut after = change
                    .after
                    .clone()
                    .ok_or_else(|| ProviderError::Bug(format!("{address} has no desired spec")))?;
                let env_secrets = secrets::take(&mut after);
                let workload: WorkloadSpec = serde_json::from_value(after).map_err(|e| {
                    ProviderError::Failed(format!("{address}: not a Workload spec: {e}"))
                })?;
                let (manager, docker) = self.manager_for_tenant(tenant).await?;
                let network = docker
                    .inspect_network(
                        &network_name(tenant),
                        None::<bollard::query_parameters::InspectNetworkOptions>,
                    )
                    .await
                    .map_err(|e| {
                        failed(
                            &manager,
                            "the tenant's network is missing (apply the Tenant first)",
                            &e,
                        )
                    })?
                    .id
                    .unwrap_or_else(|| network_name(tenant));
                let name = service_name(address);
                let ids = secrets::ensure(&docker, &manager, address, &name, &env_secrets).await?;
                let mut spec =
                    service::service_spec(address, &workload, &network, &env_secrets, &ids)?;
                let existing = docker
                    .inspect_service(
                        &name,
                        None::<bollard::query_parameters::InspectServiceOptions>,
                    )
                    .await;
                let updated = match existing {
                    Ok(service) => {
                        let labels = service.spec.as_ref().and_then(|s| s.labels.as_ref());
                        // Updated only when planned as an update (an import, or one state
                        // records): one made by hand since the plan is left alone.
                        if !labelled(address, labels) && change.before.is_none() {
                            return Err(ProviderError::Failed(format!(
                                "{address}: a service named {name} exists and nimbus did not create it; it is left alone"
                            )));
                        }
                        let version = service.version.and_then(|v| v.index).unwrap_or(0);
                        // What the engine filled in (platforms, isolation) is kept, so that an
                        // unchanged task template rolls nothing.
                        service::keep_engine_defaults(&mut spec, service.spec.as_ref());
                        docker
                            .update_service(
                                &name,
                                spec,
                                UpdateServiceOptionsBuilder::new()
                                    .version(version as i32)
                                    .build(),
                                None,
                            )
                            .await
                            .map_err(|e| {
                                failed(&manager, &format!("cannot update service {name}"), &e)
                            })?;
                        true
                    }
                    Err(e) if is_missing(&e) => {
                        docker.create_service(spec, None).await.map_err(|e| {
                            failed(&manager, &format!("cannot create service {name}"), &e)
                        })?;
                        false
                    }
                    Err(e) => {
                        return Err(failed(&manager, &format!("cannot read service {name}"), &e));
                    }
                };
                if let Err(error) = service::wait_converged(
                    service::Rollout {
                        docker: &docker,
                        manager: &manager,
                        address,
                        name: &name,
                        replicas: workload.replicas,
                        updated,
                        timeout: ROLLOUT_TIMEOUT,
                    },
                    &self.tasks,
                )
                .await
                {
                    // A service created now that cannot run is taken away again, with its
                    // secrets: a failed create leaves nothing behind.
                    if !updated {
                        let _ = docker.delete_service(&name).await;
                        for _ in 0..40 {
                            if secrets::prune(&docker, &manager, address, &[])
                                .await
                                .is_ok()
                            {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                    return Err(error);
                }
                // Rotated secrets: the old values go once the service no longer uses them.
                let keep: Vec<String> = env_secrets.iter().map(|s| s.docker_name(&name)).collect();
                secrets::prune(&docker, &manager, address, &keep).await?;
                outputs = service::image_record(&docker, &name).await;
            }
            (kind, _) => {
                return Err(ProviderError::Bug(format!(
                    "the docker provider does not serve {kind}"
                )));
            }
        }
        if change.action == Action::Delete {
            return Ok(Applied::default());
        }
        let observed = match self
            .observe_one(
                &ObserveRequest {
                    address: address.clone(),
                    kind: change.kind,
                    desired: change.after.clone(),
                },
                &tokio::sync::Mutex::new(Managers::new()),
            )
            .await?
        {
            Observed::Present(value) => value,
            _ => Value::Null,
        };
        Ok(Applied { observed, outputs })
    }

    /// One observation (a transient failure asked again), or unknown with why.
    async fn observe_or_unknown(
        &self,
        request: &ObserveRequest,
        managers: &tokio::sync::Mutex<Managers>,
    ) -> (String, Observed) {
        // A transient failure is asked again (three times, 0.5 s, 1 s, 2 s apart) before the
        // instance is left not observed.
        let mut wait = std::time::Duration::from_millis(500);
        let mut attempts = 1;
        let observed = loop {
            match self.observe_one(request, managers).await {
                Ok(observed) => break observed,
                Err(error) if error.is_transient() && attempts <= 3 => {
                    tracing::debug!(address = %request.address, %error, attempts, "observing again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempts += 1;
                }
                Err(error) => break Observed::Unknown(error.to_string()),
            }
        };
        (request.address.clone(), observed)
    }

    /// Whether a Workload change is for a container on a single host.
    fn standalone_change(&self, change: &Change) -> bool {
        let Some(spec) = change.after.as_ref().or(change.before.as_ref()) else {
            return false;
        };
        container::Parsed::new(&change.address, spec)
            .is_ok_and(|w| self.standalone(&tenant_of(&change.address), &w))
    }
}

impl Provider for DockerProvider {
    fn marks_owned(&self, kind: Kind) -> bool {
        kind == Kind::Workload
    }

    fn name(&self) -> &str {
        PROVIDER
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
            // The batch's instances are read at once, a few at a time per engine connection
            // pool; each tenant's manager is found once.
            let managers = tokio::sync::Mutex::new(Managers::new());
            let reads: Vec<BoxFuture<'_, (String, Observed)>> = batch
                .iter()
                .map(|request| -> BoxFuture<'_, (String, Observed)> {
                    Box::pin(self.observe_or_unknown(request, &managers))
                })
                .collect();
            let observed = futures_util::stream::iter(reads)
                .buffered(OBSERVE_AT_ONCE)
                .collect::<Vec<_>>()
                .await;
            Ok(observed)
        })
    }

    fn apply<'a>(
        &'a self,
        change: &'a Change,
        _cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move {
            // Every failure names the instance it is the failure of.
            self.apply_one(change).await.map_err(|error| match error {
                ProviderError::Failed(reason) if !reason.contains(&change.address) => {
                    ProviderError::Failed(format!("{}: {reason}", change.address))
                }
                ProviderError::Field { field, message } if !message.contains(&change.address) => {
                    ProviderError::field(field, format!("{}: {message}", change.address))
                }
                other => other,
            })
        })
    }
}
