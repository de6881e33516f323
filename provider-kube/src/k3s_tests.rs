//! Unit tests of the k3s module: node order, unit text, versions.

use super::*;

#[test]
fn the_version_is_the_word_after_version() {
    assert_eq!(
        version_of("k3s version v1.33.1+k3s1 (99d91538)"),
        "v1.33.1+k3s1"
    );
    assert_eq!(version_of("  something else "), "something else");
}

fn node(host: &str, server: bool) -> Node {
    Node {
        host: host.to_owned(),
        server,
        labels: BTreeMap::from([("zone".to_owned(), "a b".to_owned())]),
        address: None,
    }
}

#[test]
fn servers_come_first_and_agents_join() {
    let spec = json!({"nodes": {
        "a1": {"role": "worker", "labels": {}},
        "s2": {"role": "manager", "labels": {}},
        "s1": {"role": "manager", "labels": {}, "address": "10.0.0.1"},
    }});
    let order: Vec<String> = nodes_of(&spec).into_iter().map(|n| n.host).collect();
    assert_eq!(order, ["s1", "s2", "a1"]);
    assert_eq!(
        flags(&node("s1", true), None, Some("wg-mesh")),
        [
            "server",
            "--node-name",
            "s1",
            "--node-label",
            "zone=a b",
            "--cluster-init"
        ]
    );
    let mut on_mesh = node("a1", false);
    on_mesh.address = Some("10.106.103.2".to_owned());
    let agent = flags(&on_mesh, Some("https://10.0.0.1:6443"), Some("wg-mesh"));
    assert!(
        agent
            .windows(4)
            .any(|w| w == ["--node-ip", "10.106.103.2", "--flannel-iface", "wg-mesh"]),
        "{agent:?}"
    );
    assert_eq!(agent[0], "agent");
    assert_eq!(
        &agent[agent.len() - 2..],
        ["--server", "https://10.0.0.1:6443"]
    );
}

#[test]
fn the_unit_quotes_what_systemd_would_split_or_expand_and_reads_the_token_from_a_file() {
    let mut agent = node("a1", false);
    agent.labels.insert("cost".to_owned(), "100%$".to_owned());
    let flags = flags(&agent, Some("https://h:6443"), None);
    let text = unit_text(&json!({"role": "agent"}), "k3s-agent", &flags, true);
    assert!(text.starts_with(MARKER), "{text}");
    assert!(text.contains("--node-label \"zone=a b\""), "{text}");
    // systemd would expand `%` as a specifier and `$` as a variable.
    assert!(text.contains("--node-label \"cost=100%%$$\""), "{text}");
    assert!(
        text.contains("EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env"),
        "{text}"
    );
}
