//! The state store, the same tests on both backends: SQLite (a file) and PostgreSQL (a real
//! server made by the test, `common::pg`). Records, intents, runs and their results, history,
//! taint, the serial, the secrets' key, the lock and its fencing token, and moving a state from
//! one backend to the other.

use crate::common::pg::Postgres;
use nimbus::state::{StateError, StateLocation, StateStore, postgres::Target};
use nimbus_planner::plan::{Action, Change};
use nimbus_schemas::Kind;
use serde_json::json;
use std::time::Duration;

/// Every backend a test runs on: a SQLite file, and a schema of its own in `pg`.
fn backends(pg: &Postgres, dir: &std::path::Path, name: &str) -> Vec<StateLocation> {
    vec![
        StateLocation::File(dir.join(format!("{name}.db"))),
        StateLocation::Postgres(Box::new(
            Target::parse(&pg.url(), &format!("test_{name}")).unwrap_or_else(|e| panic!("{e:?}")),
        )),
    ]
}

fn file_change(name: &str, action: Action) -> Change {
    Change::of(
        Kind::File,
        &format!("File/{name}"),
        Some("web-1"),
        action,
        None,
        Some(&json!({"path": format!("/etc/{name}"), "content": "x"})),
    )
}

#[test]
fn the_store_behaves_the_same_on_both_backends() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e:?}"));
    for location in backends(&pg, dir.path(), "same") {
        let shown = location.to_string();
        let mut store = StateStore::open(&location).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        assert_eq!(store.serial().unwrap_or(99), 0, "{shown}");
        assert!(store.is_empty().unwrap_or(false), "{shown}");
        let key = store.secret_key().unwrap_or_default();
        assert_eq!(key.len(), 32, "{shown}");

        let run = store
            .begin_run("apply", Some("abc123"))
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        let motd = file_change("motd", Action::Create);
        store
            .intend(run, &motd)
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        assert_eq!(store.intents().map(|i| i.len()).unwrap_or(0), 1, "{shown}");
        store
            .complete(run, &motd, "ssh", &json!({"id": 7}))
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        let banner = file_change("banner", Action::Create);
        store
            .intend(run, &banner)
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        store
            .taint(run, &banner, "ssh", "made, then failed")
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        let issue = file_change("issue", Action::Create);
        store
            .fail(run, &issue, "failed", "permission denied")
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        store
            .end_run(run, "failed")
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));

        assert!(store.intents().unwrap_or_default().is_empty(), "{shown}");
        assert_eq!(store.serial().unwrap_or(0), 2, "{shown}");
        let (records, serial) = store
            .snapshot()
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        assert_eq!(serial, 2);
        let addresses: Vec<&str> = records.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(
            addresses,
            ["File/banner@web-1", "File/motd@web-1"],
            "{shown}"
        );
        assert_eq!(records[0].tainted.as_deref(), Some("made, then failed"));
        let motd_stored = store
            .resource("File/motd@web-1")
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"))
            .unwrap_or_else(|| panic!("{shown}: no motd"));
        assert_eq!(motd_stored.record.outputs, json!({"id": 7}));
        assert_eq!(motd_stored.target.as_deref(), Some("web-1"));

        let history = store.history().unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        assert_eq!(history.len(), 1, "{shown}");
        assert_eq!(history[0].revision.as_deref(), Some("abc123"));
        assert_eq!(history[0].outcome.as_deref(), Some("failed"));
        let outcomes: Vec<(&str, &str)> = history[0]
            .results
            .iter()
            .map(|r| (r.address.as_str(), r.outcome.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("File/motd@web-1", "applied"),
                ("File/banner@web-1", "failed"),
                ("File/issue@web-1", "failed")
            ],
            "{shown}"
        );
        let row = store
            .run(run)
            .unwrap_or_default()
            .unwrap_or_else(|| panic!("{shown}: no run"));
        assert_eq!((row.applied, row.failed, row.other), (1, 2, 0), "{shown}");
        assert_eq!(store.recent_runs(5).unwrap_or_default().len(), 1);
        assert_eq!(store.run_results(run).unwrap_or_default().len(), 3);
        assert_eq!(
            store
                .results_of("File/motd@web-1", 5)
                .unwrap_or_default()
                .len(),
            1
        );
        assert_eq!(store.last_results().unwrap_or_default().len(), 3);

        assert!(
            store.remove("File/banner@web-1").unwrap_or(false),
            "{shown}"
        );
        assert!(
            !store.remove("File/banner@web-1").unwrap_or(true),
            "{shown}"
        );
        assert_eq!(store.serial().unwrap_or(0), 3, "{shown}");
        drop(store);
        // Opened again: the same key, the same records.
        let store = StateStore::open(&location).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        assert_eq!(store.secret_key().unwrap_or_default(), key, "{shown}");
        assert_eq!(store.records().map(|r| r.len()).unwrap_or(0), 1, "{shown}");
    }
}

