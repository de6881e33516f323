//! The two databases state can live in, behind one small interface: a transaction that runs
//! statements and queries with positional parameters (`?1`, `?2`, ... in both dialects) and
//! reads rows of integers and texts. The state's logic ([`super::StateStore`]) is written once
//! over it; SQLite runs a transaction on its connection, PostgreSQL on its worker thread
//! ([`super::postgres`]).

use std::sync::mpsc;

/// A statement's parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum P {
    I(i64),
    T(String),
    /// A text that may be NULL.
    OptT(Option<String>),
    /// An integer that may be NULL.
    OptI(Option<i64>),
}

impl From<i64> for P {
    fn from(v: i64) -> P {
        P::I(v)
    }
}

impl From<bool> for P {
    fn from(v: bool) -> P {
        P::I(i64::from(v))
    }
}

impl From<&str> for P {
    fn from(v: &str) -> P {
        P::T(v.to_owned())
    }
}

impl From<String> for P {
    fn from(v: String) -> P {
        P::T(v)
    }
}

impl From<Option<String>> for P {
    fn from(v: Option<String>) -> P {
        P::OptT(v)
    }
}

impl From<Option<&str>> for P {
    fn from(v: Option<&str>) -> P {
        P::OptT(v.map(str::to_owned))
    }
}

impl From<Option<i64>> for P {
    fn from(v: Option<i64>) -> P {
        P::OptI(v)
    }
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    I(i64),
    T(String),
    Null,
}

/// One row, read by column number.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    pub fn int(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Cell::I(v)) => *v,
            Some(Cell::T(t)) => t.parse().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Cell::I(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Cell::T(t)) => Some(t.clone()),
            Some(Cell::I(v)) => Some(v.to_string()),
            _ => None,
        }
    }

    pub fn flag(&self, i: usize) -> bool {
        self.int(i) != 0
    }
}

/// A database error: what the driver said, kept as the cause.
pub type DbError = Box<dyn std::error::Error + Send + Sync>;

/// Statements inside one transaction.
pub trait Tx {
    fn query(&mut self, sql: &str, params: &[P]) -> Result<Vec<Row>, DbError>;
    fn execute(&mut self, sql: &str, params: &[P]) -> Result<u64, DbError>;

    fn query_one(&mut self, sql: &str, params: &[P]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs statements in order, each one's count of rows; PostgreSQL sends them together
    /// (one round trip for all), SQLite one after another.
    fn execute_all(&mut self, statements: &[(&str, Vec<P>)]) -> Result<Vec<u64>, DbError> {
        statements
            .iter()
            .map(|(sql, params)| self.execute(sql, params))
            .collect()
    }

    /// [`Tx::execute_all`], then the transaction ends: committed when every statement
    /// succeeded, rolled back otherwise. PostgreSQL sends the COMMIT with the statements (one
    /// round trip for the whole transaction); elsewhere the transaction commits as usual.
    fn commit_all(&mut self, statements: &[(&str, Vec<P>)]) -> Result<Vec<u64>, DbError> {
        self.execute_all(statements)
    }
}

/// What a transaction does: it returns whether to commit.
pub type Work = Box<dyn FnOnce(&mut dyn Tx) -> bool + Send>;

/// Which SQL a database speaks where the two differ (DDL, and little else).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A state database.
pub trait Db: Send {
    fn dialect(&self) -> Dialect;
    /// Runs `work` in one transaction; `write` takes the database's write lock first
    /// (SQLite's `BEGIN IMMEDIATE`), so that what it reads stays true until it commits.
    fn transaction(&self, write: bool, work: Work) -> Result<(), DbError>;
    /// Where it is, for messages: a path, or a URL without its password.
    fn location(&self) -> String;
}

/// Runs `f` in a transaction of `db` and returns its result; an `Err` from `f` rolls back.
pub fn run<T: Send + 'static, E: Send + 'static>(
    db: &dyn Db,
    write: bool,
    f: impl FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
) -> Result<Result<T, E>, DbError> {
    let (reply, result) = mpsc::sync_channel(1);
    db.transaction(
        write,
        Box::new(move |tx| {
            let outcome = f(tx);
            let commit = outcome.is_ok();
            let _ = reply.send(outcome);
            commit
        }),
    )?;
    result
        .recv()
        .map_err(|_| "the state database's transaction ended without an answer".into())
}

/// The embedded default: one SQLite file in WAL mode.
pub struct Sqlite {
    pub connection: rusqlite::Connection,
    pub path: String,
}

impl Db for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn location(&self) -> String {
        self.path.clone()
    }

    fn transaction(&self, write: bool, work: Work) -> Result<(), DbError> {
        self.connection.execute_batch(if write {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN DEFERRED"
        })?;
        let mut tx = SqliteTx(&self.connection);
        if work(&mut tx) {
            if let Err(e) = self.connection.execute_batch("COMMIT") {
                let _ = self.connection.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        } else {
            self.connection.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }
}

struct SqliteTx<'a>(&'a rusqlite::Connection);

fn sqlite_params(params: &[P]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    params
        .iter()
        .map(|p| match p {
            P::I(v) | P::OptI(Some(v)) => Value::Integer(*v),
            P::T(v) | P::OptT(Some(v)) => Value::Text(v.clone()),
            P::OptT(None) | P::OptI(None) => Value::Null,
        })
        .collect()
}

impl Tx for SqliteTx<'_> {
    fn query(&mut self, sql: &str, params: &[P]) -> Result<Vec<Row>, DbError> {
        let mut statement = self.0.prepare(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(sqlite_params(params)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                cells.push(match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Integer(v) => Cell::I(v),
                    rusqlite::types::ValueRef::Real(v) => Cell::I(v as i64),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        Cell::T(String::from_utf8_lossy(t).into_owned())
                    }
                    rusqlite::types::ValueRef::Null => Cell::Null,
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[P]) -> Result<u64, DbError> {
        let mut statement = self.0.prepare(sql)?;
        Ok(statement.execute(rusqlite::params_from_iter(sqlite_params(params)))? as u64)
    }
}
