//! Git revisions as the source: `validate`, `plan` and `apply` with `--rev` read a commit
//! straight from the object database (the working tree may be anything), and `nimbus preview`
//! prints a pull request's plan as a markdown comment.

use crate::common;
use common::{copy_dir, text};

use std::path::{Path, PathBuf};
use std::process::Output;

struct Git {
    dir: tempfile::TempDir,
}

impl Git {
    /// A git repository holding the create fixture, committed.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/create/repo"),
            &dir.path().join("repo"),
        );
        let git = Git { dir };
        git.git(&["init", "-q", "-b", "main"]);
        git.write("conf/app.conf", "version = 1\n");
        git.write(
            "app-conf.yaml",
            "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: app-conf}\nspec: {hosts: {role: web}, path: /etc/app.conf, source: conf/app.conf}\n",
        );
        git.commit("first");
        git
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn write(&self, path: &str, content: &str) {
        let path = self.root().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(path, content).unwrap_or_else(|e| panic!("{e}"));
    }

    fn git(&self, args: &[&str]) -> String {
        common::git(&self.root(), args)
    }

    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn nimbus(&self, args: &[&str]) -> Output {
        let memory = self.dir.path().join("memory");
        common::nimbus_with(
            args,
            &self.root(),
            &[(
                "NIMBUS_MEMORY_PROVIDER",
                memory.to_str().unwrap_or_default(),
            )],
        )
    }
}

