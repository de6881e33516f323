//! The test server against clients no one here wrote: `kubectl` (server-side apply, get with
//! a label selector, scale, label, delete) and the Kubernetes Python client (Debian's
//! python3-kubernetes, run by Debian's /usr/bin/python3). Each checks what it sees through its
//! own client, and the store is checked directly.

use std::path::Path;
use std::process::{Command, Output};

use nimbus_kube_testserver::server::{Options, Running, spawn};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kubeconfig(dir: &Path, running: &Running) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, running.kubeconfig()).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn kubectl(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kubectl: {e} (scripts/setup.sh installs it)"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: acme, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: \"nginx:1\", ports: [{containerPort: 80}]}]
";

#[test]
fn kubectl_applies_scales_labels_and_deletes() {
    let running = spawn(Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = kubeconfig(dir.path(), &running);
    let apply = ["apply", "--server-side", "--validate=false", "-f", "-"];

    ok(&kubectl(&config, &["create", "namespace", "acme"], None));
    let said = ok(&kubectl(&config, &apply, Some(DEPLOYMENT)));
    assert!(
        said.contains("deployment.apps/web serverside-applied"),
        "{said}"
    );
    let seen = ok(&kubectl(
        &config,
        &[
            "-n",
            "acme",
            "get",
            "deploy",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].spec.replicas} {.items[0].status.availableReplicas}",
        ],
        None,
    ));
    assert_eq!(seen, "2 2");

    // Scaled by hand: the field is kubectl's now, and a plain apply conflicts with it.
    ok(&kubectl(
        &config,
        &["-n", "acme", "scale", "deploy", "web", "--replicas=5"],
        None,
    ));
    let refused = kubectl(&config, &apply, Some(DEPLOYMENT));
    assert!(!refused.status.success());
    let said = text(&refused.stderr);
    assert!(
        said.contains("Apply failed with 1 conflict") && said.contains(".spec.replicas"),
        "{said}"
    );
    let forced = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--validate=false",
        "-f",
        "-",
    ];
    ok(&kubectl(&config, &forced, Some(DEPLOYMENT)));
    let replicas = ok(&kubectl(
        &config,
        &[
            "-n",
            "acme",
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    ));
    assert_eq!(replicas, "2");

    // A label another manager adds stays through the next apply.
    ok(&kubectl(
        &config,
        &["-n", "acme", "label", "deploy", "web", "team=storage"],
        None,
    ));
    ok(&kubectl(&config, &apply, Some(DEPLOYMENT)));
    let labelled = ok(&kubectl(
        &config,
        &[
            "-n",
            "acme",
            "get",
            "deploy",
            "-l",
            "team=storage",
            "-o",
            "name",
        ],
        None,
    ));
    assert_eq!(labelled.trim(), "deployment.apps/web");
    let none = ok(&kubectl(
        &config,
        &[
            "-n",
            "acme",
            "get",
            "deploy",
            "-l",
            "team!=storage",
            "-o",
            "name",
        ],
        None,
    ));
    assert_eq!(none.trim(), "");

    // The namespace's delete takes the Deployment with it.
    ok(&kubectl(&config, &["delete", "namespace", "acme"], None));
    let left = ok(&kubectl(
        &config,
        &["get", "deploy", "-A", "-o", "name"],
        None,
    ));
    assert_eq!(left.trim(), "");
    assert!(
        running
            .requests()
            .get("patch deployments acme")
            .copied()
            .unwrap_or(0)
            >= 3
    );
}

#[test]
fn the_python_client_lists_by_label_and_sees_server_side_apply() {
    let python = Path::new("/usr/bin/python3");
    let has_client = Command::new(python)
        .args(["-c", "import kubernetes"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_client,
        "python3-kubernetes is missing (scripts/setup.sh installs it)"
    );
    let running = spawn(Options {
        failing_image: Some("broken".into()),
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = kubeconfig(dir.path(), &running);
    let script = r#"
import json, sys
from kubernetes import client, config
config.load_kube_config(sys.argv[1])
core, apps = client.CoreV1Api(), client.AppsV1Api()
core.create_namespace({"metadata": {"name": "acme"}})
core.create_namespaced_resource_quota("acme", {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "4"}}})
def deployment(name, image, replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"tier": "web" if name != "db" else "data"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}}
for name, image, replicas in [("web", "nginx:1", 1), ("db", "postgres:16", 1), ("bad", "broken:1", 1), ("big", "nginx:1", 3)]:
    # A server-side apply through the client's own request path: this version's typed method
    # takes no content type, and its REST layer sends a body given as text as it is.
    apps.api_client.call_api(
        f"/apis/apps/v1/namespaces/acme/deployments/{name}", "PATCH",
        query_params=[("fieldManager", "nimbus")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=json.dumps(deployment(name, image, replicas)), response_type="object", auth_settings=["BearerToken"],
        _return_http_data_only=True)
web = apps.read_namespaced_deployment("web", "acme")
listed = apps.list_namespaced_deployment("acme", label_selector="tier in (web)")
bad = apps.read_namespaced_deployment("bad", "acme")
big = apps.read_namespaced_deployment("big", "acme")
print(json.dumps({
    "managers": [m.manager for m in web.metadata.managed_fields],
    "operations": [m.operation for m in web.metadata.managed_fields],
    "selected": sorted(d.metadata.name for d in listed.items),
    "bad": [c.reason for c in bad.status.conditions if c.type == "Progressing"],
    "big": [c.message for c in big.status.conditions if c.type == "ReplicaFailure"],
    "bigAvailable": big.status.available_replicas,
}))
"#;
    let output = Command::new(python)
        .args(["-c", script])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let said = ok(&output);
    let seen: serde_json::Value =
        serde_json::from_str(said.trim()).unwrap_or_else(|e| panic!("{e}: {said}"));
    assert_eq!(seen["managers"], serde_json::json!(["nimbus"]), "{seen}");
    assert_eq!(seen["operations"], serde_json::json!(["Apply"]), "{seen}");
    assert_eq!(
        seen["selected"],
        serde_json::json!(["bad", "big", "web"]),
        "{seen}"
    );
    assert_eq!(
        seen["bad"],
        serde_json::json!(["ProgressDeadlineExceeded"]),
        "{seen}"
    );
    // The quota allows 4 pods in the namespace; web, db and bad run one each: `big` asks for
    // 3 and gets 1.
    assert_eq!(seen["bigAvailable"], 1, "{seen}");
    assert!(
        seen["big"][0]
            .as_str()
            .is_some_and(|m| m.contains("exceeded quota: q")),
        "{seen}"
    );
}
