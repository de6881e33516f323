//! `nimbus reconcile` end to end against real git servers on loopback: `git daemon` (git://)
//! and smart HTTP (`git http-backend` behind testbed/git-http.py), both started and stopped
//! by the test. A push with a signed webhook is applied; a broken commit is not, and /status
//! shows its diagnostics; the fix is applied; a wrong signature is refused with 401 and
//! fetches nothing; drift is corrected; /metrics parses as Prometheus text; SIGTERM stops it.

use crate::common;
use crate::sshd;
use common::{Running, copy_dir, git, git_daemon, http, sign, text, wait_port};
use sshd::free_port;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn status(port: u16) -> serde_json::Value {
    let (code, body) = http(port, "GET", "/status", &[], "");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Waits until /status satisfies `ok`.
fn wait_status(
    port: u16,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = status(port);
        if ok(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {now:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks Prometheus' text exposition format: comments, and `name{labels} value` samples.
fn assert_prometheus(metrics: &str) {
    let mut samples = 0;
    for line in metrics.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split_whitespace().next().unwrap_or("");
            assert!(kind == "HELP" || kind == "TYPE", "bad comment: {line}");
            if kind == "TYPE" {
                let t = comment.split_whitespace().nth(2).unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value: {line}"
        );
        let name = series.split('{').next().unwrap_or("");
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels: {line}"
            );
        }
        samples += 1;
    }
    assert!(samples > 10, "{metrics}");
}

struct Servers {
    dir: tempfile::TempDir,
    _daemon: Running,
    _http: Running,
    git_port: u16,
    http_port: u16,
}

impl Servers {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let repos = dir.path().join("repos");
        std::fs::create_dir_all(&repos).unwrap_or_else(|e| panic!("{e}"));
        git(&repos, &["init", "-q", "--bare", "-b", "main", "infra.git"]);
        let git_port = free_port();
        let daemon = git_daemon(&repos, git_port);
        let http_port = free_port();
        let server = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/git-http.py"))
            .args([
                "--root",
                &repos.display().to_string(),
                "--port",
                &http_port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("git-http.py: {e}"));
        let http = Running(server);
        wait_port(http_port);
        // A working clone, seeded with the create fixture.
        let work = dir.path().join("work");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/create/repo"),
            &work,
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "first"]);
        git(
            &work,
            &[
                "remote",
                "add",
                "origin",
                &repos.join("infra.git").display().to_string(),
            ],
        );
        git(&work, &["push", "-q", "origin", "main"]);
        Servers {
            dir,
            _daemon: daemon,
            _http: http,
            git_port,
            http_port,
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Edits the working clone, commits and pushes; returns the commit.
    fn push(&self, file: &str, content: &str) -> String {
        std::fs::write(self.work().join(file), content).unwrap_or_else(|e| panic!("{e}"));
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "-m", file]);
        git(&self.work(), &["push", "-q", "origin", "main"]);
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    fn reconcile(&self, url: &str, name: &str, extra: &[&str]) -> (Running, u16, PathBuf) {
        self.reconcile_with(url, name, extra, &[])
    }

    fn reconcile_with(
        &self,
        url: &str,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Running, u16, PathBuf) {
        let port = free_port();
        let workdir = self.dir.path().join(name);
        std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(workdir.join("hook-secret"), "s3cret-hook-for-tests\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["reconcile", "--repo", url, "--branch", "main"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--workdir")
            .arg(&workdir)
            .arg("--webhook-secret-file")
            .arg(workdir.join("hook-secret"))
            .args(extra)
            .env("NIMBUS_MEMORY_PROVIDER", workdir.join("infrastructure"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(workdir.join("log")).unwrap_or_else(|e| panic!("{e}")))
            .spawn()
            .unwrap_or_else(|e| panic!("nimbus reconcile: {e}"));
        let running = Running(child);
        wait_port(port);
        (running, port, workdir)
    }
}

#[test]
fn pushes_are_applied_through_a_verified_webhook() {
    let servers = Servers::start();
    let first = git(&servers.work(), &["rev-parse", "HEAD"]);
    let url = format!("git://127.0.0.1:{}/infra.git", servers.git_port);
    // Polling is slow here (1 h): only the webhook makes it fetch.
    let (mut daemon, port, workdir) =
        servers.reconcile(&url, "git", &["--interval", "1h", "--drift-interval", "1h"]);
    wait_status(port, "the first commit applied", |s| {
        s["revision_applied"] == first.as_str()
    });

    // A push and a signed webhook: applied.
    let workload =
        std::fs::read_to_string(servers.work().join("workload.yaml")).unwrap_or_default();
    let second = servers.push(
        "workload.yaml",
        &workload.replace("replicas: 2", "replicas: 3"),
    );
    let body = r#"{"ref":"refs/heads/main"}"#;
    let (code, _) = http(
        port,
        "POST",
        "/hooks/git",
        &[("X-Hub-Signature-256", &sign("s3cret-hook-for-tests", body))],
        body,
    );
    assert_eq!(code, 202);
    let now = wait_status(port, "the second commit applied", |s| {
        s["revision_applied"] == second.as_str()
    });
    assert_eq!(now["resources"]["Workload/acme/api"], "applied", "{now:#}");
    let objects =
        std::fs::read_to_string(workdir.join("infrastructure/objects.json")).unwrap_or_default();
    assert!(objects.contains("\"replicas\": 3"), "{objects}");

    // A wrong signature: 401, and nothing is fetched.
    let third = servers.push("notes.txt", "not a manifest\n");
    let fetches = |port: u16| -> String {
        let (_, metrics) = http(port, "GET", "/metrics", &[], "");
        metrics
            .lines()
            .find(|l| l.starts_with("nimbus_fetch_duration_seconds_count"))
            .unwrap_or_default()
            .to_owned()
    };
    let before = fetches(port);
    for headers in [
        vec![("X-Hub-Signature-256", "sha256=0000")],
        vec![("X-Gitlab-Token", "guess")],
        vec![],
    ] {
        let (code, _) = http(port, "POST", "/hooks/git", &headers, body);
        assert_eq!(code, 401);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fetches(port), before, "a refused webhook fetched");
    assert_eq!(status(port)["revision_seen"], second.as_str());
    // GitLab's token is accepted too.
    let (code, _) = http(
        port,
        "POST",
        "/hooks/git",
        &[("X-Gitlab-Token", "s3cret-hook-for-tests")],
        body,
    );
    assert_eq!(code, 202);
    wait_status(port, "the third commit", |s| {
        s["revision_applied"] == third.as_str()
    });

    // A broken commit: not applied, its diagnostics in /status, the last good one in force.
    let broken = servers.push(
        "broken.yaml",
        "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: x}\nspec: {host: web-9, path: /x, content: y}\n",
    );
    http(
        port,
        "POST",
        "/hooks/git",
        &[("X-Hub-Signature-256", &sign("s3cret-hook-for-tests", body))],
        body,
    );
    let now = wait_status(port, "the broken commit seen", |s| {
        s["revision_seen"] == broken.as_str()
            && s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    assert_eq!(now["revision_applied"], third.as_str());
    let errors = now["errors"].to_string();
    assert!(
        errors.contains("broken.yaml:4") && errors.contains("Host/web-9"),
        "{errors}"
    );
    let (code, page) = http(port, "GET", "/", &[], "");
    assert_eq!(code, 200);
    assert!(
        page.contains("http-equiv=\"refresh\"") && page.contains("broken.yaml"),
        "{page}"
    );

    // The fix: applied.
    std::fs::remove_file(servers.work().join("broken.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let fixed = servers.push("notes.txt", "fixed\n");
    http(
        port,
        "POST",
        "/hooks/git",
        &[("X-Hub-Signature-256", &sign("s3cret-hook-for-tests", body))],
        body,
    );
    let now = wait_status(port, "the fix applied", |s| {
        s["revision_applied"] == fixed.as_str()
    });
    assert_eq!(now["errors"], serde_json::json!([]));

    // Runs are recorded with their revisions, and the metrics parse.
    let (code, runs) = http(port, "GET", "/runs", &[], "");
    assert_eq!(code, 200);
    assert!(runs.contains(&second) && runs.contains(&fixed), "{runs}");
    let (_, metrics) = http(port, "GET", "/metrics", &[], "");
    assert_prometheus(&metrics);
    assert!(
        metrics.contains("nimbus_runs_total{outcome=\"invalid\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nimbus_webhooks_refused_total 3"),
        "{metrics}"
    );

    // SIGTERM: it stops, cleanly.
    let pid = daemon.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Ok(Some(code)) = daemon.0.try_wait() {
            break code;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code:?}");
}

#[test]
fn polling_over_smart_http_applies_and_corrects_drift() {
    let servers = Servers::start();
    let url = format!("http://127.0.0.1:{}/git/infra.git", servers.http_port);
    let (_daemon, port, workdir) = servers.reconcile(
        &url,
        "http",
        &["--interval", "300ms", "--drift-interval", "1s"],
    );
    let first = git(&servers.work(), &["rev-parse", "HEAD"]);
    wait_status(port, "the first commit applied", |s| {
        s["revision_applied"] == first.as_str()
    });
    // A push, found by polling.
    let files = std::fs::read_to_string(servers.work().join("files.yaml")).unwrap_or_default();
    let second = servers.push("files.yaml", &files.replace("hello", "hello again"));
    wait_status(port, "the push applied", |s| {
        s["revision_applied"] == second.as_str()
    });
    // A hand edit of what nimbus applied: corrected by the drift check, and counted.
    let path = workdir.join("infrastructure/objects.json");
    let objects = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(objects.contains("hello again"), "{objects}");
    std::fs::write(&path, objects.replace("hello again", "defaced"))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_status(port, "drift corrected", |s| {
        s["drift_events"].as_u64().is_some_and(|n| n >= 1)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&path)
        .unwrap_or_default()
        .contains("hello again")
    {
        assert!(Instant::now() < deadline, "the drift was not corrected");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `policy.requireSignedCommits`: only commits with an SSH signature by one of
/// `policy.allowedSigners` are applied (verified in-process); an unsigned commit and one
/// signed by another key are refused, say so in /status, and leave the last good one.
#[test]
fn unsigned_commits_are_refused_under_the_signature_policy() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let work = dir.path().join("work");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/create/repo"),
        &work,
    );
    for who in ["alice", "mallory"] {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", who, "-f"])
            .arg(dir.path().join(who))
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success());
    }
    let alice = std::fs::read_to_string(dir.path().join("alice.pub")).unwrap_or_default();
    std::fs::write(
        work.join("nimbus.yaml"),
        format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: signed}}\nspec:\n  policy:\n    requireSignedCommits: true\n    allowedSigners: [\"{}\"]\n",
            alice.trim()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git(&work, &["init", "-q", "-b", "main"]);
    let commit = |signer: Option<&str>, file: &str, content: &str| -> String {
        std::fs::write(work.join(file), content).unwrap_or_else(|e| panic!("{e}"));
        git(&work, &["add", "-A"]);
        match signer {
            Some(who) => {
                let key = dir.path().join(format!("{who}.pub")).display().to_string();
                git(
                    &work,
                    &[
                        "-c",
                        "gpg.format=ssh",
                        "-c",
                        &format!("user.signingkey={key}"),
                        "commit",
                        "-q",
                        "-S",
                        "-m",
                        file,
                    ],
                )
            }
            None => git(&work, &["commit", "-q", "-m", file]),
        };
        git(&work, &["rev-parse", "HEAD"])
    };
    let first = commit(Some("alice"), "notes.txt", "one\n");
    let port = free_port();
    let workdir = dir.path().join("state");
    std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "reconcile",
            "--repo",
            &work.display().to_string(),
            "--interval",
            "200ms",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--workdir")
        .arg(&workdir)
        .env("NIMBUS_MEMORY_PROVIDER", workdir.join("infrastructure"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let _daemon = Running(child);
    wait_port(port);
    wait_status(port, "the signed commit applied", |s| {
        s["revision_applied"] == first.as_str()
    });

    let unsigned = commit(None, "notes.txt", "two\n");
    let now = wait_status(port, "the unsigned commit refused", |s| {
        s["revision_seen"] == unsigned.as_str()
            && s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    assert_eq!(now["revision_applied"], first.as_str());
    assert!(
        now["errors"].to_string().contains("is not signed"),
        "{now:#}"
    );

    let forged = commit(Some("mallory"), "notes.txt", "three\n");
    let now = wait_status(port, "mallory's commit refused", |s| {
        s["revision_seen"] == forged.as_str()
            && s["errors"].to_string().contains("not an allowed signer")
    });
    assert_eq!(now["revision_applied"], first.as_str());

    let good = commit(Some("alice"), "notes.txt", "four\n");
    let now = wait_status(port, "alice's commit applied", |s| {
        s["revision_applied"] == good.as_str()
    });
    assert_eq!(now["errors"], serde_json::json!([]));
}

/// The loop on real hosts over SSH: a push is applied to them, and a hand edit on a host is
/// found by the drift check and corrected.
#[test]
fn pushes_reach_real_hosts_and_hand_edits_are_corrected() {
    let bed = sshd::bed::Bed::up(2);
    let servers = Servers::start();
    let work = servers.work();
    // Replace the fixture with a repository for the bed's hosts.
    for entry in std::fs::read_dir(&work).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "yaml") {
            std::fs::remove_file(entry.path()).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    std::fs::copy(&bed.known_hosts, work.join("known_hosts")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        work.join("nimbus.yaml"),
        format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: loop}}\nspec:\n  ssh: {{identityFile: {}, knownHosts: known_hosts}}\n",
            bed.key.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut hosts = String::new();
    for host in &bed.hosts {
        hosts.push_str(&format!(
            "---\napiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: {}, labels: {{fleet: loop}}}}\nspec: {{address: {}}}\n",
            host.name, host.address
        ));
    }
    std::fs::write(work.join("hosts.yaml"), hosts).unwrap_or_else(|e| panic!("{e}"));
    let file = |version: u32| {
        format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {{name: app}}\nspec: {{hosts: {{fleet: loop}}, path: /etc/loop/app.conf, content: \"version {version}\\n\", mode: \"0640\"}}\n"
        )
    };
    let first = servers.push("app.yaml", &file(1));
    let url = format!("git://127.0.0.1:{}/infra.git", servers.git_port);
    let port = free_port();
    let workdir = servers.dir.path().join("bed-loop");
    std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "reconcile",
            "--repo",
            &url,
            "--interval",
            "300ms",
            "--drift-interval",
            "1s",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--workdir")
        .arg(&workdir)
        .env_remove("NIMBUS_MEMORY_PROVIDER")
        // The agent that reports each host's load: the built binary without its symbols.
        .env("NIMBUS_AGENT_BINARY", common::stripped_agent())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(workdir.join("log")).unwrap_or_else(|e| panic!("{e}")))
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let _daemon = Running(child);
    wait_port(port);
    let on_host = |i: usize| {
        std::fs::read_to_string(bed.hosts[i].upper.join("etc/loop/app.conf")).unwrap_or_default()
    };
    wait_status(port, "the first commit applied", |s| {
        s["revision_applied"] == first.as_str()
    });
    assert_eq!(
        (on_host(0), on_host(1)),
        ("version 1\n".into(), "version 1\n".into())
    );
    // Each host's facts and load, from its agent, in /status and /metrics.
    wait_status(port, "the hosts' load reported", |s| {
        bed.hosts.iter().all(|h| {
            s["hosts"][&h.name]["load"]["memoryAvailable"]
                .as_u64()
                .is_some()
        })
    });
    let (_, metrics) = http(port, "GET", "/metrics", &[], "");
    assert_prometheus(&metrics);
    for host in &bed.hosts {
        for line in [
            format!("nimbus_host_up{{host=\"{}\"}} 1", host.name),
            format!(
                "nimbus_host_memory_available_bytes{{host=\"{}\"}} ",
                host.name
            ),
            format!(
                "nimbus_host_disk_available_bytes{{host=\"{}\"}} ",
                host.name
            ),
            format!("nimbus_host_load1{{host=\"{}\"}} ", host.name),
        ] {
            assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
        }
    }
    let (_, page) = http(port, "GET", "/", &[], "");
    assert!(page.contains("<h2>Hosts</h2>"), "{page}");
    assert!(
        bed.hosts
            .iter()
            .all(|h| page.contains(&format!("<tr><td>{}</td>", h.name))),
        "{page}"
    );

    // A push: applied to both hosts.
    let second = servers.push("app.yaml", &file(2));
    wait_status(port, "the push applied", |s| {
        s["revision_applied"] == second.as_str()
    });
    assert_eq!(
        (on_host(0), on_host(1)),
        ("version 2\n".into(), "version 2\n".into())
    );

    // A hand edit on a host: found by the drift check and corrected.
    bed.ssh_ok(&bed.hosts[1].name, "echo edited > /etc/loop/app.conf");
    wait_status(port, "the drift counted", |s| {
        s["drift_events"].as_u64().is_some_and(|n| n >= 1)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while on_host(1) != "version 2\n" {
        assert!(
            Instant::now() < deadline,
            "the hand edit was not corrected: {:?}",
            on_host(1)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        bed.ssh_ok(&bed.hosts[1].name, "stat -c %a /etc/loop/app.conf"),
        "640\n"
    );
}

/// An ssh:// remote, fetched with the git server's key pinned by --known-hosts: applied; a
/// wrong pinned key fetches nothing; no --known-hosts at all is refused at start.
#[test]
fn ssh_remotes_are_fetched_with_a_pinned_host_key() {
    let server = sshd::start_sshd();
    let servers = Servers::start();
    let target = server.target();
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        target.user,
        target.port,
        servers.dir.path().join("repos/infra.git").display()
    );
    let pinned = servers.dir.path().join("known_hosts");
    std::fs::write(
        &pinned,
        format!("[127.0.0.1]:{} {}\n", target.port, target.host_key.trim()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let key = target.identity.display().to_string();
    let first = git(&servers.work(), &["rev-parse", "HEAD"]);
    let (_daemon, port, _) = servers.reconcile(
        &url,
        "ssh",
        &[
            "--known-hosts",
            pinned.to_str().unwrap_or_default(),
            "--ssh-key",
            &key,
            "--interval",
            "300ms",
        ],
    );
    wait_status(port, "the first commit applied over ssh://", |s| {
        s["revision_applied"] == first.as_str()
    });

    // Without --known-hosts: refused before anything is fetched.
    let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "reconcile",
            "--repo",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--workdir",
        ])
        .arg(servers.dir.path().join("unpinned"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("needs --known-hosts"),
        "{}",
        text(&out.stderr)
    );

    // A different pinned key: the clone fails, nothing is applied.
    let other = server.dir.path().join("other_key");
    sshd::keygen(&other);
    let wrong = servers.dir.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {}",
            target.port,
            std::fs::read_to_string(other.with_extension("pub")).unwrap_or_default()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "reconcile",
            "--repo",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--workdir",
        ])
        .arg(servers.dir.path().join("wrong"))
        .args([
            "--known-hosts",
            wrong.to_str().unwrap_or_default(),
            "--ssh-key",
            &key,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot clone"),
        "{}",
        text(&out.stderr)
    );
}

/// A newer commit supersedes a run that is waiting on retries: the waiting change gives up,
/// the run ends as interrupted, and the newer commit is applied at once rather than after
/// the retries (which would take 5 + 10 + 20 s here).
#[test]
fn a_newer_commit_supersedes_a_run_waiting_on_retries() {
    let servers = Servers::start();
    let url = format!("git://127.0.0.1:{}/infra.git", servers.git_port);
    let (_daemon, port, workdir) = servers.reconcile_with(
        &url,
        "supersede",
        &["--interval", "1h", "--drift-interval", "1h"],
        &[
            ("NIMBUS_MEMORY_FAIL_TRANSIENT", "Workload/acme/api:1000"),
            ("NIMBUS_RETRY_BACKOFF_MS", "5000"),
        ],
    );
    // The first run is now waiting to retry the workload.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status(port)["revision_applied"], serde_json::Value::Null);
    std::fs::remove_file(servers.work().join("workload.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let newer = servers.push("notes.txt", "without the workload\n");
    let body = r#"{"ref":"refs/heads/main"}"#;
    let pushed = Instant::now();
    let (code, _) = http(
        port,
        "POST",
        "/hooks/git",
        &[("X-Hub-Signature-256", &sign("s3cret-hook-for-tests", body))],
        body,
    );
    assert_eq!(code, 202);
    wait_status(port, "the newer commit applied", |s| {
        s["revision_applied"] == newer.as_str()
    });
    assert!(
        pushed.elapsed() < Duration::from_secs(10),
        "the newer commit waited for the old run's retries: {:?}",
        pushed.elapsed()
    );
    let (_, runs) = http(port, "GET", "/runs", &[], "");
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap_or_else(|e| panic!("{e}"));
    let outcomes: Vec<&str> = runs
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["outcome"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(outcomes.first(), Some(&"interrupted"), "{runs:#}");
    let _ = workdir;
}

/// Regression: the daemon, killed with SIGKILL after a change took effect but before it was
/// recorded, never recovered it: the change was not owned and never pruned. Restarted on the
/// same state, it recovers the intent first, and removing the manifests prunes everything.
#[test]
fn a_killed_daemon_recovers_and_prunes_everything() {
    let servers = Servers::start();
    let url = format!("git://127.0.0.1:{}/infra.git", servers.git_port);
    let (mut daemon, _, workdir) = servers.reconcile_with(
        &url,
        "killed",
        &["--interval", "1s", "--drift-interval", "1h"],
        &[("NIMBUS_TEST_PAUSE_AFTER_APPLY_MS", "5000")],
    );
    let log = workdir.join("infrastructure/changes.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 1 {
        assert!(Instant::now() < deadline, "no change took effect");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.0.kill().unwrap_or_else(|e| panic!("{e}")); // SIGKILL
    let _ = daemon.0.wait();
    // Every manifest but the Repository's goes.
    for entry in std::fs::read_dir(servers.work())
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && name != "nimbus.yaml" {
            git(&servers.work(), &["rm", "-q", &name]);
        }
    }
    git(
        &servers.work(),
        &["commit", "-q", "-m", "remove everything"],
    );
    git(&servers.work(), &["push", "-q", "origin", "main"]);
    let (_daemon, port, _) = servers.reconcile_with(
        &url,
        "killed",
        &["--interval", "1s", "--drift-interval", "1h"],
        &[],
    );
    let objects = workdir.join("infrastructure/objects.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&objects).unwrap_or_default();
        if text.trim() == "{}" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphans left: {text}\n{}\n{}",
            status(port),
            std::fs::read_to_string(workdir.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Regression: a SIGTERM that arrived while the daemon fetched, loaded or planned did not stop
/// the run it was about to start (it was planned and applied in full, then the daemon exited).
/// Held in each phase, the daemon stops there: it exits at once, and nothing is applied or
/// recorded as a run.
#[test]
fn sigterm_during_fetch_load_or_plan_starts_nothing() {
    let servers = Servers::start();
    let url = format!("git://127.0.0.1:{}/infra.git", servers.git_port);
    for phase in ["fetch", "load", "plan"] {
        let (mut daemon, _port, workdir) = servers.reconcile_with(
            &url,
            &format!("stop-in-{phase}"),
            &["--interval", "1h", "--drift-interval", "1h"],
            &[("NIMBUS_TEST_PAUSE_PHASE", &format!("{phase}:8000"))],
        );
        // In the phase now (the fetch of a local git daemon takes milliseconds).
        std::thread::sleep(Duration::from_millis(1500));
        let signalled = Instant::now();
        let pid = daemon.0.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(killed.is_ok_and(|s| s.success()));
        let exited = loop {
            if let Ok(Some(status)) = daemon.0.try_wait() {
                break status;
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(5),
                "{phase}: still running {:?} after SIGTERM",
                signalled.elapsed()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(workdir.join("log")).unwrap_or_default();
        assert!(exited.success(), "{phase}: {exited:?}\n{log}");
        assert!(log.contains("nimbus reconcile: stopped"), "{phase}: {log}");
        // Nothing reached the (in-memory) infrastructure, and no run was recorded.
        assert!(
            !workdir.join("infrastructure/objects.json").exists(),
            "{phase}: something was applied\n{log}"
        );
        let state = workdir.join("infrastructure/state.db");
        if state.exists() {
            let runs = nimbus::state::StateStore::open(&state)
                .and_then(|s| s.history())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(runs.is_empty(), "{phase}: {runs:?}");
        }
    }
}
