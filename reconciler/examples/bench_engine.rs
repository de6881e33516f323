//! Engine benchmark (issue 3): plan and apply figures against the in-memory provider.
//!
//! usage: cargo run --release -p nimbus --example bench_engine -- SIZE [REPO]
//! Generates REPO with bench/gen_repo.py when it does not exist, then prints:
//! - plan of SIZE converged resources (load + check + graph + diff + text render);
//! - the same with one resource changed;
//! - apply of SIZE no-cost changes (executor + SQLite state), per change;
//! - peak memory of the process (VmHWM);
//! - the reconcile daemon's status page (overview and SVG) of every instance (issue 15);
//! - with `NIMBUS_BENCH_PG_URL`, state in SQLite and in PostgreSQL in the same run (issue 26):
//!   apply of every instance, and a plan made from what the state records (read, then plan).
//!
//! bench/engine.sh runs it for 10,000 and 100,000 resources; bench/state.sh with a
//! PostgreSQL of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus::executor::{ExecutorOptions, execute};
use nimbus::state::{StateLocation, StateStore, postgres::Target};
use nimbus::workdir::read_working_tree;
use nimbus_planner::graph::ResourceGraph;
use nimbus_planner::instances::InstanceGraph;
use nimbus_planner::plan::{self, Observed, PlanInput, Record, Rules};
use nimbus_providers::Registry;
use nimbus_providers::memory::MemoryProvider;

static NO_SECRETS: std::sync::LazyLock<HashMap<String, Result<String, String>>> =
    std::sync::LazyLock::new(HashMap::new);
static NO_SOURCES: std::sync::LazyLock<HashMap<String, String>> =
    std::sync::LazyLock::new(HashMap::new);

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn plan_once(
    repo: &Path,
    records: &[Record],
    observed: &HashMap<String, Observed>,
) -> (Duration, plan::Plan, usize) {
    let start = Instant::now();
    let (input, _) = read_working_tree(repo).unwrap_or_else(|e| panic!("{e:?}"));
    let checked = nimbus_planner::check(input);
    assert!(!checked.has_errors(), "the generated repository has errors");
    let resources = ResourceGraph::build(&checked.model);
    let mut graph = InstanceGraph::build(&checked.model, &resources);
    // The in-memory provider, asked for explicitly (as NIMBUS_MEMORY_PROVIDER does).
    for instance in &mut graph.instances {
        instance.provider = nimbus_planner::rules::MEMORY.to_owned();
    }
    let none: Vec<String> = Vec::new();
    let rules = Rules::new();
    let input = PlanInput {
        records,
        observed,
        rules: &rules,
        state_serial: 1,
        source_revision: None,
        source_fingerprint: String::new(),
        targets: &none,
        allow_deletes: false,
        destroy: false,
        sources: &NO_SOURCES,
        secrets: &NO_SECRETS,
    };
    let plan = plan::plan(&checked.model, &graph, &input).unwrap_or_else(|e| panic!("{e}"));
    let rendered = nimbus_planner::render::text(&plan);
    (
        start.elapsed(),
        plan,
        rendered.len() + graph.instances.len(),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let repo = PathBuf::from(
        args.next()
            .unwrap_or_else(|| format!("/tmp/nimbus-bench/yaml-{size}")),
    );
    if !repo.is_dir() {
        let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/gen_repo.py");
        let status = std::process::Command::new("python3")
            .arg(generator)
            .arg(&repo)
            .arg(size.to_string())
            .arg("yaml")
            .status()
            .unwrap_or_else(|e| panic!("cannot run the generator: {e}"));
        assert!(status.success());
    }

    // Converged: state and observations are what the first plan would create.
    let (_, initial, _) = plan_once(&repo, &[], &HashMap::new());
    let records: Vec<Record> = initial.changes.iter().filter_map(|c| c.record()).collect();
    let instances = records.len();
    let mut observed: HashMap<String, Observed> = records
        .iter()
        .map(|r| (r.address.clone(), Observed::Present(r.applied.clone())))
        .collect();

    let mut converged = Vec::new();
    for _ in 0..3 {
        let (elapsed, plan, _) = plan_once(&repo, &records, &observed);
        assert!(!plan.has_changes());
        converged.push(elapsed);
    }
    // One resource changed outside nimbus.
    let changed = records
        .iter()
        .find(|r| r.address.starts_with("File/"))
        .map(|r| r.address.clone())
        .unwrap_or_default();
    if let Some(Observed::Present(value)) = observed.get_mut(&changed) {
        value["content"] = serde_json::Value::String("edited by hand\n".into());
    }
    let mut one_changed = Vec::new();
    for _ in 0..3 {
        let (elapsed, plan, _) = plan_once(&repo, &records, &observed);
        assert_eq!(plan.count(plan::Action::Update), 1);
        one_changed.push(elapsed);
    }

    // Apply every instance as a no-cost change.
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = StateStore::open(dir.path().join("state.db")).unwrap_or_else(|e| panic!("{e}"));
    let (apply, _) = apply_all(&runtime, &initial, store);

    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    println!("resources: {size} ({instances} instances)");
    println!(
        "plan, converged:        median {:>7.0} ms   best {:>7.0} ms",
        median(&converged).as_secs_f64() * 1e3,
        best(&converged).as_secs_f64() * 1e3
    );
    println!(
        "plan, one changed:      median {:>7.0} ms   best {:>7.0} ms",
        median(&one_changed).as_secs_f64() * 1e3,
        best(&one_changed).as_secs_f64() * 1e3
    );
    println!(
        "apply {instances} no-cost changes: {:>7.0} ms   {:.0} µs per change (executor + SQLite state)",
        apply.as_secs_f64() * 1e3,
        apply.as_secs_f64() * 1e6 / instances as f64
    );
    println!("peak memory:            {:>7.1} MiB", peak_rss_mib());

    // The reconcile daemon's status page (issue 15): the overview with the estate's SVG, of
    // every instance of this plan, as the daemon renders it for each request.
    let mut status = nimbus::daemon::status::Status::default();
    status.estate.planned(
        &initial,
        "0000000000000000000000000000000000000000",
        false,
        0.0,
    );
    let mut pages = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let page = nimbus::daemon::page::overview(&status, &[], 1.0);
        pages.push(start.elapsed());
        bytes = page.len();
    }
    println!(
        "status page of {} instances: median {:>7.1} ms   best {:>7.1} ms   ({} KiB of HTML)",
        status.estate.instances.len(),
        median(&pages).as_secs_f64() * 1e3,
        best(&pages).as_secs_f64() * 1e3,
        bytes / 1024
    );

    if let Ok(url) = std::env::var("NIMBUS_BENCH_PG_URL") {
        backends(&repo, &initial, &observed, &url);
    }
}

