//! `nimbus apply` of a k3s Cluster, a Tenant and its Workloads on two test-bed hosts (real
//! systemd and sshd), with the test API server standing in for the k3s binary
//! (`testbed/k3s/k3s`: k3s's command line in front of `nimbus-kube-testserver`, HTTPS with a
//! certificate authority, a node token every request must carry). So the copy, the checksum,
//! the units, servers before agents, the token read live, the kubeconfig and the tunnel
//! through the server's SSH connection are nimbus's real path; what a real k3s would add
//! (pods, a kubelet) is not here (docs/kubernetes.md). The results are read with kubectl, a
//! client nimbus did not write, through an SSH port forward.

use crate::common;
use crate::k3s;
use crate::sshd;
use common::{text, write};
use k3s::Kubectl;
use sshd::bed::Bed;

use std::path::Path;
use std::process::Output;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const SECRET: &str = "k3s-secret-value-6b1f";

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, repo, &[])
}

fn said(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// What a command said, once it exited with `code`.
fn exits(output: Output, code: i32) -> String {
    let out = said(&output);
    assert_eq!(output.status.code(), Some(code), "{out}");
    out
}

fn workload(name: &str, spec: &str) -> String {
    format!("{HEADER}kind: Workload\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n")
}

/// Serves `body` to every request on a loopback port, as a release download would; its URL.
fn serve(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/k3s/v1.33.0+nimbus.test.2/k3s")
}

#[test]
fn a_k3s_cluster_its_tenant_and_workloads_over_ssh() {
    let bed = Bed::up(2);
    let (server, agent) = (bed.hosts[0].name.clone(), bed.hosts[1].name.clone());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = &dir.path().join("repo");
    std::fs::create_dir_all(repo).unwrap_or_else(|e| panic!("{e}"));
    // What the stand-in runs, put on both hosts as the test bed's own software.
    k3s::prepare(&bed, "broken");
    common::bed_repository(repo, "k3s", &bed.known_hosts, &bed.key);
    common::encrypt_secret(repo, "api-token", SECRET);
    let standin = k3s::standin();
    std::fs::create_dir_all(repo.join("bin")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&standin, repo.join("bin/k3s")).unwrap_or_else(|e| panic!("{e}"));
    let hosts = format!(
        "{HEADER}kind: Host\nmetadata: {{name: {server}, labels: {{k3s: server, zone: a}}}}\nspec: {{address: {}}}\n---\n\
         {HEADER}kind: Host\nmetadata: {{name: {agent}, labels: {{k3s: agent, zone: b}}}}\nspec: {{address: {}}}\n",
        bed.hosts[0].address, bed.hosts[1].address
    );
    write(repo, "hosts.yaml", &hosts);
    let cluster = |sha: &str| {
        format!(
            "{HEADER}kind: Cluster\nmetadata: {{name: apps}}\nspec:\n  type: k3s\n  servers: {{k3s: server}}\n  agents: {{k3s: agent}}\n  k3s: {{source: bin/k3s, sha256: {sha}}}\n"
        )
    };
    write(repo, "cluster.yaml", &cluster(&"0".repeat(64)));
    write(
        repo,
        "tenants/acme/tenant.yaml",
        &format!(
            "{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{cluster: apps, quota: {{pods: 20, cpu: \"4\", memory: 1Gi}}, members: [alice]}}\n"
        ),
    );
    write(
        repo,
        "tenants/acme/web.yaml",
        &workload(
            "web",
            "image: \"nginx:1.27\", replicas: 2, cpu: 100m, memory: 64Mi, ports: [{port: 80}]",
        ),
    );
    write(
        repo,
        "tenants/acme/api.yaml",
        &workload(
            "api",
            "image: \"api:1\", replicas: 1, env: {MODE: prod, TOKEN: {secret: api-token}}",
        ),
    );

    // A binary whose sha256 is not the pinned one goes nowhere, and what needs it waits.
    let out = exits(nimbus(repo, &["apply", "--auto-approve", "."]), 1);
    assert!(
        out.contains("Cluster/apps") && out.contains("has sha256"),
        "{out}"
    );
    for host in [&server, &agent] {
        assert_eq!(
            bed.ssh_ok(
                host,
                "ls /usr/local/bin/k3s /etc/systemd/system/k3s*.service 2>/dev/null | wc -l"
            )
            .trim(),
            "0",
            "nothing installed on {host}"
        );
    }

    // A binary that does not come up as a server fails the Cluster with what its unit logged,
    // after the time it is given.
    std::fs::write(
        repo.join("bin/k3s"),
        "#!/bin/sh\necho 'k3s: cannot start: failed to find memory cgroup' >&2\nexit 1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    write(
        repo,
        "cluster.yaml",
        &cluster(&k3s::sha256_of(&repo.join("bin/k3s"))),
    );
    let out = exits(
        common::nimbus_with(
            &["apply", "--auto-approve", "."],
            repo,
            &[("NIMBUS_K3S_READY_TIMEOUT", "5")],
        ),
        1,
    );
    assert!(
        (out.contains("k3s did not come up in 5 s") || out.contains("k3s.service does not start"))
            && out.contains("failed to find memory cgroup"),
        "{out}"
    );
    assert!(out.contains("skipped  Tenant/acme"), "{out}");

    // The right one: server, then agent, then the tenant and its workloads.
    std::fs::copy(&standin, repo.join("bin/k3s")).unwrap_or_else(|e| panic!("{e}"));
    write(
        repo,
        "cluster.yaml",
        &cluster(&k3s::sha256_of(&repo.join("bin/k3s"))),
    );
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let out = said(&applied);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{out}\n{}",
        bed.ssh(&server, "sha256sum /usr/local/bin/k3s; head -1 /usr/local/bin/k3s; systemctl status k3s --no-pager; journalctl -u k3s -n 30 --no-pager").stdout.escape_ascii()
    );
    assert_eq!(
        bed.ssh_ok(&server, "systemctl is-active k3s").trim(),
        "active"
    );
    assert_eq!(
        bed.ssh_ok(&agent, "systemctl is-active k3s-agent").trim(),
        "active"
    );
    let unit = bed.ssh_ok(&agent, "cat /etc/systemd/system/k3s-agent.service");
    assert!(
        unit.contains(&format!("--server https://{}:6443", bed.hosts[0].address))
            && unit.contains("--node-label k3s=agent")
            && unit.contains("--node-label zone=b"),
        "{unit}"
    );
    // The token: read live, handed over on stdin into a root-only file, shown nowhere.
    let token = bed
        .ssh_ok(&server, "cat /var/lib/rancher/k3s/server/node-token")
        .trim()
        .to_owned();
    assert!(token.len() >= 16, "{token}");
    assert!(!unit.contains(&token), "the token is not in the unit");
    assert_eq!(
        bed.ssh_ok(
            &agent,
            "stat -c %a /etc/systemd/system/k3s-agent.service.env"
        )
        .trim(),
        "600"
    );
    assert!(!out.contains(&token) && !out.contains(SECRET), "{out}");

    let kubectl = Kubectl::new(&bed, &server, dir.path());
    let nodes = kubectl.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.zone};{end}",
    ]);
    assert!(
        nodes.contains(&format!("{server}=a")) && nodes.contains(&format!("{agent}=b")),
        "{nodes}"
    );
    let namespace = kubectl.ok(&[
        "get",
        "namespace",
        "acme",
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
    ]);
    assert_eq!(namespace, "nimbus");
    for object in [
        "resourcequota/nimbus-quota",
        "limitrange/nimbus-defaults",
        "networkpolicy/nimbus-isolation",
        "rolebinding/nimbus-members",
        "deployment/web",
        "deployment/api",
        "service/web",
        "secret/api-env",
    ] {
        kubectl.ok(&["-n", "acme", "get", object]);
    }
    let replicas = kubectl.ok(&[
        "-n",
        "acme",
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas}/{.status.availableReplicas}",
    ]);
    assert_eq!(replicas, "2/2");
    let managers = kubectl.ok(&[
        "-n",
        "acme",
        "get",
        "deployment",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(
        managers.split_whitespace().any(|m| m == "nimbus"),
        "{managers}"
    );
    // The secret's value reached the API, not the state or the plan.
    let data = kubectl.ok(&[
        "-n",
        "acme",
        "get",
        "secret",
        "api-env",
        "-o",
        "jsonpath={.data.TOKEN}",
    ]);
    assert!(!data.is_empty());
    let state = std::fs::read(repo.join(".nimbus/state.db")).unwrap_or_default();
    let state = String::from_utf8_lossy(&state);
    assert!(
        !state.contains(SECRET) && !state.contains(&token),
        "a secret in state"
    );

    // Nothing to do the second time.
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", said(&again));

    // A replica count changed by hand is drift and is corrected; a label another manager
    // adds is not drift and stays.
    kubectl.ok(&["-n", "acme", "scale", "deployment", "web", "--replicas=4"]);
    kubectl.ok(&["-n", "acme", "label", "deployment", "web", "team=payments"]);
    let out = exits(nimbus(repo, &["plan", "--detailed-exitcode", "."]), 2);
    assert!(
        out.contains("Workload/acme/web") && out.contains("replicas"),
        "{out}"
    );
    assert!(
        !out.contains("team"),
        "a label nimbus does not manage is not drift: {out}"
    );
    exits(nimbus(repo, &["apply", "--auto-approve", "."]), 0);
    let now = kubectl.ok(&[
        "-n",
        "acme",
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.labels.team}",
    ]);
    assert_eq!(now, "2 payments");

    // A rollout that fails fails its Workload with the API's reason; the rest converges.
    write(
        repo,
        "tenants/acme/bad.yaml",
        &workload("bad", "image: \"broken:1\", replicas: 1"),
    );
    write(
        repo,
        "tenants/acme/small.yaml",
        &workload("small", "image: \"nginx:1.27\", replicas: 1"),
    );
    let out = exits(nimbus(repo, &["apply", "--auto-approve", "."]), 1);
    assert!(
        out.contains("Workload/acme/bad") && out.contains("rollout failed"),
        "{out}"
    );
    // What the failed create made (its Deployment) is kept, tainted: the next plan makes it
    // again, and removing its manifest deletes it, as Terraform does with a tainted resource.
    kubectl.ok(&["-n", "acme", "get", "deployment", "bad"]);
    let out = exits(nimbus(repo, &["plan", "--detailed-exitcode", "."]), 2);
    assert!(
        out.contains("Workload/acme/bad must be replaced")
            && out.contains("tainted: the apply that made it failed"),
        "{out}"
    );
    let listed = nimbus(repo, &["state", "list"]);
    assert!(
        said(&listed).contains("Workload/acme/bad  (tainted"),
        "{}",
        said(&listed)
    );
    std::fs::remove_file(repo.join("tenants/acme/bad.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let gone = |name: &str| {
        let got = kubectl.run(&["-n", "acme", "get", "deployment", name]);
        assert!(
            !got.status.success() && said(&got).contains("NotFound"),
            "{name}: {}",
            said(&got)
        );
    };
    // Over the quota: `big` declares no memory, so the LimitRange's default limit (256Mi a
    // pod) counts against the tenant's 1Gi, as the API admits pods; only the API can say
    // that six of them do not fit in what web, api and small leave.
    write(
        repo,
        "tenants/acme/big.yaml",
        &workload("big", "image: \"nginx:1.27\", replicas: 6"),
    );
    let out = exits(
        nimbus(repo, &["apply", "--auto-approve", "--allow-deletes", "."]),
        1,
    );
    assert!(
        out.contains("Workload/acme/big") && out.contains("exceeded quota"),
        "{out}"
    );
    kubectl.ok(&["-n", "acme", "get", "deployment", "small"]);
    gone("bad");
    std::fs::remove_file(repo.join("tenants/acme/big.yaml")).unwrap_or_else(|e| panic!("{e}"));

    // An image the API refuses fails its Workload with the API's words.
    write(
        repo,
        "tenants/acme/spaced.yaml",
        &workload("spaced", "image: \"nginx:1.27 \", replicas: 1"),
    );
    let out = exits(
        nimbus(repo, &["apply", "--auto-approve", "--allow-deletes", "."]),
        1,
    );
    assert!(
        out.contains("Workload/acme/spaced")
            && out.contains("must not have leading or trailing whitespace"),
        "{out}"
    );
    gone("big");
    std::fs::remove_file(repo.join("tenants/acme/spaced.yaml")).unwrap_or_else(|e| panic!("{e}"));

    // A Deployment another field manager applied first (its own selector and container
    // name): nimbus does not take it over silently (issue 28).
    let theirs = dir.path().join("shared.yaml");
    std::fs::write(
        &theirs,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shared, namespace: acme}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: shared}}\n  template:\n    metadata: {labels: {app: shared}}\n    spec:\n      containers: [{name: app, image: \"nginx:1.27\", resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {cpu: 50m, memory: 32Mi}}}]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    kubectl.ok(&[
        "apply",
        "--server-side",
        "--validate=false",
        "-f",
        &theirs.display().to_string(),
    ]);
    // Discovery (issue 28) lists what kubectl made and nimbus does not manage, with the
    // address each would get, and changes nothing in the API.
    kubectl.ok(&["create", "namespace", "hand-made"]);
    let versions = || {
        kubectl.ok(&[
            "get",
            "namespaces,deployments,services",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
        ])
    };
    let before = versions();
    let objects = common::discovered(repo, &[]);
    let found = |kind: &str, address: &str| {
        objects
            .iter()
            .any(|o| o["kind"] == kind && o["address"] == address)
    };
    assert!(found("Tenant", "Tenant/hand-made"), "{objects:?}");
    assert!(found("Workload", "Workload/acme/shared"), "{objects:?}");
    assert!(
        !found("Tenant", "Tenant/acme") && !found("Workload", "Workload/acme/web"),
        "what nimbus manages is not listed: {objects:?}"
    );
    assert_eq!(versions(), before, "discovery changed the API's objects");
    write(
        repo,
        "tenants/acme/shared.yaml",
        &workload(
            "shared",
            "image: \"nginx:1.27\", replicas: 1, cpu: 50m, memory: 32Mi",
        ),
    );
    // Declared but not imported: refused by the plan and left as it is.
    let out = exits(nimbus(repo, &["apply", "--auto-approve", "."]), 1);
    assert!(
        out.contains("Workload/acme/shared exists, not managed")
            && out.contains("nimbus import Workload/acme/shared"),
        "{out}"
    );
    assert_eq!(versions(), before, "a refused object was changed");
    // `--force-conflicts` takes it over (an import): it keeps the selector the API never lets
    // change and its container's name, so it stays one Deployment with one container. A new
    // Workload in the same run is created as usual.
    write(
        repo,
        "tenants/acme/fresh.yaml",
        &workload(
            "fresh",
            "image: \"nginx:1.27\", replicas: 1, cpu: 50m, memory: 32Mi",
        ),
    );
    let out = exits(
        nimbus(repo, &["apply", "--auto-approve", "--force-conflicts", "."]),
        0,
    );
    assert!(
        out.contains("<- Workload/acme/shared") && out.contains("+ Workload/acme/fresh"),
        "{out}"
    );
    std::fs::remove_file(repo.join("tenants/acme/fresh.yaml")).unwrap_or_else(|e| panic!("{e}"));
    exits(
        nimbus(repo, &["apply", "--auto-approve", "--allow-deletes", "."]),
        0,
    );
    let shared = |path: &str| {
        kubectl.ok(&[
            "-n",
            "acme",
            "get",
            "deployment",
            "shared",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(shared("{.spec.replicas}"), "1");
    assert_eq!(shared("{.spec.template.spec.containers[*].name}"), "app");
    assert_eq!(shared("{.spec.selector.matchLabels.app}"), "shared");
    assert_eq!(
        shared("{.metadata.labels.app\\.kubernetes\\.io/managed-by}"),
        "nimbus"
    );
    exits(nimbus(repo, &["plan", "--detailed-exitcode", "."]), 0);

    // Generation: a namespace with a Deployment that reads a Secret, made by kubectl, becomes
    // a Tenant and a Workload with Import records; the Secret's value and an env value that
    // looks secret are encrypted, never written in clear.
    kubectl.ok(&["create", "namespace", "legacy"]);
    kubectl.ok(&[
        "-n",
        "legacy",
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=pw=k8s-found-secret-51d2",
    ]);
    let legacy = dir.path().join("legacy.yaml");
    std::fs::write(
        &legacy,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop, namespace: legacy}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    spec:\n      containers:\n      - name: shop\n        image: \"nginx:1.27\"\n        ports: [{containerPort: 80}]\n        env:\n        - {name: MODE, value: prod}\n        - {name: API_TOKEN, value: k8s-found-token-77e0}\n        - name: DB_PASS\n          valueFrom: {secretKeyRef: {name: db, key: pw}}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    kubectl.ok(&[
        "apply",
        "--validate=false",
        "-f",
        &legacy.display().to_string(),
    ]);
    let out = exits(
        nimbus(
            repo,
            &["discover", "--generate", "--select", "*legacy*", "."],
        ),
        0,
    );
    assert!(out.contains("2 secrets found were encrypted"), "{out}");
    let written = std::fs::read_to_string(repo.join("discovered/tenant-legacy.yaml"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    for wanted in [
        "kind: Tenant",
        "name: legacy",
        "cluster: \"apps\"",
        "kind: Workload",
        "name: shop",
        "image: \"nginx:1.27\"",
        "replicas: 2",
        "\"MODE\":\"prod\"",
        "\"DB_PASS\":{\"secret\":\"legacy-shop-db-pass\"}",
        "to: Workload/legacy/shop",
        "to: Tenant/legacy",
    ] {
        assert!(written.contains(wanted), "{wanted} in {written}");
    }
    for file in ["legacy-shop-db-pass", "legacy-shop-api-token"] {
        let armored = std::fs::read_to_string(repo.join(format!("secrets/{file}.age")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(armored.contains("BEGIN AGE ENCRYPTED FILE"), "{armored}");
    }
    for value in ["k8s-found-secret-51d2", "k8s-found-token-77e0"] {
        let grep = std::process::Command::new("grep")
            .args(["-r", "-l", "-F", value])
            .arg(repo)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            grep.status.code(),
            Some(1),
            "{value} written in clear: {}",
            text(&grep.stdout)
        );
        assert!(!out.contains(value), "{out}");
    }
    let out = exits(nimbus(repo, &["plan", "."]), 0);
    assert!(
        out.contains("<- Tenant/legacy") && out.contains("<- Workload/legacy/shop"),
        "{out}"
    );
    exits(nimbus(repo, &["apply", "--auto-approve", "."]), 0);
    assert_eq!(
        kubectl.ok(&[
            "get",
            "namespace",
            "legacy",
            "-o",
            "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}"
        ]),
        "nimbus"
    );
    // The secret reaches the pods from nimbus's own Secret now, with the value found.
    let value = kubectl.ok(&[
        "-n",
        "legacy",
        "get",
        "secret",
        "shop-env",
        "-o",
        "jsonpath={.data.DB_PASS}",
    ]);
    assert_eq!(
        value, "azhzLWZvdW5kLXNlY3JldC01MWQy",
        "base64 of the value found"
    );
    exits(nimbus(repo, &["plan", "--detailed-exitcode", "."]), 0);
    // Imported, so owned: its manifests removed, prune deletes the namespace.
    std::fs::remove_file(repo.join("discovered/tenant-legacy.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    exits(
        nimbus(repo, &["apply", "--auto-approve", "--allow-deletes", "."]),
        0,
    );
    assert!(
        text(&kubectl.run(&["get", "namespace", "legacy"]).stderr).contains("NotFound"),
        "the imported namespace was pruned"
    );

    // A new binary, given by URL (a release download, here served on loopback): with a
    // `version` it does not report, nothing is replaced anywhere.
    let standin_text = std::fs::read_to_string(repo.join("bin/k3s")).unwrap_or_default();
    let next = standin_text.replace("nimbus.test.1", "nimbus.test.2");
    let url = serve(next.clone().into_bytes());
    std::fs::write(dir.path().join("k3s-next"), &next).unwrap_or_else(|e| panic!("{e}"));
    let next_sha = k3s::sha256_of(&dir.path().join("k3s-next"));
    let by_url = |version: &str| {
        format!(
            "{HEADER}kind: Cluster\nmetadata: {{name: apps}}\nspec:\n  type: k3s\n  servers: {{k3s: server}}\n  agents: {{k3s: agent}}\n  version: \"{version}\"\n  k3s: {{source: \"{url}\", sha256: {next_sha}}}\n"
        )
    };
    write(repo, "cluster.yaml", &by_url("v1.33.0+nimbus.test.3"));
    let out = exits(nimbus(repo, &["apply", "--auto-approve", "."]), 1);
    assert!(
        out.contains("not the version 'v1.33.0+nimbus.test.3'")
            && out.contains("\"v1.33.0+nimbus.test.1\" -> \"v1.33.0+nimbus.test.3\""),
        "{out}"
    );
    for host in [&server, &agent] {
        assert!(
            bed.ssh_ok(host, "/usr/local/bin/k3s --version")
                .contains("nimbus.test.1"),
            "{host} kept its binary"
        );
    }

    // The version it reports: it rolls node by node, the server restarts first, then the
    // agent.
    write(repo, "cluster.yaml", &by_url("v1.33.0+nimbus.test.2"));
    exits(
        nimbus(repo, &["apply", "--auto-approve", "--allow-deletes", "."]),
        0,
    );
    let started = |host: &str, unit: &str| -> u64 {
        bed.ssh_ok(
            host,
            &format!("systemctl show -p ActiveEnterTimestampMonotonic --value {unit}"),
        )
        .trim()
        .parse()
        .unwrap_or(0)
    };
    let (server_at, agent_at) = (started(&server, "k3s"), started(&agent, "k3s-agent"));
    assert!(
        server_at > 0 && server_at < agent_at,
        "server {server_at}, agent {agent_at}"
    );
    for host in [&server, &agent] {
        assert!(
            bed.ssh_ok(host, "/usr/local/bin/k3s --version")
                .contains("nimbus.test.2")
        );
    }
    drop(kubectl);
    let kubectl = Kubectl::new(&bed, &server, dir.path());

    // The server's unit stopped by hand: its units are observed over SSH, so the Cluster
    // plans the server back; what runs on it cannot be observed without an API, and the plan
    // names it instead of saying the state matches or planning it anew. Apply starts the
    // server again (and exits 1: the workloads were not observed); the next run is clean.
    bed.ssh_ok(&server, "systemctl stop k3s");
    let blind = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    let out = said(&blind);
    assert_eq!(blind.status.code(), Some(2), "{out}");
    assert!(!out.contains("matches the repository"), "{out}");
    assert!(out.contains("~ Cluster/apps"), "{out}");
    assert!(out.contains("? Workload/"), "{out}");
    assert!(!out.contains("will be created"), "{out}");
    exits(nimbus(repo, &["apply", "--auto-approve", "."]), 1);
    assert_eq!(
        bed.ssh_ok(&server, "systemctl is-active k3s").trim(),
        "active",
        "the server was not started again"
    );
    exits(nimbus(repo, &["apply", "--auto-approve", "."]), 0);
    exits(nimbus(repo, &["plan", "--detailed-exitcode", "."]), 0);

    // A node no longer selected leaves the cluster that stays: its unit, binary and Node go,
    // the server and the workloads stay.
    write(repo, "hosts.yaml", &hosts.replace("k3s: agent, ", ""));
    exits(
        nimbus(repo, &["apply", "--auto-approve", "--allow-deletes", "."]),
        0,
    );
    assert_eq!(
        bed.ssh_ok(
            &agent,
            "ls /usr/local/bin/k3s /etc/systemd/system/k3s*.service 2>/dev/null | wc -l"
        )
        .trim(),
        "0"
    );
    let nodes = kubectl.ok(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(nodes, server, "only the server is a node");
    assert_eq!(
        kubectl.ok(&[
            "get",
            "deployment",
            "web",
            "-n",
            "acme",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );
    assert_eq!(
        bed.ssh_ok(&server, "systemctl is-active k3s").trim(),
        "active"
    );
    exits(nimbus(repo, &["plan", "--detailed-exitcode", "."]), 0);

    // The tenant goes: its workloads first, then its namespace.
    std::fs::remove_dir_all(repo.join("tenants")).unwrap_or_else(|e| panic!("{e}"));
    let out = exits(
        nimbus(repo, &["apply", "--auto-approve", "--allow-deletes", "."]),
        0,
    );
    let position = |needle: &str| {
        out.rfind(needle)
            .unwrap_or_else(|| panic!("{needle} not in {out}"))
    };
    assert!(
        position("Workload/acme/web") < position("Tenant/acme"),
        "{out}"
    );
    let gone = kubectl.run(&["get", "namespace", "acme"]);
    assert!(
        !gone.status.success() && said(&gone).contains("NotFound"),
        "{}",
        said(&gone)
    );
    drop(kubectl);

    // And the cluster: units, binary and data leave both hosts.
    std::fs::remove_file(repo.join("cluster.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let uninstalled = nimbus(repo, &["apply", "--auto-approve", "--allow-deletes", "."]);
    assert_eq!(uninstalled.status.code(), Some(0), "{}", said(&uninstalled));
    for host in [&server, &agent] {
        assert_eq!(
            bed.ssh_ok(host, "ls /usr/local/bin/k3s /etc/systemd/system/k3s*.service /etc/rancher/k3s 2>/dev/null | wc -l").trim(),
            "0",
            "{host} still has k3s: {}",
            said(&uninstalled)
        );
    }
}
