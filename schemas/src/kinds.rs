//! The spec of every manifest kind in v1alpha1 (SPEC §3), with the defaults SPEC gives.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::quantity::{Bytes, Cpu};
use crate::values::{Cidr, FileMode, Labels, Port, ScalarText, SecretRef, StringOrList};

pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_SSH_USER: &str = "root";
pub const DEFAULT_OVERLAY_SUBNET: &str = "10.106.103.0/24";
pub const DEFAULT_WIREGUARD_PORT: u16 = 51820;
/// Seconds between WireGuard keepalives to each peer: without them a pair whose first packet
/// is lost can stall (seen on the test bed).
pub const DEFAULT_PERSISTENT_KEEPALIVE: u16 = 25;
pub const DEFAULT_PARALLELISM: u32 = 10;

fn default_ssh_port() -> Port {
    Port(DEFAULT_SSH_PORT)
}
fn default_overlay_subnet() -> Cidr {
    match DEFAULT_OVERLAY_SUBNET.parse() {
        Ok(cidr) => cidr,
        Err(message) => unreachable!("the default subnet is valid: {message}"),
    }
}
fn default_wireguard_port() -> Port {
    Port(DEFAULT_WIREGUARD_PORT)
}
fn default_confirm_timeout() -> u16 {
    30
}
fn default_persistent_keepalive() -> u16 {
    DEFAULT_PERSISTENT_KEEPALIVE
}
fn default_parallelism() -> u32 {
    DEFAULT_PARALLELISM
}
fn default_true() -> bool {
    true
}
fn default_replicas() -> u32 {
    1
}
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `metadata` of every document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// A DNS-1123 label: lower-case letters, digits and `-`, at most 63 characters.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Where nimbus keeps its state: a SQLite path, or a PostgreSQL URL.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateSettings {
    /// Path of the SQLite database, relative to the repository; default `.nimbus/state.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `postgres://...` for a shared PostgreSQL backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The PostgreSQL password, as the age secret of this name (`secrets/NAME.age`),
    /// decrypted with the identity of `NIMBUS_AGE_IDENTITY` or `secrets.identityFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<String>,
}

impl<'de> Deserialize<'de> for StateSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Long {
            #[serde(default)]
            path: Option<String>,
            #[serde(default)]
            url: Option<String>,
            #[serde(default)]
            password_secret: Option<String>,
        }
        struct StateVisitor;
        impl<'de> Visitor<'de> for StateVisitor {
            type Value = StateSettings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a state path, or `{path: ...}` or `{url: postgres://...}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StateSettings, E> {
                if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                    Ok(StateSettings {
                        path: None,
                        url: Some(v.to_owned()),
                        password_secret: None,
                    })
                } else {
                    Ok(StateSettings {
                        path: Some(v.to_owned()),
                        url: None,
                        password_secret: None,
                    })
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StateSettings, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(StateSettings {
                    path: long.path,
                    url: long.url,
                    password_secret: long.password_secret,
                })
            }
        }
        deserializer.deserialize_any(StateVisitor)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshSettings {
    /// Default login user for hosts that do not set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Private key used to log in, relative to the repository or absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
    /// Log in with the keys of the ssh-agent that `SSH_AUTH_SOCK` names (when there is no
    /// `identityFile`). Either one turns SSH on for Host, File and Service.
    #[serde(default, skip_serializing_if = "is_default")]
    pub agent: bool,
    /// A known_hosts file whose keys pin the hosts' keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
    /// Record the first key a host offers and pin it from then on. Off unless set.
    #[serde(default, skip_serializing_if = "is_default")]
    pub trust_on_first_use: bool,
    /// Seconds to wait for a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSettings {
    /// Public keys every secret is encrypted to: age X25519 (`age1...`), `ssh-ed25519 ...` or `ssh-rsa ...`.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The identity that decrypts secrets when neither `--identity` nor `NIMBUS_AGE_IDENTITY` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeletionBudget {
    /// Refuse a plan that deletes more than this many resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_resources: Option<u32>,
    /// Refuse a plan that deletes more than this percentage of the resources in state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_percent: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySettings {
    /// Refuse to reconcile commits that are not signed by an allowed signer.
    #[serde(default, skip_serializing_if = "is_default")]
    pub require_signed_commits: bool,
    /// SSH public keys allowed to sign commits, as in git's `gpg.ssh.allowedSignersFile`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_signers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_budget: Option<DeletionBudget>,
}

/// `kind: Repository`: repository-wide settings, one per repository, in `nimbus.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositorySpec {
    #[serde(default)]
    pub state: StateSettings,
    /// How many changes are applied at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    #[serde(default)]
    pub ssh: SshSettings,
    #[serde(default)]
    pub secrets: SecretSettings,
    #[serde(default)]
    pub policy: PolicySettings,
    /// The S3 endpoint that `type: s3` Volumes are buckets on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Settings>,
    /// The k3s binary for every `k3s` Cluster that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s: Option<K3sSource>,
    /// Out-of-process providers: executables that speak nimbus's plugin protocol over stdio
    /// and serve the kinds they name (docs/protocol.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderPlugin>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The environment commands load when neither `--env` nor `NIMBUS_ENV` chooses one
    /// (docs/modules.md); without it, a repository with environments needs `--env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_environment: Option<String>,
    /// Where `nimbus reconcile` sends its events (docs/notifications.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Receiver>,
}

/// What a receiver is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverType {
    /// JSON POSTed to `url`, signed with HMAC-SHA256 when `secret` names a key.
    Webhook,
    /// A Slack-compatible incoming webhook at `url` (`{"text": ...}`).
    Slack,
    /// Mail through the SMTP server `smtp`, from `from` to `to`.
    Email,
}

