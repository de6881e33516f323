//! The reconcile daemon's status page in a real browser (Debian's chromium, headless), in
//! three states: converged; a resource drifted by hand, found and corrected; a failure the
//! provider reports. Each state is checked from the page's rendered DOM (what a person reads,
//! and that the SVG picture holds every instance) and kept as a PNG screenshot under
//! `target/status-page/` (CI keeps them as artefacts). The pages are also searched for a
//! secret's plaintext and its plain SHA-256 (the leak test, extended to the pages).
//!
//! The daemon runs on the in-memory provider, asked for explicitly: this test is about the
//! page, not the machines (the providers' own tests reach real ones).

use crate::common;
use crate::sshd;
use common::{Running, copy_dir, encrypt_secret, git, http, text, wait_port};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "page-S3CRET-value-5151";

fn get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path, &[], "")
}

fn status(port: u16) -> serde_json::Value {
    let (code, body) = get(port, "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn wait_for(port: u16, what: &str, seconds: u64, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let now = status(port);
        if ok(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {now:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("status-page");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("chromium (scripts/setup.sh installs it): {e}"))
}

/// The page as the browser rendered it, and a screenshot of it.
fn look(port: u16, name: &str) -> String {
    let url = format!("http://127.0.0.1:{port}/");
    let dom = chromium(&["--dump-dom"], &url);
    assert!(dom.status.success(), "{}", text(&dom.stderr));
    let png = screenshots().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let shot = chromium(
        &[
            "--window-size=1400,2400",
            &format!("--screenshot={}", png.display()),
        ],
        &url,
    );
    assert!(
        png.metadata().is_ok_and(|m| m.len() > 10_000),
        "no screenshot: {}",
        text(&shot.stderr)
    );
    text(&dom.stdout)
}

/// Every address in the SVG's boxes (`data-members`).
fn pictured(dom: &str) -> Vec<String> {
    let svg = dom
        .split_once("<svg")
        .and_then(|(_, rest)| rest.split_once("</svg>"))
        .map(|(svg, _)| svg)
        .unwrap_or_else(|| panic!("no SVG on the page"));
    svg.split("data-members=\"")
        .skip(1)
        .filter_map(|part| part.split_once('"'))
        .flat_map(|(members, _)| members.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

fn assert_every_instance_pictured(dom: &str, port: u16) {
    let pictured = pictured(dom);
    let status = status(port);
    let resources = status["resources"]
        .as_object()
        .unwrap_or_else(|| panic!("{status:#}"));
    assert!(resources.len() > 20, "{status:#}");
    for address in resources.keys() {
        assert!(
            pictured.contains(address),
            "{address} is not in the picture"
        );
    }
}

fn sha256_hex(text: &str) -> String {
    let output = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    text_of(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The example repository, a tenant with more workloads than the picture draws one by one,
/// and a File whose content is a secret.
fn write_repository(repo: &Path, key: &Path) {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo"),
        repo,
    );
    let settings = std::fs::read_to_string(repo.join("nimbus.yaml")).unwrap_or_default();
    std::fs::write(
        repo.join("nimbus.yaml"),
        format!(
            "{settings}  secrets:\n    recipients: [\"{}\"]\n",
            common::age_recipient(key)
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut tenant = String::from(
        "apiVersion: nimbus.dev/v1alpha1\nkind: Tenant\nmetadata: {name: initech}\nspec:\n  cluster: prod\n  quota: {cpu: \"4\", memory: 4Gi, pods: 20}\n",
    );
    for i in 0..8 {
        tenant.push_str(&format!(
            "---\napiVersion: nimbus.dev/v1alpha1\nkind: Workload\nmetadata: {{name: job-{i}}}\nspec: {{tenant: initech, image: \"initech/job:1.0\", replicas: 1, cpu: 100m, memory: 64Mi}}\n"
        ));
    }
    std::fs::create_dir_all(repo.join("tenants/initech")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(repo.join("tenants/initech/jobs.yaml"), tenant)
        .unwrap_or_else(|e| panic!("{e}"));
    encrypt_secret(repo, "db-password", SECRET);
    std::fs::write(
        repo.join("files/db-password.yaml"),
        "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: db-password}\nspec: {host: db-1, path: /etc/app/db.password, secret: db-password, mode: \"0600\"}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn start_daemon(repo: &Path, workdir: &Path, key: &Path, env: &[(&str, &str)]) -> (Running, u16) {
    let port = sshd::free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(workdir.join("log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["reconcile", "--branch", "main", "--interval", "1s"])
        .args(["--drift-interval", "8s"])
        .arg("--repo")
        .arg(repo)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--workdir")
        .arg(workdir)
        .arg("--identity")
        .arg(key)
        .env("NIMBUS_MEMORY_PROVIDER", workdir.join("infrastructure"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("nimbus reconcile: {e}"));
    let running = Running(child);
    wait_port(port);
    (running, port)
}

#[test]
fn the_status_page_shows_the_estate_in_three_states() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = dir.path().join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "page", "-f"])
        .arg(&key)
        .status()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
    assert!(keygen.success());
    let repo = dir.path().join("repo");
    write_repository(&repo, &key);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(
        &repo,
        &[
            "commit",
            "-q",
            "-m",
            "The estate: hosts, mesh, swarm and three tenants",
        ],
    );
    let first = git(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    let workdir = dir.path().join("daemon");
    std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("{e}"));
    let mut pages = String::new();

    // 1. Converged.
    let (daemon, port) = start_daemon(&repo, &workdir, &key, &[]);
    wait_for(port, "the first commit applied", 60, |s| {
        s["revision_applied"] == first.as_str()
    });
    let dom = look(port, "1-converged");
    assert_every_instance_pictured(&dom, port);
    for expected in [
        "The estate: hosts, mesh, swarm and three tenants",
        "Nothing failed or drifted",
        "in sync",
        "Hosts",
        "Networks",
        "Clusters",
        "Tenants",
        "Workloads, VMs and volumes",
        // The tenant with eight workloads is one box with counts.
        "8 workloads",
        // examples-repo's environment, and its module's instance counted by module.
        "Environment: <code>production</code>",
        "By module",
        "module.shop",
    ] {
        assert!(dom.contains(expected), "the page lacks {expected:?}");
    }
    assert!(!dom.contains("\"at\":"), "raw JSON on the page");
    pages.push_str(&dom);

    // 2. A workload changed by hand: found at the drift check, shown, corrected.
    let objects = workdir.join("infrastructure/objects.json");
    let stored = std::fs::read_to_string(&objects).unwrap_or_default();
    let mut value: serde_json::Value =
        serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{e}"));
    value["Workload/initech/job-3"]["replicas"] = serde_json::json!(7);
    std::fs::write(&objects, value.to_string()).unwrap_or_else(|e| panic!("{e}"));
    wait_for(port, "the drift check", 30, |s| {
        s["drift_events"].as_u64().is_some_and(|n| n >= 1)
    });
    let dom = look(port, "2-drifted");
    assert_every_instance_pictured(&dom, port);
    assert!(dom.contains("Failed and drifted (1)"), "{dom}");
    assert!(dom.contains("Workload/initech/job-3"), "{dom}");
    assert!(
        dom.contains("drifted from the repository (replicas); corrected"),
        "{dom}"
    );
    pages.push_str(&dom);
    drop(daemon);

    // 3. Restarted with a provider that fails one workload; a commit changes it.
    let (_daemon, port) = start_daemon(
        &repo,
        &workdir,
        &key,
        &[("NIMBUS_MEMORY_FAIL", "Workload/initech/job-5")],
    );
    let jobs = std::fs::read_to_string(repo.join("tenants/initech/jobs.yaml")).unwrap_or_default();
    std::fs::write(
        repo.join("tenants/initech/jobs.yaml"),
        jobs.replace(
            "name: job-5}\nspec: {tenant: initech, image: \"initech/job:1.0\", replicas: 1",
            "name: job-5}\nspec: {tenant: initech, image: \"initech/job:1.0\", replicas: 2",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git(
        &repo,
        &["commit", "-q", "-am", "Scale job-5 to two replicas"],
    );
    let second = git(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    wait_for(port, "the second commit's run", 60, |s| {
        s["last_run"]["revision"] == second.as_str()
    });
    let dom = look(port, "3-failed");
    assert_every_instance_pictured(&dom, port);
    for expected in [
        "Failed and drifted (1)",
        "Workload/initech/job-5",
        "Workload/initech/job-5 failed (injected)",
        "Scale job-5 to two replicas",
        "applied with failures: 1 instance failed",
        "1 failed",
    ] {
        assert!(
            dom.contains(expected),
            "the page lacks {expected:?}:\n{dom}"
        );
    }
    pages.push_str(&dom);

    // A commit that does not validate: refused, the reason on the page, the last good
    // revision still in force.
    std::fs::write(
        repo.join("tenants/initech/broken.yaml"),
        "apiVersion: nimbus.dev/v1alpha1\nkind: Workload\nmetadata: {name: broken}\nspec: {tenant: initech, image: \"x:1\", replicas: many}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "A broken workload"]);
    wait_for(port, "the broken commit refused", 30, |s| {
        s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    let (_, page) = get(port, "/");
    assert!(page.contains("A broken workload"), "{page}");
    assert!(page.contains("was refused"), "{page}");
    assert!(
        page.contains("broken.yaml"),
        "the reason names the file: {page}"
    );
    pages.push_str(&page);

    // Every page, for the leak test: the run pages, an instance's, every instance.
    let (_, runs) = get(port, "/runs");
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap_or_else(|e| panic!("{e}"));
    for run in runs.as_array().into_iter().flatten() {
        let (code, page) = get(port, &format!("/run/{}", run["id"]));
        assert_eq!(code, 200, "{page}");
        pages.push_str(&page);
    }
    for path in [
        "/resource/File/db-password@db-1",
        "/resource/Workload/initech/job-5",
        "/instances",
        "/status",
    ] {
        let (code, page) = get(port, path);
        assert_eq!(code, 200, "{path}: {page}");
        pages.push_str(&page);
    }
    let (code, page) = get(port, "/resource/Workload/initech/job-5");
    assert_eq!(code, 200);
    assert!(page.contains("failed (injected)"), "{page}");
    assert!(
        page.contains("replicas: 1"),
        "the spec last applied: {page}"
    );
    assert!(
        page.contains(
            "<td><code>replicas</code></td><td><code>1</code></td><td><code>2</code></td>"
        ),
        "observed against desired: {page}"
    );
    let (code, _) = get(port, "/resource/Workload/initech/nothing-here");
    assert_eq!(code, 404);
    let (code, page) = get(port, "/resource/File/db-password@db-1");
    assert_eq!(code, 200);
    assert!(
        page.contains("(sensitive)") || !page.contains("content:"),
        "{page}"
    );
    assert!(!pages.contains(SECRET), "a page holds the secret's value");
    assert!(
        !pages.contains(&sha256_hex(SECRET)),
        "a page holds the secret's plain SHA-256"
    );
}
