//! Golden plan tests. Each folder under tests/plans/ is a case:
//! - `before/`: the repository as nimbus last applied it; state is recorded from it (every
//!   instance owned, annotations as written there). Without it, state is empty.
//! - `repo/`: the repository now (the desired state).
//! - `observed.json` (optional): what providers see, by instance address; `null` is absent.
//!   Instances not listed are observed exactly as recorded.
//! - `options.json` (optional): `environment` (as `--env`), `targets`, `allow_deletes`,
//!   `destroy`, `not_owned` (addresses
//!   recorded as not created by nimbus), `refresh: false` (nothing observed), `tainted` and
//!   `recorded_provider` (by address), `provider_rules: true` (the built-in providers' own
//!   rules rather than each kind's defaults).
//! - `expected.txt`, `expected.json`, `expected.md`: the plan, or `expected.error` when
//!   planning must fail. `NIMBUS_BLESS=1` rewrites them; review the diff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nimbus::workdir::read_working_tree;
use nimbus_planner::graph::ResourceGraph;
use nimbus_planner::instances::InstanceGraph;
use nimbus_planner::plan::{self, KindSchema, Observed, PlanInput, ProviderSchema, Record, Rules};
use serde_json::Value;

static NO_SECRETS: std::sync::LazyLock<HashMap<String, Result<String, String>>> =
    std::sync::LazyLock::new(HashMap::new);
static NO_SOURCES: std::sync::LazyLock<HashMap<String, String>> =
    std::sync::LazyLock::new(HashMap::new);

fn cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans")
}

fn load(dir: &Path, environment: Option<&str>) -> (nimbus_planner::Model, InstanceGraph) {
    let (input, _) = read_working_tree(dir).unwrap_or_else(|e| panic!("{}: {e:?}", dir.display()));
    let (model, problems) = nimbus_planner::load::load(input);
    let checked = nimbus_planner::check_in(model, problems, environment);
    assert!(
        !checked.has_errors(),
        "{}: {:#?}",
        dir.display(),
        checked.problems
    );
    let resources = ResourceGraph::build(&checked.model);
    let graph = InstanceGraph::build(&checked.model, &resources);
    (checked.model, graph)
}

static DEFAULT_RULES: std::sync::LazyLock<Rules> = std::sync::LazyLock::new(Rules::new);

/// The built-in providers' own rules (replacement fields, normalisation), as a run has them:
/// for cases whose `options.json` says `"provider_rules": true`.
static PROVIDER_RULES: std::sync::LazyLock<Rules> = std::sync::LazyLock::new(|| {
    Rules::new()
        .with("ssh", &nimbus_providers::hosts::schema())
        .with("docker", &nimbus_provider_docker::schema())
        .with("kube", &nimbus_provider_kube::schema())
});

fn input<'a>(
    records: &'a [Record],
    observed: &'a HashMap<String, Observed>,
    options: &'a Value,
    targets: &'a [String],
) -> PlanInput<'a> {
    PlanInput {
        records,
        observed,
        rules: &DEFAULT_RULES,
        state_serial: records.len() as u64,
        source_revision: None,
        source_fingerprint: "fixture".into(),
        targets,
        allow_deletes: options["allow_deletes"].as_bool().unwrap_or(false),
        destroy: options["destroy"].as_bool().unwrap_or(false),
        sources: &NO_SOURCES,
        secrets: &NO_SECRETS,
    }
}

fn compare(path: &Path, actual: &str) {
    if std::env::var_os("NIMBUS_BLESS").is_some() {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}; bless with NIMBUS_BLESS=1", path.display()));
    assert_eq!(actual, expected, "{} differs", path.display());
}

