//! `nimbus apply` of a VM on test-bed hosts that run qemu under TCG (`testbed/vm/`: there is
//! no KVM on these machines), booting the test guest (Debian's kernel and a busybox
//! initramfs that serves HTTP on :80). The VM names no host: the scheduler places it (two
//! empty hosts: the tie goes to the first by name). It boots and answers on its published port; a second plan is
//! empty; a memory change restarts it with the new memory; a VM stopped by hand is started
//! again; delete shuts it down and removes its unit and disk.

use crate::common;
use crate::sshd;
use common::{ok, text, write};
use sshd::bed::{Bed, GUEST_INITRD, GUEST_KERNEL};

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, repo, &[])
}

fn vm_yaml(memory: &str) -> String {
    format!(
        "{HEADER}kind: VM\nmetadata: {{name: guest}}\nspec:\n  placement: {{vm: \"yes\"}}\n  cpus: 1\n  memory: {memory}\n  disk: {{size: 64Mi}}\n  boot:\n    kernel: {GUEST_KERNEL}\n    initrd: {GUEST_INITRD}\n    cmdline: \"console=ttyS0 quiet panic=-1 nimbus.ip=10.0.2.15/24 nimbus.gw=10.0.2.2\"\n  ports: [{{port: 80, hostPort: 8080}}]\n"
    )
}

/// Pauses the VM `guest` through its QMP socket on the host, as a person would, and prints
/// its status after.
const QMP_STOP: &str = r#"python3 - <<'EOF'
import socket, json
s = socket.socket(socket.AF_UNIX); s.connect('/var/lib/nimbus/vms/guest/qmp.sock'); f = s.makefile('rw')
f.readline()
for c in ['qmp_capabilities', 'stop', 'query-status']:
    f.write(json.dumps({'execute': c}) + '\n'); f.flush()
    r = json.loads(f.readline())
    while 'event' in r: r = json.loads(f.readline())
print(r['return']['status'])
EOF"#;

