//! Workload on docker-swarm: a Swarm service named `<tenant>_<name>` on the tenant's overlay
//! network, labelled with the instance's address, so that services nimbus did not create are
//! never touched. Apply waits until every task runs the new spec; a rollout that fails is
//! rolled back and fails the instance with the tasks' errors.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, Limit, NetworkAttachmentConfig, ResourceObject,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum,
    ServiceUpdateStatusStateEnum, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecResources, TaskState,
};
use bollard::query_parameters::{ListTasksOptionsBuilder, UpdateServiceOptionsBuilder};
use nimbus_providers::ProviderError;
use nimbus_schemas::{
    Bytes, Cpu, EnvValue, PortMapping, Protocol, PublishMode, StringOrList, WorkloadSpec,
};
use serde_json::{Value, json};

use crate::engine::failed;
use crate::secrets::EnvSecret;

use crate::labels::{ADDRESS_LABEL, MANAGED_LABEL};

/// The service of a Workload (`Workload/acme/api` is `acme_api`).
pub fn service_name(address: &str) -> String {
    match address.parse::<nimbus_schemas::Address>() {
        Ok(nimbus_schemas::Address {
            tenant: Some(tenant),
            name,
            ..
        }) => format!("{tenant}_{name}"),
        Ok(address) => address.name,
        Err(_) => address.replace('/', "_"),
    }
}

/// The tenant's overlay network.
pub fn network_name(tenant: &str) -> String {
    format!("nimbus-{tenant}")
}

pub(crate) fn args_of(command: &StringOrList) -> Vec<String> {
    match command {
        StringOrList::String(text) => text.split_whitespace().map(str::to_owned).collect(),
        StringOrList::List(list) => list.clone(),
    }
}

fn constraints_of(spec: &WorkloadSpec) -> Result<Vec<String>, String> {
    let Some(placement) = &spec.placement else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = placement
        .selector
        .0
        .iter()
        .map(|(k, v)| format!("node.labels.{k}=={v}"))
        .collect();
    match placement.hosts.as_slice() {
        [] => {}
        [host] => out.push(format!("node.labels.{}=={host}", crate::labels::HOST_LABEL)),
        _ => {
            return Err(
                "placement names several hosts: a Swarm service takes one (or use a selector)"
                    .to_owned(),
            );
        }
    }
    Ok(out)
}

/// Plain env values; each secret is a file, and its `<KEY>_FILE` says where.
pub(crate) fn env_of(spec: &WorkloadSpec, secrets: &[EnvSecret]) -> Vec<String> {
    let mut out: Vec<String> = spec
        .env
        .iter()
        .filter_map(|(key, value)| match value {
            EnvValue::Value(text) => Some(format!("{key}={text}")),
            EnvValue::Secret { .. } => None,
        })
        .collect();
    for secret in secrets {
        out.push(format!("{}_FILE={}", secret.key, secret.path()));
    }
    out
}

fn ports_of(spec: &WorkloadSpec) -> Vec<EndpointPortConfig> {
    spec.ports
        .iter()
        .map(|p| {
            let host = p.mode == Some(PublishMode::Host);
            EndpointPortConfig {
                name: None,
                protocol: Some(match p.protocol {
                    Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                    Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                }),
                target_port: Some(i64::from(p.port.0)),
                published_port: p
                    .host_port
                    .map(|h| i64::from(h.0))
                    .or(host.then_some(i64::from(p.port.0))),
                publish_mode: Some(if host {
                    EndpointPortConfigPublishModeEnum::HOST
                } else {
                    EndpointPortConfigPublishModeEnum::INGRESS
                }),
            }
        })
        .collect()
}

