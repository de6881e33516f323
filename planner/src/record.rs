//! What state recorded of an instance, and what a provider saw of it: the two inputs of a
//! plan besides the manifests.

use nimbus_schemas::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What nimbus recorded about an instance the last time it applied it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub address: String,
    pub kind: Kind,
    /// The spec last applied.
    pub applied: Value,
    /// Created or imported by nimbus: only such instances are ever deleted.
    pub owned: bool,
    /// `nimbus.dev/protect: "true"` when last applied: never deleted or replaced.
    pub protected: bool,
    /// `nimbus.dev/prune: "false"` when last applied: left in place when removed from git.
    pub keep_on_removal: bool,
    /// What it depended on when last applied, so that deletes run in reverse order even
    /// after its manifest is gone.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The provider that applied it; empty in state written before providers were recorded.
    #[serde(default)]
    pub provider: String,
    /// What its provider reported when it was applied (a Host's facts, an image id).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub outputs: Value,
    /// Why the apply that created it failed, when it failed having made something (a
    /// Deployment whose rollout failed): the next plan replaces it, as Terraform replaces a
    /// tainted resource, and removing its manifest deletes what was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tainted: Option<String>,
}

/// What a provider saw of an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Observed {
    /// It exists, with this spec (normalised by the provider).
    Present(Value),
    /// It does not exist.
    Absent,
    /// Not observed, and why: the target could not be reached or asked. Such an instance is
    /// not planned (the plan names it); with no refresh at all (no entry), the recorded spec
    /// stands in.
    Unknown(String),
}
