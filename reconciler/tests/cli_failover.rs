//! Several `nimbus reconcile` replicas on one branch, sharing their state in a real
//! PostgreSQL (`common::pg`), applying to a real sshd host: one leads, the others stand by;
//! when the leader is killed mid-apply a standby takes over within the lease and converges,
//! writing no File twice; a leader paused past its lease is fenced off and steps down, and the
//! standby that took over tells a webhook (`leader-changed`).

use crate::common::{self, Running, pg::Postgres, text};
use crate::sshd;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 200;

/// A git repository declaring the test sshd and `FILES` Files under `out`, committed.
fn repository(server: &sshd::Sshd, dir: &Path, version: u32) -> PathBuf {
    let repo = dir.join("infra");
    std::fs::create_dir_all(&repo).unwrap_or_else(|e| panic!("{e}"));
    let target = server.target();
    common::write(
        &repo,
        "nimbus.yaml",
        &format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: failover}}\nspec:\n  parallelism: 4\n  ssh:\n    identityFile: {}\n    connectTimeout: 3\n",
            target.identity.display()
        ),
    );
    common::write(
        &repo,
        "hosts.yaml",
        &format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: local}}\nspec: {{address: 127.0.0.1, port: {}, user: {}, hostKey: \"{}\"}}\n",
            server.port,
            target.user,
            target.host_key.trim()
        ),
    );
    commit_files(&repo, dir, version);
    repo
}

/// Writes the Files at `version` and commits them.
fn commit_files(repo: &Path, dir: &Path, version: u32) -> String {
    let out = dir.join("out");
    let mut files = String::new();
    for i in 0..FILES {
        files.push_str(&format!(
            "---\napiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {{name: f{i}}}\nspec: {{host: local, path: {}/f{i}, content: \"version {version} of {i}\\n\"}}\n",
            out.display()
        ));
    }
    common::write(repo, "files.yaml", &files);
    if !repo.join(".git").exists() {
        common::git(repo, &["init", "-q", "-b", "main"]);
    }
    common::git(repo, &["add", "-A"]);
    common::git(repo, &["commit", "-q", "-m", &format!("version {version}")]);
    common::git(repo, &["rev-parse", "HEAD"])
}

struct Replica {
    process: Running,
    port: u16,
    log: PathBuf,
}

impl Replica {
    /// A replica fetching every 300 ms, checking drift every `drift`.
    fn start(repo: &Path, dir: &Path, name: &str, drift: &str, env: &[(&str, &str)]) -> Replica {
        Self::start_with(repo, dir, name, drift, &["--interval", "300ms"], env)
    }

    /// The same with other arguments (`--interval`, `--webhook-secret-file`).
    fn start_with(
        repo: &Path,
        dir: &Path,
        name: &str,
        drift: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let workdir = dir.join(format!("replica-{name}"));
        std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("{e}"));
        let log = workdir.join("log");
        let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["reconcile", "--repo"])
            .arg(repo)
            .args(["--branch", "main", "--drift-interval", drift])
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--workdir")
            .arg(&workdir)
            .env_remove("NIMBUS_MEMORY_PROVIDER")
            .env("NIMBUS_REPLICA", name)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")))
            .spawn()
            .unwrap_or_else(|e| panic!("nimbus reconcile: {e}"));
        let process = Running(child);
        common::wait_port(port);
        Replica { process, port, log }
    }

    fn readyz(&self) -> String {
        self.get("/readyz")
    }

    /// A page of the replica; empty when it does not answer (it was killed).
    fn get(&self, path: &str) -> String {
        if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            return String::new();
        }
        common::http_within(
            self.port,
            "GET",
            path,
            &[],
            "",
            Some(Duration::from_secs(2)),
        )
        .1
    }

    fn pid(&self) -> i32 {
        self.process.0.id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A webhook receiver on loopback: every event's JSON body, in order.
fn receiver() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (request, mut stream) = common::read_request(stream);
            let event = serde_json::from_slice(&request.body).unwrap_or_default();
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(event);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, got)
}

fn signal(pid: i32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success(), "kill -{name} {pid}");
}

