//! `nimbus apply` of a Workload on one Docker host, with no cluster: a test-bed host running
//! its own dockerd (`testbed/docker/`), a Tenant that names no cluster, and a Workload placed
//! on that host, reached through the host's SSH connection only. Then: a placement that names
//! no host is refused at plan time; the container answers on its host port with its secret as
//! a file; a second plan is empty; a container stopped by hand is started again; an env change
//! makes a new container; a command that exits at once fails the workload with the reason and
//! leaves the old container serving; a host port another container holds fails the workload
//! with the engine's reason; removing the workload removes its container and the
//! tenant's network. A second host and a workload placed by selector: the scheduler puts it on
//! the busiest host that fits and the plan says why; the host relabelled out of the selector,
//! the container moves to the other host.

use crate::common;
use crate::sshd;
use common::{ok, serves, text, write};
use sshd::bed::{Bed, TEST_IMAGE};

use std::path::Path;
use std::process::Output;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const SECRET: &str = "solo-S3CRET-token-7070";

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, repo, &[])
}

fn workload(host: &str, greeting: &str, command: Option<&str>) -> String {
    let command = command.map_or_else(String::new, |c| format!("  command: {c}\n"));
    format!(
        "{HEADER}kind: Workload\nmetadata: {{name: web}}\nspec:\n  image: {TEST_IMAGE}\n  cpu: 100m\n  memory: 64Mi\n  ports: [{{port: 8000, hostPort: 8080}}]\n  env: {{GREETING: {greeting}, TOKEN: {{secret: web-token}}}}\n  placement: {{hosts: [{host}]}}\n{command}"
    )
}

