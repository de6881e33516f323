//! `nimbus provider check`: the provider contract suite run against a plugin process with the
//! example specs its author supplies. The shipped example plugin
//! (examples/plugins/jsonstore, Python) keeps it; a plugin that crashes on apply breaks it,
//! and the command says which step and why.

use crate::common;
use common::text;

use std::path::{Path, PathBuf};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/jsonstore")
}

#[test]
fn the_shipped_example_plugin_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let examples = example().join("cases.yaml");
    let plugin = example().join("jsonstore.py");
    let output = common::nimbus(
        &[
            "provider",
            "check",
            "--examples",
            &examples.display().to_string(),
            "--",
            "python3",
            &plugin.display().to_string(),
        ],
        dir.path(),
    );
    let stdout = common::ok(&output);
    for step in [
        "describe",
        "absent at first",
        "create",
        "no-op",
        "update in place",
        "replace",
        "delete (twice)",
        "bad input refused",
    ] {
        assert!(
            stdout.contains(&format!("  ok       {step}\n")),
            "{step}: {stdout}"
        );
    }
    assert!(
        stdout.contains("skipped  drift seen and corrected: needs hands"),
        "{stdout}"
    );
    assert!(stdout.contains("Contract kept"), "{stdout}");
    // It left nothing behind.
    let left: Vec<_> = std::fs::read_dir(dir.path().join(".jsonstore-check"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_plugin_that_breaks_the_contract_is_told_which_step_and_why() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("store");
    std::fs::write(
        dir.path().join("cases.yaml"),
        format!(
            "settings: {{store: {}, fault: crash}}\ncases:\n  - kind: Volume\n    resource: Volume/acme/data\n    spec: {{type: btrfs, size: 1Gi}}\n    update: {{type: btrfs, size: 2Gi}}\n    bad: {{type: btrfs, size: 1}}\n",
            store.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/kv_plugin.py");
    let output = common::nimbus(
        &[
            "provider",
            "check",
            "--examples",
            "cases.yaml",
            "--timeout",
            "5",
            "--",
            "python3",
            &plugin.display().to_string(),
        ],
        dir.path(),
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("  ok       absent at first"), "{stdout}");
    assert!(
        stdout.contains("  FAILED   create:") && stdout.contains("about to crash"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped  update in place: an earlier step failed"),
        "{stdout}"
    );
    assert!(stdout.contains("Contract broken"), "{stdout}");
}
