//! examples-repo is valid, and its KDL twin loads to the same model.

use std::path::{Path, PathBuf};

use nimbus::workdir::read_working_tree;
use nimbus_schemas::Resource;

fn examples_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo")
}

fn load(dir: &Path) -> nimbus_planner::Checked {
    let (input, invalid) =
        read_working_tree(dir).unwrap_or_else(|e| panic!("cannot read {}: {e:?}", dir.display()));
    assert!(
        invalid.is_empty(),
        "invalid .nimbusignore patterns: {invalid:?}"
    );
    nimbus_planner::check(input)
}

fn resources(checked: &nimbus_planner::Checked) -> Vec<Resource> {
    let mut resources: Vec<Resource> = checked
        .model
        .documents
        .iter()
        .map(|d| d.resource.clone())
        .collect();
    resources.sort_by_key(Resource::address);
    resources
}

#[test]
fn examples_repo_is_valid_with_no_warnings() {
    let checked = load(&examples_repo());
    let messages: Vec<String> = checked
        .problems
        .iter()
        .map(|p| p.location(&checked.model.sources) + " " + &p.message)
        .collect();
    assert!(
        messages.is_empty(),
        "problems in examples-repo: {messages:#?}"
    );
    let kinds: std::collections::BTreeSet<&str> = checked
        .model
        .documents
        .iter()
        .map(|d| d.resource.kind.as_str())
        .collect();
    for kind in [
        "Repository",
        "Host",
        "File",
        "Service",
        "Network",
        "Cluster",
        "Tenant",
        "Workload",
        "VM",
        "Volume",
    ] {
        assert!(kinds.contains(kind), "examples-repo has no {kind}");
    }
}

#[test]
fn kdl_twin_is_not_loaded_with_the_yaml_repository() {
    let checked = load(&examples_repo());
    let paths: Vec<&str> = (0..checked.model.sources.len())
        .map(|i| checked.model.sources.path(i))
        .collect();
    assert!(paths.iter().all(|p| p.ends_with(".yaml")), "{paths:?}");
}

#[test]
fn yaml_and_kdl_load_to_the_same_model() {
    let yaml = load(&examples_repo());
    let kdl = load(&examples_repo().join("kdl"));
    assert!(
        kdl.problems.is_empty(),
        "problems in the KDL twin: {:#?}",
        kdl.problems
    );
    let (yaml, kdl) = (resources(&yaml), resources(&kdl));
    assert_eq!(yaml.len(), kdl.len());
    for (y, k) in yaml.iter().zip(&kdl) {
        assert_eq!(y, k, "{} differs between YAML and KDL", y.address());
    }
}

/// Every kind's YAML example in docs/manifests.md is followed by its KDL twin; each pair must
/// load to the same resource, so the reference cannot drift from the loader.
#[test]
fn every_yaml_and_kdl_pair_in_the_manifest_reference_agrees() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/manifests.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reference = text
        .split("\n## Kinds")
        .nth(1)
        .unwrap_or_else(|| panic!("no Kinds section"));
    let mut blocks: Vec<(&str, String)> = Vec::new();
    let mut lines = reference.lines();
    while let Some(line) = lines.next() {
        if let Some(language) = line
            .strip_prefix("```")
            .filter(|l| *l == "yaml" || *l == "kdl")
        {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((language, body.join("\n") + "\n"));
        }
    }
    assert_eq!(
        blocks.len(),
        20,
        "expected a YAML and a KDL example for each of the 10 kinds"
    );
    for pair in blocks.chunks(2) {
        let [(yaml_language, yaml), (kdl_language, kdl)] = pair else {
            panic!("unpaired example")
        };
        assert_eq!((*yaml_language, *kdl_language), ("yaml", "kdl"));
        let load_one = |path: &str, text: &str| {
            let input = nimbus_planner::RepositoryInput {
                manifests: vec![nimbus_planner::InputFile {
                    path: path.into(),
                    bytes: text.as_bytes().to_vec(),
                }],
                other_paths: Default::default(),
                outside_links: Vec::new(),
            };
            let (model, problems) = nimbus_planner::load::load(input);
            assert!(
                problems.is_empty(),
                "{path} example does not load:\n{text}\n{problems:#?}"
            );
            model
                .documents
                .into_iter()
                .map(|d| d.resource)
                .next()
                .unwrap_or_else(|| panic!("no resource in\n{text}"))
        };
        let (from_yaml, from_kdl) = (load_one("example.yaml", yaml), load_one("example.kdl", kdl));
        assert_eq!(
            from_yaml, from_kdl,
            "the YAML and KDL examples of {} differ",
            from_yaml.kind
        );
    }
}