#[test]
fn a_workload_without_a_cluster_runs_as_a_container_on_its_host() {
    let bed = Bed::up_docker(2);
    let host = &bed.hosts[0];
    let docker = |command: &str| bed.ssh_ok(&host.name, command);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "solo", &bed.known_hosts, &bed.key);
    common::encrypt_secret(repo, "web-token", SECRET);
    let hosts = |second_role: &str| {
        bed.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let role = if i == 0 { "docker" } else { second_role };
                // No declared capacity: the scheduler uses the facts recorded when the Host
                // was applied (the first apply below).
                format!(
                    "{HEADER}kind: Host\nmetadata: {{name: {}, labels: {{role: {role}}}}}\nspec: {{address: {}}}\n",
                    h.name, h.address
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    };
    write(repo, "hosts.yaml", &hosts("docker"));
    write(
        repo,
        "tenants/solo/tenant.yaml",
        &format!(
            "{HEADER}kind: Tenant\nmetadata: {{name: solo}}\nspec: {{quota: {{cpu: \"1\", memory: 512Mi}}}}\n"
        ),
    );

    // With no cluster, a workload must name its one host: refused at plan time, with the line.
    write(
        repo,
        "tenants/solo/web.yaml",
        &format!(
            "{HEADER}kind: Workload\nmetadata: {{name: web}}\nspec: {{image: {TEST_IMAGE}, replicas: 2}}\n"
        ),
    );
    let refused = nimbus(repo, &["plan", "."]);
    assert_eq!(refused.status.code(), Some(1));
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(
        said.contains("names no cluster") && said.contains("tenants/solo/web.yaml"),
        "{said}"
    );
    assert!(said.contains("cannot have 2 replicas"), "{said}");

    write(
        repo,
        "tenants/solo/web.yaml",
        &workload(&host.name, "hello", None),
    );
    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(plan.contains("+ Workload/solo/web"), "{plan}");
    assert!(
        !plan.contains("ingress mode"),
        "no routing mesh on a single host: {plan}"
    );

    // Applied: a container with its restart policy, on the tenant's bridge network.
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let out = ok(&applied);
    assert!(out.contains("0 failed"), "{out}");
    assert!(serves(&host.address, 8080, "nimbus test"), "no answer");
    assert_eq!(
        docker(
            "docker inspect solo_web --format '{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.NetworkMode}} {{index .Config.Labels \"dev.nimbus.managed-by\"}} {{.HostConfig.Memory}}'"
        ),
        "unless-stopped nimbus-solo nimbus 67108864\n"
    );
    assert_eq!(
        docker("docker network inspect nimbus-solo --format '{{.Driver}}'"),
        "bridge\n"
    );
    // The secret is a file in the container, never a value in its configuration or output.
    assert_eq!(
        docker(
            "docker exec solo_web python3 -c 'import os; print(open(os.environ[\"TOKEN_FILE\"]).read(), os.environ[\"GREETING\"])'"
        ),
        format!("{SECRET} hello\n")
    );
    assert!(!docker("docker inspect solo_web").contains(SECRET));
    assert!(!text(&applied.stdout).contains(SECRET) && !text(&applied.stderr).contains(SECRET));
    // State records the image the container runs, by id (it came from no registry).
    let recorded = ok(&nimbus(repo, &["state", "show", "Workload/solo/web"]));
    let id = docker("docker inspect solo_web --format '{{.Image}}'");
    assert!(recorded.contains(id.trim()), "{recorded}");
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));

    // Stopped by hand: drift, started again.
    docker("docker stop solo_web >/dev/null");
    let drift = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(drift.status.code(), Some(2));
    assert!(
        text(&drift.stdout).contains("~ replicas: 0 -> 1"),
        "{}",
        text(&drift.stdout)
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(
        serves(&host.address, 8080, "nimbus test"),
        "not started again"
    );

    // Zero replicas: the container is kept, stopped; a second plan is empty; one again: runs.
    write(
        repo,
        "tenants/solo/web.yaml",
        &workload(&host.name, "hello", None).replace("  cpu: 100m", "  replicas: 0\n  cpu: 100m"),
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert_eq!(
        docker("docker inspect solo_web --format '{{.State.Running}}'"),
        "false\n"
    );
    let stopped = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stdout));
    write(
        repo,
        "tenants/solo/web.yaml",
        &workload(&host.name, "hello", None),
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(
        serves(&host.address, 8080, "nimbus test"),
        "not running again"
    );

    // A new env: a new container, serving.
    let before = docker("docker inspect solo_web --format '{{.Id}}'");
    write(
        repo,
        "tenants/solo/web.yaml",
        &workload(&host.name, "bonjour", None),
    );
    let changed = ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(changed.contains("~ Workload/solo/web"), "{changed}");
    assert_ne!(docker("docker inspect solo_web --format '{{.Id}}'"), before);
    assert!(serves(&host.address, 8080, "nimbus test"));
    assert_eq!(
        docker("docker exec solo_web python3 -c 'import os; print(os.environ[\"GREETING\"])'"),
        "bonjour\n"
    );

    // A command that exits at once: the workload fails saying so, the old container serves.
    let serving = docker("docker inspect solo_web --format '{{.Id}}'");
    write(
        repo,
        "tenants/solo/web.yaml",
        &workload(
            &host.name,
            "broken",
            Some("[\"/usr/bin/python3\", \"-c\", \"raise SystemExit(3)\"]"),
        ),
    );
    let broken = nimbus(repo, &["apply", "--auto-approve", "."]);
    assert_eq!(broken.status.code(), Some(1));
    let said = format!("{}{}", text(&broken.stdout), text(&broken.stderr));
    assert!(
        said.contains("Workload/solo/web") && said.contains("exit code 3"),
        "{said}"
    );
    assert!(
        said.contains("the previous container was started again"),
        "{said}"
    );
    assert_eq!(
        docker("docker inspect solo_web --format '{{.Id}}'"),
        serving
    );
    assert!(
        serves(&host.address, 8080, "nimbus test"),
        "old one not serving"
    );
    assert_eq!(
        docker("docker ps -a --format '{{.Names}}'"),
        "solo_web\n",
        "nothing half made left"
    );

    // A host port another container holds: the workload fails with the engine's reason and
    // leaves no container behind.
    docker(&format!(
        "docker run -d --name squatter -p 8082:8000 {TEST_IMAGE} >/dev/null"
    ));
    write(
        repo,
        "tenants/solo/clash.yaml",
        &format!(
            "{HEADER}kind: Workload\nmetadata: {{name: clash}}\nspec: {{image: {TEST_IMAGE}, ports: [{{port: 8000, hostPort: 8082}}], placement: {{hosts: [{}]}}}}\n",
            host.name
        ),
    );
    let clash = nimbus(repo, &["apply", "--auto-approve", "."]);
    assert_eq!(clash.status.code(), Some(1));
    let said = text(&clash.stdout);
    assert!(
        said.contains("Workload/solo/clash") && said.contains("already allocated"),
        "{said}"
    );
    assert_eq!(
        docker("docker ps -a --format '{{.Names}}' | sort"),
        "solo_web\nsquatter\n"
    );
    std::fs::remove_file(repo.join("tenants/solo/clash.yaml")).unwrap_or_else(|e| panic!("{e}"));
    docker("docker rm -f squatter >/dev/null");

    // Placed by selector: both hosts match and fit (their capacity is their recorded facts);
    // h1, which runs web, is the busier.
    let other = &bed.hosts[1];
    write(
        repo,
        "tenants/solo/web.yaml",
        &workload(&host.name, "bonjour", None),
    );
    write(
        repo,
        "tenants/solo/api.yaml",
        &format!(
            "{HEADER}kind: Workload\nmetadata: {{name: api}}\nspec: {{image: {TEST_IMAGE}, cpu: 500m, memory: 128Mi, ports: [{{port: 8000, hostPort: 8081}}], placement: {{role: docker}}}}\n"
        ),
    );
    let placed = ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(
        placed.contains(&format!("placed on {}: fits, most loaded", host.name)),
        "{placed}"
    );
    assert!(serves(&host.address, 8081, "nimbus test"), "api not on h1");
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    // h1 leaves the selector: api moves to the other host, web (which names h1) stays.
    write(
        repo,
        "hosts.yaml",
        &hosts("docker").replacen("role: docker", "role: edge", 1),
    );
    let moved = ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(
        moved.contains(&format!("placed on {}", other.name)) && moved.contains("moved from"),
        "{moved}"
    );
    assert!(serves(&other.address, 8081, "nimbus test"), "api not on h2");
    assert_eq!(
        docker("docker ps -a --format '{{.Names}}' | sort"),
        "solo_web\n"
    );
    assert!(serves(&host.address, 8080, "nimbus test"), "web moved");
    std::fs::remove_file(repo.join("tenants/solo/api.yaml")).unwrap_or_else(|e| panic!("{e}"));

    // Regression: `web` pinned to the other host in its manifest was planned as a create
    // (drift: deleted outside nimbus) and its old container kept serving. It is a replace,
    // whose delete runs on the host state records.
    write(
        repo,
        "tenants/solo/web.yaml",
        &workload(&other.name, "bonjour", None),
    );
    let plan = ok(&nimbus(repo, &["plan", "."]));
    assert!(plan.contains("-/+ Workload/solo/web"), "{plan}");
    assert!(!plan.contains("will be created"), "{plan}");
    // (--allow-deletes: api, removed from git above, is deleted by this apply too.)
    ok(&nimbus(
        repo,
        &["apply", "--auto-approve", "--allow-deletes", "."],
    ));
    assert!(serves(&other.address, 8080, "nimbus test"), "web not on h2");
    assert_eq!(docker("docker ps -aq | wc -l"), "0\n", "left on h1");
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));

    // Removed: its container and the tenant's network go.
    std::fs::remove_file(repo.join("tenants/solo/web.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let pruned = ok(&nimbus(
        repo,
        &["apply", "--auto-approve", "--allow-deletes", "."],
    ));
    // (api went with the apply that moved web.)
    assert!(pruned.contains("Workload/solo/web"), "{pruned}");
    assert_eq!(bed.ssh_ok(&other.name, "docker ps -aq | wc -l"), "0\n");
    assert_eq!(docker("docker ps -aq | wc -l"), "0\n");
    assert_eq!(
        docker("docker network ls --filter name=nimbus-solo -q | wc -l"),
        "0\n"
    );
}
