//! Building a run's providers from the Repository and the session: the SSH provider for the
//! declared Hosts (with OpenSSH's key discovery and pinned host keys) and the Repository's
//! plugins. The reconciler hands in what it read and resolved (the Repository's settings, the
//! estate's [`Topology`], files of the revision, the `--identity` flag, keys recorded in
//! state, the environment); nothing here reads git or the model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nimbus_planner::resolve::Topology;
use nimbus_schemas::{Kind, RepositorySpec};

use crate::plugin::{PluginProvider, PluginSpec};
use crate::{Provider, Unavailable};

/// What configuring needs from the session.
pub struct Context<'a> {
    /// The Repository's settings, when it has a `nimbus.yaml`.
    pub repository: Option<&'a RepositorySpec>,
    /// The declared Hosts, Clusters, Tenants and Networks, as the manifests resolve them.
    pub topology: &'a Topology,
    /// The repository's root on disk.
    pub root: &'a Path,
    /// A repository file by its path, at the revision in use.
    pub read_file: &'a (dyn Fn(&str) -> std::io::Result<Vec<u8>> + Sync),
    /// `--identity`, when it is an SSH private key: it logs in before anything else.
    pub identity: Option<PathBuf>,
    /// Host keys pinned on first contact, by Host name (from state).
    pub recorded_host_keys: HashMap<String, String>,
    /// `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    /// The home directory whose `.ssh/` holds the default keys.
    pub home: Option<PathBuf>,
    /// A secret's value by its reference (`NAME` or `NAME#key`), decrypted for this run.
    pub secret: &'a (dyn Fn(&str) -> Result<String, String> + Sync),
    /// A variable of the session's environment.
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

impl Context<'_> {
    fn repository(&self) -> Option<&RepositorySpec> {
        self.repository
    }
}

/// The default keys OpenSSH tries, in its order.
pub const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// How nimbus logs in to hosts: a key file, or the agent's keys (an empty path).
pub fn login_key(context: &Context<'_>) -> Result<PathBuf, String> {
    let ssh = context
        .repository()
        .map(|r| r.ssh.clone())
        .unwrap_or_default();
    if let Some(key) = &context.identity {
        return Ok(key.clone());
    }
    if let Some(file) = &ssh.identity_file {
        return Ok(context.root.join(file));
    }
    let agent = context
        .agent_socket
        .as_ref()
        .filter(|s| !s.as_os_str().is_empty());
    if agent.is_some() {
        return Ok(PathBuf::new());
    }
    if ssh.agent {
        return Err(
            "the Repository sets ssh.agent, but SSH_AUTH_SOCK names no ssh-agent: start one \
             (eval $(ssh-agent); ssh-add KEY) or set ssh.identityFile"
                .to_owned(),
        );
    }
    if let Some(home) = &context.home {
        for name in DEFAULT_KEYS {
            let path = home.join(".ssh").join(name);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    Err(format!(
        "no SSH key to log in to the hosts with: set ssh.identityFile in the Repository, pass \
         --identity KEY, start an ssh-agent (SSH_AUTH_SOCK), or create ~/.ssh/{}",
        DEFAULT_KEYS.join(", ~/.ssh/")
    ))
}

/// The pinned key of a host from the Repository's known_hosts file.
fn known_hosts_key(context: &Context<'_>, name: &str, address: &str, port: u16) -> Option<String> {
    let path = context.repository()?.ssh.known_hosts.clone()?;
    // In the repository (at the revision being applied), unless the path is absolute.
    let bytes = if Path::new(&path).is_absolute() {
        std::fs::read(&path).ok()?
    } else {
        (context.read_file)(path.trim_start_matches("./")).ok()?
    };
    let text = String::from_utf8_lossy(&bytes);
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let hosts = parts.next()?;
        let (kind, key) = (parts.next()?, parts.next()?);
        hosts
            .split(',')
            .any(|h| h == name || h == address || h == format!("[{address}]:{port}"))
            .then(|| format!("{kind} {key}"))
    })
}

/// The run's SSH connections to the declared Hosts (opened on first use), or why there is no
/// key to log in with.
pub fn ssh_pool(context: &Context<'_>) -> Result<Arc<crate::ssh::Pool>, String> {
    if context.topology.hosts.is_empty() {
        // Nothing to log in to (a repository of buckets and standalone tenants): no key needed.
        return Ok(Arc::new(crate::ssh::Pool::new(Vec::new())));
    }
    let identity = login_key(context)?;
    let repository = context.repository().cloned().unwrap_or_default();
    let timeout = repository.ssh.connect_timeout.unwrap_or(10);
    let mut targets = Vec::new();
    for (name, host) in &context.topology.hosts {
        let name = name.as_str();
        let host_key = host
            .host_key
            .clone()
            .or_else(|| known_hosts_key(context, name, &host.address, host.port.0))
            .or_else(|| context.recorded_host_keys.get(name).cloned());
        targets.push(crate::ssh::SshTarget {
            name: name.to_owned(),
            address: host.address.clone(),
            port: host.port.0,
            user: host
                .user
                .clone()
                .or_else(|| repository.ssh.user.clone())
                .unwrap_or_else(|| nimbus_schemas::DEFAULT_SSH_USER.to_owned()),
            host_key: host_key.unwrap_or_default(),
            identity: identity.clone(),
            connect_timeout: Duration::from_secs(u64::from(timeout)),
            via: host.via.clone(),
            trust_on_first_use: repository.ssh.trust_on_first_use,
            agent: context.agent_socket.clone(),
        });
    }
    Ok(Arc::new(crate::ssh::Pool::new(targets)))
}