/// The Swarm service spec of a Workload, on the tenant's network (by id: the engine keeps ids,
/// and a name where it keeps an id would roll every task on each update).
pub fn service_spec(
    address: &str,
    spec: &WorkloadSpec,
    network: &str,
    secrets: &[EnvSecret],
    secret_ids: &HashMap<String, String>,
) -> Result<ServiceSpec, ProviderError> {
    if !spec.volumes.is_empty() {
        return Err(ProviderError::Failed(format!(
            "{address}: volumes are not mounted by the docker provider in this release; remove `volumes` or run it elsewhere"
        )));
    }
    let host_ports = spec.ports.iter().any(|p| p.mode == Some(PublishMode::Host));
    let ingress = spec.ports.iter().any(|p| p.mode != Some(PublishMode::Host));
    let nano = spec.cpu.map(|c| (c.millicores * 1_000_000) as i64);
    let memory = spec.memory.map(|m| m.bytes as i64);
    let labels = HashMap::from([
        (ADDRESS_LABEL.to_owned(), address.to_owned()),
        (MANAGED_LABEL.to_owned(), "nimbus".to_owned()),
    ]);
    let constraints =
        constraints_of(spec).map_err(|e| ProviderError::Failed(format!("{address}: {e}")))?;
    Ok(ServiceSpec {
        name: Some(service_name(address)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(spec.image.clone()),
                labels: Some(labels),
                args: spec.command.as_ref().map(args_of),
                env: Some(env_of(spec, secrets)),
                secrets: (!secrets.is_empty()).then(|| {
                    crate::secrets::references(&service_name(address), secrets, secret_ids)
                }),
                ..TaskSpecContainerSpec::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: nano,
                    memory_bytes: memory,
                    pids: None,
                }),
                reservations: Some(ResourceObject {
                    nano_cpus: nano,
                    memory_bytes: memory,
                    generic_resources: None,
                }),
                ..TaskSpecResources::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(constraints),
                ..TaskSpecPlacement::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network.to_owned()),
                aliases: None,
                driver_opts: None,
            }]),
            ..TaskSpec::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(spec.replicas)),
            }),
            ..ServiceSpecMode::default()
        }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            delay: None,
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(5_000_000_000),
            max_failure_ratio: None,
            // A new task cannot bind the host port its old one holds.
            order: Some(if host_ports {
                ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
            } else {
                ServiceSpecUpdateConfigOrderEnum::START_FIRST
            }),
        }),
        endpoint_spec: Some(EndpointSpec {
            // Without ingress ports, DNS round robin: no virtual IP (and no IPVS) needed.
            mode: Some(if ingress {
                EndpointSpecModeEnum::VIP
            } else {
                EndpointSpecModeEnum::DNSRR
            }),
            ports: Some(ports_of(spec)),
        }),
        ..ServiceSpec::default()
    })
}

/// Carries over what the engine filled into a service's task template and we do not set.
pub fn keep_engine_defaults(spec: &mut ServiceSpec, existing: Option<&ServiceSpec>) {
    let Some(old) = existing.and_then(|s| s.task_template.as_ref()) else {
        return;
    };
    let Some(new) = spec.task_template.as_mut() else {
        return;
    };
    if let (Some(placement), Some(old_placement)) = (new.placement.as_mut(), old.placement.as_ref())
    {
        placement.platforms.clone_from(&old_placement.platforms);
    }
    if let (Some(container), Some(old_container)) =
        (new.container_spec.as_mut(), old.container_spec.as_ref())
    {
        container.isolation = old_container.isolation;
        // A digest the engine pinned stays while the image named is the same.
        if let (Some(image), Some(old_image)) = (&container.image, &old_container.image)
            && image_without_digest(old_image) == image
        {
            container.image = Some(old_image.clone());
        }
    }
    new.force_update = old.force_update;
    new.restart_policy.clone_from(&old.restart_policy);
    new.log_driver.clone_from(&old.log_driver);
    new.runtime.clone_from(&old.runtime);
}

fn image_without_digest(image: &str) -> &str {
    image.split('@').next().unwrap_or(image)
}

/// A Workload's `cpu` and `memory` as the engine's limits show them (nano-cpus, bytes).
pub(crate) fn show_limits(out: &mut Value, nano_cpus: Option<i64>, memory: Option<i64>) {
    if let Some(nano) = nano_cpus {
        out["cpu"] = json!(
            Cpu {
                millicores: (nano / 1_000_000) as u64
            }
            .to_string()
        );
    }
    if let Some(bytes) = memory {
        out["memory"] = json!(
            Bytes {
                bytes: bytes as u64
            }
            .to_string()
        );
    }
}

