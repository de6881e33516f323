//! A provider plugin in another language (tests/plugins/kv_plugin.py, Python) serves kinds
//! end to end through the `nimbus` binary: plan, apply, a second plan with nothing to do,
//! drift corrected, delete. A plugin that crashes, hangs, writes garbage or speaks another
//! protocol version fails its own instances with a clear reason, and never the run: the
//! instances of the healthy plugin beside it still apply.

use crate::common;
use common::text;

use std::path::{Path, PathBuf};
use std::process::Output;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// Cluster and Tenant go to plugin `kv`; Volume goes to plugin `vol` (the same script,
    /// with `fault` when given).
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let repo = Repo { dir };
        std::fs::create_dir_all(repo.root().join("plugins")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/kv_plugin.py"),
            repo.root().join("plugins/kv_plugin.py"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        repo.set_volume_plugin("{}");
        repo.write(
            "cluster.yaml",
            &format!(
                "{HEADER}kind: Cluster\nmetadata: {{name: prod}}\nspec: {{type: docker-swarm, managers: {{role: manager}}}}\n---\n{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{cluster: prod}}\n"
            ),
        );
        repo.set_size("1Gi");
        repo
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn store(&self, plugin: &str) -> PathBuf {
        self.dir.path().join(format!("store-{plugin}"))
    }

    fn write(&self, path: &str, content: &str) {
        let path = self.root().join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(path, content).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The Repository, with `extra` merged into the volume plugin's settings (`version: N`
    /// is its protocol version instead).
    fn set_volume_plugin(&self, extra: &str) {
        let (arguments, extra) = match extra.strip_prefix("{version: ") {
            Some(version) => (
                format!(", --protocol-version, {}", version.trim_end_matches('}')),
                "{}",
            ),
            None => (String::new(), extra),
        };
        let extra = extra.trim_matches(|c| c == '{' || c == '}');
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        self.write(
            "nimbus.yaml",
            &format!(
                "{HEADER}kind: Repository\nmetadata: {{name: plugins}}\nspec:\n  providers:\n  \
                 - {{name: kv, command: [python3, plugins/kv_plugin.py], kinds: [Cluster, Tenant], settings: {{store: {kv}}}}}\n  \
                 - {{name: vol, command: [python3, plugins/kv_plugin.py{arguments}], kinds: [Volume], timeout: 3, settings: {{store: {vol}{extra}}}}}\n",
                kv = self.store("kv").display(),
                vol = self.store("vol").display(),
            ),
        );
    }

    fn set_size(&self, size: &str) {
        self.write(
            "tenants/acme/volume.yaml",
            &format!("{HEADER}kind: Volume\nmetadata: {{name: data}}\nspec: {{type: btrfs, size: {size}}}\n"),
        );
    }

    fn nimbus(&self, args: &[&str]) -> Output {
        common::nimbus_with(args, &self.root(), &[])
    }

    fn stored(&self, plugin: &str, address: &str) -> Option<serde_json::Value> {
        let path = self
            .store(plugin)
            .join(format!("{}.json", address.replace('/', "_")));
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }
}

#[test]
fn a_python_plugin_serves_kinds_end_to_end() {
    let repo = Repo::new();
    let plan = repo.nimbus(&["plan", "."]);
    let stdout = text(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&plan.stderr)
    );
    assert!(
        stdout.contains("Volume/acme/data will be created by vol"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Tenant/acme will be created by kv"),
        "{stdout}"
    );
    let apply = repo.nimbus(&["apply", "--auto-approve", "."]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stderr));
    assert_eq!(
        repo.stored("vol", "Volume/acme/data")
            .map(|v| v["size"].clone()),
        Some("1Gi".into())
    );
    assert!(repo.stored("kv", "Tenant/acme").is_some());
    // State records the provider of each instance.
    let state = repo.nimbus(&["state", "list", "--json"]);
    let listed = text(&state.stdout);
    assert!(listed.contains("\"provider\": \"vol\""), "{listed}");
    let again = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    // A change made by hand in the plugin's store is drift, and apply puts it back.
    let path = repo.store("vol").join("Volume_acme_data.json");
    std::fs::write(&path, "{\"type\": \"btrfs\", \"size\": \"5Gi\"}")
        .unwrap_or_else(|e| panic!("{e}"));
    let drift = repo.nimbus(&["plan", "."]);
    assert!(
        text(&drift.stdout).contains("drift: changed outside nimbus"),
        "{}",
        text(&drift.stdout)
    );
    let apply = repo.nimbus(&["apply", "--auto-approve", "."]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stderr));
    assert_eq!(
        repo.stored("vol", "Volume/acme/data")
            .map(|v| v["size"].clone()),
        Some("1Gi".into())
    );
    // Removed from git: deleted through the plugin.
    std::fs::remove_file(repo.root().join("tenants/acme/volume.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let apply = repo.nimbus(&["apply", "--auto-approve", "."]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stderr));
    assert!(
        text(&apply.stdout).contains("Volume/acme/data will be destroyed"),
        "{}",
        text(&apply.stdout)
    );
    assert!(repo.stored("vol", "Volume/acme/data").is_none());
}

#[test]
fn a_plugin_that_misbehaves_fails_its_own_instances_only() {
    for (fault, says) in [
        ("fault: crash", "exited"),
        ("fault: hang", "did not answer `apply` within 3s"),
        ("fault: garbage", "does not speak the protocol"),
        ("version: 99", "protocol version 99"),
    ] {
        let repo = Repo::new();
        repo.set_volume_plugin(&format!("{{{fault}}}"));
        let started = std::time::Instant::now();
        let apply = repo.nimbus(&["apply", "--auto-approve", "."]);
        let all = format!("{}\n{}", text(&apply.stdout), text(&apply.stderr));
        assert_eq!(apply.status.code(), Some(1), "{fault}:\n{all}");
        assert!(all.contains(says), "{fault}: `{says}` not said:\n{all}");
        assert!(all.contains("plugin `vol`"), "{fault}:\n{all}");
        // The healthy plugin's instances applied all the same.
        assert!(
            repo.stored("kv", "Tenant/acme").is_some(),
            "{fault}:\n{all}"
        );
        assert!(repo.stored("vol", "Volume/acme/data").is_none(), "{fault}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{fault}: took {:?}",
            started.elapsed()
        );
        if fault == "fault: crash" {
            // The end of what it wrote to stderr is in the reason.
            assert!(all.contains("about to crash"), "{all}");
        }
    }
}

/// A plugin whose `observe` fails: its instances are not observed, so nothing is planned for
/// them (no create on a new repository) and no plan says the state matches; `plan
/// --detailed-exitcode` exits 2, and `apply` applies the rest and exits 1 naming them.
#[test]
fn what_a_plugin_cannot_observe_is_named_and_never_said_to_match() {
    let repo = Repo::new();
    repo.set_volume_plugin("{fault: observe}");
    let plan = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
    let stdout = text(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "{stdout}\n{}",
        text(&plan.stderr)
    );
    assert!(
        !stdout.contains("Volume/acme/data will be created"),
        "{stdout}"
    );
    assert!(
        stdout.contains("? Volume/acme/data: the store is locked by a backup"),
        "{stdout}"
    );
    assert!(stdout.contains("1 instance not observed"), "{stdout}");
    let apply = repo.nimbus(&["apply", "--auto-approve", "."]);
    let stdout = text(&apply.stdout);
    assert_eq!(
        apply.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&apply.stderr)
    );
    assert!(repo.stored("kv", "Tenant/acme").is_some(), "{stdout}");
    assert!(repo.stored("vol", "Volume/acme/data").is_none());
    assert!(
        stdout.contains("Apply incomplete") && stdout.contains("unknown  Volume/acme/data"),
        "{stdout}"
    );
    // Everything else is in sync now, and still the plan does not say the state matches.
    let again = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
    let stdout = text(&again.stdout);
    assert_eq!(again.status.code(), Some(2), "{stdout}");
    assert!(!stdout.contains("matches the repository"), "{stdout}");
    assert!(stdout.contains("could not be observed"), "{stdout}");
    let json = repo.nimbus(&["plan", "--format", "json", "."]);
    let parsed: serde_json::Value =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed["unobserved"][0]["address"], "Volume/acme/data");
}

