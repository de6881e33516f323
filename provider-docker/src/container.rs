//! Workload on one Docker host (its Tenant names no Cluster): a container `<tenant>_<name>`
//! with restart policy `unless-stopped` (once it has shown it runs), on a bridge network `nimbus-<tenant>` of that host,
//! labelled with the instance's address, so that containers nimbus did not create are never
//! touched.
//!
//! A container cannot be changed in place: a new spec makes a new container. It is created
//! next to the old one (`<name>.next`), the old one is stopped (it holds the host ports), the
//! new one started and watched for a moment; if it exits, it is removed and the old one is
//! started again, so that a broken image leaves the old container serving. Secrets are written
//! into the new container before it starts, at `/run/secrets/<KEY>` (`<KEY>_FILE` says
//! where); the container's labels record their keyed fingerprints, never the values.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerUpdateBody,
    HostConfig, NetworkCreateRequest, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    InspectNetworkOptions, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use nimbus_planner::plan::Observed;
use nimbus_providers::ProviderError;
use nimbus_schemas::{EnvValue, PortMapping, Protocol, PublishMode, WorkloadSpec};
use serde_json::{Value, json};

use crate::engine::{failed, is_missing, labelled};
use crate::labels::{ADDRESS_LABEL, MANAGED_LABEL};
use crate::secrets::EnvSecret;
use crate::service::{args_of, network_name, service_name};

/// Each secret's keyed fingerprint, as a label of the container: `dev.nimbus.secret.<KEY>`.
const SECRET_LABEL: &str = "dev.nimbus.secret.";

/// How long a new container must keep running before it counts as started.
const SETTLE: Duration = Duration::from_secs(2);

/// How long a container is given to stop before it is killed.
const STOP_SECONDS: i32 = 10;

/// A Workload's desired spec as this provider reads it.
#[derive(Debug)]
pub struct Parsed {
    pub spec: WorkloadSpec,
    /// Its env secrets (values only when the executor delivered them).
    pub secrets: Vec<EnvSecret>,
    /// The host the scheduler chose (`host`, which the planner adds to a Workload placed by
    /// selector).
    pub host: Option<String>,
}

impl Parsed {
    pub fn new(address: &str, value: &Value) -> Result<Parsed, ProviderError> {
        let mut value = value.clone();
        let secrets = crate::secrets::take(&mut value);
        let host = match &mut value {
            Value::Object(map) => map
                .remove("host")
                .and_then(|h| h.as_str().map(str::to_owned)),
            _ => None,
        };
        let spec = serde_json::from_value(value)
            .map_err(|e| ProviderError::Failed(format!("{address}: not a Workload spec: {e}")))?;
        Ok(Parsed {
            spec,
            secrets,
            host,
        })
    }

    /// The one host the container runs on: the scheduler's choice, or the one its placement
    /// names.
    pub fn host_of(&self, address: &str) -> Result<String, ProviderError> {
        if let Some(host) = &self.host {
            return Ok(host.clone());
        }
        match self.spec.placement.as_ref().map(|p| p.hosts.as_slice()) {
            Some([host]) => Ok(host.clone()),
            _ => Err(ProviderError::Failed(format!(
                "{address}: its tenant names no cluster, so it runs as a container on one Docker host, and no host was chosen for it"
            ))),
        }
    }
}

/// The container named `name` when nimbus made it for `address`; an error when someone else
/// did.
async fn inspect_ours(
    docker: &Docker,
    host: &str,
    address: &str,
    name: &str,
) -> Result<Option<ContainerInspectResponse>, ProviderError> {
    match docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(container) => {
            let labels = container.config.as_ref().and_then(|c| c.labels.as_ref());
            if labelled(address, labels) {
                Ok(Some(container))
            } else {
                Err(ProviderError::Failed(format!(
                    "{address}: a container named {name} exists on Host/{host} and nimbus did not create it; it is left alone (rename the workload, or remove that container)"
                )))
            }
        }
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(failed(host, &format!("cannot read container {name}"), &e)),
    }
}

fn running(container: &ContainerInspectResponse) -> bool {
    container.state.as_ref().and_then(|s| s.status) == Some(ContainerStateStatusEnum::RUNNING)
}

