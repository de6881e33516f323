//! examples-repo is valid, and its KDL twin loads to the same model.

use std::path::{Path, PathBuf};

use nimbus::workdir::read_working_tree;
use nimbus_schemas::Resource;

fn examples_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo")
}

fn load(dir: &Path) -> nimbus_planner::Checked {
    let (input, invalid) = read_working_tree(dir).unwrap_or_else(|e| panic!("cannot read {}: {e:?}", dir.display()));
    assert!(invalid.is_empty(), "invalid .nimbusignore patterns: {invalid:?}");
    nimbus_planner::check(input)
}

fn resources(checked: &nimbus_planner::Checked) -> Vec<Resource> {
    let mut resources: Vec<Resource> = checked.model.documents.iter().map(|d| d.resource.clone()).collect();
    resources.sort_by_key(Resource::address);
    resources
}

#[test]
fn examples_repo_is_valid_with_no_warnings() {
    let checked = load(&examples_repo());
    let messages: Vec<String> = checked.problems.iter().map(|p| p.location(&checked.model.sources) + " " + &p.message).collect();
    assert!(messages.is_empty(), "problems in examples-repo: {messages:#?}");
    let kinds: std::collections::BTreeSet<&str> =
        checked.model.documents.iter().map(|d| d.resource.kind.as_str()).collect();
    for kind in ["Repository", "Host", "File", "Service", "Network", "Cluster", "Tenant", "Workload", "VM", "Volume"] {
        assert!(kinds.contains(kind), "examples-repo has no {kind}");
    }
}

#[test]
fn kdl_twin_is_not_loaded_with_the_yaml_repository() {
    let checked = load(&examples_repo());
    let paths: Vec<&str> = (0..checked.model.sources.len()).map(|i| checked.model.sources.path(i)).collect();
    assert!(paths.iter().all(|p| p.ends_with(".yaml")), "{paths:?}");
}

#[test]
fn yaml_and_kdl_load_to_the_same_model() {
    let yaml = load(&examples_repo());
    let kdl = load(&examples_repo().join("kdl"));
    assert!(kdl.problems.is_empty(), "problems in the KDL twin: {:#?}", kdl.problems);
    let (yaml, kdl) = (resources(&yaml), resources(&kdl));
    assert_eq!(yaml.len(), kdl.len());
    for (y, k) in yaml.iter().zip(&kdl) {
        assert_eq!(y, k, "{} differs between YAML and KDL", y.address());
    }
}
