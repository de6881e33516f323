//! The one test with a real cloud-init guest (`testbed/vm/ci-image.sh`: Debian 12 with
//! cloud-init, made by debootstrap): a VM whose `cloudInit` is an age secret boots under TCG
//! from a NoCloud seed nimbus writes on its host, and cloud-init runs the seed (it writes a
//! file and prints it on the serial console). The secret's value reaches only the seed on the
//! host: not nimbus's output, not state, not the VM's `spec.json`. A second plan is empty.

use crate::common;
use crate::sshd;
use common::{encrypt_secret, ok, text, write};
use sshd::bed::Bed;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const TOKEN: &str = "SEED-S3CRET-4711";

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, repo, &[])
}

/// The cloud-init guest, built once into the test bed's cache.
fn ci_image() -> PathBuf {
    let cache = std::env::var_os("NIMBUS_TESTBED_CACHE")
        .map_or_else(|| PathBuf::from("/var/tmp/nimbus-testbed"), PathBuf::from);
    let out = cache.join("ci");
    let status = Command::new("flock")
        .arg(cache.join(".lock-ci"))
        .arg("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/vm/ci-image.sh"))
        .env("OUT", &out)
        .status()
        .unwrap_or_else(|e| panic!("ci-image.sh: {e}"));
    assert!(status.success(), "testbed/vm/ci-image.sh failed");
    out
}

#[test]
fn a_cloud_init_guest_takes_its_seed_from_a_secret() {
    let image = ci_image();
    let bed = Bed::up_vm(1);
    let host = bed.hosts[0].name.clone();
    for file in ["base.qcow2", "vmlinux", "initrd.img"] {
        bed.copy_to(&host, &image.join(file), &format!("/srv/ci/{file}"));
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "cloud-init", &bed.known_hosts, &bed.key);
    write(repo, "hosts.yaml", &bed.hosts_manifest(""));
    encrypt_secret(
        repo,
        "guest-init",
        &format!(
            "#cloud-config\nwrite_files: [{{path: /etc/nimbus-seeded, content: \"{TOKEN}\\n\"}}]\nruncmd: [[sh, -c, \"echo NIMBUS-CI-READY $(cat /etc/nimbus-seeded) > /dev/ttyS0\"]]\n"
        ),
    );
    write(
        repo,
        "vms/ci.yaml",
        &format!(
            "{HEADER}kind: VM\nmetadata: {{name: ci}}\nspec:\n  host: {host}\n  cpus: 1\n  memory: 512Mi\n  disk: {{size: 3Gi, image: /srv/ci/base.qcow2}}\n  boot:\n    kernel: /srv/ci/vmlinux\n    initrd: /srv/ci/initrd.img\n    cmdline: \"root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0\"\n  cloudInit: {{secret: guest-init}}\n"
        ),
    );
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    assert!(!said.contains(TOKEN), "the seed's secret was shown: {said}");

    // cloud-init ran the seed: its runcmd prints the file its write_files made.
    let log = "/var/lib/nimbus/vms/ci/serial.log";
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        let seen = bed.ssh(&host, &format!("grep -a -m1 NIMBUS-CI-READY {log}"));
        if text(&seen.stdout).contains(&format!("NIMBUS-CI-READY {TOKEN}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest did not take its seed; the console's end:\n{}",
            text(&bed.ssh(&host, &format!("tail -c 3000 {log}")).stdout)
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // The value is nowhere but in the seed.
    let kept = bed.ssh_ok(&host, "cat /var/lib/nimbus/vms/ci/spec.json");
    assert!(
        kept.contains("guest-init") && !kept.contains(TOKEN),
        "{kept}"
    );
    let shown = ok(&nimbus(repo, &["state", "show", "VM/ci"]));
    assert!(!shown.contains(TOKEN), "{shown}");
    let state = std::fs::read(repo.join(".nimbus/state.db")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&state).contains(TOKEN),
        "the secret is in state"
    );
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );
}