fn check(case: &str) -> Option<plan::Plan> {
    let dir = cases().join(case);
    let read_json = |name: &str| -> Value {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map_or(Value::Null, |t| {
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("{name}: {e}"))
            })
    };
    let options = read_json("options.json");
    let rules: &Rules = if options["provider_rules"] == true {
        &PROVIDER_RULES
    } else {
        &DEFAULT_RULES
    };
    let none: Vec<String> = Vec::new();
    let empty: HashMap<String, Observed> = HashMap::new();
    let environment = options["environment"].as_str();
    let mut records: Vec<Record> = Vec::new();
    let mut recorded_modules = std::collections::BTreeMap::new();
    if dir.join("before").is_dir() {
        let (model, graph) = load(&dir.join("before"), environment);
        let initial = plan::plan(
            &model,
            &graph,
            &PlanInput {
                rules,
                ..input(&[], &empty, &Value::Null, &none)
            },
        )
        .unwrap_or_else(|e| panic!("{case}/before: {e}"));
        recorded_modules = initial.modules.clone();
        let not_owned: Vec<&str> = options["not_owned"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        records = initial
            .changes
            .iter()
            .filter_map(|c| c.record())
            .map(|mut r| {
                r.owned = !not_owned.contains(&r.address.as_str());
                // A record tainted by a failed apply, or made under another provider.
                if let Some(why) = options["tainted"][&r.address].as_str() {
                    r.tainted = Some(why.to_owned());
                }
                if let Some(provider) = options["recorded_provider"][&r.address].as_str() {
                    r.provider = provider.to_owned();
                }
                r
            })
            .collect();
    }
    let mut observed: HashMap<String, Observed> = HashMap::new();
    if options["refresh"].as_bool() != Some(false) {
        for record in &records {
            observed.insert(
                record.address.clone(),
                Observed::Present(record.applied.clone()),
            );
        }
        if let Value::Object(overrides) = read_json("observed.json") {
            for (address, value) in overrides {
                observed.insert(
                    address,
                    if value.is_null() {
                        Observed::Absent
                    } else {
                        Observed::Present(value)
                    },
                );
            }
        }
    }
    let targets: Vec<String> = options["targets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let (model, graph) = load(&dir.join("repo"), environment);
    // Moves first, as the engine makes them: records at their new addresses.
    let (records, moves) = match nimbus_planner::modules::moved::plan_moves(
        &records,
        &recorded_modules,
        &model.moves,
        &nimbus_planner::modules::desired_modules(&model),
    ) {
        Ok(moved) => moved,
        Err(error) => {
            compare(&dir.join("expected.error"), &format!("{error}\n"));
            return None;
        }
    };
    let observed: HashMap<String, Observed> = observed
        .into_iter()
        .map(|(address, o)| {
            let renamed = moves
                .iter()
                .flat_map(|m| m.renames.iter())
                .find(|(old, _)| *old == address)
                .map_or(address, |(_, new)| new.clone());
            (renamed, o)
        })
        .collect();
    match plan::plan(
        &model,
        &graph,
        &PlanInput {
            rules,
            ..input(&records, &observed, &options, &targets)
        },
    ) {
        Ok(mut plan) => {
            plan.moves = moves;
            compare(
                &dir.join("expected.txt"),
                &nimbus_planner::render::text(&plan),
            );
            compare(
                &dir.join("expected.md"),
                &nimbus_planner::render::markdown(&plan),
            );
            compare(
                &dir.join("expected.json"),
                &(serde_json::to_string_pretty(&plan).unwrap_or_default() + "\n"),
            );
            Some(plan)
        }
        Err(error) => {
            compare(&dir.join("expected.error"), &format!("{error}\n"));
            None
        }
    }
}

fn actions(plan: &plan::Plan) -> Vec<(String, plan::Action)> {
    plan.changes
        .iter()
        .filter(|c| c.action.is_change())
        .map(|c| (c.address.clone(), c.action))
        .collect()
}

use nimbus_planner::plan::Action::{Create, Delete, Replace, Update};

#[test]
fn create_everything_in_dependency_order() {
    let plan = check("create").unwrap_or_else(|| panic!("no plan"));
    let order: Vec<String> = plan.changes.iter().map(|c| c.address.clone()).collect();
    let position = |a: &str| {
        order
            .iter()
            .position(|x| x == a)
            .unwrap_or_else(|| panic!("no {a} in {order:?}"))
    };
    assert!(position("Host/web-1") < position("File/motd@web-1"));
    assert!(position("Tenant/acme") < position("Workload/acme/api"));
    assert!(plan.changes.iter().all(|c| c.action == Create));
}

#[test]
fn a_converged_repository_plans_no_changes() {
    let plan = check("converged").unwrap_or_else(|| panic!("no plan"));
    assert!(!plan.has_changes());
}

#[test]
fn changes_in_git_update_in_place() {
    let plan = check("update").unwrap_or_else(|| panic!("no plan"));
    assert_eq!(
        actions(&plan),
        [
            ("File/motd@web-1".to_owned(), Update),
            ("File/motd@web-2".to_owned(), Update)
        ]
    );
}

#[test]
fn hand_edits_show_as_drift() {
    let plan = check("drift").unwrap_or_else(|| panic!("no plan"));
    let change = plan
        .changes
        .iter()
        .find(|c| c.address == "File/motd@web-2")
        .unwrap_or_else(|| panic!("no change"));
    assert_eq!(change.action, Update);
    assert!(
        change
            .reason
            .as_ref()
            .is_some_and(|r| r.to_string().contains("drift"))
    );
    let gone = plan
        .changes
        .iter()
        .find(|c| c.address == "File/motd@web-1")
        .unwrap_or_else(|| panic!("no change"));
    assert_eq!(
        (gone.action, gone.reason.as_ref().map(ToString::to_string)),
        (Create, Some("drift: deleted outside nimbus".to_owned()))
    );
}

#[test]
fn a_field_that_forces_replacement_replaces() {
    let plan = check("replace").unwrap_or_else(|| panic!("no plan"));
    assert_eq!(actions(&plan), [("VM/build-1".to_owned(), Replace)]);
}

#[test]
fn prune_deletes_only_what_nimbus_owns_and_may_delete() {
    let plan = check("prune").unwrap_or_else(|| panic!("no plan"));
    assert_eq!(actions(&plan), [("File/old@web-1".to_owned(), Delete)]);
    let kept: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == plan::Action::NoOp && c.reason.is_some())
        .map(|c| c.address.as_str())
        .collect();
    assert_eq!(kept, ["File/keep@web-1", "File/precious@web-1"]);
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| c.address == "File/adopted@web-1"),
        "not owned: never touched"
    );
}

