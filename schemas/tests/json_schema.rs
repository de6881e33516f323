//! The checked-in JSON Schemas in schemas/json/ must match the types. Run with
//! `NIMBUS_BLESS=1` to rewrite them after changing a kind.

use std::path::PathBuf;

use nimbus_schemas::json_schema::{
    document_schema, reuse_file_name, reuse_schema, schema_file_name,
};
use nimbus_schemas::{Kind, ReuseKind};

#[test]
fn checked_in_schemas_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
    let bless = std::env::var_os("NIMBUS_BLESS").is_some();
    let mut stale = Vec::new();
    let files = Kind::ALL
        .iter()
        .map(|&k| (schema_file_name(k), document_schema(k)))
        .chain(
            ReuseKind::ALL
                .iter()
                .map(|&k| (reuse_file_name(k), reuse_schema(k))),
        );
    for (name, expected) in files {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != expected {
            if bless {
                std::fs::write(&path, &expected)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale JSON Schemas (run `NIMBUS_BLESS=1 cargo test -p nimbus-schemas`): {stale:?}"
    );
}

#[test]
fn schemas_describe_the_envelope_and_spec_fields() {
    let host: serde_json::Value = serde_json::from_str(&document_schema(Kind::Host))
        .unwrap_or_else(|e| panic!("host schema is not JSON: {e}"));
    assert_eq!(host["properties"]["kind"]["const"], "Host");
    assert_eq!(
        host["properties"]["apiVersion"]["const"],
        "nimbus.dev/v1alpha1"
    );
    let spec = &host["properties"]["spec"];
    assert_eq!(spec["additionalProperties"], false);
    assert_eq!(spec["required"], serde_json::json!(["address"]));
    assert!(spec["properties"]["hostKey"].is_object());
    let vm: serde_json::Value = serde_json::from_str(&document_schema(Kind::Vm))
        .unwrap_or_else(|e| panic!("vm schema is not JSON: {e}"));
    assert_eq!(vm["properties"]["kind"]["const"], "VM");
}
