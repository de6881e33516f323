//! A Network as each member is configured (SPEC §11): its interface, its overlay address and
//! its peers, every other member with that member's overlay address and endpoint. Pure: the
//! plan carries it as the desired spec of each `Network/NAME@HOST`, and the providers observe
//! against the same.
//!
//! Addresses: a member's explicit `addresses` entry; else the address state recorded for it,
//! while that is still inside the subnet and nobody else's; else the lowest free address of
//! the subnet, members taken by name. Addresses still recorded for hosts that left are kept
//! free until their instance is gone, so that nothing is renumbered and nothing reused in the
//! same run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use nimbus_schemas::{Cidr, NetworkSpec, Spec};
use serde_json::{Map, Value, json};

use crate::instances::InstanceGraph;
use crate::load::Model;
use crate::record::Record;

/// One Network member as configured: its interface, its overlay address and its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub interface: String,
    /// Its overlay address with the subnet's prefix (`10.106.103.1/24`).
    pub address: String,
    pub listen_port: u16,
    /// Every other member, by host.
    pub peers: BTreeMap<String, Peer>,
}

/// A member as another member's peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its overlay address.
    pub address: IpAddr,
    /// Where it is reached: its Host address and the port, when that is outside the overlay.
    pub endpoint: Option<String>,
    /// Seconds; 0: none.
    pub keepalive: u16,
}

impl Member {
    /// The member's desired spec, as the plan shows it and the provider applies it.
    pub fn value(&self) -> Value {
        let peers: Map<String, Value> = self
            .peers
            .iter()
            .map(|(host, peer)| {
                let mut entry = Map::new();
                entry.insert("address".into(), json!(peer.address.to_string()));
                if let Some(endpoint) = &peer.endpoint {
                    entry.insert("endpoint".into(), json!(endpoint));
                }
                if peer.keepalive > 0 {
                    entry.insert("keepalive".into(), json!(peer.keepalive));
                }
                (host.clone(), Value::Object(entry))
            })
            .collect();
        json!({
            "interface": self.interface,
            "address": self.address,
            "listenPort": self.listen_port,
            "key": KEY_KEPT,
            "boot": true,
            "up": true,
            "peers": peers,
        })
    }

    /// Its overlay address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }
}

/// The desired specs of a Network's instances, and which members nimbus reaches through it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    /// By instance address (`Network/NAME@HOST`): the member, or why it cannot be planned.
    pub members: BTreeMap<String, Result<Member, String>>,
    /// By Network name: the members whose SSH path crosses the mesh (an overlay address, or
    /// a bastion with one): changes there are confirmed or reverted.
    pub through: BTreeMap<String, Vec<String>>,
    /// By Network name: the confirm-or-revert timeout, in seconds.
    pub confirm_timeout: BTreeMap<String, u64>,
}

impl Mesh {
    /// The overlay address of `host` in the Network `network`, when planned.
    pub fn address_of(&self, network: &str, host: &str) -> Option<IpAddr> {
        self.members
            .get(&format!("Network/{network}@{host}"))?
            .as_ref()
            .ok()?
            .ip()
    }
}

/// The address part of a spec's `address` (`10.106.103.1/24`).
pub fn address_in(spec: &Value) -> Option<IpAddr> {
    spec.get("address")?
        .as_str()?
        .split('/')
        .next()?
        .parse()
        .ok()
}

fn nth(subnet: Cidr, n: u128) -> Option<IpAddr> {
    let base = match subnet.network_address() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let candidate = match subnet.address {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(base.checked_add(n)?).ok()?.into()),
        IpAddr::V6(_) => IpAddr::V6(base.checked_add(n)?.into()),
    };
    let usable = subnet.contains(candidate)
        && candidate != subnet.network_address()
        && !(candidate.is_ipv4() && candidate == subnet.last_address());
    usable.then_some(candidate)
}