#[test]
fn the_deletion_budget_refuses_mass_deletes() {
    assert!(check("budget").is_none());
    let plan =
        check("budget-allowed").unwrap_or_else(|| panic!("--allow-deletes lifts the budget"));
    assert_eq!(plan.count(Delete), 3);
}

#[test]
fn target_includes_what_it_depends_on() {
    let plan = check("target").unwrap_or_else(|| panic!("no plan"));
    let addresses: Vec<&str> = plan.changes.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(
        addresses,
        [
            "Host/web-1",
            "Host/web-2",
            "Cluster/prod",
            "Tenant/acme",
            "Workload/acme/api"
        ]
    );
}

#[test]
fn destroy_deletes_dependents_first() {
    let plan = check("destroy").unwrap_or_else(|| panic!("no plan"));
    let order: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == Delete)
        .map(|c| c.address.as_str())
        .collect();
    let position = |a: &str| {
        order
            .iter()
            .position(|x| *x == a)
            .unwrap_or_else(|| panic!("no {a} in {order:?}"))
    };
    assert!(position("Workload/acme/api") < position("Tenant/acme"));
    assert!(position("Tenant/acme") < position("Cluster/prod"));
    assert!(position("File/motd@web-1") < position("Host/web-1"));
    let protected = plan
        .changes
        .iter()
        .find(|c| c.address == "Host/web-2")
        .unwrap_or_else(|| panic!("no Host/web-2"));
    assert_eq!(
        protected.action,
        plan::Action::NoOp,
        "protected hosts are never destroyed"
    );
}