/// The Workload as the service shows it, in the form of `desired` where the service matches
/// it field by field (so that only what differs is a change).
pub fn observed_spec(
    address: &str,
    service: &ServiceSpec,
    desired: &WorkloadSpec,
    secrets: &[EnvSecret],
    made: &HashMap<String, crate::secrets::Made>,
    tenant: &str,
) -> Value {
    let container = service
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.clone())
        .unwrap_or_default();
    let resources = service
        .task_template
        .as_ref()
        .and_then(|t| t.resources.clone())
        .unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let replicas = service
        .mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .unwrap_or(0);
    let mut out = json!({
        "image": image_without_digest(container.image.as_deref().unwrap_or_default()),
        "replicas": replicas,
    });
    // The tenant is in the service's name (`<tenant>_<name>`): written as the manifest has
    // it (in `spec.tenant`, or only by the folder).
    if desired.tenant.is_some() {
        out["tenant"] = json!(tenant);
    }
    show_limits(&mut out, limits.nano_cpus, limits.memory_bytes);
    let mut env: BTreeMap<String, Value> = container
        .env
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    // Secrets: attached under the name their value gives them, or another value.
    let attached: Vec<(String, String)> = container
        .secrets
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Some((s.file.as_ref()?.name.clone()?, s.secret_name.clone()?)))
        .collect();
    let named = service_name(address);
    for secret in secrets {
        let file = format!("{}_FILE", secret.key);
        if env.get(&file) == Some(&json!(secret.path())) {
            env.remove(&file);
        }
        if let Some((_, name)) = attached.iter().find(|(key, _)| *key == secret.key) {
            // Which value it holds, as its label records it.
            let fingerprint = made
                .get(name)
                .map(|m| m.fingerprint.clone())
                .filter(|_| name.starts_with(&format!("{named}_{}_", secret.key)))
                .unwrap_or_else(|| "another value".to_owned());
            env.insert(
                secret.key.clone(),
                json!({"secret": secret.reference, "fingerprint": fingerprint}),
            );
        }
    }
    if !env.is_empty() {
        out["env"] = json!(env);
    }
    let args = container.args.unwrap_or_default();
    match &desired.command {
        Some(command) if args_of(command) == args => out["command"] = json!(command),
        _ if !args.is_empty() => out["command"] = json!(args),
        _ => {}
    }
    let ports = service
        .endpoint_spec
        .as_ref()
        .and_then(|e| e.ports.clone())
        .unwrap_or_default();
    if ports == ports_of(desired) && !desired.ports.is_empty() {
        out["ports"] = json!(desired.ports);
    } else if !ports.is_empty() {
        let seen: Vec<PortMapping> = ports
            .iter()
            .map(|p| PortMapping {
                port: nimbus_schemas::Port(p.target_port.unwrap_or(0) as u16),
                host_port: p.published_port.map(|h| nimbus_schemas::Port(h as u16)),
                protocol: match p.protocol {
                    Some(EndpointPortConfigProtocolEnum::UDP) => Protocol::Udp,
                    _ => Protocol::Tcp,
                },
                mode: (p.publish_mode == Some(EndpointPortConfigPublishModeEnum::HOST))
                    .then_some(PublishMode::Host),
            })
            .collect();
        out["ports"] = json!(seen);
    }
    let constraints = service
        .task_template
        .as_ref()
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.clone())
        .unwrap_or_default();
    if Ok(constraints.clone()) == constraints_of(desired) {
        if let Some(placement) = &desired.placement {
            out["placement"] = json!(placement);
        }
    } else if !constraints.is_empty() {
        out["placement"] = json!({ "constraints": constraints });
    }
    out
}

/// The tasks of a whole swarm, listed once for every rollout waiting on it: thirty services
/// converging at once cost one listing per poll, not thirty.
#[derive(Debug, Default)]
pub struct TaskSnapshots {
    by_manager: tokio::sync::Mutex<HashMap<String, Snapshot>>,
}

/// A listing of a swarm's tasks, and when it was taken.
type Snapshot = (Instant, std::sync::Arc<Vec<Task>>);

/// How old a listing may be and still answer a poll.
const SNAPSHOT_AGE: Duration = Duration::from_millis(200);