/// Every Network's members as configured, from the model, its instances and state's records.
///
/// A member whose last change was rolled back by its host (not confirmed in time) keeps the
/// address it has, not the one state recorded for the change: `observed` says which.
pub fn plan(
    model: &Model,
    graph: &InstanceGraph,
    records: &HashMap<&str, &Record>,
    observed: &HashMap<String, crate::record::Observed>,
) -> Mesh {
    let hosts = model.hosts_by_name();
    let mut mesh = Mesh::default();
    for (d, document) in model.documents.iter().enumerate() {
        let Spec::Network(network) = &document.resource.spec else {
            continue;
        };
        let name = document.resource.name();
        let members: Vec<&str> = graph
            .instances
            .iter()
            .filter(|i| i.document == d)
            .filter_map(|i| i.host.as_deref())
            .collect();
        let rolled_back: HashMap<&str, IpAddr> = members
            .iter()
            .filter_map(|m| {
                let crate::record::Observed::Present(seen) =
                    observed.get(&format!("Network/{name}@{m}"))?
                else {
                    return None;
                };
                (seen["rolledBack"] == true).then_some(())?;
                Some((*m, address_in(seen)?))
            })
            .collect();
        let addresses = allocate(name, network, &members, records, &rolled_back);
        let in_subnet = |host: &str| {
            hosts
                .get(host)
                .and_then(|h| h.address.parse::<IpAddr>().ok())
                .is_some_and(|ip| network.subnet.contains(ip))
        };
        let through: Vec<String> = members
            .iter()
            .filter(|m| {
                in_subnet(m)
                    || hosts
                        .get(*m)
                        .and_then(|h| h.via.as_deref())
                        .is_some_and(&in_subnet)
            })
            .map(|m| (*m).to_owned())
            .collect();
        if !through.is_empty() {
            mesh.through.insert(name.to_owned(), through);
        }
        mesh.confirm_timeout
            .insert(name.to_owned(), u64::from(network.confirm_timeout));
        let interface = network.interface_name(name);
        let port = network.listen_port.0;
        let keepalive = network.persistent_keepalive;
        // The endpoint others reach a member at: its Host address, when that is an IP
        // outside the overlay (a member reached through the mesh has none; it makes the first
        // move, and its peers learn where it is).
        let endpoint = |host: &str| -> Option<String> {
            let ip: IpAddr = hosts.get(host)?.address.parse().ok()?;
            (!network.subnet.contains(ip)).then(|| SocketAddr::new(ip, port).to_string())
        };
        for member in &members {
            let address = format!("Network/{name}@{member}");
            let Some(own) = addresses.get(*member) else {
                mesh.members.insert(
                    address,
                    Err(format!(
                        "no address is left in {} for {member}: give the Network a larger `subnet`",
                        network.subnet
                    )),
                );
                continue;
            };
            let peers = members
                .iter()
                .filter(|p| *p != member)
                .filter_map(|peer| {
                    let address = *addresses.get(*peer)?;
                    Some((
                        (*peer).to_owned(),
                        Peer {
                            address,
                            endpoint: endpoint(peer),
                            keepalive,
                        },
                    ))
                })
                .collect();
            mesh.members.insert(
                address,
                Ok(Member {
                    interface: interface.clone(),
                    address: format!("{own}/{}", network.subnet.prefix),
                    listen_port: port,
                    peers,
                }),
            );
        }
    }
    mesh
}

/// What a spec says of the member's private key: made on the host, and there to stay.
pub const KEY_KEPT: &str = "kept on the host";

