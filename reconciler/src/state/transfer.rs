//! Moving a state between backends (`nimbus state migrate`): everything it holds, copied in
//! one transaction on each side into an empty state.

use super::db::{Dialect, P, Row};
use super::{StateError, StateStore};

impl StateStore {
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
            dump.modules = tx.query("SELECT address, module FROM modules ORDER BY address", &[])?;
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
            for r in dump.modules {
                tx.execute(
                    "INSERT INTO modules (address, module) VALUES (?1, ?2)",
                    &[P::T(r.text(0)), P::T(r.text(1))],
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
    modules: Vec<Row>,
}
