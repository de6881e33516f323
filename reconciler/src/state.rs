//! State: what nimbus created and last applied, the history of runs, and the lock that keeps
//! to one writer at a time. Embedded SQLite in WAL mode by default, or PostgreSQL for a state
//! several machines share ([`postgres`]); the logic here is written once over both ([`db`]).
//!
//! Every instance's result is committed the moment it completes, together with the serial,
//! and an intent is committed before each change starts, so that `kill -9` at any instant
//! loses nothing that was applied: the next run finds the intent and checks what happened.
//!
//! The lock is a lease with a fencing token that only grows: each holder gets the next token,
//! and every write of a store that holds the lock checks, inside its transaction, that the
//! lock still carries that token. A holder that was paused or cut off past its lease while
//! another took over can therefore write nothing more: its writes fail with
//! [`StateError::Fenced`], naming the new holder.

pub mod db;
pub mod postgres;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nimbus_planner::plan::{Action, Change, Record};
use nimbus_schemas::Kind;
use rusqlite::Connection;
use serde_json::Value;

use db::{Db, DbError, Dialect, P, Row, Tx};

/// SQLite's versioned migrations; `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
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
    // a run's note (an override, and who used it), and the reconcile daemons at work.
    "ALTER TABLE lock ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
     INSERT INTO meta (key, value) VALUES ('lock_token', '0');
     ALTER TABLE runs ADD COLUMN note TEXT;
     CREATE TABLE daemons (
        replica TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
        branch TEXT NOT NULL, url TEXT, since INTEGER NOT NULL, seen_until INTEGER NOT NULL);",
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
     ALTER TABLE runs ADD COLUMN note TEXT;
     CREATE TABLE daemons (
        replica TEXT PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
        branch TEXT NOT NULL, url TEXT, since BIGINT NOT NULL, seen_until BIGINT NOT NULL);",
];

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("state database {path}")]
    #[diagnostic(code(nimbus::state::database))]
    Database {
        path: String,
        #[source]
        source: DbError,
    },
    #[error(
        "the state is locked by {} (pid {} on {}, since {}); wait for it to finish, or run `nimbus state unlock` if it is gone",
        .0.holder, .0.pid, .0.host, format_time(.0.since)
    )]
    #[diagnostic(code(nimbus::state::locked))]
    Locked(LockInfo),
    #[error(
        "this run's hold on the state lock (token {mine}) was lost: {} (pid {} on {}, token {}) took it over after the lease ran out, so this run writes nothing more and stops",
        .holder.holder, .holder.pid, .holder.host, .holder.token
    )]
    #[diagnostic(
        code(nimbus::state::fenced),
        help("the new holder finishes the work; run `nimbus plan` to see where things stand")
    )]
    Fenced { mine: i64, holder: LockInfo },
    #[error(
        "this run's hold on the state lock (token {mine}) was lost: the lock was released or taken away (`nimbus state unlock`), so this run writes nothing more and stops"
    )]
    #[diagnostic(code(nimbus::state::fenced))]
    Released { mine: i64 },
    #[error(
        "the state database was written by a newer nimbus (schema {found}, this one knows {known}); upgrade nimbus"
    )]
    #[diagnostic(code(nimbus::state::too_new))]
    TooNew { found: i64, known: usize },
    #[error("{0}")]
    #[diagnostic(code(nimbus::state::location))]
    Location(String),
}

impl StateError {
    /// Whether the store lost the lock to a newer holder (or had it taken away): nothing more
    /// may be written, and the run must stop.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            StateError::Fenced { .. } | StateError::Released { .. }
        )
    }
}

/// Who holds the lock.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockInfo {
    pub holder: String,
    pub pid: u32,
    pub host: String,
    pub since: i64,
    pub lease_until: i64,
    /// The fencing token of this hold: every holder gets a greater one than the last.
    pub token: i64,
}

/// One instance as stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredResource {
    /// With the provider that applied it (`provider`, once: the record carries it).
    #[serde(flatten)]
    pub record: Record,
    pub target: Option<String>,
    pub updated_at: i64,
}

/// One run in the history.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunSummary {
    pub id: i64,
    pub command: String,
    pub revision: Option<String>,
    pub user: String,
    pub host: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    /// What the run overrode, and who (`--override-daemon`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub results: Vec<RunResult>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunResult {
    pub address: String,
    pub action: String,
    pub outcome: String,
    pub message: Option<String>,
}

/// One run with its results counted, for the status page.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub command: String,
    pub revision: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    pub applied: i64,
    pub failed: i64,
    /// Skipped or not started.
    pub other: i64,
}

/// One result of a run, for the status page.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ResourceResult {
    pub run: i64,
    pub address: String,
    pub action: String,
    pub outcome: String,
    pub message: Option<String>,
    pub at: i64,
}

