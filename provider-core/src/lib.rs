//! The nimbus provider contract, with no backend in it: the [`Provider`] trait, the types it
//! speaks, the [`Registry`] of a run and the plugin [`protocol`]. Providers with a heavy SDK
//! (bollard, kube) live in crates of their own that depend on this one; the built-in ones
//! (SSH hosts, plugins, the in-memory provider) are in `nimbus-providers`.
//!
//! A provider is named (its id, recorded in state with each instance it applies), describes
//! its kinds as data ([`ProviderSchema`]: replacement and sensitive fields, normalisation,
//! whether it takes secret values), observes a batch of instances per target (one call per
//! host, not per file), and applies one change at a time, returning what it then observes. The
//! message types are those of the plugin protocol ([`protocol`]), so that a provider in
//! another process (a plugin, the agent) and one in this process speak the same types.

pub mod protocol;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nimbus_planner::plan::{Change, Observed};
pub use nimbus_planner::plan::{KindSchema, ProviderSchema, Rules};
use nimbus_schemas::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One instance to observe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObserveRequest {
    pub address: String,
    pub kind: Kind,
    /// What git wants, so a provider can look at exactly what it will compare.
    pub desired: Option<Value>,
}

/// What applying a change left behind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Applied {
    /// The instance as observed right after the change; `Null` after a delete.
    #[serde(default)]
    pub observed: Value,
    /// Values generated on the way (keys, addresses), recorded in state.
    #[serde(default)]
    pub outputs: Value,
}

impl ProviderError {
    /// The same failure, its sentence starting with the instance it is the failure of (a
    /// terminal failure that does not start with it already).
    pub fn naming(self, address: &str) -> ProviderError {
        match self {
            ProviderError::Failed(reason) if !reason.starts_with(address) => {
                ProviderError::Failed(format!("{address}: {reason}"))
            }
            ProviderError::Field { field, message } if !message.starts_with(address) => {
                ProviderError::Field {
                    field,
                    message: format!("{address}: {message}"),
                }
            }
            other => other,
        }
    }

    /// The same failure, saying what was being done (`removing it from Host/n3: ...`).
    pub fn with_context(self, doing: &str) -> ProviderError {
        match self {
            ProviderError::Transient(reason) => {
                ProviderError::Transient(format!("{doing}: {reason}"))
            }
            ProviderError::Failed(reason) => ProviderError::Failed(format!("{doing}: {reason}")),
            ProviderError::Field { field, message } => ProviderError::Field {
                field,
                message: format!("{doing}: {message}"),
            },
            ProviderError::Bug(reason) => ProviderError::Bug(format!("{doing}: {reason}")),
        }
    }
}

/// The three kinds of failure, kept apart, each with the sentence a person reads; a terminal
/// failure can name the manifest field it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(into = "WireError", from = "WireError")]
pub enum ProviderError {
    /// Worth retrying with backoff: connection refused, timeouts.
    #[error("{0} (transient)")]
    Transient(String),
    /// Terminal for this instance: report it, skip its dependents, go on.
    #[error("{0}")]
    Failed(String),
    /// Terminal, and caused by one field of the instance's spec (named as plans name fields:
    /// `image`, `disk.image`, `env.KEY`, `ports[0]`): apply shows the manifest's file and line
    /// of that field with the message.
    #[error("{message}")]
    Field { field: String, message: String },
    /// A bug in nimbus (or in a plugin).
    #[error("bug in nimbus: {0}")]
    Bug(String),
}

/// A failure as the protocol carries it: `{"kind": "failed", "message": ..., "field": ...}`.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(
    title = "ProviderError",
    description = "The three kinds of failure, kept apart, each with the sentence a person reads."
)]
struct WireError {
    kind: WireKind,
    message: String,
    /// With `failed`: the field of the instance's spec the failure concerns (`image`,
    /// `disk.image`, `env.KEY`, `ports[0]`); nimbus shows where the manifest writes it.
    /// Optional, and ignored with the other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    /// Worth retrying with backoff: connection refused, timeouts.
    Transient,
    /// Terminal for this instance: report it, skip its dependents, go on.
    Failed,
    /// A bug in nimbus (or in a plugin).
    Bug,
}