/// The SSH provider for the declared Hosts: Host, File and Service, on the run's connections.
/// Without a key to log in with, every instance it serves fails with the reason and what to
/// do.
/// The Network provider: this very binary as each member's agent, over the shared
/// connections.
pub fn mesh(pool: &Result<Arc<crate::ssh::Pool>, String>) -> Arc<dyn Provider> {
    let unavailable = |reason: String| -> Arc<dyn Provider> {
        Arc::new(Unavailable {
            name: crate::mesh::PROVIDER.to_owned(),
            reason,
            kinds: vec![Kind::Network],
        })
    };
    match (pool, crate::agent::Installer::of_current_exe()) {
        (Ok(pool), Ok(installer)) => {
            Arc::new(crate::mesh::MeshProvider::new(Arc::clone(pool), installer))
        }
        (Err(reason), _) => unavailable(reason.clone()),
        (_, Err(e)) => unavailable(e.to_string()),
    }
}

pub fn ssh(pool: &Result<Arc<crate::ssh::Pool>, String>) -> Arc<dyn Provider> {
    match pool {
        Ok(pool) => Arc::new(crate::hosts::HostsProvider::with_pool(Arc::clone(pool))),
        Err(reason) => Arc::new(Unavailable {
            name: crate::hosts::PROVIDER.to_owned(),
            reason: reason.clone(),
            kinds: vec![Kind::Host, Kind::File, Kind::Service],
        }),
    }
}

/// The S3 provider for `type: s3` Volumes: the Repository's `s3` endpoint, with its keys
/// from the repository's secrets (or as text, for the key id), else from
/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Without an endpoint or keys, every S3
/// Volume fails with the reason and what to do.
pub fn s3(context: &Context<'_>) -> Arc<dyn Provider> {
    let configured = || -> Result<crate::s3::S3Provider, String> {
        let settings = context
            .repository()
            .and_then(|r| r.s3.clone())
            .ok_or("the Repository names no S3 endpoint: set s3.endpoint in nimbus.yaml")?;
        let value =
            |field: &Option<nimbus_schemas::EnvValue>, variable: &str, name: &str| match field {
                Some(nimbus_schemas::EnvValue::Value(text)) => Ok(text.clone()),
                Some(nimbus_schemas::EnvValue::Secret { secret }) => (context.secret)(&secret.0)
                    .map(|v| v.trim_end_matches('\n').to_owned())
                    .map_err(|e| format!("s3.{name}: secret `{}`: {e}", secret.0)),
                None => (context.env)(variable)
                    .filter(|v| !v.is_empty())
                    .ok_or(format!(
                        "no S3 keys: set s3.{name} in the Repository (as {{secret: NAME}}) or \
                     {variable} in nimbus's environment"
                    )),
            };
        let config = crate::s3::S3Config {
            endpoint: settings.endpoint.trim_end_matches('/').to_owned(),
            region: settings
                .region
                .clone()
                .unwrap_or_else(|| nimbus_schemas::DEFAULT_S3_REGION.to_owned()),
            access_key_id: value(&settings.access_key_id, "AWS_ACCESS_KEY_ID", "accessKeyId")?,
            secret_access_key: value(
                &settings.secret_access_key,
                "AWS_SECRET_ACCESS_KEY",
                "secretAccessKey",
            )?,
        };
        crate::s3::S3Provider::new(config)
    };
    match configured() {
        Ok(provider) => Arc::new(provider),
        Err(reason) => Arc::new(Unavailable {
            name: crate::s3::PROVIDER.to_owned(),
            reason,
            kinds: vec![Kind::Volume],
        }),
    }
}

/// The Repository's plugins, each started and asked what it serves. A plugin that will not
/// start becomes a provider whose instances fail with the reason.
pub async fn plugins(context: &Context<'_>) -> Vec<Arc<dyn Provider>> {
    let Some(repository) = context.repository() else {
        return Vec::new();
    };
    let mut out: Vec<Arc<dyn Provider>> = Vec::new();
    for plugin in &repository.providers {
        let spec = PluginSpec {
            name: plugin.name.clone(),
            argv: plugin.argv(),
            kinds: plugin.kinds.clone(),
            settings: plugin.settings.clone().unwrap_or(serde_json::Value::Null),
            repository: context.root.to_owned(),
            timeout: Duration::from_secs(u64::from(plugin.timeout.unwrap_or(60).max(1))),
        };
        match PluginProvider::start(spec).await {
            Ok(provider) => out.push(Arc::new(provider)),
            Err(e) => {
                tracing::warn!(plugin = %plugin.name, error = %e, "a provider plugin is unavailable");
                out.push(Arc::new(Unavailable {
                    name: plugin.name.clone(),
                    reason: e.to_string(),
                    kinds: plugin.kinds.clone(),
                }));
            }
        }
    }
    out
}
