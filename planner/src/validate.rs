//! Validation of a loaded repository (SPEC §4): names, duplicate addresses, references,
//! selectors, cycles, tenant policy and quotas, and values out of range. Every problem is
//! collected; nothing stops at the first.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use nimbus_schemas::{CloudInit, EnvValue, FileMode, Kind, Spec, VolumeType};

use crate::diagnostics::{Label, Problem, did_you_mean, sort_problems};
use crate::graph::{OwnedSegment, ResourceGraph, Target, segments};
use crate::load::{Document, Model, tenant_of_path};
use crate::tree::Segment;

/// Checks the whole model; returns problems sorted by file and line.
pub fn validate(model: &Model) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_names(model, &mut problems);
    check_duplicates(model, &mut problems);
    check_repository(model, &mut problems);
    let graph = ResourceGraph::build(model);
    check_references(model, &graph, &mut problems);
    check_cycles(model, &graph, &mut problems);
    check_kinds(model, &mut problems);
    check_tenants(model, &mut problems);
    check_networks(model, &mut problems);
    crate::fields::check(model, &mut problems);
    sort_problems(&mut problems, &model.sources);
    problems
}

/// A k3s binary's pin: an http(s) URL or a file in the repository, and 64 hex digits.
fn check_k3s_source(
    model: &Model,
    document: &Document,
    path: &[Segment<'_>],
    k3s: &nimbus_schemas::K3sSource,
    problems: &mut Vec<Problem>,
) {
    let at = |field: &'static str| {
        let mut full = path.to_vec();
        full.push(Segment::Key(field));
        document.spec_span(&full)
    };
    let url = k3s.source.starts_with("http://") || k3s.source.starts_with("https://");
    if !url && !model.paths.contains(k3s.source.trim_start_matches("./")) {
        problems.push(
            Problem::error(
                "nimbus::cluster::k3s_source",
                format!(
                    "k3s.source `{}` is neither an http(s) URL nor a file in the repository",
                    k3s.source
                ),
                document.label(at("source"), "no such file"),
            )
            .with_help(
                "give the URL of a k3s release binary, or commit the binary and give its path",
            ),
        );
    }
    if k3s.sha256.len() != 64 || !k3s.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        problems.push(
            Problem::error(
                "nimbus::cluster::k3s_sha256",
                "k3s.sha256 must be the binary's SHA-256: 64 hex digits",
                document.label(at("sha256"), "not a SHA-256"),
            )
            .with_help("take it from the release's sha256sum file, or `sha256sum k3s`"),
        );
    }
}

