//! State: what nimbus created and last applied, the history of runs, and the lock that keeps
//! to one writer at a time. Embedded SQLite in WAL mode.
//!
//! Every instance's result is committed the moment it completes, together with the serial,
//! and an intent is committed before each change starts, so that `kill -9` at any instant
//! loses nothing that was applied: the next run finds the intent and checks what happened.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nimbus_planner::plan::{Action, Change, Record};
use nimbus_schemas::Kind;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

/// Versioned migrations; `PRAGMA user_version` says how many have run.
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
];

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("state database {path}")]
    Database {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "the state is locked by {} (pid {} on {}, since {}); wait for it to finish, or run `nimbus state unlock` if it is gone",
        .0.holder, .0.pid, .0.host, format_time(.0.since)
    )]
    Locked(LockInfo),
    #[error(
        "the state database was written by a newer nimbus (schema {found}, this one knows {known}); upgrade nimbus"
    )]
    TooNew { found: i64, known: usize },
}

/// Who holds the lock.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockInfo {
    pub holder: String,
    pub pid: u32,
    pub host: String,
    pub since: i64,
    pub lease_until: i64,
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

const RUN_ROW: &str = "SELECT r.id, r.command, r.revision, r.started_at, r.ended_at, r.outcome,
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome = 'applied'),
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome = 'failed'),
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome NOT IN ('applied', 'failed'))
    FROM runs r";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        command: r.get(1)?,
        revision: r.get(2)?,
        started_at: r.get(3)?,
        ended_at: r.get(4)?,
        outcome: r.get(5)?,
        applied: r.get(6)?,
        failed: r.get(7)?,
        other: r.get(8)?,
    })
}

