//! The Kubernetes provider keeps the provider contract for Tenants and Workloads, against the
//! test API server (`nimbus-kube-testserver`; there is no real API server to be had here),
//! with `kubectl` as the hands that act behind nimbus's back. Then: a no-change observe makes
//! one list call per kind and no per-object GET; a failing rollout and pods over quota fail
//! the Workload with the reason the API gives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nimbus_kube_testserver::server::{Options, Running, spawn};
use nimbus_planner::plan::{Action, Observed};
use nimbus_provider_contract::{Case, Hands, change_of, check};
use nimbus_provider_core::{Cancel, ObserveRequest, Provider, ProviderError};
use nimbus_provider_kube::KubeProvider;
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Kubectl {
    config: PathBuf,
}

impl Kubectl {
    fn new(dir: &Path, running: &Running) -> Kubectl {
        let config = dir.join("kubeconfig");
        std::fs::write(&config, running.kubeconfig()).unwrap_or_else(|e| panic!("{e}"));
        Kubectl { config }
    }

    fn run(&self, args: &[&str]) -> bool {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.config)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("kubectl: {e}"))
            .status
            .success()
    }

    fn must(&self, args: &[&str]) {
        assert!(self.run(args), "kubectl {args:?} failed");
    }
}

struct Tenants<'a>(&'a Kubectl);

impl Hands for Tenants<'_> {
    fn identity(&self, case: &Case, _spec: &Value) -> String {
        case.resource.trim_start_matches("Tenant/").to_owned()
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        self.0
            .run(&["get", "namespace", &self.identity(case, spec)])
    }
    fn drift(&self, case: &Case, spec: &Value) {
        // Its quota raised by hand.
        self.0.must(&[
            "-n",
            &self.identity(case, spec),
            "patch",
            "resourcequota",
            "nimbus-quota",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"hard":{"pods":"99"}}}"#,
        ]);
    }
    fn make_unowned(&self, _case: &Case) {
        self.0.must(&["create", "namespace", "by-hand"]);
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.0.run(&["get", "namespace", "by-hand"])
    }
    fn remove_unowned(&self, _case: &Case) {
        self.0.must(&["delete", "namespace", "by-hand"]);
    }
}

struct Workloads<'a>(&'a Kubectl);

impl Hands for Workloads<'_> {
    fn identity(&self, case: &Case, _spec: &Value) -> String {
        case.resource
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        self.0.run(&[
            "-n",
            "acme",
            "get",
            "deployment",
            &self.identity(case, spec),
        ])
    }
    fn drift(&self, case: &Case, spec: &Value) {
        // `kubectl scale`: another manager takes the replica count.
        self.0.must(&[
            "-n",
            "acme",
            "scale",
            "deployment",
            &self.identity(case, spec),
            "--replicas=7",
        ]);
    }
    fn make_unowned(&self, _case: &Case) {
        self.0.must(&[
            "-n",
            "acme",
            "create",
            "deployment",
            "by-hand",
            "--image=busybox:1",
        ]);
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.0.run(&["-n", "acme", "get", "deployment", "by-hand"])
    }
    fn remove_unowned(&self, _case: &Case) {
        self.0
            .must(&["-n", "acme", "delete", "deployment", "by-hand"]);
    }
}