/// Whether Linux takes `name` as a network interface's name: 1 to 15 letters, digits, `-`,
/// `_` or `.`.
pub fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why `name` is not a bucket name S3 accepts, if it is not.
pub fn bucket_name_problem(name: &str) -> Option<&'static str> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&name.len()) {
        Some("a bucket name is 3 to 63 characters long")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        Some("a bucket name holds only lower-case letters, digits, `-` and `.`")
    } else if !edge(name.chars().next()) || !edge(name.chars().last()) {
        Some("a bucket name starts and ends with a letter or a digit")
    } else if name.contains("..") {
        Some("a bucket name has no two dots in a row")
    } else {
        None
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn check_names(model: &Model, problems: &mut Vec<Problem>) {
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

fn check_duplicates(model: &Model, problems: &mut Vec<Problem>) {
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

fn check_repository(model: &Model, problems: &mut Vec<Problem>) {
    let repositories: Vec<&Document> = model
        .documents
        .iter()
        .filter(|d| d.resource.kind == Kind::Repository)
        .collect();
    for extra in repositories.iter().skip(1) {
        problems.push(
            Problem::error(
                "nimbus::repository::duplicate",
                "more than one Repository document",
                extra.label(extra.span, "another Repository here"),
            )
            .with_label(repositories[0].label(repositories[0].span, "the first is here"))
            .with_help("keep a single Repository document, in nimbus.yaml at the root"),
        );
    }
    for document in &repositories {
        let path = model.sources.path(document.file);
        if path != "nimbus.yaml" && path != "nimbus.yml" && path != "nimbus.kdl" {
            problems.push(
                Problem::warning(
                    "nimbus::repository::location",
                    format!("the Repository document is in {path}, not in nimbus.yaml at the root"),
                    document.label(document.span, "Repository here"),
                )
                .with_help(
                    "move it to nimbus.yaml (or nimbus.kdl) so that people and tools find it",
                ),
            );
        }
        if let Spec::Repository(spec) = &document.resource.spec
            && spec.parallelism == 0
        {
            problems.push(
                Problem::error(
                    "nimbus::value::range",
                    "parallelism must be at least 1",
                    document.label(document.spec_span(&[Segment::Key("parallelism")]), "zero"),
                )
                .with_help("the default is 10"),
            );
        }
    }
}

fn field_label(document: &Document, path: &[OwnedSegment], message: impl Into<String>) -> Label {
    let segs = segments(path);
    let span = match path.last() {
        // A map key (`addresses: {web-1: ...}`) is labelled at the key.
        Some(OwnedSegment::MapKey(_)) => document.spec_key_span(&segs),
        Some(_) => document.spec_span(&segs),
        None => document.name_span(),
    };
    document.label(span, message)
}

fn check_references(model: &Model, graph: &ResourceGraph, problems: &mut Vec<Problem>) {
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

fn check_cycles(model: &Model, graph: &ResourceGraph, problems: &mut Vec<Problem>) {
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

fn is_safe_repo_path(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/') && !path.split('/').any(|p| p == "..")
}

fn check_kinds(model: &Model, problems: &mut Vec<Problem>) {
    let secret_exists = |name: &str| model.paths.contains(&format!("secrets/{name}.age"));
    let check_secret =
        |document: &Document, path: &[Segment<'_>], name: &str, problems: &mut Vec<Problem>| {
            if !secret_exists(name) {
                let known: Vec<&str> = model
                    .paths
                    .iter()
                    .filter_map(|p| {
                        p.strip_prefix("secrets/")
                            .and_then(|p| p.strip_suffix(".age"))
                    })
                    .collect();
                let help = match did_you_mean(name, known.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("create it with `nimbus secret encrypt {name}`"),
                };
                problems.push(
                    Problem::error(
                        "nimbus::secret::missing",
                        format!("secret `{name}` does not exist (no secrets/{name}.age)"),
                        document.label(document.spec_span(path), "no such secret"),
                    )
                    .with_help(help),
                );
            }
        };
    for document in &model.documents {
        let address = document.resource.address();
        let one_of = |present: &[(&str, bool)], what: &str, problems: &mut Vec<Problem>| {
            let set: Vec<&str> = present
                .iter()
                .filter(|(_, p)| *p)
                .map(|(n, _)| *n)
                .collect();
            let names: Vec<String> = present.iter().map(|(n, _)| format!("`{n}`")).collect();
            if set.len() > 1 {
                problems.push(
                    Problem::error(
                        "nimbus::manifest::conflicting_fields",
                        format!("{address} sets both `{}` and `{}`", set[0], set[1]),
                        document.label(document.spec_key_span(&[Segment::Key(set[1])]), "set here"),
                    )
                    .with_label(
                        document.label(document.spec_key_span(&[Segment::Key(set[0])]), "and here"),
                    )
                    .with_help(format!("{what} takes exactly one of {}", names.join(", "))),
                );
            } else if set.is_empty() {
                problems.push(
                    Problem::error(
                        "nimbus::manifest::missing_field",
                        format!("{address} needs one of {}", names.join(", ")),
                        document.label(document.name_span(), "declared here"),
                    )
                    .with_help(format!("{what} takes exactly one of {}", names.join(", "))),
                );
            }
        };
        // A Workload's or Volume's tenant is `spec.tenant`, or the tenants/<t>/ folder it is in.
        if document.resource.kind.is_tenant_scoped() && document.resource.tenant.is_none() {
            problems.push(
                Problem::error(
                    "nimbus::manifest::missing_field",
                    format!("{address} has no tenant"),
                    document.label(document.name_span(), "declared here"),
                )
                .with_help("add `tenant:` to its spec, or move it under tenants/<tenant>/"),
            );
        }
        match &document.resource.spec {
            Spec::File(f) => {
                one_of(
                    &[("host", f.host.is_some()), ("hosts", f.hosts.is_some())],
                    "a File",
                    problems,
                );
                one_of(
                    &[
                        ("content", f.content.is_some()),
                        ("source", f.source.is_some()),
                        ("secret", f.secret.is_some()),
                    ],
                    "a File",
                    problems,
                );
                if !f.path.starts_with('/') {
                    problems.push(
                        Problem::error(
                            "nimbus::value::path",
                            format!("file path `{}` is not absolute", f.path),
                            document.label(
                                document.spec_span(&[Segment::Key("path")]),
                                "relative path",
                            ),
                        )
                        .with_help(format!(
                            "write the full path on the host, such as `/{}`",
                            f.path.trim_start_matches("./")
                        )),
                    );
                }
                if let Some(source) = &f.source {
                    if !is_safe_repo_path(source) {
                        problems.push(
                            Problem::error(
                                "nimbus::value::path",
                                format!("source `{source}` is not a path inside the repository"),
                                document.label(
                                    document.spec_span(&[Segment::Key("source")]),
                                    "outside the repository",
                                ),
                            )
                            .with_help(
                                "write a path relative to the repository root, without `..`",
                            ),
                        );
                    } else if let Some(target) =
                        model.outside_links.get(source.trim_start_matches("./"))
                    {
                        problems.push(
                            Problem::error(
                                "nimbus::repository::outside_link",
                                format!("source `{source}` is a symbolic link to {target}, outside the repository"),
                                document.label(
                                    document.spec_span(&[Segment::Key("source")]),
                                    "leads outside the repository",
                                ),
                            )
                            .with_help("copy the file into the repository instead of linking to it"),
                        );
                    } else if !model.paths.contains(source.trim_start_matches("./")) {
                        let near = did_you_mean(source, model.paths.iter().map(String::as_str));
                        problems.push(
                            Problem::error(
                                "nimbus::reference::missing_source",
                                format!("source file `{source}` does not exist in the repository"),
                                document.label(
                                    document.spec_span(&[Segment::Key("source")]),
                                    "no such file",
                                ),
                            )
                            .with_help(match near {
                                Some(close) => format!("did you mean `{close}`?"),
                                None => "paths are relative to the repository root".into(),
                            }),
                        );
                    }
                }
                if let Some(secret) = &f.secret {
                    check_secret(document, &[Segment::Key("secret")], secret.name(), problems);
                }
                if let Some(FileMode {
                    bits,
                    decimal_looks_octal: true,
                }) = f.mode
                {
                    problems.push(
                        Problem::warning(
                            "nimbus::value::mode",
                            format!("mode {bits} is a decimal number (octal {bits:o})"),
                            document.label(document.spec_span(&[Segment::Key("mode")]), "decimal"),
                        )
                        .with_help(format!("if you meant octal, quote it: \"0{bits}\"")),
                    );
                }
            }
            Spec::Service(s) => {
                one_of(
                    &[("host", s.host.is_some()), ("hosts", s.hosts.is_some())],
                    "a Service",
                    problems,
                );
            }
            Spec::Cluster(c) => {
                if c.managers.is_some() && c.servers.is_some() {
                    one_of(
                        &[("managers", true), ("servers", true)],
                        "a Cluster",
                        problems,
                    );
                } else if c.manager_selector().is_none() {
                    let (field, other) = match c.cluster_type {
                        nimbus_schemas::ClusterType::K3s => ("servers", "managers"),
                        nimbus_schemas::ClusterType::DockerSwarm => ("managers", "servers"),
                    };
                    problems.push(
                        Problem::error(
                            "nimbus::manifest::missing_field",
                            format!("{address} has no `{field}`"),
                            document.label(document.name_span(), "declared here"),
                        )
                        .with_help(format!("add `{field}: {{role: ...}}` (or `{other}`) to select its control-plane hosts")),
                    );
                }
                if c.workers.is_some() && c.agents.is_some() {
                    one_of(
                        &[("workers", true), ("agents", true)],
                        "a Cluster",
                        problems,
                    );
                }
                if let Some(k3s) = &c.k3s {
                    if c.cluster_type != nimbus_schemas::ClusterType::K3s {
                        problems.push(
                            Problem::error(
                                "nimbus::cluster::k3s_source",
                                format!("{address} is not a k3s cluster, but names a `k3s` binary"),
                                document.label(
                                    document.spec_key_span(&[Segment::Key("k3s")]),
                                    "k3s here",
                                ),
                            )
                            .with_help("drop `k3s`, or make the cluster `type: k3s`"),
                        );
                    }
                    check_k3s_source(model, document, &[Segment::Key("k3s")], k3s, problems);
                } else if c.cluster_type == nimbus_schemas::ClusterType::K3s
                    && !model.repository().is_some_and(
                        |d| matches!(&d.resource.spec, Spec::Repository(r) if r.k3s.is_some()),
                    )
                {
                    problems.push(
                        Problem::error(
                            "nimbus::cluster::k3s_source",
                            format!("{address} is a k3s cluster, but no k3s binary is pinned for it"),
                            document.label(
                                document.spec_key_span(&[Segment::Key("type")]),
                                "type: k3s",
                            ),
                        )
                        .with_help(
                            "add `k3s: {source: URL or repository file, sha256: ...}` to the Cluster or to the Repository",
                        ),
                    );
                }
            }
            Spec::Repository(r) if r.k3s.is_some() || r.s3.is_some() => {
                if let Some(k3s) = &r.k3s {
                    check_k3s_source(model, document, &[Segment::Key("k3s")], k3s, problems);
                }
                let Some(s3) = &r.s3 else { continue };
                if !(s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://")) {
                    problems.push(
                        Problem::error(
                            "nimbus::value::format",
                            format!("s3.endpoint `{}` is not an http(s) URL", s3.endpoint),
                            document.label(
                                document.spec_span(&[Segment::Key("s3"), Segment::Key("endpoint")]),
                                "not http:// or https://",
                            ),
                        )
                        .with_help("write the endpoint as https://HOST[:PORT]"),
                    );
                }
                for (field, value) in [
                    ("accessKeyId", &s3.access_key_id),
                    ("secretAccessKey", &s3.secret_access_key),
                ] {
                    match value {
                        Some(EnvValue::Secret { secret }) => check_secret(
                            document,
                            &[
                                Segment::Key("s3"),
                                Segment::Key(field),
                                Segment::Key("secret"),
                            ],
                            secret.name(),
                            problems,
                        ),
                        Some(EnvValue::Value(_)) if field == "secretAccessKey" => problems.push(
                            Problem::error(
                                "nimbus::secret::plain_text",
                                "s3.secretAccessKey is written in plain text in the repository",
                                document.label(
                                    document.spec_span(&[Segment::Key("s3"), Segment::Key(field)]),
                                    "a key in plain text",
                                ),
                            )
                            .with_help(
                                "encrypt it (`nimbus secret encrypt s3-key`) and write \
                                 `secretAccessKey: {secret: s3-key}`, or leave it out and set \
                                 AWS_SECRET_ACCESS_KEY where nimbus runs; then rotate the key",
                            ),
                        ),
                        _ => {}
                    }
                }
            }
            Spec::Workload(w) => {
                for (name, value) in &w.env {
                    if let EnvValue::Secret { secret } = value {
                        check_secret(
                            document,
                            &[Segment::Key("env"), Segment::Key(name)],
                            secret.name(),
                            problems,
                        );
                    }
                }
            }
            Spec::Vm(v) => {
                one_of(
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
                        Spec::Host(_) if d.resource.name() == host => {
                            Some(&d.resource.metadata.labels)
                        }
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
                    check_secret(
                        document,
                        &[Segment::Key("cloudInit"), Segment::Key("secret")],
                        secret.name(),
                        problems,
                    );
                }
            }
            Spec::Volume(v) if v.volume_type == VolumeType::S3 => {
                let has_endpoint = model.repository().is_some_and(
                    |d| matches!(&d.resource.spec, Spec::Repository(r) if r.s3.is_some()),
                );
                if !has_endpoint {
                    problems.push(
                        Problem::error(
                            "nimbus::volume::no_s3_endpoint",
                            format!("{address} is an s3 Volume, but the Repository names no S3 endpoint"),
                            document.label(document.spec_span(&[Segment::Key("type")]), "s3 here"),
                        )
                        .with_help(
                            "an s3 Volume is a bucket on the Repository's endpoint: set `s3: {endpoint: https://HOST, \
                             secretAccessKey: {secret: NAME}}` in nimbus.yaml",
                        ),
                    );
                }
                let bucket = v.bucket.clone().unwrap_or_else(|| {
                    format!(
                        "{}-{}",
                        document.resource.tenant.as_deref().unwrap_or_default(),
                        document.resource.name()
                    )
                });
                if let Some(problem) = bucket_name_problem(&bucket) {
                    let (span, note) = match v.bucket {
                        Some(_) => (
                            document.spec_span(&[Segment::Key("bucket")]),
                            "this bucket name",
                        ),
                        None => (document.name_span(), "named TENANT-NAME after this"),
                    };
                    problems.push(
                        Problem::error(
                            "nimbus::volume::bucket_name",
                            format!("`{bucket}` is not a bucket name S3 accepts: {problem}"),
                            document.label(span, note),
                        )
                        .with_help("give the Volume a `bucket` that S3 accepts"),
                    );
                }
            }
            _ => {}
        }
    }
}

fn check_tenants(model: &Model, problems: &mut Vec<Problem>) {
    // Manifests under tenants/<t>/ may only declare resources of tenant <t>.
    for document in &model.documents {
        let path = model.sources.path(document.file);
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
        let path = model.sources.path(declared.file);
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
fn check_standalone(tenant: &str, workloads: &[&Document], problems: &mut Vec<Problem>) {
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

fn check_networks(model: &Model, problems: &mut Vec<Problem>) {
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

fn example_address(subnet: nimbus_schemas::Cidr) -> String {
    match subnet.network_address() {
        IpAddr::V4(v4) => std::net::Ipv4Addr::from(u32::from(v4).wrapping_add(10)).to_string(),
        IpAddr::V6(v6) => std::net::Ipv6Addr::from(u128::from(v6).wrapping_add(10)).to_string(),
    }
}