/// A plugin that cannot be started is an error at the Repository's `providers` entry, and
/// the rest of the run goes on: nothing is planned for what it serves.
#[test]
fn a_plugin_that_cannot_start_is_an_error_at_its_entry() {
    let repo = Repo::new();
    let manifest =
        std::fs::read_to_string(repo.root().join("nimbus.yaml")).unwrap_or_else(|e| panic!("{e}"));
    repo.write(
        "nimbus.yaml",
        &manifest.replace(
            "command: [python3, plugins/kv_plugin.py], kinds: [Volume]",
            "command: [no-such-plugin-binary], kinds: [Volume]",
        ),
    );
    let plan = repo.nimbus(&["plan", "."]);
    let stdout = text(&plan.stdout);
    let stderr = text(&plan.stderr);
    assert_eq!(plan.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("nimbus::provider::unavailable"), "{stderr}");
    assert!(stderr.contains("nimbus.yaml:7"), "{stderr}");
    assert!(stderr.contains("plugin `vol`"), "{stderr}");
    assert!(
        !stdout.contains("Volume/acme/data will be created"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Tenant/acme will be created by kv"),
        "{stdout}"
    );
    let apply = repo.nimbus(&["apply", "--auto-approve", "."]);
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply.stdout));
    assert!(repo.stored("kv", "Tenant/acme").is_some());
}

