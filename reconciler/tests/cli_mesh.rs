//! `nimbus apply` of a Network on test-bed hosts (Debian booting systemd with its own sshd,
//! wireguard-go in userspace: there is no kernel WireGuard here). The agent is put on each
//! member over its SSH connection and configures the interface with wireguard-control.
//!
//! A mesh of four: every pair pings over the overlay; a second plan is empty; the private keys
//! are only on their hosts (not in state, plans or output); a peer deleted by hand is drift
//! and restored; the interface comes back when its boot unit restarts; a fifth member gets the
//! next address while the others keep theirs, and every member lists and pings it; a member
//! leaving the selector disappears from every peer list and its interface is gone; a member
//! without WireGuard, then one whose agent cannot be installed, fails alone with the reason
//! while the rest of the mesh converges.
//!
//! A host nimbus reaches through the mesh (its address an overlay address, through a bastion
//! member): a change that cuts the path is rolled back by the hosts themselves and the run
//! says so; a change that keeps the path is confirmed.

use crate::common;
use crate::sshd;
use common::{ok, text, write};
use sshd::bed::Bed;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const KEY_FILE: &str = "/var/lib/nimbus/wireguard/wg-mesh.key";

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    // The agent without symbols: 70 MB to copy to each host rather than 400.
    common::nimbus_with_stripped_agent(args, repo)
}

fn host_yaml(name: &str, address: &str, member: bool, extra: &str) -> String {
    let label = if member { "yes" } else { "no" };
    format!(
        "{HEADER}kind: Host\nmetadata: {{name: {name}, labels: {{mesh: \"{label}\"}}}}\nspec: {{address: {address}{extra}}}\n"
    )
}

