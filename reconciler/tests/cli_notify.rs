//! Notifications of `nimbus reconcile` delivered to local receivers the test runs: a webhook
//! (its HMAC signature checked with Python's hmac, independent of nimbus), a Slack-compatible
//! hook and an SMTP server. Every event kind a single daemon makes (applied, refused, failed,
//! an instance failed, drift corrected); retries after the receiver fails; events pending
//! when the daemon stops are delivered after it starts again; a tenant filter holds.

use crate::common;
use crate::sshd::free_port;
use common::{Running, git, sign, wait_port};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const KEY: &str = "notify-hmac-key-for-the-tests";

#[derive(Clone, Debug)]
struct Request {
    headers: BTreeMap<String, String>,
    body: String,
}

/// An HTTP receiver on loopback that answers 500 to its first `failures` requests, then 200.
fn http_receiver(listener: TcpListener, failures: usize) -> Arc<Mutex<Vec<Request>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    std::thread::spawn(move || {
        let mut count = 0;
        for stream in listener.incoming().flatten() {
            let (request, mut stream) = common::read_request(stream);
            count += 1;
            let status = if count <= failures {
                "500 Internal Server Error"
            } else {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Request {
                        headers: request.headers,
                        body: String::from_utf8_lossy(&request.body).into_owned(),
                    });
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    got
}

/// An SMTP server on loopback that keeps each message's DATA.
fn smtp_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut writer = stream.try_clone().unwrap_or_else(|e| panic!("{e}"));
            let mut reader = BufReader::new(stream);
            let _ = writer.write_all(b"220 test smtp\r\n");
            let mut data: Option<String> = None;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(message) = data.as_mut() {
                    if line == ".\r\n" {
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(data.take().unwrap_or_default());
                        let _ = writer.write_all(b"250 queued\r\n");
                    } else {
                        message.push_str(&line);
                    }
                    continue;
                }
                let reply: &[u8] = match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                    "EHLO" => b"250-test\r\n250 OK\r\n",
                    "DATA" => {
                        data = Some(String::new());
                        b"354 go on\r\n"
                    }
                    "QUIT" => {
                        let _ = writer.write_all(b"221 bye\r\n");
                        break;
                    }
                    _ => b"250 OK\r\n",
                };
                let _ = writer.write_all(reply);
            }
        }
    });
    (port, got)
}

fn wait_for(seconds: u64, what: &str, log: &Path, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events(got: &Arc<Mutex<Vec<Request>>>) -> Vec<serde_json::Value> {
    got.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap_or_default())
        .collect()
}

fn start(repo: &Path, workdir: &Path, key: &Path, port: u16) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["reconcile", "--repo"])
        .arg(repo)
        .args([
            "--branch",
            "main",
            "--interval",
            "1s",
            "--drift-interval",
            "2s",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--workdir")
        .arg(workdir)
        .arg("--identity")
        .arg(key)
        .env("NIMBUS_MEMORY_PROVIDER", workdir.join("infrastructure"))
        .env("NIMBUS_MEMORY_FAIL", "File/broken@h1")
        .env("NIMBUS_NOTIFY_BACKOFF_MS", "100")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(workdir.join("log"))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("nimbus reconcile: {e}"));
    let running = Running(child);
    wait_port(port);
    running
}

