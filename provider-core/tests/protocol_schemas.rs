//! The JSON Schemas of the protocol's messages under docs/protocol/ are the ones the Rust
//! types generate: a changed type without regenerated schemas fails here
//! (`NIMBUS_BLESS=1 cargo nextest run -p nimbus-provider-core` writes them).

use std::path::Path;

#[test]
fn checked_in_message_schemas_are_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol");
    let bless = std::env::var_os("NIMBUS_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut names = Vec::new();
    for (name, schema) in nimbus_provider_core::protocol::message_schemas() {
        let path = dir.join(format!("{name}.schema.json"));
        let text = serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n";
        if bless {
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        }
        let checked_in = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with NIMBUS_BLESS=1", path.display()));
        assert_eq!(
            checked_in,
            text,
            "{} differs from the types; run with NIMBUS_BLESS=1",
            path.display()
        );
        names.push(format!("{name}.schema.json"));
    }
    // No stale schema of a message that no longer exists.
    for entry in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.ends_with(".schema.json") {
            assert!(
                names.contains(&file),
                "{file} is no message of the protocol"
            );
        }
    }
}
