//! The Network provider (the agent, configuring WireGuard with wireguard-control) runs the
//! provider contract on real test-bed hosts: Debian booting systemd, wireguard-go in
//! userspace. The agent is the built `nimbus`, put on each host over its SSH connection.
//! Checked on the host with `ip` and `wg`, not through nimbus.

use crate::common;
use crate::sshd;
use sshd::bed::Bed;

use std::sync::Arc;

use nimbus_provider_contract::{Case, Hands, check};
use nimbus_providers::agent::Installer;
use nimbus_providers::mesh::MeshProvider;
use nimbus_providers::ssh::Pool;
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Shell<'a> {
    bed: &'a Bed,
    host: String,
}

const UNOWNED: &str = "wg-byhand";

impl Shell<'_> {
    fn run(&self, command: &str) -> String {
        self.bed.ssh_ok(&self.host, command)
    }
}

impl Hands for Shell<'_> {
    fn identity(&self, _case: &Case, spec: &Value) -> String {
        spec["interface"].as_str().unwrap_or_default().to_owned()
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        let name = self.identity(case, spec);
        self.bed
            .ssh(&self.host, &format!("ip link show '{name}'"))
            .status
            .success()
    }
    fn drift(&self, case: &Case, spec: &Value) {
        // The peers deleted by hand (the peer's key is one per interface: all of them).
        let name = self.identity(case, spec);
        self.run(&format!(
            "for k in $(wg show '{name}' peers); do wg set '{name}' peer \"$k\" remove; done"
        ));
    }
    fn make_unowned(&self, _case: &Case) {
        self.run(&format!(
            "systemd-run --quiet --unit=byhand -E WG_PROCESS_FOREGROUND=1 wireguard-go -f {UNOWNED}; \
             for i in $(seq 50); do ip link show {UNOWNED} >/dev/null 2>&1 && break; sleep 0.1; done"
        ));
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.bed
            .ssh(&self.host, &format!("ip link show {UNOWNED}"))
            .status
            .success()
    }
    fn remove_unowned(&self, _case: &Case) {
        self.run("systemctl stop byhand");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_provider_keeps_the_contract_on_wireguard_go_hosts() {
    let bed = Bed::up(2);
    let (first, second) = (&bed.hosts[0], &bed.hosts[1]);
    let pool = Arc::new(Pool::new([bed.target(0), bed.target(1)]));
    // The built binary without its symbols: the same code, a fifth of the bytes to copy.
    let installer = Installer::of(common::stripped_agent()).unwrap_or_else(|e| panic!("{e}"));
    let provider = MeshProvider::new(pool, installer);
    let spec = |interface: &str, port: u16, keepalive: u16| {
        json!({
            "interface": interface,
            "address": "10.77.0.1/24",
            "listenPort": port,
            "key": nimbus_planner::mesh::KEY_KEPT,
            "boot": true,
            "up": true,
            "peers": {
                (second.name.clone()): {
                    "address": "10.77.0.2",
                    "endpoint": format!("{}:51820", second.address),
                    "keepalive": keepalive,
                }
            }
        })
    };
    let case = Case {
        kind: Kind::Network,
        resource: "Network/contract".into(),
        target: Some(first.name.clone()),
        spec: spec("wg-contract", 51820, 25),
        update: spec("wg-contract", 51821, 10),
        replace: Some(spec("wg-contract2", 51821, 10)),
        // Linux takes at most 15 characters.
        bad: spec("wg-this-name-is-too-long", 51820, 25),
    };
    // The peer is configured on the second host through the provider; the hands delete the
    // first's peers by hand.
    configure_peer(&bed, &second.name, &provider).await;
    let hands = Shell {
        bed: &bed,
        host: first.name.clone(),
    };
    check(&provider, &hands, &case).await;
}

/// The second host's side of `wg-contract`, configured by its agent (which makes its key).
async fn configure_peer(bed: &Bed, host: &str, provider: &MeshProvider) {
    use nimbus_planner::plan::Action;
    use nimbus_providers::Provider;
    let spec = json!({"interface": "wg-contract", "address": "10.77.0.2/24", "listenPort": 51820,
                      "key": nimbus_planner::mesh::KEY_KEPT, "boot": true, "up": true, "peers": {}});
    let applied = provider
        .apply(
            &nimbus_provider_contract::change_of(
                Kind::Network,
                "Network/contract",
                Some(host),
                Action::Create,
                None,
                Some(&spec),
            ),
            &nimbus_providers::Cancel::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The key the agent answers with is the one the interface runs.
    let key = applied.outputs["publicKey"].as_str().unwrap_or_default();
    assert_eq!(
        bed.ssh_ok(host, "wg show wg-contract public-key").trim(),
        key
    );
}