/// SPEC §2's Host, written both ways, is one and the same resource.
#[test]
fn the_specs_host_example_is_the_same_in_yaml_and_kdl() {
    let yaml = r#"apiVersion: nimbus.dev/v1alpha1
kind: Host
metadata:
  name: web-1            # DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 chars
  labels: {role: web, zone: a}
spec:
  address: 192.0.2.10
  port: 22
  user: root
  hostKey: ssh-ed25519 AAAAC3Nz...   # pinned; no trust-on-first-use unless the Repository allows it
"#;
    let kdl = r#"host web-1 {
    labels role=web zone=a
    address "192.0.2.10"
    user root
    host-key "ssh-ed25519 AAAAC3Nz..."
}
"#;
    let input = nimbus_planner::RepositoryInput {
        manifests: vec![
            nimbus_planner::InputFile {
                path: "a/hosts.yaml".into(),
                bytes: yaml.as_bytes().to_vec(),
            },
            nimbus_planner::InputFile {
                path: "b/hosts.kdl".into(),
                bytes: kdl.as_bytes().to_vec(),
            },
        ],
        other_paths: Default::default(),
        outside_links: Vec::new(),
    };
    let (model, problems) = nimbus_planner::load::load(input);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(model.documents.len(), 2);
    assert_eq!(model.documents[0].resource, model.documents[1].resource);
    // Both declare Host/web-1, so validating them together finds the duplicate in both files.
    let problems = nimbus_planner::validate::validate(&model);
    let duplicate = problems
        .iter()
        .find(|p| p.code == "nimbus::address::duplicate");
    let duplicate = duplicate.unwrap_or_else(|| panic!("no duplicate reported: {problems:#?}"));
    let json = duplicate.to_json(&model.sources);
    assert_eq!(
        (json.file.as_str(), json.line, json.column),
        ("b/hosts.kdl", 1, 6)
    );
    assert_eq!(
        (
            json.labels[0].file.as_str(),
            json.labels[0].line,
            json.labels[0].column
        ),
        ("a/hosts.yaml", 4, 9)
    );
}

/// examples-repo uses a module and two environments: each validates, and each plans (against
/// the in-memory provider, from an empty state) with its own values and patches.
#[test]
fn examples_repo_validates_and_plans_in_each_environment() {
    for (environment, replicas, image) in [
        ("production", 2, "registry.globex.example/shop:1.8"),
        ("staging", 1, "registry.globex.example/shop:1.9-rc1"),
    ] {
        for dir in [examples_repo(), examples_repo().join("kdl")] {
            let output = crate::common::nimbus(&["validate", "--env", environment, "."], &dir);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{environment} {}: {}",
                dir.display(),
                crate::common::text(&output.stderr)
            );
        }
        let memory = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let output = crate::common::nimbus_with(
            &["plan", "--env", environment, "--format", "json", "."],
            &examples_repo(),
            &[(
                "NIMBUS_MEMORY_PROVIDER",
                memory.path().to_str().unwrap_or_default(),
            )],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{environment}: {}",
            crate::common::text(&output.stderr)
        );
        let plan: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan["environment"], environment);
        assert_eq!(plan["modules"]["Workload/globex/shop"], "module.shop");
        let shop = plan["changes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["address"] == "Workload/globex/shop"))
            .unwrap_or_else(|| panic!("no shop in {plan}"));
        assert_eq!(shop["action"], "create");
        assert_eq!(shop["after"]["replicas"], replicas, "{environment}");
        assert_eq!(shop["after"]["image"], image, "{environment}");
    }
}