impl TaskSnapshots {
    /// The tasks of the service `service_id`, from a listing no older than a poll interval.
    async fn of_service(
        &self,
        docker: &Docker,
        manager: &str,
        service_id: &str,
    ) -> Result<Vec<Task>, ProviderError> {
        // Held while listing: the pollers that come meanwhile take this listing.
        let mut snapshots = self.by_manager.lock().await;
        let all = match snapshots.get(manager) {
            Some((taken, tasks)) if taken.elapsed() < SNAPSHOT_AGE => std::sync::Arc::clone(tasks),
            _ => {
                let tasks = std::sync::Arc::new(
                    docker
                        .list_tasks(None::<bollard::query_parameters::ListTasksOptions>)
                        .await
                        .map_err(|e| failed(manager, "cannot list the swarm's tasks", &e))?,
                );
                snapshots.insert(
                    manager.to_owned(),
                    (Instant::now(), std::sync::Arc::clone(&tasks)),
                );
                tasks
            }
        };
        Ok(all
            .iter()
            .filter(|t| t.service_id.as_deref() == Some(service_id))
            .cloned()
            .collect())
    }
}

/// One rollout to wait for: the service, what it should come to, and where to ask.
#[derive(Debug)]
pub struct Rollout<'a> {
    pub docker: &'a Docker,
    pub manager: &'a str,
    pub address: &'a str,
    pub name: &'a str,
    pub replicas: u32,
    /// An update of an existing service (else a service just created).
    pub updated: bool,
    pub timeout: Duration,
}

