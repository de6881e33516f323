//! Tenants: what a tenant's folder may declare, its quotas, and standalone tenants' containers.

use crate::diagnostics::{Label, Problem};
use crate::load::{Document, Model, tenant_of_path};
use crate::tree::Segment;
use nimbus_schemas::{Kind, Spec};
use std::collections::BTreeMap;

pub(super) fn check_tenants(model: &Model, problems: &mut Vec<Problem>) {
    // Manifests under tenants/<t>/ may only declare resources of tenant <t>.
    for document in &model.documents {
        let path = model.scope_path(document.file);
        let Some(folder) = tenant_of_path(path) else {
            continue;
        };
        let resource = &document.resource;
        let (belongs_to, span) = match resource.kind {
            Kind::Tenant => (Some(resource.name().to_owned()), document.name_span()),
            Kind::Workload | Kind::Volume => (
                resource.tenant.clone(),
                document.spec_span(&[Segment::Key("tenant")]),
            ),
            _ => (None, document.kind_span),
        };
        match belongs_to {
            Some(tenant) if tenant == folder => {}
            Some(tenant) => problems.push(
                Problem::error(
                    "nimbus::policy::tenant_scope",
                    format!("{path} is in tenant `{folder}`'s folder but declares {} of tenant `{tenant}`", resource.address()),
                    document.label(span, format!("belongs to tenant `{tenant}`")),
                )
                .with_help(format!("move it to tenants/{tenant}/, or make it tenant `{folder}`'s")),
            ),
            None => problems.push(
                Problem::error(
                    "nimbus::policy::tenant_scope",
                    format!("{path} is in tenant `{folder}`'s folder but declares {}, which is not a tenant resource", resource.address()),
                    document.label(span, "not allowed in a tenant folder"),
                )
                .with_help("tenant folders hold only the Tenant itself and its Workloads and Volumes; move this outside tenants/"),
            ),
        }
    }
    // The same rule for documents that did not load (another field has an error): their
    // `tenant:` was read, so a resource of another tenant in this folder is still reported.
    let loaded: std::collections::HashSet<(crate::diagnostics::FileId, String)> = model
        .documents
        .iter()
        .map(|d| (d.file, d.resource.address()))
        .collect();
    for declared in &model.declared {
        let Some((tenant, span)) = &declared.tenant else {
            continue;
        };
        let path = model.scope_path(declared.file);
        let Some(folder) = tenant_of_path(path) else {
            continue;
        };
        if tenant == folder || loaded.contains(&(declared.file, declared.address.clone())) {
            continue;
        }
        problems.push(
            Problem::error(
                "nimbus::policy::tenant_scope",
                format!(
                    "{path} is in tenant `{folder}`'s folder but declares {} of tenant `{tenant}`",
                    declared.address
                ),
                Label::new(
                    declared.file,
                    *span,
                    format!("belongs to tenant `{tenant}`"),
                ),
            )
            .with_help(format!(
                "move it to tenants/{tenant}/, or make it tenant `{folder}`'s"
            )),
        );
    }
    // The sum of a tenant's Workload requests must fit its quota.
    let mut workloads: BTreeMap<&str, Vec<&Document>> = BTreeMap::new();
    for document in &model.documents {
        if let (Spec::Workload(_), Some(tenant)) =
            (&document.resource.spec, &document.resource.tenant)
        {
            workloads.entry(tenant.as_str()).or_default().push(document);
        }
    }
    for tenant_document in &model.documents {
        let Spec::Tenant(tenant) = &tenant_document.resource.spec else {
            continue;
        };
        let name = tenant_document.resource.name();
        let members = workloads.get(name).map(Vec::as_slice).unwrap_or(&[]);
        if tenant.cluster.is_none() {
            check_standalone(name, members, problems);
        }
        let quota = &tenant.quota;
        let checks: [QuotaCheck; 3] = [
            (
                "cpu",
                quota.cpu.map(|c| u128::from(c.millicores)),
                |w| u128::from(w.cpu.map_or(0, |c| c.millicores)) * u128::from(w.replicas),
                |m| {
                    nimbus_schemas::Cpu::from_millicores(u64::try_from(m).unwrap_or(u64::MAX))
                        .to_string()
                },
                "cpu",
            ),
            (
                "memory",
                quota.memory.map(|b| u128::from(b.bytes)),
                |w| u128::from(w.memory.map_or(0, |b| b.bytes)) * u128::from(w.replicas),
                |b| {
                    nimbus_schemas::Bytes::from_bytes(u64::try_from(b).unwrap_or(u64::MAX))
                        .to_string()
                },
                "memory",
            ),
            (
                "pods",
                quota.pods.map(u128::from),
                |w| u128::from(w.replicas),
                |n| n.to_string(),
                "replicas",
            ),
        ];
        for (resource, limit, amount, show, field) in checks {
            let Some(limit) = limit else { continue };
            let total: u128 = members
                .iter()
                .filter_map(|d| match &d.resource.spec {
                    Spec::Workload(w) => Some(amount(w)),
                    _ => None,
                })
                .sum();
            if total <= limit {
                continue;
            }
            let mut problem = Problem::error(
                "nimbus::policy::quota",
                format!(
                    "tenant `{name}` requests {} {resource} across its workloads, more than its quota of {}",
                    show(total),
                    show(limit)
                ),
                tenant_document.label(
                    tenant_document.spec_span(&[Segment::Key("quota"), Segment::Key(resource)]),
                    format!("quota {}", show(limit)),
                ),
            )
            .with_help(format!("raise the quota, or lower the workloads' {resource} or replicas"));
            for workload in members {
                if let Spec::Workload(w) = &workload.resource.spec {
                    let each = amount(w);
                    if each == 0 {
                        continue;
                    }
                    let span = workload.spec_span(&[Segment::Key(field)]);
                    problem.secondary.push(workload.label(
                        span,
                        format!(
                            "{} requests {} ({} replicas)",
                            workload.resource.address(),
                            show(each),
                            w.replicas
                        ),
                    ));
                }
            }
            problems.push(problem);
        }
    }
}