/// An event of `nimbus reconcile`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A commit was applied in full.
    RunApplied,
    /// A run ended with failures (or instances not observed).
    RunFailed,
    /// A commit was not applied: it does not validate or is not signed as the policy wants.
    CommitRefused,
    /// A drift check found and corrected differences.
    DriftCorrected,
    /// One instance failed in a run.
    InstanceFailed,
    /// This replica became the leader.
    LeaderChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::RunApplied,
        EventKind::RunFailed,
        EventKind::CommitRefused,
        EventKind::DriftCorrected,
        EventKind::InstanceFailed,
        EventKind::LeaderChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunApplied => "run-applied",
            EventKind::RunFailed => "run-failed",
            EventKind::CommitRefused => "commit-refused",
            EventKind::DriftCorrected => "drift-corrected",
            EventKind::InstanceFailed => "instance-failed",
            EventKind::LeaderChanged => "leader-changed",
        }
    }
}

/// `notifications: [{name, type, ...}]`: one receiver of the daemon's events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receiver {
    /// Names the receiver in logs and its outbox.
    pub name: String,
    #[serde(rename = "type")]
    pub receiver_type: ReceiverType,
    /// `http(s)://...` (webhook, slack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The age secret (`secrets/NAME.age`) whose value signs a webhook's body
    /// (`X-Nimbus-Signature: hmac-sha256:HEX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `HOST:PORT` of the SMTP server (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// The events it wants (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventKind>,
    /// Only events about these tenants' instances (and events about no instance, such as a
    /// refused commit); default: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
}

/// `s3: {endpoint, region, accessKeyId, secretAccessKey}`: where `type: s3` Volumes live.
/// Requests are signed with SigV4; the keys come from the repository's secrets, else from
/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Settings {
    /// `http(s)://HOST[:PORT]`; buckets are addressed by path (`ENDPOINT/BUCKET`).
    pub endpoint: String,
    /// The signing region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The access key id, as text or `{secret: NAME}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<EnvValue>,
    /// The secret access key: `{secret: NAME}` only, never as text in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<EnvValue>,
}

