//! nimbus providers: the provider contract and every backend (ssh, docker, kube, wireguard,
//! vm, agent). All backend I/O lives here and only here.
//!
//! A provider serves some kinds. It observes a batch of instances per target (one call per
//! host, not per file), applies one change at a time and returns what it then observes, and
//! says which fields force a replacement and which are sensitive. The executor in
//! `reconciler` drives providers; the planner only sees what they observed.

pub mod hosts;
pub mod memory;
pub mod ssh;

/// OpenSSH keys and signatures (sshsig), for verifying signed commits.
pub use russh::keys::ssh_key;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use nimbus_planner::plan::{Change, DefaultRules, KindRules, Observed};
use nimbus_schemas::Kind;
use serde_json::Value;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One instance to observe.
#[derive(Clone, Debug, PartialEq)]
pub struct ObserveRequest {
    pub address: String,
    pub kind: Kind,
    /// What git wants, so a provider can look at exactly what it will compare.
    pub desired: Option<Value>,
}

/// What applying a change left behind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The instance as observed right after the change; `Null` after a delete.
    pub observed: Value,
    /// Values generated on the way (keys, addresses), recorded in state.
    pub outputs: Value,
}

/// The three kinds of failure, kept apart.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying with backoff: connection refused, timeouts.
    #[error("{0} (transient)")]
    Transient(String),
    /// Terminal for this instance: report it, skip its dependents, go on.
    #[error("{0}")]
    Failed(String),
    /// A bug in nimbus.
    #[error("bug in nimbus: {0}")]
    Bug(String),
}

impl ProviderError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Transient(_))
    }
}

/// The contract every backend implements.
pub trait Provider: Send + Sync {
    /// A short name, recorded in state with each instance.
    fn name(&self) -> &'static str;

    /// The kinds this provider serves.
    fn kinds(&self) -> &[Kind];

    /// Observes every instance of a batch on one target (a host, or `None` for instances that
    /// are not per host) in one call. Returns one observation per request, in any order.
    fn observe<'a>(
        &'a self,
        target: Option<&'a str>,
        batch: &'a [ObserveRequest],
    ) -> BoxFuture<'a, Result<Vec<(String, Observed)>, ProviderError>>;

    /// Applies one change (create, update, replace or delete).
    fn apply<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, Result<Applied, ProviderError>>;

    /// Which fields force a replacement and which are sensitive.
    fn rules(&self) -> &dyn KindRules {
        &DefaultRules
    }

    /// Whether `apply` is to be given the values of secrets (a File's content) rather than
    /// their references and fingerprints. The value is in the change only for that call.
    fn wants_secret_values(&self) -> bool {
        false
    }
}

/// The providers of a run, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    providers: Vec<Arc<dyn Provider>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.providers.iter().map(|p| p.name()))
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    pub fn with(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// The provider that serves `kind`: the first registered one.
    pub fn for_kind(&self, kind: Kind) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.kinds().contains(&kind))
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// The registry's rules: each kind's provider decides, the defaults stand in otherwise.
impl KindRules for Registry {
    fn replace_fields(&self, kind: Kind) -> &[&'static str] {
        match self.for_kind(kind) {
            Some(p) => p.rules().replace_fields(kind),
            None => DefaultRules.replace_fields(kind),
        }
    }

    fn sensitive_fields(&self, kind: Kind) -> &[&'static str] {
        match self.for_kind(kind) {
            Some(p) => p.rules().sensitive_fields(kind),
            None => DefaultRules.sensitive_fields(kind),
        }
    }

    fn normalize(&self, kind: Kind, spec: &mut Value) {
        match self.for_kind(kind) {
            Some(p) => p.rules().normalize(kind, spec),
            None => DefaultRules.normalize(kind, spec),
        }
    }
}
