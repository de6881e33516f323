//! Options of a plan, saved plans, and running a plan's changes under the caller's lock.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use miette::Result;
use nimbus_planner::plan::Plan;
use nimbus_providers::Registry;
use serde::{Deserialize, Serialize};

use crate::executor::{self, ExecutorOptions, Report};
use crate::state::StateStore;

use super::run_secrets::RunSecrets;

/// Options of `plan`, `apply` and `destroy`.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    pub refresh: bool,
    pub targets: Vec<String>,
    pub allow_deletes: bool,
    pub destroy: bool,
}

/// A plan saved with `--out`: the plan and the repository it was made from.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub repository: PathBuf,
    /// The revision the plan was made from (`--rev`), applied at that same commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub refresh: bool,
    pub plan: Plan,
}

/// Runs a plan's changes under the caller's lock: Ctrl-C and SIGTERM stop it cleanly, and
/// so does `superseded` completing (the reconcile daemon's newer commit).
#[allow(clippy::too_many_arguments)]
pub async fn run_plan_until(
    plan: &Plan,
    registry: &Registry,
    state: Arc<Mutex<StateStore>>,
    command: &str,
    note: Option<&str>,
    parallelism: usize,
    secrets: &RunSecrets,
    sensitive: Arc<std::collections::HashMap<String, serde_json::Value>>,
    manifests: Arc<nimbus_planner::locate::Manifests>,
    superseded: impl std::future::Future<Output = ()>,
) -> Result<Report> {
    let run = crate::executor::lock_state(&state).begin_run_noted(
        command,
        plan.source_revision.as_deref(),
        note,
    )?;
    // Moves before changes: what follows is recorded at the new addresses.
    crate::executor::lock_state(&state).record_layout(&plan.moves, &plan.modules)?;
    let total = plan.changes.iter().filter(|c| c.action.is_work()).count();
    let defaults = ExecutorOptions::default();
    let options = ExecutorOptions {
        parallelism,
        progress: executor::Progress::for_stderr(total),
        secrets: Arc::clone(&secrets.values),
        sensitive,
        manifests,
        // For tests and demos: the first wait before a retry (it doubles each time).
        backoff: std::env::var("NIMBUS_RETRY_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(defaults.backoff, Duration::from_millis),
        ..defaults
    };
    // Ctrl-C or SIGTERM: the changes under way finish and are recorded; nothing new starts.
    let shutdown = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match terminate.as_mut() {
                Some(stream) => {
                    stream.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => {
                if interrupted.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            () = term => {}
            () = superseded => {
                tracing::info!("a newer revision supersedes this run");
            }
        }
    };
    let report =
        executor::execute(plan, registry, Arc::clone(&state), run, &options, shutdown).await;
    let outcome = if report.interrupted {
        "interrupted"
    } else if report.succeeded() {
        "succeeded"
    } else {
        "failed"
    };
    crate::executor::lock_state(&state).end_run(run, outcome)?;
    Ok(report)
}
