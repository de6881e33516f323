//! plan, apply, destroy and state end to end, as a user runs them, against the in-memory
//! provider persisted in a directory (NIMBUS_MEMORY_PROVIDER).

use crate::common;
use common::Bed;
use common::text;

trait EngineBed {
    fn objects(&self) -> serde_json::Map<String, serde_json::Value>;
    fn set_object(&self, address: &str, value: Option<serde_json::Value>);
    fn changes_log(&self) -> Vec<(String, String)>;
}

impl EngineBed for Bed {
    fn objects(&self) -> serde_json::Map<String, serde_json::Value> {
        let text = std::fs::read_to_string(self.memory().join("objects.json"))
            .unwrap_or_else(|_| "{}".into());
        serde_json::from_str(&text).unwrap_or_default()
    }

    fn set_object(&self, address: &str, value: Option<serde_json::Value>) {
        let mut objects = self.objects();
        match value {
            Some(v) => objects.insert(address.into(), v),
            None => objects.remove(address),
        };
        std::fs::write(
            self.memory().join("objects.json"),
            serde_json::to_vec_pretty(&objects).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn changes_log(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.memory().join("changes.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["address"].as_str().unwrap_or("").to_owned(),
                    v["action"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

#[test]
fn apply_then_nothing_to_do_then_drift_is_corrected() {
    let bed = Bed::new();
    let output = bed.run(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(output.status.code(), Some(2), "changes: exit 2");
    assert!(
        text(&output.stdout).contains("Plan: 7 to add, 0 to change, 0 to replace, 0 to destroy.")
    );
    let output = bed.run(&["apply", "--auto-approve", "."]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("Apply complete: 7 applied, 0 failed, 0 skipped."),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(bed.objects().len(), 7);
    let output = bed.run(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout)
            .lines()
            .find(|l| !l.starts_with("note:"))
            .is_some_and(|l| l.starts_with("No changes.")),
        "{}",
        text(&output.stdout)
    );
    // A hand edit on a target is drift, and apply puts it back.
    let mut motd = bed.objects()["File/motd@web-2"].clone();
    motd["content"] = "edited by hand\n".into();
    bed.set_object("File/motd@web-2", Some(motd));
    let output = bed.run(&["plan", "."]);
    assert!(
        text(&output.stdout)
            .contains("will be updated in place by memory (drift: changed outside nimbus)"),
        "{}",
        text(&output.stdout)
    );
    assert!(
        text(&output.stdout).contains("~ content: <<-EOT\n      - edited by hand\n      + hello\n"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(
        bed.run(&["apply", "--auto-approve", "."]).status.code(),
        Some(0)
    );
    assert_eq!(bed.objects()["File/motd@web-2"]["content"], "hello\n");
    let output = bed.run(&["state", "list"]);
    assert_eq!(text(&output.stdout).lines().count(), 7);
    let output = bed.run(&["state", "history"]);
    assert_eq!(
        text(&output.stdout).lines().count(),
        2,
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let bed = Bed::new();
    let output = bed.run(&["apply", "."]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("--auto-approve"),
        "{}",
        text(&output.stderr)
    );
    assert!(bed.objects().is_empty(), "nothing was applied");
}

#[test]
fn removing_a_manifest_prunes_what_nimbus_created_but_not_what_is_protected() {
    let bed = Bed::new();
    let extra = "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: old}\nspec: {host: web-1, path: /etc/old, content: old}\n---\n\
                 apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata:\n  name: precious\n  annotations: {nimbus.dev/protect: \"true\"}\nspec: {host: web-1, path: /etc/precious, content: keep}\n";
    std::fs::write(bed.repo().join("extra.yaml"), extra).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        bed.run(&["apply", "--auto-approve", "."]).status.code(),
        Some(0)
    );
    assert_eq!(bed.objects().len(), 9);
    std::fs::remove_file(bed.repo().join("extra.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let output = bed.run(&["apply", "--auto-approve", "."]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let objects = bed.objects();
    assert!(!objects.contains_key("File/old@web-1"), "pruned");
    assert!(
        objects.contains_key("File/precious@web-1"),
        "protected: kept"
    );
    assert!(
        text(&output.stdout).contains("protected"),
        "{}",
        text(&output.stdout)
    );
    // Lifting the protection is an explicit step; then it goes.
    assert_eq!(
        bed.run(&["state", "unprotect", "File/precious@web-1"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        bed.run(&["apply", "--auto-approve", "."]).status.code(),
        Some(0)
    );
    assert!(!bed.objects().contains_key("File/precious@web-1"));
}

#[test]
fn a_failed_instance_fails_alone() {
    let bed = Bed::new();
    let output = bed.run_with(
        &["apply", "--auto-approve", "."],
        &[("NIMBUS_MEMORY_FAIL", "Host/web-2")],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("failed   Host/web-2"), "{stdout}");
    assert!(
        stdout.contains("skipped  File/motd@web-2: Host/web-2 did not apply"),
        "{stdout}"
    );
    let objects = bed.objects();
    assert!(objects.contains_key("File/motd@web-1") && !objects.contains_key("File/motd@web-2"));
    // The next run finishes the job.
    assert_eq!(
        bed.run(&["apply", "--auto-approve", "."]).status.code(),
        Some(0)
    );
    assert_eq!(bed.objects().len(), 7);
}

#[test]
fn a_saved_plan_applies_exactly_and_refuses_when_stale() {
    let bed = Bed::new();
    let plan_file = bed.dir.path().join("plan.json");
    let plan_path = plan_file.to_str().unwrap_or_default();
    assert_eq!(
        bed.run(&["plan", "--out", plan_path, "."]).status.code(),
        Some(0)
    );
    let output = bed.run(&["apply", plan_path]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(bed.objects().len(), 7);
    // A plan made, then the repository changes: refused, naming what moved.
    assert_eq!(
        bed.run(&["plan", "--out", plan_path, "."]).status.code(),
        Some(0)
    );
    let workload = bed.repo().join("workload.yaml");
    let edited = std::fs::read_to_string(&workload)
        .unwrap_or_default()
        .replace("replicas: 2", "replicas: 3");
    std::fs::write(&workload, edited).unwrap_or_else(|e| panic!("{e}"));
    let output = bed.run(&["apply", plan_path]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("the source changed"),
        "{}",
        text(&output.stderr)
    );
    // And when state moved under it.
    assert_eq!(
        bed.run(&["plan", "--out", plan_path, "."]).status.code(),
        Some(0)
    );
    assert_eq!(
        bed.run(&["apply", "--auto-approve", "."]).status.code(),
        Some(0)
    );
    let output = bed.run(&["apply", plan_path]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("the state changed"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn destroy_removes_everything_nimbus_created() {
    let bed = Bed::new();
    assert_eq!(
        bed.run(&["apply", "--auto-approve", "."]).status.code(),
        Some(0)
    );
    let output = bed.run(&["destroy", "--auto-approve", "."]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("Destroy complete: 7 applied"),
        "{}",
        text(&output.stdout)
    );
    assert!(bed.objects().is_empty());
    let log = bed.changes_log();
    let deleted: Vec<&str> = log
        .iter()
        .filter(|(_, a)| a == "delete")
        .map(|(addr, _)| addr.as_str())
        .collect();
    let position = |a: &str| {
        deleted
            .iter()
            .position(|x| *x == a)
            .unwrap_or_else(|| panic!("{a} not deleted"))
    };
    assert!(position("Workload/acme/api") < position("Tenant/acme"));
    assert!(position("File/motd@web-1") < position("Host/web-1"));
    assert_eq!(text(&bed.run(&["state", "list"]).stdout), "");
}

/// Regression: the in-memory provider was used without being asked for, and apply reported
/// success while nothing reached a machine. Now every kind goes to its real provider (a k3s
/// Cluster's to `kubernetes`, over SSH), a run that cannot reach them stops with what to do,
/// and the in-memory provider, when asked for, is named in the first line of every plan and
/// apply.
#[test]
fn the_in_memory_provider_is_used_only_when_asked_for() {
    let bed = Bed::new();
    let cluster = bed.repo().join("cluster.yaml");
    let text_of = std::fs::read_to_string(&cluster).unwrap_or_default();
    let pinned = format!(
        "  k3s: {{source: \"https://k3s.example.invalid/k3s\", sha256: {}}}\n",
        "0".repeat(64)
    );
    std::fs::write(
        &cluster,
        text_of
            .replace("type: docker-swarm", "type: k3s")
            .replace("managers:", "servers:")
            + &pinned,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Without a way to reach the hosts (no SSH key here), plan and apply stop with what to
    // do: nothing goes anywhere else.
    let run = |args: &[&str]| common::nimbus_with(args, &bed.repo(), &[]);
    for args in [&["plan", "."][..], &["apply", "--auto-approve", "."][..]] {
        let output = run(args);
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{said}");
        assert!(said.contains("no SSH key to log in to the hosts"), "{said}");
        assert!(
            !said.contains("in-memory") && !said.contains("Apply complete"),
            "{said}"
        );
    }
    assert!(!bed.repo().join(".nimbus/memory").exists());
    assert!(!bed.memory().exists());
    let plan = bed.run(&["plan", "."]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let first = text(&plan.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        first.contains("in-memory provider") && first.contains("NIMBUS_MEMORY_PROVIDER"),
        "{first}"
    );
    let apply = bed.run(&["apply", "--auto-approve", "."]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stderr));
    let stdout = text(&apply.stdout);
    assert!(
        stdout
            .lines()
            .next()
            .unwrap_or_default()
            .contains("in-memory provider"),
        "{stdout}"
    );
    assert!(
        stdout.contains("in-memory provider is in use") && stdout.contains("Apply complete"),
        "{stdout}"
    );
    assert!(bed.memory().join("objects.json").is_file());
}

#[test]
fn verbose_json_logs_are_one_object_per_line() {
    let bed = Bed::new();
    let output = bed.run(&["apply", "--auto-approve", "-v", "--log-format", "json", "."]);
    assert_eq!(output.status.code(), Some(0));
    let logs: Vec<serde_json::Value> = text(&output.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let applied = logs
        .iter()
        .filter(|l| l["fields"]["message"] == "applied")
        .count();
    assert_eq!(applied, 7, "{}", text(&output.stderr));
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "planned" && l["fields"]["create"] == 7)
    );
    // Without -v, no logs.
    let quiet = bed.run(&["plan", "."]);
    assert!(
        !text(&quiet.stderr).contains("\"level\""),
        "{}",
        text(&quiet.stderr)
    );
}

/// A File's `source` is part of its desired state: editing the source file is a change.
#[test]
fn a_changed_source_file_is_a_changed_file() {
    let bed = Bed::new();
    std::fs::create_dir_all(bed.repo().join("conf")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(bed.repo().join("conf/site.conf"), "listen 80;\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let manifest = "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: site}\nspec: {host: web-1, path: /etc/nginx/site.conf, source: conf/site.conf}\n";
    std::fs::write(bed.repo().join("site.yaml"), manifest).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        bed.run(&["apply", "--auto-approve", "."]).status.code(),
        Some(0)
    );
    let objects: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bed.memory().join("objects.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(objects["File/site@web-1"]["content"], "listen 80;\n");
    let plan_file = bed.dir.path().join("plan.json");
    let plan_path = plan_file.to_str().unwrap_or_default();
    assert_eq!(
        bed.run(&["plan", "--out", plan_path, "."]).status.code(),
        Some(0)
    );
    std::fs::write(bed.repo().join("conf/site.conf"), "listen 8080;\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = bed.run(&["plan", "."]);
    // Multi-line text is shown as a line diff.
    assert!(
        text(&plan.stdout)
            .contains("~ content: <<-EOT\n      - listen 80;\n      + listen 8080;\n        EOT"),
        "{}",
        text(&plan.stdout)
    );
    let stale = bed.run(&["apply", plan_path]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        text(&stale.stderr).contains("the source changed"),
        "{}",
        text(&stale.stderr)
    );
}
