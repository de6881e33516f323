//! The scheduler (SPEC §11): places what names no fixed host (a VM with a `placement`, a
//! Workload of a tenant with no cluster whose `placement` is a selector or several hosts) on a
//! matching host. Pure and deterministic: the same hosts, loads and requests give the same
//! placements.
//!
//! - Capacity is the Host's declared `capacity`, else its facts as last observed (cpus,
//!   memory); a host with neither is no candidate, and says why.
//! - Bin-packing: the busiest host that still fits first (by the sum of its cpu and memory
//!   fractions in use); ties go to the first name.
//! - Stable: a placement made before is kept while its host still matches and it still fits,
//!   in address order; only what no longer fits moves. A host added moves nothing.
//! - When nothing fits, the reason names each candidate and what it lacks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nimbus_schemas::{Bytes, Cpu};

/// A host as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRoom {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// (millicores, bytes), or why it is not known.
    pub capacity: Result<(u64, u64), String>,
}

/// Something to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub address: String,
    /// Labels the host must have (all of them).
    pub selector: BTreeMap<String, String>,
    /// When not empty, the host must be one of these.
    pub hosts: Vec<String>,
    pub cpu: u64,
    pub memory: u64,
    /// Where it was placed before (state), if anywhere.
    pub previous: Option<String>,
}

/// Load that is already on a host (a VM or container that names its host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fixed {
    pub host: String,
    pub cpu: u64,
    pub memory: u64,
}

/// Where a request goes, and why; or why it cannot go anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    On { host: String, reason: String },
    Nowhere { reason: String },
}

fn cpu_text(millicores: u64) -> String {
    Cpu { millicores }.to_string()
}

fn memory_text(bytes: u64) -> String {
    Bytes { bytes }.to_string()
}

impl Request {
    fn matches(&self, host: &HostRoom) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&host.name))
            && self
                .selector
                .iter()
                .all(|(k, v)| host.labels.get(k) == Some(v))
    }
}

/// A placement as written: its selector and its host list.
type PlacementKey<'a> = (&'a BTreeMap<String, String>, &'a [String]);

