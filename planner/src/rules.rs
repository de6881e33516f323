//! Providers as the planner sees them: which provider serves each instance (SPEC §11), and
//! what each provider says of its kinds, as data (replacement fields, sensitive fields, how a
//! spec is normalised before comparison, whether it takes secret values). The planner needs
//! no callback into a provider: a plugin in another process describes itself with the same
//! types.

use std::collections::{BTreeMap, HashMap};

use nimbus_schemas::{ClusterType, Kind, Spec, VolumeType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::load::Model;

/// Provider ids the manifests choose (SPEC §11's table).
pub const SSH: &str = "ssh";
pub const AGENT: &str = "agent";
pub const DOCKER: &str = "docker";
pub const KUBERNETES: &str = "kubernetes";
pub const S3: &str = "s3";
/// The in-memory provider: only when asked for explicitly.
pub const MEMORY: &str = "memory";

/// What a provider says of one kind it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindSchema {
    pub kind: Kind,
    /// Top-level (or dotted) spec fields whose change needs the instance replaced.
    #[serde(default)]
    pub replace_fields: Vec<String>,
    /// Dotted field paths whose values never appear in plans.
    #[serde(default)]
    pub sensitive_fields: Vec<String>,
    /// When set, only these top-level fields are compared (the rest is not observable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_fields: Option<Vec<String>>,
    /// Text fields compared by their SHA-256, as `{"sha256": HEX}` (a unit, a file's content).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digest_fields: Vec<String>,
    /// Whether `apply` is given the values of secrets at their locations in the spec, rather
    /// than their references and fingerprints.
    #[serde(default)]
    pub delivers_secrets: bool,
}

/// What a provider says of itself: its name and its kinds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSchema {
    pub provider: String,
    pub kinds: Vec<KindSchema>,
}

impl KindSchema {
    /// SPEC §3's rules for a kind, where no provider says otherwise.
    pub fn default_for(kind: Kind) -> KindSchema {
        let replace: &[&str] = match kind {
            Kind::Vm => &["disk.image", "runtime", "host"],
            Kind::Volume => &["type", "host", "tenant"],
            Kind::Cluster => &["type"],
            Kind::Workload => &["tenant"],
            Kind::Tenant => &["cluster"],
            Kind::File => &["path"],
            _ => &[],
        };
        KindSchema {
            kind,
            replace_fields: replace.iter().map(|s| (*s).to_owned()).collect(),
            sensitive_fields: Vec::new(),
            compare_fields: None,
            digest_fields: Vec::new(),
            delivers_secrets: false,
        }
    }

    /// Rewrites a spec into the form the provider compares: only `compare_fields` kept (when
    /// set), and `digest_fields` as `{"sha256": ...}` (a value already in that form stays).
    pub fn normalize(&self, spec: &mut Value) {
        if self.compare_fields.is_none() && self.digest_fields.is_empty() {
            return;
        }
        let Value::Object(map) = spec else { return };
        if let Some(keep) = &self.compare_fields {
            let mut comparable = Map::new();
            for key in keep {
                if let Some(value) = map.get(key).filter(|v| !v.is_null()) {
                    comparable.insert(key.clone(), value.clone());
                }
            }
            *map = comparable;
        }
        for field in &self.digest_fields {
            if let Some(Value::String(text)) = map.get(field) {
                let digest: String = Sha256::digest(text.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                map.insert(field.clone(), serde_json::json!({ "sha256": digest }));
            }
        }
    }

    fn matches(fields: &[String], path: &str) -> bool {
        fields.iter().any(|field| {
            path == field
                || path.starts_with(&format!("{field}."))
                || path.starts_with(&format!("{field}["))
        })
    }

    pub fn forces_replacement(&self, path: &str) -> bool {
        Self::matches(&self.replace_fields, path)
    }

    pub fn is_sensitive(&self, path: &str) -> bool {
        Self::matches(&self.sensitive_fields, path)
    }
}

/// The schemas of a run's providers, by (provider, kind), with SPEC's defaults for the rest.
#[derive(Clone, Debug)]
pub struct Rules {
    by_provider: BTreeMap<(String, Kind), KindSchema>,
    defaults: BTreeMap<Kind, KindSchema>,
}

/// Every kind has its default schema, so that `get` always answers.
impl Default for Rules {
    fn default() -> Self {
        Rules::new()
    }
}

impl Rules {
    pub fn new() -> Self {
        Rules {
            by_provider: BTreeMap::new(),
            defaults: Kind::ALL
                .iter()
                .map(|k| (*k, KindSchema::default_for(*k)))
                .collect(),
        }
    }

