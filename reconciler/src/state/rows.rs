//! What the state's tables hold, as read: instances, runs with their results, and the
//! queries and row readers that make them.

use nimbus_planner::plan::Record;
use nimbus_schemas::Kind;
use serde_json::Value;

use super::db::Row;

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

pub(super) const RUN_ROW: &str =
    "SELECT r.id, r.command, r.revision, r.started_at, r.ended_at, r.outcome,
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome = 'applied'),
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome = 'failed'),
    (SELECT COUNT(*) FROM results WHERE run = r.id AND outcome NOT IN ('applied', 'failed'))
    FROM runs r";

pub(super) fn run_row(r: &Row) -> RunRow {
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

pub(super) const RESULT_COLUMNS: &str =
    "SELECT run, address, action, outcome, message, at FROM results";

pub(super) fn result_row(r: &Row) -> ResourceResult {
    ResourceResult {
        run: r.int(0),
        address: r.text(1),
        action: r.text(2),
        outcome: r.text(3),
        message: r.opt_text(4),
        at: r.int(5),
    }
}

pub(super) const RESOURCE_COLUMNS: &str = "SELECT address, kind, provider, target, applied, outputs, owned, protected, keep_on_removal, depends_on, updated_at, tainted FROM resources";

pub(super) fn resource_row(r: &Row) -> StoredResource {
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
