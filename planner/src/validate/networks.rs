//! Networks: subnets, addresses and members.

use crate::diagnostics::Problem;
use crate::load::{Document, Model};
use crate::tree::Segment;
use nimbus_schemas::Spec;
use std::collections::HashMap;
use std::net::IpAddr;

use super::common::*;

pub(super) fn check_networks(model: &Model, problems: &mut Vec<Problem>) {
    // Networks met so far: their subnet and interface, for overlaps and clashes.
    let mut earlier: Vec<(&Document, nimbus_schemas::Cidr, String)> = Vec::new();
    for document in &model.documents {
        let Spec::Network(network) = &document.resource.spec else {
            continue;
        };
        let name = document.resource.name();
        let interface = network.interface_name(name);
        if !is_interface_name(&interface) {
            let span = if network.interface.is_some() {
                document.spec_span(&[Segment::Key("interface")])
            } else {
                document.spec_span(&[])
            };
            problems.push(
                Problem::error(
                    "nimbus::network::interface",
                    format!(
                        "`{interface}` cannot be a network interface's name: Linux allows at most 15 letters, digits, `-`, `_` or `.`"
                    ),
                    document.label(span, "interface name"),
                )
                .with_help("set `interface:` to a shorter name, such as `wg0`"),
            );
        }
        for (other, subnet, other_interface) in &earlier {
            let overlap = subnet.contains(network.subnet.network_address())
                || network.subnet.contains(subnet.network_address());
            if overlap {
                problems.push(
                    Problem::error(
                        "nimbus::network::overlap",
                        format!(
                            "the subnet {} of Network/{name} overlaps {subnet} of Network/{}",
                            network.subnet,
                            other.resource.name()
                        ),
                        document.label(document.spec_span(&[Segment::Key("subnet")]), "this subnet"),
                    )
                    .with_label(other.label(
                        other.spec_span(&[Segment::Key("subnet")]),
                        "overlapped here",
                    ))
                    .with_help("give each Network a subnet of its own: their routes would send one mesh's packets into the other"),
                );
            }
            if *other_interface == interface {
                problems.push(
                    Problem::error(
                        "nimbus::network::interface",
                        format!(
                            "Network/{name} and Network/{} both use the interface {interface}",
                            other.resource.name()
                        ),
                        document.label(document.spec_span(&[]), "this Network"),
                    )
                    .with_help("set `interface:` on one of them"),
                );
            }
        }
        earlier.push((document, network.subnet, interface));
        let mut seen: HashMap<IpAddr, &str> = HashMap::new();
        for (host, written) in &network.addresses {
            let path = [Segment::Key("addresses"), Segment::Key(host.as_str())];
            let span = document.spec_span(&path);
            let address: IpAddr = match written.parse() {
                Ok(a) => a,
                Err(_) => {
                    problems.push(
                        Problem::error(
                            "nimbus::network::address",
                            format!("`{written}` is not an IP address"),
                            document.label(span, "not an IP address"),
                        )
                        .with_help(format!(
                            "write an address inside {}, such as `{}`",
                            network.subnet,
                            example_address(network.subnet)
                        )),
                    );
                    continue;
                }
            };
            if !network.subnet.contains(address) {
                problems.push(
                    Problem::error(
                        "nimbus::network::address",
                        format!(
                            "overlay address {address} of {host} is outside the subnet {}",
                            network.subnet
                        ),
                        document.label(span, "outside the subnet"),
                    )
                    .with_label(
                        document.label(document.spec_span(&[Segment::Key("subnet")]), "subnet"),
                    )
                    .with_help(format!("pick an address inside {}", network.subnet)),
                );
                continue;
            }
            if address == network.subnet.network_address()
                || (address.is_ipv4() && address == network.subnet.last_address())
            {
                problems.push(
                    Problem::error(
                        "nimbus::network::address",
                        format!("overlay address {address} of {host} is the subnet's network or broadcast address"),
                        document.label(span, "reserved address"),
                    )
                    .with_help("pick another address inside the subnet"),
                );
                continue;
            }
            if let Some(other) = seen.get(&address) {
                let other_span =
                    document.spec_span(&[Segment::Key("addresses"), Segment::Key(other)]);
                problems.push(
                    Problem::error(
                        "nimbus::network::address_collision",
                        format!("overlay address {address} is given to both {other} and {host}"),
                        document.label(span, format!("{host} here")),
                    )
                    .with_label(document.label(other_span, format!("{other} here")))
                    .with_help(
                        "give each host its own address, or leave one out to have it allocated",
                    ),
                );
            } else {
                seen.insert(address, host);
            }
        }
    }
}

pub(super) fn example_address(subnet: nimbus_schemas::Cidr) -> String {
    match subnet.network_address() {
        IpAddr::V4(v4) => std::net::Ipv4Addr::from(u32::from(v4).wrapping_add(10)).to_string(),
        IpAddr::V6(v6) => std::net::Ipv6Addr::from(u128::from(v6).wrapping_add(10)).to_string(),
    }
}
