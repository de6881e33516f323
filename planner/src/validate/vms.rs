//! A VM's rules: a host or a placement, at least one cpu, a bridge Linux accepts and no ports
//! with it, a Network its host is a member of, a cloud-init secret that exists.

use crate::diagnostics::Problem;
use crate::tree::Segment;
use nimbus_schemas::{CloudInit, Spec, VmSpec};

use super::common::is_interface_name;

use super::common::Check;

/// A VM's own rules.
pub(super) fn check_vm(at: &Check<'_>, v: &VmSpec, problems: &mut Vec<Problem>) {
    let Check {
        model,
        document,
        address,
    } = at;
    at.one_of(
        &[
            ("host", v.host.is_some()),
            ("placement", v.placement.is_some()),
        ],
        "a VM",
        problems,
    );
    if v.cpus == 0 {
        problems.push(Problem::error(
            "nimbus::value::range",
            "a VM needs at least 1 cpu",
            document.label(document.spec_span(&[Segment::Key("cpus")]), "zero"),
        ));
    }
    if let Some(bridge) = &v.bridge {
        if !is_interface_name(bridge) {
            problems.push(Problem::error(
                    "nimbus::vm::bridge",
                    format!(
                        "`{bridge}` cannot be a bridge's name: Linux allows at most 15 letters, digits, `-`, `_` or `.`"
                    ),
                    document.label(document.spec_span(&[Segment::Key("bridge")]), "bridge name"),
                ));
        }
        if !v.ports.is_empty() {
            problems.push(
                    Problem::error(
                        "nimbus::manifest::conflicting_fields",
                        format!("{address} sets both `bridge` and `ports`"),
                        document.label(document.spec_key_span(&[Segment::Key("ports")]), "ports here"),
                    )
                    .with_help(
                        "`ports` are published by qemu's user-mode networking; on a bridge the guest has its own address: drop `ports`, or `bridge`",
                    ),
                );
        }
    }
    // A VM reaches a Network through its host: the host must be a member.
    if let (Some(network), Some(host)) = (&v.network, &v.host) {
        let members = model.documents.iter().find_map(|d| match &d.resource.spec {
            Spec::Network(n) if d.resource.name() == network => Some(&n.members),
            _ => None,
        });
        let labels = model.documents.iter().find_map(|d| match &d.resource.spec {
            Spec::Host(_) if d.resource.name() == host => Some(&d.resource.metadata.labels),
            _ => None,
        });
        if let (Some(members), Some(labels)) = (members, labels)
            && !members.matches(labels)
        {
            problems.push(
                    Problem::warning(
                        "nimbus::vm::network",
                        format!("{address} names Network/{network}, but its Host/{host} is not a member of it"),
                        document.label(document.spec_span(&[Segment::Key("network")]), "not reached from its host"),
                    )
                    .with_help(format!(
                        "label Host/{host} to match the Network's members, or drop `network`: a VM reaches a Network through its host"
                    )),
                );
        }
    }
    if let Some(CloudInit::Secret { secret }) = &v.cloud_init {
        at.secret(
            &[Segment::Key("cloudInit"), Segment::Key("secret")],
            secret.name(),
            problems,
        );
    }
}
