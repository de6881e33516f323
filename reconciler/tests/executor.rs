//! The executor against the in-memory provider: order, the parallelism bound, failure
//! isolation, retries and a clean stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus::executor::{ExecutorOptions, Outcome, Report, execute};
use nimbus::state::StateStore;
use nimbus_planner::plan::{Action, Change, Observed, Plan};
use nimbus_providers::Registry;
use nimbus_providers::memory::MemoryProvider;
use nimbus_schemas::Kind;

fn change(address: &str, depends_on: &[&str]) -> Change {
    Change {
        address: address.into(),
        resource: address.into(),
        kind: Kind::Host,
        host: None,
        provider: "memory".into(),
        previous_provider: None,
        error: None,
        action: Action::Create,
        before: None,
        after: Some(serde_json::json!({"address": address})),
        fields: Vec::new(),
        reason: None,
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
        protected: false,
        keep_on_removal: false,
        restart_for: Vec::new(),
        confirm: None,
    }
}

fn plan(changes: Vec<Change>) -> Plan {
    Plan {
        format_version: 1,
        source_revision: None,
        source_fingerprint: String::new(),
        state_serial: 0,
        observed_fingerprint: String::new(),
        notes: Vec::new(),
        changes,
        unobserved: Vec::new(),
        moves: Vec::new(),
        modules: Default::default(),
        environment: None,
    }
}

struct Bed {
    _dir: tempfile::TempDir,
    state: Arc<Mutex<StateStore>>,
    run: i64,
}

fn bed() -> Bed {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = StateStore::open(dir.path().join("state.db")).unwrap_or_else(|e| panic!("{e}"));
    let run = store
        .begin_run("test", None)
        .unwrap_or_else(|e| panic!("{e}"));
    Bed {
        _dir: dir,
        state: Arc::new(Mutex::new(store)),
        run,
    }
}

fn options(parallelism: usize) -> ExecutorOptions {
    ExecutorOptions {
        parallelism,
        retries: 3,
        backoff: Duration::from_millis(1),
        progress: nimbus::executor::Progress::Quiet,
        ..ExecutorOptions::default()
    }
}

fn recorded(bed: &Bed) -> Vec<String> {
    let store = bed.state.lock().unwrap_or_else(|e| e.into_inner());
    store
        .records()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.address)
        .collect()
}