/// The region S3 requests are signed for when the Repository names none.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// `providers: [{name, command, kinds}]`: a provider plugin, run as a child process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderPlugin {
    /// The provider's name, recorded in state with each instance it serves.
    pub name: String,
    /// The program and its arguments; a relative program path is relative to the repository.
    pub command: StringOrList,
    /// The kinds it serves (`Volume`, `Network`, ...), instead of their built-in providers.
    pub kinds: Vec<crate::Kind>,
    /// Settings handed to the plugin's `configure`, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// Seconds a call may take before the plugin counts as hung (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
}

impl ProviderPlugin {
    /// The program and its arguments.
    pub fn argv(&self) -> Vec<String> {
        match &self.command {
            StringOrList::String(text) => text.split_whitespace().map(str::to_owned).collect(),
            StringOrList::List(items) => items.clone(),
        }
    }
}

impl Default for RepositorySpec {
    fn default() -> Self {
        RepositorySpec {
            state: StateSettings::default(),
            parallelism: DEFAULT_PARALLELISM,
            ssh: SshSettings::default(),
            secrets: SecretSettings::default(),
            policy: PolicySettings::default(),
            s3: None,
            k3s: None,
            providers: Vec::new(),
            depends_on: Vec::new(),
            default_environment: None,
            notifications: Vec::new(),
        }
    }
}

/// Declared capacity of a host, used by the scheduler until facts are observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capacity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
}

/// `kind: Host`: a machine reachable over SSH.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    /// IP address or DNS name.
    pub address: String,
    #[serde(default = "default_ssh_port")]
    pub port: Port,
    /// The login user; the Repository's `ssh.user`, else `root`, when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The host's public key, pinned: `ssh-ed25519 AAAA...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// A bastion Host to reach this one through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// The folders on this host that Volumes may use: a Volume's `pool` (and so what it
    /// exports) lies under one of them. `[/srv/nimbus]` when left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_roots: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// `kind: File`: a file on the hosts a selector matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSpec {
    /// Labels selecting the hosts, `{role: web}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Labels>,
    /// One host by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Absolute path on the host.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A path in the repository whose content is copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// An age-encrypted secret, `secrets/NAME.age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    #[default]
    Running,
    Stopped,
}

/// `kind: Service`: a systemd unit on hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The unit file's content, written to `/etc/systemd/system/NAME.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub state: ServiceState,
    /// File addresses whose change restarts the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// `kind: Network`: a full-mesh WireGuard overlay between hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// Labels selecting the member hosts.
    #[serde(default)]
    pub members: Labels,
    #[serde(default = "default_overlay_subnet")]
    pub subnet: Cidr,
    #[serde(default = "default_wireguard_port")]
    pub listen_port: Port,
    /// Fixed overlay addresses by host name; others are allocated and kept in state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, String>,
    /// The WireGuard interface on each member (at most 15 characters); `wg-NAME` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Seconds between keepalive packets to each peer (0: none).
    #[serde(default = "default_persistent_keepalive")]
    pub persistent_keepalive: u16,
    /// Seconds a change on a member that nimbus reaches through this network has to be
    /// confirmed before that member restores its previous configuration by itself.
    #[serde(default = "default_confirm_timeout")]
    pub confirm_timeout: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterType {
    DockerSwarm,
    K3s,
}

impl fmt::Display for ClusterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterType::DockerSwarm => "docker-swarm",
            ClusterType::K3s => "k3s",
        })
    }
}

/// `kind: Cluster`: a container cluster on hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(rename = "type")]
    pub cluster_type: ClusterType,
    /// Labels selecting the managers (docker-swarm) or servers (k3s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managers: Option<Labels>,
    /// The k3s spelling of `managers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Labels>,
    /// Labels selecting the workers (docker-swarm) or agents (k3s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Labels>,
    /// The k3s spelling of `workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Labels>,
    /// The Network the cluster's nodes talk over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `k3s`: where its binary comes from (else the Repository's `k3s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s: Option<K3sSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// `k3s: {source, sha256}`: the k3s binary, pinned: an `http(s)://` URL, or a file in the
/// repository, and its SHA-256 (64 hex digits), checked on every node it is copied to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K3sSource {
    pub source: String,
    pub sha256: String,
}