/// Each published port as the engine keys it (`8000/tcp`), with its host port.
fn bindings_of(spec: &WorkloadSpec) -> BTreeMap<String, String> {
    spec.ports
        .iter()
        .map(|p| {
            let protocol = match p.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            (
                format!("{}/{protocol}", p.port.0),
                p.host_port.unwrap_or(p.port).0.to_string(),
            )
        })
        .collect()
}

/// The Workload as the container shows it, in the form of `desired` where it matches field by
/// field (so that only what differs is a change). `image_defaults` are the image's own env
/// and command, which are not the Workload's.
fn observed_spec(
    container: &ContainerInspectResponse,
    image_defaults: &(Vec<String>, Vec<String>),
    desired: &WorkloadSpec,
    secrets: &[EnvSecret],
) -> Value {
    let config = container.config.clone().unwrap_or_default();
    let host_config = container.host_config.clone().unwrap_or_default();
    let mut out = json!({
        "image": config.image.unwrap_or_default(),
        "replicas": u32::from(running(container)),
    });
    if let Some(tenant) = &desired.tenant {
        out["tenant"] = json!(tenant);
    }
    crate::service::show_limits(
        &mut out,
        host_config.nano_cpus.filter(|n| *n > 0),
        host_config.memory.filter(|m| *m > 0),
    );
    let (image_env, image_cmd) = image_defaults;
    let mut env: BTreeMap<String, Value> = config
        .env
        .unwrap_or_default()
        .iter()
        .filter(|e| !image_env.contains(e))
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let labels = config.labels.unwrap_or_default();
    for secret in secrets {
        let file = format!("{}_FILE", secret.key);
        if env.get(&file) == Some(&json!(secret.path())) {
            env.remove(&file);
        }
        if let Some(fingerprint) = labels.get(&format!("{SECRET_LABEL}{}", secret.key)) {
            env.insert(
                secret.key.clone(),
                json!({"secret": secret.reference, "fingerprint": fingerprint}),
            );
        }
    }
    if !env.is_empty() {
        out["env"] = json!(env);
    }
    let cmd = config.cmd.unwrap_or_default();
    match &desired.command {
        Some(command) if args_of(command) == cmd => out["command"] = json!(command),
        _ if cmd != *image_cmd && !cmd.is_empty() => out["command"] = json!(cmd),
        _ => {}
    }
    let bound: BTreeMap<String, String> = host_config
        .port_bindings
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, bindings)| {
            let host_port = bindings?.into_iter().find_map(|b| b.host_port)?;
            Some((key, host_port))
        })
        .collect();
    if bound == bindings_of(desired) {
        if !desired.ports.is_empty() {
            out["ports"] = json!(desired.ports);
        }
    } else if !bound.is_empty() {
        let seen: Vec<PortMapping> = bound
            .iter()
            .filter_map(|(key, host_port)| {
                let (port, protocol) = key.split_once('/')?;
                Some(PortMapping {
                    port: nimbus_schemas::Port(port.parse().ok()?),
                    host_port: Some(nimbus_schemas::Port(host_port.parse().ok()?)),
                    protocol: if protocol == "udp" {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    },
                    mode: Some(PublishMode::Host),
                })
            })
            .collect();
        out["ports"] = json!(seen);
    }
    // Where it was found is where it runs.
    if let Some(placement) = &desired.placement {
        out["placement"] = json!(placement);
    }
    out
}

/// The image's own env and command: what a container shows that the Workload did not set.
async fn image_defaults(docker: &Docker, image: &str) -> (Vec<String>, Vec<String>) {
    match docker.inspect_image(image).await {
        Ok(inspect) => {
            let config = inspect.config.unwrap_or_default();
            (
                config.env.unwrap_or_default(),
                config.cmd.unwrap_or_default(),
            )
        }
        Err(_) => (Vec::new(), Vec::new()),
    }
}