/// A `nimbus reconcile` daemon at work on this state, as it last said.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DaemonInfo {
    pub replica: String,
    pub host: String,
    pub pid: u32,
    pub branch: String,
    pub url: Option<String>,
    pub since: i64,
    pub seen_until: i64,
}

const RUN_ROW: &str = "SELECT r.id, r.command, r.revision, r.started_at, r.ended_at, r.outcome,
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome = 'applied'),
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome = 'failed'),
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome NOT IN ('applied', 'failed'))
    FROM runs r";

fn run_row(r: &Row) -> RunRow {
    RunRow {
        id: r.int(0),
        command: r.text(1),
        revision: r.opt_text(2),
        started_at: r.int(3),
        ended_at: r.opt_int(4),
        outcome: r.opt_text(5),
        applied: r.int(6),
        failed: r.int(7),
        other: r.int(8),
    }
}

const RESULT_COLUMNS: &str = "SELECT run, address, action, outcome, message, at FROM results";

fn result_row(r: &Row) -> ResourceResult {
    ResourceResult {
        run: r.int(0),
        address: r.text(1),
        action: r.text(2),
        outcome: r.text(3),
        message: r.opt_text(4),
        at: r.int(5),
    }
}

const RESOURCE_COLUMNS: &str = "SELECT address, kind, provider, target, applied, outputs, owned, protected, keep_on_removal, depends_on, updated_at, tainted FROM resources";

fn resource_row(r: &Row) -> StoredResource {
    let kind: Kind = serde_json::from_value(Value::String(r.text(1))).unwrap_or(Kind::Host);
    StoredResource {
        record: Record {
            address: r.text(0),
            kind,
            applied: serde_json::from_str(&r.text(4)).unwrap_or(Value::Null),
            owned: r.flag(6),
            protected: r.flag(7),
            keep_on_removal: r.flag(8),
            depends_on: serde_json::from_str(&r.text(9)).unwrap_or_default(),
            provider: r.text(2),
            outputs: serde_json::from_str(&r.text(5)).unwrap_or(Value::Null),
            tainted: r.opt_text(11),
        },
        target: r.opt_text(3),
        updated_at: r.int(10),
    }
}

/// A change that was started and not known to have finished.
#[derive(Clone, Debug)]
pub struct Intent {
    pub address: String,
    pub change: Change,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn format_time(seconds: i64) -> String {
    // UTC, ISO 8601, without a date library: days since the epoch to a civil date.
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

pub fn this_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn action_name(action: Action) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

const LOCK_QUERY: &str =
    "SELECT holder, pid, host, since, lease_until, token FROM lock WHERE id = 1";

fn lock_row(r: &Row) -> LockInfo {
    LockInfo {
        holder: r.text(0),
        pid: r.int(1) as u32,
        host: r.text(2),
        since: r.int(3),
        lease_until: r.int(4),
        token: r.int(5),
    }
}

/// Where a state lives: a SQLite file, or a schema in a PostgreSQL database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateLocation {
    File(PathBuf),
    Postgres(Box<postgres::Target>),
}

impl StateLocation {
    /// Whether there is a state there to read (a PostgreSQL state is made on first use).
    pub fn exists(&self) -> bool {
        match self {
            StateLocation::File(path) => path.exists(),
            StateLocation::Postgres(_) => true,
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, StateLocation::Postgres(_))
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::File(path) => write!(f, "{}", path.display()),
            StateLocation::Postgres(target) => f.write_str(target.shown()),
        }
    }
}

impl From<&Path> for StateLocation {
    fn from(path: &Path) -> Self {
        StateLocation::File(path.to_owned())
    }
}

impl From<&PathBuf> for StateLocation {
    fn from(path: &PathBuf) -> Self {
        StateLocation::File(path.clone())
    }
}

impl From<PathBuf> for StateLocation {
    fn from(path: PathBuf) -> Self {
        StateLocation::File(path)
    }
}

impl From<&StateLocation> for StateLocation {
    fn from(location: &StateLocation) -> Self {
        location.clone()
    }
}

pub struct StateStore {
    db: Box<dyn Db>,
    location: StateLocation,
    /// The token of the lock this store holds; its writes are refused once the lock carries
    /// another.
    fence: Option<i64>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("location", &self.location.to_string())
            .finish()
    }
}

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

