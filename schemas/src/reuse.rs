//! The kinds that shape the repository rather than declare instances: a module's inputs
//! (`Module`), its use (`Use`), an environment's values and patches (`Environment`) and a
//! rename in state (`Moved`), and an existing object taken under management (`Import`).
//! docs/modules.md and docs/import.md describe them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::StateSettings;

/// The kinds of this module, by their YAML name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReuseKind {
    /// `module.yaml` of a module folder: the inputs the module takes.
    Module,
    /// One use of a module: its folder, an instance name and the values.
    Use,
    /// One environment's values, patches and state.
    Environment,
    /// A rename in state: the instance recorded at `from` is the one declared at `to`.
    Moved,
    /// An object that already exists, taken under management by the next apply.
    Import,
}

impl ReuseKind {
    pub const ALL: [ReuseKind; 5] = [
        ReuseKind::Module,
        ReuseKind::Use,
        ReuseKind::Environment,
        ReuseKind::Moved,
        ReuseKind::Import,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReuseKind::Module => "Module",
            ReuseKind::Use => "Use",
            ReuseKind::Environment => "Environment",
            ReuseKind::Moved => "Moved",
            ReuseKind::Import => "Import",
        }
    }

    pub fn kdl_name(self) -> &'static str {
        match self {
            ReuseKind::Module => "module",
            ReuseKind::Use => "use",
            ReuseKind::Environment => "environment",
            ReuseKind::Moved => "moved",
            ReuseKind::Import => "import",
        }
    }

    pub fn from_yaml_name(name: &str) -> Option<ReuseKind> {
        ReuseKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn from_kdl_name(name: &str) -> Option<ReuseKind> {
        ReuseKind::ALL.into_iter().find(|k| k.kdl_name() == name)
    }
}

/// The type of a module's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Integer,
    Boolean,
    /// A quantity as the kinds write them: `512Mi`, `2`, `500m`.
    Quantity,
    List,
    Map,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Boolean => "boolean",
            InputType::Quantity => "quantity",
            InputType::List => "list",
            InputType::Map => "map",
        }
    }
}

/// One input of a module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputSpec {
    #[serde(rename = "type")]
    pub input_type: InputType,
    /// The value when a use gives none; an input without one must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// The only values allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<serde_json::Value>>,
    /// The smallest value of an integer or quantity input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    /// The largest value of an integer or quantity input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `kind: Module`, in the `module.yaml` (or `module.kdl`) that makes a folder a module.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The inputs, by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
}

/// `kind: Use`: the module in `module` (a folder of the repository), with `values`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UseSpec {
    /// The module's folder: from the repository's root, or `./`/`../` from this file's folder.
    pub module: String,
    /// A value for each input (defaults fill the rest). `${{ env.NAME }}`, `${{ each.key }}`
    /// and `${{ each.value }}` may be used here.
    #[serde(default)]
    pub values: BTreeMap<String, serde_json::Value>,
    /// One instance per element of a list (keyed by the element) or entry of a map (keyed
    /// by its key): `module.NAME[KEY]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<serde_json::Value>,
}

/// One patch of an environment: a merge patch over the document at `target`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchSpec {
    /// The resource's address, with its module path when it comes from one
    /// (`module.web[acme]/Workload/acme/api`).
    pub target: String,
    /// `metadata` and `spec` fields to set; maps merge, lists and scalars replace, `null`
    /// removes (RFC 7386).
    pub patch: serde_json::Value,
}

/// `kind: Environment`: chosen by `--env NAME`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Values a `Use` reads as `${{ env.NAME }}`.
    #[serde(default)]
    pub values: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub patches: Vec<PatchSpec>,
    /// Where this environment's state lives; by default `.nimbus/env/NAME/state.db`, or the
    /// schema `nimbus_REPOSITORY_NAME` when the state is in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSettings>,
}

/// `kind: Moved`: the instance state records at `from` is the one declared at `to`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MovedSpec {
    pub from: String,
    pub to: String,
}

/// `kind: Import`: the object that already exists where the manifests declare `to` is taken
/// under management by the next apply (the plan shows the import and any difference), instead
/// of being refused as "exists, not managed".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportSpec {
    /// The instance (`File/motd@web-1`) or resource (`File/motd`: each of its instances).
    pub to: String,
    /// The object's identity where it lives, when given: it must be the one the manifest
    /// names (a File's path, a unit's or container's name); nimbus finds objects by their
    /// manifests and does not rename them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}