/// Applies every change of `plan` through the executor and the in-memory provider, each
/// recorded in `store`: how long it took, and the state.
fn apply_all(
    runtime: &tokio::runtime::Runtime,
    plan: &plan::Plan,
    store: StateStore,
) -> (Duration, Arc<Mutex<StateStore>>) {
    let run = store
        .begin_run("bench", None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let state = Arc::new(Mutex::new(store));
    let registry = Registry::new().with(Arc::new(MemoryProvider::new()));
    let options = ExecutorOptions {
        parallelism: 10,
        retries: 0,
        backoff: Duration::ZERO,
        progress: nimbus::executor::Progress::Quiet,
        ..ExecutorOptions::default()
    };
    let start = Instant::now();
    let report = runtime.block_on(execute(
        plan,
        &registry,
        Arc::clone(&state),
        run,
        &options,
        std::future::pending(),
    ));
    let took = start.elapsed();
    assert!(report.succeeded());
    (took, state)
}

/// Apply of every instance, and plans made from the state, with SQLite and with PostgreSQL.
fn backends(repo: &Path, initial: &plan::Plan, observed: &HashMap<String, Observed>, url: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let schema = format!("nimbus_bench_{}", std::process::id());
    let postgres = Target::parse(url, &schema).unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let mut figures = Vec::new();
    for (name, location) in [
        ("SQLite", StateLocation::File(dir.path().join("state.db"))),
        ("PostgreSQL", StateLocation::Postgres(Box::new(postgres))),
    ] {
        let store = StateStore::open(&location).unwrap_or_else(|e| panic!("{e:?}"));
        let (apply, state) = apply_all(&runtime, initial, store);
        // A converged plan as `nimbus plan` makes it: the state read, then the plan.
        let mut plans = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let (records, _) = state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .snapshot()
                .unwrap_or_else(|e| panic!("{e:?}"));
            let (_, plan, _) = plan_once(repo, &records, observed);
            // Everything recorded: nothing to create (the one hand edit above is an update).
            assert_eq!(plan.count(plan::Action::Create), 0);
            assert_eq!(records.len(), initial.changes.len());
            plans.push(start.elapsed());
        }
        plans.sort();
        println!(
            "state in {name:<10}: apply {:>7.0} ms ({:.0} µs per change), plan from state median {:>5.0} ms best {:>5.0} ms",
            apply.as_secs_f64() * 1e3,
            apply.as_secs_f64() * 1e6 / initial.changes.len() as f64,
            plans[1].as_secs_f64() * 1e3,
            plans[0].as_secs_f64() * 1e3
        );
        figures.push((apply, plans[1]));
    }
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-9);
    println!(
        "PostgreSQL / SQLite: apply {:.2}x, plan {:.2}x",
        ratio(figures[0].0, figures[1].0),
        ratio(figures[0].1, figures[1].1)
    );
}
