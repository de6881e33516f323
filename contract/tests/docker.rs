//! The Docker provider runs the contract for Workload on a real swarm: three test-bed hosts
//! with their own dockerd (`testbed/docker/`), reached only through their SSH connections.
//! The Cluster and the Tenant are applied first through the same provider. Checked on the
//! engine with the docker CLI over ssh, not through nimbus.
//!
//! Tenant is not run through the contract: its quota is enforced through each service's
//! limits and is not a property of the network the engine can show, so an in-place update of a
//! Tenant has nothing to observe (the end-to-end test covers Tenant and Cluster).

#[path = "../../providers/tests/common/bed.rs"]
mod bed;

use std::collections::BTreeMap;
use std::sync::Arc;

use bed::{Bed, TEST_IMAGE};
use nimbus_planner::plan::{Action, Change};
use nimbus_planner::topology::{ClusterNode, nodes_value};
use nimbus_provider_contract::{Case, Hands, check};
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

fn change(kind: Kind, address: &str, after: Value) -> Change {
    Change {
        address: address.to_owned(),
        resource: address.to_owned(),
        kind,
        host: None,
        provider: nimbus_provider_docker::PROVIDER.to_owned(),
        previous_provider: None,
        action: Action::Create,
        before: None,
        after: Some(after),
        fields: Vec::new(),
        reason: None,
        depends_on: Vec::new(),
        protected: false,
        keep_on_removal: false,
        restart_for: Vec::new(),
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_provider_keeps_the_contract_for_workloads() {
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
        BTreeMap::from([("acme".to_owned(), "swarm".to_owned())]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cancel = Cancel::new();
    for (kind, address, after) in [
        (
            Kind::Cluster,
            "Cluster/swarm",
            json!({"type": "docker-swarm", "nodes": nodes_value(&nodes)}),
        ),
        (Kind::Tenant, "Tenant/acme", json!({"cluster": "swarm"})),
    ] {
        provider
            .apply(&change(kind, address, after), &cancel)
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
}
