//! `nimbus` with its state in PostgreSQL, end to end: a real PostgreSQL server
//! (`common::pg`) and a real sshd host. Credentials come from the environment and never
//! appear in output; a local apply is refused while a daemon reconciles the same state (and
//! an override is recorded); `nimbus state migrate` moves a state between backends.

use crate::common::{self, pg::Postgres, text};
use crate::sshd;

use std::path::Path;
use std::process::Output;

/// A repository named `pgtest` with one host (the test sshd) and `files` Files under `out`.
fn repository(server: &sshd::Sshd, files: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let target = server.target();
    common::write(
        dir.path(),
        "nimbus.yaml",
        &format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: pgtest}}\nspec:\n  ssh:\n    identityFile: {}\n    connectTimeout: 3\n",
            target.identity.display()
        ),
    );
    common::write(
        dir.path(),
        "hosts.yaml",
        &format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: local}}\nspec: {{address: 127.0.0.1, port: {}, user: {}, hostKey: \"{}\"}}\n",
            server.port,
            target.user,
            target.host_key.trim()
        ),
    );
    let out = dir.path().join("out");
    let mut text = String::new();
    for i in 0..files {
        text.push_str(&format!(
            "---\napiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {{name: f{i}}}\nspec: {{host: local, path: {}/f{i}, content: \"file {i}\\n\"}}\n",
            out.display()
        ));
    }
    common::write(dir.path(), "files.yaml", &text);
    dir
}

/// Output as one line of words (miette wraps long messages in its box).
fn flat(bytes: &[u8]) -> String {
    text(bytes)
        .split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every output of the test so far holds no password.
fn no_password(outputs: &[&Output]) {
    for output in outputs {
        let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            !all.contains(Postgres::PASSWORD),
            "a password in output: {all}"
        );
    }
}

#[test]
fn apply_keeps_state_in_postgres_with_credentials_from_the_environment() {
    let pg = Postgres::start();
    let server = sshd::start_sshd();
    let repo = repository(&server, 2);
    let url = pg.url_without_password();
    let with_password = [
        ("NIMBUS_STATE_URL", url.as_str()),
        ("PGPASSWORD", Postgres::PASSWORD),
    ];
    let apply = common::nimbus_with(
        &["apply", "--auto-approve", "."],
        repo.path(),
        &with_password,
    );
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}{}",
        text(&apply.stdout),
        text(&apply.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("out/f1")).unwrap_or_default(),
        "file 1\n"
    );
    // State is in PostgreSQL, in the repository's schema, and nowhere on disk.
    assert!(!repo.path().join(".nimbus/state.db").exists());
    assert_eq!(
        pg.psql("SELECT count(*) FROM nimbus_pgtest.resources")
            .trim(),
        "3"
    );
    let plan = common::nimbus_with(
        &["plan", "--detailed-exitcode", "."],
        repo.path(),
        &with_password,
    );
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));

    // The password from ~/.pgpass (PGPASSFILE), private as libpq wants it.
    let pgpass = repo.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{}:postgres:nimbus:{}\n",
            pg.port,
            Postgres::PASSWORD
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    let pgpass_text = pgpass.display().to_string();
    let list = common::nimbus_with(
        &["state", "list", "."],
        repo.path(),
        &[
            ("NIMBUS_STATE_URL", url.as_str()),
            ("PGPASSFILE", pgpass_text.as_str()),
        ],
    );
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    assert!(
        text(&list.stdout).contains("File/f0@local"),
        "{}",
        text(&list.stdout)
    );

    // A wrong password: a clear error naming the server, never the password.
    let wrong = common::nimbus_with(
        &["plan", "."],
        repo.path(),
        &[
            ("NIMBUS_STATE_URL", url.as_str()),
            ("PGPASSWORD", "not-the-password"),
        ],
    );
    let said = format!("{} {}", flat(&wrong.stdout), flat(&wrong.stderr));
    assert_eq!(wrong.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("127.0.0.1:{}/postgres", pg.port)),
        "{said}"
    );
    assert!(said.contains("password authentication failed"), "{said}");
    assert!(!said.contains("not-the-password"), "{said}");
    no_password(&[&apply, &plan, &list, &wrong]);
}

