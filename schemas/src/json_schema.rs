//! JSON Schema of every kind's document, for editors (`# yaml-language-server: $schema=...`).

use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::kinds::*;
use crate::reuse::*;
use crate::{API_VERSION, Kind};

fn spec_schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// The JSON Schema of a whole YAML document of `kind`, as a pretty-printed string.
pub fn document_schema(kind: Kind) -> String {
    let spec = match kind {
        Kind::Repository => spec_schema::<RepositorySpec>(),
        Kind::Host => spec_schema::<HostSpec>(),
        Kind::File => spec_schema::<FileSpec>(),
        Kind::Service => spec_schema::<ServiceSpec>(),
        Kind::Network => spec_schema::<NetworkSpec>(),
        Kind::Cluster => spec_schema::<ClusterSpec>(),
        Kind::Tenant => spec_schema::<TenantSpec>(),
        Kind::Workload => spec_schema::<WorkloadSpec>(),
        Kind::Vm => spec_schema::<VmSpec>(),
        Kind::Volume => spec_schema::<VolumeSpec>(),
    };
    envelope_schema(
        spec,
        kind.as_str(),
        kind.kdl_name(),
        kind != Kind::Repository,
    )
}

/// The JSON Schema of a whole YAML document of one of the reuse kinds (`Module`, `Use`,
/// `Environment`, `Moved`), as a pretty-printed string.
pub fn reuse_schema(kind: ReuseKind) -> String {
    let spec = match kind {
        ReuseKind::Module => spec_schema::<ModuleSpec>(),
        ReuseKind::Use => spec_schema::<UseSpec>(),
        ReuseKind::Environment => spec_schema::<EnvironmentSpec>(),
        ReuseKind::Moved => spec_schema::<MovedSpec>(),
        ReuseKind::Import => spec_schema::<ImportSpec>(),
    };
    envelope_schema(
        spec,
        kind.as_str(),
        kind.kdl_name(),
        matches!(kind, ReuseKind::Use | ReuseKind::Environment),
    )
}

/// The file name of a reuse kind's schema in `schemas/json/`.
pub fn reuse_file_name(kind: ReuseKind) -> String {
    format!("{}.json", kind.kdl_name())
}

fn envelope_schema(mut spec: Value, kind: &str, kdl_name: &str, name_required: bool) -> String {
    let mut metadata = spec_schema::<Metadata>();
    // Sub-schemas of the spec and of metadata move to the top-level `$defs`.
    let mut defs = serde_json::Map::new();
    for schema in [&mut spec, &mut metadata] {
        if let Some(Value::Object(own)) = schema.as_object_mut().and_then(|o| o.remove("$defs")) {
            defs.extend(own);
        }
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
            object.remove("title");
        }
    }
    let mut document = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://nimbus.dev/schemas/v1alpha1/{kdl_name}.json"),
        "title": format!("nimbus {kind}"),
        "type": "object",
        "additionalProperties": false,
        "required": if name_required { json!(["apiVersion", "kind", "metadata", "spec"]) } else { json!(["apiVersion", "kind"]) },
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": spec,
        },
    });
    if !defs.is_empty() {
        document["$defs"] = Value::Object(defs);
    }
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// The file name of a kind's schema in `schemas/json/`.
pub fn schema_file_name(kind: Kind) -> String {
    format!("{}.json", kind.kdl_name())
}