impl NetworkSpec {
    /// The WireGuard interface of the Network called `name` on its members: `interface`, else
    /// `wg-NAME` (longer than Linux's 15 characters is refused when the manifests are checked).
    pub fn interface_name(&self, name: &str) -> String {
        self.interface
            .clone()
            .unwrap_or_else(|| format!("wg-{name}"))
    }
}

impl ClusterSpec {
    /// The manager (or server) selector, whichever spelling was used.
    pub fn manager_selector(&self) -> Option<&Labels> {
        self.managers.as_ref().or(self.servers.as_ref())
    }

    /// The worker (or agent) selector, whichever spelling was used.
    pub fn worker_selector(&self) -> Option<&Labels> {
        self.workers.as_ref().or(self.agents.as_ref())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<u32>,
}

/// `kind: Tenant`: an isolated tenant on a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSpec {
    /// The Cluster its Workloads run on. Without one, each of its Workloads runs as a
    /// container on the one Docker host its `placement.hosts` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default)]
    pub quota: Quota,
    /// Who may change `tenants/<name>/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// How a published port answers: on every node through the routing mesh (`ingress`, Docker's
/// default), or only on the nodes that run a task (`host`; the only mode where the kernel has
/// no IPVS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    #[default]
    Ingress,
    Host,
}

/// A port a workload exposes: `80`, `"8080:80/tcp"` or `{port: 80, hostPort: 8080, mode: host}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    /// The port inside the container.
    pub port: Port,
    /// The port published on the hosts, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<Port>,
    #[serde(default)]
    pub protocol: Protocol,
    /// How the published port answers (`ingress` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PublishMode>,
}

impl PortMapping {
    fn parse_short(text: &str) -> Result<Self, String> {
        let (ports, protocol) = match text.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some((_, other)) => {
                return Err(format!(
                    "unknown protocol `{other}` in `{text}`: use tcp or udp"
                ));
            }
            None => (text, Protocol::Tcp),
        };
        let number = |s: &str| -> Result<Port, String> {
            match s.parse::<u16>() {
                Ok(p) if p > 0 => Ok(Port(p)),
                _ => Err(format!("`{s}` in `{text}` is not a port from 1 to 65535")),
            }
        };
        let (host_port, port) = match ports.split_once(':') {
            Some((host, container)) => (Some(number(host)?), number(container)?),
            None => (None, number(ports)?),
        };
        Ok(PortMapping {
            port,
            host_port,
            protocol,
            mode: None,
        })
    }
}

