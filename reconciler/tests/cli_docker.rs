//! `nimbus apply` of a Docker Swarm on real engines: three test-bed hosts (Debian containers
//! booting systemd, each with its own sshd and dockerd, `testbed/docker/`), a docker-swarm
//! Cluster, a tenant and two workloads. nimbus reaches each engine through the host's SSH
//! connection only. Then: the service answers on every node; a second plan is empty; a
//! `docker service scale` by hand is seen and corrected; an image change rolls; a command
//! that exits at once fails the workload with the reason, is rolled back and leaves the old
//! tasks serving; removing a workload removes its service; a host leaving the selectors is
//! drained and leaves the swarm.

use crate::common;
use crate::sshd;
use common::{ok, text, write};
use sshd::bed::{Bed, TEST_IMAGE};

use std::path::Path;
use std::process::Output;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const SECRET: &str = "docker-S3CRET-token-6060";
const ROTATED: &str = "docker-R0TATED-token-6161";

fn hosts(bed: &Bed, swarm: &[bool]) -> String {
    bed.hosts
        .iter()
        .zip(swarm)
        .enumerate()
        .map(|(i, (h, member))| {
            let role = if i == 0 { ", role: manager" } else { "" };
            let swarm = if *member { ", swarm: \"yes\"" } else { "" };
            format!(
                "{HEADER}kind: Host\nmetadata: {{name: {}, labels: {{zone: z{i}{role}{swarm}}}}}\nspec: {{address: {}}}\n",
                h.name, h.address
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn workload(image: &str, command: Option<&str>) -> String {
    let command = command.map_or_else(String::new, |c| format!("  command: {c}\n"));
    format!(
        "{HEADER}kind: Workload\nmetadata: {{name: web}}\nspec:\n  image: {image}\n  replicas: 3\n  cpu: 100m\n  memory: 64Mi\n  ports: [{{port: 8000, hostPort: 8080, mode: host}}]\n  env: {{GREETING: hello}}\n{command}"
    )
}

fn nimbus(repo: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, repo, &[])
}

/// Whether `address:8080` serves the test page.
fn answers(address: &str) -> bool {
    common::serves(address, 8080, "nimbus test")
}

fn docker(bed: &Bed, host: usize, command: &str) -> String {
    bed.ssh_ok(&bed.hosts[host].name, command)
}

#[test]
fn a_swarm_with_a_tenant_and_workloads_on_real_engines() {
    let bed = Bed::up_docker(3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "swarm", &bed.known_hosts, &bed.key);
    // A secret for the api workload, encrypted to the bed's key.
    common::encrypt_secret(repo, "api-token", SECRET);
    write(repo, "hosts.yaml", &hosts(&bed, &[true, true, true]));
    write(
        repo,
        "cluster.yaml",
        &format!(
            "{HEADER}kind: Cluster\nmetadata: {{name: swarm}}\nspec: {{type: docker-swarm, managers: {{role: manager}}, workers: {{swarm: \"yes\"}}}}\n"
        ),
    );
    write(
        repo,
        "tenants/acme/tenant.yaml",
        &format!(
            "{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{cluster: swarm, quota: {{cpu: \"2\", memory: 1Gi}}}}\n"
        ),
    );
    write(repo, "tenants/acme/web.yaml", &workload(TEST_IMAGE, None));
    write(
        repo,
        "tenants/acme/api.yaml",
        &format!(
            "{HEADER}kind: Workload\nmetadata: {{name: api}}\nspec: {{image: \"{TEST_IMAGE}\", replicas: 1, cpu: 100m, memory: 64Mi, placement: {{hosts: [{}]}}, env: {{TOKEN: {{secret: api-token}}}}}}\n",
            bed.hosts[1].name
        ),
    );

    // Applied: a swarm of three, the tenant's network, two services.
    let applied = nimbus(repo, &["apply", "--auto-approve", "."]);
    let out = ok(&applied);
    assert!(out.contains("Apply complete: 7 applied, 0 failed"), "{out}");
    let nodes = docker(
        &bed,
        0,
        "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}' | sort",
    );
    assert_eq!(nodes, "h1 Ready Leader\nh2 Ready \nh3 Ready \n");
    assert_eq!(
        docker(
            &bed,
            0,
            "docker node inspect h2 --format '{{index .Spec.Labels \"zone\"}} {{index .Spec.Labels \"dev.nimbus.host\"}}'"
        ),
        "z1 h2\n"
    );
    for host in &bed.hosts {
        assert!(answers(&host.address), "no answer from {}", host.name);
    }
    assert_eq!(
        docker(
            &bed,
            0,
            "docker service ps acme_api --filter desired-state=running --format '{{.Node}}'"
        ),
        "h2\n",
        "placed on the host it names"
    );
    assert_eq!(
        docker(
            &bed,
            0,
            "docker network inspect nimbus-acme --format '{{.Driver}} {{index .Labels \"dev.nimbus.address\"}}'"
        ),
        "overlay Tenant/acme\n"
    );
    // The secret is a Docker secret, a file in the task; never a value in the service spec.
    let inspected = docker(&bed, 0, "docker service inspect acme_api");
    assert!(
        !inspected.contains(SECRET),
        "a secret value in the service spec"
    );
    assert!(
        inspected.contains("TOKEN_FILE=/run/secrets/TOKEN"),
        "{inspected}"
    );
    let container = docker(&bed, 1, "docker ps -q --filter name=acme_api");
    assert_eq!(
        docker(
            &bed,
            1,
            &format!(
                "docker exec {} python3 -c 'print(open(\"/run/secrets/TOKEN\").read())'",
                container.trim()
            )
        ),
        format!("{SECRET}\n")
    );
    assert!(!text(&applied.stdout).contains(SECRET) && !text(&applied.stderr).contains(SECRET));
    // State records the image the service runs, by id (it came from no registry).
    let recorded = ok(&nimbus(repo, &["state", "show", "Workload/acme/api"]));
    let id = docker(
        &bed,
        0,
        &format!("docker image inspect {TEST_IMAGE} --format '{{{{.Id}}}}'"),
    );
    assert!(recorded.contains(id.trim()), "{recorded}");
    // A new value of the secret: a new Docker secret, the task reads it, the old one is gone.
    let old_secret = docker(&bed, 0, "docker secret ls --format '{{.Name}}'");
    common::encrypt_secret(repo, "api-token", ROTATED);
    let rotated = ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(rotated.contains("~ Workload/acme/api"), "{rotated}");
    assert!(!rotated.contains(ROTATED) && !rotated.contains(SECRET));
    let new_secret = docker(&bed, 0, "docker secret ls --format '{{.Name}}'");
    assert_eq!(new_secret.lines().count(), 1, "{new_secret}");
    assert_ne!(new_secret, old_secret);
    let container = docker(&bed, 1, "docker ps -q --filter name=acme_api");
    assert_eq!(
        docker(
            &bed,
            1,
            &format!(
                "docker exec {} python3 -c 'print(open(\"/run/secrets/TOKEN\").read())'",
                container.trim()
            )
        ),
        format!("{ROTATED}\n")
    );
    // Nothing left to do.
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));

    // Discovery (issue 28): a service, an overlay network and a secret made with the docker
    // CLI are listed on the manager; what nimbus made (services, their tasks, secrets and
    // networks) is not; nothing changes.
    docker(
        &bed,
        0,
        &format!(
            "docker service create -d --name hand-made {TEST_IMAGE} >/dev/null && docker network create -d overlay hand-net >/dev/null && printf x | docker secret create hand-secret - >/dev/null"
        ),
    );
    let swarm = || {
        docker(
            &bed,
            0,
            "docker service ls -q | xargs docker service inspect --format '{{.Spec.Name}} {{.Version.Index}}'; docker network ls -q; docker secret ls -q",
        )
    };
    let before = swarm();
    let objects = common::discovered(repo, &[]);
    let manager = bed.hosts[0].name.as_str();
    let on_manager = |detail: &str, identity: &str| {
        objects.iter().any(|o| {
            o["host"] == manager
                && o["identity"] == identity
                && o["detail"].as_str().is_some_and(|d| d.starts_with(detail))
        })
    };
    assert!(on_manager("Docker service", "hand-made"), "{objects:?}");
    assert!(on_manager("Docker network", "hand-net"), "{objects:?}");
    assert!(on_manager("Docker secret", "hand-secret"), "{objects:?}");
    let identities: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["identity"].as_str())
        .collect();
    assert!(
        !identities
            .iter()
            .any(|i| i.starts_with("acme") || i.starts_with("hand-made.")),
        "what nimbus made, or a service's tasks, listed: {identities:?}"
    );
    assert_eq!(swarm(), before, "discovery changed the swarm");
    docker(
        &bed,
        0,
        "docker service rm hand-made >/dev/null && docker network rm hand-net >/dev/null && docker secret rm hand-secret >/dev/null",
    );

    // A service made by hand under the name nimbus gives a tenant's Workload (as `docker stack
    // deploy acme` would): generated as Workload/acme/legacy with an Import, its password
    // encrypted; imported (labelled), then pruned when its manifest goes.
    docker(
        &bed,
        0,
        &format!(
            "docker service create -d --name acme_legacy --replicas 1 --limit-cpu 0.1 --limit-memory 32M -e MODE=prod -e DB_PASSWORD=docker-found-secret-90c3 {TEST_IMAGE} >/dev/null"
        ),
    );
    let generated = nimbus(
        repo,
        &["discover", "--generate", "--select", "Workload/acme/*", "."],
    );
    let out = format!("{}{}", text(&generated.stdout), text(&generated.stderr));
    assert!(out.contains("1 secrets found were encrypted"), "{out}");
    let written = std::fs::read_to_string(repo.join("discovered/tenant-acme.yaml"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    for wanted in [
        "kind: Workload",
        "name: legacy",
        "tenant: \"acme\"",
        "replicas: 1",
        "cpu: \"100m\"",
        "memory: \"32Mi\"",
        "\"MODE\":\"prod\"",
        "\"DB_PASSWORD\":{\"secret\":\"acme-legacy-db-password\"}",
        "to: Workload/acme/legacy",
    ] {
        assert!(written.contains(wanted), "{wanted} in {written}");
    }
    assert!(!written.contains("docker-found-secret-90c3"), "{written}");
    let plan = nimbus(repo, &["plan", "."]);
    assert!(
        text(&plan.stdout).contains("<- Workload/acme/legacy"),
        "{}{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert_eq!(
        docker(
            &bed,
            0,
            "docker service inspect acme_legacy --format '{{index .Spec.Labels \"dev.nimbus.managed-by\"}} {{.Spec.Mode.Replicated.Replicas}}'"
        ),
        "nimbus 1\n"
    );
    let again = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    std::fs::remove_file(repo.join("discovered/tenant-acme.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    ok(&nimbus(
        repo,
        &["apply", "--auto-approve", "--allow-deletes", "."],
    ));
    assert_eq!(
        docker(
            &bed,
            0,
            "docker service ls --filter name=acme_legacy -q | wc -l"
        ),
        "0\n",
        "the imported service was pruned"
    );

    // Scaled by hand: drift, corrected.
    docker(&bed, 0, "docker service scale -d acme_web=1 >/dev/null");
    let drift = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(drift.status.code(), Some(2));
    assert!(
        text(&drift.stdout).contains("~ replicas: 1 -> 3"),
        "{}",
        text(&drift.stdout)
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert_eq!(
        docker(
            &bed,
            0,
            "docker service inspect acme_web --format '{{.Spec.Mode.Replicated.Replicas}}'"
        ),
        "3\n"
    );

    // A new image rolls.
    for i in 0..3 {
        docker(
            &bed,
            i,
            &format!("docker tag {TEST_IMAGE} nimbus-test/py-tiny:rolled"),
        );
    }
    write(
        repo,
        "tenants/acme/web.yaml",
        &workload("nimbus-test/py-tiny:rolled", None),
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert_eq!(
        docker(
            &bed,
            0,
            "docker service ps acme_web --filter desired-state=running --format '{{.Image}}' | sort -u"
        ),
        "nimbus-test/py-tiny:rolled\n"
    );
    for host in &bed.hosts {
        assert!(answers(&host.address), "no answer from {}", host.name);
    }

    // A command that exits at once: the rollout fails with the reason, is rolled back, and
    // the old tasks keep serving.
    write(
        repo,
        "tenants/acme/web.yaml",
        &workload(
            "nimbus-test/py-tiny:rolled",
            Some("[\"/usr/bin/python3\", \"-c\", \"raise SystemExit(3)\"]"),
        ),
    );
    let broken = nimbus(repo, &["apply", "--auto-approve", "."]);
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken.stdout));
    let said = text(&broken.stdout);
    assert!(said.contains("Workload/acme/web"), "{said}");
    assert!(
        said.contains("rollout of service acme_web failed"),
        "{said}"
    );
    assert!(said.contains("rolled back"), "{said}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    for host in &bed.hosts {
        assert!(answers(&host.address), "{} stopped serving", host.name);
    }
    write(
        repo,
        "tenants/acme/web.yaml",
        &workload("nimbus-test/py-tiny:rolled", None),
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));

    // A workload no node can take: said, not waited on for ever, and nothing left behind.
    write(
        repo,
        "tenants/acme/nowhere.yaml",
        &format!(
            "{HEADER}kind: Workload\nmetadata: {{name: nowhere}}\nspec: {{image: \"{TEST_IMAGE}\", replicas: 1, placement: {{selector: {{zone: nowhere}}}}}}\n"
        ),
    );
    let nowhere = nimbus(repo, &["apply", "--auto-approve", "."]);
    assert_eq!(nowhere.status.code(), Some(1), "{}", text(&nowhere.stdout));
    assert!(
        text(&nowhere.stdout).contains("no suitable node"),
        "{}",
        text(&nowhere.stdout)
    );
    assert!(!docker(&bed, 0, "docker service ls --format '{{.Name}}'").contains("acme_nowhere"));
    std::fs::remove_file(repo.join("tenants/acme/nowhere.yaml")).unwrap_or_else(|e| panic!("{e}"));

    // A workload removed: its service goes; the other stays.
    std::fs::remove_file(repo.join("tenants/acme/api.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let pruned = ok(&nimbus(
        repo,
        &["apply", "--auto-approve", "--allow-deletes", "."],
    ));
    assert!(pruned.contains("Workload/acme/api"), "{pruned}");
    assert_eq!(
        docker(&bed, 0, "docker service ls --format '{{.Name}}' | sort"),
        "acme_web\n"
    );
    assert_eq!(
        docker(&bed, 0, "docker secret ls -q | wc -l"),
        "0\n",
        "its secret went with it"
    );

    // A node that left by hand is drift: it joins again.
    docker(&bed, 2, "docker swarm leave >/dev/null");
    let left = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(left.status.code(), Some(2), "{}", text(&left.stdout));
    assert!(
        text(&left.stdout).contains("Cluster/swarm"),
        "{}",
        text(&left.stdout)
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert_eq!(
        docker(
            &bed,
            0,
            "docker node ls --format '{{.Hostname}} {{.Status}}' | sort"
        ),
        "h1 Ready\nh2 Ready\nh3 Ready\n"
    );
    // Promoted by its labels.
    write(
        repo,
        "hosts.yaml",
        &hosts(&bed, &[true, true, true]).replace("zone: z1", "zone: z1, role: manager"),
    );
    let promote = ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert!(promote.contains("Cluster/swarm"), "{promote}");
    assert_eq!(
        docker(&bed, 0, "docker node inspect h2 --format '{{.Spec.Role}}'"),
        "manager\n"
    );

    // A host leaving the selectors: drained, left, removed.
    write(
        repo,
        "hosts.yaml",
        &hosts(&bed, &[true, true, false]).replace("zone: z1", "zone: z1, role: manager"),
    );
    ok(&nimbus(repo, &["apply", "--auto-approve", "."]));
    assert_eq!(
        docker(&bed, 0, "docker node ls --format '{{.Hostname}}' | sort"),
        "h1\nh2\n"
    );
    assert_eq!(
        docker(&bed, 2, "docker info --format '{{.Swarm.LocalNodeState}}'"),
        "inactive\n"
    );
    let last = nimbus(repo, &["plan", "--detailed-exitcode", "."]);
    assert_eq!(last.status.code(), Some(0), "{}", text(&last.stdout));

    // A port something else holds: the workload fails with the engine's reason and leaves
    // no service behind; the others are not touched.
    docker(
        &bed,
        1,
        &format!("docker run -d --name squatter -p 9999:8000 {TEST_IMAGE} >/dev/null"),
    );
    write(
        repo,
        "tenants/acme/clash.yaml",
        &format!(
            "{HEADER}kind: Workload\nmetadata: {{name: clash}}\nspec: {{image: \"{TEST_IMAGE}\", replicas: 1, placement: {{hosts: [{}]}}, ports: [{{port: 8000, hostPort: 9999, mode: host}}]}}\n",
            bed.hosts[1].name
        ),
    );
    let clash = nimbus(repo, &["apply", "--auto-approve", "."]);
    assert_eq!(clash.status.code(), Some(1), "{}", text(&clash.stdout));
    let said = text(&clash.stdout);
    assert!(said.contains("Workload/acme/clash"), "{said}");
    assert!(
        said.contains("already allocated") || said.contains("already in use"),
        "{said}"
    );
    assert!(!docker(&bed, 0, "docker service ls --format '{{.Name}}'").contains("acme_clash"));
    std::fs::remove_file(repo.join("tenants/acme/clash.yaml")).unwrap_or_else(|e| panic!("{e}"));

    // The managers' engines down: the workload's change fails saying so, nothing else.
    for host in [0, 1] {
        docker(&bed, host, "systemctl stop docker.socket docker.service");
    }
    write(
        repo,
        "tenants/acme/web.yaml",
        &workload("nimbus-test/py-tiny:rolled", None).replace("replicas: 3", "replicas: 2"),
    );
    let down = nimbus(repo, &["apply", "--auto-approve", "."]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down.stdout));
    let said = text(&down.stdout);
    assert!(
        said.contains("Workload/acme/web") && said.contains("no swarm manager that answers"),
        "{said}"
    );

    // Engines back: `nimbus destroy` takes everything down, workloads first, the swarm last.
    for host in [0, 1] {
        docker(&bed, host, "systemctl start docker.service");
    }
    for host in &bed.hosts {
        bed.wait_for(
            &host.name,
            "docker info >/dev/null 2>&1",
            std::time::Duration::from_secs(60),
            "dockerd does not answer",
        );
    }
    // The managers recover their quorum a moment after their engines start; meanwhile the
    // swarm is there but cannot be acted on, and nimbus says so rather than take it for gone.
    let early = nimbus(repo, &["plan", "."]);
    let said = format!("{}{}", text(&early.stdout), text(&early.stderr));
    assert!(!said.contains("already gone"), "{said}");
    bed.wait_for(
        &bed.hosts[0].name,
        "docker node ls >/dev/null 2>&1",
        std::time::Duration::from_secs(90),
        "the swarm did not recover",
    );
    write(
        repo,
        "tenants/acme/web.yaml",
        &workload("nimbus-test/py-tiny:rolled", None),
    );
    let destroyed = ok(&nimbus(repo, &["destroy", "--auto-approve", "."]));
    assert!(destroyed.contains("0 failed"), "{destroyed}");
    for i in 0..bed.hosts.len() {
        assert_eq!(
            docker(&bed, i, "docker info --format '{{.Swarm.LocalNodeState}}'"),
            "inactive\n",
            "{} still in a swarm: {destroyed}",
            bed.hosts[i].name
        );
    }
}
