//! Names and addresses: every name valid for its kind, no address twice.

use crate::diagnostics::{Label, Problem};
use crate::load::{Document, Model};
use crate::tree::Segment;
use nimbus_schemas::{Kind, Spec};
use std::collections::HashMap;

use super::common::*;

pub(super) fn check_names(model: &Model, problems: &mut Vec<Problem>) {
    for document in &model.documents {
        let name = document.resource.name();
        if document.resource.kind == Kind::Repository && name.is_empty() {
            continue;
        }
        if !is_dns_label(name) {
            let suggestion: String = name
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .take(63)
                .collect::<String>()
                .trim_matches('-')
                .to_owned();
            let why = if name.len() > 63 {
                "is longer than 63 characters"
            } else {
                "is not a DNS-1123 label"
            };
            let mut problem = Problem::error(
                "nimbus::manifest::invalid_name",
                format!("name `{name}` {why}"),
                document.label(document.name_span(), "invalid name"),
            );
            problem.help = Some(if is_dns_label(&suggestion) {
                format!(
                    "names use lower-case letters, digits and `-`, at most 63 characters: try `{suggestion}`"
                )
            } else {
                "names use lower-case letters, digits and `-`, start and end with a letter or digit, at most 63 characters".into()
            });
            problems.push(problem);
        }
        if let Some(tenant) = &document.resource.tenant
            && !is_dns_label(tenant)
        {
            problems.push(Problem::error(
                "nimbus::manifest::invalid_name",
                format!("tenant name `{tenant}` is not a DNS-1123 label"),
                document.label(
                    document.spec_span(&[Segment::Key("tenant")]),
                    "invalid tenant name",
                ),
            ));
        }
    }
}

pub(super) fn check_duplicates(model: &Model, problems: &mut Vec<Problem>) {
    // Every declared resource counts, including those whose document has other errors.
    let mut first: HashMap<&str, &crate::load::Declared> = HashMap::new();
    for declared in &model.declared {
        if declared.kind == Kind::Repository {
            continue;
        }
        if let Some(earlier) = first.get(declared.address.as_str()) {
            problems.push(
                Problem::error(
                    "nimbus::address::duplicate",
                    format!("{} is declared twice", declared.address),
                    Label::new(declared.file, declared.span, "declared again here"),
                )
                .with_label(Label::new(
                    earlier.file,
                    earlier.span,
                    "first declared here",
                ))
                .with_help("rename one of them, or delete the copy"),
            );
        } else {
            first.insert(&declared.address, declared);
        }
    }
    let mut host_addresses: HashMap<(String, u16), &Document> = HashMap::new();
    for document in &model.documents {
        if let Spec::Host(host) = &document.resource.spec {
            let key = (host.address.to_ascii_lowercase(), host.port.0);
            if let Some(earlier) = host_addresses.get(&key) {
                problems.push(
                    Problem::error(
                        "nimbus::host::duplicate_address",
                        format!(
                            "Host/{} has the same address {}:{} as Host/{}",
                            document.resource.name(),
                            host.address,
                            host.port.0,
                            earlier.resource.name()
                        ),
                        document.label(document.spec_span(&[Segment::Key("address")]), "same address here"),
                    )
                    .with_label(earlier.label(earlier.spec_span(&[Segment::Key("address")]), "first used here"))
                    .with_help("two Hosts cannot share an address and port; fix the address or remove the duplicate"),
                );
            } else {
                host_addresses.insert(key, document);
            }
        }
    }
}
