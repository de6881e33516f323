//! The shipped unit (deploy/nimbus-reconcile.service) as systemd itself reads it: it
//! verifies (with the built binary in place of /usr/local/bin/nimbus), files it makes are its
//! own (`UMask=0077`), and systemd's offline security review finds its sandboxing in place
//! (docs/security.md).

use std::path::Path;
use std::process::Command;

fn unit_with_binary(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nimbus-reconcile.service"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let unit = dir.join("nimbus-reconcile.service");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/nimbus", env!("CARGO_BIN_EXE_nimbus")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    unit
}

#[test]
fn the_shipped_unit_verifies_and_is_sandboxed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let unit = unit_with_binary(dir.path());
    let text = std::fs::read_to_string(&unit).unwrap_or_else(|e| panic!("{e}"));
    for line in [
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "ReadWritePaths=/var/lib/nimbus",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} is missing");
    }
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze (scripts/setup.sh installs systemd): {e}"));
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{said}");
    let review = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let review = String::from_utf8_lossy(&review.stdout);
    for setting in [
        "UMask=",
        "NoNewPrivileges=",
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
    ] {
        assert!(
            review
                .lines()
                .any(|l| l.trim_start().starts_with('✓') && l.contains(setting)),
            "{setting} is not in place: {review}"
        );
    }
}
