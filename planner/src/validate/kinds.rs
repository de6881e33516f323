//! Each kind's own rules: the Repository's settings, fields that exclude each other, secrets that
//! exist, values in range.

use crate::diagnostics::{Problem, did_you_mean};
use crate::load::{Document, Model};
use crate::tree::Segment;
use nimbus_schemas::{CloudInit, EnvValue, FileMode, Kind, Spec, VolumeType};

use super::common::*;

/// A k3s binary's pin: an http(s) URL or a file in the repository, and 64 hex digits.
pub(super) fn check_k3s_source(
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

pub(super) fn check_repository(model: &Model, problems: &mut Vec<Problem>) {
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

pub(super) fn check_kinds(model: &Model, problems: &mut Vec<Problem>) {
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
