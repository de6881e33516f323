//! The Docker provider runs the contract on three test-bed hosts with their own dockerd
//! (`testbed/docker/`), reached only through their SSH connections: for Cluster (a swarm of
//! two of them, a third running a swarm nimbus did not make), for Workload as a Swarm service
//! (on a swarm of the three, whose Cluster and Tenant are applied first through the same
//! provider), and for Workload as a container on one host (a Tenant with no cluster). Checked
//! on the engines with the docker CLI over ssh, not through nimbus.
//!
//! Tenant is not run through the contract: its quota is enforced through each service's
//! limits and is not a property of the network the engine can show, so an in-place update of a
//! Tenant has nothing to observe (the end-to-end test covers Tenant).

#[path = "../../providers/tests/common/bed.rs"]
mod bed;

use std::collections::BTreeMap;
use std::sync::Arc;

use bed::{Bed, TEST_IMAGE};
use nimbus_planner::plan::Action;
use nimbus_planner::topology::{ClusterNode, nodes_value};
use nimbus_provider_contract::{Case, Hands, change_of, check};
use nimbus_provider_docker::DockerProvider;
use nimbus_providers::ssh::Pool;
use nimbus_providers::{Cancel, Provider};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Engine<'a> {
    bed: &'a Bed,
}

const UNOWNED: &str = "acme_byhand";

impl Engine<'_> {
    fn run(&self, command: &str) -> String {
        self.bed.ssh_ok(&self.bed.hosts[0].name, command)
    }
    fn has_service(&self, name: &str) -> bool {
        self.bed
            .ssh(
                &self.bed.hosts[0].name,
                &format!("docker service inspect {name}"),
            )
            .status
            .success()
    }
}

impl Hands for Engine<'_> {
    fn identity(&self, case: &Case, _spec: &Value) -> String {
        nimbus_provider_docker::service::service_name(&case.address())
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        self.has_service(&self.identity(case, spec))
    }
    fn drift(&self, case: &Case, spec: &Value) {
        self.run(&format!(
            "docker service scale -d {}=3 >/dev/null",
            self.identity(case, spec)
        ));
    }
    fn make_unowned(&self, _case: &Case) {
        self.run(&format!(
            "docker service create -d -q --name {UNOWNED} --endpoint-mode dnsrr {TEST_IMAGE} >/dev/null"
        ));
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.has_service(UNOWNED)
    }
    fn remove_unowned(&self, _case: &Case) {
        self.run(&format!("docker service rm {UNOWNED} >/dev/null"));
    }
}

/// A Cluster: its swarm, seen on the engines of the nodes its spec names.
struct Swarm<'a> {
    bed: &'a Bed,
}

impl Swarm<'_> {
    fn state(&self, host: &str) -> String {
        self.bed
            .ssh_ok(host, "docker info --format '{{.Swarm.LocalNodeState}}'")
            .trim()
            .to_owned()
    }
}

impl Hands for Swarm<'_> {
    /// The swarm's first manager.
    fn identity(&self, _case: &Case, spec: &Value) -> String {
        spec["nodes"]
            .as_object()
            .and_then(|nodes| {
                nodes
                    .iter()
                    .find(|(_, n)| n["role"] == "manager")
                    .map(|(h, _)| h.clone())
            })
            .unwrap_or_default()
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        let manager = self.identity(case, spec);
        self.bed.hosts.iter().any(|h| h.name == manager) && self.state(&manager) == "active"
    }
    /// A worker leaves by hand.
    fn drift(&self, _case: &Case, spec: &Value) {
        let worker = spec["nodes"]
            .as_object()
            .and_then(|nodes| {
                nodes
                    .iter()
                    .find(|(_, n)| n["role"] == "worker")
                    .map(|(h, _)| h.clone())
            })
            .unwrap_or_default();
        self.bed.ssh_ok(&worker, "docker swarm leave >/dev/null");
    }
    /// The third host runs a swarm of its own.
    fn make_unowned(&self, _case: &Case) {
        let h3 = &self.bed.hosts[2];
        self.bed.ssh_ok(
            &h3.name,
            &format!(
                "docker swarm init --advertise-addr {} >/dev/null",
                h3.address
            ),
        );
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.state(&self.bed.hosts[2].name) == "active"
    }
    fn remove_unowned(&self, _case: &Case) {
        self.bed.ssh_ok(
            &self.bed.hosts[2].name,
            "docker swarm leave --force >/dev/null",
        );
    }
}

/// A Workload of a tenant with no cluster: a container on one host.
struct Container<'a> {
    bed: &'a Bed,
    host: String,
}

const UNOWNED_CONTAINER: &str = "solo_byhand";

