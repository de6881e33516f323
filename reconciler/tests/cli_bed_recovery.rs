//! Crash recovery on real hosts (issue 10): `nimbus apply PLANFILE` and the `nimbus reconcile`
//! daemon, each killed with SIGKILL after Files took effect on a test-bed host (a Debian
//! container booting systemd, with its own sshd in its own network namespace) but before
//! state recorded them. Going on along the same path recovers the intents, so that nimbus
//! owns those Files: removing the manifests then prunes every one of them from the host.

use crate::common;
use crate::sshd;
use common::{Running, git, ok, text};
use sshd::bed as hostbed;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const FILES: usize = 6;

/// A repository of one Host and `FILES` Files under /srv/recovery on it.
fn write_repo(bed: &hostbed::Bed, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&bed.known_hosts, dir.join("known_hosts")).unwrap_or_else(|e| panic!("{e}"));
    let write = |name: &str, body: String| {
        std::fs::write(dir.join(name), body).unwrap_or_else(|e| panic!("{name}: {e}"));
    };
    write(
        "nimbus.yaml",
        format!(
            "{HEADER}kind: Repository\nmetadata: {{name: recovery}}\nspec:\n  ssh:\n    identityFile: {}\n    knownHosts: known_hosts\n    connectTimeout: 5\n",
            bed.key.display()
        ),
    );
    let host = &bed.hosts[0];
    write(
        "hosts.yaml",
        format!(
            "{HEADER}kind: Host\nmetadata: {{name: {}}}\nspec: {{address: {}, user: root}}\n",
            host.name, host.address
        ),
    );
    let files: Vec<String> = (0..FILES)
        .map(|i| {
            format!(
                "{HEADER}kind: File\nmetadata: {{name: f{i}}}\nspec: {{host: {}, path: /srv/recovery/f{i}, content: \"file {i}\\n\"}}\n",
                host.name
            )
        })
        .collect();
    write("files.yaml", files.join("---\n"));
}

/// The Files present on the host, read from the container's file system (not counting a
/// write's hidden temporary files).
fn files_on_host(bed: &hostbed::Bed) -> usize {
    std::fs::read_dir(bed.hosts[0].upper.join("srv/recovery"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

fn wait_until(what: &str, seconds: u64, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn nimbus(dir: &Path, args: &[&str]) -> Output {
    common::nimbus_with(args, dir, &[])
}

#[test]
fn a_saved_plan_apply_killed_on_real_hosts_is_recovered_and_pruned() {
    let bed = hostbed::Bed::up(1);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = work.path().join("repo");
    write_repo(&bed, &repo);
    let plan = |name: &str, extra: &[&str]| {
        let path = work.path().join(name).display().to_string();
        let mut args = vec!["plan", "--out", path.as_str()];
        args.extend_from_slice(extra);
        args.push(".");
        let planned = ok(&nimbus(&repo, &args));
        (path, planned)
    };
    let (first, _) = plan("first.json", &[]);
    let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["apply", "--parallelism", "1", &first])
        .current_dir(&repo)
        .env("NIMBUS_TEST_PAUSE_AFTER_APPLY_MS", "5000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nimbus: {e}"));
    let mut apply = Running(child);
    // A File has reached the host; its result is not recorded (the pause holds it).
    wait_until("a File to reach the host", 60, || files_on_host(&bed) >= 1);
    apply
        .0
        .kill()
        .unwrap_or_else(|e| panic!("cannot kill: {e}")); // SIGKILL
    let _ = apply.0.wait();
    let landed = files_on_host(&bed);
    assert!((1..FILES).contains(&landed), "{landed} Files landed");

    // The saved-plan path again: the intent is recovered, the rest applied.
    let (second, planned) = plan("second.json", &[]);
    assert!(
        planned.contains(&format!("{} to add", FILES - landed)),
        "{planned}"
    );
    let applied = nimbus(&repo, &["apply", &second]);
    ok(&applied);
    assert!(
        text(&applied.stderr).contains("recovered"),
        "{}",
        text(&applied.stderr)
    );
    assert_eq!(files_on_host(&bed), FILES);

    // The Files' manifests removed: a saved plan prunes every one, the killed run's too.
    std::fs::remove_file(repo.join("files.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let (third, planned) = plan("third.json", &["--allow-deletes"]);
    assert!(
        planned.contains(&format!("{FILES} to destroy")),
        "{planned}"
    );
    ok(&nimbus(&repo, &["apply", &third]));
    assert_eq!(files_on_host(&bed), 0, "Files left orphaned on the host");
    // Nothing else either: no temporary file of an interrupted write.
    assert_eq!(bed.ssh_ok(&bed.hosts[0].name, "ls -A /srv/recovery"), "");
}

#[test]
fn the_reconcile_daemon_killed_on_real_hosts_recovers_and_prunes() {
    let bed = hostbed::Bed::up(1);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // A git server on loopback, serving a bare repository seeded from a working clone.
    let clone = work.path().join("work");
    write_repo(&bed, &clone);
    let server = common::serve_clone(work.path(), &clone, "files");
    let (url, bare) = (&server.url, &server.bare);
    let workdir = work.path().join("daemon");
    let daemon = |pause: &str| -> (Running, PathBuf) {
        let port = sshd::free_port();
        std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("{e}"));
        let log = workdir.join(format!("log-{port}"));
        let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["reconcile", "--repo", url, "--branch", "main"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--interval", "1s", "--drift-interval", "1h"])
            .arg("--workdir")
            .arg(&workdir)
            .env("NIMBUS_TEST_PAUSE_AFTER_APPLY_MS", pause)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")))
            .spawn()
            .unwrap_or_else(|e| panic!("nimbus reconcile: {e}"));
        (Running(child), log)
    };

    let (mut first, log) = daemon("5000");
    wait_until("a File to reach the host", 90, || files_on_host(&bed) >= 1);
    first
        .0
        .kill()
        .unwrap_or_else(|e| panic!("cannot kill: {e}")); // SIGKILL
    let _ = first.0.wait();
    let landed = files_on_host(&bed);
    assert!(
        (1..=FILES).contains(&landed),
        "{landed} Files landed\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // The Files' manifests removed and pushed; the daemon restarted on the same workdir
    // recovers the killed run's intents, then prunes every File it owns.
    git(&clone, &["rm", "-q", "files.yaml"]);
    git(&clone, &["commit", "-q", "-m", "remove the files"]);
    git(&clone, &["push", "-q", bare, "main"]);
    let (_second, log) = daemon("0");
    let deadline = Instant::now() + Duration::from_secs(90);
    while files_on_host(&bed) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} Files left orphaned on the host:\n{}\n{}",
            files_on_host(&bed),
            bed.ssh_ok(&bed.hosts[0].name, "ls -A /srv/recovery"),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing else either: the interrupted batch of writes left no temporary file.
    assert_eq!(bed.ssh_ok(&bed.hosts[0].name, "ls -A /srv/recovery"), "");
}
