//! Issue 13's figures through `nimbus` itself: a k3s Cluster on three test-bed hosts (the
//! stand-in of `testbed/k3s/k3s`: the test API server behind k3s's command line, over HTTPS
//! through the server's SSH connection), 10 Tenants and 100 Workloads. Prints the time of the
//! first `nimbus apply` (k3s installed on the three hosts, then every object), of a no-change
//! `nimbus plan` (median of 5, the whole command: load, SSH, observe, diff), and the API
//! requests one no-change plan makes, by verb, kind and namespace.
//!   bash bench/kube.sh   (cargo bench -p nimbus --bench k3s_plan)

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "../tests/common/k3s.rs"]
mod k3s;
#[path = "../../providers/tests/common/mod.rs"]
mod sshd;

use std::time::{Duration, Instant};

use common::{text, write};
use sshd::bed::Bed;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const TENANTS: usize = 10;
const PER_TENANT: usize = 10;
const RUNS: usize = 5;

fn requests(kubectl: &k3s::Kubectl) -> serde_json::Map<String, serde_json::Value> {
    let raw = kubectl.ok(&["get", "--raw", "/nimbus-test/requests"]);
    serde_json::from_str(&raw).unwrap_or_default()
}

fn main() {
    let bed = Bed::up(3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = &dir.path().join("repo");
    std::fs::create_dir_all(repo.join("bin")).unwrap_or_else(|e| panic!("{e}"));
    k3s::prepare(&bed, "never-fails");
    common::bed_repository(repo, "k3s-bench", &bed.known_hosts, &bed.key);
    std::fs::copy(k3s::standin(), repo.join("bin/k3s")).unwrap_or_else(|e| panic!("{e}"));
    let digest = k3s::sha256_of(&repo.join("bin/k3s"));
    let hosts: Vec<String> = bed
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let role = if i == 0 { "server" } else { "agent" };
            format!(
                "{HEADER}kind: Host\nmetadata: {{name: {}, labels: {{k3s: {role}}}}}\nspec: {{address: {}}}\n",
                h.name, h.address
            )
        })
        .collect();
    write(repo, "hosts.yaml", &hosts.join("---\n"));
    write(
        repo,
        "cluster.yaml",
        &format!(
            "{HEADER}kind: Cluster\nmetadata: {{name: apps}}\nspec:\n  type: k3s\n  servers: {{k3s: server}}\n  agents: {{k3s: agent}}\n  k3s: {{source: bin/k3s, sha256: {digest}}}\n"
        ),
    );
    for t in 0..TENANTS {
        write(
            repo,
            &format!("tenants/t{t}/tenant.yaml"),
            &format!(
                "{HEADER}kind: Tenant\nmetadata: {{name: t{t}}}\nspec: {{cluster: apps, quota: {{pods: 50, cpu: \"20\", memory: 20Gi}}, members: [alice]}}\n"
            ),
        );
        for w in 0..PER_TENANT {
            write(
                repo,
                &format!("tenants/t{t}/w{w}.yaml"),
                &format!(
                    "{HEADER}kind: Workload\nmetadata: {{name: w{w}}}\nspec: {{image: \"nginx:1.27\", replicas: 2, cpu: 100m, memory: 64Mi, ports: [{{port: 80}}], env: {{INDEX: \"{w}\"}}}}\n"
                ),
            );
        }
    }
    let nimbus = |args: &[&str]| common::nimbus_with(args, repo, &[]);

    let started = Instant::now();
    let applied = nimbus(&["apply", "--auto-approve", "--parallelism", "10", "."]);
    let first = started.elapsed();
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );

    let kubectl = k3s::Kubectl::new(&bed, &bed.hosts[0].name, dir.path());
    let mut times: Vec<Duration> = Vec::new();
    let mut per_plan = serde_json::Map::new();
    for run in 0..RUNS {
        let before = requests(&kubectl);
        let started = Instant::now();
        let plan = nimbus(&["plan", "--detailed-exitcode", "."]);
        times.push(started.elapsed());
        assert_eq!(
            plan.status.code(),
            Some(0),
            "{}{}",
            text(&plan.stdout),
            text(&plan.stderr)
        );
        if run == 0 {
            let after = requests(&kubectl);
            for (key, count) in &after {
                let was = before
                    .get(key)
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                let made = count.as_u64().unwrap_or(0) - was;
                // (The counting endpoint is not counted.)
                if made > 0 {
                    per_plan.insert(key.clone(), made.into());
                }
            }
        }
    }
    times.sort();
    let total: u64 = per_plan
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    println!(
        "k3s through nimbus: {} hosts, {TENANTS} tenants, {} workloads",
        bed.hosts.len(),
        TENANTS * PER_TENANT
    );
    println!(
        "  first nimbus apply (k3s installed, then every object): {:.2} s",
        first.as_secs_f64()
    );
    println!(
        "  no-change nimbus plan, median of {RUNS}: {:.3} s (min {:.3}, max {:.3})",
        times[RUNS / 2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[RUNS - 1].as_secs_f64()
    );
    println!("  API requests per no-change plan: {total}");
    for (key, count) in &per_plan {
        println!("    {key}: {count}");
    }
}