/// A Workload of a Tenant without a Cluster is one container on one Docker host: its
/// `placement` names that host, or hosts or a selector for the scheduler to choose from, and
/// it has at most one replica (0: stopped).
pub(super) fn check_standalone(tenant: &str, workloads: &[&Document], problems: &mut Vec<Problem>) {
    for workload in workloads {
        let Spec::Workload(w) = &workload.resource.spec else {
            continue;
        };
        let address = workload.resource.address();
        let placed = w
            .placement
            .as_ref()
            .is_some_and(|p| !p.hosts.is_empty() || !p.selector.is_empty());
        if !placed {
            problems.push(
                Problem::error(
                    "nimbus::workload::placement",
                    format!(
                        "{address} belongs to tenant `{tenant}`, which names no cluster, so it runs as a container on one Docker host, and its placement names none"
                    ),
                    workload.label(workload.name_span(), "needs a host"),
                )
                .with_help(format!(
                    "write `placement: {{hosts: [HOST]}}`, or a selector such as `placement: {{role: docker}}` for the scheduler to choose one; or give Tenant/{tenant} a `cluster`"
                )),
            );
        }
        if w.replicas > 1 {
            problems.push(
                Problem::error(
                    "nimbus::workload::replicas",
                    format!(
                        "{address} runs as one container on one host (tenant `{tenant}` names no cluster), so it cannot have {} replicas",
                        w.replicas
                    ),
                    workload.label(
                        workload.spec_span(&[Segment::Key("replicas")]),
                        "1 (running) or 0 (stopped)",
                    ),
                )
                .with_help(format!(
                    "write `replicas: 1`, or give Tenant/{tenant} a docker-swarm `cluster`"
                )),
            );
        }
    }
}

/// One quota dimension: its name, the tenant's limit, a workload's request (times replicas),
/// how to show an amount, and the Workload field that requests it.
type QuotaCheck = (
    &'static str,
    Option<u128>,
    fn(&nimbus_schemas::WorkloadSpec) -> u128,
    fn(u128) -> String,
    &'static str,
);