fn open_sqlite(path: &Path) -> Result<db::Sqlite, DbError> {
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
struct TooNew(i64, usize);

/// Runs PostgreSQL's pending migrations, one holder at a time (an advisory lock).
fn migrate_postgres(db: &dyn Db) -> Result<(), DbError> {
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

impl StateStore {
    /// Opens (or creates) the state at `location` and runs pending migrations.
    pub fn open(location: impl Into<StateLocation>) -> Result<Self, StateError> {
        let location = location.into();
        let shown = location.to_string();
        let wrap = |source: DbError| match source.downcast::<TooNew>() {
            Ok(too_new) => StateError::TooNew {
                found: too_new.0,
                known: too_new.1,
            },
            Err(source) => StateError::Database {
                path: shown.clone(),
                source,
            },
        };
        let db: Box<dyn Db> = match &location {
            StateLocation::File(path) => Box::new(open_sqlite(path).map_err(wrap)?),
            StateLocation::Postgres(target) => {
                let db = postgres::Postgres::connect(target).map_err(wrap)?;
                migrate_postgres(&db).map_err(wrap)?;
                Box::new(db)
            }
        };
        Ok(StateStore {
            db,
            location,
            fence: None,
        })
    }

    pub fn location(&self) -> &StateLocation {
        &self.location
    }

    /// The SQLite file, for a state in one (`None` in PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        match &self.location {
            StateLocation::File(path) => Some(path),
            StateLocation::Postgres(_) => None,
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// Writes of this store are fenced by `token` (a lock another store of this process took).
    pub fn fence_with(&mut self, token: Option<i64>) {
        self.fence = token;
    }

    fn database(&self, source: DbError) -> StateError {
        StateError::Database {
            path: self.location.to_string(),
            source,
        }
    }

    /// Reads in one transaction.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, StateError> {
        db::run(self.db.as_ref(), false, f)
            .map_err(|e| self.database(e))?
            .map_err(|e| self.database(e))
    }

    /// Writes in one transaction, which first checks this store's fence.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, StateError> {
        let fence = self.fence;
        let for_update = self.db.dialect() == Dialect::Postgres;
        let outcome = db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| {
            if let Some(mine) = fence {
                check_fence(tx, mine, for_update)?;
            }
            f(tx).map_err(Refusal::Db)
        })
        .map_err(|e| self.database(e))?;
        match outcome {
            Ok(value) => Ok(value),
            Err(Refusal::Db(e)) => Err(self.database(e)),
            Err(Refusal::State(e)) => Err(e),
        }
    }

    pub fn serial(&self) -> Result<u64, StateError> {
        self.read(serial_in)
    }

    pub fn resources(&self) -> Result<Vec<StoredResource>, StateError> {
        self.read(|tx| {
            Ok(tx
                .query(&format!("{RESOURCE_COLUMNS} ORDER BY address"), &[])?
                .iter()
                .map(resource_row)
                .collect())
        })
    }

    /// One instance as stored.
    pub fn resource(&self, address: &str) -> Result<Option<StoredResource>, StateError> {
        let address = address.to_owned();
        self.read(move |tx| {
            Ok(tx
                .query_one(
                    &format!("{RESOURCE_COLUMNS} WHERE address = ?1"),
                    &[P::T(address)],
                )?
                .as_ref()
                .map(resource_row))
        })
    }

    /// The newest `limit` runs, newest first, with their results counted.
    pub fn recent_runs(&self, limit: usize) -> Result<Vec<RunRow>, StateError> {
        self.read(move |tx| {
            Ok(tx
                .query(
                    &format!("{RUN_ROW} ORDER BY r.id DESC LIMIT ?1"),
                    &[P::I(limit as i64)],
                )?
                .iter()
                .map(run_row)
                .collect())
        })
    }

    /// One run, with its results counted.
    pub fn run(&self, id: i64) -> Result<Option<RunRow>, StateError> {
        self.read(move |tx| {
            Ok(tx
                .query_one(&format!("{RUN_ROW} WHERE r.id = ?1"), &[P::I(id)])?
                .as_ref()
                .map(run_row))
        })
    }

    /// Every result of a run.
    pub fn run_results(&self, id: i64) -> Result<Vec<ResourceResult>, StateError> {
        self.read(move |tx| {
            Ok(tx
                .query(
                    &format!("{RESULT_COLUMNS} WHERE run = ?1 ORDER BY rowid"),
                    &[P::I(id)],
                )?
                .iter()
                .map(result_row)
                .collect())
        })
    }

    /// The newest `limit` results of one instance, newest first, with their runs.
    pub fn results_of(
        &self,
        address: &str,
        limit: usize,
    ) -> Result<Vec<(RunRow, ResourceResult)>, StateError> {
        let address = address.to_owned();
        self.read(move |tx| {
            let results: Vec<ResourceResult> = tx
                .query(
                    &format!("{RESULT_COLUMNS} WHERE address = ?1 ORDER BY rowid DESC LIMIT ?2"),
                    &[P::T(address), P::I(limit as i64)],
                )?
                .iter()
                .map(result_row)
                .collect();
            let mut out = Vec::new();
            for result in results {
                if let Some(run) =
                    tx.query_one(&format!("{RUN_ROW} WHERE r.id = ?1"), &[P::I(result.run)])?
                {
                    out.push((run_row(&run), result));
                }
            }
            Ok(out)
        })
    }

    /// Each instance's newest result, by address.
    pub fn last_results(&self) -> Result<Vec<ResourceResult>, StateError> {
        self.read(|tx| {
            Ok(tx
                .query(
                    &format!(
                        "{RESULT_COLUMNS} WHERE rowid IN (SELECT MAX(rowid) FROM results GROUP BY address)"
                    ),
                    &[],
                )?
                .iter()
                .map(result_row)
                .collect())
        })
    }

    pub fn records(&self) -> Result<Vec<Record>, StateError> {
        Ok(self.resources()?.into_iter().map(|r| r.record).collect())
    }

    /// The key of the secrets' keyed fingerprints (HMAC-SHA256), made on first use: random,
    /// and kept only here, so that a fingerprint tells nothing of a value to whoever lacks the
    /// state.
    pub fn secret_key(&self) -> Result<Vec<u8>, StateError> {
        const KEY: &str = "SELECT value FROM meta WHERE key = 'secret_fingerprint_key'";
        let existing = self.read(|tx| Ok(tx.query_one(KEY, &[])?.map(|r| r.text(0))))?;
        let hex = match existing {
            Some(hex) => hex,
            None => {
                let key = crate::secrets::random_key().map_err(|e| self.database(e.into()))?;
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                // Two runs may race to make it: the first one wins, both use it. Not fenced:
                // making the key changes nothing a holder of the lock relies on.
                db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('secret_fingerprint_key', ?1) ON CONFLICT (key) DO NOTHING",
                        &[P::T(hex)],
                    )?;
                    Ok::<_, DbError>(tx.query_one(KEY, &[])?.map(|r| r.text(0)).unwrap_or_default())
                })
                .map_err(|e| self.database(e))?
                .map_err(|e| self.database(e))?
            }
        };
        Ok((0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect())
    }

    /// Every record and the serial, read together for planning.
    pub fn snapshot(&self) -> Result<(Vec<Record>, u64), StateError> {
        self.read(|tx| {
            let records = tx
                .query(&format!("{RESOURCE_COLUMNS} ORDER BY address"), &[])?
                .iter()
                .map(|r| resource_row(r).record)
                .collect();
            Ok((records, serial_in(tx)?))
        })
    }

    pub fn begin_run(&self, command: &str, revision: Option<&str>) -> Result<i64, StateError> {
        self.begin_run_noted(command, revision, None)
    }

    /// A run, with a note of what it overrode and who did (shown in the history).
    pub fn begin_run_noted(
        &self,
        command: &str,
        revision: Option<&str>,
        note: Option<&str>,
    ) -> Result<i64, StateError> {
        let params = vec![
            P::from(command),
            P::from(revision),
            P::from(this_user()),
            P::from(this_host()),
            P::I(now()),
            P::from(note),
        ];
        self.write(move |tx| {
            Ok(tx
                .query_one(
                    "INSERT INTO runs (command, revision, \"user\", host, started_at, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    &params,
                )?
                .map_or(0, |r| r.int(0)))
        })
    }

    pub fn end_run(&self, run: i64, outcome: &str) -> Result<(), StateError> {
        let outcome = outcome.to_owned();
        self.write(move |tx| {
            tx.execute(
                "UPDATE runs SET ended_at = ?1, outcome = ?2 WHERE id = ?3",
                &[P::I(now()), P::T(outcome), P::I(run)],
            )?;
            Ok(())
        })
    }

    /// Records that a change is about to start.
    pub fn intend(&self, run: i64, change: &Change) -> Result<(), StateError> {
        let params = vec![
            P::from(change.address.as_str()),
            P::I(run),
            P::from(action_name(change.action)),
            P::from(serde_json::to_string(change).unwrap_or_default()),
            P::I(now()),
        ];
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO intents (address, run, action, change, started_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (address) DO UPDATE SET run = excluded.run, action = excluded.action,
                 change = excluded.change, started_at = excluded.started_at",
                &params,
            )?;
            Ok(())
        })
    }

    /// Records a change's success, in one transaction: the instance, the result, the serial,
    /// and the intent removed.
    pub fn complete(
        &mut self,
        run: i64,
        change: &Change,
        provider: &str,
        outputs: &Value,
    ) -> Result<(), StateError> {
        self.finish(run, change, provider, outputs, None)
    }

    /// Records a change that failed having made its instance (a create whose Deployment the
    /// API accepted and whose rollout then failed): the instance is kept, tainted with the
    /// reason, so that the next plan replaces it and removing its manifest deletes it.
    pub fn taint(
        &mut self,
        run: i64,
        change: &Change,
        provider: &str,
        reason: &str,
    ) -> Result<(), StateError> {
        self.finish(run, change, provider, &Value::Null, Some(reason))
    }

    fn finish(
        &mut self,
        run: i64,
        change: &Change,
        provider: &str,
        outputs: &Value,
        failed: Option<&str>,
    ) -> Result<(), StateError> {
        let record = change.record().map(|record| {
            vec![
                P::from(record.address.as_str()),
                P::from(record.kind.as_str()),
                P::from(provider),
                P::from(change.host.clone()),
                P::from(serde_json::to_string(&record.applied).unwrap_or_default()),
                P::from(serde_json::to_string(outputs).unwrap_or_default()),
                P::from(record.protected),
                P::from(record.keep_on_removal),
                P::from(serde_json::to_string(&record.depends_on).unwrap_or_default()),
                P::I(now()),
                P::from(failed),
            ]
        });
        let address = change.address.clone();
        let result = vec![
            P::I(run),
            P::from(change.address.as_str()),
            P::from(action_name(change.action)),
            P::from(if failed.is_some() {
                "failed"
            } else {
                "applied"
            }),
            P::from(failed),
            P::I(now()),
        ];
        self.write(move |tx| {
            match record {
                Some(params) => {
                    tx.execute(
                        "INSERT INTO resources
                         (address, kind, provider, target, applied, outputs, owned, protected, keep_on_removal, depends_on, updated_at, tainted)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT (address) DO UPDATE SET kind = excluded.kind, provider = excluded.provider,
                         target = excluded.target, applied = excluded.applied, outputs = excluded.outputs,
                         owned = excluded.owned, protected = excluded.protected,
                         keep_on_removal = excluded.keep_on_removal, depends_on = excluded.depends_on,
                         updated_at = excluded.updated_at, tainted = excluded.tainted",
                        &params,
                    )?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM resources WHERE address = ?1",
                        &[P::T(address.clone())],
                    )?;
                }
            }
            tx.execute("DELETE FROM intents WHERE address = ?1", &[P::T(address)])?;
            tx.execute(
                "INSERT INTO results (run, address, action, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &result,
            )?;
            bump_serial(tx)
        })
    }

    /// Records a change that failed or was skipped; nothing about the instance changes.
    pub fn fail(
        &self,
        run: i64,
        change: &Change,
        outcome: &str,
        message: &str,
    ) -> Result<(), StateError> {
        let address = change.address.clone();
        let result = vec![
            P::I(run),
            P::from(change.address.as_str()),
            P::from(action_name(change.action)),
            P::from(outcome),
            P::from(message),
            P::I(now()),
        ];
        self.write(move |tx| {
            tx.execute("DELETE FROM intents WHERE address = ?1", &[P::T(address)])?;
            tx.execute(
                "INSERT INTO results (run, address, action, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &result,
            )?;
            Ok(())
        })
    }

    /// Changes that were started by a run that never said how they ended.
    pub fn intents(&self) -> Result<Vec<Intent>, StateError> {
        self.read(|tx| {
            Ok(tx
                .query("SELECT address, change FROM intents ORDER BY address", &[])?
                .iter()
                .filter_map(|r| {
                    serde_json::from_str(&r.text(1)).ok().map(|change| Intent {
                        address: r.text(0),
                        change,
                    })
                })
                .collect())
        })
    }

    pub fn forget_intent(&self, address: &str) -> Result<(), StateError> {
        let address = address.to_owned();
        self.write(move |tx| {
            tx.execute("DELETE FROM intents WHERE address = ?1", &[P::T(address)])?;
            Ok(())
        })
    }

    /// Removes an instance from state without touching it (`nimbus state rm`).
    pub fn remove(&self, address: &str) -> Result<bool, StateError> {
        let address = address.to_owned();
        self.write(move |tx| {
            let n = tx.execute("DELETE FROM resources WHERE address = ?1", &[P::T(address)])?;
            if n > 0 {
                bump_serial(tx)?;
            }
            Ok(n > 0)
        })
    }

    /// Lifts the protection recorded for an instance (`nimbus state unprotect`).
    pub fn unprotect(&self, address: &str) -> Result<bool, StateError> {
        let address = address.to_owned();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE resources SET protected = 0, keep_on_removal = 0 WHERE address = ?1",
                &[P::T(address)],
            )?;
            if n > 0 {
                bump_serial(tx)?;
            }
            Ok(n > 0)
        })
    }

    pub fn history(&self) -> Result<Vec<RunSummary>, StateError> {
        self.history_page(None, None)
    }

    /// The newest `limit` runs before run `before` (all of them without either), oldest first,
    /// each with its results.
    pub fn history_page(
        &self,
        before: Option<i64>,
        limit: Option<usize>,
    ) -> Result<Vec<RunSummary>, StateError> {
        self.read(move |tx| {
            let mut runs: Vec<RunSummary> = tx
                .query(
                    "SELECT id, command, revision, \"user\", host, started_at, ended_at, outcome, note FROM runs \
                     WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                    &[
                        P::I(before.unwrap_or(i64::MAX)),
                        P::I(limit.map_or(i64::MAX, |l| l as i64)),
                    ],
                )?
                .iter()
                .map(|r| RunSummary {
                    id: r.int(0),
                    command: r.text(1),
                    revision: r.opt_text(2),
                    user: r.text(3),
                    host: r.text(4),
                    started_at: r.int(5),
                    ended_at: r.opt_int(6),
                    outcome: r.opt_text(7),
                    note: r.opt_text(8),
                    results: Vec::new(),
                })
                .collect();
            runs.reverse();
            let (Some(first), Some(last)) =
                (runs.first().map(|r| r.id), runs.last().map(|r| r.id))
            else {
                return Ok(runs);
            };
            for row in tx.query(
                "SELECT run, address, action, outcome, message FROM results \
                 WHERE run BETWEEN ?1 AND ?2 ORDER BY rowid",
                &[P::I(first), P::I(last)],
            )? {
                if let Ok(i) = runs.binary_search_by_key(&row.int(0), |s| s.id) {
                    runs[i].results.push(RunResult {
                        address: row.text(1),
                        action: row.text(2),
                        outcome: row.text(3),
                        message: row.opt_text(4),
                    });
                }
            }
            Ok(runs)
        })
    }

    pub fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        self.read(|tx| Ok(tx.query_one(LOCK_QUERY, &[])?.as_ref().map(lock_row)))
    }

    /// Takes the lock for this process, or says who holds it. A lock whose holder is a dead
    /// process on this host, or whose lease ran out, is taken over. The hold gets the next
    /// fencing token, and this store's writes are fenced by it from now on.
    pub fn acquire_lock(
        &mut self,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<LockInfo>, StateError> {
        let holder = holder.to_owned();
        let for_update = self.db.dialect() == Dialect::Postgres;
        let outcome = db::run(
            self.db.as_ref(),
            true,
            move |tx: &mut dyn Tx| -> Result<(Option<LockInfo>, i64), Refusal> {
                let current = tx
                    .query_one(
                        &format!("{LOCK_QUERY}{}", if for_update { " FOR UPDATE" } else { "" }),
                        &[],
                    )
                    .map_err(Refusal::Db)?
                    .as_ref()
                    .map(lock_row);
                let me = std::process::id();
                let host = this_host();
                let taken_over = match &current {
                    None => None,
                    // Taken again by the same holder of this process: it stays its own.
                    Some(lock) if lock.pid == me && lock.host == host && lock.holder == holder => {
                        None
                    }
                    Some(lock)
                        if (lock.host == host && !process_alive(lock.pid))
                            || lock.lease_until < now() =>
                    {
                        Some(lock.clone())
                    }
                    Some(lock) => return Err(Refusal::State(StateError::Locked(lock.clone()))),
                };
                let token = tx
                    .query_one(
                        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'lock_token' RETURNING value",
                        &[],
                    )
                    .map_err(Refusal::Db)?
                    .map_or(1, |r| r.int(0));
                tx.execute(
                    "INSERT INTO lock (id, holder, pid, host, since, lease_until, token) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, host = excluded.host,
                     since = excluded.since, lease_until = excluded.lease_until, token = excluded.token",
                    &[
                        P::T(holder),
                        P::I(i64::from(me)),
                        P::T(host),
                        P::I(now()),
                        P::I(now() + lease.as_secs() as i64),
                        P::I(token),
                    ],
                )
                .map_err(Refusal::Db)?;
                Ok((taken_over, token))
            },
        )
        .map_err(|e| self.database(e))?;
        match outcome {
            Ok((taken_over, token)) => {
                self.fence = Some(token);
                Ok(taken_over)
            }
            Err(Refusal::Db(e)) => Err(self.database(e)),
            Err(Refusal::State(e)) => Err(e),
        }
    }

    /// The fencing token of the lock this store holds.
    pub fn token(&self) -> Option<i64> {
        self.fence
    }

    /// Extends this store's lease; fails (fenced) when the lock is no longer its own.
    pub fn renew_lock(&self, lease: Duration) -> Result<(), StateError> {
        let Some(token) = self.fence else {
            return Ok(());
        };
        self.write(move |tx| {
            tx.execute(
                "UPDATE lock SET lease_until = ?1 WHERE id = 1 AND token = ?2",
                &[P::I(now() + lease.as_secs() as i64), P::I(token)],
            )?;
            Ok(())
        })
    }

    /// Gives the lock up, when it is still this store's.
    pub fn release_lock(&self) -> Result<(), StateError> {
        let token = self.fence;
        let me = std::process::id();
        let host = this_host();
        db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| match token {
            Some(token) => tx.execute(
                "DELETE FROM lock WHERE id = 1 AND token = ?1",
                &[P::I(token)],
            ),
            None => tx.execute(
                "DELETE FROM lock WHERE id = 1 AND pid = ?1 AND host = ?2",
                &[P::I(i64::from(me)), P::T(host)],
            ),
        })
        .map_err(|e| self.database(e))?
        .map_err(|e| self.database(e))?;
        Ok(())
    }

    /// Removes any lock (`nimbus state unlock`); returns what it removed.
    pub fn force_unlock(&self) -> Result<Option<LockInfo>, StateError> {
        db::run(self.db.as_ref(), true, |tx: &mut dyn Tx| {
            let info = tx.query_one(LOCK_QUERY, &[])?.as_ref().map(lock_row);
            tx.execute("DELETE FROM lock", &[])?;
            Ok::<_, DbError>(info)
        })
        .map_err(|e| self.database(e))?
        .map_err(|e| self.database(e))
    }

    /// Says this daemon reconciles `branch` here until `seen_until` (renewed as it runs).
    pub fn announce_daemon(&self, daemon: &DaemonInfo) -> Result<(), StateError> {
        let params = vec![
            P::from(daemon.replica.as_str()),
            P::from(daemon.host.as_str()),
            P::I(i64::from(daemon.pid)),
            P::from(daemon.branch.as_str()),
            P::from(daemon.url.clone()),
            P::I(daemon.since),
            P::I(daemon.seen_until),
        ];
        db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| {
            tx.execute(
                "INSERT INTO daemons (replica, host, pid, branch, url, since, seen_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (replica) DO UPDATE SET host = excluded.host, pid = excluded.pid, branch = excluded.branch,
                 url = excluded.url, seen_until = excluded.seen_until",
                &params,
            )
        })
        .map_err(|e| self.database(e))?
        .map_err(|e| self.database(e))?;
        Ok(())
    }

    /// Says this daemon stopped.
    pub fn retire_daemon(&self, replica: &str) -> Result<(), StateError> {
        let replica = replica.to_owned();
        db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| {
            tx.execute("DELETE FROM daemons WHERE replica = ?1", &[P::T(replica)])
        })
        .map_err(|e| self.database(e))?
        .map_err(|e| self.database(e))?;
        Ok(())
    }

    /// The daemons that reconcile this state now (their word not yet run out).
    pub fn daemons(&self) -> Result<Vec<DaemonInfo>, StateError> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT replica, host, pid, branch, url, since, seen_until FROM daemons WHERE seen_until >= ?1 ORDER BY replica",
                    &[P::I(now())],
                )?
                .iter()
                .map(|r| DaemonInfo {
                    replica: r.text(0),
                    host: r.text(1),
                    pid: r.int(2) as u32,
                    branch: r.text(3),
                    url: r.opt_text(4),
                    since: r.int(5),
                    seen_until: r.int(6),
                })
                .collect())
        })
    }

    /// Whether nothing is recorded here yet: no instance, no run (`nimbus state migrate`
    /// writes only into an empty state).
    pub fn is_empty(&self) -> Result<bool, StateError> {
        self.read(|tx| {
            let resources = tx
                .query_one("SELECT COUNT(*) FROM resources", &[])?
                .map_or(0, |r| r.int(0));
            let runs = tx
                .query_one("SELECT COUNT(*) FROM runs", &[])?
                .map_or(0, |r| r.int(0));
            Ok(resources == 0 && runs == 0)
        })
    }

    /// Copies everything this state holds into `target`, an empty state (`nimbus state
    /// migrate`): instances with their outputs and taint, the serial, the secrets' key, runs
    /// and their results (with their ids), and intents. One transaction on each side.
    pub fn copy_into(&self, target: &StateStore) -> Result<MigrationCount, StateError> {
        let dump = self.read(|tx| {
            let mut dump = Dump::default();
            for row in tx.query("SELECT key, value FROM meta", &[])? {
                dump.meta.push((row.text(0), row.text(1)));
            }
            dump.resources = tx.query(
                "SELECT address, kind, provider, target, applied, outputs, owned, protected, keep_on_removal, depends_on, updated_at, tainted FROM resources ORDER BY address",
                &[],
            )?;
            dump.runs = tx.query(
                "SELECT id, command, revision, \"user\", host, started_at, ended_at, outcome, note FROM runs ORDER BY id",
                &[],
            )?;
            dump.results = tx.query(
                "SELECT run, address, action, outcome, message, at FROM results ORDER BY rowid",
                &[],
            )?;
            dump.intents = tx.query(
                "SELECT address, run, action, change, started_at FROM intents ORDER BY address",
                &[],
            )?;
            Ok(dump)
        })?;
        if !target.is_empty()? {
            return Err(StateError::Location(format!(
                "{} already holds a state; nimbus migrates only into an empty one",
                target.location
            )));
        }
        let count = MigrationCount {
            instances: dump.resources.len(),
            runs: dump.runs.len(),
            results: dump.results.len(),
        };
        let postgres = target.dialect() == Dialect::Postgres;
        target.write(move |tx| {
            for (key, value) in dump.meta {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[P::T(key), P::T(value)],
                )?;
            }
            for r in dump.resources {
                tx.execute(
                    "INSERT INTO resources (address, kind, provider, target, applied, outputs, owned, protected, keep_on_removal, depends_on, updated_at, tainted)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    &[
                        P::T(r.text(0)), P::T(r.text(1)), P::T(r.text(2)), P::OptT(r.opt_text(3)),
                        P::T(r.text(4)), P::T(r.text(5)), P::I(r.int(6)), P::I(r.int(7)), P::I(r.int(8)),
                        P::T(r.text(9)), P::I(r.int(10)), P::OptT(r.opt_text(11)),
                    ],
                )?;
            }
            for r in dump.runs {
                tx.execute(
                    "INSERT INTO runs (id, command, revision, \"user\", host, started_at, ended_at, outcome, note)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    &[
                        P::I(r.int(0)), P::T(r.text(1)), P::OptT(r.opt_text(2)), P::T(r.text(3)),
                        P::T(r.text(4)), P::I(r.int(5)), P::OptI(r.opt_int(6)), P::OptT(r.opt_text(7)),
                        P::OptT(r.opt_text(8)),
                    ],
                )?;
            }
            for r in dump.results {
                tx.execute(
                    "INSERT INTO results (run, address, action, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &[
                        P::I(r.int(0)), P::T(r.text(1)), P::T(r.text(2)), P::T(r.text(3)),
                        P::OptT(r.opt_text(4)), P::I(r.int(5)),
                    ],
                )?;
            }
            for r in dump.intents {
                tx.execute(
                    "INSERT INTO intents (address, run, action, change, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    &[P::T(r.text(0)), P::I(r.int(1)), P::T(r.text(2)), P::T(r.text(3)), P::I(r.int(4))],
                )?;
            }
            // The next run's id follows the copied ones.
            if postgres {
                tx.query(
                    "SELECT setval(pg_get_serial_sequence('runs', 'id'), GREATEST((SELECT MAX(id) FROM runs), 1))",
                    &[],
                )?;
            }
            Ok(())
        })?;
        Ok(count)
    }
}

