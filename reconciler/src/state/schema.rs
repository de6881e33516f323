//! The state's tables, as each backend writes them, and opening them: SQLite's file (private,
//! WAL, migrated by `PRAGMA user_version`) and PostgreSQL's schema (migrated by
//! `schema_version`, one opener at a time).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::db::{self, Db, DbError, P, Tx};

/// SQLite's versioned migrations; `PRAGMA user_version` says how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('serial', '0');
     CREATE TABLE resources (
        address TEXT PRIMARY KEY, kind TEXT NOT NULL, provider TEXT NOT NULL, target TEXT,
        applied TEXT NOT NULL, outputs TEXT NOT NULL DEFAULT 'null', owned INTEGER NOT NULL,
        protected INTEGER NOT NULL, keep_on_removal INTEGER NOT NULL,
        depends_on TEXT NOT NULL DEFAULT '[]', updated_at INTEGER NOT NULL);
     CREATE TABLE intents (
        address TEXT PRIMARY KEY, run INTEGER NOT NULL, action TEXT NOT NULL,
        change TEXT NOT NULL, started_at INTEGER NOT NULL);
     CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL, revision TEXT,
        user TEXT NOT NULL, host TEXT NOT NULL, started_at INTEGER NOT NULL,
        ended_at INTEGER, outcome TEXT);
     CREATE TABLE results (
        run INTEGER NOT NULL, address TEXT NOT NULL, action TEXT NOT NULL,
        outcome TEXT NOT NULL, message TEXT, at INTEGER NOT NULL);
     CREATE TABLE lock (
        id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, pid INTEGER NOT NULL,
        host TEXT NOT NULL, since INTEGER NOT NULL, lease_until INTEGER NOT NULL);",
    // 2: the status page reads results by run and by instance.
    "CREATE INDEX results_by_run ON results (run);
     CREATE INDEX results_by_address ON results (address);",
    // 3: an instance made by an apply that failed is kept, tainted with the reason.
    "ALTER TABLE resources ADD COLUMN tainted TEXT;",
    // 4: the lock's fencing token (the last one given is kept in meta, so it only grows),
    // a run's note (an override, and who used it), the reconcile daemons at work, which of
    // them leads (a lease with its own token), and webhooks a standby received for the leader.
    "ALTER TABLE lock ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
     INSERT INTO meta (key, value) VALUES ('lock_token', '0');
     INSERT INTO meta (key, value) VALUES ('leader_token', '0');
     INSERT INTO meta (key, value) VALUES ('wake_requests', '0');
     ALTER TABLE runs ADD COLUMN note TEXT;
     CREATE TABLE daemons (
        replica TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
        branch TEXT NOT NULL, url TEXT, since INTEGER NOT NULL, seen_until INTEGER NOT NULL);
     CREATE TABLE leadership (
        id INTEGER PRIMARY KEY CHECK (id = 1), replica TEXT NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, url TEXT, token INTEGER NOT NULL, since INTEGER NOT NULL,
        lease_until INTEGER NOT NULL);",
    // 5: where each resource comes from (its module path), for plans to show moves.
    "CREATE TABLE modules (address TEXT PRIMARY KEY, module TEXT NOT NULL);",
];

