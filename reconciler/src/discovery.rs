//! Discovery (`nimbus discover`, docs/import.md): every Host's SSH provider and every provider
//! of objects that are not on a host (Kubernetes, S3) asked at once what they have; what state
//! records or a manifest declares is set apart; and manifests with an `Import` record each
//! written for the Files, Services, Tenants and Workloads found, secrets encrypted, never in
//! clear.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::load::Format;
use nimbus_planner::tree::camel_to_kebab;
use nimbus_providers::{DiscoverRequest, Discovered};
use nimbus_schemas::{Kind, Spec};
use serde::Serialize;
use serde_json::Value;

use crate::engine::Loaded;
use crate::ops::Session;

/// What to look for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Folders whose files are listed.
    pub paths: Vec<String>,
    /// Only these Hosts (and then no provider that is not on a host); empty: all.
    pub hosts: Vec<String>,
    /// Fetch what generating manifests needs (texts), not only the list.
    pub contents: bool,
}

/// One object found and not managed by nimbus.
#[derive(Debug, Serialize)]
pub struct Found {
    pub kind: String,
    pub host: String,
    pub identity: String,
    pub detail: String,
    /// The address it would get (or has, when a manifest declares it).
    pub address: String,
    /// A manifest declares it, but state does not record it: it wants importing.
    pub declared: bool,
    #[serde(skip)]
    object: Discovered,
}

