//! References between resources: each names something that exists, and no cycle.

use crate::diagnostics::{Problem, did_you_mean};
use crate::graph::{ResourceGraph, Target};
use crate::load::Model;
use nimbus_schemas::Kind;

use super::common::*;

pub(super) fn check_references(model: &Model, graph: &ResourceGraph, problems: &mut Vec<Problem>) {
    let declared: std::collections::HashSet<&str> =
        model.declared.iter().map(|d| d.address.as_str()).collect();
    let hosts = crate::graph::LabelIndex::new(
        model
            .declared
            .iter()
            .enumerate()
            .filter(|(_, d)| d.kind == Kind::Host)
            .map(|(i, d)| (i, &d.labels)),
    );
    for reference in &graph.references {
        let document = &model.documents[reference.from];
        match &reference.target {
            Target::Address(address) => {
                if declared.contains(address.as_str()) {
                    continue;
                }
                let written = address;
                let (kind, name) = address.split_once('/').unwrap_or(("", address));
                let known_kind = Kind::from_yaml_name(kind);
                let candidates: Vec<&str> = declared
                    .iter()
                    .copied()
                    .filter(|a| known_kind.is_none() || a.starts_with(&format!("{kind}/")))
                    .collect();
                let help = if known_kind.is_none() {
                    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                    match did_you_mean(kind, kinds.iter().copied()) {
                        Some(close) => {
                            format!("`{kind}` is not a kind; did you mean `{close}/{name}`?")
                        }
                        None => format!(
                            "`{written}` is not an address: write `Kind/name`, or `Kind/tenant/name` for Workloads and Volumes"
                        ),
                    }
                } else {
                    match did_you_mean(address, candidates.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None if candidates.is_empty() => format!(
                            "there is no {kind} in this repository; declare it, or fix the reference"
                        ),
                        None => format!("declare {address}, or refer to one that exists"),
                    }
                };
                let message = if reference.path.is_empty() {
                    format!(
                        "{} belongs to {address}, which does not exist",
                        document.resource.address()
                    )
                } else {
                    format!(
                        "{} refers to {address}, which does not exist",
                        document.resource.address()
                    )
                };
                problems.push(
                    Problem::error(
                        "nimbus::reference::missing",
                        message,
                        field_label(document, &reference.path, "no such resource"),
                    )
                    .with_help(help),
                );
            }
            Target::Hosts(selector) => {
                if !hosts.any_match(selector) {
                    let labels = if selector.is_empty() {
                        "(any)".to_owned()
                    } else {
                        selector.to_string()
                    };
                    problems.push(
                        Problem::warning(
                            "nimbus::selector::no_match",
                            format!("selector {labels} of {} matches no Host", document.resource.address()),
                            field_label(document, &reference.path, "matches no host"),
                        )
                        .with_help("label a Host to match it, or fix the selector; until then this selects nothing"),
                    );
                }
            }
        }
    }
}

pub(super) fn check_cycles(model: &Model, graph: &ResourceGraph, problems: &mut Vec<Problem>) {
    for cycle in graph.cycles() {
        let names: Vec<String> = cycle
            .iter()
            .map(|(from, _, _)| model.documents[*from].resource.address())
            .chain(
                cycle
                    .first()
                    .map(|(from, _, _)| model.documents[*from].resource.address()),
            )
            .collect();
        let mut labels = cycle.iter().map(|(from, to, reference)| {
            let document = &model.documents[*from];
            let path = &graph.references[*reference].path;
            field_label(
                document,
                path,
                format!(
                    "{} depends on {}",
                    document.resource.address(),
                    model.documents[*to].resource.address()
                ),
            )
        });
        let Some(first) = labels.next() else { continue };
        let mut problem = Problem::error(
            "nimbus::graph::cycle",
            format!("dependency cycle: {}", names.join(" -> ")),
            first,
        )
        .with_help("break the cycle by removing one of these references or dependsOn entries");
        problem.secondary.extend(labels);
        problems.push(problem);
    }
}
