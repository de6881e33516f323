//! The estate as a picture: server-rendered SVG, laid out by layer (hosts, networks,
//! clusters, tenants, then workloads, VMs and volumes), every node coloured by health and
//! marked with a sign, so that colour is never the only cue. Files and services are grouped
//! under their host; a tenant with more than a handful of workloads is one node with counts;
//! a layer too long to read keeps its most alarming nodes and folds the rest into one. Every
//! instance is in the picture: a group lists its members in `data-members` and on hover.
//! Rendered with maud, which escapes every value, as the pages are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use nimbus_schemas::Kind;

use super::estate::{Estate, Health, InstanceView};
use maud::{Markup, html};

use super::links::resource_href;

/// A tenant with more workloads than this is drawn as one node with counts.
pub const TENANT_FOLD: usize = 6;
/// At most this many nodes per layer; the rest are folded into one.
pub const LAYER_LIMIT: usize = 42;

const COLUMNS: usize = 7;
const NODE_W: usize = 184;
const NODE_H: usize = 46;
const GAP_X: usize = 12;
const GAP_Y: usize = 16;
const LAYER_HEAD: usize = 26;
const MARGIN: usize = 10;

const LAYERS: [&str; 5] = [
    "Hosts",
    "Networks",
    "Clusters",
    "Tenants",
    "Workloads, VMs and volumes",
];

fn layer_of(kind: Kind) -> usize {
    match kind {
        Kind::Host | Kind::File | Kind::Service => 0,
        Kind::Network => 1,
        Kind::Cluster => 2,
        Kind::Tenant => 3,
        _ => 4,
    }
}

/// One box of the picture: an instance, or a group of them.
struct Node<'a> {
    label: String,
    /// The second line: the kind, or what the group holds.
    detail: String,
    href: String,
    members: Vec<&'a InstanceView>,
}