/// What the host runs for the Workload: absent, or its spec as the container shows it.
pub async fn observe(
    docker: &Docker,
    host: &str,
    address: &str,
    desired: &Parsed,
) -> Result<Observed, ProviderError> {
    let (spec, secrets) = (&desired.spec, &desired.secrets);
    let Some(container) = inspect_ours(docker, host, address, &service_name(address)).await? else {
        return Ok(Observed::Absent);
    };
    let image = container
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let defaults = image_defaults(docker, &image).await;
    let mut seen = observed_spec(&container, &defaults, spec, secrets);
    // Where it was found.
    if desired.host.is_some() {
        seen["host"] = json!(host);
    }
    Ok(Observed::Present(seen))
}

/// The image on the host: there already, or pulled.
async fn ensure_image(
    docker: &Docker,
    host: &str,
    address: &str,
    image: &str,
) -> Result<String, ProviderError> {
    if let Ok(found) = docker.inspect_image(image).await {
        return Ok(found.id.unwrap_or_default());
    }
    let mut pull = docker.create_image(
        Some(CreateImageOptionsBuilder::new().from_image(image).build()),
        None,
        None,
    );
    while let Some(step) = pull.next().await {
        if let Err(e) = step {
            let text = match &e {
                bollard::errors::Error::DockerResponseServerError { message, .. } => {
                    message.clone()
                }
                other => other.to_string(),
            };
            return Err(ProviderError::field(
                "image",
                format!(
                    "{address}: image {image} is not on Host/{host} and cannot be pulled: {text}"
                ),
            ));
        }
    }
    docker
        .inspect_image(image)
        .await
        .map(|found| found.id.unwrap_or_default())
        .map_err(|e| {
            failed(
                host,
                &format!("{address}: image {image} was pulled but"),
                &e,
            )
        })
}

/// The tenant's bridge network on this host, made when missing. One of that name nimbus did
/// not make is an error.
async fn ensure_network(docker: &Docker, host: &str, tenant: &str) -> Result<(), ProviderError> {
    let name = network_name(tenant);
    let owner = format!("Tenant/{tenant}");
    match docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await
    {
        Ok(network) if labelled(&owner, network.labels.as_ref()) => Ok(()),
        Ok(_) => Err(ProviderError::Failed(format!(
            "{owner}: a network named {name} exists on Host/{host} and nimbus did not create it"
        ))),
        Err(e) if is_missing(&e) => docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".to_owned()),
                labels: Some(HashMap::from([
                    (ADDRESS_LABEL.to_owned(), owner),
                    (MANAGED_LABEL.to_owned(), "nimbus".to_owned()),
                ])),
                ..NetworkCreateRequest::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| failed(host, &format!("cannot create network {name}"), &e)),
        Err(e) => Err(failed(host, &format!("cannot read network {name}"), &e)),
    }
}

/// The tenant's network goes with the last container on it.
async fn prune_network(docker: &Docker, tenant: &str) {
    let name = network_name(tenant);
    let owner = format!("Tenant/{tenant}");
    if let Ok(network) = docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await
        && labelled(&owner, network.labels.as_ref())
        && network.containers.as_ref().is_none_or(HashMap::is_empty)
        && let Err(error) = docker.remove_network(&name).await
    {
        tracing::warn!(network = name, %error, "cannot remove the tenant's network");
    }
}