#[test]
fn destroying_a_target_destroys_what_depends_on_it_first() {
    let plan = check("destroy-target").unwrap_or_else(|| panic!("no plan"));
    let order: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == Delete)
        .map(|c| c.address.as_str())
        .collect();
    assert_eq!(order.last(), Some(&"Host/web-1"), "{order:?}");
    for dependent in [
        "File/motd@web-1",
        "Cluster/prod",
        "Tenant/acme",
        "Workload/acme/api",
    ] {
        assert!(
            order.contains(&dependent),
            "{dependent} depends on Host/web-1: {order:?}"
        );
    }
    assert!(
        !order.contains(&"Host/web-2") && !order.contains(&"File/motd@web-2"),
        "{order:?}"
    );
}

/// A provider's normalisation makes equivalent values equal before they are compared: what
/// its schema does not compare (a field only the target reports) is no change.
#[test]
fn normalisation_hides_equivalent_values() {
    let (model, graph) = load(&cases().join("converged/repo"), None);
    let none: Vec<String> = Vec::new();
    let empty = HashMap::new();
    let initial = plan::plan(&model, &graph, &input(&[], &empty, &Value::Null, &none))
        .unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<Record> = initial.changes.iter().filter_map(|c| c.record()).collect();
    let mut observed: HashMap<String, Observed> = records
        .iter()
        .map(|r| (r.address.clone(), Observed::Present(r.applied.clone())))
        .collect();
    if let Some(Observed::Present(motd)) = observed.get_mut("File/motd@web-1") {
        motd["inode"] = 4242.into(); // the target reports more than the spec says
    }
    let mut plain = input(&records, &observed, &Value::Null, &none);
    assert!(
        plan::plan(&model, &graph, &plain)
            .unwrap_or_else(|e| panic!("{e}"))
            .has_changes()
    );
    let file = KindSchema {
        compare_fields: Some(vec!["path".into(), "content".into(), "mode".into()]),
        digest_fields: vec!["content".into()],
        ..KindSchema::default_for(nimbus_schemas::Kind::File)
    };
    let rules = Rules::new().with(
        "ssh",
        &ProviderSchema {
            provider: "ssh".into(),
            kinds: vec![file],
        },
    );
    plain.rules = &rules;
    assert!(
        !plan::plan(&model, &graph, &plain)
            .unwrap_or_else(|e| panic!("{e}"))
            .has_changes()
    );
}

/// A field a provider calls sensitive never appears in any rendering of the plan.
#[test]
fn sensitive_values_are_redacted_everywhere() {
    let rules = Rules::new().with(
        "ssh",
        &ProviderSchema {
            provider: "ssh".into(),
            kinds: vec![KindSchema {
                sensitive_fields: vec!["content".into()],
                ..KindSchema::default_for(nimbus_schemas::Kind::File)
            }],
        },
    );
    let (before, before_graph) = load(&cases().join("update/before"), None);
    let none: Vec<String> = Vec::new();
    let empty = HashMap::new();
    let initial = plan::plan(
        &before,
        &before_graph,
        &input(&[], &empty, &Value::Null, &none),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<Record> = initial.changes.iter().filter_map(|c| c.record()).collect();
    let (model, graph) = load(&cases().join("update/repo"), None);
    let mut secret = input(&records, &empty, &Value::Null, &none);
    secret.rules = &rules;
    let plan = plan::plan(&model, &graph, &secret).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.count(Update), 2);
    let renderings = [
        nimbus_planner::render::text(&plan),
        nimbus_planner::render::markdown(&plan),
        serde_json::to_string(&plan).unwrap_or_default(),
    ];
    for rendering in &renderings {
        assert!(
            !rendering.contains("hello"),
            "a sensitive value leaked:\n{rendering}"
        );
    }
    assert!(
        renderings[0].contains("~ content: (sensitive value changed)"),
        "{}",
        renderings[0]
    );
}