    /// Adds what a provider said of itself, under `name` (the id instances name it by).
    pub fn with(mut self, name: &str, schema: &ProviderSchema) -> Self {
        self.add(name, schema);
        self
    }

    pub fn add(&mut self, name: &str, schema: &ProviderSchema) {
        for kind in &schema.kinds {
            self.by_provider
                .insert((name.to_owned(), kind.kind), kind.clone());
        }
    }

    /// The schema of `kind` under `provider`; SPEC's defaults when that provider did not
    /// describe it.
    pub fn get(&self, provider: &str, kind: Kind) -> &KindSchema {
        self.by_provider
            .get(&(provider.to_owned(), kind))
            .unwrap_or(&self.defaults[&kind])
    }
}

/// The provider that serves each document's instances, chosen from the manifests (SPEC §11):
/// a Repository plugin that names the kind first, else the kind's built-in provider (a
/// Workload goes to `docker` on a `docker-swarm` Cluster and to `kubernetes` on a `k3s` one).
/// Indexed like `model.documents`; the Repository's own entry is unused.
pub fn providers_of(model: &Model) -> Vec<String> {
    let plugins: Vec<(String, Vec<Kind>)> = model
        .repository()
        .and_then(|d| match &d.resource.spec {
            Spec::Repository(r) => Some(
                r.providers
                    .iter()
                    .map(|p| (p.name.clone(), p.kinds.clone()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default();
    let mut cluster_types: HashMap<&str, ClusterType> = HashMap::new();
    let mut tenant_clusters: HashMap<&str, &str> = HashMap::new();
    for document in &model.documents {
        match &document.resource.spec {
            Spec::Cluster(c) => {
                cluster_types.insert(document.resource.name(), c.cluster_type);
            }
            Spec::Tenant(t) => {
                if let Some(cluster) = &t.cluster {
                    tenant_clusters.insert(document.resource.name(), cluster);
                }
            }
            _ => {}
        }
    }
    let on_cluster = |cluster: Option<&str>| match cluster.and_then(|c| cluster_types.get(c)) {
        Some(ClusterType::K3s) => KUBERNETES,
        _ => DOCKER,
    };
    model
        .documents
        .iter()
        .map(|document| {
            let resource = &document.resource;
            if let Some((name, _)) = plugins
                .iter()
                .find(|(_, kinds)| kinds.contains(&resource.kind))
            {
                return name.clone();
            }
            let id = match &resource.spec {
                Spec::Repository(_)
                | Spec::Host(_)
                | Spec::File(_)
                | Spec::Service(_)
                | Spec::Vm(_) => SSH,
                Spec::Network(_) => AGENT,
                Spec::Cluster(c) => match c.cluster_type {
                    ClusterType::K3s => KUBERNETES,
                    ClusterType::DockerSwarm => DOCKER,
                },
                Spec::Tenant(t) => on_cluster(t.cluster.as_deref()),
                Spec::Workload(_) => on_cluster(
                    resource
                        .tenant
                        .as_deref()
                        .and_then(|t| tenant_clusters.get(t).copied()),
                ),
                Spec::Volume(v) => match v.volume_type {
                    VolumeType::S3 => S3,
                    _ => SSH,
                },
            };
            id.to_owned()
        })
        .collect()
}