/// Waits until every task of the service runs the spec just applied. A rollout whose tasks
/// fail is rolled back (an update) and fails with the tasks' errors.
pub async fn wait_converged(
    rollout: Rollout<'_>,
    snapshots: &TaskSnapshots,
) -> Result<(), ProviderError> {
    let Rollout {
        docker,
        manager,
        address,
        name,
        replicas,
        updated,
        timeout,
    } = rollout;
    let begun = Instant::now();
    // No task of a new spec runs sooner than this (the polls that follow share one listing
    // of the swarm's tasks, so they cost the engines little).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut created_service = None;
    loop {
        // A service just created has no rollout to follow: read it once.
        let service = match &created_service {
            Some(service) => Clone::clone(service),
            None => docker
                .inspect_service(
                    name,
                    None::<bollard::query_parameters::InspectServiceOptions>,
                )
                .await
                .map_err(|e| failed(manager, &format!("cannot read service {name}"), &e))?,
        };
        if !updated {
            created_service = Some(service.clone());
        }
        let image = service
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let update = service.update_status.as_ref().and_then(|u| u.state);
        let tasks = snapshots
            .of_service(docker, manager, service.id.as_deref().unwrap_or_default())
            .await?;
        let current = |t: &&bollard::models::Task| {
            t.spec
                .as_ref()
                .and_then(|s| s.container_spec.as_ref())
                .and_then(|c| c.image.as_deref())
                == Some(image.as_str())
        };
        let running = tasks
            .iter()
            .filter(current)
            .filter(|t| {
                t.desired_state == Some(TaskState::RUNNING)
                    && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
            })
            .count();
        let errors: Vec<String> = tasks
            .iter()
            .filter(current)
            .filter(|t| {
                matches!(
                    t.status.as_ref().and_then(|s| s.state),
                    Some(TaskState::FAILED | TaskState::REJECTED)
                )
            })
            .filter_map(|t| {
                let status = t.status.as_ref()?;
                status.err.clone().or(status.message.clone())
            })
            .collect();
        // Why tasks wait (no node with the resources, a port taken): said at the timeout.
        let pending: Vec<String> = tasks
            .iter()
            .filter(current)
            .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::PENDING))
            .filter_map(|t| {
                let status = t.status.as_ref()?;
                status.err.clone().or(status.message.clone())
            })
            .collect();
        let rolled_back = matches!(
            update,
            Some(
                ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
                    | ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED
                    | ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED
            )
        );
        let settled = !matches!(update, Some(ServiceUpdateStatusStateEnum::UPDATING));
        // Every task runs the new spec; failures of this image seen past the first seconds
        // are older ones, before it ran.
        if running as u32 == replicas
            && settled
            && !rolled_back
            && (errors.is_empty() || begun.elapsed() > Duration::from_secs(2))
        {
            return Ok(());
        }
        // No node can take the tasks (too little memory or CPU, no node matching the
        // placement): Swarm would wait for ever; it is said now.
        let unplaceable = begun.elapsed() > Duration::from_secs(10)
            && running == 0
            && !pending.is_empty()
            && pending.iter().all(|p| p.contains("no suitable node"));
        let failing = errors.len() >= 3 || rolled_back || unplaceable;
        if failing || begun.elapsed() > timeout {
            let mut restored = false;
            if updated {
                if !rolled_back {
                    roll_back(docker, manager, name).await;
                }
                restored = wait_rolled_back(docker, name, replicas).await;
            }
            let mut unique: Vec<String> = Vec::new();
            for error in errors {
                if !unique.contains(&error) {
                    unique.push(error);
                }
            }
            let why = if unique.is_empty() {
                let mut waiting = pending.clone();
                waiting.dedup();
                format!(
                    "{running} of {replicas} tasks running after {}s{}",
                    begun.elapsed().as_secs(),
                    if waiting.is_empty() {
                        String::new()
                    } else {
                        format!("; the others are pending: {}", waiting.join("; "))
                    }
                )
            } else {
                format!("its tasks fail: {}", unique.join("; "))
            };
            return Err(ProviderError::Failed(format!(
                "{address}: the rollout of service {name} failed: {why}{}",
                match (updated, restored) {
                    (true, true) => "; the service was rolled back to its previous spec",
                    (true, false) =>
                        "; a rollback to its previous spec was started and has not finished",
                    _ => "",
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the service's image resolved to, for state: the image as the service pins it (with
/// the digest a registry gave), and the image's id on the manager (an image that came from
/// no registry has no digest).
pub async fn image_record(docker: &Docker, name: &str) -> Value {
    let Ok(service) = docker
        .inspect_service(
            name,
            None::<bollard::query_parameters::InspectServiceOptions>,
        )
        .await
    else {
        return Value::Null;
    };
    let image = service
        .spec
        .and_then(|s| s.task_template)
        .and_then(|t| t.container_spec)
        .and_then(|c| c.image)
        .unwrap_or_default();
    let id = docker
        .inspect_image(image_without_digest(&image))
        .await
        .ok()
        .and_then(|i| i.id);
    json!({ "image": image, "imageId": id })
}

/// Waits (a bounded time) until a rollback has finished and every task runs again.
async fn wait_rolled_back(docker: &Docker, name: &str, replicas: u32) -> bool {
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_secs(90) {
        let service = docker
            .inspect_service(
                name,
                None::<bollard::query_parameters::InspectServiceOptions>,
            )
            .await;
        let done = service.as_ref().is_ok_and(|s| {
            s.update_status.as_ref().and_then(|u| u.state)
                == Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED)
        });
        if done {
            let tasks = docker
                .list_tasks(Some(
                    ListTasksOptionsBuilder::new()
                        .filters(&HashMap::from([
                            ("service", vec![name]),
                            ("desired-state", vec!["running"]),
                        ]))
                        .build(),
                ))
                .await
                .unwrap_or_default();
            let running = tasks
                .iter()
                .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
                .count();
            if running as u32 >= replicas {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

async fn roll_back(docker: &Docker, manager: &str, name: &str) {
    let Ok(service) = docker
        .inspect_service(
            name,
            None::<bollard::query_parameters::InspectServiceOptions>,
        )
        .await
    else {
        return;
    };
    let (Some(spec), Some(version)) = (
        service.spec.clone(),
        service.version.as_ref().and_then(|v| v.index),
    ) else {
        return;
    };
    if let Err(e) = docker
        .update_service(
            name,
            spec,
            UpdateServiceOptionsBuilder::new()
                .version(version as i32)
                .rollback("previous")
                .build(),
            None,
        )
        .await
    {
        tracing::warn!(host = manager, service = name, error = %e, "rollback failed");
    }
}
