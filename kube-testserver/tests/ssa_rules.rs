//! The server-side apply rules on their own, case by case from the Kubernetes documentation
//! ("Server-Side Apply": field management, conflicts, merge strategy, removing fields).

use nimbus_kube_testserver::ssa::{FieldSet, Managed, Step, apply, update, value_at};
use serde_json::{Value, json};

fn deployment(replicas: u64, env: &[(&str, &str)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "acme", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1", "env": env}]}
            }
        }
    })
}

fn field(path: &[&str]) -> Vec<Step> {
    path.iter().map(|s| Step::Field((*s).to_owned())).collect()
}

fn owners(managed: &[Managed], path: &[Step]) -> Vec<String> {
    managed
        .iter()
        .filter(|m| m.fields.contains(path))
        .map(|m| format!("{}/{}", m.manager, m.operation))
        .collect()
}

#[test]
fn an_apply_creates_and_owns_what_it_names_and_a_second_one_changes_nothing() {
    let config = deployment(2, &[("MODE", "a")]);
    let (object, managed) =
        apply(None, &[], &config, "nimbus", false).unwrap_or_else(|c| panic!("{c:?}"));
    assert_eq!(object, config);
    assert_eq!(
        owners(&managed, &field(&["spec", "replicas"])),
        ["nimbus/Apply"]
    );
    let again = apply(Some(&object), &managed, &config, "nimbus", false)
        .unwrap_or_else(|c| panic!("{c:?}"));
    assert_eq!(again.0, object);
    assert_eq!(again.1, managed);
}

#[test]
fn an_update_takes_the_fields_it_changes_and_an_apply_then_conflicts_unless_forced() {
    let config = deployment(2, &[]);
    let (object, managed) =
        apply(None, &[], &config, "nimbus", false).unwrap_or_else(|c| panic!("{c:?}"));
    // `kubectl scale`: an update of replicas by another manager.
    let mut scaled = object.clone();
    scaled["spec"]["replicas"] = json!(5);
    let managed = update(Some(&object), &scaled, &managed, "kubectl");
    let replicas = field(&["spec", "replicas"]);
    assert_eq!(owners(&managed, &replicas), ["kubectl/Update"]);
    // nimbus's apply of 2 now conflicts with kubectl on .spec.replicas.
    let conflicts = apply(Some(&scaled), &managed, &config, "nimbus", false)
        .err()
        .unwrap_or_else(|| panic!("no conflict"));
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].manager, "kubectl");
    assert_eq!(conflicts[0].field, ".spec.replicas");
    // Forced: the value and the field are nimbus's again.
    let (forced, managed) =
        apply(Some(&scaled), &managed, &config, "nimbus", true).unwrap_or_else(|c| panic!("{c:?}"));
    assert_eq!(forced["spec"]["replicas"], 2);
    assert_eq!(owners(&managed, &replicas), ["nimbus/Apply"]);
}

#[test]
fn a_field_another_manager_adds_is_neither_a_conflict_nor_removed() {
    let config = deployment(2, &[]);
    let (object, managed) =
        apply(None, &[], &config, "nimbus", false).unwrap_or_else(|c| panic!("{c:?}"));
    let mut labelled = object.clone();
    labelled["metadata"]["labels"]["team"] = json!("storage");
    let managed = update(Some(&object), &labelled, &managed, "kubectl-label");
    let (after, _) = apply(Some(&labelled), &managed, &config, "nimbus", false)
        .unwrap_or_else(|c| panic!("{c:?}"));
    assert_eq!(after["metadata"]["labels"]["team"], "storage");
}

#[test]
fn a_field_left_out_of_the_next_apply_is_removed_unless_someone_else_owns_it() {
    let first = deployment(2, &[("MODE", "a"), ("DEBUG", "1")]);
    let (object, managed) =
        apply(None, &[], &first, "nimbus", false).unwrap_or_else(|c| panic!("{c:?}"));
    // Another applier names DEBUG with the same value: it shares the field.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "DEBUG", "value": "1"}]}]}}}});
    let (object, managed) = apply(Some(&object), &managed, &other, "debugger", false)
        .unwrap_or_else(|c| panic!("{c:?}"));
    // nimbus leaves both out: MODE goes; DEBUG stays, the debugger's.
    let second = deployment(2, &[]);
    let (after, _) = apply(Some(&object), &managed, &second, "nimbus", false)
        .unwrap_or_else(|c| panic!("{c:?}"));
    let env = &after["spec"]["template"]["spec"]["containers"][0]["env"];
    let names: Vec<&str> = env
        .as_array()
        .map(|items| items.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["DEBUG"], "{env}");
}

#[test]
fn associative_lists_merge_by_key_and_keep_other_managers_items() {
    let config = deployment(1, &[]);
    let (object, managed) =
        apply(None, &[], &config, "nimbus", false).unwrap_or_else(|c| panic!("{c:?}"));
    // A sidecar injected by another manager's apply: a second container by name.
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}}});
    let (object, managed) =
        apply(Some(&object), &managed, &sidecar, "mesh", false).unwrap_or_else(|c| panic!("{c:?}"));
    // nimbus changes its container's image: merged into its item, the sidecar kept.
    let mut newer = deployment(1, &[]);
    newer["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let (after, managed) =
        apply(Some(&object), &managed, &newer, "nimbus", false).unwrap_or_else(|c| panic!("{c:?}"));
    let containers = after["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(containers.len(), 2, "{containers:?}");
    assert_eq!(containers[0]["image"], "nginx:2");
    assert_eq!(containers[1]["name"], "proxy");
    let image = [
        field(&["spec", "template", "spec", "containers"]),
        vec![
            Step::Key(r#"{"name":"proxy"}"#.to_owned()),
            Step::Field("image".to_owned()),
        ],
    ]
    .concat();
    assert_eq!(owners(&managed, &image), ["mesh/Apply"]);
    assert_eq!(value_at(&after, &image), Some(&json!("envoy:1")));
}

#[test]
fn field_sets_read_and_write_fields_v1() {
    let set = FieldSet::of(&deployment(1, &[("MODE", "a")]));
    let written = set.to_json();
    let text = written.to_string();
    assert!(text.contains(r#""f:spec":{"#), "{text}");
    assert!(text.contains(r#""k:{\"name\":\"web\"}":{".":{}"#), "{text}");
    assert_eq!(FieldSet::from_json(&written), set);
}