/// Asks every chosen Host, at once, and keeps what nimbus does not manage.
pub async fn discover(
    session: &Session,
    args: &Options,
) -> Result<(Vec<Found>, BTreeMap<String, String>)> {
    let model = &session.loaded.checked.model;
    let declared_hosts: BTreeSet<&str> = model.hosts_by_name().keys().copied().collect();
    for host in &args.hosts {
        if !declared_hosts.contains(host.as_str()) {
            miette::bail!("no Host named `{host}` is declared");
        }
    }
    for path in &args.paths {
        if !path.starts_with('/') || path.chars().any(char::is_control) {
            miette::bail!("--path {path:?}: give an absolute folder");
        }
    }
    let hosts: Vec<&str> = declared_hosts
        .into_iter()
        .filter(|h| args.hosts.is_empty() || args.hosts.iter().any(|a| a == h))
        .collect();
    let ssh = session.registry.get(nimbus_providers::hosts::PROVIDER);
    let request = DiscoverRequest {
        paths: args.paths.clone(),
        contents: args.contents,
    };
    let mut asked = tokio::task::JoinSet::new();
    for host in hosts.iter().filter(|_| ssh.is_some()) {
        let Some(provider) = ssh.map(std::sync::Arc::clone) else {
            continue;
        };
        let request = request.clone();
        let host = (*host).to_owned();
        asked.spawn(async move {
            let found = provider.discover(Some(&host), &request).await;
            (host, found)
        });
    }
    // Providers whose objects are not on a host (Kubernetes clusters) are asked once.
    for name in session.registry.names() {
        if name == nimbus_providers::hosts::PROVIDER || !args.hosts.is_empty() {
            continue;
        }
        let Some(other) = session.registry.get(name) else {
            continue;
        };
        let other = std::sync::Arc::clone(other);
        let request = request.clone();
        asked.spawn(async move {
            let found = other.discover(None, &request).await;
            (String::new(), found)
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = asked.join_next().await {
        answers.push(answer.into_diagnostic()?);
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    let (records, _) = session.records()?;
    let recorded: BTreeSet<&str> = records.iter().map(|r| r.address.as_str()).collect();
    // What the manifests declare on each host, by what it is known by there.
    let mut declared: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for instance in &session.loaded.graph.instances {
        let Some(host) = &instance.host else { continue };
        let identity = match &model.documents[instance.document].resource.spec {
            Spec::File(file) => file.path.clone(),
            Spec::Service(_) => format!(
                "{}.service",
                model.documents[instance.document].resource.name()
            ),
            _ => continue,
        };
        declared.insert(
            (instance.kind.to_string(), host.clone(), identity),
            instance.address.clone(),
        );
    }
    // Files and Volumes state records, by host and path (their names are not their paths):
    // a File's `path`, a Volume's `POOL/TENANT/NAME` on its host.
    let recorded_paths: BTreeSet<(String, String)> = records
        .iter()
        .filter_map(|r| match r.kind {
            Kind::File => Some((
                nimbus_schemas::Address::target_of(&r.address)?,
                r.applied.get("path")?.as_str()?.to_owned(),
            )),
            Kind::Volume => {
                let address: nimbus_schemas::Address = r.address.parse().ok()?;
                Some((
                    r.applied.get("host")?.as_str()?.to_owned(),
                    format!(
                        "{}/{}/{}",
                        r.applied.get("pool")?.as_str()?.trim_end_matches('/'),
                        address.tenant?,
                        address.name
                    ),
                ))
            }
            _ => None,
        })
        .collect();
    let mut found = Vec::new();
    let mut unreachable = BTreeMap::new();
    for (host, answer) in answers {
        let objects = match answer {
            Ok(objects) => objects,
            Err(e) => {
                let what = if host.is_empty() {
                    "a provider".to_owned()
                } else {
                    format!("Host/{host}")
                };
                unreachable.insert(what, e.to_string());
                continue;
            }
        };
        for object in objects {
            if matches!(object.kind.as_str(), "File" | "Volume")
                && recorded_paths.contains(&(host.clone(), object.identity.clone()))
            {
                continue;
            }
            let key = (object.kind.clone(), host.clone(), object.identity.clone());
            let (address, is_declared) = match declared.get(&key) {
                Some(address) => (address.clone(), true),
                None => (would_be(&object, &host), false),
            };
            if recorded.contains(address.as_str()) {
                continue;
            }
            found.push(Found {
                kind: object.kind.clone(),
                host: host.clone(),
                identity: object.identity.clone(),
                detail: object.detail.clone(),
                address,
                declared: is_declared,
                object,
            });
        }
    }
    Ok((found, unreachable))
}

/// The address an object would get in nimbus.
fn would_be(object: &Discovered, host: &str) -> String {
    if let Some(address) = &object.address {
        return address.clone();
    }
    match object.kind.as_str() {
        "File" | "Service" | "Network" => format!("{}/{}@{host}", object.kind, object.name),
        "Workload" => format!("Workload/TENANT/{}", object.name),
        "Secret" => format!("secrets/{}.age", object.name),
        kind => format!("{kind}/{}", object.name),
    }
}

/// Whether `pattern` (`*` for any run of characters) matches `text` whole.
fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// One manifest to write, and the file it goes in.
struct Generated {
    /// The file's name under `--out`, without extension: the host, or `tenant-NAMESPACE`.
    file: String,
    /// Where it was found, for the file's first line.
    place: String,
    kind: String,
    name: String,
    spec: serde_json::Map<String, Value>,
    /// What its `Import` record names.
    import: String,
}

/// The kinds discovery writes manifests for.
const GENERATED: [&str; 4] = ["File", "Service", "Tenant", "Workload"];

/// Writes the manifests and Import records of what was found (Files, Services, Tenants and
/// Workloads no manifest declares, matching `select`), one file per host or namespace under
/// `out`, in the repository's syntax, secrets encrypted to its recipients; returns what it
/// says it did.
pub fn generate(loaded: &Loaded, out: &Path, found: &[Found], select: &[String]) -> Result<String> {
    let model = &loaded.checked.model;
    let root = loaded.root.as_path();
    let syntax = model.repository().map_or(Format::Yaml, |d| d.format);
    let recipients = match model.repository().map(|d| &d.resource.spec) {
        Some(Spec::Repository(r)) => r.secrets.recipients.as_slice(),
        _ => &[],
    };
    let mut taken: BTreeSet<String> = model
        .documents
        .iter()
        .map(|d| d.resource.address())
        .collect();
    let mut generated: Vec<Generated> = Vec::new();
    let mut said = String::new();
    let mut secrets_written = 0;
    let mut not_generated: BTreeMap<&str, usize> = BTreeMap::new();
    for f in found.iter().filter(|f| !f.declared) {
        if !select.is_empty()
            && !select
                .iter()
                .any(|p| matches(p, &f.address) || matches(p, &f.identity))
        {
            continue;
        }
        let mut spec = match f.object.spec.clone() {
            Some(Value::Object(spec)) if GENERATED.contains(&f.kind.as_str()) => spec,
            _ => {
                *not_generated.entry(f.kind.as_str()).or_default() += 1;
                continue;
            }
        };
        let tenant = spec
            .get("tenant")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Files and Services are instances on a host; Tenants and Workloads are not (a
        // Workload found on a swarm's manager runs anywhere on its swarm).
        let on_host = !f.host.is_empty() && matches!(f.kind.as_str(), "File" | "Service");
        let mut name = f.object.name.clone();
        if on_host && taken.contains(&format!("{}/{name}", f.kind)) {
            name = nimbus_providers::label_of(&format!("{name}-{}", f.host));
        }
        // Objects not on a host keep their names (an import never renames).
        let address = match f.kind.as_str() {
            "Workload" => format!("Workload/{tenant}/{name}"),
            _ => format!("{}/{name}", f.kind),
        };
        if taken.contains(&address) {
            said.push_str(&format!(
                "  skipped {}: {address} is declared already\n",
                f.identity
            ));
            continue;
        }
        // A swarm service's tenant has nothing of its own to import (its network comes with
        // it): it must be declared first. A namespace found is written with its Deployments.
        if f.kind == "Workload"
            && !f.host.is_empty()
            && !taken.contains(&format!("Tenant/{tenant}"))
        {
            said.push_str(&format!(
                "  skipped {address}: no Tenant/{tenant} is declared; declare it on its Cluster, then run discover again\n"
            ));
            continue;
        }
        if f.kind == "File" && !spec.contains_key("content") && f.object.secrets.is_empty() {
            said.push_str(&format!(
                "  skipped {} on {}: {}\n",
                f.identity, f.host, f.detail
            ));
            continue;
        }
        if !f.object.secrets.is_empty() && recipients.is_empty() {
            said.push_str(&format!(
                "  skipped {}: it holds a secret and the Repository names no secrets.recipients to encrypt it to\n",
                f.address
            ));
            continue;
        }
        for (field, value) in &f.object.secrets {
            let secret_name = match field.strip_prefix("env.") {
                Some(key) => nimbus_providers::label_of(&format!("{tenant}-{name}-{key}")),
                None => format!("{name}-{}", nimbus_providers::label_of(&f.host)),
            };
            if crate::secrets::secret_path(root, &secret_name).exists() {
                miette::bail!(
                    "secrets/{secret_name}.age exists: nimbus discover never overwrites a secret; move it away first"
                );
            }
            let recipients = crate::secrets::recipients(recipients)?;
            let armored = crate::secrets::encrypt(&recipients, value.as_bytes())?;
            crate::commands::secret::write_secret(root, &secret_name, &armored)?;
            secrets_written += 1;
            match field.strip_prefix("env.") {
                Some(key) => {
                    let env = spec
                        .entry("env")
                        .or_insert_with(|| Value::Object(serde_json::Map::new()));
                    env[key] = serde_json::json!({"secret": secret_name});
                }
                None => {
                    spec.insert("secret".into(), Value::String(secret_name));
                }
            }
        }
        taken.insert(address.clone());
        let (file, place, import) = if on_host {
            (
                f.host.clone(),
                format!("Host/{}", f.host),
                format!("{address}@{}", f.host),
            )
        } else {
            let namespace = match f.kind.as_str() {
                "Tenant" => name.clone(),
                _ => tenant,
            };
            let place = if f.host.is_empty() {
                format!("the Kubernetes namespace {namespace}")
            } else {
                format!("the swarm of Host/{}", f.host)
            };
            (format!("tenant-{namespace}"), place, address.clone())
        };
        let mut ordered = serde_json::Map::new();
        if on_host {
            ordered.insert("host".into(), Value::String(f.host.clone()));
        }
        ordered.extend(spec);
        generated.push(Generated {
            file,
            place,
            kind: f.kind.clone(),
            name,
            spec: ordered,
            import,
        });
    }
    let mut by_file: BTreeMap<&str, Vec<&Generated>> = BTreeMap::new();
    for g in &generated {
        by_file.entry(g.file.as_str()).or_default().push(g);
    }
    let dir = root.join(out);
    let extension = if syntax == Format::Kdl { "kdl" } else { "yaml" };
    for file in by_file.keys() {
        let path = dir.join(format!("{file}.{extension}"));
        if path.exists() {
            miette::bail!(
                "{} exists: nimbus discover never overwrites a manifest; move it away or use --out",
                path.display()
            );
        }
    }
    for (file, docs) in &by_file {
        let path = dir.join(format!("{file}.{extension}"));
        let body = match syntax {
            Format::Kdl => kdl_documents(docs),
            Format::Yaml => yaml_documents(docs),
        };
        std::fs::create_dir_all(&dir)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&path, body)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    }
    said.push_str(&format!(
        "Wrote {} manifests with their Import records in {} files under {}/{}; the next plan imports them.\n",
        generated.len(),
        by_file.len(),
        root.display(),
        out.display()
    ));
    if secrets_written > 0 {
        said.push_str(&format!(
            "{secrets_written} secrets found were encrypted under secrets/ (never written in clear).\n"
        ));
    }
    if !not_generated.is_empty() {
        let kinds: Vec<String> = not_generated
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        said.push_str(&format!(
            "No manifest was written for {} found: discovery writes Files, Services, Kubernetes namespaces and Deployments, and swarm services named TENANT_NAME (docs/import.md).\n",
            kinds.join(", ")
        ));
    }
    Ok(said)
}

/// Code points that a KDL or YAML reader takes as a line break, a byte-order mark or a change
/// of writing direction: written escaped, never as they are.
fn unsafe_in_text(c: char) -> bool {
    matches!(
        c,
        '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// A string as YAML writes it: a block literal for a text of whole lines, else double-quoted
/// (JSON's escapes are YAML's).
fn yaml_string(text: &str, indent: &str) -> String {
    let block = text.ends_with('\n')
        && !text.ends_with("\n\n")
        && !text.starts_with([' ', '\t', '\n'])
        && text
            .chars()
            .all(|c| c == '\n' || c == '\t' || !(c.is_control() || unsafe_in_text(c)));
    if block {
        let mut out = String::from("|\n");
        for line in text.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("{indent}  {line}\n"));
            }
        }
        out.pop();
        out
    } else {
        // JSON's escapes are YAML's; what JSON leaves as it is, and YAML must not, is escaped.
        let mut out = String::new();
        for c in serde_json::to_string(text).unwrap_or_default().chars() {
            if unsafe_in_text(c) {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// A value other than a string as YAML writes it: JSON's flow style, which YAML reads, with
/// what YAML must not take as it is escaped.
fn yaml_value(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if unsafe_in_text(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn yaml_documents(docs: &[&Generated]) -> String {
    let place = docs.first().map_or("", |d| d.place.as_str());
    let mut out =
        format!("# Found on {place} by `nimbus discover --generate`: review, then apply.\n");
    for doc in docs {
        out.push_str(&format!(
            "---\napiVersion: {}\nkind: {}\nmetadata:\n  name: {}\nspec:{}\n",
            nimbus_schemas::API_VERSION,
            doc.kind,
            doc.name,
            if doc.spec.is_empty() { " {}" } else { "" }
        ));
        for (key, value) in &doc.spec {
            let shown = match value {
                Value::String(s) => yaml_string(s, "  "),
                other => yaml_value(other),
            };
            out.push_str(&format!("  {key}: {shown}\n"));
        }
        out.push_str(&format!(
            "---\napiVersion: {}\nkind: Import\nspec:\n  to: {}\n",
            nimbus_schemas::API_VERSION,
            doc.import
        ));
    }
    out
}

/// A string as KDL writes it, escaped.
fn kdl_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || unsafe_in_text(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A scalar as a KDL argument or property value.
fn kdl_scalar(value: &Value) -> String {
    match value {
        Value::String(s) => kdl_string(s),
        Value::Bool(b) => format!("#{b}"),
        Value::Null => "#null".to_owned(),
        other => other.to_string(),
    }
}

/// A node name or property key: bare when KDL reads it as an identifier, else quoted.
fn kdl_key(key: &str) -> String {
    let bare = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !["true", "false", "null", "inf", "nan"].contains(&key);
    if bare {
        key.to_owned()
    } else {
        kdl_string(key)
    }
}

/// One node `name` holding `value`, by docs/manifests.md's KDL mapping: a scalar or a list
/// of scalars as arguments, a map of scalars as properties, a list of maps as `-` children, a
/// map holding maps as a children block (its keys data, kept as written).
fn kdl_node(out: &mut String, indent: &str, name: &str, value: &Value) {
    let scalar = |v: &Value| !matches!(v, Value::Object(_) | Value::Array(_));
    match value {
        Value::Array(items) if items.iter().all(scalar) => {
            let args: Vec<String> = items.iter().map(kdl_scalar).collect();
            out.push_str(&format!("{indent}{name} {}\n", args.join(" ")));
        }
        Value::Array(items) => {
            out.push_str(&format!("{indent}{name} {{\n"));
            for item in items {
                kdl_node(out, &format!("{indent}    "), "-", item);
            }
            out.push_str(&format!("{indent}}}\n"));
        }
        Value::Object(map) if map.values().all(scalar) => {
            out.push_str(&format!("{indent}{name}"));
            for (k, v) in map {
                out.push_str(&format!(
                    " {}={}",
                    kdl_key(&kebab_if(name, k)),
                    kdl_scalar(v)
                ));
            }
            out.push('\n');
        }
        Value::Object(map) => {
            out.push_str(&format!("{indent}{name} {{\n"));
            for (key, item) in map {
                kdl_node(out, &format!("{indent}    "), &kdl_key(key), item);
            }
            out.push_str(&format!("{indent}}}\n"));
        }
        other => out.push_str(&format!("{indent}{name} {}\n", kdl_scalar(other))),
    }
}

/// A list item's keys are field names (kebab-case); other maps' keys are data.
fn kebab_if(node: &str, key: &str) -> String {
    if node == "-" {
        camel_to_kebab(key)
    } else {
        key.to_owned()
    }
}

fn kdl_documents(docs: &[&Generated]) -> String {
    let place = docs.first().map_or("", |d| d.place.as_str());
    let mut out =
        format!("// Found on {place} by `nimbus discover --generate`: review, then apply.\n");
    for doc in docs {
        out.push_str(&format!(
            "{} {} {{\n",
            doc.kind.to_ascii_lowercase(),
            kdl_key(&doc.name)
        ));
        for (key, value) in &doc.spec {
            kdl_node(&mut out, "    ", &camel_to_kebab(key), value);
        }
        out.push_str(&format!(
            "}}\nimport {{\n    to {}\n}}\n",
            kdl_string(&doc.import)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_text() {
        assert!(matches("File/*", "File/etc-app@web-1"));
        assert!(matches("*@web-1", "File/etc-app@web-1"));
        assert!(matches("/etc/*/main.conf", "/etc/app/main.conf"));
        assert!(!matches("/etc/*/main.conf", "/etc/app/main.conf.bak"));
        assert!(matches("Service/legacy@web-1", "Service/legacy@web-1"));
        assert!(!matches("Service/legacy", "Service/legacy@web-1"));
    }

    #[test]
    fn strings_are_written_so_they_read_back_the_same() {
        assert_eq!(yaml_string("a\nb\n", "  "), "|\n    a\n    b");
        assert_eq!(yaml_string("no newline", "  "), "\"no newline\"");
        assert_eq!(yaml_string(" leading\n", "  "), "\" leading\\n\"");
        assert_eq!(kdl_string("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(kdl_string("a\u{2028}b"), "\"a\\u{2028}b\"");
        assert_eq!(yaml_string("a\u{feff}b\n", "  "), "\"a\\ufeffb\\n\"");
        assert_eq!(
            yaml_value(&serde_json::json!({"A": "x\u{2028}"})),
            "{\"A\":\"x\\u2028\"}"
        );
    }

    #[test]
    fn kdl_nodes_follow_the_mapping() {
        let mut out = String::new();
        let spec = serde_json::json!({
            "command": ["nginx", "-g", "daemon off;"],
            "env": {"MODE": "prod", "DB_PASS": {"secret": "shop-web-db-pass"}, "1x": "y"},
            "ports": [{"port": 80, "hostPort": 8080, "protocol": "tcp"}],
            "replicas": 2,
            "enabled": true
        });
        for (key, value) in spec.as_object().unwrap_or(&serde_json::Map::new()) {
            kdl_node(&mut out, "", &camel_to_kebab(key), value);
        }
        assert_eq!(
            out,
            "command \"nginx\" \"-g\" \"daemon off;\"\nenabled #true\nenv {\n    \"1x\" \"y\"\n    DB_PASS secret=\"shop-web-db-pass\"\n    MODE \"prod\"\n}\nports {\n    - host-port=8080 port=80 protocol=\"tcp\"\n}\nreplicas 2\n"
        );
    }
}
