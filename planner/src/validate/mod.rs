//! Validation of a loaded repository (SPEC §4): names, duplicate addresses, references,
//! selectors, cycles, tenant policy and quotas, and values out of range. Every problem is
//! collected; nothing stops at the first.

use crate::diagnostics::{Problem, sort_problems};
use crate::graph::ResourceGraph;
use crate::load::Model;

mod clusters;
mod common;
mod files;
mod kinds;
mod names;
mod networks;
mod notifications;
mod references;
mod tenants;
mod vms;
mod volumes;

pub use common::{bucket_name_problem, is_dns_label, is_interface_name};

/// Checks the whole model; returns problems sorted by file and line.
pub fn validate(model: &Model) -> Vec<Problem> {
    let mut problems = Vec::new();
    names::check_names(model, &mut problems);
    names::check_duplicates(model, &mut problems);
    clusters::check_repository(model, &mut problems);
    let graph = ResourceGraph::build(model);
    references::check_references(model, &graph, &mut problems);
    references::check_cycles(model, &graph, &mut problems);
    kinds::check_kinds(model, &mut problems);
    tenants::check_tenants(model, &mut problems);
    networks::check_networks(model, &mut problems);
    crate::fields::check(model, &mut problems);
    sort_problems(&mut problems, &model.sources);
    problems
}