impl Container<'_> {
    fn run(&self, command: &str) -> String {
        self.bed.ssh_ok(&self.host, command)
    }
    fn has(&self, name: &str) -> bool {
        self.bed
            .ssh(&self.host, &format!("docker container inspect {name}"))
            .status
            .success()
    }
}

impl Hands for Container<'_> {
    fn identity(&self, case: &Case, _spec: &Value) -> String {
        nimbus_provider_docker::service::service_name(&case.address())
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        self.has(&self.identity(case, spec))
    }
    fn drift(&self, case: &Case, spec: &Value) {
        self.run(&format!(
            "docker stop {} >/dev/null",
            self.identity(case, spec)
        ));
    }
    fn make_unowned(&self, _case: &Case) {
        self.run(&format!(
            "docker run -d --name {UNOWNED_CONTAINER} {TEST_IMAGE} >/dev/null"
        ));
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.has(UNOWNED_CONTAINER)
    }
    fn remove_unowned(&self, _case: &Case) {
        self.run(&format!("docker rm -f {UNOWNED_CONTAINER} >/dev/null"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_provider_keeps_the_contract_for_clusters_services_and_containers() {
    let bed = Bed::up_docker(3);
    let targets = (0..bed.hosts.len()).map(|i| bed.target(i));
    let nodes: Vec<ClusterNode> = bed
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| ClusterNode {
            host: h.name.clone(),
            address: h.address.clone(),
            manager: i == 0,
            labels: BTreeMap::new(),
        })
        .collect();
    let provider = DockerProvider::new(
        Arc::new(Pool::new(targets)),
        BTreeMap::from([("swarm".to_owned(), nodes.clone())]),
        BTreeMap::from([
            ("acme".to_owned(), Some("swarm".to_owned())),
            ("solo".to_owned(), None),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cancel = Cancel::new();

    // Cluster: a swarm of h1 (manager) and h2 (worker); the update relabels h2.
    let two = |zone: Option<&str>| {
        let mut labels = BTreeMap::new();
        if let Some(zone) = zone {
            labels.insert("zone".to_owned(), zone.to_owned());
        }
        let mut nodes = nodes[..2].to_vec();
        nodes[1].labels = labels;
        json!({"type": "docker-swarm", "nodes": nodes_value(&nodes, false)})
    };
    let cluster = Case {
        kind: Kind::Cluster,
        resource: "Cluster/pair".into(),
        target: None,
        spec: two(None),
        update: two(Some("b")),
        replace: None,
        // A node that is no declared Host.
        bad: json!({"type": "docker-swarm", "nodes": {"nohost": {"role": "manager", "labels": {}}}}),
    };
    check(&provider, &Swarm { bed: &bed }, &cluster).await;

    for (kind, address, after) in [
        (
            Kind::Cluster,
            "Cluster/swarm",
            json!({"type": "docker-swarm", "nodes": nodes_value(&nodes, false)}),
        ),
        (Kind::Tenant, "Tenant/acme", json!({"cluster": "swarm"})),
    ] {
        provider
            .apply(
                &change_of(kind, address, None, Action::Create, None, Some(&after)),
                &cancel,
            )
            .await
            .unwrap_or_else(|e| panic!("{address}: {e}"));
    }
    let workload = |replicas: u32, image: &str| json!({"tenant": "acme", "image": image, "replicas": replicas, "cpu": "100m", "memory": "64Mi", "env": {"MODE": "contract"}});
    let case = Case {
        kind: Kind::Workload,
        resource: "Workload/acme/contract".into(),
        target: None,
        spec: workload(1, TEST_IMAGE),
        update: workload(2, TEST_IMAGE),
        replace: None,
        // An image no engine has and no registry serves.
        bad: workload(1, "nimbus-test/no-such-image:1"),
    };
    check(&provider, &Engine { bed: &bed }, &case).await;

    // Workload of a tenant with no cluster: a container on h3.
    let h3 = bed.hosts[2].name.clone();
    let solo = |cpu: &str, image: &str| json!({"tenant": "solo", "image": image, "replicas": 1, "cpu": cpu, "memory": "64Mi", "env": {"MODE": "contract"}, "ports": [{"port": 8000, "hostPort": 8090, "protocol": "tcp", "mode": "host"}], "placement": {"hosts": [h3]}});
    let case = Case {
        kind: Kind::Workload,
        resource: "Workload/solo/contract".into(),
        target: None,
        spec: solo("100m", TEST_IMAGE),
        update: solo("200m", TEST_IMAGE),
        replace: None,
        bad: solo("100m", "nimbus-test/no-such-image:1"),
    };
    check(
        &provider,
        &Container {
            bed: &bed,
            host: h3.clone(),
        },
        &case,
    )
    .await;
}
