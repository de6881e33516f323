//! The kubernetes provider's k3s Cluster runs the provider contract on three test-bed hosts
//! (real systemd and sshd), k3s being the stand-in of `testbed/k3s/k3s`: created (a server
//! and an agent), read back, a node's labels updated in place, an agent's service stopped by
//! hand seen and started again, deleted from its nodes while a k3s unit nimbus did not write
//! on the third host stays, and a binary whose sha256 is not the pinned one refused with
//! nothing installed. Checked on the hosts, not through the provider.

use crate::k3s;
use crate::sshd;

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_provider_contract::{Case, Hands, check};
use nimbus_provider_kube::KubeProvider;
use nimbus_provider_kube::k3s::Clusters;
use nimbus_providers::ssh::Pool;
use nimbus_schemas::Kind;
use serde_json::{Value, json};
use sshd::bed::Bed;

struct Shell<'a> {
    bed: &'a Bed,
    /// The host with a k3s unit of its own.
    other: String,
}

impl Shell<'_> {
    fn units(&self, spec: &Value) -> Vec<(String, String)> {
        spec["nodes"]
            .as_object()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|(host, node)| {
                        let unit = if node["role"] == "manager" {
                            "k3s"
                        } else {
                            "k3s-agent"
                        };
                        (host.clone(), unit.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Hands for Shell<'_> {
    fn identity(&self, _case: &Case, spec: &Value) -> String {
        self.units(spec)
            .iter()
            .map(|(host, unit)| format!("{host}:{unit}"))
            .collect::<Vec<_>>()
            .join(",")
    }
    fn exists(&self, _case: &Case, spec: &Value) -> bool {
        self.units(spec).iter().any(|(host, unit)| {
            self.bed
                .ssh(host, &format!("test -e /etc/systemd/system/{unit}.service"))
                .status
                .success()
        })
    }
    fn drift(&self, _case: &Case, spec: &Value) {
        // An agent's service stopped by hand.
        if let Some((host, unit)) = self.units(spec).into_iter().find(|(_, u)| u == "k3s-agent") {
            self.bed.ssh_ok(&host, &format!("systemctl stop {unit}"));
        }
    }
    fn make_unowned(&self, _case: &Case) {
        self.bed.ssh_ok(
            &self.other,
            "printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/k3s.service && systemctl daemon-reload && systemctl start k3s",
        );
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.bed
            .ssh(&self.other, "systemctl is-active --quiet k3s")
            .status
            .success()
    }
    fn remove_unowned(&self, _case: &Case) {
        self.bed.ssh_ok(
            &self.other,
            "systemctl stop k3s; rm -f /etc/systemd/system/k3s.service; systemctl daemon-reload",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_provider_keeps_the_contract_for_k3s_clusters() {
    let bed = Bed::up(3);
    k3s::prepare(&bed, "broken");
    let binary = std::fs::read(k3s::standin()).unwrap_or_else(|e| panic!("{e}"));
    let digest = k3s::sha256_of(&k3s::standin());
    let pool = Arc::new(Pool::new((0..3).map(|i| bed.target(i))));
    let files = BTreeMap::from([("bin/k3s".to_owned(), Ok(Arc::new(binary)))]);
    let clusters = Clusters::new(
        pool,
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        files,
    );
    let provider =
        KubeProvider::on_k3s(clusters).with_ready_timeout(std::time::Duration::from_secs(60));
    let (h1, h2) = (bed.hosts[0].name.clone(), bed.hosts[1].name.clone());
    let spec = |zone: &str, sha: &str| {
        json!({
            "type": "k3s",
            "k3s": {"source": "bin/k3s", "sha256": sha},
            "nodes": {
                h1.clone(): {"role": "manager", "labels": {"zone": "a"}},
                h2.clone(): {"role": "worker", "labels": {"zone": zone}},
            },
        })
    };
    let case = Case {
        kind: Kind::Cluster,
        resource: "Cluster/contract".into(),
        target: None,
        spec: spec("b", &digest),
        update: spec("c", &digest),
        replace: None,
        bad: spec("b", &"0".repeat(64)),
    };
    let hands = Shell {
        bed: &bed,
        other: bed.hosts[2].name.clone(),
    };
    check(&provider, &hands, &case).await;
}