fn result_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResourceResult> {
    Ok(ResourceResult {
        run: r.get(0)?,
        address: r.get(1)?,
        action: r.get(2)?,
        outcome: r.get(3)?,
        message: r.get(4)?,
        at: r.get(5)?,
    })
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

const LOCK_QUERY: &str = "SELECT holder, pid, host, since, lease_until FROM lock WHERE id = 1";

fn lock_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LockInfo> {
    Ok(LockInfo {
        holder: r.get(0)?,
        pid: r.get(1)?,
        host: r.get(2)?,
        since: r.get(3)?,
        lease_until: r.get(4)?,
    })
}

pub struct StateStore {
    connection: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
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

impl StateStore {
    /// Opens (or creates) the database at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        private_files(path);
        let wrap = |source| StateError::Database {
            path: path.display().to_string(),
            source,
        };
        let connection = Connection::open(path).map_err(wrap)?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(wrap)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(wrap)?;
        let store = StateStore {
            connection,
            path: path.to_owned(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn db<T>(&self, result: rusqlite::Result<T>) -> Result<T, StateError> {
        result.map_err(|source| StateError::Database {
            path: self.path.display().to_string(),
            source,
        })
    }

    fn migrate(&self) -> Result<(), StateError> {
        let version: i64 = self.db(self
            .connection
            .query_row("PRAGMA user_version", [], |r| r.get(0)))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StateError::TooNew {
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let sql = format!(
                "BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            );
            self.db(self.connection.execute_batch(&sql))?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn serial(&self) -> Result<u64, StateError> {
        let text: String = self.db(self.connection.query_row(
            "SELECT value FROM meta WHERE key = 'serial'",
            [],
            |r| r.get(0),
        ))?;
        Ok(text.parse().unwrap_or(0))
    }

    pub fn resources(&self) -> Result<Vec<StoredResource>, StateError> {
        self.resources_where("WHERE ?1 = ?1", "")
    }

    fn resources_where(
        &self,
        filter: &str,
        value: &str,
    ) -> Result<Vec<StoredResource>, StateError> {
        let mut statement = self.db(self.connection.prepare(&format!(
            "SELECT address, kind, provider, target, applied, outputs, owned, protected, keep_on_removal, depends_on, updated_at, tainted
             FROM resources {filter} ORDER BY address"
        )))?;
        let rows = self.db(statement.query_map(params![value], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, bool>(6)?,
                r.get::<_, bool>(7)?,
                r.get::<_, bool>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, Option<String>>(11)?,
            ))
        }))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                address,
                kind,
                provider,
                target,
                applied,
                outputs,
                owned,
                protected,
                keep_on_removal,
                depends_on,
                updated_at,
                tainted,
            ) = self.db(row)?;
            let kind: Kind = serde_json::from_value(Value::String(kind)).unwrap_or(Kind::Host);
            out.push(StoredResource {
                record: Record {
                    address,
                    kind,
                    applied: serde_json::from_str(&applied).unwrap_or(Value::Null),
                    owned,
                    protected,
                    keep_on_removal,
                    depends_on: serde_json::from_str(&depends_on).unwrap_or_default(),
                    provider,
                    outputs: serde_json::from_str(&outputs).unwrap_or(Value::Null),
                    tainted,
                },
                target,
                updated_at,
            });
        }
        Ok(out)
    }

    /// One instance as stored.
    pub fn resource(&self, address: &str) -> Result<Option<StoredResource>, StateError> {
        // The table is small per address; the full reader's decoding serves both.
        Ok(self
            .resources_where("WHERE address = ?1", address)?
            .into_iter()
            .next())
    }

    /// The newest `limit` runs, newest first, with their results counted.
    pub fn recent_runs(&self, limit: usize) -> Result<Vec<RunRow>, StateError> {
        let mut statement = self.db(self
            .connection
            .prepare(&format!("{RUN_ROW} ORDER BY r.id DESC LIMIT ?1")))?;
        let rows = self.db(statement.query_map(params![limit as i64], run_row))?;
        rows.map(|row| self.db(row)).collect()
    }

    /// One run, with its results counted.
    pub fn run(&self, id: i64) -> Result<Option<RunRow>, StateError> {
        let mut statement = self.db(self
            .connection
            .prepare(&format!("{RUN_ROW} WHERE r.id = ?1")))?;
        let mut rows = self.db(statement.query_map(params![id], run_row))?;
        rows.next().map(|row| self.db(row)).transpose()
    }

    /// Every result of a run.
    pub fn run_results(&self, id: i64) -> Result<Vec<ResourceResult>, StateError> {
        let mut statement = self.db(self.connection.prepare(
            "SELECT run, address, action, outcome, message, at FROM results WHERE run = ?1 ORDER BY rowid",
        ))?;
        let rows = self.db(statement.query_map(params![id], result_row))?;
        rows.map(|row| self.db(row)).collect()
    }

    /// The newest `limit` results of one instance, newest first, with their runs.
    pub fn results_of(
        &self,
        address: &str,
        limit: usize,
    ) -> Result<Vec<(RunRow, ResourceResult)>, StateError> {
        let mut statement = self.db(self.connection.prepare(
            "SELECT run, address, action, outcome, message, at FROM results WHERE address = ?1 ORDER BY rowid DESC LIMIT ?2",
        ))?;
        let rows = self.db(statement.query_map(params![address, limit as i64], result_row))?;
        let mut out = Vec::new();
        for row in rows {
            let result = self.db(row)?;
            if let Some(run) = self.run(result.run)? {
                out.push((run, result));
            }
        }
        Ok(out)
    }

    /// Each instance's newest result, by address.
    pub fn last_results(&self) -> Result<Vec<ResourceResult>, StateError> {
        let mut statement = self.db(self.connection.prepare(
            "SELECT run, address, action, outcome, message, at FROM results
             WHERE rowid IN (SELECT MAX(rowid) FROM results GROUP BY address)",
        ))?;
        let rows = self.db(statement.query_map([], result_row))?;
        rows.map(|row| self.db(row)).collect()
    }

    pub fn records(&self) -> Result<Vec<Record>, StateError> {
        Ok(self.resources()?.into_iter().map(|r| r.record).collect())
    }

    /// The key of the secrets' keyed fingerprints (HMAC-SHA256), made on first use: random,
    /// and kept only here, so that a fingerprint tells nothing of a value to whoever lacks the
    /// state.
    pub fn secret_key(&self) -> Result<Vec<u8>, StateError> {
        let existing: Option<String> = self.db(self
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'secret_fingerprint_key'",
                [],
                |r| r.get(0),
            )
            .optional())?;
        let hex = match existing {
            Some(hex) => hex,
            None => {
                let key = crate::secrets::random_key().map_err(|e| StateError::Database {
                    path: self.path.display().to_string(),
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
                })?;
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                // Two runs may race to make it: the first one wins, both use it.
                self.db(self.connection.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('secret_fingerprint_key', ?1)",
                    params![hex],
                ))?;
                self.db(self.connection.query_row(
                    "SELECT value FROM meta WHERE key = 'secret_fingerprint_key'",
                    [],
                    |r| r.get(0),
                ))?
            }
        };
        Ok((0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect())
    }

    /// Every record and the serial, read together for planning.
    pub fn snapshot(&self) -> Result<(Vec<Record>, u64), StateError> {
        Ok((self.records()?, self.serial()?))
    }

    pub fn begin_run(&self, command: &str, revision: Option<&str>) -> Result<i64, StateError> {
        self.db(self.connection.execute(
            "INSERT INTO runs (command, revision, user, host, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![command, revision, this_user(), this_host(), now()],
        ))?;
        Ok(self.connection.last_insert_rowid())
    }

    pub fn end_run(&self, run: i64, outcome: &str) -> Result<(), StateError> {
        self.db(self.connection.execute(
            "UPDATE runs SET ended_at = ?1, outcome = ?2 WHERE id = ?3",
            params![now(), outcome, run],
        ))?;
        Ok(())
    }

    /// Records that a change is about to start.
    pub fn intend(&self, run: i64, change: &Change) -> Result<(), StateError> {
        let json = serde_json::to_string(change).unwrap_or_default();
        self.db(self.connection.execute(
            "INSERT OR REPLACE INTO intents (address, run, action, change, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![change.address, run, action_name(change.action), json, now()],
        ))?;
        Ok(())
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
        let path = self.path.display().to_string();
        let wrap = |source| StateError::Database {
            path: path.clone(),
            source,
        };
        let transaction = self.connection.transaction().map_err(wrap)?;
        match change.record() {
            Some(record) => {
                transaction
                    .execute(
                        "INSERT OR REPLACE INTO resources
                         (address, kind, provider, target, applied, outputs, owned, protected, keep_on_removal, depends_on, updated_at, tainted)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11)",
                        params![
                            record.address,
                            record.kind.as_str(),
                            provider,
                            change.host,
                            serde_json::to_string(&record.applied).unwrap_or_default(),
                            serde_json::to_string(outputs).unwrap_or_default(),
                            record.protected,
                            record.keep_on_removal,
                            serde_json::to_string(&record.depends_on).unwrap_or_default(),
                            now(),
                            failed
                        ],
                    )
                    .map_err(wrap)?;
            }
            None => {
                transaction
                    .execute(
                        "DELETE FROM resources WHERE address = ?1",
                        params![change.address],
                    )
                    .map_err(wrap)?;
            }
        }
        transaction
            .execute(
                "DELETE FROM intents WHERE address = ?1",
                params![change.address],
            )
            .map_err(wrap)?;
        transaction
            .execute(
                "INSERT INTO results (run, address, action, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    run,
                    change.address,
                    action_name(change.action),
                    if failed.is_some() { "failed" } else { "applied" },
                    failed,
                    now()
                ],
            )
            .map_err(wrap)?;
        transaction
            .execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'serial'", [])
            .map_err(wrap)?;
        transaction.commit().map_err(wrap)
    }

    /// Records a change that failed or was skipped; nothing about the instance changes.
    pub fn fail(
        &self,
        run: i64,
        change: &Change,
        outcome: &str,
        message: &str,
    ) -> Result<(), StateError> {
        self.db(self.connection.execute(
            "DELETE FROM intents WHERE address = ?1",
            params![change.address],
        ))?;
        self.db(self.connection.execute(
            "INSERT INTO results (run, address, action, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![run, change.address, action_name(change.action), outcome, message, now()],
        ))?;
        Ok(())
    }

    /// Changes that were started by a run that never said how they ended.
    pub fn intents(&self) -> Result<Vec<Intent>, StateError> {
        let mut statement = self.db(self
            .connection
            .prepare("SELECT address, change FROM intents ORDER BY address"))?;
        let rows = self
            .db(statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))))?;
        let mut out = Vec::new();
        for row in rows {
            let (address, change) = self.db(row)?;
            if let Ok(change) = serde_json::from_str(&change) {
                out.push(Intent { address, change });
            }
        }
        Ok(out)
    }

    pub fn forget_intent(&self, address: &str) -> Result<(), StateError> {
        self.db(self
            .connection
            .execute("DELETE FROM intents WHERE address = ?1", params![address]))?;
        Ok(())
    }

    /// Removes an instance from state without touching it (`nimbus state rm`).
    pub fn remove(&self, address: &str) -> Result<bool, StateError> {
        let n = self.db(self
            .connection
            .execute("DELETE FROM resources WHERE address = ?1", params![address]))?;
        if n > 0 {
            self.bump_serial()?;
        }
        Ok(n > 0)
    }

    /// Lifts the protection recorded for an instance (`nimbus state unprotect`).
    pub fn unprotect(&self, address: &str) -> Result<bool, StateError> {
        let n = self.db(self.connection.execute(
            "UPDATE resources SET protected = 0, keep_on_removal = 0 WHERE address = ?1",
            params![address],
        ))?;
        if n > 0 {
            self.bump_serial()?;
        }
        Ok(n > 0)
    }

    fn bump_serial(&self) -> Result<(), StateError> {
        self.db(self.connection.execute(
            "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'serial'",
            [],
        ))?;
        Ok(())
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
        let mut statement = self.db(self.connection.prepare(
            "SELECT id, command, revision, user, host, started_at, ended_at, outcome FROM runs \
             WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
        ))?;
        let limit = limit.map_or(-1, |l| l as i64);
        let rows = self.db(statement.query_map(
            params![before.unwrap_or(i64::MAX), limit],
            |r| {
                Ok(RunSummary {
                    id: r.get(0)?,
                    command: r.get(1)?,
                    revision: r.get(2)?,
                    user: r.get(3)?,
                    host: r.get(4)?,
                    started_at: r.get(5)?,
                    ended_at: r.get(6)?,
                    outcome: r.get(7)?,
                    results: Vec::new(),
                })
            },
        ))?;
        let mut runs = Vec::new();
        for row in rows {
            runs.push(self.db(row)?);
        }
        runs.reverse();
        let (Some(first), Some(last)) = (runs.first().map(|r| r.id), runs.last().map(|r| r.id))
        else {
            return Ok(runs);
        };
        let mut statement = self.db(self.connection.prepare(
            "SELECT run, address, action, outcome, message FROM results \
             WHERE run BETWEEN ?1 AND ?2 ORDER BY rowid",
        ))?;
        let rows = self.db(statement.query_map(params![first, last], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                RunResult {
                    address: r.get(1)?,
                    action: r.get(2)?,
                    outcome: r.get(3)?,
                    message: r.get(4)?,
                },
            ))
        }))?;
        for row in rows {
            let (run, result) = self.db(row)?;
            if let Ok(i) = runs.binary_search_by_key(&run, |s| s.id) {
                runs[i].results.push(result);
            }
        }
        Ok(runs)
    }

    pub fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        self.db(self
            .connection
            .query_row(LOCK_QUERY, [], lock_row)
            .optional())
    }

    /// Takes the lock for this process, or says who holds it. A lock whose holder is a dead
    /// process on this host, or whose lease ran out, is taken over.
    pub fn acquire_lock(
        &mut self,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<LockInfo>, StateError> {
        let path = self.path.display().to_string();
        let wrap = |source| StateError::Database {
            path: path.clone(),
            source,
        };
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(wrap)?;
        let current: Option<LockInfo> = transaction
            .query_row(LOCK_QUERY, [], lock_row)
            .optional()
            .map_err(wrap)?;
        let me = std::process::id();
        let host = this_host();
        let taken_over = match &current {
            None => None,
            Some(lock) if lock.pid == me && lock.host == host => None,
            Some(lock)
                if (lock.host == host && !process_alive(lock.pid)) || lock.lease_until < now() =>
            {
                Some(lock.clone())
            }
            Some(lock) => return Err(StateError::Locked(lock.clone())),
        };
        let lease_until = now() + lease.as_secs() as i64;
        transaction
            .execute(
                "INSERT OR REPLACE INTO lock (id, holder, pid, host, since, lease_until) VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                params![holder, me, host, now(), lease_until],
            )
            .map_err(wrap)?;
        transaction.commit().map_err(wrap)?;
        Ok(taken_over)
    }

    /// Extends this process's lease.
    pub fn renew_lock(&self, lease: Duration) -> Result<(), StateError> {
        self.db(self.connection.execute(
            "UPDATE lock SET lease_until = ?1 WHERE id = 1 AND pid = ?2 AND host = ?3",
            params![
                now() + lease.as_secs() as i64,
                std::process::id(),
                this_host()
            ],
        ))?;
        Ok(())
    }

    pub fn release_lock(&self) -> Result<(), StateError> {
        self.db(self.connection.execute(
            "DELETE FROM lock WHERE id = 1 AND pid = ?1 AND host = ?2",
            params![std::process::id(), this_host()],
        ))?;
        Ok(())
    }

    /// Removes any lock (`nimbus state unlock`); returns what it removed.
    pub fn force_unlock(&self) -> Result<Option<LockInfo>, StateError> {
        let info = self.lock_info()?;
        self.db(self.connection.execute("DELETE FROM lock", []))?;
        Ok(info)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
