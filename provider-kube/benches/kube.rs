//! Issue 13's figures at the provider: 100 Workloads in 10 Tenants against the test API
//! server (in this process, on loopback): the first apply (every object by server-side apply,
//! each rollout waited for), then a no-change observe of all 110 instances (what a plan asks
//! of the provider): its time (median of 7) and the API requests it makes.
//!   bash bench/kube.sh   (cargo bench -p nimbus-provider-kube --bench kube)

use std::time::{Duration, Instant};

use nimbus_kube_testserver::server::{Options, spawn};
use nimbus_planner::plan::{Action, Observed};
use nimbus_provider_contract::change_of;
use nimbus_provider_core::{Cancel, ObserveRequest, Provider};
use nimbus_provider_kube::KubeProvider;
use nimbus_schemas::Kind;
use serde_json::json;

const TENANTS: usize = 10;
const PER_TENANT: usize = 10;
const RUNS: usize = 7;

fn main() {
    let running = spawn(Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let config = kube::Config::new(running.url().parse().unwrap_or_else(|e| panic!("{e}")));
        let provider = KubeProvider::new(kube::Client::try_from(config).unwrap_or_else(|e| panic!("{e}")));
        let mut requests = Vec::new();
        let started = Instant::now();
        for t in 0..TENANTS {
            let tenant = format!("t{t}");
            let spec = json!({"quota": {"cpu": "20", "memory": "20Gi", "pods": 50}, "members": ["alice"]});
            let address = format!("Tenant/{tenant}");
            let change = change_of(Kind::Tenant, &address, None, Action::Create, None, Some(&spec));
            provider.apply(&change, &Cancel::new()).await.unwrap_or_else(|e| panic!("{e}"));
            requests.push(ObserveRequest { address, kind: Kind::Tenant, desired: Some(spec) });
            for w in 0..PER_TENANT {
                let spec = json!({"image": "nginx:1", "replicas": 2, "cpu": "100m", "memory": "64Mi",
                                  "ports": [{"port": 80, "protocol": "tcp"}], "env": {"INDEX": w.to_string()}});
                let address = format!("Workload/{tenant}/w{w}");
                let change = change_of(Kind::Workload, &address, None, Action::Create, None, Some(&spec));
                provider.apply(&change, &Cancel::new()).await.unwrap_or_else(|e| panic!("{e}"));
                requests.push(ObserveRequest { address, kind: Kind::Workload, desired: Some(spec) });
            }
        }
        let first = started.elapsed();
        let before = running.requests();
        let mut times: Vec<Duration> = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let seen = provider.observe(None, &requests).await.unwrap_or_else(|e| panic!("{e}"));
            times.push(started.elapsed());
            assert!(seen.iter().all(|(_, o)| matches!(o, Observed::Present(_))));
        }
        let after = running.requests();
        times.sort();
        let calls: Vec<String> = after
            .iter()
            .filter_map(|(k, v)| {
                let n = v - before.get(k).copied().unwrap_or(0);
                (n > 0).then(|| format!("{k}: {}", n / RUNS as u64))
            })
            .collect();
        let total: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
        println!("kubernetes provider: {} Workloads in {TENANTS} Tenants, test API server on loopback", TENANTS * PER_TENANT);
        println!("  first apply (server-side apply of every object, rollouts waited for): {:.3} s", first.as_secs_f64());
        println!("  no-change observe of all {} instances: {:.1} ms (median of {RUNS})", requests.len(), times[RUNS / 2].as_secs_f64() * 1000.0);
        println!("  API requests per no-change observe: {} ({})", total / RUNS as u64, calls.join(", "));
    });
}
