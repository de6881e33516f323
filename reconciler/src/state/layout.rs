//! Where each resource comes from (its module path) and moves: a `Moved` record or a move
//! into a module renames what state records, with no delete and no create.

use std::collections::BTreeMap;

use nimbus_planner::modules::moved::PlannedMove;

use super::db::{P, Tx};
use super::{StateError, StateStore, bump_serial};

impl StateStore {
    /// The module path of each resource a module produced, as the last apply recorded it.
    pub fn modules(&self) -> Result<BTreeMap<String, String>, StateError> {
        self.read(|tx| {
            Ok(tx
                .query("SELECT address, module FROM modules", &[])?
                .iter()
                .map(|r| (r.text(0), r.text(1)))
                .collect())
        })
    }

    /// Makes a plan's moves (its records renamed, and what depended on them) and records
    /// where each resource now comes from, in one write.
    pub fn record_layout(
        &self,
        moves: &[PlannedMove],
        modules: &BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        if moves.is_empty() && self.modules()? == *modules {
            return Ok(());
        }
        let moves = moves.to_vec();
        let modules = modules.clone();
        self.write(move |tx| {
            let renamed = rename_in(tx, &moves)?;
            tx.execute("DELETE FROM modules", &[])?;
            for (address, module) in modules {
                tx.execute(
                    "INSERT INTO modules (address, module) VALUES (?1, ?2)",
                    &[P::T(address), P::T(module)],
                )?;
            }
            if renamed > 0 {
                bump_serial(tx)?;
            }
            Ok(())
        })
    }

    /// Renames every record of resource `from` to `to` (`nimbus state mv`); how many moved.
    /// Refused when state already records `to`.
    pub fn rename(&self, from: &str, to: &str) -> Result<usize, StateError> {
        let records = self.records()?;
        let holds = |resource: &str| {
            records
                .iter()
                .any(|r| r.address == resource || r.address.starts_with(&format!("{resource}@")))
        };
        if holds(to) {
            return Err(StateError::MoveOnto {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
        let renames: Vec<(String, String)> = records
            .iter()
            .filter_map(|r| {
                let (resource, host) = match r.address.find('@') {
                    Some(at) => (&r.address[..at], &r.address[at..]),
                    None => (r.address.as_str(), ""),
                };
                (resource == from).then(|| (r.address.clone(), format!("{to}{host}")))
            })
            .collect();
        let count = renames.len();
        if count == 0 {
            return Ok(0);
        }
        let mut pairs = renames;
        pairs.push((from.to_owned(), to.to_owned()));
        let moves = vec![PlannedMove {
            from: from.to_owned(),
            to: to.to_owned(),
            renames: pairs,
        }];
        self.write(move |tx| {
            rename_in(tx, &moves)?;
            bump_serial(tx)?;
            Ok(())
        })?;
        Ok(count)
    }
}

/// Renames records and the dependencies that name them; how many records were renamed.
fn rename_in(tx: &mut dyn Tx, moves: &[PlannedMove]) -> Result<u64, super::db::DbError> {
    let mut renamed = 0;
    for m in moves {
        for (old, new) in &m.renames {
            renamed += tx.execute(
                "UPDATE resources SET address = ?2 WHERE address = ?1",
                &[P::T(old.clone()), P::T(new.clone())],
            )?;
            tx.execute(
                "UPDATE resources SET depends_on = REPLACE(depends_on, ?1, ?2)",
                &[P::T(format!("\"{old}\"")), P::T(format!("\"{new}\""))],
            )?;
            tx.execute(
                "UPDATE modules SET address = ?2 WHERE address = ?1",
                &[P::T(old.clone()), P::T(new.clone())],
            )?;
        }
    }
    Ok(renamed)
}
