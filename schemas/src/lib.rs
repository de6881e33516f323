//! nimbus manifest types: every kind of v1alpha1, quantities, defaults and JSON Schema output.
//!
//! Pure data: no I/O. The planner turns YAML and KDL documents into these types.

pub mod address;
pub mod kinds;
pub mod quantity;
pub mod reuse;
pub mod values;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use address::{Address, AddressError};
pub use kinds::*;
pub use quantity::{Bytes, Cpu, QuantityError};
pub use reuse::*;
pub use values::{Cidr, FileMode, Labels, Port, SecretRef, StringOrList};

/// The only API version of this release.
pub const API_VERSION: &str = "nimbus.dev/v1alpha1";

/// Every kind a manifest may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Repository,
    Host,
    File,
    Service,
    Network,
    Cluster,
    Tenant,
    Workload,
    #[serde(rename = "VM")]
    Vm,
    Volume,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Repository,
        Kind::Host,
        Kind::File,
        Kind::Service,
        Kind::Network,
        Kind::Cluster,
        Kind::Tenant,
        Kind::Workload,
        Kind::Vm,
        Kind::Volume,
    ];

    /// Every kind a provider applies: all but Repository, which is settings.
    pub const MANAGED: &'static [Kind] = &[
        Kind::Host,
        Kind::File,
        Kind::Service,
        Kind::Network,
        Kind::Cluster,
        Kind::Tenant,
        Kind::Workload,
        Kind::Vm,
        Kind::Volume,
    ];

    /// The name in YAML's `kind:` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Repository => "Repository",
            Kind::Host => "Host",
            Kind::File => "File",
            Kind::Service => "Service",
            Kind::Network => "Network",
            Kind::Cluster => "Cluster",
            Kind::Tenant => "Tenant",
            Kind::Workload => "Workload",
            Kind::Vm => "VM",
            Kind::Volume => "Volume",
        }
    }

    /// The node name in KDL: the kind in kebab-case.
    pub fn kdl_name(self) -> &'static str {
        match self {
            Kind::Repository => "repository",
            Kind::Host => "host",
            Kind::File => "file",
            Kind::Service => "service",
            Kind::Network => "network",
            Kind::Cluster => "cluster",
            Kind::Tenant => "tenant",
            Kind::Workload => "workload",
            Kind::Vm => "vm",
            Kind::Volume => "volume",
        }
    }

    pub fn from_yaml_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn from_kdl_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.kdl_name() == name)
    }

    /// Workloads and Volumes belong to a tenant; their address is `Kind/tenant/name`.
    pub fn is_tenant_scoped(self) -> bool {
        matches!(self, Kind::Workload | Kind::Volume)
    }
}

impl schemars::JsonSchema for Kind {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Kind".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = Kind::MANAGED.iter().map(|k| k.as_str()).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The spec of one document, by kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Spec {
    Repository(RepositorySpec),
    Host(HostSpec),
    File(FileSpec),
    Service(ServiceSpec),
    Network(NetworkSpec),
    Cluster(ClusterSpec),
    Tenant(TenantSpec),
    Workload(WorkloadSpec),
    Vm(VmSpec),
    Volume(VolumeSpec),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Repository(_) => Kind::Repository,
            Spec::Host(_) => Kind::Host,
            Spec::File(_) => Kind::File,
            Spec::Service(_) => Kind::Service,
            Spec::Network(_) => Kind::Network,
            Spec::Cluster(_) => Kind::Cluster,
            Spec::Tenant(_) => Kind::Tenant,
            Spec::Workload(_) => Kind::Workload,
            Spec::Vm(_) => Kind::Vm,
            Spec::Volume(_) => Kind::Volume,
        }
    }

    /// `spec.dependsOn`, which every kind carries.
    pub fn depends_on(&self) -> &[String] {
        match self {
            Spec::Repository(s) => &s.depends_on,
            Spec::Host(s) => &s.depends_on,
            Spec::File(s) => &s.depends_on,
            Spec::Service(s) => &s.depends_on,
            Spec::Network(s) => &s.depends_on,
            Spec::Cluster(s) => &s.depends_on,
            Spec::Tenant(s) => &s.depends_on,
            Spec::Workload(s) => &s.depends_on,
            Spec::Vm(s) => &s.depends_on,
            Spec::Volume(s) => &s.depends_on,
        }
    }
}

/// One resource as declared: kind, metadata and spec. `Kind/name`, or `Kind/tenant/name` for
/// tenant-scoped kinds, is its address.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub api_version: String,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: Spec,
    /// The tenant of a Workload or Volume, from `spec.tenant` or from the `tenants/<name>/` folder.
    #[serde(skip)]
    pub tenant: Option<String>,
}

impl Resource {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn address(&self) -> String {
        Address::resource(self.kind, self.tenant.as_deref(), &self.metadata.name).to_string()
    }
}

pub mod json_schema;