#[test]
fn a_local_apply_is_refused_while_a_daemon_reconciles_the_same_state() {
    let pg = Postgres::start();
    let server = sshd::start_sshd();
    let repo = repository(&server, 1);
    let url = pg.url();
    let env = [("NIMBUS_STATE_URL", url.as_str())];
    // A daemon at work on this state, as it tells it.
    let location = nimbus::state::StateLocation::Postgres(Box::new(
        nimbus::state::postgres::Target::parse(&url, "nimbus_pgtest")
            .unwrap_or_else(|e| panic!("{e}")),
    ));
    let store = nimbus::state::StateStore::open(&location).unwrap_or_else(|e| panic!("{e:?}"));
    store
        .announce_daemon(&nimbus::state::DaemonInfo {
            replica: "ci-runner-7:4242".into(),
            host: "ci-runner-7".into(),
            pid: 4242,
            branch: "main".into(),
            url: Some("http://10.1.2.3:8080".into()),
            since: nimbus::state::now(),
            seen_until: nimbus::state::now() + 300,
        })
        .unwrap_or_else(|e| panic!("{e:?}"));

    let refused = common::nimbus_with(&["apply", "--auto-approve", "."], repo.path(), &env);
    let said = flat(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("nimbus reconcile ci-runner-7:4242 on ci-runner-7")
            && said.contains("--override-daemon"),
        "{said}"
    );
    assert!(!repo.path().join("out/f0").exists());
    // Planning does not take the lock: it works.
    let plan = common::nimbus_with(&["plan", "--detailed-exitcode", "."], repo.path(), &env);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "{}{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );

    let forced = common::nimbus_with(
        &["apply", "--auto-approve", "--override-daemon", "."],
        repo.path(),
        &[("NIMBUS_STATE_URL", url.as_str()), ("USER", "alice")],
    );
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    assert!(
        text(&forced.stderr).contains("warning: override:"),
        "{}",
        text(&forced.stderr)
    );
    let history = common::nimbus_with(&["state", "history", "."], repo.path(), &env);
    let shown = text(&history.stdout);
    assert!(
        shown.contains("override: nimbus apply by alice@")
            && shown.contains("while nimbus reconcile ci-runner-7:4242"),
        "{shown}"
    );
    // Once the daemon's word runs out (it stopped), applies go on as before.
    store
        .retire_daemon("ci-runner-7:4242")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let again = common::nimbus_with(&["apply", "--auto-approve", "."], repo.path(), &env);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
}

#[test]
fn state_migrate_moves_a_sqlite_state_into_postgres_and_back() {
    let pg = Postgres::start();
    let server = sshd::start_sshd();
    let repo = repository(&server, 2);
    let apply = common::nimbus(&["apply", "--auto-approve", "."], repo.path());
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stderr));
    let url = pg.url();
    let moved = common::nimbus(&["state", "migrate", "--to", &url, "."], repo.path());
    let said = text(&moved.stderr);
    assert_eq!(moved.status.code(), Some(0), "{said}");
    assert!(said.contains("Copied 3 instances, 1 runs"), "{said}");
    no_password(&[&moved]);
    // The state there plans the same: nothing to do, the history kept.
    let env = [("NIMBUS_STATE_URL", url.as_str())];
    let plan = common::nimbus_with(&["plan", "--detailed-exitcode", "."], repo.path(), &env);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
    let history = common::nimbus_with(&["state", "history", "--json", "."], repo.path(), &env);
    assert!(
        text(&history.stdout).contains("\"command\": \"apply\""),
        "{}",
        text(&history.stdout)
    );
    // Not into a state that holds one.
    let again = common::nimbus(&["state", "migrate", "--to", &url, "."], repo.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(
        flat(&again.stderr).contains("already holds a state"),
        "{}",
        text(&again.stderr)
    );
    // And back into a new SQLite file.
    let back = repo.path().join("back.db");
    let back_text = back.display().to_string();
    let returned = common::nimbus_with(
        &["state", "migrate", "--to", &back_text, "."],
        repo.path(),
        &env,
    );
    assert_eq!(
        returned.status.code(),
        Some(0),
        "{}",
        text(&returned.stderr)
    );
    let from_file =
        nimbus::state::StateStore::open(Path::new(&back)).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(from_file.records().map(|r| r.len()).unwrap_or(0), 3);
    assert_eq!(from_file.history().map(|h| h.len()).unwrap_or(0), 1);
}