/// The guest's page, fetched on `host` through the published port, within `within`.
fn answers(bed: &Bed, host: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let fetched = bed.ssh(
            host,
            "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/', timeout=3).read().decode())\"",
        );
        if fetched.status.success() && text(&fetched.stdout).contains("nimbus guest") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_placed_vm_boots_answers_restarts_on_change_and_goes_with_its_disk() {
    let bed = Bed::up_vm(2);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "vms", &bed.known_hosts, &bed.key);
    // Two empty hosts of the same size: a tie, broken by name, so the first gets the VM.
    let hosts = bed
        .hosts
        .iter()
        .map(|h| {
            format!(
                "{HEADER}kind: Host\nmetadata: {{name: {}, labels: {{vm: \"yes\"}}}}\nspec: {{address: {}, capacity: {{cpu: \"2\", memory: 2Gi}}}}\n",
                h.name, h.address
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    write(repo, "hosts.yaml", &hosts);
    write(repo, "vms/guest.yaml", &vm_yaml("128Mi"));
    let host = bed.hosts[0].name.clone();

    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(plan.contains(&format!("placed on {host}")), "{plan}");
    // The hosts' facts are read in this first apply: the TCG warning comes with the next plan.
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    assert!(
        answers(&bed, &host, Duration::from_secs(60)),
        "the guest does not answer"
    );
    let unit = "nimbus-vm-guest.service";
    assert_eq!(
        bed.ssh_ok(&host, &format!("systemctl is-active {unit}"))
            .trim(),
        "active"
    );
    // TCG here, said in state.
    let shown = ok(&nimbus(repo, &["state", "show", "VM/guest"]));
    assert!(shown.contains("\"accelerator\":\"tcg\""), "{shown}");

    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "a second plan is empty:\n{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );

    // More memory: the VM restarts with it; the plan warns that it runs under TCG.
    write(repo, "vms/guest.yaml", &vm_yaml("192Mi"));
    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(plan.contains("restarts the VM: memory changed"), "{plan}");
    assert!(plan.contains("no usable /dev/kvm"), "{plan}");
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    let line = bed.ssh_ok(
        &host,
        &format!(
            "systemctl show -p ExecStart {unit} | tr ' ' '\\n' | grep -A1 -x -- '-m' | tail -1"
        ),
    );
    assert_eq!(line.trim(), "192M", "{line}");
    assert!(
        answers(&bed, &host, Duration::from_secs(60)),
        "after the restart"
    );

    // Stopped by hand: drift, started again.
    bed.ssh_ok(&host, &format!("systemctl stop {unit}"));
    let drift = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift.stdout));
    assert!(
        text(&drift.stdout).contains("stopped")
            && text(&drift.stdout).contains("starts the VM again"),
        "{}",
        text(&drift.stdout)
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(
        answers(&bed, &host, Duration::from_secs(60)),
        "after the start"
    );

    // Paused by hand (QMP `stop`): drift, resumed with QMP `cont` (not restarted).
    let pid = bed.ssh_ok(&host, &format!("systemctl show -p MainPID --value {unit}"));
    let paused = bed.ssh_ok(&host, QMP_STOP);
    assert_eq!(paused.trim(), "paused", "{paused}");
    let drift = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift.stdout));
    assert!(
        text(&drift.stdout).contains("resumes the VM (QMP cont): it is paused"),
        "{}",
        text(&drift.stdout)
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(
        answers(&bed, &host, Duration::from_secs(30)),
        "after the resume"
    );
    assert_eq!(
        bed.ssh_ok(&host, &format!("systemctl show -p MainPID --value {unit}")),
        pid,
        "resumed, not restarted"
    );
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));

    // The VM answers on `on`, and nothing of it is left on `off` (unit, folder, qemu).
    let only_on = |on: &str, off: &str, why: &str| {
        assert!(
            answers(&bed, on, Duration::from_secs(60)),
            "{why}: not on {on}"
        );
        assert_eq!(
            bed.ssh_ok(
                off,
                &format!(
                    "ls /etc/systemd/system/{unit} /var/lib/nimbus/vms/guest 2>/dev/null | wc -l"
                )
            )
            .trim(),
            "0",
            "{why}: left behind on {off}"
        );
        assert!(
            !bed.ssh(off, "pgrep -x qemu-system-x86").status.success(),
            "{why}: qemu still runs on {off}"
        );
    };
    let other = bed.hosts[1].name.clone();

    // Regression: moved by the scheduler (its host shrank below it), the plan said replace but
    // the delete went to the new host's connection and the VM kept running on the old one.
    write(
        repo,
        "hosts.yaml",
        &hosts.replacen("memory: 2Gi", "memory: 128Mi", 1),
    );
    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(
        plan.contains("-/+ VM/guest") && plan.contains("moved from"),
        "{plan}"
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    only_on(&other, &host, "moved by the scheduler");

    // Regression: pinned to a host in the manifest, it was planned as a create (drift: deleted
    // outside nimbus) and kept answering on its old host. It is a replace, whose delete runs on
    // the host state records.
    write(repo, "hosts.yaml", &hosts);
    write(
        repo,
        "vms/guest.yaml",
        &vm_yaml("192Mi").replace("  placement: {vm: \"yes\"}\n", &format!("  host: {host}\n")),
    );
    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(plan.contains("-/+ VM/guest"), "{plan}");
    assert!(!plan.contains("will be created"), "{plan}");
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    only_on(&host, &other, "pinned in the manifest");

    // Removed from git: shut down, unit and disk gone.
    std::fs::remove_file(repo.join("vms/guest.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    let took = started.elapsed();
    eprintln!("delete took {:.1} s", took.as_secs_f64());
    // The guest powered off on the ACPI button (it says so on its console), well before the
    // 20 s after which it would have been stopped.
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(
        bed.ssh_ok(
            &host,
            &format!("ls /etc/systemd/system/{unit} /var/lib/nimbus/vms/guest 2>/dev/null | wc -l")
        )
        .trim(),
        "0"
    );
    assert!(
        !bed.ssh(&host, "pgrep -x qemu-system-x86").status.success(),
        "qemu still runs"
    );

    // An image from a URL (served here on the bed's bridge), checked by its sha256: a wrong
    // digest starts nothing and says what came; the right one is fetched once into the host's
    // cache and the disk is an overlay on it.
    let served = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let image = served.path().join("base.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("32M")
        .status()
        .unwrap_or_else(|e| panic!("qemu-img: {e}"));
    assert!(made.success());
    let digest = std::process::Command::new("sha256sum")
        .arg(&image)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let digest = text(&digest.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let bridge = format!("10.233.{}.1", bed.number);
    let server = Server(
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                "18099",
                "--bind",
                &bridge,
                "--directory",
            ])
            .arg(served.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3: {e}")),
    );
    // Listening before anyone asks it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect((bridge.as_str(), 18099)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the image server does not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://{bridge}:18099/base.qcow2");
    let with_image = |sha: &str| {
        vm_yaml("128Mi").replace(
            "disk: {size: 64Mi}",
            &format!("disk: {{size: 64Mi, image: \"{url}\", sha256: {sha}}}"),
        )
    };
    write(repo, "vms/guest.yaml", &with_image(&"0".repeat(64)));
    let wrong = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&wrong.stdout), text(&wrong.stderr));
    assert_eq!(wrong.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("has sha256 {digest}")), "{said}");
    assert!(
        !bed.ssh(&host, &format!("test -e /etc/systemd/system/{unit}"))
            .status
            .success(),
        "a VM was started on a wrong image"
    );
    write(repo, "vms/guest.yaml", &with_image(&digest));
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    let backing = bed.ssh_ok(
        &host,
        "qemu-img info -U /var/lib/nimbus/vms/guest/disk.qcow2 | grep 'backing file:'",
    );
    assert!(
        backing.contains(&format!("/var/lib/nimbus/images/{digest}.img")),
        "{backing}"
    );
    assert!(
        answers(&bed, &host, Duration::from_secs(60)),
        "on the fetched image"
    );
    drop(server);
}

