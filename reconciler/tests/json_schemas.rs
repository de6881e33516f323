//! The JSON Schemas given to editors accept what nimbus accepts: every YAML document of
//! examples-repo and of the `nimbus init` scaffold validates against its kind's schema, and a
//! document with a typo does not.

use std::path::Path;

use nimbus_planner::tree::{Node, Value};
use nimbus_schemas::json_schema::{document_schema, reuse_schema};
use nimbus_schemas::{Kind, ReuseKind};

fn to_json(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Value::from(*f),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Seq(items) => items.iter().map(to_json).collect(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.name.clone(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// Every schema error of every YAML document of `files`, as `path: kind: error` lines.
fn schema_errors(files: &[(String, String)]) -> (usize, Vec<String>) {
    let validator = |name: &str, text: String| {
        let schema: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        (
            name.to_owned(),
            jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} schema: {e}")),
        )
    };
    let validators: Vec<(String, jsonschema::Validator)> = Kind::ALL
        .iter()
        .map(|&kind| validator(kind.as_str(), document_schema(kind)))
        .chain(
            ReuseKind::ALL
                .iter()
                .map(|&kind| validator(kind.as_str(), reuse_schema(kind))),
        )
        .collect();
    // A module's manifests hold `${{ }}` where their values go: they are checked once a use
    // fills them in, not against the schemas. Its module.yaml is.
    let modules = nimbus_planner::modules::module_dirs(files.iter().map(|(p, _)| p.as_str()));
    let mut checked = 0;
    let mut errors = Vec::new();
    for (path, text) in files {
        if nimbus_planner::modules::module_of(path, &modules).is_some()
            && !path.ends_with("/module.yaml")
        {
            continue;
        }
        for node in nimbus_planner::yaml::parse(text).unwrap_or_else(|e| panic!("{path}: {e:?}")) {
            let document = to_json(&node);
            let kind = document["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: no kind"))
                .to_owned();
            let validator = &validators
                .iter()
                .find(|(k, _)| *k == kind)
                .unwrap_or_else(|| panic!("{path}: {kind}"))
                .1;
            checked += 1;
            errors.extend(
                validator
                    .iter_errors(&document)
                    .map(|e| format!("{path}: {kind}: {e} at {}", e.instance_path())),
            );
        }
    }
    (checked, errors)
}

fn yaml_files(root: &Path, skip: &[&str]) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
        {
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if skip.iter().any(|s| relative.starts_with(s)) {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if relative.ends_with(".yaml") {
                files.push((relative, std::fs::read_to_string(&path).unwrap_or_default()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn examples_repo_validates_against_the_json_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo");
    let (checked, errors) = schema_errors(&yaml_files(&root, &["kdl"]));
    assert!(checked >= 18, "only {checked} documents checked");
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_init_scaffold_validates_against_the_json_schemas() {
    let files: Vec<(String, String)> = nimbus::scaffold::files()
        .into_iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .collect();
    let (checked, errors) = schema_errors(&files);
    assert!(checked >= 10, "only {checked} documents checked");
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_json_schemas_reject_unknown_fields_and_bad_values() {
    let text = "apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: web-1}\nspec: {adress: 10.0.0.1, port: 70000}\n";
    let (_, errors) = schema_errors(&[("bad.yaml".into(), text.into())]);
    let all = errors.join("\n");
    assert!(all.contains("adress"), "{all}");
    assert!(all.contains("70000"), "{all}");
    assert!(
        all.contains("address"),
        "the missing required field is not reported: {all}"
    );
}

/// `nimbus schemas` writes, beside every kind's schema, one per module for its Uses: the
/// examples' shop validates against its module's, and a wrong type, a value out of range or
/// an unknown input do not; a `${{ }}` reference stands for any value.
#[test]
fn a_module_s_schema_types_its_uses_values() {
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo");
    let output = crate::common::nimbus(
        &[
            "schemas",
            "--out",
            out.path().to_str().unwrap_or_default(),
            ".",
        ],
        &root,
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::common::text(&output.stderr)
    );
    assert!(out.path().join("host.json").is_file());
    assert!(out.path().join("use.json").is_file());
    let text = std::fs::read_to_string(out.path().join("modules/modules-web-service.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{e}"));
    let shop = std::fs::read_to_string(root.join("tenants/globex/shop.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let errors = |text: &str| -> Vec<String> {
        nimbus_planner::yaml::parse(text)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .iter()
            .flat_map(|node| {
                validator
                    .iter_errors(&to_json(node))
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(errors(&shop), Vec::<String>::new());
    for (from, to) in [
        ("replicas: ${{ env.shopReplicas }}", "replicas: many"),
        ("replicas: ${{ env.shopReplicas }}", "replicas: 50"),
        ("replicas: ${{ env.shopReplicas }}", "replica: 2"),
        ("module: modules/web-service", "module: modules/other"),
    ] {
        let broken = shop.replace(from, to);
        assert!(
            !errors(&broken).is_empty(),
            "{to} passed the module's schema"
        );
    }
    assert_eq!(
        errors(&shop.replace("cpu: 500m", "cpu: ${{ env.cpu }}")),
        Vec::<String>::new()
    );
}
