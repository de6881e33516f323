//! The lock, a lease with a fencing token, and the daemons at work on a state: who holds it,
//! taking it, renewing and giving it up, the check every write of a holder makes, and what a
//! `nimbus reconcile` daemon tells the state of itself, and which daemon leads.

use std::time::Duration;

use super::db::{self, DbError, Dialect, P, Row, Tx};
use super::{StateError, StateStore, now, process_alive, this_host};

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

pub(super) const LOCK_QUERY: &str =
    "SELECT holder, pid, host, since, lease_until, token FROM lock WHERE id = 1";

pub(super) fn lock_row(r: &Row) -> LockInfo {
    LockInfo {
        holder: r.text(0),
        pid: r.int(1) as u32,
        host: r.text(2),
        since: r.int(3),
        lease_until: r.int(4),
        token: r.int(5),
    }
}

impl StateStore {
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
            Err(refusal) => Err(self.refused(refusal)),
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
}

/// Which daemon leads on a state: the one that fetches and applies; the others stand by.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Leader {
    pub replica: String,
    pub host: String,
    pub pid: u32,
    pub url: Option<String>,
    /// Grows with each new leader.
    pub token: i64,
    pub since: i64,
    pub lease_until: i64,
}

/// What claiming leadership found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// This daemon leads (again, or now: `took_over` names the leader whose lease ran out).
    Leading {
        token: i64,
        took_over: Option<Leader>,
    },
    /// Another leads; this one stands by.
    Following(Leader),
}

const LEADER_QUERY: &str =
    "SELECT replica, host, pid, url, token, since, lease_until FROM leadership WHERE id = 1";

fn leader_row(r: &Row) -> Leader {
    Leader {
        replica: r.text(0),
        host: r.text(1),
        pid: r.int(2) as u32,
        url: r.opt_text(3),
        token: r.int(4),
        since: r.int(5),
        lease_until: r.int(6),
    }
}

impl StateStore {
    /// Leads for `lease` more when nobody leads, this daemon leads already, or the leader's
    /// lease ran out (a new leader gets the next token); otherwise says who leads.
    pub fn claim_leadership(
        &self,
        me: &DaemonInfo,
        lease: Duration,
    ) -> Result<Leadership, StateError> {
        let me = me.clone();
        let for_update = self.db.dialect() == Dialect::Postgres;
        db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| -> Result<Leadership, DbError> {
            let current = tx
                .query_one(
                    &format!("{LEADER_QUERY}{}", if for_update { " FOR UPDATE" } else { "" }),
                    &[],
                )?
                .as_ref()
                .map(leader_row);
            let until = now() + lease.as_secs().max(1) as i64;
            match current {
                Some(leader) if leader.replica == me.replica => {
                    tx.execute(
                        "UPDATE leadership SET lease_until = ?1, pid = ?2, host = ?3 WHERE id = 1",
                        &[P::I(until), P::I(i64::from(me.pid)), P::T(me.host)],
                    )?;
                    Ok(Leadership::Leading {
                        token: leader.token,
                        took_over: None,
                    })
                }
                Some(leader) if leader.lease_until >= now() => Ok(Leadership::Following(leader)),
                previous => {
                    let token = tx
                        .query_one(
                            "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'leader_token' RETURNING value",
                            &[],
                        )?
                        .map_or(1, |r| r.int(0));
                    tx.execute(
                        "INSERT INTO leadership (id, replica, host, pid, url, token, since, lease_until)
                         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (id) DO UPDATE SET replica = excluded.replica, host = excluded.host,
                         pid = excluded.pid, url = excluded.url, token = excluded.token,
                         since = excluded.since, lease_until = excluded.lease_until",
                        &[
                            P::T(me.replica),
                            P::T(me.host),
                            P::I(i64::from(me.pid)),
                            P::OptT(me.url),
                            P::I(token),
                            P::I(now()),
                            P::I(until),
                        ],
                    )?;
                    Ok(Leadership::Leading {
                        token,
                        took_over: previous,
                    })
                }
            }
        })
        .map_err(|e| self.database(e))?
        .map_err(|e| self.database(e))
    }

    /// Who leads now, if anyone's lease holds.
    pub fn leader(&self) -> Result<Option<Leader>, StateError> {
        self.read(|tx| {
            Ok(tx
                .query_one(LEADER_QUERY, &[])?
                .as_ref()
                .map(leader_row)
                .filter(|l| l.lease_until >= now()))
        })
    }

    /// Gives leadership up, when this daemon holds it (it stops).
    pub fn step_down(&self, replica: &str) -> Result<(), StateError> {
        let replica = replica.to_owned();
        db::run(self.db.as_ref(), true, move |tx: &mut dyn Tx| {
            tx.execute(
                "DELETE FROM leadership WHERE id = 1 AND replica = ?1",
                &[P::T(replica)],
            )
        })
        .map_err(|e| self.database(e))?
        .map_err(|e| self.database(e))?;
        Ok(())
    }

    /// A webhook reached a standby: the leader is asked to fetch now.
    pub fn request_wake(&self) -> Result<(), StateError> {
        db::run(self.db.as_ref(), true, |tx: &mut dyn Tx| {
            tx.execute(
                "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'wake_requests'",
                &[],
            )
        })
        .map_err(|e| self.database(e))?
        .map_err(|e| self.database(e))?;
        Ok(())
    }

    /// How many times standbys asked the leader to fetch (it fetches when this grows).
    pub fn wake_requests(&self) -> Result<i64, StateError> {
        self.read(|tx| {
            Ok(tx
                .query_one("SELECT value FROM meta WHERE key = 'wake_requests'", &[])?
                .map_or(0, |r| r.int(0)))
        })
    }
}

/// Why a write did not happen: the database failed, or the state refused it.
pub(super) enum Refusal {
    Db(DbError),
    State(StateError),
    /// The fence of a write of the holder of this token did not hold.
    Fenced(i64),
}
