//! Regression: two test beds with the same number tore each other down (hosts-down.sh
//! removes namespaces, veths and the bridge by number). hosts-up.sh now claims the bed
//! number; a second claimant waits, then is refused, and hosts-down.sh leaves a bed it does
//! not own alone. Checked with a claim held by another bed directory, without booting hosts.

use std::path::Path;
use std::process::Command;

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testbed")
        .join(name)
}

#[test]
fn a_bed_number_has_one_claimant() {
    if !nix_root() {
        eprintln!("skipped: the test bed needs root");
        return;
    }
    let owner = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(owner.path().join("hosts")).unwrap_or_else(|e| panic!("{e}"));
    let bed = "97";
    let claim = Path::new("/run/nimbus-testbed").join(format!("bed{bed}"));
    let _ = std::fs::remove_dir_all(&claim);
    std::fs::create_dir_all(&claim).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(claim.join("tb"), owner.path().display().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let up = Command::new("bash")
        .arg(script("hosts-up.sh"))
        .env("TB", other.path())
        .env("BED", bed)
        .env("BED_LOCK_WAIT", "2")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert_eq!(up.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("is held by"), "{stderr}");
    let down = Command::new("bash")
        .arg(script("hosts-down.sh"))
        .env("TB", other.path())
        .env("BED", bed)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(down.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("leaving it alone"), "{stderr}");
    // The owner's claim is intact.
    assert_eq!(
        std::fs::read_to_string(claim.join("tb")).unwrap_or_default(),
        owner.path().display().to_string()
    );
    // A claim whose bed is gone is stale: the owner's hosts/ removed, hosts-down.sh of
    // another bed no longer refuses.
    std::fs::remove_dir_all(owner.path().join("hosts")).unwrap_or_else(|e| panic!("{e}"));
    let down = Command::new("bash")
        .arg(script("hosts-down.sh"))
        .env("TB", other.path())
        .env("BED", bed)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        down.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let _ = std::fs::remove_dir_all(&claim);
}

fn nix_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
