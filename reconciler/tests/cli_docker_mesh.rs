//! A Docker Swarm on a WireGuard mesh: a Cluster that names a Network is made after the mesh
//! (the graph orders it so), and its nodes advertise their overlay addresses to each other,
//! on test-bed hosts running their own dockerd and wireguard-go. A second plan is empty.

use crate::common;
use crate::sshd;
use common::{ok, text, write};
use sshd::bed::Bed;

use std::path::Path;
use std::process::Output;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    // The agent without symbols: 70 MB to copy to each host rather than 400.
    common::nimbus_with_stripped_agent(args, repo)
}

#[test]
fn a_swarm_on_a_network_advertises_its_overlay_addresses() {
    let bed = Bed::up_docker(2);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "overlay", &bed.known_hosts, &bed.key);
    let hosts = bed
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let role = if i == 0 { "manager" } else { "worker" };
            format!(
                "{HEADER}kind: Host\nmetadata: {{name: {}, labels: {{role: {role}, mesh: \"yes\"}}}}\nspec: {{address: {}}}\n",
                h.name, h.address
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    write(repo, "hosts.yaml", &hosts);
    write(
        repo,
        "network.yaml",
        &format!(
            "{HEADER}kind: Network\nmetadata: {{name: mesh}}\nspec: {{members: {{mesh: \"yes\"}}}}\n"
        ),
    );
    write(
        repo,
        "cluster.yaml",
        &format!(
            "{HEADER}kind: Cluster\nmetadata: {{name: swarm}}\nspec: {{type: docker-swarm, managers: {{role: manager}}, workers: {{role: worker}}, network: mesh}}\n"
        ),
    );
    let plan = ok(&nimbus(repo, &["plan", "."]));
    // The nodes' addresses in the plan are their overlay addresses.
    assert!(plan.contains("10.106.103.1"), "{plan}");
    assert!(!plan.contains("advertise their own addresses"), "{plan}");
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let said = format!("{}{}", text(&applied.stdout), text(&applied.stderr));
    assert_eq!(applied.status.code(), Some(0), "{said}");
    // The mesh is made before the cluster.
    let mesh_done = said
        .find("created Network/mesh@")
        .unwrap_or_else(|| panic!("{said}"));
    let cluster_started = said
        .find("creating Cluster/swarm")
        .unwrap_or_else(|| panic!("{said}"));
    assert!(mesh_done < cluster_started, "{said}");

    for (i, host) in bed.hosts.iter().enumerate() {
        let advertised = bed.ssh_ok(
            &host.name,
            "docker info --format '{{.Swarm.NodeAddr}} {{.Swarm.LocalNodeState}}'",
        );
        assert_eq!(
            advertised.trim(),
            format!("10.106.103.{} active", i + 1),
            "{}",
            host.name
        );
    }
    let listed = bed.ssh_ok(
        &bed.hosts[0].name,
        "docker node ls --format '{{.Hostname}} {{.Status}}'",
    );
    assert_eq!(
        listed.lines().filter(|l| l.ends_with("Ready")).count(),
        2,
        "{listed}"
    );

    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );
    ok(&nimbus(repo, &["destroy", "--auto-approve", "."]));
}