/// The lock is a lease with a token that only grows: a holder whose lease ran out while
/// another took over can write nothing more, and is told who holds it now.
#[test]
fn a_holder_past_its_lease_is_fenced_off_by_the_next() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e:?}"));
    for location in backends(&pg, dir.path(), "fence") {
        let shown = location.to_string();
        let mut first = StateStore::open(&location).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        first
            .acquire_lock("first", Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        let token = first.token().unwrap_or_else(|| panic!("{shown}: no token"));
        let run = first
            .begin_run("apply", None)
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        // Paused past its lease (the same process: its lease running out is what counts).
        std::thread::sleep(Duration::from_millis(2100));
        let mut second = StateStore::open(&location).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        let previous = second
            .acquire_lock("second", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        assert_eq!(previous.map(|p| p.token), Some(token), "{shown}");
        let newer = second.token().unwrap_or(0);
        assert!(newer > token, "{shown}: {newer} after {token}");
        // The first wakes up: nothing it writes lands.
        let refused = first.intend(run, &file_change("late", Action::Create));
        match refused {
            Err(StateError::Fenced { mine, holder }) => {
                assert_eq!(mine, token);
                assert_eq!((holder.holder.as_str(), holder.token), ("second", newer));
            }
            other => panic!("{shown}: a fenced write was {other:?}"),
        }
        assert!(first.intents().unwrap_or_default().is_empty(), "{shown}");
        assert!(
            first
                .renew_lock(Duration::from_secs(30))
                .is_err_and(|e| e.is_fenced())
        );
        assert!(
            first
                .complete(
                    run,
                    &file_change("late", Action::Create),
                    "ssh",
                    &json!(null)
                )
                .is_err_and(|e| e.is_fenced()),
            "{shown}"
        );
        assert!(first.records().unwrap_or_default().is_empty(), "{shown}");
        // The new holder writes; its release leaves the token where it was, so the next holder
        // gets a greater one still.
        let run = second
            .begin_run("apply", None)
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        second
            .complete(
                run,
                &file_change("motd", Action::Create),
                "ssh",
                &json!(null),
            )
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        second
            .release_lock()
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        assert!(
            second
                .intend(run, &file_change("after", Action::Create))
                .is_err_and(|e| matches!(e, StateError::Released { .. })),
            "{shown}"
        );
        let mut third = StateStore::open(&location).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        third
            .acquire_lock("third", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        assert!(third.token().unwrap_or(0) > newer, "{shown}");
        // A live holder's lease is respected.
        let mut fourth = StateStore::open(&location).unwrap_or_else(|e| panic!("{shown}: {e:?}"));
        match fourth.acquire_lock("fourth", Duration::from_secs(30)) {
            Err(StateError::Locked(info)) => assert_eq!(info.holder, "third", "{shown}"),
            other => panic!("{shown}: a live lease was {other:?}"),
        }
    }
}

/// `copy_into` moves everything: SQLite to PostgreSQL and back, the serial, history, taint
/// and outputs kept; a target that holds a state already is refused.
#[test]
fn a_state_moves_between_backends_whole() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e:?}"));
    let sqlite = StateLocation::File(dir.path().join("from.db"));
    let mut source = StateStore::open(&sqlite).unwrap_or_else(|e| panic!("{e:?}"));
    let key = source.secret_key().unwrap_or_default();
    for i in 0..3 {
        let run = source
            .begin_run("apply", Some(&format!("rev{i}")))
            .unwrap_or(0);
        source
            .complete(
                run,
                &file_change(&format!("f{i}"), Action::Create),
                "ssh",
                &json!({"n": i}),
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        source
            .end_run(run, "applied")
            .unwrap_or_else(|e| panic!("{e:?}"));
    }
    let run = source.begin_run("apply", None).unwrap_or(0);
    source
        .taint(run, &file_change("bad", Action::Create), "ssh", "boom")
        .unwrap_or_else(|e| panic!("{e:?}"));
    // Where resources come from (modules), and a rename (a Moved record, `state mv`).
    let modules: std::collections::BTreeMap<String, String> =
        [("File/f1".to_owned(), "module.web[a]".to_owned())].into();
    source
        .record_layout(&[], &modules)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(matches!(
        source.rename("File/f2", "File/f0"),
        Err(StateError::MoveOnto { .. })
    ));
    assert_eq!(source.rename("File/f2", "File/f9").unwrap_or(0), 1);
    assert_eq!(source.rename("File/gone", "File/f8").unwrap_or(1), 0);
    let postgres = StateLocation::Postgres(Box::new(
        Target::parse(&pg.url(), "moved").unwrap_or_else(|e| panic!("{e:?}")),
    ));
    let target = StateStore::open(&postgres).unwrap_or_else(|e| panic!("{e:?}"));
    let count = source
        .copy_into(&target)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((count.instances, count.runs, count.results), (4, 4, 4));
    let same = |a: &StateStore, b: &StateStore| {
        assert_eq!(a.serial().unwrap_or(0), b.serial().unwrap_or(1));
        assert_eq!(
            a.records().unwrap_or_default(),
            b.records().unwrap_or_default()
        );
        assert_eq!(
            a.history().unwrap_or_default(),
            b.history().unwrap_or_default()
        );
        assert_eq!(
            a.secret_key().unwrap_or_default(),
            b.secret_key().unwrap_or_default()
        );
        assert_eq!(
            a.modules().unwrap_or_default(),
            b.modules().unwrap_or_default()
        );
    };
    same(&source, &target);
    assert_eq!(target.secret_key().unwrap_or_default(), key);
    assert_eq!(target.modules().unwrap_or_default(), modules);
    assert!(
        target
            .records()
            .unwrap_or_default()
            .iter()
            .any(|r| r.address == "File/f9@web-1"),
        "the rename was copied"
    );
    // A new run there follows the copied ones.
    let next = target.begin_run("apply", None).unwrap_or(0);
    assert_eq!(next, run + 1);
    // Refused into a state that is not empty.
    assert!(matches!(
        source.copy_into(&target),
        Err(StateError::Location(_))
    ));
    // And back, to a new file.
    let back = StateStore::open(StateLocation::File(dir.path().join("back.db")))
        .unwrap_or_else(|e| panic!("{e:?}"));
    target.copy_into(&back).unwrap_or_else(|e| panic!("{e:?}"));
    same(&target, &back);
}

/// PostgreSQL restarted under a store: the write that saw it go fails cleanly (an error, not
/// a hang or a panic), and the next one connects again and lands.
#[test]
fn a_restarted_server_fails_one_write_and_the_next_lands() {
    let mut pg = Postgres::start();
    let location = StateLocation::Postgres(Box::new(
        Target::parse(&pg.url(), "restart").unwrap_or_else(|e| panic!("{e:?}")),
    ));
    let mut store = StateStore::open(&location).unwrap_or_else(|e| panic!("{e:?}"));
    let run = store
        .begin_run("apply", None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    pg.restart();
    let first = store.complete(run, &file_change("a", Action::Create), "ssh", &json!(null));
    let landed = match first {
        Err(StateError::Database { .. }) => 0,
        Ok(()) => 1,
        Err(other) => panic!("not a database error: {other:?}"),
    };
    store
        .complete(run, &file_change("b", Action::Create), "ssh", &json!(null))
        .unwrap_or_else(|e| panic!("after the restart: {e}"));
    assert_eq!(store.records().map(|r| r.len()).unwrap_or(0), landed + 1);
}

/// TLS as libpq's `sslmode` says, against a server whose certificate a test authority signed:
/// `require` encrypts without checking it; `verify-ca` and `verify-full` check it against
/// `sslrootcert` (the latter the host name too), and refuse a server another authority vouches
/// for.
#[test]
fn tls_follows_sslmode_against_a_real_server() {
    let pg = Postgres::start_tls();
    let root = pg
        .certificate
        .clone()
        .unwrap_or_else(|| panic!("no certificate"));
    let url = |mode: &str, extra: &str| {
        format!(
            "postgres://nimbus:{}@127.0.0.1:{}/postgres?sslmode={mode}{extra}",
            Postgres::PASSWORD,
            pg.port
        )
    };
    let encrypted = || {
        pg.psql(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE s.ssl AND a.usename = 'nimbus'",
        )
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
    };
    for (mode, extra) in [
        ("require", String::new()),
        ("verify-full", format!("&sslrootcert={}", root.display())),
        ("verify-ca", format!("&sslrootcert={}", root.display())),
    ] {
        let location = StateLocation::Postgres(Box::new(
            Target::parse(
                &url(mode, &extra),
                &format!("tls_{}", mode.replace('-', "_")),
            )
            .unwrap_or_else(|e| panic!("{e}")),
        ));
        let store = StateStore::open(&location).unwrap_or_else(|e| panic!("{mode}: {e:?}"));
        assert_eq!(store.serial().unwrap_or(99), 0, "{mode}");
        assert!(encrypted() >= 1, "{mode}: the connection is not encrypted");
        drop(store);
    }
    // Another authority's certificate as the root: verify-full refuses the server.
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=someone-else"])
        .arg("-keyout")
        .arg(other.path().join("k.pem"))
        .arg("-out")
        .arg(other.path().join("c.pem"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(made.status.success());
    let wrong = StateLocation::Postgres(Box::new(
        Target::parse(
            &url(
                "verify-full",
                &format!("&sslrootcert={}", other.path().join("c.pem").display()),
            ),
            "tls_wrong",
        )
        .unwrap_or_else(|e| panic!("{e}")),
    ));
    match StateStore::open(&wrong) {
        Err(StateError::Database { source, path }) => {
            let chain = format!("{source:?}");
            assert!(
                chain.contains("certificate") || chain.contains("Certificate"),
                "{chain}"
            );
            assert!(!path.contains(Postgres::PASSWORD), "{path}");
        }
        other => panic!("a server another authority vouches for was {other:?}"),
    }
}