/// Regression: a plugin that declares `sensitiveFields` was given the literal `(sensitive)` in
/// apply's `after`, stored it, and never converged. It is given the value; plans, saved plans
/// and state still show `(sensitive)`, and a saved plan is applied with the value taken again
/// from the revision it was made from.
#[test]
fn a_plugin_is_given_the_values_of_its_sensitive_fields() {
    let repo = Repo::new();
    repo.set_volume_plugin("{sensitive: [size]}");
    repo.set_size("7Gi");
    let out = repo.dir.path().join("saved.json");
    let plan = repo.nimbus(&["plan", "--out", &out.display().to_string(), "."]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    assert!(
        !text(&plan.stdout).contains("7Gi"),
        "{}",
        text(&plan.stdout)
    );
    let saved = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(!saved.contains("7Gi"), "{saved}");
    assert!(saved.contains("(sensitive)"), "{saved}");
    let apply = repo.nimbus(&["apply", &out.display().to_string()]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stderr));
    assert_eq!(
        repo.stored("vol", "Volume/acme/data")
            .map(|v| v["size"].clone()),
        Some("7Gi".into())
    );
    let shown = repo.nimbus(&["state", "show", "--json", "Volume/acme/data"]);
    assert!(
        !text(&shown.stdout).contains("7Gi"),
        "{}",
        text(&shown.stdout)
    );
    // Converged: the next plan is empty.
    let again = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
}