impl Node<'_> {
    fn health(&self) -> Health {
        self.members
            .iter()
            .map(|m| m.health)
            .min()
            .unwrap_or(Health::Unknown)
    }

    /// The member that explains the node's health.
    fn worst(&self) -> Option<&InstanceView> {
        self.members.iter().copied().min_by_key(|m| m.health)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "8 workloads, 1 volume".
fn kind_counts(members: &[&InstanceView]) -> String {
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for m in members {
        *counts.entry(m.kind).or_default() += 1;
    }
    counts
        .iter()
        .map(|(kind, n)| {
            let one = kind.to_string().to_lowercase();
            plural(*n, &one, &format!("{one}s"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn health_counts(members: &[&InstanceView]) -> String {
    let mut counts: BTreeMap<Health, usize> = BTreeMap::new();
    for m in members {
        *counts.entry(m.health).or_default() += 1;
    }
    counts
        .iter()
        .map(|(h, n)| format!("{n} {}", h.glyph()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The nodes of each layer.
fn nodes(estate: &Estate) -> Vec<Vec<Node<'_>>> {
    let mut layers: Vec<Vec<Node<'_>>> = LAYERS.iter().map(|_| Vec::new()).collect();
    // Per-host instances by host; tenant-scoped ones by tenant.
    let mut on_host: BTreeMap<String, Vec<&InstanceView>> = BTreeMap::new();
    let mut in_tenant: BTreeMap<String, Vec<&InstanceView>> = BTreeMap::new();
    // Other per-host instances (a Network's member on each host) by their resource.
    let mut per_host: BTreeMap<String, Vec<&InstanceView>> = BTreeMap::new();
    for instance in estate.instances.values() {
        match (instance.kind, instance.host(), instance.tenant()) {
            (Kind::Host, ..) | (Kind::Tenant, ..) => {}
            (Kind::File | Kind::Service, Some(host), _) => {
                on_host.entry(host).or_default().push(instance);
            }
            (_, Some(_), _) => per_host
                .entry(instance.resource())
                .or_default()
                .push(instance),
            (_, None, Some(tenant)) => in_tenant.entry(tenant).or_default().push(instance),
            _ => {}
        }
    }
    let mut hosts_drawn: HashSet<String> = HashSet::new();
    for instance in estate.instances.values() {
        let layer = layer_of(instance.kind);
        match instance.kind {
            Kind::Host => {
                let name = instance.name();
                hosts_drawn.insert(name.clone());
                let mut members = vec![instance];
                members.extend(on_host.get(&name).into_iter().flatten().copied());
                layers[0].push(Node {
                    label: name.clone(),
                    detail: host_detail(&members[1..]),
                    href: resource_href(&instance.address),
                    members,
                });
            }
            Kind::Tenant => {
                let name = instance.name();
                let workloads = in_tenant.get(&name).map_or(&[][..], Vec::as_slice);
                let mut members = vec![instance];
                let detail = if workloads.len() > TENANT_FOLD {
                    members.extend(workloads.iter().copied());
                    format!("{}: {}", kind_counts(workloads), health_counts(workloads))
                } else {
                    "Tenant".to_owned()
                };
                layers[3].push(Node {
                    label: name.to_owned(),
                    detail,
                    href: resource_href(&instance.address),
                    members,
                });
            }
            _ if instance.host().is_some() => {}
            _ => {
                if let Some(tenant) = instance.tenant()
                    && in_tenant
                        .get(&tenant)
                        .is_some_and(|w| w.len() > TENANT_FOLD)
                    && estate.instances.contains_key(&format!("Tenant/{tenant}"))
                {
                    continue;
                }
                let label = match instance.tenant() {
                    Some(tenant) => format!("{tenant}/{}", instance.name()),
                    None => instance.name(),
                };
                layers[layer].push(Node {
                    label,
                    detail: instance.kind.to_string(),
                    href: resource_href(&instance.address),
                    members: vec![instance],
                });
            }
        }
    }
    for members in per_host.values() {
        let kind = members[0].kind;
        let hosts: Vec<String> = members.iter().filter_map(|m| m.host()).collect();
        layers[layer_of(kind)].push(Node {
            label: members[0].name(),
            detail: format!("{kind} \u{b7} {}", plural(hosts.len(), "host", "hosts")),
            href: resource_href(&members[0].address),
            members: members.clone(),
        });
    }
    // Per-host instances of a host that is not itself in the estate.
    for (host, members) in &on_host {
        if !hosts_drawn.contains(host) {
            layers[0].push(Node {
                label: (*host).to_owned(),
                detail: host_detail(members),
                href: resource_href(&members[0].address),
                members: members.clone(),
            });
        }
    }
    for layer in &mut layers {
        fold(layer);
    }
    layers
}

fn host_detail(members: &[&InstanceView]) -> String {
    let files = members.iter().filter(|m| m.kind == Kind::File).count();
    let services = members.iter().filter(|m| m.kind == Kind::Service).count();
    let mut parts = Vec::new();
    if files > 0 {
        parts.push(plural(files, "file", "files"));
    }
    if services > 0 {
        parts.push(plural(services, "service", "services"));
    }
    let others = members.len() - files - services;
    if others > 0 {
        parts.push(plural(others, "other", "others"));
    }
    if parts.is_empty() {
        "Host".to_owned()
    } else {
        parts.join(" \u{b7} ")
    }
}

/// Keeps a long layer readable: its most alarming nodes first, the rest as one node.
fn fold(layer: &mut Vec<Node<'_>>) {
    if layer.len() <= LAYER_LIMIT {
        return;
    }
    layer.sort_by(|a, b| a.health().cmp(&b.health()).then(a.label.cmp(&b.label)));
    let rest: Vec<Node<'_>> = layer.drain(LAYER_LIMIT - 1..).collect();
    let nodes = rest.len();
    let members: Vec<&InstanceView> = rest.into_iter().flat_map(|n| n.members).collect();
    layer.push(Node {
        label: format!("+{nodes} more"),
        detail: health_counts(&members),
        href: "/instances".to_owned(),
        members,
    });
}

/// The SVG of the estate, and the time it took is the caller's to measure.
pub fn svg(estate: &Estate) -> Markup {
    let layers = nodes(estate);
    let width = MARGIN * 2 + COLUMNS * NODE_W + (COLUMNS - 1) * GAP_X;
    // Positions, layer by layer; empty layers take no room.
    let mut positions: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut heads: Vec<(usize, &str)> = Vec::new();
    let mut y = MARGIN;
    for (i, layer) in layers.iter().enumerate() {
        let mut placed = Vec::new();
        if !layer.is_empty() {
            heads.push((y, LAYERS[i]));
            y += LAYER_HEAD;
            for (j, _) in layer.iter().enumerate() {
                let (row, column) = (j / COLUMNS, j % COLUMNS);
                placed.push((
                    MARGIN + column * (NODE_W + GAP_X),
                    y + row * (NODE_H + GAP_Y),
                ));
            }
            let rows = layer.len().div_ceil(COLUMNS);
            y += rows * (NODE_H + GAP_Y) + GAP_Y;
        }
        positions.push(placed);
    }
    let height = y + MARGIN;
    // Edges first, under the nodes: one per pair of nodes that depend on each other.
    let mut node_of: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for (j, node) in layer.iter().enumerate() {
            for member in &node.members {
                node_of.insert(member.address.as_str(), (i, j));
            }
        }
    }
    let mut edges: HashSet<((usize, usize), (usize, usize))> = HashSet::new();
    for instance in estate.instances.values() {
        let Some(&from) = node_of.get(instance.address.as_str()) else {
            continue;
        };
        for dependency in &instance.depends_on {
            if let Some(&to) = node_of.get(dependency.as_str())
                && to != from
            {
                edges.insert((from, to));
            }
        }
    }
    let mut edges: Vec<_> = edges.into_iter().collect();
    edges.sort_unstable();
    let curves = edges.into_iter().map(|((fi, fj), (ti, tj))| {
        let (fx, fy) = positions[fi][fj];
        let (tx, ty) = positions[ti][tj];
        let (x1, y1, x2, y2) = if ty < fy {
            (fx + NODE_W / 2, fy, tx + NODE_W / 2, ty + NODE_H)
        } else {
            (fx + NODE_W / 2, fy + NODE_H, tx + NODE_W / 2, ty)
        };
        let m = (y1 + y2) / 2;
        format!("M{x1} {y1} C{x1} {m} {x2} {m} {x2} {y2}")
    });
    // SVG inside HTML: every element closed (`path {}`), never left open as HTML's void
    // elements are.
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="estate"
            viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) role="img"
            aria-label={ "The estate: " (estate.instances.len()) " instances by layer" } {
            g.edges {
                @for curve in curves { path d=(curve) {} }
            }
            @for (y, name) in heads {
                text.layer x=(MARGIN) y=(y + 16) { (name) }
            }
            @for (i, layer) in layers.iter().enumerate() {
                @for (j, node) in layer.iter().enumerate() {
                    @let (x, y) = positions[i][j];
                    (node_svg(node, x, y))
                }
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{cut}\u{2026}")
    }
}

fn node_svg(node: &Node<'_>, x: usize, y: usize) -> Markup {
    let health = node.health();
    let members: Vec<&str> = node.members.iter().map(|m| m.address.as_str()).collect();
    let mut title = format!("{}: {}", node.label, health.label());
    if let Some(worst) = node.worst()
        && worst.health != Health::InSync
    {
        let _ = write!(title, "\n{} {}", worst.address, worst.health.label());
        if let Some(reason) = &worst.reason {
            let _ = write!(title, ": {reason}");
        }
    }
    if members.len() > 1 {
        let _ = write!(
            title,
            "\n{}",
            plural(members.len(), "instance", "instances")
        );
        for member in node.members.iter().take(50) {
            let _ = write!(title, "\n  {} {}", member.health.glyph(), member.address);
        }
        if members.len() > 50 {
            let _ = write!(title, "\n  \u{2026}");
        }
    }
    html! {
        a href=(node.href) class={ "node " (health.class()) } data-members=(members.join(" ")) {
            title { (title) }
            rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="6" {}
            text x=(x + 8) y=(y + 19) class="name" { (health.glyph()) " " (truncate(&node.label, 22)) }
            text x=(x + 8) y=(y + 37) class="detail" {
                (truncate(&format!("{} \u{b7} {}", health.label(), node.detail), 34))
            }
        }
    }
}
