//! JSON Schema of every kind's document, for editors (`# yaml-language-server: $schema=...`).

use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::kinds::*;
use crate::{API_VERSION, Kind};

fn spec_schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// The JSON Schema of a whole YAML document of `kind`, as a pretty-printed string.
pub fn document_schema(kind: Kind) -> String {
    let mut spec = match kind {
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
    let name_required = kind != Kind::Repository;
    let mut document = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://nimbus.dev/schemas/v1alpha1/{}.json", kind.kdl_name()),
        "title": format!("nimbus {kind}"),
        "type": "object",
        "additionalProperties": false,
        "required": if name_required { json!(["apiVersion", "kind", "metadata", "spec"]) } else { json!(["apiVersion", "kind"]) },
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": kind.as_str()},
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