/// Regression: the error for a plugin that exited during a call carried the last lines of its
/// stderr only sometimes when the machine was busy (the reader had not reached them yet). With
/// both cores busy, it carries them every time.
#[test]
fn a_crashed_plugin_s_stderr_is_in_its_error_every_time_under_load() {
    let busy: Vec<common::Running> = (0..2)
        .map(|_| {
            common::Running(
                std::process::Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .collect();
    let repo = Repo::new();
    repo.set_volume_plugin("{fault: crash}");
    for attempt in 0..6 {
        let apply = repo.nimbus(&["apply", "--auto-approve", "."]);
        let all = format!("{}\n{}", text(&apply.stdout), text(&apply.stderr));
        assert_eq!(apply.status.code(), Some(1), "{all}");
        assert!(
            all.contains("exited during `apply`") && all.contains("about to crash"),
            "attempt {attempt}: {all}"
        );
    }
    drop(busy);
}

/// A plugin that declares `concurrency` in `describe` gets that many requests at once (matched
/// by id): its instances apply in parallel, up to `--parallelism`; one that does not declare it
/// gets one at a time.
#[test]
fn a_plugin_that_declares_concurrency_applies_in_parallel() {
    for (declared, expected) in [
        ("{concurrency: 4, delay: 0.5}", 4),
        ("{concurrency: 1, delay: 0.2}", 1),
    ] {
        let repo = Repo::new();
        repo.set_volume_plugin(declared);
        for name in ["a", "b", "c", "d"] {
            repo.write(
                &format!("tenants/acme/{name}.yaml"),
                &format!("{HEADER}kind: Volume\nmetadata: {{name: {name}}}\nspec: {{type: btrfs, size: 1Gi}}\n"),
            );
        }
        let apply = repo.nimbus(&["apply", "--auto-approve", "--parallelism", "8", "."]);
        assert_eq!(
            apply.status.code(),
            Some(0),
            "{declared}: {}",
            text(&apply.stderr)
        );
        for name in ["a", "b", "c", "d", "data"] {
            assert!(
                repo.stored("vol", &format!("Volume/acme/{name}")).is_some(),
                "{declared}: {name}"
            );
        }
        let most = std::fs::read_to_string(repo.store("vol").join("most-at-once"))
            .unwrap_or_else(|e| panic!("{declared}: {e}"));
        if expected == 1 {
            assert_eq!(most.trim(), "1", "{declared}");
        } else {
            let most: usize = most.trim().parse().unwrap_or(0);
            assert!(most >= 2, "{declared}: at most {most} at once");
        }
        let again = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
        assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    }
}

/// The daemon shows what a plugin cannot observe as unknown, with why, applies the rest, and
/// does not count the commit as applied.
#[test]
fn the_daemon_shows_what_cannot_be_observed_as_unknown() {
    let repo = Repo::new();
    repo.set_volume_plugin("{fault: observe}");
    // The daemon's plugins run in its working directory: an absolute command here.
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/kv_plugin.py");
    let manifest =
        std::fs::read_to_string(repo.root().join("nimbus.yaml")).unwrap_or_else(|e| panic!("{e}"));
    repo.write(
        "nimbus.yaml",
        &manifest.replace("plugins/kv_plugin.py", &plugin.display().to_string()),
    );
    common::git(&repo.root(), &["init", "-q", "-b", "main"]);
    common::git(&repo.root(), &["add", "-A"]);
    common::git(&repo.root(), &["commit", "-q", "-m", "first"]);
    let workdir = repo.dir.path().join("daemon");
    std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("{e}"));
    let port = crate::sshd::free_port();
    let _daemon = common::Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["reconcile", "--repo"])
            .arg(repo.root())
            .args([
                "--branch",
                "main",
                "--interval",
                "1h",
                "--drift-interval",
                "1h",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--workdir")
            .arg(&workdir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    common::wait_port(port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        let (_, body) = common::http(port, "GET", "/status", &[], "");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if status["resources"]["Tenant/acme"] == "applied" {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        status["resources"]["Volume/acme/data"], "unknown",
        "{status:#}"
    );
    assert_eq!(
        status["revision_applied"],
        serde_json::Value::Null,
        "{status:#}"
    );
    let (_, page) = common::http(port, "GET", "/resource/Volume/acme/data", &[], "");
    assert!(
        page.contains("not observed") && page.contains("the store is locked by a backup"),
        "{page}"
    );
    assert!(repo.stored("vol", "Volume/acme/data").is_none());
}
