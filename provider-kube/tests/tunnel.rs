//! The Kubernetes API reached through an SSH connection (a real OpenSSH sshd on loopback, its
//! `direct-tcpip` channels), as nimbus reaches a k3s server's API on the server's own
//! loopback: a Tenant and a Workload applied and observed through the tunnel land in the test
//! API server (the client has no address of the server but sshd's).

#[path = "../../providers/tests/common/mod.rs"]
mod sshd;

use std::sync::Arc;

use nimbus_kube_testserver::server::{Options, spawn};
use nimbus_planner::plan::{Action, Observed};
use nimbus_provider_contract::change_of;
use nimbus_provider_core::{Cancel, ObserveRequest, Provider};
use nimbus_provider_kube::KubeProvider;
use nimbus_provider_kube::tunnel::Tunnel;
use nimbus_providers::ssh::SshSession;
use nimbus_schemas::Kind;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_workloads_go_through_the_ssh_connection() {
    let sshd = sshd::start_sshd();
    let running = spawn(Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let session = Arc::new(
        SshSession::connect(&sshd.target())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    // The kubeconfig as a server hands it over, read by kube-rs as any kubeconfig is.
    let client = Tunnel::new(session)
        .client(&running.kubeconfig())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let provider = KubeProvider::new(client);
    let tenant = json!({"quota": {"pods": 10}});
    let change = change_of(
        Kind::Tenant,
        "Tenant/acme",
        None,
        Action::Create,
        None,
        Some(&tenant),
    );
    provider
        .apply(&change, &Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let web = json!({"image": "nginx:1", "replicas": 2});
    let change = change_of(
        Kind::Workload,
        "Workload/acme/web",
        None,
        Action::Create,
        None,
        Some(&web),
    );
    provider
        .apply(&change, &Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = provider
        .observe(
            None,
            &[ObserveRequest {
                address: "Workload/acme/web".into(),
                kind: Kind::Workload,
                desired: Some(web),
            }],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let Observed::Present(live) = &seen[0].1 else {
        panic!("{seen:?}")
    };
    assert_eq!(live["replicas"], 2, "{live}");
    let requests = running.requests();
    assert!(
        requests.get("patch deployments acme").copied().unwrap_or(0) >= 1,
        "{requests:?}"
    );
}