/// Pings `to` from `from` over the overlay, for up to 15 s (the first packet waits for a
/// handshake).
fn pings(bed: &Bed, from: &str, to: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if bed
            .ssh(from, &format!("ping -c 1 -W 1 {to}"))
            .status
            .success()
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

fn recorded_address(repo: &Path, host: &str) -> String {
    let shown = ok(&nimbus(
        repo,
        &["state", "show", &format!("Network/mesh@{host}")],
    ));
    let at = shown
        .find("10.106.103.")
        .unwrap_or_else(|| panic!("no overlay address recorded for {host}:\n{shown}"));
    shown[at..]
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn peers_listed(bed: &Bed, host: &str) -> String {
    bed.ssh_ok(host, "wg show wg-mesh peers")
}

fn public_key(bed: &Bed, host: &str) -> String {
    bed.ssh_ok(host, "wg show wg-mesh public-key")
        .trim()
        .to_owned()
}

#[test]
fn a_mesh_comes_up_converges_and_follows_its_members() {
    let bed = Bed::up(5);
    let names: Vec<String> = bed.hosts.iter().map(|h| h.name.clone()).collect();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "mesh", &bed.known_hosts, &bed.key);
    let hosts = |members: &[usize]| {
        bed.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| host_yaml(&h.name, &h.address, members.contains(&i), ""))
            .collect::<Vec<_>>()
            .join("---\n")
    };
    write(repo, "hosts.yaml", &hosts(&[0, 1, 2, 3]));
    write(
        repo,
        "network/mesh.yaml",
        &format!(
            "{HEADER}kind: Network\nmetadata: {{name: mesh}}\nspec:\n  members: {{mesh: \"yes\"}}\n"
        ),
    );
    let mut said = String::new();

    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(plan.contains("Network/mesh on Host/"), "{plan}");
    assert!(plan.contains("10.106.103.1/24"), "{plan}");
    said.push_str(&plan);
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    said.push_str(&text(&applied.stdout));
    said.push_str(&text(&applied.stderr));
    ok(&applied);

    // Every pair pings over the overlay, each at the address state recorded.
    let addresses: Vec<String> = names[..4]
        .iter()
        .map(|h| recorded_address(repo, h))
        .collect();
    let mut sorted = addresses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "10.106.103.1",
            "10.106.103.2",
            "10.106.103.3",
            "10.106.103.4"
        ]
    );
    for (i, from) in names[..4].iter().enumerate() {
        for (j, to) in addresses.iter().enumerate() {
            if i != j {
                assert!(pings(&bed, from, to), "{from} does not reach {to}");
            }
        }
    }
    // The public key is recorded in state; the private key is on its host only.
    let shown = ok(&nimbus(
        repo,
        &["state", "show", &format!("Network/mesh@{}", names[0])],
    ));
    assert!(shown.contains(&public_key(&bed, &names[0])), "{shown}");
    let private_keys: Vec<String> = names[..4]
        .iter()
        .map(|h| bed.ssh_ok(h, &format!("cat {KEY_FILE}")).trim().to_owned())
        .collect();
    assert_eq!(
        bed.ssh_ok(&names[0], &format!("stat -c %a {KEY_FILE}"))
            .trim(),
        "600"
    );

    // A second plan is empty.
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    said.push_str(&text(&again.stdout));
    assert_eq!(
        again.status.code(),
        Some(0),
        "a second plan is empty:\n{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );

    // A peer deleted by hand is drift, and restored.
    let second_key = public_key(&bed, &names[1]);
    bed.ssh_ok(
        &names[0],
        &format!("wg set wg-mesh peer {second_key} remove"),
    );
    let drift = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    said.push_str(&text(&drift.stdout));
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift.stdout));
    assert!(
        text(&drift.stdout).contains(&format!("Network/mesh@{}", names[0])),
        "{}",
        text(&drift.stdout)
    );
    said.push_str(&ok(&nimbus(repo, &["apply", "--auto-approve", "."])));
    assert!(peers_listed(&bed, &names[0]).contains(&second_key));
    assert!(pings(&bed, &names[0], &addresses[1]));

    // A key changed by hand on the interface is drift: the key the agent made comes back.
    let third_key = public_key(&bed, &names[2]);
    bed.ssh_ok(
        &names[2],
        "wg genkey > /tmp/other.key; wg set wg-mesh private-key /tmp/other.key",
    );
    let drift = ok(&nimbus(repo, &["plan", "."]));
    assert!(drift.contains("changed on the host"), "{drift}");
    said.push_str(&drift);
    said.push_str(&ok(&nimbus(repo, &["apply", "--auto-approve", "."])));
    assert_eq!(public_key(&bed, &names[2]), third_key);
    assert!(pings(&bed, &names[0], &addresses[2]));

    // The boot unit brings the interface back with its configuration.
    let unit = "nimbus-wg-wg-mesh.service";
    assert_eq!(
        bed.ssh_ok(&names[2], &format!("systemctl is-enabled {unit}"))
            .trim(),
        "enabled"
    );
    bed.ssh_ok(&names[2], &format!("systemctl restart {unit}"));
    assert!(
        pings(&bed, &names[2], &addresses[0]),
        "after the unit's restart"
    );

    // A fifth member gets the next address; the others keep theirs; everyone lists it.
    write(repo, "hosts.yaml", &hosts(&[0, 1, 2, 3, 4]));
    let plan = ok(&nimbus(repo, &["plan", "."]));
    said.push_str(&plan);
    let started = Instant::now();
    said.push_str(&ok(&nimbus(repo, &["apply", "--auto-approve", "."])));
    let fifth = recorded_address(repo, &names[4]);
    assert_eq!(fifth, "10.106.103.5");
    for (i, host) in names[..4].iter().enumerate() {
        assert_eq!(
            recorded_address(repo, host),
            addresses[i],
            "{host} renumbered"
        );
    }
    let fifth_key = public_key(&bed, &names[4]);
    for host in &names[..4] {
        assert!(peers_listed(&bed, host).contains(&fifth_key), "{host}");
        assert!(pings(&bed, host, &fifth), "{host} does not reach the fifth");
    }
    eprintln!(
        "a fifth member reachable from the four others {:.1} s after apply started",
        started.elapsed().as_secs_f64()
    );

    // A member leaving the selector leaves every peer list, and its interface goes.
    write(repo, "hosts.yaml", &hosts(&[0, 2, 3, 4]));
    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(
        plan.contains(&format!("Network/mesh@{}", names[1])),
        "{plan}"
    );
    said.push_str(&plan);
    said.push_str(&ok(&nimbus(repo, &["apply", "--auto-approve", "."])));
    for host in [&names[0], &names[2], &names[3], &names[4]] {
        assert!(!peers_listed(&bed, host).contains(&second_key), "{host}");
    }
    let gone = bed.ssh(&names[1], "ip link show wg-mesh");
    assert!(!gone.status.success(), "the interface is still there");
    assert_eq!(
        bed.ssh_ok(
            &names[1],
            &format!("ls /etc/systemd/system/{unit} {KEY_FILE} 2>/dev/null | wc -l")
        )
        .trim(),
        "0"
    );
    let settled = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(settled.status.code(), Some(0), "{}", text(&settled.stdout));

    // A member with no WireGuard at all fails on its own, with what to install; the rest of
    // the mesh converges.
    bed.ssh_ok(
        &names[1],
        "mv /usr/bin/wireguard-go /usr/bin/wireguard-go.off",
    );
    write(repo, "hosts.yaml", &hosts(&[0, 1, 2, 3, 4]));
    let partial = nimbus(repo, &["apply", "--auto-approve", "."]);
    let out = format!("{}{}", text(&partial.stdout), text(&partial.stderr));
    said.push_str(&out);
    assert_eq!(partial.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("Network/mesh@{}", names[1]))
            && out.contains("apt install wireguard-go"),
        "{out}"
    );
    assert!(pings(&bed, &names[0], &fifth), "the rest of the mesh stops");
    bed.ssh_ok(
        &names[1],
        "mv /usr/bin/wireguard-go.off /usr/bin/wireguard-go",
    );

    // A host whose agent cannot be put in place fails alone, with the reason.
    bed.ssh_ok(
        &names[1],
        "systemctl stop 'nimbus-agent-*'; rm -rf /var/lib/nimbus/agent; touch /var/lib/nimbus/agent",
    );
    let partial = nimbus(repo, &["apply", "--auto-approve", "."]);
    let out = format!("{}{}", text(&partial.stdout), text(&partial.stderr));
    said.push_str(&out);
    assert_eq!(partial.status.code(), Some(1), "{out}");
    assert!(out.contains("cannot install the agent"), "{out}");
    assert!(pings(&bed, &names[3], &fifth), "the rest of the mesh stops");
    bed.ssh_ok(&names[1], "rm -f /var/lib/nimbus/agent");
    said.push_str(&ok(&nimbus(repo, &["apply", "--auto-approve", "."])));
    assert!(pings(&bed, &names[1], &fifth), "the member that came back");

    // No private key anywhere but on its host: not in state, not in what nimbus printed.
    let mut kept = String::new();
    for entry in walk(repo) {
        kept.push_str(&String::from_utf8_lossy(
            &std::fs::read(&entry).unwrap_or_default(),
        ));
    }
    for key in &private_keys {
        assert!(key.len() == 44, "{key}");
        assert!(
            !kept.contains(key.as_str()),
            "a private key in the repository or state"
        );
        assert!(
            !said.contains(key.as_str()),
            "a private key in nimbus's output"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_change_that_cuts_nimbus_off_is_rolled_back_by_the_hosts() {
    let bed = Bed::up(3);
    let names: Vec<String> = bed.hosts.iter().map(|h| h.name.clone()).collect();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "lockout", &bed.known_hosts, &bed.key);
    // First every host is reached directly, and the mesh comes up.
    let hosts = |third: String| {
        format!(
            "{}---\n{}---\n{third}",
            host_yaml(&names[0], &bed.hosts[0].address, true, ""),
            host_yaml(&names[1], &bed.hosts[1].address, true, ""),
        )
    };
    let network = |extra: &str| {
        format!(
            "{HEADER}kind: Network\nmetadata: {{name: mesh}}\nspec:\n  members: {{mesh: \"yes\"}}\n  confirmTimeout: 12\n{extra}"
        )
    };
    write(
        repo,
        "hosts.yaml",
        &hosts(host_yaml(&names[2], &bed.hosts[2].address, true, "")),
    );
    write(repo, "network.yaml", &network(""));
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    let third = recorded_address(repo, &names[2]);
    assert!(pings(&bed, &names[0], &third));

    // Then the third is reached through the mesh: its overlay address, through the first.
    write(
        repo,
        "hosts.yaml",
        &hosts(host_yaml(
            &names[2],
            &third,
            true,
            &format!(", via: {}", names[0]),
        )),
    );
    let plan = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_ne!(
        plan.status.code(),
        Some(1),
        "{}{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );

    // A new address for the third while nimbus still reaches it at the old one: the path is
    // cut, nobody confirms, and the hosts restore the previous configuration by themselves.
    write(
        repo,
        "network.yaml",
        &network(&format!("  addresses: {{{}: 10.106.103.50}}\n", names[2])),
    );
    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(plan.contains("confirm or revert"), "{plan}");
    assert!(plan.contains(&format!("Host/{}", names[2])), "{plan}");
    let started = Instant::now();
    let cut = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&cut.stdout), text(&cut.stderr));
    assert_eq!(cut.status.code(), Some(1), "{said}");
    assert!(said.contains("rolled back"), "{said}");
    assert!(said.contains("answers again"), "{said}");
    assert!(started.elapsed() >= Duration::from_secs(12), "{said}");
    // The third is back at its address, reached through the mesh again.
    let addresses = bed.ssh_ok(&names[2], "ip -4 -o address show dev wg-mesh");
    assert!(addresses.contains(&format!("{third}/24")), "{addresses}");
    assert!(!addresses.contains("10.106.103.50"), "{addresses}");
    assert!(pings(&bed, &names[0], &third));

    // A change that keeps the path (a new port on every member) is confirmed.
    write(repo, "network.yaml", &network("  listenPort: 51999\n"));
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    for host in &names {
        assert_eq!(
            bed.ssh_ok(host, "wg show wg-mesh listen-port").trim(),
            "51999",
            "{host}"
        );
    }
    assert!(pings(&bed, &names[0], &third));
    assert!(pings(&bed, &names[1], &third));
    let settled = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(settled.status.code(), Some(0), "{}", text(&settled.stdout));
}