fn create_body(
    address: &str,
    spec: &WorkloadSpec,
    secrets: &[EnvSecret],
    tenant: &str,
) -> ContainerCreateBody {
    let mut labels = HashMap::from([
        (ADDRESS_LABEL.to_owned(), address.to_owned()),
        (MANAGED_LABEL.to_owned(), "nimbus".to_owned()),
    ]);
    for secret in secrets {
        labels.insert(
            format!("{SECRET_LABEL}{}", secret.key),
            secret.fingerprint.clone(),
        );
    }
    let bindings = bindings_of(spec);
    let nano = spec.cpu.map(|c| (c.millicores * 1_000_000) as i64);
    let memory = spec.memory.map(|m| m.bytes as i64);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.as_ref().map(args_of),
        env: Some(crate::service::env_of(spec, secrets)),
        labels: Some(labels),
        exposed_ports: (!bindings.is_empty()).then(|| bindings.keys().cloned().collect()),
        host_config: Some(HostConfig {
            nano_cpus: nano,
            memory,
            memory_reservation: memory,
            port_bindings: Some(
                bindings
                    .into_iter()
                    .map(|(key, host_port)| {
                        (
                            key,
                            Some(vec![PortBinding {
                                host_ip: None,
                                host_port: Some(host_port),
                            }]),
                        )
                    })
                    .collect(),
            ),
            // Until it has shown it runs (see `apply`): a container that exits must stay
            // exited, with its exit code, not be restarted.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            network_mode: Some(network_name(tenant)),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// A tar archive of the secrets' files under `run/secrets/`, readable by the container's
/// user (as Docker's own secrets are: mode 0444, owned by root).
fn secrets_archive(secrets: &[EnvSecret]) -> Vec<u8> {
    fn header(name: &str, mode: u32, size: usize, directory: bool) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, width: usize, value: u64| {
            let text = format!("{value:0w$o}\0", w = width - 1);
            h[at..at + width].copy_from_slice(text.as_bytes());
        };
        octal(&mut h, 100, 8, u64::from(mode));
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, size as u64);
        octal(&mut h, 136, 12, 0);
        h[156] = if directory { b'5' } else { b'0' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }
    let mut out = Vec::new();
    out.extend_from_slice(&header("run/", 0o755, 0, true));
    out.extend_from_slice(&header("run/secrets/", 0o755, 0, true));
    for secret in secrets {
        let value = secret.value.as_deref().unwrap_or_default().as_bytes();
        out.extend_from_slice(&header(
            &format!("run/secrets/{}", secret.key),
            0o444,
            value.len(),
            false,
        ));
        out.extend_from_slice(value);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

async fn remove(docker: &Docker, host: &str, name: &str) -> Result<(), ProviderError> {
    match docker
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(failed(host, &format!("cannot remove container {name}"), &e)),
    }
}

async fn stop(docker: &Docker, host: &str, name: &str) -> Result<(), ProviderError> {
    match docker
        .stop_container(
            name,
            Some(StopContainerOptionsBuilder::new().t(STOP_SECONDS).build()),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304 | 404,
            ..
        }) => Ok(()),
        Err(e) => Err(failed(host, &format!("cannot stop container {name}"), &e)),
    }
}

/// Starts a container and watches it for a moment: one that exits, or restarts, did not
/// start, and the reason says how it ended.
async fn start(docker: &Docker, host: &str, name: &str) -> Result<(), String> {
    docker
        .start_container(
            name,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            other => other.to_string(),
        })?;
    let begun = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let inspect = docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| format!("cannot read container {name} on Host/{host}: {e}"))?;
        let state = inspect.state.clone().unwrap_or_default();
        let restarted = inspect.restart_count.unwrap_or(0) > 0;
        if !running(&inspect) || restarted {
            let code = state.exit_code.unwrap_or(0);
            let error = state.error.filter(|e| !e.is_empty());
            return Err(format!(
                "it exits at once (exit code {code}{})",
                error.map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        if begun.elapsed() >= SETTLE {
            return Ok(());
        }
    }
}

/// Brings the host's container to the Workload's spec. Returns the image's id.
pub async fn apply(
    docker: &Docker,
    host: &str,
    address: &str,
    spec: &WorkloadSpec,
    secrets: &[EnvSecret],
    tenant: &str,
) -> Result<String, ProviderError> {
    if !spec.volumes.is_empty() {
        return Err(ProviderError::Failed(format!(
            "{address}: volumes are not mounted by the docker provider in this release; remove `volumes` or run it elsewhere"
        )));
    }
    let name = service_name(address);
    let image_id = ensure_image(docker, host, address, &spec.image).await?;
    ensure_network(docker, host, tenant).await?;
    let existing = inspect_ours(docker, host, address, &name).await?;
    let was_running = existing.as_ref().is_some_and(running);
    if let Some(container) = &existing {
        let defaults = image_defaults(docker, &spec.image).await;
        let mut seen = observed_spec(container, &defaults, spec, secrets);
        let mut want = desired_form(spec, secrets);
        for value in [&mut seen, &mut want] {
            if let Value::Object(map) = value {
                map.remove("replicas");
            }
        }
        if seen == want {
            // The same container: only whether it runs.
            match (spec.replicas > 0, was_running) {
                (true, false) => start(docker, host, &name).await.map_err(|why| {
                    ProviderError::Failed(format!(
                        "{address}: container {name} on Host/{host}: {why}"
                    ))
                })?,
                (false, true) => stop(docker, host, &name).await?,
                _ => {}
            }
            return Ok(image_id);
        }
    }
    // A new container next to the old one, which keeps serving until the new one starts.
    let next = format!("{name}.next");
    if inspect_ours(docker, host, address, &next).await?.is_some() {
        remove(docker, host, &next).await?;
    }
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&next).build()),
            create_body(address, spec, secrets, tenant),
        )
        .await
        .map_err(|e| {
            failed(
                host,
                &format!("{address}: cannot create container {name}"),
                &e,
            )
        })?;
    if !secrets.is_empty() {
        let archive = secrets_archive(secrets);
        if let Err(e) = docker
            .upload_to_container(
                &next,
                Some(UploadToContainerOptionsBuilder::new().path("/").build()),
                bollard::body_full(archive.into()),
            )
            .await
        {
            remove(docker, host, &next).await?;
            return Err(failed(
                host,
                &format!("{address}: cannot give container {name} its secrets"),
                &e,
            ));
        }
    }
    // The old one holds the host ports.
    if was_running {
        stop(docker, host, &name).await?;
    }
    if spec.replicas > 0
        && let Err(why) = start(docker, host, &next).await
    {
        remove(docker, host, &next).await?;
        let restored = if was_running {
            match start(docker, host, &name).await {
                Ok(()) => "; the previous container was started again",
                Err(_) => "; the previous container could not be started again",
            }
        } else {
            ""
        };
        return Err(ProviderError::Failed(format!(
            "{address}: container {name} on Host/{host} did not start: {why}{restored}"
        )));
    }
    docker
        .update_container(
            &next,
            ContainerUpdateBody {
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..ContainerUpdateBody::default()
            },
        )
        .await
        .map_err(|e| {
            failed(
                host,
                &format!("cannot set the restart policy of {name}"),
                &e,
            )
        })?;
    if existing.is_some() {
        remove(docker, host, &name).await?;
    }
    docker
        .rename_container(
            &next,
            RenameContainerOptionsBuilder::new().name(&name).build(),
        )
        .await
        .map_err(|e| {
            failed(
                host,
                &format!("cannot rename container {next} to {name}"),
                &e,
            )
        })?;
    Ok(image_id)
}