#[test]
fn plan_and_apply_read_a_revision_without_a_checkout() {
    let git = Git::new();
    let first = git.git(&["rev-parse", "HEAD"]);
    git.write("conf/app.conf", "version = 2\n");
    let workload = std::fs::read_to_string(git.root().join("workload.yaml")).unwrap_or_default();
    git.write(
        "workload.yaml",
        &workload.replace("replicas: 2", "replicas: 3"),
    );
    let second = git.commit("second");
    // The working tree is broken; revisions are read from the object database.
    git.write("broken.yaml", "kind: [\n");
    assert_eq!(git.nimbus(&["validate", "."]).status.code(), Some(1));
    let out = git.nimbus(&["validate", "--rev", "HEAD~1", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = git.nimbus(&["graph", "--rev", "HEAD~1", "--format", "json", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Workload/acme/api"));

    let out = git.nimbus(&["plan", "--rev", "HEAD~1", "--format", "json", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan["source_revision"], first.as_str());
    // A source file comes from the same revision as the manifests.
    let conf = plan["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["address"] == "File/app-conf@web-1"))
        .map(|c| c["after"]["content"].clone())
        .unwrap_or_default();
    assert_eq!(conf, "version = 1\n");

    let out = git.nimbus(&["apply", "--rev", &first, "--auto-approve", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = git.nimbus(&["plan", "--rev", "HEAD~1", "--detailed-exitcode", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // The next commit, planned and saved, then applied at that same commit.
    let saved = git.dir.path().join("plan.json");
    let out = git.nimbus(&[
        "plan",
        "--rev",
        "main",
        "--out",
        saved.to_str().unwrap_or_default(),
        "--detailed-exitcode",
        ".",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let planned = text(&out.stdout);
    assert!(planned.contains("~ replicas: 2 -> 3"), "{planned}");
    assert!(planned.contains("File/app-conf@web-1"), "{planned}");
    let out = git.nimbus(&["apply", saved.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = git.nimbus(&["plan", "--rev", &second, "--detailed-exitcode", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let out = git.nimbus(&["plan", "--rev", "no-such-branch", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no revision `no-such-branch`"));
}

#[test]
fn preview_prints_a_pull_requests_plan_as_a_comment() {
    let git = Git::new();
    git.git(&["checkout", "-q", "-b", "feature"]);
    // An update, a replacement (a File's path), a deletion and a creation.
    let workload = std::fs::read_to_string(git.root().join("workload.yaml")).unwrap_or_default();
    git.write(
        "workload.yaml",
        &workload.replace("replicas: 2", "replicas: 3"),
    );
    let files = std::fs::read_to_string(git.root().join("files.yaml")).unwrap_or_default();
    git.write(
        "files.yaml",
        &files.replace("/etc/motd", "/etc/motd.d/nimbus"),
    );
    std::fs::remove_file(git.root().join("app-conf.yaml")).unwrap_or_else(|e| panic!("{e}"));
    git.write(
        "extra.yaml",
        "apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: web-3, labels: {role: db}}\nspec: {address: 10.0.0.13}\n",
    );
    git.commit("feature");

    let out_dir = git.dir.path().join("artifacts");
    let out = git.nimbus(&[
        "preview",
        "--base",
        "main",
        "--head",
        "feature",
        "--detailed-exitcode",
        "--out-dir",
        out_dir.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let comment = text(&out.stdout);
    let at = |needle: &str| {
        comment
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{comment}"))
    };
    // Summary first: counts, deletions and replacements called out, resources by tenant.
    assert!(at("| update | 1 |") < at("<details>"));
    assert!(at("**Destroys or replaces:**") < at("<details>"));
    assert!(at("- `File/app-conf@web-1`") < at("<details>"));
    assert!(at("- `File/motd@web-1`") < at("<details>"));
    assert!(at("| acme | 0 | 1 | 0 | 0 |") < at("<details>"));
    assert!(comment.contains("| (infrastructure) |"));
    assert!(comment.contains("<details><summary><code>~ Workload/acme/api</code></summary>"));
    // A changed field is a `-` line and a `+` line in a diff block, which code hosts colour.
    assert!(
        comment.contains("```diff\n- replicas: 2\n+ replicas: 3\n```"),
        "{comment}"
    );
    assert!(comment.contains("+ Host/web-3"));
    // The whole plan is beside it, for an artifact.
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("plan.json")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(saved["changes"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(
        std::fs::read_to_string(out_dir.join("plan.txt"))
            .unwrap_or_default()
            .contains("Plan: ")
    );

    // Over the size limit, sections are left out with a note; the summary stays.
    let out = git.nimbus(&[
        "preview",
        "--base",
        "main",
        "--head",
        "feature",
        "--max-chars",
        "1500",
    ]);
    let short = text(&out.stdout);
    assert!(short.len() <= 1500, "{} characters", short.len());
    assert!(short.contains("**Destroys or replaces:**"), "{short}");
    assert!(
        short.contains("more changed resources are not shown"),
        "{short}"
    );

    // No changes between a revision and itself.
    let out = git.nimbus(&[
        "preview",
        "--base",
        "main",
        "--head",
        "main",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("No changes"));

    // A head with errors shows them, and the preview fails.
    git.write("broken.yaml", "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: x}\nspec: {host: web-9, path: /x, content: y}\n");
    git.commit("broken");
    let out = git.nimbus(&["preview", "--base", "main", "--head", "feature"]);
    assert_eq!(out.status.code(), Some(1));
    let comment = text(&out.stdout);
    assert!(
        comment.contains("1 error in the head revision"),
        "{comment}"
    );
    assert!(comment.contains("broken.yaml:4"), "{comment}");
    assert!(comment.contains("Host/web-9"), "{comment}");
}

/// Parsed manifests are kept by path and blob id: loading the next commit parses only the
/// files it changed, and gives the same model as reading everything again.
#[test]
fn a_new_commit_parses_only_the_files_it_changed() {
    let git = Git::new();
    let first =
        nimbus::gitsource::load_revision(&git.root(), "HEAD").unwrap_or_else(|e| panic!("{e:?}"));
    let manifests = first.model.sources.len();
    assert_eq!(first.parsed, manifests);
    assert!(manifests >= 5, "{manifests}");
    let workload = std::fs::read_to_string(git.root().join("workload.yaml")).unwrap_or_default();
    git.write(
        "workload.yaml",
        &workload.replace("replicas: 2", "replicas: 3"),
    );
    git.commit("one file");
    let second =
        nimbus::gitsource::load_revision(&git.root(), "HEAD").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(second.parsed, 1);
    assert_ne!(second.tree, first.tree);
    // The same model as a full read and parse.
    let full = nimbus_planner::check(
        nimbus::gitsource::read_revision(&git.root(), "HEAD")
            .unwrap_or_else(|e| panic!("{e:?}"))
            .input,
    );
    let cached = nimbus_planner::check_loaded(second.model, second.problems);
    let specs = |c: &nimbus_planner::Checked| -> Vec<String> {
        c.model
            .documents
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    d.resource.address(),
                    serde_json::to_string(&d.resource.spec).unwrap_or_default()
                )
            })
            .collect()
    };
    assert_eq!(specs(&cached), specs(&full));
    assert!(specs(&cached).iter().any(|s| s.contains("\"replicas\":3")));
    // Loading the same commit again parses nothing.
    let again =
        nimbus::gitsource::load_revision(&git.root(), "HEAD").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(again.parsed, 0);
}

/// With --refresh, a preview observes the live targets: a change made outside nimbus shows,
/// which a desired-against-desired preview cannot see.
#[test]
fn a_refreshed_preview_sees_the_live_targets() {
    let git = Git::new();
    let out = git.nimbus(&["apply", "--rev", "main", "--auto-approve", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let objects = git.dir.path().join("memory/objects.json");
    let live = std::fs::read_to_string(&objects).unwrap_or_default();
    assert!(live.contains("hello"), "{live}");
    std::fs::write(&objects, live.replacen("hello", "edited by hand", 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = git.nimbus(&[
        "preview",
        "--base",
        "main",
        "--head",
        "main",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = git.nimbus(&[
        "preview",
        "--base",
        "main",
        "--head",
        "main",
        "--refresh",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let comment = text(&out.stdout);
    assert!(comment.contains("File/motd@web-"), "{comment}");
    assert!(comment.contains("drift"), "{comment}");
}