#[test]
fn events_reach_webhooks_slack_and_mail_with_retries_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path().join("infra");
    let workdir = dir.path().join("work");
    std::fs::create_dir_all(&repo).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("{e}"));
    let key = dir.path().join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
    assert!(status.success());

    // The webhook fails twice before it takes anything: the first event is retried.
    let hook_listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let hook_port = hook_listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let hook = http_receiver(hook_listener, 2);
    let slack_listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let slack_port = slack_listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let slack = http_receiver(slack_listener, 0);
    let (smtp_port, mail) = smtp_receiver();
    // A receiver that only wants globex's events: acme's failure does not reach it.
    let globex_listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let globex_port = globex_listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let globex = http_receiver(globex_listener, 0);

    let write = |path: &str, text: &str| {
        let path = repo.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(&repo)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    };
    write(
        "nimbus.yaml",
        &format!(
            "{HEADER}kind: Repository\nmetadata: {{name: notify}}\nspec:\n  secrets:\n    recipients: [\"{}\"]\n  notifications:\n    - {{name: ops, type: webhook, url: \"http://127.0.0.1:{hook_port}/hook\", secret: hook-key}}\n    - {{name: chat, type: slack, url: \"http://127.0.0.1:{slack_port}/slack\", events: [run-applied, commit-refused]}}\n    - {{name: mail, type: email, smtp: \"127.0.0.1:{smtp_port}\", from: nimbus@example.test, to: [ops@example.test], events: [run-failed]}}\n    - {{name: globex, type: webhook, url: \"http://127.0.0.1:{globex_port}/g\", events: [instance-failed], tenants: [globex]}}\n",
            common::age_recipient(&key)
        ),
    );
    common::encrypt_secret(&repo, "hook-key", KEY);
    write(
        "hosts.yaml",
        &format!("{HEADER}kind: Host\nmetadata: {{name: h1}}\nspec: {{address: 10.0.0.1}}\n"),
    );
    write(
        "files.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: motd}}\nspec: {{host: h1, path: /etc/motd, content: \"one\\n\"}}\n"
        ),
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);

    let port = free_port();
    let log = workdir.join("log");
    let daemon = start(&repo, &workdir, &key, port);
    wait_for(60, "run-applied at the webhook", &log, || {
        events(&hook).iter().any(|e| e["event"] == "run-applied")
    });
    let delivered = hook.lock().unwrap_or_else(|e| e.into_inner())[0].clone();
    let applied: serde_json::Value =
        serde_json::from_str(&delivered.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(applied["revision"], first.as_str());
    assert!(
        applied["url"].as_str().unwrap_or("").contains("/run/"),
        "{applied}"
    );
    assert_eq!(
        delivered.headers.get("x-nimbus-signature"),
        Some(&sign(KEY, &delivered.body)),
        "the body is signed with the receiver's key"
    );
    wait_for(30, "run-applied in the chat", &log, || {
        events(&slack).iter().any(|e| {
            e["text"]
                .as_str()
                .is_some_and(|t| t.contains("run-applied"))
        })
    });

    // A commit that does not validate: refused.
    write(
        "broken.yaml",
        &format!("{HEADER}kind: File\nmetadata: {{name: x}}\nspec: {{host: nowhere}}\n"),
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "broken"]);
    wait_for(60, "commit-refused", &log, || {
        events(&hook).iter().any(|e| e["event"] == "commit-refused")
    });
    assert!(
        events(&slack).iter().any(|e| e["text"]
            .as_str()
            .is_some_and(|t| t.contains("commit-refused"))),
        "{:?}",
        events(&slack)
    );

    // A File that fails (injected) and a tenant's workload: run-failed by mail, the instance
    // named at the webhook.
    std::fs::remove_file(repo.join("broken.yaml")).unwrap_or_else(|e| panic!("{e}"));
    write(
        "broken.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: broken}}\nspec: {{host: h1, path: /etc/broken, content: \"x\\n\"}}\n"
        ),
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "a failing file"]);
    wait_for(60, "instance-failed", &log, || {
        events(&hook)
            .iter()
            .any(|e| e["event"] == "instance-failed" && e["address"] == "File/broken@h1")
    });
    wait_for(30, "run-failed by mail", &log, || {
        mail.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|m| m.contains("Subject: nimbus run-failed") && m.contains("To: ops@example.test"))
    });
    assert!(
        events(&globex).is_empty(),
        "globex's receiver got another tenant's event: {:?}",
        events(&globex)
    );

    // Drift: the in-memory object changed by hand is corrected at the drift check.
    std::fs::remove_file(repo.join("broken.yaml")).unwrap_or_else(|e| panic!("{e}"));
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "no failing file"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    wait_for(60, "the fix applied", &log, || {
        events(&hook)
            .iter()
            .any(|e| e["event"] == "run-applied" && e["revision"] == second.as_str())
    });
    let objects = workdir.join("infrastructure/objects.json");
    let stored = std::fs::read_to_string(&objects).unwrap_or_default();
    std::fs::write(&objects, stored.replace("one\\n", "changed by hand\\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(60, "drift-corrected", &log, || {
        events(&hook)
            .iter()
            .any(|e| e["event"] == "drift-corrected")
    });

    // The daemon stops with an event pending (its webhook is down): it is kept in the outbox
    // and delivered once the daemon is back.
    drop(daemon);
    let pending_hook = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let pending_port = pending_hook.local_addr().map(|a| a.port()).unwrap_or(0);
    drop(pending_hook);
    let settings = std::fs::read_to_string(repo.join("nimbus.yaml")).unwrap_or_default();
    write(
        "nimbus.yaml",
        &settings.replace(
            &format!("127.0.0.1:{hook_port}/hook"),
            &format!("127.0.0.1:{pending_port}/hook"),
        ),
    );
    write(
        "files.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: motd}}\nspec: {{host: h1, path: /etc/motd, content: \"two\\n\"}}\n"
        ),
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "third"]);
    let third = git(&repo, &["rev-parse", "HEAD"]);
    let daemon = start(&repo, &workdir, &key, port);
    let outbox = workdir.join(".nimbus/outbox");
    wait_for(60, "the third commit's event in the outbox", &log, || {
        std::fs::read_dir(&outbox)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(third.as_str())))
    });
    let killed = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    drop(daemon);
    let back = TcpListener::bind(("127.0.0.1", pending_port)).unwrap_or_else(|e| panic!("{e}"));
    let back = http_receiver(back, 0);
    let _daemon = start(&repo, &workdir, &key, port);
    wait_for(60, "the pending event after the restart", &log, || {
        events(&back)
            .iter()
            .any(|e| e["event"] == "run-applied" && e["revision"] == third.as_str())
    });
}