#[test]
fn the_scheduler_places_by_load_keeps_what_was_placed_and_says_what_does_not_fit() {
    let plan = check("placement").unwrap_or_else(|| panic!("no plan"));
    let change = |address: &str| {
        plan.changes
            .iter()
            .find(|c| c.address == address)
            .unwrap_or_else(|| panic!("no {address}"))
    };
    let host = |address: &str| {
        change(address)
            .after
            .as_ref()
            .and_then(|a| a["host"].as_str())
            .map(str::to_owned)
    };
    // Placed on d1 before (its placement then named d1 and d3): kept there, though d2 is
    // busier now.
    assert_eq!(host("Workload/solo/kept"), Some("d1".to_owned()));
    // The busiest host that fits: d2 carries `fixed`.
    assert_eq!(host("Workload/solo/new"), Some("d2".to_owned()));
    let new = change("Workload/solo/new");
    assert_eq!(new.action, Create);
    assert_eq!(
        new.reason.as_ref().map(ToString::to_string).as_deref(),
        Some("placed on d2: fits, most loaded")
    );
    // Named by its placement: not scheduled, and it carries the host it names (so that
    // naming another host is a replace whose delete runs on this one).
    assert_eq!(host("Workload/solo/fixed"), Some("d2".to_owned()));
    assert_eq!(change("Workload/solo/fixed").reason, None);
    // Too big for every host: not planned, and each candidate says what it lacks.
    let huge = change("Workload/solo/huge");
    let error = huge.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("no matching host has room for 3 cpu"),
        "{error}"
    );
    assert!(error.contains("d1 needs 1500m cpu more"), "{error}");
    assert!(error.contains("d3: capacity not known"), "{error}");
    // Named by its placement, but larger than that host in all: not planned either.
    let toobig = change("Workload/solo/toobig");
    assert_eq!(
        toobig.error.as_deref(),
        Some(
            "tenant.yaml:29:62: cannot be placed: it asks Host/d1 for 3Gi memory, more than the 2Gi it has; lower the request or name a larger host"
        )
    );
}

/// A File and a Service whose selector stops matching a host and starts matching another:
/// deleted on the host state records them on, created on the new one.
#[test]
fn a_selector_that_moves_deletes_on_the_old_host() {
    let plan = check("selector-moves").unwrap_or_else(|| panic!("no plan"));
    let mut got = actions(&plan);
    got.sort();
    assert_eq!(
        got,
        [
            ("File/motd@db-1".to_owned(), Create),
            ("File/motd@web-1".to_owned(), Delete),
            ("Service/web@db-1".to_owned(), Create),
            ("Service/web@web-1".to_owned(), Delete),
        ]
    );
    for change in plan.changes.iter().filter(|c| c.action == Delete) {
        assert_eq!(change.host.as_deref(), Some("web-1"), "{change:?}");
    }
}

