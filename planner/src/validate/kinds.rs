//! Each kind's own rules, by family (files, clusters and the Repository, VMs, volumes), and what
//! they share: fields that exclude each other, secrets that exist, a tenant for what needs one.

use crate::diagnostics::Problem;
use crate::load::Model;
use crate::tree::Segment;
use nimbus_schemas::{EnvValue, Spec, VolumeType};

use super::common::Check;
use super::{clusters, files, vms, volumes};

/// Every document's own rules.
pub(super) fn check_kinds(model: &Model, problems: &mut Vec<Problem>) {
    for document in &model.documents {
        let at = Check {
            model,
            document,
            address: document.resource.address(),
        };
        // A Workload's or Volume's tenant is `spec.tenant`, or the tenants/<t>/ folder it is in.
        if document.resource.kind.is_tenant_scoped() && document.resource.tenant.is_none() {
            problems.push(
                Problem::error(
                    "nimbus::manifest::missing_field",
                    format!("{} has no tenant", at.address),
                    document.label(document.name_span(), "declared here"),
                )
                .with_help("add `tenant:` to its spec, or move it under tenants/<tenant>/"),
            );
        }
        match &document.resource.spec {
            Spec::File(f) => files::check_file(&at, f, problems),
            Spec::Service(s) => at.one_of(
                &[("host", s.host.is_some()), ("hosts", s.hosts.is_some())],
                "a Service",
                problems,
            ),
            Spec::Cluster(c) => clusters::check_cluster(&at, c, problems),
            Spec::Repository(r) => clusters::check_repository_settings(&at, r, problems),
            Spec::Workload(w) => {
                for (name, value) in &w.env {
                    if let EnvValue::Secret { secret } = value {
                        at.secret(
                            &[Segment::Key("env"), Segment::Key(name)],
                            secret.name(),
                            problems,
                        );
                    }
                }
            }
            Spec::Vm(v) => vms::check_vm(&at, v, problems),
            Spec::Volume(v) if v.volume_type == VolumeType::S3 => {
                volumes::check_s3_volume(&at, v, problems)
            }
            _ => {}
        }
    }
}