/// A process of the test's own, ended by its PID when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A VM on a bridge of its host: its network card is a tap in the bridge (nimbus plugs it in
/// before qemu starts and takes it out after), and the guest answers on its own address.
#[test]
fn a_bridged_vm_answers_on_its_own_address() {
    let bed = Bed::up_vm(1);
    let host = bed.hosts[0].name.clone();
    // The bridge and the host's address on it are the host's own setup (a File for its
    // network configuration, say); nimbus makes a bridge only when there is none.
    bed.ssh_ok(
        &host,
        "ip link add nvmbr0 type bridge && ip addr add 192.168.77.1/24 dev nvmbr0 && ip link set nvmbr0 up",
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "bridged", &bed.known_hosts, &bed.key);
    write(repo, "hosts.yaml", &bed.hosts_manifest(""));
    write(
        repo,
        "vms/web.yaml",
        &format!(
            "{HEADER}kind: VM\nmetadata: {{name: web}}\nspec:\n  host: {host}\n  cpus: 1\n  memory: 128Mi\n  disk: {{size: 64Mi}}\n  bridge: nvmbr0\n  boot:\n    kernel: {GUEST_KERNEL}\n    initrd: {GUEST_INITRD}\n    cmdline: \"console=ttyS0 quiet panic=-1 nimbus.ip=192.168.77.2/24 nimbus.gw=192.168.77.1\"\n"
        ),
    );
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fetched = bed.ssh(
            &host,
            "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://192.168.77.2/', timeout=3).read().decode())\"",
        );
        if fetched.status.success() && text(&fetched.stdout).contains("nimbus guest") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bridged guest does not answer on 192.168.77.2"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let shown = ok(&nimbus(repo, &["state", "show", "VM/web"]));
    assert!(shown.contains("\"bridge\":\"nvmbr0\""), "{shown}");
    let taps = bed.ssh_ok(
        &host,
        "ip -o link show master nvmbr0 | grep -c nvm- || true",
    );
    assert_eq!(taps.trim(), "1", "one tap in the bridge");
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );
    // Removed: the tap goes with it, the bridge stays.
    std::fs::remove_file(repo.join("vms/web.yaml")).unwrap_or_else(|e| panic!("{e}"));
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    let taps = bed.ssh_ok(
        &host,
        "ip -o link show master nvmbr0 | grep -c nvm- || true",
    );
    assert_eq!(taps.trim(), "0", "the tap is still there");
    bed.ssh_ok(&host, "ip link show nvmbr0");
}

/// A VM whose host is a member of a WireGuard Network (`network: mesh`): it starts after its
/// host joined the mesh, and another member reaches the guest's published port on the host's
/// overlay address, through the tunnel.
#[test]
fn a_vm_on_a_network_answers_over_the_mesh() {
    let bed = Bed::up_vm(2);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "vm-mesh", &bed.known_hosts, &bed.key);
    write(repo, "hosts.yaml", &bed.hosts_manifest("mesh: \"yes\""));
    write(
        repo,
        "network.yaml",
        &format!(
            "{HEADER}kind: Network\nmetadata: {{name: mesh}}\nspec: {{members: {{mesh: \"yes\"}}}}\n"
        ),
    );
    let (first, second) = (bed.hosts[0].name.clone(), bed.hosts[1].name.clone());
    write(
        repo,
        "vms/guest.yaml",
        &format!(
            "{HEADER}kind: VM\nmetadata: {{name: guest}}\nspec:\n  host: {first}\n  network: mesh\n  cpus: 1\n  memory: 128Mi\n  disk: {{size: 64Mi}}\n  boot:\n    kernel: {GUEST_KERNEL}\n    initrd: {GUEST_INITRD}\n    cmdline: \"console=ttyS0 quiet panic=-1 nimbus.ip=10.0.2.15/24 nimbus.gw=10.0.2.2\"\n  ports: [{{port: 80, hostPort: 8080}}]\n"
        ),
    );
    let applied = common::nimbus_with_stripped_agent(&["apply", "--auto-approve", "."], repo);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    let joined = said
        .find(&format!("created Network/mesh@{first}"))
        .unwrap_or_else(|| panic!("{said}"));
    let started = said
        .find("creating VM/guest")
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        joined < started,
        "the VM started before its host joined: {said}"
    );
    // The first member's overlay address is the lowest: 10.106.103.1.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fetched = bed.ssh(
            &second,
            "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://10.106.103.1:8080/', timeout=3).read().decode())\"",
        );
        if fetched.status.success() && text(&fetched.stdout).contains("nimbus guest") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest does not answer over the mesh from {second}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