impl<'de> Deserialize<'de> for PortMapping {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Long {
            port: Port,
            #[serde(default, alias = "host-port")]
            host_port: Option<Port>,
            #[serde(default)]
            protocol: Protocol,
            #[serde(default)]
            mode: Option<PublishMode>,
        }
        struct PortVisitor;
        impl<'de> Visitor<'de> for PortVisitor {
            type Value = PortMapping;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a port: `80`, `\"8080:80/tcp\"` or `{port: 80, hostPort: 8080, mode: host}`",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortMapping, E> {
                PortMapping::parse_short(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortMapping, E> {
                PortMapping::parse_short(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortMapping, E> {
                PortMapping::parse_short(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PortMapping, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PortMapping {
                    port: long.port,
                    host_port: long.host_port,
                    protocol: long.protocol,
                    mode: long.mode,
                })
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// An environment value: plain text, or `{secret: NAME}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EnvValue {
    Value(String),
    Secret { secret: SecretRef },
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SecretForm {
            secret: SecretRef,
        }
        struct EnvVisitor;
        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, or `{secret: NAME}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::Value(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue::Value(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue::Value(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue::Value(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Ok(EnvValue::Value(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvValue, A::Error> {
                let form = SecretForm::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EnvValue::Secret {
                    secret: form.secret,
                })
            }
        }
        deserializer.deserialize_any(EnvVisitor)
    }
}

/// A volume mounted into a workload: `{name: data, path: /var/lib/data}` or `"data:/var/lib/data"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// The tenant's Volume.
    pub name: String,
    /// Where it is mounted in the container.
    pub path: String,
    #[serde(default)]
    pub read_only: bool,
}

impl<'de> Deserialize<'de> for VolumeMount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Long {
            name: String,
            path: String,
            #[serde(default, alias = "read-only")]
            read_only: bool,
        }
        struct MountVisitor;
        impl<'de> Visitor<'de> for MountVisitor {
            type Value = VolumeMount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a mount: `\"data:/var/lib/data\"` or `{name: data, path: /var/lib/data}`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VolumeMount, E> {
                let mut parts = v.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(name), Some(path), mode) if !name.is_empty() && path.starts_with('/') => {
                        let read_only = match mode {
                            None | Some("rw") => false,
                            Some("ro") => true,
                            Some(other) => {
                                return Err(E::custom(format!(
                                    "unknown mount mode `{other}` in `{v}`: use ro or rw"
                                )));
                            }
                        };
                        Ok(VolumeMount {
                            name: name.to_owned(),
                            path: path.to_owned(),
                            read_only,
                        })
                    }
                    _ => Err(E::custom(format!(
                        "`{v}` is not a mount: write `VOLUME:/absolute/path` (with `:ro` for read-only)"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VolumeMount, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(VolumeMount {
                    name: long.name,
                    path: long.path,
                    read_only: long.read_only,
                })
            }
        }
        deserializer.deserialize_any(MountVisitor)
    }
}

/// Where the scheduler may place a workload or VM: a label selector (`{role: web}`), or
/// host names (`{hosts: [web-1, web-2]}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub selector: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

impl<'de> Deserialize<'de> for Placement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PlacementVisitor;
        impl<'de> Visitor<'de> for PlacementVisitor {
            type Value = Placement;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("labels such as `{role: web}`, or `{hosts: [web-1, web-2]}`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Placement, A::Error> {
                let mut placement = Placement::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "hosts" {
                        placement.hosts = map.next_value::<StringOrList>().map(|v| match v {
                            StringOrList::String(s) => vec![s],
                            StringOrList::List(l) => l,
                        })?;
                    } else if key == "selector" {
                        let labels: Labels = map.next_value()?;
                        placement.selector.0.extend(labels.0);
                    } else {
                        let value: ScalarText = map.next_value()?;
                        placement.selector.0.insert(key, value.0);
                    }
                }
                Ok(placement)
            }
        }
        deserializer.deserialize_map(PlacementVisitor)
    }
}

/// `kind: Workload`: a containerised service of a tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    /// The Tenant; inferred from the folder under `tenants/<name>/` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub image: String,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// cpu requested by each replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Memory requested by each replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<StringOrList>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disk {
    pub size: Bytes,
    /// Base image of the disk: a path on the host, or an `http(s)://` URL with its `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The SHA-256 of the image a URL names (64 hex digits): the download is checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VmRuntime {
    #[default]
    Qemu,
    CloudHypervisor,
}

/// cloud-init user data: the text itself, or `{secret: NAME}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CloudInit {
    Content(String),
    Secret { secret: SecretRef },
}

impl<'de> Deserialize<'de> for CloudInit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match EnvValue::deserialize(deserializer)? {
            EnvValue::Value(text) => Ok(CloudInit::Content(text)),
            EnvValue::Secret { secret } => Ok(CloudInit::Secret { secret }),
        }
    }
}

/// `kind: VM`: a virtual machine on a host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    pub cpus: u32,
    pub memory: Bytes,
    pub disk: Disk,
    /// A Network the VM joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInit>,
    #[serde(default)]
    pub runtime: VmRuntime,
    /// A kernel to boot directly (files on the host), instead of the disk's own boot loader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<VmBoot>,
    /// Guest ports published on the host (qemu's user-mode networking).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<VmPort>,
    /// A Linux bridge on the host: the VM's network card is a tap device in it (made when
    /// missing) instead of qemu's user-mode networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// `boot` of a VM: a kernel, an initrd and a command line, as paths on its host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmBoot {
    pub kernel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
}