/// Waits up to `seconds` for `check`; panics with `what` and the replicas' logs.
fn wait(seconds: u64, what: &str, replicas: &[&Replica], mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas
                .iter()
                .map(|r| format!("{}\n/status: {}", r.log(), r.get("/status")))
                .collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The files under `out` that hold `version`, with their inodes; and any other entry there
/// (a staged temporary file left behind would be one).
fn files_on_host(dir: &Path, version: u32) -> (Vec<(String, u64)>, Vec<String>) {
    let mut good = Vec::new();
    let mut other = Vec::new();
    for entry in std::fs::read_dir(dir.join("out"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let content = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let index = name.strip_prefix('f').and_then(|i| i.parse::<usize>().ok());
        match index {
            Some(i) if content == format!("version {version} of {i}\n") => {
                good.push((name, entry.metadata().map(|m| m.ino()).unwrap_or(0)));
            }
            _ => other.push(name),
        }
    }
    good.sort();
    (good, other)
}

fn applied_results(pg: &Postgres) -> usize {
    pg.psql("SELECT count(*) FROM nimbus_failover.results WHERE outcome = 'applied'")
        .trim()
        .parse()
        .unwrap_or(0)
}

/// One failover: three replicas, the leader killed (`kill -9`) while it applies 200 Files.
/// Returns how long from the kill to the first change a standby applied.
fn failover_once() -> Duration {
    let pg = Postgres::start();
    let server = sshd::start_sshd();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = repository(&server, dir.path(), 1);
    let url = pg.url();
    // Each change held 60 ms between taking effect and being recorded: the run lasts long
    // enough to be killed in the middle.
    let env = [
        ("NIMBUS_STATE_URL", url.as_str()),
        ("NIMBUS_TEST_PAUSE_AFTER_APPLY_MS", "60"),
    ];
    let a = Replica::start(&repo, dir.path(), "a", "1h", &env);
    wait(30, "replica a to lead", &[&a], || {
        a.readyz().contains("ready: leader (replica a)")
    });
    let b = Replica::start(&repo, dir.path(), "b", "1h", &env);
    let c = Replica::start(&repo, dir.path(), "c", "1h", &env);
    wait(30, "b and c to stand by", &[&a, &b, &c], || {
        b.readyz().contains("standby (replica b; leader a")
            && c.readyz().contains("standby (replica c; leader a")
    });
    // Part of the Files written by the leader, then it dies.
    wait(60, "the leader to write 40 Files", &[&a], || {
        files_on_host(dir.path(), 1).0.len() >= 40
    });
    signal(a.pid(), "KILL");
    let killed = Instant::now();
    let applied_at_kill = applied_results(&pg);
    let (written_before, _) = files_on_host(dir.path(), 1);
    assert!(
        written_before.len() < FILES,
        "the leader finished before it was killed"
    );
    let mut first_change = None;
    wait(
        90,
        "a standby to take over and converge",
        &[&a, &b, &c],
        || {
            if first_change.is_none() && applied_results(&pg) > applied_at_kill {
                first_change = Some(killed.elapsed());
            }
            files_on_host(dir.path(), 1).0.len() == FILES
                && [&b, &c]
                    .iter()
                    .any(|r| r.readyz().contains("ready: leader"))
        },
    );
    let (written, other) = files_on_host(dir.path(), 1);
    assert_eq!(written.len(), FILES);
    assert!(other.is_empty(), "left behind on the host: {other:?}");
    // Exactly once: every File the dead leader had written is the same file (the same
    // inode) after the standby converged: found through the intents journal and recorded,
    // not written again.
    for (name, inode) in &written_before {
        let now = written.iter().find(|(n, _)| n == name).map(|(_, i)| *i);
        assert_eq!(now, Some(*inode), "{name} was written again");
    }
    // One of them leads, the other stands by it.
    let leaders = [&b, &c]
        .iter()
        .filter(|r| r.readyz().contains("ready: leader"))
        .count();
    assert_eq!(leaders, 1, "b: {} c: {}", b.readyz(), c.readyz());
    // Every instance is recorded once, as applied (the standby may still be recording the
    // last of them when the files are all there).
    wait(30, "every instance recorded", &[&a, &b, &c], || {
        pg.psql("SELECT count(*) FROM nimbus_failover.resources")
            .trim()
            == (FILES + 1).to_string()
    });
    first_change.unwrap_or_else(|| killed.elapsed())
}

#[test]
fn a_standby_takes_over_a_killed_leader_and_writes_nothing_twice() {
    let took = failover_once();
    // Within the default lease (10 s) and the standby's next look (a third of it), with room
    // for planning on a busy machine; the figure itself is measured by bench/failover.sh.
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// For bench/failover.sh: five failovers, each figure printed (never a failing time).
#[test]
#[ignore = "a benchmark: bench/failover.sh runs it"]
fn bench_failover() {
    let mut times: Vec<f64> = (0..5)
        .map(|round| {
            let took = failover_once().as_secs_f64();
            println!(
                "failover {}: {took:.1} s from kill -9 to the standby's first applied change",
                round + 1
            );
            took
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "failover median of 5: {:.1} s (best {:.1} s, worst {:.1} s)",
        times[2], times[0], times[4]
    );
}

/// A leader paused (SIGSTOP) past its lease: a standby takes over and applies a newer commit;
/// when the first wakes (SIGCONT), it writes nothing more to the state and stands by.
#[test]
fn a_paused_leader_is_fenced_off_and_steps_down() {
    let pg = Postgres::start();
    let server = sshd::start_sshd();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = repository(&server, dir.path(), 1);
    // A webhook for `leader-changed`: the standby that takes over says so.
    let (hook_port, hook) = receiver();
    let settings = std::fs::read_to_string(repo.join("nimbus.yaml")).unwrap_or_default();
    common::write(
        &repo,
        "nimbus.yaml",
        &format!(
            "{settings}  notifications:\n    - {{name: ops, type: webhook, url: \"http://127.0.0.1:{hook_port}/hook\", events: [leader-changed]}}\n"
        ),
    );
    common::git(&repo, &["commit", "-q", "-am", "notifications"]);
    let url = pg.url();
    let env = [
        ("NIMBUS_STATE_URL", url.as_str()),
        ("NIMBUS_LEADER_LEASE_SECS", "3"),
        ("NIMBUS_TEST_PAUSE_AFTER_APPLY_MS", "40"),
    ];
    let a = Replica::start(&repo, dir.path(), "a", "2s", &env);
    wait(30, "replica a to lead", &[&a], || {
        a.readyz().contains("ready: leader (replica a)")
    });
    let b = Replica::start(&repo, dir.path(), "b", "2s", &env);
    wait(30, "b to stand by", &[&a, &b], || {
        b.readyz().contains("standby")
    });
    wait(60, "a to write 20 Files", &[&a], || {
        files_on_host(dir.path(), 1).0.len() >= 20
    });
    signal(a.pid(), "STOP");
    let a_run: i64 = pg
        .psql("SELECT max(id) FROM nimbus_failover.runs")
        .trim()
        .parse()
        .unwrap_or(0);
    // b takes over, and a newer commit is applied by it.
    wait(60, "b to lead", &[&a, &b], || {
        b.readyz().contains("ready: leader (replica b)")
    });
    wait(30, "leader-changed at the webhook", &[&a, &b], || {
        hook.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|e| {
                e["event"] == "leader-changed"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("b on "))
            })
    });
    commit_files(&repo, dir.path(), 2);
    wait(180, "b to apply version 2", &[&a, &b], || {
        files_on_host(dir.path(), 2).0.len() == FILES
    });
    let results_before_wake = pg.psql(&format!(
        "SELECT count(*) FROM nimbus_failover.results WHERE run = {a_run}"
    ));
    signal(a.pid(), "CONT");
    // a wakes: its writes are refused, it stands by b.
    wait(30, "a to stand by", &[&a, &b], || {
        a.readyz().contains("standby (replica a; leader b")
    });
    std::thread::sleep(Duration::from_secs(2));
    let results_after_wake = pg.psql(&format!(
        "SELECT count(*) FROM nimbus_failover.results WHERE run = {a_run}"
    ));
    assert_eq!(
        results_before_wake,
        results_after_wake,
        "the paused leader wrote to the state after it woke\n{}",
        a.log()
    );
    // A change a had in flight when it was paused may still land on the host as it wakes
    // (fencing guards the state, not the hosts): b's drift check puts version 2 back.
    wait(180, "version 2 on the host again", &[&a, &b], || {
        files_on_host(dir.path(), 2).0.len() == FILES
    });
    assert!(
        a.log().contains("was lost") || a.log().contains("fenced"),
        "{}",
        text(a.log().as_bytes())
    );
}

/// A push's webhook that reaches a standby is verified there and recorded for the leader,
/// which fetches and applies the new commit although its own fetch interval is an hour away.
#[test]
fn a_webhook_at_a_standby_is_acted_on_by_the_leader() {
    let pg = Postgres::start();
    let server = sshd::start_sshd();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = repository(&server, dir.path(), 1);
    let url = pg.url();
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "s3cret-hook-for-tests\n").unwrap_or_else(|e| panic!("{e}"));
    let secret_text = secret.display().to_string();
    let env = [
        ("NIMBUS_STATE_URL", url.as_str()),
        ("NIMBUS_LEADER_LEASE_SECS", "3"),
    ];
    let hourly = [
        "--interval",
        "1h",
        "--webhook-secret-file",
        secret_text.as_str(),
    ];
    let a = Replica::start_with(&repo, dir.path(), "a", "1h", &hourly, &env);
    // Generous deadlines: 200 Files over SSH take a minute on a loaded 2-core CI machine.
    wait(180, "a to lead and apply version 1", &[&a], || {
        a.readyz().contains("ready: leader (replica a)")
            && files_on_host(dir.path(), 1).0.len() == FILES
    });
    let b = Replica::start_with(&repo, dir.path(), "b", "1h", &hourly, &env);
    wait(30, "b to stand by", &[&a, &b], || {
        b.readyz().contains("standby (replica b; leader a")
    });
    commit_files(&repo, dir.path(), 2);
    let body = r#"{"ref":"refs/heads/main"}"#;
    let (code, said) = common::http(
        b.port,
        "POST",
        "/hooks/git",
        &[(
            "X-Hub-Signature-256",
            &common::sign("s3cret-hook-for-tests", body),
        )],
        body,
    );
    assert_eq!(code, 202, "{said}");
    assert!(said.contains("recorded for the leader"), "{said}");
    // A forged one is refused there as anywhere.
    let (code, _) = common::http(
        b.port,
        "POST",
        "/hooks/git",
        &[("X-Hub-Signature-256", "sha256=00")],
        body,
    );
    assert_eq!(code, 401);
    wait(180, "the leader to apply version 2", &[&a, &b], || {
        files_on_host(dir.path(), 2).0.len() == FILES
    });
}
