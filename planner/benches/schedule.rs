//! The scheduler at scale (issue 14): 10,000 workloads and VMs placed on 1,000 hosts, then a
//! re-plan with every placement recorded (nothing may move). Prints the median of several runs
//! of each; `bash bench/schedule.sh` runs it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nimbus_planner::scheduler::{HostRoom, Placement, Request, schedule};

const HOSTS: usize = 1_000;
const REQUESTS: usize = 10_000;
const RUNS: usize = 7;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    const GIB: u64 = 1 << 30;
    // 1,000 hosts in 10 zones, two sizes; a few without known capacity.
    let hosts: Vec<HostRoom> = (0..HOSTS)
        .map(|i| HostRoom {
            name: format!("host-{i:04}"),
            labels: BTreeMap::from([
                ("zone".to_owned(), format!("z{}", i % 10)),
                (
                    "role".to_owned(),
                    if i % 3 == 0 { "vm" } else { "app" }.to_owned(),
                ),
            ]),
            capacity: if i % 97 == 0 {
                Err("no declared capacity and no recorded facts".to_owned())
            } else if i % 2 == 0 {
                Ok((16_000, 64 * GIB))
            } else {
                Ok((8_000, 32 * GIB))
            },
        })
        .collect();
    // 10,000 requests: by zone, by zone and role, or among a few named hosts.
    let requests: Vec<Request> = (0..REQUESTS)
        .map(|i| {
            let mut selector = BTreeMap::from([("zone".to_owned(), format!("z{}", i % 10))]);
            if i % 4 == 0 {
                selector.insert("role".to_owned(), "vm".to_owned());
            }
            let hosts = if i % 25 == 0 {
                (0..5)
                    .map(|k| format!("host-{:04}", (i + k * 10) % HOSTS))
                    .collect()
            } else {
                Vec::new()
            };
            Request {
                address: format!("VM/w-{i:05}"),
                selector: if hosts.is_empty() {
                    selector
                } else {
                    BTreeMap::new()
                },
                hosts,
                cpu: 250 + (i as u64 % 8) * 250,
                memory: (1 + i as u64 % 4) * GIB / 2,
                previous: None,
            }
        })
        .collect();

    let mut first = BTreeMap::new();
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        first = schedule(&hosts, &[], &requests);
        times.push(started.elapsed());
    }
    let placed = first
        .values()
        .filter(|p| matches!(p, Placement::On { .. }))
        .count();
    let fresh = median(times);

    // A re-plan: every placement recorded as where it was.
    let recorded: Vec<Request> = requests
        .iter()
        .map(|r| Request {
            previous: match first.get(&r.address) {
                Some(Placement::On { host, .. }) => Some(host.clone()),
                _ => None,
            },
            ..r.clone()
        })
        .collect();
    let mut again = BTreeMap::new();
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        again = schedule(&hosts, &[], &recorded);
        times.push(started.elapsed());
    }
    let moved = first
        .iter()
        .filter(|(address, placement)| again.get(*address) != Some(*placement))
        .filter(|(address, _)| {
            // The reason of a kept placement says so; only the host counts.
            let host = |p: Option<&Placement>| match p {
                Some(Placement::On { host, .. }) => Some(host.clone()),
                _ => None,
            };
            host(first.get(*address)) != host(again.get(*address))
        })
        .count();
    let replan = median(times);

    println!("scheduler: {REQUESTS} workloads and VMs on {HOSTS} hosts (median of {RUNS} runs)");
    println!(
        "  first placement: {:.1} ms ({placed} placed, {} nowhere)",
        fresh.as_secs_f64() * 1000.0,
        REQUESTS - placed
    );
    println!(
        "  re-plan with every placement recorded: {:.1} ms, {moved} moved",
        replan.as_secs_f64() * 1000.0
    );
    assert_eq!(moved, 0, "a re-plan moved placements");
}