impl From<ProviderError> for WireError {
    fn from(error: ProviderError) -> WireError {
        let (kind, message, field) = match error {
            ProviderError::Transient(message) => (WireKind::Transient, message, None),
            ProviderError::Failed(message) => (WireKind::Failed, message, None),
            ProviderError::Field { field, message } => (WireKind::Failed, message, Some(field)),
            ProviderError::Bug(message) => (WireKind::Bug, message, None),
        };
        WireError {
            kind,
            message,
            field,
        }
    }
}

impl From<WireError> for ProviderError {
    fn from(wire: WireError) -> ProviderError {
        match (wire.kind, wire.field) {
            (WireKind::Transient, _) => ProviderError::Transient(wire.message),
            (WireKind::Failed, Some(field)) if !field.trim().is_empty() => ProviderError::Field {
                field,
                message: wire.message,
            },
            (WireKind::Failed, _) => ProviderError::Failed(wire.message),
            (WireKind::Bug, _) => ProviderError::Bug(wire.message),
        }
    }
}

impl schemars::JsonSchema for ProviderError {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProviderError".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        WireError::json_schema(generator)
    }
}

impl ProviderError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Transient(_))
    }

    /// A terminal failure caused by `field` of the instance's spec.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ProviderError {
        ProviderError::Field {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The spec's field this failure concerns, when it names one.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            ProviderError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Asks a change under way to stop: set by Ctrl-C, SIGTERM or a newer commit. A provider
/// checks it between steps (and a plugin is told); what has taken effect is still reported.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
}

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Completes once cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// The contract every backend implements, in this process or behind the plugin protocol.
pub trait Provider: Send + Sync {
    /// The provider's id, recorded in state with each instance (`ssh`, `memory`, a plugin's
    /// name).
    fn name(&self) -> &str;

    /// Its kinds and how they compare, as data.
    fn describe(&self) -> ProviderSchema;

    /// Observes every instance of a batch on one target (a host, or `None` for instances that
    /// are not per host) in one call. Returns one observation per request, in any order.
    fn observe<'a>(
        &'a self,
        target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>>;

    /// Applies one change (create, update, replace or delete). `cancel` asks it to stop
    /// between steps.
    fn apply<'a>(
        &'a self,
        change: &'a Change,
        cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>>;

    /// Why this provider could not be configured, when it could not: its instances fail.
    fn unavailable(&self) -> Option<&str> {
        None
    }

    /// Whether what it makes of `kind` carries a mark of ownership (a label) that an object
    /// it did not make lacks: an import is then applied as an update even where the object
    /// matches its manifest, so that the mark is added (and its removal later finds it).
    fn marks_owned(&self, _kind: Kind) -> bool {
        false
    }

    /// Lists what exists on `target` (a host, or `None`) of the kinds this provider serves,
    /// managed by nimbus or not (the caller sets apart what state records): `nimbus
    /// discover`. Changes nothing anywhere. A provider that cannot list returns nothing.
    fn discover<'a>(
        &'a self,
        _target: Option<&'a str>,
        _request: &'a DiscoverRequest,
    ) -> BoxFuture<'a, Result<Vec<Discovered>, ProviderError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// What `nimbus discover` asks of each target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiscoverRequest {
    /// Folders whose files are listed (Files are only ever looked for there).
    pub paths: Vec<String>,
    /// Fetch what generating manifests needs (a file's or unit's text), not only the list.
    pub contents: bool,
}

/// One object found: what it would be in nimbus, where it is, and (with
/// [`DiscoverRequest::contents`]) the spec a manifest would give it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Discovered {
    /// The nimbus kind it would be (`File`, `Service`, `VM`, `Network`, `Volume`,
    /// `Workload`), or `Secret` for a Docker secret (a repository secret in nimbus).
    pub kind: String,
    /// What it is known by where it lives: a path, a unit, a container or interface name.
    pub identity: String,
    /// A one-line description (`regular file, 0644 root:root, 14 bytes`).
    pub detail: String,
    /// The manifest name it would get (a DNS-1123 label made from its identity).
    pub name: String,
    /// The address it would get, when the provider knows it (a Kubernetes Deployment's
    /// `Workload/NAMESPACE/NAME`); else it is made from the kind, the name and the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The manifest's spec, without the host: filled in with `contents`, and only for the
    /// kinds nimbus can write manifests for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Value>,
    /// The values that must be stored as secrets rather than in clear (a key, a password), by
    /// the spec field each stands for: `content` for a File (its spec then names no content),
    /// `env.KEY` for a Workload's env value. Never serialized: no output carries them.
    #[serde(skip)]
    pub secrets: BTreeMap<String, String>,
}