/// The password of a PostgreSQL state as an age secret in the repository
/// (`state: {url, passwordSecret}`): decrypted in memory with the repository's identity, never
/// shown; no variable of the environment needed.
#[test]
fn the_state_password_can_be_an_age_secret_of_the_repository() {
    let pg = Postgres::start();
    let server = sshd::start_sshd();
    let repo = repository(&server, 1);
    let identity = server.target().identity.clone();
    common::write(
        repo.path(),
        "nimbus.yaml",
        &format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: pgtest}}\nspec:\n  ssh:\n    identityFile: {key}\n    connectTimeout: 3\n  secrets:\n    recipients: [\"{public}\"]\n    identityFile: {key}\n  state:\n    url: {url}\n    passwordSecret: pg-password\n",
            key = identity.display(),
            public = common::age_recipient(&identity),
            url = pg.url_without_password(),
        ),
    );
    common::encrypt_secret(repo.path(), "pg-password", Postgres::PASSWORD);
    let apply = common::nimbus(&["apply", "--auto-approve", "."], repo.path());
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply.stderr));
    assert_eq!(
        pg.psql("SELECT count(*) FROM nimbus_pgtest.resources")
            .trim(),
        "2"
    );
    assert!(!repo.path().join(".nimbus/state.db").exists());
    no_password(&[&apply]);
    // Without the secret's file: a clear error at the Repository's line.
    std::fs::remove_file(repo.path().join("secrets/pg-password.age"))
        .unwrap_or_else(|e| panic!("{e}"));
    let invalid = common::nimbus(&["validate", "."], repo.path());
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        flat(&invalid.stderr).contains("secret `pg-password` does not exist"),
        "{}",
        text(&invalid.stderr)
    );
}

/// PostgreSQL restarted in the middle of an apply: that run fails cleanly (an error naming
/// the state, exit 1, no panic), and the next apply finds the interrupted changes and
/// converges, every File written.
#[test]
fn a_database_restart_mid_apply_fails_the_run_and_the_next_converges() {
    let mut pg = Postgres::start();
    let server = sshd::start_sshd();
    let repo = repository(&server, 40);
    let url = pg.url();
    let slow = [
        ("NIMBUS_STATE_URL", url.as_str()),
        ("NIMBUS_TEST_PAUSE_AFTER_APPLY_MS", "150"),
    ];
    let apply = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["apply", "--auto-approve", "--parallelism", "2", "."])
        .current_dir(repo.path())
        .envs(slow.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let written = |repo: &Path| {
        std::fs::read_dir(repo.join("out"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while written(repo.path()) < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the apply did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    pg.restart();
    let output = apply.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert!(said.contains("state"), "{said}");
    let again = common::nimbus_with(
        &["apply", "--auto-approve", "."],
        repo.path(),
        &[("NIMBUS_STATE_URL", url.as_str())],
    );
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );
    assert_eq!(written(repo.path()), 40);
    let plan = common::nimbus_with(
        &["plan", "--detailed-exitcode", "."],
        repo.path(),
        &[("NIMBUS_STATE_URL", url.as_str())],
    );
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
    no_password(&[&output, &again]);
}
