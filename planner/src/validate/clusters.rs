//! A Cluster's and the Repository's rules: control-plane hosts selected, a pinned k3s binary
//! for a k3s cluster, the Repository's settings (one Repository, at the root, its S3 endpoint).

use crate::diagnostics::Problem;
use crate::load::{Document, Model};
use crate::tree::Segment;
use nimbus_schemas::{ClusterSpec, EnvValue, Kind, RepositorySpec, Spec};

use super::common::Check;

/// A Cluster's own rules.
pub(super) fn check_cluster(at: &Check<'_>, c: &ClusterSpec, problems: &mut Vec<Problem>) {
    let Check {
        model,
        document,
        address,
    } = at;
    if c.managers.is_some() && c.servers.is_some() {
        at.one_of(
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
            .with_help(format!(
                "add `{field}: {{role: ...}}` (or `{other}`) to select its control-plane hosts"
            )),
        );
    }
    if c.workers.is_some() && c.agents.is_some() {
        at.one_of(
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
                    document.label(document.spec_key_span(&[Segment::Key("k3s")]), "k3s here"),
                )
                .with_help("drop `k3s`, or make the cluster `type: k3s`"),
            );
        }
        check_k3s_source(model, document, &[Segment::Key("k3s")], k3s, problems);
    } else if c.cluster_type == nimbus_schemas::ClusterType::K3s
        && !model
            .repository()
            .is_some_and(|d| matches!(&d.resource.spec, Spec::Repository(r) if r.k3s.is_some()))
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

/// The Repository's pinned k3s binary and S3 endpoint.
pub(super) fn check_repository_settings(
    at: &Check<'_>,
    r: &RepositorySpec,
    problems: &mut Vec<Problem>,
) {
    let Check {
        model, document, ..
    } = at;
    if let Some(k3s) = &r.k3s {
        check_k3s_source(model, document, &[Segment::Key("k3s")], k3s, problems);
    }
    if let Some(url) = &r.state.url {
        check_state_url(document, url, problems);
    }
    super::notifications::check_receivers(at, &r.notifications, problems);
    if let Some(name) = &r.state.password_secret {
        at.secret(
            &[Segment::Key("state"), Segment::Key("passwordSecret")],
            name,
            problems,
        );
        if r.state.url.is_none() {
            problems.push(
                Problem::error(
                    "nimbus::manifest::missing_field",
                    "state.passwordSecret without state.url: only a PostgreSQL state has a password",
                    document.label(
                        document.spec_span(&[Segment::Key("state"), Segment::Key("passwordSecret")]),
                        "no url beside it",
                    ),
                )
                .with_help("add `url: postgres://USER@HOST/DATABASE`, or drop `passwordSecret`"),
            );
        }
    }
    let Some(s3) = &r.s3 else { return };
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
            Some(EnvValue::Secret { secret }) => at.secret(
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
                )
                .with_redacted(document.spec_span(&[Segment::Key("s3"), Segment::Key(field)])),
            ),
            _ => {}
        }
    }
}

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

/// A PostgreSQL state's URL: `postgres://`, and no password written in the repository.
fn check_state_url(document: &Document, url: &str, problems: &mut Vec<Problem>) {
    let span = document
        .find_spec_span(&[Segment::Key("state"), Segment::Key("url")])
        .unwrap_or_else(|| document.spec_span(&[Segment::Key("state")]));
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        problems.push(
            Problem::error(
                "nimbus::value::format",
                "state.url is not a postgres:// URL",
                document.label(span, "not postgres:// or postgresql://"),
            )
            .with_help("write postgres://USER@HOST[:PORT]/DATABASE, or give state.path for SQLite"),
        );
        return;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let in_authority = authority
        .rsplit_once('@')
        .is_some_and(|(credentials, _)| credentials.contains(':'));
    let in_query = rest
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("password=")));
    if in_authority || in_query {
        problems.push(
            Problem::error(
                "nimbus::secret::plain_text",
                "state.url holds a password in plain text in the repository",
                document.label(span, "a password in the URL"),
            )
            .with_help(
                "remove it from the URL and give it where nimbus runs: PGPASSWORD, ~/.pgpass, or \
                 the whole URL in NIMBUS_STATE_URL; then change the password",
            )
            .with_redacted(span),
        );
    }
}
