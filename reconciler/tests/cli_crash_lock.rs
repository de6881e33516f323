//! Killing `nimbus apply` with SIGKILL mid-run loses nothing and does nothing twice; a second
//! apply is refused while the first holds the lock, and a dead holder's lock is taken over.

use crate::common;
use common::Bed;
use common::text;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

trait CrashBed {
    fn spawn_slow_apply(&self, delay_ms: u32) -> Child;
    fn wait_for(&self, what: &str, condition: impl Fn() -> bool);
}

impl CrashBed for Bed {
    fn spawn_slow_apply(&self, delay_ms: u32) -> Child {
        Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["apply", "--auto-approve", "--parallelism", "1", "."])
            .current_dir(self.repo())
            .env("NIMBUS_MEMORY_PROVIDER", self.memory())
            .env("NIMBUS_MEMORY_DELAY_MS", delay_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nimbus: {e}"))
    }

    fn wait_for(&self, what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn sigkill_mid_apply_loses_nothing_and_repeats_nothing() {
    let bed = Bed::new();
    let mut first = bed.spawn_slow_apply(150);
    bed.wait_for("three changes to be applied", || bed.changes_applied() >= 3);
    first.kill().unwrap_or_else(|e| panic!("cannot kill: {e}")); // SIGKILL
    let _ = first.wait();
    let before_rerun = bed.changes_applied();
    assert!(
        before_rerun < 7,
        "the apply was killed before it finished ({before_rerun} applied)"
    );

    let output = bed.run(&["apply", "--auto-approve", "."]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        text(&output.stderr).contains("took over the state lock"),
        "{}",
        text(&output.stderr)
    );
    // Everything exists, each instance was created exactly once, and state knows all of it.
    let log = std::fs::read_to_string(bed.memory().join("changes.log")).unwrap_or_default();
    let mut addresses: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["address"].as_str().unwrap_or("").to_owned())
        .collect();
    addresses.sort();
    let mut unique = addresses.clone();
    unique.dedup();
    assert_eq!(addresses, unique, "an instance was changed twice: {log}");
    assert_eq!(unique.len(), 7);
    let listed = text(&bed.run(&["state", "list"]).stdout);
    assert_eq!(listed.lines().count(), 7, "{listed}");
    let plan = bed.run(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "converged: {}",
        text(&plan.stdout)
    );
}

#[test]
fn a_second_apply_is_refused_while_the_first_holds_the_lock() {
    let bed = Bed::new();
    let mut first = bed.spawn_slow_apply(300);
    bed.wait_for("the first apply to start changing things", || {
        bed.changes_applied() >= 1
    });
    let second = bed.run(&["apply", "--auto-approve", "."]);
    assert_eq!(second.status.code(), Some(1));
    let message = text(&second.stderr);
    assert!(
        message.contains("the state is locked by nimbus apply"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", first.id())),
        "{message}"
    );
    assert!(message.contains("nimbus state unlock"), "{message}");
    // Plans do not need the lock.
    assert!(matches!(bed.run(&["plan", "."]).status.code(), Some(0)));
    first.kill().unwrap_or_else(|e| panic!("cannot kill: {e}"));
    let _ = first.wait();
    let third = bed.run(&["apply", "--auto-approve", "."]);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third.stderr));
    assert!(
        text(&third.stderr).contains(&format!("pid {}", first.id())),
        "names the dead holder: {}",
        text(&third.stderr)
    );
}

#[test]
fn ctrl_c_finishes_what_is_in_flight_records_it_and_stops() {
    let bed = Bed::new();
    let mut apply = bed.spawn_slow_apply(200);
    bed.wait_for("two changes to be applied", || bed.changes_applied() >= 2);
    let status = Command::new("kill")
        .args(["-INT", &apply.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let exit = apply.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        exit.code(),
        Some(1),
        "an interrupted apply is not a success"
    );
    let applied = bed.changes_applied();
    assert!((2..7).contains(&applied), "stopped early, after {applied}");
    // What was applied is recorded: the next plan creates only the rest.
    let plan = bed.run(&["plan", "."]);
    let expected = format!("Plan: {} to add", 7 - applied);
    assert!(
        text(&plan.stdout).contains(&expected),
        "{}",
        text(&plan.stdout)
    );
    let history = text(&bed.run(&["state", "history"]).stdout);
    assert!(history.contains("interrupted"), "{history}");
}

/// Regression: a saved plan's apply, killed with SIGKILL after some changes took effect but
/// before they were recorded, left them unowned: on the saved-plan path alone (plan --out,
/// apply FILE) they were never recorded and never pruned. Every path that applies now
/// recovers intents first, and a plan counts them as done without writing.
#[test]
fn a_killed_saved_plan_apply_is_recovered_and_everything_is_pruned() {
    let bed = Bed::new();
    let plan_file = bed.dir.path().join("first.json");
    let plan_path = plan_file.display().to_string();
    assert_eq!(
        bed.run(&["plan", "--out", &plan_path, "."]).status.code(),
        Some(0)
    );
    let mut first = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["apply", "--parallelism", "1", &plan_path])
        .current_dir(bed.repo())
        .env("NIMBUS_MEMORY_PROVIDER", bed.memory())
        .env("NIMBUS_TEST_PAUSE_AFTER_APPLY_MS", "5000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nimbus: {e}"));
    // The first change has taken effect and is not yet recorded.
    bed.wait_for("a change to take effect", || bed.changes_applied() >= 1);
    first.kill().unwrap_or_else(|e| panic!("cannot kill: {e}")); // SIGKILL
    let _ = first.wait();
    assert_eq!(bed.changes_applied(), 1);
    // The saved-plan path only: a new plan counts the change as done, its apply records it.
    let second = bed.dir.path().join("second.json");
    let second_path = second.display().to_string();
    let planned = bed.run(&["plan", "--out", &second_path, "."]);
    assert!(
        text(&planned.stdout).contains("Plan: 6 to add"),
        "{}",
        text(&planned.stdout)
    );
    let applied = bed.run(&["apply", &second_path]);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}\n{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );
    assert!(
        text(&applied.stderr).contains("recovered"),
        "{}",
        text(&applied.stderr)
    );
    // Every manifest removed (the Repository stays): a saved plan prunes all seven.
    for entry in std::fs::read_dir(bed.repo())
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && name != "nimbus.yaml" {
            std::fs::remove_file(entry.path()).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let third = bed.dir.path().join("third.json");
    let third_path = third.display().to_string();
    let planned = bed.run(&["plan", "--out", &third_path, "--allow-deletes", "."]);
    assert!(
        text(&planned.stdout).contains("7 to destroy"),
        "{}",
        text(&planned.stdout)
    );
    let applied = bed.run(&["apply", &third_path]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied.stderr));
    let objects = std::fs::read_to_string(bed.memory().join("objects.json")).unwrap_or_default();
    assert_eq!(objects.trim(), "{}", "orphans left: {objects}");
}
