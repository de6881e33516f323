//! The daemon's front door (issue 23, docs/security.md): secrets and tokens shorter than 16
//! bytes are refused at start; with a token, pages and data want it while webhooks keep their
//! signatures and probes stay open; 2,000 connections that send their headers and stall
//! neither stop /status from answering nor grow the daemon's memory without bound, and are
//! closed when their body does not come. The test stops the daemon itself.

use crate::common;
use crate::sshd;
use common::{Running, copy_dir, git, http, http_within, sign, text, wait_port};
use sshd::free_port;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "front-door-webhook-secret";
const TOKEN: &str = "front-door-bearer-token-0123456789";

/// A committed repository (the create fixture) and a work folder for the daemon.
fn repository(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/create/repo"),
        &repo,
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    repo
}

fn daemon(dir: &Path, secret: &str, token: Option<&str>) -> (Command, u16) {
    let port = free_port();
    let repo = repository(dir);
    std::fs::write(dir.join("secret"), secret).unwrap_or_else(|e| panic!("{e}"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_nimbus"));
    command
        .args(["reconcile", "--repo"])
        .arg(&repo)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--interval", "1h"])
        .arg("--workdir")
        .arg(dir)
        .arg("--webhook-secret-file")
        .arg(dir.join("secret"))
        .env("NIMBUS_MEMORY_PROVIDER", dir.join("memory"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(token) = token {
        std::fs::write(dir.join("token"), format!("{token}\n")).unwrap_or_else(|e| panic!("{e}"));
        command.arg("--token-file").arg(dir.join("token"));
    }
    (command, port)
}

#[test]
fn short_or_empty_secrets_and_tokens_are_refused_at_start() {
    for (secret, token) in [
        ("", None),
        ("\n", None),
        ("fifteen-bytes!!", None),
        (SECRET, Some("short")),
    ] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (mut command, _) = daemon(dir.path(), secret, token);
        let output = command
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let said = text(&output.stderr)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            output.status.code(),
            Some(1),
            "{secret:?} {token:?}: {said}"
        );
        assert!(said.contains("least 16"), "{said}");
        assert!(
            !said.contains("fifteen-bytes"),
            "the secret is shown: {said}"
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// GET `path` with the token and a deadline on the answer; the status code and how long it
/// took.
fn timed_get(port: u16, path: &str, token: &str, within: Duration) -> (u16, Duration) {
    let started = Instant::now();
    let bearer = format!("Bearer {token}");
    let (code, _) = http_within(
        port,
        "GET",
        path,
        &[("Authorization", &bearer)],
        "",
        Some(within),
    );
    (code, started.elapsed())
}

#[test]
fn the_front_door_wants_its_token_and_outlasts_stalled_clients() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (mut command, port) = daemon(dir.path(), SECRET, Some(TOKEN));
    let log = std::fs::File::create(dir.path().join("log")).unwrap_or_else(|e| panic!("{e}"));
    let child = Running(
        command
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let pid = child.0.id();
    wait_port(port);
    let bearer = format!("Bearer {TOKEN}");
    // Probes are open; pages and data want the token.
    assert_eq!(http(port, "GET", "/healthz", &[], "").0, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/readyz", &[], "").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in ["/status", "/runs", "/metrics", "/", "/instances"] {
        assert_eq!(
            http(port, "GET", path, &[], "").0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            http(
                port,
                "GET",
                path,
                &[("Authorization", "Bearer wrong-token-wrong-token")],
                ""
            )
            .0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            http(port, "GET", path, &[("Authorization", &bearer)], "").0,
            200,
            "{path} with the token"
        );
    }
    // Webhooks: their signature alone, never the token.
    let body = "{\"ref\":\"refs/heads/main\"}";
    assert_eq!(
        http(
            port,
            "POST",
            "/hooks/git",
            &[("Authorization", &bearer)],
            body
        )
        .0,
        401
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/hooks/git",
            &[("X-Hub-Signature-256", &sign(SECRET, body))],
            body
        )
        .0,
        202
    );
    // 2,000 clients send a webhook's headers and stall before the body.
    let before = rss_kib(pid);
    let mut stalled = Vec::new();
    for _ in 0..2000 {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .write_all(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        stalled.push(stream);
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (code, took) = timed_get(port, "/status", TOKEN, Duration::from_secs(5));
        assert_eq!(
            code, 200,
            "/status did not answer while 2,000 clients stall"
        );
        slowest = slowest.max(took);
    }
    let during = rss_kib(pid);
    eprintln!(
        "front door: /status answered in at most {:.0} ms with 2,000 stalled clients; RSS {before} KiB before, {during} KiB during",
        slowest.as_secs_f64() * 1000.0
    );
    assert!(
        slowest < Duration::from_secs(1),
        "/status took {slowest:?} with 2,000 stalled clients"
    );
    assert!(
        during < before + 256 * 1024,
        "memory grew from {before} KiB to {during} KiB"
    );
    // Their bodies never come: each is answered 408 and closed.
    let mut first = stalled.swap_remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut response = String::new();
    let _ = first.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    drop(stalled);
    assert_eq!(http(port, "GET", "/healthz", &[], "").0, 200);
}

fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<u64> = s
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            // utime and stime: the 14th and 15th fields, the 12th and 13th after `) S`.
            Some(fields.get(10)? + fields.get(11)?)
        })
        .unwrap_or(0)
}

/// Out of file descriptors, the accept loop waits for connections to end instead of spinning
/// on the error; once they end, it serves again.
#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (command, port) = daemon(dir.path(), SECRET, None);
    // The same command under a limit of 64 descriptors.
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(command.get_program())
        .args(command.get_args())
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap_or_else(|e| panic!("{e}")));
    let child = Running(limited.spawn().unwrap_or_else(|e| panic!("{e}")));
    let pid = child.0.id();
    wait_port(port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/readyz", &[], "").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // More connections than it has descriptors, each stalled in its headers.
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.write_all(b"GET /status HTTP/1.1\r\n");
            held.push(stream);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    // A loop spinning on EMFILE burns a whole core: 200 ticks in 2 s. Backing off, a few.
    assert!(
        spent < 50,
        "the daemon spent {spent} ticks in 2 s while out of descriptors"
    );
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(
        log.contains("accept failed"),
        "it never ran out of descriptors: {log}"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/healthz", &[], "").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "it did not serve again after the connections ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