/// What `copy_into` moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationCount {
    pub instances: usize,
    pub runs: usize,
    pub results: usize,
}

#[derive(Default)]
struct Dump {
    meta: Vec<(String, String)>,
    resources: Vec<Row>,
    runs: Vec<Row>,
    results: Vec<Row>,
    intents: Vec<Row>,
}

/// Why a write did not happen: the database failed, or the state refused it.
enum Refusal {
    Db(DbError),
    State(StateError),
}

/// Inside a write: the lock still carries `mine` (PostgreSQL: and keeps it until this
/// transaction ends, so that no new holder can come between the check and the write).
fn check_fence(tx: &mut dyn Tx, mine: i64, for_update: bool) -> Result<(), Refusal> {
    let current = tx
        .query_one(
            &format!("{LOCK_QUERY}{}", if for_update { " FOR SHARE" } else { "" }),
            &[],
        )
        .map_err(Refusal::Db)?
        .as_ref()
        .map(lock_row);
    match current {
        Some(lock) if lock.token == mine => Ok(()),
        Some(holder) => Err(Refusal::State(StateError::Fenced { mine, holder })),
        None => Err(Refusal::State(StateError::Released { mine })),
    }
}

fn serial_in(tx: &mut dyn Tx) -> Result<u64, DbError> {
    Ok(tx
        .query_one("SELECT value FROM meta WHERE key = 'serial'", &[])?
        .map_or(0, |r| r.text(0).parse().unwrap_or(0)))
}

fn bump_serial(tx: &mut dyn Tx) -> Result<(), DbError> {
    tx.execute(
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'serial'",
        &[],
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