/// Regression: `runtime: cloud-hypervisor` on a Host whose recorded facts show no KVM planned
/// as a create and failed only at apply. It cannot be planned, and says why.
#[test]
fn cloud_hypervisor_on_a_host_without_kvm_is_refused_at_plan_time() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let header = "apiVersion: nimbus.dev/v1alpha1\n";
    std::fs::write(
        dir.path().join("hosts.yaml"),
        format!("{header}kind: Host\nmetadata: {{name: h1}}\nspec: {{address: 10.0.0.1}}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("vm.yaml"),
        format!("{header}kind: VM\nmetadata: {{name: fast}}\nspec:\n  host: h1\n  cpus: 1\n  memory: 256Mi\n  disk: {{size: 1Gi}}\n  runtime: cloud-hypervisor\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (model, graph) = load(dir.path(), None);
    let none: Vec<String> = Vec::new();
    let empty: HashMap<String, Observed> = HashMap::new();
    let first = plan::plan(&model, &graph, &input(&[], &empty, &Value::Null, &none))
        .unwrap_or_else(|e| panic!("{e}"));
    // The Host was read: its facts say it has no KVM.
    let mut host = first
        .changes
        .iter()
        .find(|c| c.address == "Host/h1")
        .and_then(|c| c.record())
        .unwrap_or_else(|| panic!("no Host record"));
    host.outputs = serde_json::json!({"facts": {"kvm": false}});
    let records = vec![host.clone()];
    let mut observed = HashMap::new();
    observed.insert(
        host.address.clone(),
        Observed::Present(host.applied.clone()),
    );
    let planned = plan::plan(
        &model,
        &graph,
        &input(&records, &observed, &Value::Null, &none),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let vm = planned
        .changes
        .iter()
        .find(|c| c.address == "VM/fast")
        .unwrap_or_else(|| panic!("no VM change"));
    assert!(
        vm.error
            .as_deref()
            .is_some_and(|e| e.contains("needs KVM") && e.contains("Host/h1")),
        "{vm:?}"
    );
}

/// The reason of the change of `address`.
fn reason_of(plan: &plan::Plan, address: &str) -> String {
    plan.changes
        .iter()
        .find(|c| c.address == address)
        .and_then(|c| c.reason.as_ref())
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// The taint override: an instance whose apply failed having made it is made again, whatever
/// it shows, with the first line of why.
#[test]
fn a_tainted_instance_is_replaced_with_why() {
    let plan = check("taint").unwrap_or_else(|| panic!("no plan"));
    assert_eq!(actions(&plan), [("VM/build-1".to_owned(), Replace)]);
    let reason = reason_of(&plan, "VM/build-1");
    assert!(reason.starts_with("tainted:"), "{reason}");
    assert!(reason.contains("qemu exited with status 1") && !reason.contains("more lines"));
}

/// The provider-switch override: an instance recorded under another provider is replaced
/// across providers, never planned silently under the new one.
#[test]
fn an_instance_recorded_under_another_provider_is_replaced_across() {
    let plan = check("provider-switch").unwrap_or_else(|| panic!("no plan"));
    assert_eq!(actions(&plan), [("File/motd@web-1".to_owned(), Replace)]);
    let change = plan
        .changes
        .iter()
        .find(|c| c.address == "File/motd@web-1")
        .unwrap_or_else(|| panic!("no change"));
    assert_eq!(change.previous_provider.as_deref(), Some("files-plugin"));
    assert!(reason_of(&plan, "File/motd@web-1").starts_with("provider changed"));
}

/// The protect override: a change that forces a replacement of a protected resource is not
/// carried out, and the plan says why.
#[test]
fn a_protected_resource_is_never_replaced() {
    let plan = check("protect").unwrap_or_else(|| panic!("no plan"));
    assert!(actions(&plan).is_empty(), "{:?}", actions(&plan));
    assert!(reason_of(&plan, "VM/build-1").starts_with("protected: disk.image changed"));
}

/// A host change of an instance that lives on one host is a replace (its delete runs on the
/// host state recorded).
#[test]
fn a_vm_whose_host_changes_is_replaced() {
    let plan = check("host-change").unwrap_or_else(|| panic!("no plan"));
    assert_eq!(actions(&plan), [("VM/build-1".to_owned(), Replace)]);
    let change = plan
        .changes
        .iter()
        .find(|c| c.address == "VM/build-1")
        .unwrap_or_else(|| panic!("no change"));
    assert_eq!(
        change.before.as_ref().map(|b| b["host"].clone()),
        Some("web-1".into())
    );
    assert_eq!(
        change.after.as_ref().map(|a| a["host"].clone()),
        Some("web-2".into())
    );
}

/// The VM restart pass: a change the running VM cannot take in place says it restarts it.
#[test]
fn a_vm_change_that_needs_a_restart_says_so() {
    let plan = check("vm-restart").unwrap_or_else(|| panic!("no plan"));
    assert_eq!(actions(&plan), [("VM/build-1".to_owned(), Update)]);
    assert!(
        reason_of(&plan, "VM/build-1").contains("restart"),
        "{}",
        reason_of(&plan, "VM/build-1")
    );
}

/// The kept-volumes pass: a Volume removed from git that still holds data is not deleted
/// without `--allow-deletes`; the plan says how much data and why.
#[test]
fn a_volume_with_data_is_kept_without_allow_deletes() {
    let plan = check("kept-volume").unwrap_or_else(|| panic!("no plan"));
    let change = plan
        .changes
        .iter()
        .find(|c| c.address == "Volume/acme/uploads")
        .unwrap_or_else(|| panic!("no change: {:?}", actions(&plan)));
    assert_eq!(change.action, Delete);
    let error = change.error.clone().unwrap_or_default();
    assert!(
        error.contains("holds data (4096 bytes)") && error.contains("--allow-deletes"),
        "{error}"
    );
    assert_eq!(
        plan.count(Delete),
        0,
        "a delete that is refused is not counted"
    );
}

/// A placement move: a Workload placed by a selector no longer fits the host it was placed
/// on (the host shrank), so the scheduler moves it; that is a replace (its delete runs on the
/// recorded host), saying where from and why. A Workload pinned to that host stays.
#[test]
fn a_workload_that_no_longer_fits_moves_as_a_replace() {
    let plan = check("placement-move").unwrap_or_else(|| panic!("no plan"));
    let change = plan
        .changes
        .iter()
        .find(|c| c.resource == "Workload/solo/web")
        .unwrap_or_else(|| panic!("no change: {:?}", actions(&plan)));
    assert_eq!(change.action, Replace, "{:?}", actions(&plan));
    let host = change.fields.iter().find(|f| f.path == "host");
    assert_eq!(
        host.map(|f| (f.before.clone(), f.after.clone(), f.forces_replacement)),
        Some((
            Some(serde_json::json!("d1")),
            Some(serde_json::json!("d2")),
            true
        ))
    );
    let reason = reason_of(&plan, &change.address);
    assert!(reason.contains("moved from d1"), "{reason}");
    // Pinned to d1 and fitting it still: left as it is.
    assert!(
        !actions(&plan)
            .iter()
            .any(|(a, _)| a.starts_with("Workload/solo/api")),
        "{:?}",
        actions(&plan)
    );
}

/// The confirm group: a Network change on every member, where nimbus reaches one member (c,
/// whose address is inside the overlay) through it, is applied with a confirm-or-revert timer;
/// every member's change is in one group, and the others wait for c's.
#[test]
fn a_network_nimbus_reaches_through_is_changed_as_one_confirmed_group() {
    let plan = check("confirm-group").unwrap_or_else(|| panic!("no plan"));
    let members: Vec<&plan::Change> = plan
        .changes
        .iter()
        .filter(|c| c.resource == "Network/mesh")
        .collect();
    assert_eq!(members.len(), 3, "{:?}", actions(&plan));
    let group = [
        "Network/mesh@a".to_owned(),
        "Network/mesh@b".to_owned(),
        "Network/mesh@c".to_owned(),
    ];
    for change in &members {
        assert_eq!(change.action, Update, "{}", change.address);
        let confirm = change
            .confirm
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no confirm", change.address));
        assert_eq!(confirm.through, ["c"]);
        assert_eq!(confirm.timeout_seconds, 20);
        assert_eq!(confirm.group, group);
        let waits = change.depends_on.contains(&"Network/mesh@c".to_owned());
        assert_eq!(
            waits,
            change.address != "Network/mesh@c",
            "{}",
            change.address
        );
    }
}

/// The spec a plan's change of `address` carries.
fn after_of(plan: &plan::Plan, address: &str) -> Value {
    plan.changes
        .iter()
        .find(|c| c.address == address)
        .and_then(|c| c.after.clone())
        .unwrap_or_else(|| panic!("no {address}"))
}

#[test]
fn a_module_used_three_times_gives_each_use_its_values() {
    let plan = check("module-three-uses").unwrap_or_else(|| panic!("no plan"));
    let after = |address: &str| after_of(&plan, address);
    assert_eq!(after("Workload/acme/web")["replicas"], 1, "the default");
    assert_eq!(after("Workload/globex/web")["replicas"], 3);
    assert_eq!(
        after("File/greeting-initech@web-1")["content"],
        "welcome, initech\n"
    );
    assert_eq!(
        plan.modules.get("Workload/globex/web").map(String::as_str),
        Some("module.globex")
    );
    assert!(
        plan.changes
            .iter()
            .all(|c| !c.action.is_change() || c.action == Create)
    );
}

#[test]
fn an_environment_gives_its_values_and_patches_any_field() {
    let plan = check("environment-patch").unwrap_or_else(|| panic!("no plan"));
    let after = |address: &str| after_of(&plan, address);
    assert_eq!(after("Workload/acme/web")["replicas"], 4, "env.replicas");
    assert_eq!(
        after("Workload/acme/web")["image"],
        "nginx:1.27.3",
        "patched"
    );
    assert_eq!(
        after("File/motd@web-1")["content"],
        "production: be careful\n"
    );
    assert_eq!(plan.environment.as_deref(), Some("prod"));
}

#[test]
fn a_moved_record_renames_without_destroying() {
    let plan = check("moved-rename").unwrap_or_else(|| panic!("no plan"));
    assert!(actions(&plan).is_empty(), "{:?}", actions(&plan));
    assert_eq!(plan.moves.len(), 1);
    assert_eq!(plan.moves[0].renames.len(), 2, "one per host");
    assert!(plan.has_changes(), "a move is something to apply");
}

#[test]
fn moving_into_a_module_changes_nothing_but_where_it_comes_from() {
    let plan = check("moved-into-module").unwrap_or_else(|| panic!("no plan"));
    assert!(actions(&plan).is_empty(), "{:?}", actions(&plan));
    let moved: Vec<(&str, &str)> = plan
        .moves
        .iter()
        .map(|m| (m.from.as_str(), m.to.as_str()))
        .collect();
    assert_eq!(
        moved,
        [
            ("File/issue", "module.base/File/issue"),
            ("File/motd", "module.base/File/motd")
        ]
    );
}

#[test]
fn reordering_for_each_moves_nothing() {
    let plan = check("for-each-reordered").unwrap_or_else(|| panic!("no plan"));
    assert!(!plan.has_changes(), "{:?}", actions(&plan));
    assert!(plan.moves.is_empty());
}

/// Issue 28: objects that exist where manifests declare instances, and that state does not
/// record, are refused and left alone, whether they match the manifest or not; what is
/// absent is created.
#[test]
fn objects_nimbus_did_not_make_are_refused_not_taken_over() {
    let plan = check("unmanaged").unwrap_or_else(|| panic!("no plan"));
    for address in ["File/motd@web-1", "File/motd@web-2"] {
        let change = plan
            .changes
            .iter()
            .find(|c| c.address == address)
            .unwrap_or_else(|| panic!("no {address}"));
        assert_eq!(change.action, plan::Action::NoOp, "{change:?}");
        assert!(
            change
                .error
                .as_deref()
                .is_some_and(|e| e.contains("exists, not managed")
                    && e.contains(&format!("nimbus import {address}"))),
            "{change:?}"
        );
    }
    let created: Vec<&str> = plan
        .changes
        .iter()
        .filter(|c| c.action == plan::Action::Create && c.kind == nimbus_schemas::Kind::File)
        .map(|c| c.address.as_str())
        .collect();
    assert_eq!(created, ["File/issue@web-1"]);
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| c.action == plan::Action::Update)
    );
}

/// Issue 28: an Import record turns the refusal into an import, showing what differs; an
/// import of something that does not exist is an error.
#[test]
fn an_import_record_imports_with_its_differences() {
    let plan = check("import").unwrap_or_else(|| panic!("no plan"));
    let import = |address: &str| {
        plan.changes
            .iter()
            .find(|c| c.address == address)
            .unwrap_or_else(|| panic!("no {address}"))
    };
    let same = import("File/motd@web-1");
    assert_eq!(same.action, plan::Action::Import);
    assert!(same.fields.is_empty() && same.error.is_none(), "{same:?}");
    let differs = import("File/motd@web-2");
    assert_eq!(differs.action, plan::Action::Import);
    let fields: Vec<&str> = differs.fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(fields, ["content", "mode"], "{differs:?}");
    let missing = import("File/issue@web-1");
    assert!(
        missing
            .error
            .as_deref()
            .is_some_and(|e| e.contains("nothing to import")),
        "{missing:?}"
    );
    assert_eq!(plan.count(plan::Action::Import), 2);
}