/// The members' addresses: explicit ones, then recorded ones still valid, then the lowest free.
fn allocate(
    name: &str,
    network: &NetworkSpec,
    members: &[&str],
    records: &HashMap<&str, &Record>,
    rolled_back: &HashMap<&str, IpAddr>,
) -> BTreeMap<String, IpAddr> {
    let subnet = network.subnet;
    let mut given: BTreeMap<String, IpAddr> = BTreeMap::new();
    let mut taken: BTreeSet<IpAddr> = BTreeSet::new();
    for member in members {
        if let Some(ip) = network
            .addresses
            .get(*member)
            .and_then(|a| a.parse::<IpAddr>().ok())
        {
            taken.insert(ip);
            given.insert((*member).to_owned(), ip);
        }
    }
    // Addresses recorded for this Network, by host (members and hosts that left).
    let prefix = format!("Network/{name}@");
    let mut recorded: Vec<(&str, IpAddr)> = records
        .iter()
        .filter_map(|(address, record)| {
            let host = address.strip_prefix(&prefix)?;
            let ip = match rolled_back.get(host) {
                Some(ip) => *ip,
                None => address_in(&record.applied)?,
            };
            subnet.contains(ip).then_some((host, ip))
        })
        .collect();
    recorded.sort();
    for (host, ip) in &recorded {
        let member = members.contains(host);
        if member && !given.contains_key(*host) && !taken.contains(ip) {
            taken.insert(*ip);
            given.insert((*host).to_owned(), *ip);
        } else if !member {
            taken.insert(*ip);
        }
    }
    let mut next = 1u128;
    for member in members {
        if given.contains_key(*member) {
            continue;
        }
        while let Some(candidate) = nth(subnet, next) {
            next += 1;
            if taken.insert(candidate) {
                given.insert((*member).to_owned(), candidate);
                break;
            }
        }
    }
    given
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(addresses: &[(&str, &str)]) -> NetworkSpec {
        let mut spec: NetworkSpec = serde_json::from_value(json!({"members": {"mesh": "yes"}}))
            .unwrap_or_else(|e| panic!("{e}"));
        spec.addresses = addresses
            .iter()
            .map(|(h, a)| ((*h).to_owned(), (*a).to_owned()))
            .collect();
        spec
    }

    fn record(address: &str, ip: &str) -> Record {
        Record {
            address: address.to_owned(),
            kind: nimbus_schemas::Kind::Network,
            applied: json!({"address": format!("{ip}/24")}),
            owned: true,
            protected: false,
            keep_on_removal: false,
            depends_on: Vec::new(),
            provider: "agent".into(),
            outputs: Value::Null,
            tainted: None,
        }
    }

    fn shown(given: &BTreeMap<String, IpAddr>) -> Vec<String> {
        given.iter().map(|(h, ip)| format!("{h}={ip}")).collect()
    }

    #[test]
    fn new_members_take_the_lowest_free_addresses_by_name() {
        let given = allocate(
            "mesh",
            &network(&[]),
            &["a", "b", "c"],
            &HashMap::new(),
            &HashMap::new(),
        );
        assert_eq!(
            shown(&given),
            ["a=10.106.103.1", "b=10.106.103.2", "c=10.106.103.3"]
        );
    }

    #[test]
    fn explicit_addresses_are_honoured_and_skipped_by_allocation() {
        let given = allocate(
            "mesh",
            &network(&[("b", "10.106.103.1")]),
            &["a", "b", "c"],
            &HashMap::new(),
            &HashMap::new(),
        );
        assert_eq!(
            shown(&given),
            ["a=10.106.103.2", "b=10.106.103.1", "c=10.106.103.3"]
        );
    }

    #[test]
    fn adding_or_removing_a_member_renumbers_nobody() {
        let kept = [
            record("Network/mesh@b", "10.106.103.2"),
            record("Network/mesh@c", "10.106.103.3"),
            record("Network/mesh@a", "10.106.103.1"),
        ];
        let records: HashMap<&str, &Record> =
            kept.iter().map(|r| (r.address.as_str(), r)).collect();
        // `0` sorts first but comes last: it gets the next free address; `a` has left, and
        // its address stays free while its record is there.
        let given = allocate(
            "mesh",
            &network(&[]),
            &["0", "b", "c"],
            &records,
            &HashMap::new(),
        );
        assert_eq!(
            shown(&given),
            ["0=10.106.103.4", "b=10.106.103.2", "c=10.106.103.3"]
        );
    }

    #[test]
    fn a_recorded_address_outside_a_new_subnet_is_allocated_again() {
        let kept = [record("Network/mesh@a", "10.106.103.7")];
        let records: HashMap<&str, &Record> =
            kept.iter().map(|r| (r.address.as_str(), r)).collect();
        let mut spec = network(&[]);
        spec.subnet = "10.9.0.0/30".parse().unwrap_or_else(|e| panic!("{e}"));
        let given = allocate("mesh", &spec, &["a", "b", "c"], &records, &HashMap::new());
        // A /30 has two usable addresses: the third member gets none.
        assert_eq!(shown(&given), ["a=10.9.0.1", "b=10.9.0.2"]);
    }

    #[test]
    fn a_member_whose_change_was_rolled_back_keeps_the_address_it_has() {
        let kept = [record("Network/mesh@a", "10.106.103.50")];
        let records: HashMap<&str, &Record> =
            kept.iter().map(|r| (r.address.as_str(), r)).collect();
        let has = HashMap::from([(
            "a",
            "10.106.103.3".parse().unwrap_or_else(|e| panic!("{e}")),
        )]);
        let given = allocate("mesh", &network(&[]), &["a", "b"], &records, &has);
        assert_eq!(shown(&given), ["a=10.106.103.3", "b=10.106.103.1"]);
    }
}
