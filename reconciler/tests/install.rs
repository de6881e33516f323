//! `cargo install --locked --path reconciler` (docs/install.md), as a user runs it: into a
//! fresh root, offline (every crate it needs is the one `Cargo.lock` names, already fetched),
//! then the installed binary runs. It installs the `dev` profile into the workspace's own
//! target directory, so that it reuses what the test build compiled and takes about a minute;
//! the `release` and `dist` profiles differ only in how they compile (bench/image.sh builds
//! `dist`).

use crate::common::{self, text};

use std::path::Path;
use std::process::Command;

#[test]
fn cargo_install_locked_installs_a_working_nimbus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), Into::into);
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let install = Command::new(cargo)
        .args(["install", "--locked", "--offline", "--debug", "--path"])
        .arg(workspace.join("reconciler"))
        .arg("--root")
        .arg(root.path())
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root.path())
        .output()
        .unwrap_or_else(|e| panic!("cargo install: {e}"));
    assert!(
        install.status.success(),
        "cargo install --locked --path reconciler:\n{}",
        text(&install.stderr)
    );
    let nimbus = root.path().join("bin/nimbus");
    let version = Command::new(&nimbus)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", nimbus.display()));
    assert_eq!(
        text(&version.stdout).trim(),
        format!("nimbus {}", env!("CARGO_PKG_VERSION"))
    );
    // The installed binary does the work: the shipped example repository validates.
    let examples = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    common::copy_dir(&workspace.join("examples-repo"), examples.path());
    let validate = Command::new(&nimbus)
        .args(["validate", "."])
        .current_dir(examples.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        validate.status.success(),
        "{}{}",
        text(&validate.stdout),
        text(&validate.stderr)
    );
}