/// Places every request. Requests are taken in a fixed order, so the result does not depend
/// on the order they are given in.
///
/// Hosts are indexed once (by name order, which is also the tie-break order), what each host
/// has in use is a vector by that index, and the candidates of a placement are found once
/// per distinct selector and host list: many requests share them.
pub fn schedule(
    hosts: &[HostRoom],
    fixed: &[Fixed],
    requests: &[Request],
) -> BTreeMap<String, Placement> {
    let mut hosts: Vec<&HostRoom> = hosts.iter().collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    hosts.dedup_by(|a, b| a.name == b.name);
    let index: HashMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i))
        .collect();
    let mut used: Vec<(u64, u64)> = vec![(0, 0); hosts.len()];
    for load in fixed {
        if let Some(&i) = index.get(load.host.as_str()) {
            used[i].0 += load.cpu;
            used[i].1 += load.memory;
        }
    }
    let fits = |used: &[(u64, u64)], i: usize, r: &Request| match hosts[i].capacity {
        Ok((cpu, memory)) => used[i].0 + r.cpu <= cpu && used[i].1 + r.memory <= memory,
        Err(_) => false,
    };
    let mut out = BTreeMap::new();
    let mut sorted: Vec<&Request> = requests.iter().collect();
    sorted.sort_by(|a, b| a.address.cmp(&b.address));
    sorted.dedup_by(|a, b| a.address == b.address);

    // What was placed before stays where it is while it still can.
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    for request in &sorted {
        let Some(&i) = request
            .previous
            .as_deref()
            .and_then(|previous| index.get(previous))
        else {
            continue;
        };
        if request.matches(hosts[i]) && fits(&used, i, request) {
            used[i].0 += request.cpu;
            used[i].1 += request.memory;
            kept.insert(request.address.as_str());
            out.insert(
                request.address.clone(),
                Placement::On {
                    host: hosts[i].name.clone(),
                    reason: format!(
                        "stays on {}: placed there before, still fits",
                        hosts[i].name
                    ),
                },
            );
        }
    }

    // The rest, largest first (better packing), then by address.
    let mut rest: Vec<&Request> = sorted
        .into_iter()
        .filter(|r| !kept.contains(r.address.as_str()))
        .collect();
    rest.sort_by(|a, b| {
        (b.cpu, b.memory)
            .cmp(&(a.cpu, a.memory))
            .then_with(|| a.address.cmp(&b.address))
    });
    // The candidates of each distinct placement, in name order.
    let mut candidates_of: HashMap<PlacementKey<'_>, Vec<usize>> = HashMap::new();
    let load = |used: &[(u64, u64)], i: usize| -> f64 {
        match hosts[i].capacity {
            Ok((cpu, memory)) => {
                let fraction = |u: u64, c: u64| if c == 0 { 0.0 } else { u as f64 / c as f64 };
                fraction(used[i].0, cpu) + fraction(used[i].1, memory)
            }
            Err(_) => 0.0,
        }
    };
    // When a host's usage last changed (a tick of `clock`), and the reasons already written
    // for requests that fit nowhere: one stays true while none of its candidates changed.
    let mut clock: u64 = 0;
    let mut changed_at: Vec<u64> = vec![0; hosts.len()];
    let mut nowhere: HashMap<(PlacementKey<'_>, u64, u64), (u64, String)> = HashMap::new();
    for request in rest {
        let candidates = candidates_of
            .entry((&request.selector, request.hosts.as_slice()))
            .or_insert_with(|| {
                (0..hosts.len())
                    .filter(|&i| request.matches(hosts[i]))
                    .collect()
            });
        let mut fitting = 0usize;
        let mut best: Option<(usize, f64)> = None;
        for &i in candidates.iter() {
            if !fits(&used, i, request) {
                continue;
            }
            fitting += 1;
            let score = load(&used, i);
            // Strictly busier wins; an equal one keeps the first name.
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        let placement = match best {
            Some((i, _)) => {
                used[i].0 += request.cpu;
                used[i].1 += request.memory;
                clock += 1;
                changed_at[i] = clock;
                let host = hosts[i];
                let why = if fitting == 1 {
                    "the only matching host that fits"
                } else {
                    "fits, most loaded"
                };
                let moved = match &request.previous {
                    Some(previous) if previous != &host.name => {
                        format!(" (moved from {previous}: it no longer fits or matches there)")
                    }
                    _ => String::new(),
                };
                Placement::On {
                    host: host.name.clone(),
                    reason: format!("placed on {}: {why}{moved}", host.name),
                }
            }
            None if candidates.is_empty() => Placement::Nowhere {
                reason: format!(
                    "no Host matches its placement{}",
                    describe_placement(request)
                ),
            },
            None => {
                let key = (
                    (&request.selector, request.hosts.as_slice()),
                    request.cpu,
                    request.memory,
                );
                if let Some((at, reason)) = nowhere.get(&key)
                    && candidates.iter().all(|&i| changed_at[i] <= *at)
                {
                    out.insert(
                        request.address.clone(),
                        Placement::Nowhere {
                            reason: reason.clone(),
                        },
                    );
                    continue;
                }
                let lacks: Vec<String> = candidates
                    .iter()
                    .map(|&i| {
                        let host = hosts[i];
                        match host.capacity {
                            Err(ref why) => format!("{}: {why}", host.name),
                            Ok((cpu, memory)) => {
                                let (u_cpu, u_memory) = used[i];
                                let mut short = Vec::new();
                                if u_cpu + request.cpu > cpu {
                                    short.push(format!(
                                        "{} cpu more ({} of {} in use)",
                                        cpu_text(u_cpu + request.cpu - cpu),
                                        cpu_text(u_cpu),
                                        cpu_text(cpu)
                                    ));
                                }
                                if u_memory + request.memory > memory {
                                    short.push(format!(
                                        "{} memory more ({} of {} in use)",
                                        memory_text(u_memory + request.memory - memory),
                                        memory_text(u_memory),
                                        memory_text(memory)
                                    ));
                                }
                                format!("{} needs {}", host.name, short.join(" and "))
                            }
                        }
                    })
                    .collect();
                let reason = format!(
                    "no matching host has room for {} cpu and {} memory: {}",
                    cpu_text(request.cpu),
                    memory_text(request.memory),
                    lacks.join("; ")
                );
                nowhere.insert(key, (clock, reason.clone()));
                Placement::Nowhere { reason }
            }
        };
        out.insert(request.address.clone(), placement);
    }
    out
}

fn describe_placement(request: &Request) -> String {
    let mut parts = Vec::new();
    if !request.selector.is_empty() {
        let labels: Vec<String> = request
            .selector
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        parts.push(format!("{{{}}}", labels.join(", ")));
    }
    if !request.hosts.is_empty() {
        parts.push(format!("hosts [{}]", request.hosts.join(", ")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, role: &str, cpu: u64, memory: u64) -> HostRoom {
        HostRoom {
            name: name.to_owned(),
            labels: BTreeMap::from([("role".to_owned(), role.to_owned())]),
            capacity: Ok((cpu, memory)),
        }
    }

    fn request(address: &str, cpu: u64, memory: u64) -> Request {
        Request {
            address: address.to_owned(),
            selector: BTreeMap::from([("role".to_owned(), "vm".to_owned())]),
            hosts: Vec::new(),
            cpu,
            memory,
            previous: None,
        }
    }

    const GI: u64 = 1 << 30;

    #[test]
    fn the_busiest_host_that_fits_goes_first_and_ties_go_to_the_first_name() {
        let hosts = [
            host("a", "vm", 4000, 8 * GI),
            host("b", "vm", 4000, 8 * GI),
            host("c", "web", 64000, 64 * GI),
        ];
        let placed = schedule(
            &hosts,
            &[Fixed {
                host: "b".into(),
                cpu: 1000,
                memory: GI,
            }],
            &[request("VM/x", 1000, GI), request("VM/y", 3000, GI)],
        );
        // y (larger) first: b is busier and fits; then x: b has 0 cpu left, a takes it.
        assert_eq!(
            placed["VM/y"],
            Placement::On {
                host: "b".into(),
                reason: "placed on b: fits, most loaded".into()
            }
        );
        assert!(matches!(&placed["VM/x"], Placement::On { host, .. } if host == "a"));
        // Equal load: the first name.
        let placed = schedule(&hosts, &[], &[request("VM/z", 1000, GI)]);
        assert!(matches!(&placed["VM/z"], Placement::On { host, .. } if host == "a"));
    }

    #[test]
    fn nothing_fits_names_what_each_candidate_lacks() {
        let mut unknown = host("u", "vm", 0, 0);
        unknown.capacity = Err("capacity not known".into());
        let hosts = [host("a", "vm", 2000, 2 * GI), unknown];
        let placed = schedule(&hosts, &[], &[request("VM/big", 3000, 4 * GI)]);
        let Placement::Nowhere { reason } = &placed["VM/big"] else {
            panic!("{placed:?}")
        };
        assert!(
            reason.contains("a needs 1 cpu more") && reason.contains("2Gi memory more"),
            "{reason}"
        );
        assert!(reason.contains("u: capacity not known"), "{reason}");
        let mut nowhere = request("VM/lost", 1, 1);
        nowhere.selector = BTreeMap::from([("role".to_owned(), "gpu".to_owned())]);
        let placed = schedule(&hosts, &[], &[nowhere]);
        assert_eq!(
            placed["VM/lost"],
            Placement::Nowhere {
                reason: "no Host matches its placement ({role: gpu})".into()
            }
        );
    }

    #[test]
    fn a_host_that_shrinks_moves_only_what_no_longer_fits() {
        let before = [host("a", "vm", 4000, 8 * GI), host("b", "vm", 4000, 8 * GI)];
        let mut requests = vec![
            request("VM/1", 2000, GI),
            request("VM/2", 2000, GI),
            request("VM/3", 1000, GI),
        ];
        let first = schedule(&before, &[], &requests);
        for r in &mut requests {
            if let Placement::On { host, .. } = &first[&r.address] {
                r.previous = Some(host.clone());
            }
        }
        let on_a: Vec<&String> = first
            .iter()
            .filter(|(_, p)| matches!(p, Placement::On { host, .. } if host == "a"))
            .map(|(a, _)| a)
            .collect();
        assert_eq!(on_a.len(), 2, "{first:?}");
        // a shrinks to 2 cpus: the first of its two (by address) stays, the other moves.
        let after = [host("a", "vm", 2000, 8 * GI), host("b", "vm", 4000, 8 * GI)];
        let second = schedule(&after, &[], &requests);
        let moved: Vec<&String> = requests
            .iter()
            .filter(|r| {
                !matches!(&second[&r.address], Placement::On { host, .. } if Some(host) == r.previous.as_ref())
            })
            .map(|r| &r.address)
            .collect();
        assert_eq!(moved.len(), 1, "{second:?}");
    }

    /// A small deterministic generator: the same seed, the same cases.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % below.max(1)
        }
    }

    fn case(seed: u64) -> (Vec<HostRoom>, Vec<Request>) {
        let mut rng = Lcg(seed);
        let roles = ["vm", "web"];
        let hosts: Vec<HostRoom> = (0..1 + rng.next(6))
            .map(|i| {
                host(
                    &format!("h{i}"),
                    roles[rng.next(2) as usize],
                    1000 * (1 + rng.next(8)),
                    GI * (1 + rng.next(16)),
                )
            })
            .collect();
        let requests: Vec<Request> = (0..rng.next(12))
            .map(|i| {
                let mut r = request(
                    &format!("VM/r{i}"),
                    250 * (1 + rng.next(8)),
                    GI / 2 * (1 + rng.next(8)),
                );
                r.selector =
                    BTreeMap::from([("role".to_owned(), roles[rng.next(2) as usize].to_owned())]);
                r
            })
            .collect();
        (hosts, requests)
    }

    #[test]
    fn properties_hold_for_many_generated_cases() {
        for seed in 0..500 {
            let (hosts, requests) = case(seed);
            let placed = schedule(&hosts, &[], &requests);
            // The same inputs, in another order, give the same placements.
            let mut reversed_hosts = hosts.clone();
            reversed_hosts.reverse();
            let mut reversed = requests.clone();
            reversed.reverse();
            assert_eq!(
                schedule(&reversed_hosts, &[], &reversed),
                placed,
                "seed {seed}"
            );
            // No host is over-committed, and every placement matches.
            for h in &hosts {
                let (cpu, memory) = h.capacity.clone().unwrap_or_default();
                let on: Vec<&Request> = requests
                    .iter()
                    .filter(|r| matches!(&placed[&r.address], Placement::On { host, .. } if *host == h.name))
                    .collect();
                assert!(on.iter().map(|r| r.cpu).sum::<u64>() <= cpu, "seed {seed}");
                assert!(
                    on.iter().map(|r| r.memory).sum::<u64>() <= memory,
                    "seed {seed}"
                );
                assert!(on.iter().all(|r| r.matches(h)), "seed {seed}");
            }
            // Adding a host moves nothing that was placed.
            let mut kept = requests.clone();
            for r in &mut kept {
                if let Placement::On { host, .. } = &placed[&r.address] {
                    r.previous = Some(host.clone());
                }
            }
            let mut more = hosts.clone();
            more.push(host("zz-new", "vm", 64000, 64 * GI));
            let again = schedule(&more, &[], &kept);
            for r in &kept {
                if let Some(previous) = &r.previous {
                    assert!(
                        matches!(&again[&r.address], Placement::On { host, .. } if host == previous),
                        "seed {seed}: {} moved",
                        r.address
                    );
                }
            }
        }
    }
}