/// PostgreSQL's migrations, the same schema in its types (`schema_version` counts them).
const PG_MIGRATIONS: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('serial', '0');
     CREATE TABLE resources (
        address TEXT PRIMARY KEY, kind TEXT NOT NULL, provider TEXT NOT NULL, target TEXT,
        applied TEXT NOT NULL, outputs TEXT NOT NULL DEFAULT 'null', owned BIGINT NOT NULL,
        protected BIGINT NOT NULL, keep_on_removal BIGINT NOT NULL,
        depends_on TEXT NOT NULL DEFAULT '[]', updated_at BIGINT NOT NULL);
     CREATE TABLE intents (
        address TEXT PRIMARY KEY, run BIGINT NOT NULL, action TEXT NOT NULL,
        change TEXT NOT NULL, started_at BIGINT NOT NULL);
     CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY, command TEXT NOT NULL, revision TEXT,
        \"user\" TEXT NOT NULL, host TEXT NOT NULL, started_at BIGINT NOT NULL,
        ended_at BIGINT, outcome TEXT);
     CREATE TABLE results (
        id BIGSERIAL PRIMARY KEY, run BIGINT NOT NULL, address TEXT NOT NULL,
        action TEXT NOT NULL, outcome TEXT NOT NULL, message TEXT, at BIGINT NOT NULL);
     CREATE TABLE lock (
        id BIGINT PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, pid BIGINT NOT NULL,
        host TEXT NOT NULL, since BIGINT NOT NULL, lease_until BIGINT NOT NULL);",
    "CREATE INDEX results_by_run ON results (run);
     CREATE INDEX results_by_address ON results (address);",
    "ALTER TABLE resources ADD COLUMN tainted TEXT;",
    "ALTER TABLE lock ADD COLUMN token BIGINT NOT NULL DEFAULT 0;
     INSERT INTO meta (key, value) VALUES ('lock_token', '0');
     INSERT INTO meta (key, value) VALUES ('leader_token', '0');
     INSERT INTO meta (key, value) VALUES ('wake_requests', '0');
     ALTER TABLE runs ADD COLUMN note TEXT;
     CREATE TABLE daemons (
        replica TEXT PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
        branch TEXT NOT NULL, url TEXT, since BIGINT NOT NULL, seen_until BIGINT NOT NULL);
     CREATE TABLE leadership (
        id BIGINT PRIMARY KEY CHECK (id = 1), replica TEXT NOT NULL, host TEXT NOT NULL,
        pid BIGINT NOT NULL, url TEXT, token BIGINT NOT NULL, since BIGINT NOT NULL,
        lease_until BIGINT NOT NULL);",
    // 5: the fence of a holder's write as one statement that fails when the lock carries
    // another token (so that a write and its COMMIT go in the same round trip).
    "CREATE OR REPLACE FUNCTION nimbus_fence(mine BIGINT) RETURNS BIGINT LANGUAGE plpgsql AS $$
     BEGIN
       PERFORM 1 FROM lock WHERE id = 1 AND token = mine FOR UPDATE;
       IF NOT FOUND THEN RAISE EXCEPTION 'nimbus: fenced'; END IF;
       RETURN 1;
     END $$",
    "CREATE TABLE modules (address TEXT PRIMARY KEY, module TEXT NOT NULL);",
];

/// The state's folder 0700 when nimbus makes it (and `.nimbus/` always), and the database
/// 0600, whatever the umask: the database holds the key behind secrets' fingerprints
/// (docs/security.md). SQLite gives its `-wal` and `-shm` files the database's mode.
fn private_files(path: &Path) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent);
        if parent.file_name().is_some_and(|n| n == ".nimbus") {
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
        }
    }
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        if let Ok(metadata) = std::fs::metadata(&file)
            && metadata.permissions().mode() & 0o077 != 0
        {
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
        }
    }
}

pub(super) fn open_sqlite(path: &Path) -> Result<db::Sqlite, DbError> {
    private_files(path);
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(Box::new(TooNew(version, MIGRATIONS.len())));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        connection.execute_batch(&format!(
            "BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(db::Sqlite {
        connection,
        path: path.display().to_string(),
    })
}

/// A schema newer than this nimbus, found while opening (turned into [`StateError::TooNew`]).
#[derive(Debug, thiserror::Error)]
#[error("schema {0} is newer than {1}")]
pub(super) struct TooNew(pub i64, pub usize);

/// Runs PostgreSQL's pending migrations, one holder at a time (an advisory lock).
pub(super) fn migrate_postgres(db: &dyn Db) -> Result<(), DbError> {
    db::run(db, true, |tx: &mut dyn Tx| -> Result<(), DbError> {
        tx.query("SELECT pg_advisory_xact_lock(7283517)", &[])?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            &[],
        )?;
        let version = match tx.query_one("SELECT version FROM schema_version", &[])? {
            Some(row) => row.int(0),
            None => {
                tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
                0
            }
        };
        if version > PG_MIGRATIONS.len() as i64 {
            return Err(Box::new(TooNew(version, PG_MIGRATIONS.len())));
        }
        for migration in PG_MIGRATIONS.iter().skip(version as usize) {
            // A function's body holds `;`: it is one statement.
            if migration.starts_with("CREATE OR REPLACE FUNCTION") {
                tx.execute(migration, &[])?;
                continue;
            }
            for statement in migration.split(';').filter(|s| !s.trim().is_empty()) {
                tx.execute(statement, &[])?;
            }
        }
        tx.execute(
            "UPDATE schema_version SET version = ?1",
            &[P::I(PG_MIGRATIONS.len() as i64)],
        )?;
        Ok(())
    })?
}