async fn client(running: &Running) -> kube::Client {
    let config = kube::Config::new(running.url().parse().unwrap_or_else(|e| panic!("{e}")));
    kube::Client::try_from(config).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_keep_the_contract() {
    let running = spawn(Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubectl = Kubectl::new(dir.path(), &running);
    let provider = KubeProvider::new(client(&running).await);
    let spec = |pods: u32| json!({"quota": {"cpu": "2", "memory": "1Gi", "pods": pods}, "members": ["alice"]});
    let case = Case {
        kind: Kind::Tenant,
        resource: "Tenant/acme".into(),
        target: None,
        spec: spec(10),
        update: spec(20),
        replace: None,
        bad: json!({"quota": {"memory": "lots"}}),
    };
    check(&provider, &Tenants(&kubectl), &case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_keep_the_contract_and_observe_with_one_list_per_kind() {
    let running = spawn(Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubectl = Kubectl::new(dir.path(), &running);
    kubectl.must(&["create", "namespace", "acme"]);
    let provider = KubeProvider::new(client(&running).await);
    let spec = |replicas: u32, mode: &str| {
        json!({"image": "nginx:1", "replicas": replicas, "cpu": "250m", "memory": "128Mi",
               "ports": [{"port": 80, "protocol": "tcp"}], "env": {"MODE": mode}})
    };
    let case = Case {
        kind: Kind::Workload,
        resource: "Workload/acme/web".into(),
        target: None,
        spec: spec(2, "a"),
        update: spec(3, "b"),
        replace: None,
        bad: json!({"image": "", "replicas": 1}),
    };
    check(&provider, &Workloads(&kubectl), &case).await;

    // Ten workloads, then a no-change observe: one list per kind, no GET of any one object.
    let mut requests = Vec::new();
    for i in 0..10 {
        let address = format!("Workload/acme/w{i}");
        let desired = spec(1, "a");
        let change = change_of(
            Kind::Workload,
            &address,
            None,
            Action::Create,
            None,
            Some(&desired),
        );
        provider
            .apply(&change, &Cancel::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        requests.push(ObserveRequest {
            address,
            kind: Kind::Workload,
            desired: Some(desired),
        });
    }
    let before = running.requests();
    let seen = provider
        .observe(None, &requests)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let after = running.requests();
    let made: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        made,
        [
            ("list deployments".to_owned(), 1),
            ("list secrets".to_owned(), 1)
        ],
        "{made:?}"
    );
    for (address, observed) in &seen {
        let Observed::Present(live) = observed else {
            panic!("{address}: {observed:?}")
        };
        assert_eq!(live["replicas"], 1, "{address}: {live}");
        assert_eq!(live["env"]["MODE"], "a", "{address}: {live}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollout_and_pods_over_quota_fail_the_workload_with_the_apis_reason() {
    let running = spawn(Options {
        failing_image: Some("broken".into()),
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let provider =
        KubeProvider::new(client(&running).await).with_rollout_timeout(Duration::from_secs(5));
    let tenant = json!({"quota": {"pods": 2}});
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

    let broken = json!({"image": "broken:1", "replicas": 1});
    let change = change_of(
        Kind::Workload,
        "Workload/acme/bad",
        None,
        Action::Create,
        None,
        Some(&broken),
    );
    match provider.apply(&change, &Cancel::new()).await {
        Err(ProviderError::Failed(reason)) => {
            assert!(
                reason.starts_with("Workload/acme/bad")
                    && reason.contains("ProgressDeadlineExceeded"),
                "{reason}"
            );
        }
        other => panic!("a failing rollout was {other:?}"),
    }
    let big = json!({"image": "nginx:1", "replicas": 3});
    let change = change_of(
        Kind::Workload,
        "Workload/acme/big",
        None,
        Action::Create,
        None,
        Some(&big),
    );
    match provider.apply(&change, &Cancel::new()).await {
        Err(ProviderError::Failed(reason)) => {
            assert!(reason.contains("exceeded quota: nimbus-quota"), "{reason}");
        }
        other => panic!("pods over quota were {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_secret_becomes_a_secret_whose_value_is_not_recorded() {
    let running = spawn(Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubectl = Kubectl::new(dir.path(), &running);
    kubectl.must(&["create", "namespace", "acme"]);
    let provider = KubeProvider::new(client(&running).await);
    // As the planner gives it (a reference and its keyed fingerprint) and the executor hands
    // it over (the value).
    let planned = json!({"image": "app:1", "replicas": 1,
        "env": {"DB_PASSWORD": {"secret": "db#password", "fingerprint": "f1"}, "MODE": "prod"}});
    let mut delivered = planned.clone();
    delivered["env"]["DB_PASSWORD"]["value"] = json!("kube-S3CRET-9911");
    let change = change_of(
        Kind::Workload,
        "Workload/acme/app",
        None,
        Action::Create,
        None,
        Some(&delivered),
    );
    let applied = provider
        .apply(&change, &Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !applied.observed.to_string().contains("kube-S3CRET-9911"),
        "{}",
        applied.observed
    );
    // The value is in the Secret, the Deployment refers to it.
    let output = Command::new("kubectl")
        .env("KUBECONFIG", &kubectl.config)
        .args([
            "-n",
            "acme",
            "get",
            "secret",
            "app-env",
            "-o",
            "go-template={{.data.DB_PASSWORD | base64decode}}",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "kube-S3CRET-9911");
    let request = ObserveRequest {
        address: "Workload/acme/app".into(),
        kind: Kind::Workload,
        desired: Some(planned.clone()),
    };
    let seen = provider
        .observe(None, &[request])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let Observed::Present(live) = &seen[0].1 else {
        panic!("{seen:?}")
    };
    assert_eq!(live["env"], planned["env"], "{live}");
}
