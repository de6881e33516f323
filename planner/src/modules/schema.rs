//! The JSON Schema of a `Use` of one module: the Use document with `module` fixed to the
//! module's folder and `values` holding exactly its inputs, typed, with their defaults,
//! allowed values, ranges and descriptions, for an editor to complete and check
//! (`nimbus schemas` writes one per module).

use nimbus_schemas::{InputType, ReuseKind, json_schema::reuse_schema};
use serde_json::{Value, json};

use super::inputs::ModuleDecl;

/// A reference to a value where a typed one goes: `${{ env.replicas }}` is a string until
/// it is filled in.
const REFERENCE: &str = r"^\$\{\{.*\}\}$";

/// The schema of a `Use` of the module `decl` declares.
pub fn use_schema(decl: &ModuleDecl) -> Value {
    let mut document: Value =
        serde_json::from_str(&reuse_schema(ReuseKind::Use)).unwrap_or(Value::Null);
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, input) in &decl.inputs {
        let spec = &input.spec;
        let mut typed = match spec.input_type {
            InputType::String => json!({"type": "string"}),
            InputType::Integer => json!({"type": "integer"}),
            InputType::Boolean => json!({"type": "boolean"}),
            InputType::Quantity => json!({"type": ["string", "integer"]}),
            InputType::List => json!({"type": "array"}),
            InputType::Map => json!({"type": "object"}),
        };
        if spec.input_type == InputType::Integer {
            if let Some(min) = &spec.min {
                typed["minimum"] = min.clone();
            }
            if let Some(max) = &spec.max {
                typed["maximum"] = max.clone();
            }
        }
        if let Some(allowed) = &spec.allowed {
            typed["enum"] = Value::Array(allowed.clone());
        }
        let mut property = if spec.input_type == InputType::String {
            typed
        } else {
            json!({"anyOf": [typed, {"type": "string", "pattern": REFERENCE}]})
        };
        if let Some(description) = &spec.description {
            property["description"] = Value::String(description.clone());
        }
        match &spec.default {
            Some(default) => property["default"] = default.clone(),
            None => required.push(Value::String(name.clone())),
        }
        properties.insert(name.clone(), property);
    }
    let spec = &mut document["properties"]["spec"];
    spec["properties"]["module"] = json!({"const": decl.dir});
    spec["properties"]["values"] = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
        "required": required,
    });
    if let Some(required) = spec["required"].as_array_mut()
        && !required.iter().any(|r| r == "values")
        && !decl.inputs.values().all(|i| i.spec.default.is_some())
    {
        required.push(Value::String("values".into()));
    }
    document["title"] = Value::String(format!("nimbus Use of {}", decl.dir));
    if let Some(description) = &decl.description {
        document["description"] = Value::String(description.clone());
    }
    document["$id"] = Value::String(format!(
        "https://nimbus.dev/schemas/v1alpha1/modules/{}.json",
        file_stem(&decl.dir)
    ));
    document
}

/// The schema's file name for a module folder: `modules/web` → `modules-web`.
pub fn file_stem(dir: &str) -> String {
    if dir.is_empty() {
        "root".to_owned()
    } else {
        dir.replace('/', "-")
    }
}