/// A guest port published on the VM's host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmPort {
    /// The port inside the guest.
    pub port: Port,
    /// The port on the host.
    pub host_port: Port,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    Nfs,
    Btrfs,
    S3,
}

/// `kind: Volume`: storage for a tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// The Tenant; inferred from the folder under `tenants/<name>/` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(rename = "type")]
    pub volume_type: VolumeType,
    pub size: Bytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `btrfs`: the folder on the host, on a btrfs file system, that holds the volumes
    /// (`/srv/nimbus/volumes` when left out); `nfs`: the folder that holds the exported
    /// directories (`/srv/nimbus/exports` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// `s3`: the bucket's name (`TENANT-NAME` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// `nfs`: who may mount the export: addresses, CIDRs or host names (everyone, `*`, when
    /// left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// The JSON Schemas of the types above that accept several spellings: editors must accept
/// every form the loader accepts.
mod schemas_of_shorthands {
    use std::borrow::Cow;

    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

    use super::*;

    impl JsonSchema for StateSettings {
        fn schema_name() -> Cow<'static, str> {
            "StateSettings".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "a SQLite path, `postgres://...`, or `{path: ...}` / `{url: ..., passwordSecret: NAME}`",
                "anyOf": [
                    {"type": "string"},
                    {"type": "object", "additionalProperties": false,
                     "properties": {"path": {"type": "string"}, "url": {"type": "string"},
                                    "passwordSecret": {"type": "string"}}}
                ]
            })
        }
    }

    impl JsonSchema for PortMapping {
        fn schema_name() -> Cow<'static, str> {
            "PortMapping".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "`80`, `\"8080:80/tcp\"` or `{port: 80, hostPort: 8080, protocol: tcp, mode: host}`",
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": 65535},
                    {"type": "string", "pattern": "^([0-9]+:)?[0-9]+(/(tcp|udp))?$"},
                    {"type": "object", "additionalProperties": false, "required": ["port"],
                     "properties": {
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "hostPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "protocol": {"enum": ["tcp", "udp"]},
                        "mode": {"enum": ["ingress", "host"]}
                     }}
                ]
            })
        }
    }

    impl JsonSchema for EnvValue {
        fn schema_name() -> Cow<'static, str> {
            "EnvValue".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "a value, or `{secret: NAME}`",
                "anyOf": [
                    {"type": ["string", "number", "boolean"]},
                    {"type": "object", "additionalProperties": false, "required": ["secret"],
                     "properties": {"secret": {"type": "string"}}}
                ]
            })
        }
    }

    impl JsonSchema for CloudInit {
        fn schema_name() -> Cow<'static, str> {
            "CloudInit".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "cloud-init user data, or `{secret: NAME}`",
                "anyOf": [
                    {"type": "string"},
                    {"type": "object", "additionalProperties": false, "required": ["secret"],
                     "properties": {"secret": {"type": "string"}}}
                ]
            })
        }
    }

    impl JsonSchema for VolumeMount {
        fn schema_name() -> Cow<'static, str> {
            "VolumeMount".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "`\"NAME:/path[:ro]\"` or `{name, path, readOnly}`",
                "anyOf": [
                    {"type": "string", "pattern": "^[^:]+:/[^:]*(:(ro|rw))?$"},
                    {"type": "object", "additionalProperties": false, "required": ["name", "path"],
                     "properties": {
                        "name": {"type": "string"},
                        "path": {"type": "string"},
                        "readOnly": {"type": "boolean"}
                     }}
                ]
            })
        }
    }

    impl JsonSchema for Placement {
        fn schema_name() -> Cow<'static, str> {
            "Placement".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "host labels such as `{role: web}`, or `{hosts: [web-1, web-2]}`",
                "type": "object",
                "properties": {
                    "hosts": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "selector": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
                },
                "additionalProperties": {"type": ["string", "number", "boolean"]}
            })
        }
    }
}
