//! `nimbus graph` on examples-repo: per-host instances, their edges, and the three formats.

use crate::common;
use common::nimbus;

use std::path::Path;

fn examples_repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo")
}

fn graph_json() -> serde_json::Value {
    let output = nimbus(&["graph", "--format", "json", "."], &examples_repo());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON: {e}"))
}

fn edges(graph: &serde_json::Value) -> Vec<(String, String)> {
    graph["edges"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["from"].as_str().unwrap_or("").to_owned(),
                        e["to"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_selector_expands_into_one_instance_per_host() {
    let graph = graph_json();
    let addresses: Vec<&str> = graph["instances"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["address"].as_str()).collect())
        .unwrap_or_default();
    for address in [
        "File/motd@web-1",
        "File/motd@web-2",
        "File/motd@db-1",
        "File/nginx-site@web-1",
        "Network/mesh@db-1",
        "VM/ci-runner",
    ] {
        assert!(
            addresses.contains(&address),
            "no {address} in {addresses:?}"
        );
    }
    assert!(
        !addresses.contains(&"File/nginx-site@db-1"),
        "nginx-site selects role=web only"
    );
    assert!(!addresses.iter().any(|a| a.starts_with("Repository")));
    let edges = edges(&graph);
    let has = |from: &str, to: &str| edges.iter().any(|(f, t)| f == from && t == to);
    assert!(has("File/motd@web-1", "Host/web-1"));
    assert!(
        !has("File/motd@web-1", "Host/web-2"),
        "an instance depends on its own host only"
    );
    assert!(
        has("Service/edge-proxy@web-1", "File/nginx-site@web-1"),
        "restartOn, on the same host"
    );
    assert!(!has("Service/edge-proxy@web-1", "File/nginx-site@web-2"));
    assert!(has("VM/ci-runner", "Network/mesh@db-1"));
    assert!(
        !has("VM/ci-runner", "Network/mesh@web-1"),
        "a VM joins the network on its own host"
    );
    assert!(has("Workload/acme/api", "Volume/acme/uploads"));
    assert!(has("Tenant/acme", "Cluster/prod"));
}

#[test]
fn instances_come_in_dependency_order() {
    let graph = graph_json();
    let order: Vec<String> = graph["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let position = |a: &str| {
        order
            .iter()
            .position(|x| x == a)
            .unwrap_or_else(|| panic!("no {a}"))
    };
    for (from, to) in edges(&graph) {
        assert!(
            position(&to) < position(&from),
            "{to} must come before {from}"
        );
    }
}

#[test]
fn dot_and_mermaid() {
    let output = nimbus(&["graph", "."], &examples_repo());
    let dot = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(dot.starts_with("digraph nimbus {"), "{dot}");
    assert!(
        dot.contains("\"File/motd@web-1\" -> \"Host/web-1\";"),
        "{dot}"
    );
    let output = nimbus(&["graph", "--format", "mermaid", "."], &examples_repo());
    let mermaid = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(mermaid.starts_with("graph LR\n"), "{mermaid}");
    assert!(
        mermaid.contains("[\"Workload/acme/api\"]") && mermaid.contains(" --> "),
        "{mermaid}"
    );
}

#[test]
fn a_repository_with_errors_has_no_graph() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate");
    let output = nimbus(&["graph", "many-mistakes"], &dir);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("fix them first"));
}