/// The desired spec in the form [`observed_spec`] gives (secrets with their fingerprints).
pub fn desired_form(spec: &WorkloadSpec, secrets: &[EnvSecret]) -> Value {
    let mut out = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(Value::Object(env)) = out.get_mut("env") {
        for secret in secrets {
            env.insert(
                secret.key.clone(),
                json!({"secret": secret.reference, "fingerprint": secret.fingerprint}),
            );
        }
    }
    let schema = crate::schema();
    if let Some(kind) = schema
        .kinds
        .iter()
        .find(|k| k.kind == nimbus_schemas::Kind::Workload)
    {
        kind.normalize(&mut out);
    }
    // Env values as the engine keeps them: text.
    if let Some(Value::Object(env)) = out.get_mut("env") {
        for (key, value) in env.iter_mut() {
            if matches!(spec.env.get(key), Some(EnvValue::Value(_))) && !value.is_string() {
                *value = json!(value.to_string());
            }
        }
    }
    out
}

/// Removes the Workload's container (and one left half made), and the tenant's network when
/// no container is left on it.
pub async fn delete(
    docker: &Docker,
    host: &str,
    address: &str,
    tenant: &str,
) -> Result<(), ProviderError> {
    let name = service_name(address);
    for each in [format!("{name}.next"), name] {
        if inspect_ours(docker, host, address, &each).await?.is_some() {
            stop(docker, host, &each).await?;
            remove(docker, host, &each).await?;
        }
    }
    prune_network(docker, tenant).await;
    Ok(())
}