fn applied_in_order(bed: &Bed) -> Vec<String> {
    let store = bed.state.lock().unwrap_or_else(|e| e.into_inner());
    let history = store.history().unwrap_or_default();
    history
        .last()
        .map(|run| {
            run.results
                .iter()
                .filter(|r| r.outcome == "applied")
                .map(|r| r.address.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn never() -> std::future::Pending<()> {
    std::future::pending()
}

/// Executes `plan` on the bed's state with up to `parallelism` changes at once, never stopped.
async fn run(bed: &Bed, plan: &Plan, registry: &Registry, parallelism: usize) -> Report {
    execute(
        plan,
        registry,
        bed.state.clone(),
        bed.run,
        &options(parallelism),
        never(),
    )
    .await
}

#[tokio::test]
async fn dependencies_apply_first() {
    let bed = bed();
    let provider = Arc::new(MemoryProvider::new().with_delay(Duration::from_millis(5)));
    let registry = Registry::new().with(provider.clone());
    let plan = plan(vec![
        change("Host/c", &["Host/b"]),
        change("Host/b", &["Host/a"]),
        change("Host/a", &[]),
        change("Host/x", &[]),
    ]);
    let report = run(&bed, &plan, &registry, 4).await;
    assert!(report.succeeded(), "{}", report.summary());
    let order = applied_in_order(&bed);
    let position = |a: &str| {
        order
            .iter()
            .position(|x| x == a)
            .unwrap_or_else(|| panic!("{a} not applied: {order:?}"))
    };
    assert!(
        position("Host/a") < position("Host/b") && position("Host/b") < position("Host/c"),
        "{order:?}"
    );
    assert_eq!(provider.len(), 4);
}

#[tokio::test]
async fn parallelism_bounds_changes_in_flight() {
    let bed = bed();
    let provider = Arc::new(MemoryProvider::new().with_delay(Duration::from_millis(20)));
    let registry = Registry::new().with(provider.clone());
    let changes = (0..24)
        .map(|i| change(&format!("Host/h{i}"), &[]))
        .collect();
    let report = run(&bed, &plan(changes), &registry, 3).await;
    assert!(report.succeeded());
    assert_eq!(
        provider.peak_in_flight(),
        3,
        "the bound is reached and never passed"
    );
}

#[tokio::test]
async fn a_failure_skips_only_its_dependents() {
    let bed = bed();
    let provider = Arc::new(MemoryProvider::new());
    provider.fail("Host/b");
    let registry = Registry::new().with(provider.clone());
    let plan = plan(vec![
        change("Host/a", &[]),
        change("Host/b", &["Host/a"]),
        change("Host/c", &["Host/b"]),
        change("Host/d", &["Host/c"]),
        change("Host/x", &[]),
    ]);
    let report = run(&bed, &plan, &registry, 2).await;
    assert!(!report.succeeded());
    let outcome = |a: &str| {
        report
            .results
            .iter()
            .find(|r| r.address == a)
            .map(|r| r.outcome.clone())
            .unwrap_or_else(|| panic!("{a}"))
    };
    assert_eq!(outcome("Host/a"), Outcome::Applied);
    assert!(matches!(outcome("Host/b"), Outcome::Failed(_)));
    assert_eq!(
        outcome("Host/c"),
        Outcome::Skipped("Host/b did not apply".into())
    );
    assert_eq!(
        outcome("Host/d"),
        Outcome::Skipped("Host/c did not apply".into())
    );
    assert_eq!(outcome("Host/x"), Outcome::Applied);
    assert_eq!(recorded(&bed), ["Host/a", "Host/x"]);
    let summary = report.summary();
    assert!(
        summary.contains("2 applied, 1 failed, 2 skipped")
            && summary.contains("skipped  Host/c: Host/b did not apply"),
        "{summary}"
    );
}

#[tokio::test]
async fn a_create_that_failed_having_made_its_instance_keeps_it_tainted() {
    let bed = bed();
    let provider = Arc::new(MemoryProvider::new());
    // `made` fails after its instance came to be (as a Deployment whose rollout fails);
    // `refused` fails with nothing made.
    provider.fail("Host/made");
    provider.set(
        "Host/made",
        Some(serde_json::json!({"address": "Host/made"})),
    );
    provider.fail("Host/refused");
    let registry = Registry::new().with(provider.clone());
    let plan = plan(vec![change("Host/made", &[]), change("Host/refused", &[])]);
    let report = run(&bed, &plan, &registry, 2).await;
    assert!(!report.succeeded());
    let store = bed.state.lock().unwrap_or_else(|e| e.into_inner());
    let records = store.records().unwrap_or_else(|e| panic!("{e}"));
    let addresses: Vec<&str> = records.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addresses, ["Host/made"], "only what was made is kept");
    assert_eq!(
        records[0].tainted.as_deref(),
        Some("Host/made failed (injected)")
    );
    assert!(records[0].owned);
    // The run's results say it failed, both of them.
    let results = store.run_results(bed.run).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        results.iter().filter(|r| r.outcome == "failed").count(),
        2,
        "{results:?}"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_with_a_bound() {
    let bed = bed();
    let provider = Arc::new(MemoryProvider::new());
    provider.fail_transiently("Host/flaky", 2);
    provider.fail_transiently("Host/down", 10);
    let registry = Registry::new().with(provider.clone());
    let plan = plan(vec![change("Host/flaky", &[]), change("Host/down", &[])]);
    let report = run(&bed, &plan, &registry, 2).await;
    let result = |a: &str| {
        report
            .results
            .iter()
            .find(|r| r.address == a)
            .cloned()
            .unwrap_or_else(|| panic!("{a}"))
    };
    assert_eq!(
        (result("Host/flaky").outcome, result("Host/flaky").attempts),
        (Outcome::Applied, 3)
    );
    let down = result("Host/down");
    assert_eq!(down.attempts, 4, "one attempt and three retries");
    assert!(
        matches!(&down.outcome, Outcome::Failed(reason) if reason.contains("gave up after 4 attempts")),
        "{:?}",
        down.outcome
    );
}

#[tokio::test]
async fn stopping_lets_changes_in_flight_finish_and_starts_nothing_new() {
    let bed = bed();
    let provider = Arc::new(MemoryProvider::new().with_delay(Duration::from_millis(200)));
    let registry = Registry::new().with(provider.clone());
    let changes = (0..10)
        .map(|i| change(&format!("Host/h{i}"), &[]))
        .collect();
    let shutdown = tokio::time::sleep(Duration::from_millis(50));
    let report = execute(
        &plan(changes),
        &registry,
        bed.state.clone(),
        bed.run,
        &options(2),
        shutdown,
    )
    .await;
    assert!(report.interrupted);
    let applied = report.count(|o| *o == Outcome::Applied);
    assert_eq!(applied, 2, "the two in flight finish");
    assert_eq!(report.count(|o| *o == Outcome::NotStarted), 8);
    assert_eq!(provider.applies(), 2);
    assert_eq!(recorded(&bed).len(), 2, "what was applied is recorded");
    let store = bed.state.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        store.intents().unwrap_or_default().is_empty(),
        "no change is left half-recorded"
    );
}

/// An apply killed between the provider's change and the state write leaves an intent; the
/// next run sees the change took effect and records it instead of doing it again.
#[tokio::test]
async fn an_interrupted_change_that_took_effect_is_recorded_not_repeated() {
    let bed = bed();
    let provider = Arc::new(MemoryProvider::new());
    let registry = Registry::new().with(provider.clone());
    let done = change("Host/done", &[]);
    let lost = change("Host/lost", &[]);
    {
        let store = bed.state.lock().unwrap_or_else(|e| e.into_inner());
        store
            .intend(bed.run, &done)
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .intend(bed.run, &lost)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    provider.set("Host/done", done.after.clone());
    let notes = nimbus::ops::recover(&bed.state, &registry)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(recorded(&bed), ["Host/done"]);
    let store = bed.state.lock().unwrap_or_else(|e| e.into_inner());
    assert!(store.intents().unwrap_or_default().is_empty());
    assert_eq!(provider.applies(), 0, "nothing was applied again");
}

/// Observation is batched per target: one call per host, not one per instance.
#[tokio::test]
async fn observation_is_one_call_per_target() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo");
    let (input, _) = nimbus::workdir::read_working_tree(&repo).unwrap_or_else(|e| panic!("{e:?}"));
    let checked = nimbus_planner::check(input);
    let resources = nimbus_planner::graph::ResourceGraph::build(&checked.model);
    let mut graph = nimbus_planner::instances::InstanceGraph::build(&checked.model, &resources);
    for instance in &mut graph.instances {
        instance.provider = "memory".into();
    }
    let provider = Arc::new(MemoryProvider::new());
    let registry = Registry::new().with(provider.clone());
    let resolution = nimbus_planner::resolve::resolve(
        &checked.model,
        &graph,
        &nimbus_planner::resolve::ResolveInput {
            records: &[],
            sources: &Default::default(),
            secrets: &Default::default(),
        },
    );
    let observed = nimbus::executor::observe(&resolution, &graph, &[], &registry).await;
    assert_eq!(observed.len(), graph.instances.len());
    assert!(
        observed
            .values()
            .all(|o| !matches!(o, Observed::Unknown(_))),
        "{observed:?}"
    );
    // One batch per host (its Host and its per-host instances), plus one for the instances
    // that are not per host.
    assert_eq!(provider.observe_calls(), 4);
}

/// A provider that delivers secret values and remembers the File content it was given.
struct Delivering {
    received: Mutex<Vec<serde_json::Value>>,
}

impl nimbus_providers::Provider for Delivering {
    fn name(&self) -> &str {
        "delivering"
    }
    fn describe(&self) -> nimbus_providers::ProviderSchema {
        nimbus_providers::ProviderSchema {
            provider: "delivering".into(),
            kinds: vec![nimbus_providers::KindSchema {
                delivers_secrets: true,
                ..nimbus_providers::KindSchema::default_for(Kind::File)
            }],
        }
    }
    fn observe<'a>(
        &'a self,
        _target: Option<&'a str>,
        _batch: &'a [nimbus_providers::ObserveRequest],
    ) -> nimbus_providers::BoxFuture<
        'a,
        Result<Vec<(String, nimbus_planner::plan::Observed)>, nimbus_providers::ProviderError>,
    > {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn apply<'a>(
        &'a self,
        change: &'a Change,
        _cancel: &'a nimbus_providers::Cancel,
    ) -> nimbus_providers::BoxFuture<
        'a,
        Result<nimbus_providers::Applied, nimbus_providers::ProviderError>,
    > {
        Box::pin(async move {
            if let Some(after) = &change.after {
                self.received
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(after["content"].clone());
            }
            Ok(nimbus_providers::Applied::default())
        })
    }
}

fn secret_file(address: &str, secret: &str) -> Change {
    Change {
        kind: Kind::File,
        provider: "delivering".into(),
        after: Some(serde_json::json!({
            "path": "/etc/p", "secret": secret,
            "content": {"fingerprint": "hmac-sha256:00"}
        })),
        ..change(address, &[])
    }
}

/// A secret's value reaches the provider that delivers it, inside that one call; state keeps
/// the reference and fingerprint. A secret that could not be decrypted fails its instance
/// alone, with the reason.
#[tokio::test]
async fn secret_values_reach_only_the_delivering_call() {
    let bed = bed();
    let provider = Arc::new(Delivering {
        received: Mutex::new(Vec::new()),
    });
    let registry = Registry::new().with(provider.clone());
    let mut values = nimbus::executor::SecretValues::new();
    values.insert(
        "db".into(),
        Ok(nimbus::secrets::Plaintext::new(b"pa55-value".to_vec())),
    );
    values.insert("gone".into(), Err("secret `gone`: no age identity".into()));
    let options = ExecutorOptions {
        secrets: Arc::new(values),
        ..options(2)
    };
    let plan = plan(vec![
        secret_file("File/a@h", "db"),
        secret_file("File/b@h", "gone"),
    ]);
    let report = execute(
        &plan,
        &registry,
        bed.state.clone(),
        bed.run,
        &options,
        never(),
    )
    .await;
    let outcome_of = |address: &str| {
        report
            .results
            .iter()
            .find(|r| r.address == address)
            .map(|r| r.outcome.clone())
    };
    assert_eq!(
        outcome_of("File/a@h"),
        Some(Outcome::Applied),
        "{}",
        report.summary()
    );
    assert_eq!(
        outcome_of("File/b@h"),
        Some(Outcome::Failed("secret `gone`: no age identity".into()))
    );
    assert_eq!(
        *provider.received.lock().unwrap_or_else(|e| e.into_inner()),
        [serde_json::json!("pa55-value")]
    );
    let store = bed.state.lock().unwrap_or_else(|e| e.into_inner());
    let records = serde_json::to_string(&store.records().unwrap_or_default()).unwrap_or_default();
    assert!(records.contains("hmac-sha256:00"), "{records}");
    assert!(!records.contains("pa55"), "{records}");
}