/// Whether a name (a file's, an env variable's, a key in a config line) says its value is a
/// secret: a password, a token, a key.
pub fn secret_name(name: &str) -> bool {
    let key = name.trim().trim_matches('"').to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "private_key",
    ]
    .iter()
    .any(|w| {
        key == *w
            || [".", "_", "-"]
                .iter()
                .any(|sep| key.ends_with(&format!("{sep}{w}")))
    })
}

/// Whether a file's name or text says it holds a secret (a key, a password, a token): its
/// text is then stored as an age-encrypted secret, never in clear.
pub fn looks_secret(path: &str, text: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let by_name = [
        "key",
        "secret",
        "password",
        "passwd",
        "token",
        "credential",
        ".pem",
    ]
    .iter()
    .any(|w| name.contains(w))
        || name.starts_with("id_")
        || name == "shadow";
    let by_text = text.contains("PRIVATE KEY")
        || text.lines().any(|line| {
            line.split_once(['=', ':'])
                .is_some_and(|(key, _)| secret_name(key))
        });
    by_name || by_text
}

/// A DNS-1123 label made from an object's identity (`/etc/app/main.conf` ->
/// `etc-app-main-conf`): lowercase letters, digits and `-`, at most 63 characters.
pub fn label_of(identity: &str) -> String {
    let mut out = String::new();
    for c in identity.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut label: String = out.trim_end_matches('-').chars().take(63).collect();
    while label.ends_with('-') {
        label.pop();
    }
    if label.is_empty() {
        "unnamed".to_owned()
    } else {
        label
    }
}

/// The providers of a run, by id, and the rules their schemas make.
#[derive(Clone, Default)]
pub struct Registry {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    rules: Rules,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.providers.keys()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry {
            providers: BTreeMap::new(),
            rules: Rules::new(),
        }
    }

    /// Adds a provider under its own name.
    pub fn with(mut self, provider: Arc<dyn Provider>) -> Self {
        self.add(provider);
        self
    }

    pub fn add(&mut self, provider: Arc<dyn Provider>) {
        let name = provider.name().to_owned();
        self.rules.add(&name, &provider.describe());
        self.providers.insert(name, provider);
    }

    /// The provider with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(id)
    }

    /// The ids of the providers of this run.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Every provider's schemas, for the planner.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }
}

/// A provider that cannot be configured (no SSH key, a plugin that will not start): every
/// instance it would serve fails with the reason, and nothing else does.
#[derive(Debug)]
pub struct Unavailable {
    pub name: String,
    pub reason: String,
    pub kinds: Vec<Kind>,
}

impl Provider for Unavailable {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> ProviderSchema {
        ProviderSchema {
            provider: self.name.clone(),
            kinds: self
                .kinds
                .iter()
                .map(|k| KindSchema::default_for(*k))
                .collect(),
        }
    }

    fn observe<'a>(
        &'a self,
        _target: Option<&'a str>,
        _batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>> {
        Box::pin(async move { Err(ProviderError::Failed(self.reason.clone())) })
    }

    fn apply<'a>(
        &'a self,
        _change: &'a Change,
        _cancel: &'a Cancel,
    ) -> BoxFuture<'a, Result<Applied, ProviderError>> {
        Box::pin(async move { Err(ProviderError::Failed(self.reason.clone())) })
    }

    fn unavailable(&self) -> Option<&str> {
        Some(&self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_told_by_name_or_text() {
        assert!(looks_secret("/etc/app/api.key", "x"));
        assert!(looks_secret("/root/.ssh/id_ed25519", "x"));
        assert!(looks_secret(
            "/etc/app/app.conf",
            "user = a\npassword = hunter2\n"
        ));
        assert!(looks_secret(
            "/etc/app/app.conf",
            "-----BEGIN OPENSSH PRIVATE KEY-----"
        ));
        assert!(!looks_secret(
            "/etc/app/app.conf",
            "port = 8080\npasswords_file_count: 3\n"
        ));
        assert!(!looks_secret("/etc/motd", "welcome\n"));
        assert!(
            secret_name("DB_PASSWORD") && secret_name("api-token") && !secret_name("TOKENS_USED")
        );
    }
}
