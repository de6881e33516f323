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
mod layout;
mod lock;
pub mod postgres;
mod rows;
mod schema;
mod transfer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nimbus_planner::plan::{Action, Change, Record};
use serde_json::Value;

use db::{Db, DbError, Dialect, P, Tx};
use lock::Refusal;
pub use lock::{DaemonInfo, Leader, Leadership, LockInfo};
use rows::{RESOURCE_COLUMNS, RESULT_COLUMNS, RUN_ROW, resource_row, result_row, run_row};
pub use rows::{ResourceResult, RunResult, RunRow, RunSummary, StoredResource};
#[cfg(test)]
use rusqlite::Connection;
#[cfg(test)]
use schema::MIGRATIONS;
use schema::{TooNew, migrate_postgres, open_sqlite};
pub use transfer::MigrationCount;

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
    #[error("cannot move {from} to {to}: state already records {to}")]
    #[diagnostic(
        code(nimbus::state::move_onto),
        help(
            "a move onto an address that exists is refused; remove that record first (`nimbus state rm`), or move elsewhere"
        )
    )]
    MoveOnto { from: String, to: String },
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

/// Whether a process of this host runs: it exists and is not a zombie (killed, not yet
/// reaped by its parent).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn action_name(action: Action) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
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
        let postgres = self.db.dialect() == Dialect::Postgres;
        let outcome = db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| {
            if let Some(mine) = fence {
                let held = tx.execute(fence_sql(postgres), &[P::I(mine)]);
                fenced(held.map(|n| vec![n]), mine)?;
            }
            f(tx).map_err(Refusal::Db)
        })
        .map_err(|e| self.database(e))?;
        outcome.map_err(|r| self.refused(r))
    }

    /// Writes `statements` in one transaction, sent together with its COMMIT (one round trip
    /// to PostgreSQL), behind this store's fence: the first statement holds only while the
    /// lock carries this store's token (and keeps the lock row until the commit); when it does
    /// not, nothing is written and the error names who holds the lock now.
    fn write_all(&self, statements: Vec<(&'static str, Vec<P>)>) -> Result<Vec<u64>, StateError> {
        let fence = self.fence;
        let postgres = self.db.dialect() == Dialect::Postgres;
        let outcome = db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| {
            let mut batch = Vec::with_capacity(statements.len() + 1);
            if let Some(mine) = fence {
                batch.push((fence_sql(postgres), vec![P::I(mine)]));
            }
            batch.extend(statements);
            let counts = tx.commit_all(&batch);
            match fence {
                Some(mine) => fenced(counts, mine).map(|mut counts| {
                    counts.remove(0);
                    counts
                }),
                None => counts.map_err(Refusal::Db),
            }
        })
        .map_err(|e| self.database(e))?;
        outcome.map_err(|r| self.refused(r))
    }

    /// The error a refused write reports; a fenced one names who holds the lock now.
    fn refused(&self, refusal: Refusal) -> StateError {
        match refusal {
            Refusal::Db(e) => self.database(e),
            Refusal::State(e) => e,
            Refusal::Fenced(mine) => match self.lock_info() {
                Ok(Some(holder)) => StateError::Fenced { mine, holder },
                Ok(None) => StateError::Released { mine },
                Err(e) => e,
            },
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
        self.write_all(vec![(
            "INSERT INTO intents (address, run, action, change, started_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (address) DO UPDATE SET run = excluded.run, action = excluded.action,
             change = excluded.change, started_at = excluded.started_at",
            params,
        )])?;
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
        let mut statements = vec![match record {
            Some(params) => (
                "INSERT INTO resources
                 (address, kind, provider, target, applied, outputs, owned, protected, keep_on_removal, depends_on, updated_at, tainted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (address) DO UPDATE SET kind = excluded.kind, provider = excluded.provider,
                 target = excluded.target, applied = excluded.applied, outputs = excluded.outputs,
                 owned = excluded.owned, protected = excluded.protected,
                 keep_on_removal = excluded.keep_on_removal, depends_on = excluded.depends_on,
                 updated_at = excluded.updated_at, tainted = excluded.tainted",
                params,
            ),
            None => (
                "DELETE FROM resources WHERE address = ?1",
                vec![P::T(address.clone())],
            ),
        }];
        statements.push((
            "DELETE FROM intents WHERE address = ?1",
            vec![P::T(address)],
        ));
        statements.push((
            "INSERT INTO results (run, address, action, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            result,
        ));
        statements.push((SERIAL_BUMP, Vec::new()));
        self.write_all(statements)?;
        Ok(())
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
        self.write_all(vec![
            ("DELETE FROM intents WHERE address = ?1", vec![P::T(address)]),
            (
                "INSERT INTO results (run, address, action, outcome, message, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                result,
            ),
        ])?;
        Ok(())
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
}

fn serial_in(tx: &mut dyn Tx) -> Result<u64, DbError> {
    Ok(tx
        .query_one("SELECT value FROM meta WHERE key = 'serial'", &[])?
        .map_or(0, |r| r.text(0).parse().unwrap_or(0)))
}

const SERIAL_BUMP: &str =
    "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'serial'";

/// The first statement of a fenced write: it touches the lock row only while it carries the
/// writer's token (and keeps it locked until the commit).
const FENCE: &str = "UPDATE lock SET token = token WHERE id = 1 AND token = ?1";

/// The same in PostgreSQL: an error (which rolls the transaction back) unless the lock carries
/// the token, so that the writes and the COMMIT can follow it in one round trip.
const PG_FENCE: &str = "SELECT nimbus_fence(?1)";

fn fence_sql(postgres: bool) -> &'static str {
    if postgres { PG_FENCE } else { FENCE }
}

/// The counts of a write whose first statement is its fence: refused when the fence did not
/// hold (SQLite: it touched no row; PostgreSQL: it failed the transaction).
fn fenced(counts: Result<Vec<u64>, DbError>, mine: i64) -> Result<Vec<u64>, Refusal> {
    match counts {
        Ok(counts) if counts.first() == Some(&1) => Ok(counts),
        Ok(_) => Err(Refusal::Fenced(mine)),
        Err(e) if format!("{e:?}").contains("nimbus: fenced") => Err(Refusal::Fenced(mine)),
        Err(e) => Err(Refusal::Db(e)),
    }
}

fn bump_serial(tx: &mut dyn Tx) -> Result<(), DbError> {
    tx.execute(SERIAL_BUMP, &[])?;
    Ok(())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
