//! `nimbus apply [DIR | PLANFILE]` and `nimbus destroy [DIR]`: show the plan, ask, apply.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::plan::Plan;

use crate::engine::{self, PlanOptions, SavedPlan};
use crate::ops::{Session, SessionOptions};
use crate::render::{print_stderr, print_stdout};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The config repository (any folder in it: the repository is found by walking up to its
    /// nimbus.yaml), or a plan saved with `nimbus plan --out`.
    #[arg(default_value = ".")]
    pub source: PathBuf,
    /// Apply a git revision of the repository (read from its object database, no checkout)
    /// instead of the working tree.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// Apply without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Changes applied at once (default: the Repository's parallelism, 10).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Only this resource or instance and what it depends on (repeatable).
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Plan from state alone, without observing.
    #[arg(long)]
    pub no_refresh: bool,
    /// Lift the Repository's deletion budget.
    #[arg(long)]
    pub allow_deletes: bool,
    /// Kubernetes: take over fields another field manager owns (server-side apply's
    /// `force`) instead of failing the resource with the conflict.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Apply even though a `nimbus reconcile` daemon reconciles this state (an emergency):
    /// the run's history records the override and who used it.
    #[arg(long)]
    pub override_daemon: bool,
    /// An age identity file, or an unencrypted OpenSSH private key, that decrypts secrets
    /// (else NIMBUS_AGE_IDENTITY, else the Repository's secrets.identityFile); an SSH private
    /// key also logs in to the hosts, before any other key.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The config repository (any folder in it: the repository is found by walking up to its
    /// nimbus.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Destroy without asking.
    #[arg(long)]
    pub auto_approve: bool,
    /// Only this resource or instance (and what depends on it goes first).
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Apply even though a `nimbus reconcile` daemon reconciles this state (an emergency):
    /// the run's history records the override and who used it.
    #[arg(long)]
    pub override_daemon: bool,
    /// An age identity file, or an unencrypted OpenSSH private key, that decrypts secrets
    /// (else NIMBUS_AGE_IDENTITY, else the Repository's secrets.identityFile); an SSH private
    /// key also logs in to the hosts, before any other key.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Read the repository at a git revision (its Repository settings and what it declares)
    /// instead of the working tree.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
}

/// Asks for `yes` on a terminal; refuses without one rather than hang.
fn confirm(question: &str, auto_approve: bool) -> Result<bool> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        miette::bail!(
            "there is no terminal to confirm on; rerun with --auto-approve to apply without asking"
        );
    }
    print_stderr(&format!(
        "\n{question}\n  Only 'yes' will be accepted.\n\n  Enter a value: "
    ));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .into_diagnostic()?;
    Ok(answer.trim() == "yes")
}

pub fn apply(args: ApplyArgs) -> Result<i32> {
    if args.source.is_file() {
        return apply_saved(&args.source, &args);
    }
    let options = PlanOptions {
        refresh: !args.no_refresh,
        targets: args.targets.clone(),
        allow_deletes: args.allow_deletes,
        destroy: false,
    };
    run(
        &args.source,
        args.rev.as_deref(),
        options,
        args.auto_approve,
        args.parallelism,
        args.identity.as_deref(),
        "apply",
        args.force_conflicts,
        args.override_daemon,
    )
}

pub fn destroy(args: DestroyArgs) -> Result<i32> {
    let options = PlanOptions {
        refresh: true,
        targets: args.targets.clone(),
        allow_deletes: true,
        destroy: true,
    };
    run(
        &args.dir,
        args.rev.as_deref(),
        options,
        args.auto_approve,
        args.parallelism,
        args.identity.as_deref(),
        "destroy",
        false,
        args.override_daemon,
    )
}

#[allow(clippy::too_many_arguments)]
fn run(
    dir: &Path,
    rev: Option<&str>,
    options: PlanOptions,
    auto_approve: bool,
    parallelism: Option<usize>,
    identity: Option<&Path>,
    command: &str,
    force_conflicts: bool,
    override_daemon: bool,
) -> Result<i32> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(async {
        let loaded = engine::load_at(dir, rev)?;
        let session = Session::open(
            loaded,
            SessionOptions {
                force_conflicts,
                override_daemon,
                ..SessionOptions::for_command(Some(&format!("nimbus {command}")), identity)
            },
        )
        .await?;
        let plan = session.plan(&options).await?;
        let parallelism = parallelism.unwrap_or_else(|| session.loaded.parallelism());
        execute(&session, &plan, auto_approve, parallelism, command).await
    })
}

async fn execute(
    session: &Session,
    plan: &Plan,
    auto_approve: bool,
    parallelism: usize,
    command: &str,
) -> Result<i32> {
    print_stdout(&crate::render::plan_text(plan));
    // What could not be observed is not applied, and fails the run (as does a plugin that
    // could not be started), once the rest is applied.
    let incomplete =
        plan.errors().count() > 0 || !plan.unobserved.is_empty() || session.plugin_errors > 0;
    if !plan.has_work() {
        return Ok(if incomplete { 1 } else { 0 });
    }
    // Reads alone (a Host's facts on first contact) change nothing: no question to ask.
    let auto_approve = auto_approve || !plan.has_changes();
    let question = if command == "destroy" {
        "Do you really want to destroy these resources?"
    } else {
        "Do you want to perform these actions?"
    };
    if plan.has_changes() && !confirm(question, auto_approve)? {
        print_stderr(&format!("{command} cancelled.\n"));
        return Ok(1);
    }
    let report = session
        .apply(plan, command, parallelism, std::future::pending())
        .await?;
    let title = if command == "destroy" {
        "Destroy"
    } else {
        "Apply"
    };
    let mut summary = report.summary_of(title);
    if let Some(note) = session.notes.first() {
        summary = format!("{}\n{summary}", nimbus_planner::render::note_line(note));
    }
    if !plan.unobserved.is_empty() {
        summary = format!(
            "{}{} {} not observed, so not applied:\n{}",
            summary.replace(" complete:", " incomplete:"),
            plan.unobserved.len(),
            if plan.unobserved.len() == 1 {
                "instance was"
            } else {
                "instances were"
            },
            plan.unobserved
                .iter()
                .map(|u| format!("  unknown  {}: {}\n", u.address, u.reason))
                .collect::<String>()
        );
    }
    print_stdout(&format!("\n{summary}"));
    Ok(if report.succeeded() && !incomplete {
        0
    } else {
        1
    })
}

fn apply_saved(file: &Path, args: &ApplyArgs) -> Result<i32> {
    let bytes = std::fs::read(file)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the saved plan {}", file.display()))?;
    let saved: SavedPlan = serde_json::from_slice(&bytes)
        .into_diagnostic()
        .wrap_err_with(|| {
            format!(
                "{} is not a plan saved by `nimbus plan --out`",
                file.display()
            )
        })?;
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(async {
        let loaded = engine::load_at(&saved.repository, saved.revision.as_deref())?;
        if saved.plan.environment != loaded.checked.model.environment {
            miette::bail!(
                code = "nimbus::environment::saved_plan",
                help = match &saved.plan.environment {
                    Some(name) => format!("apply it with --env {name}"),
                    None => "apply it without --env (and NIMBUS_ENV unset)".to_owned(),
                },
                "{} was planned for {}, not {}",
                file.display(),
                shown_environment(saved.plan.environment.as_deref()),
                shown_environment(loaded.checked.model.environment.as_deref())
            );
        }
        // The same session as any apply: lock, providers, recovery of an interrupted run.
        let session = Session::open(
            loaded,
            SessionOptions {
                force_conflicts: args.force_conflicts,
                override_daemon: args.override_daemon,
                ..SessionOptions::for_command(
                    Some("nimbus apply (saved plan)"),
                    args.identity.as_deref(),
                )
            },
        )
        .await?;
        let mut stale = Vec::new();
        if session.loaded.fingerprint != saved.plan.source_fingerprint {
            stale.push("the source changed (manifests or files in the repository)".to_owned());
        }
        // A plan made while an interrupted run's changes were pending counted them as done;
        // recovering them now does not make it stale.
        if session.serial_before_recovery != saved.plan.state_serial {
            stale.push(format!(
                "the state changed (serial {} when planned, {} now)",
                saved.plan.state_serial, session.serial_before_recovery
            ));
        }
        let options = PlanOptions {
            refresh: saved.refresh,
            ..PlanOptions::default()
        };
        let fresh = session.plan(&options).await;
        if let Ok(fresh) = &fresh
            && fresh.observed_fingerprint != saved.plan.observed_fingerprint
        {
            stale.push("what the targets show changed since the plan was made".to_owned());
        }
        if !stale.is_empty() {
            miette::bail!(
                "the saved plan {} is stale: {}; make a new plan",
                file.display(),
                stale.join("; and ")
            );
        }
        let parallelism = args
            .parallelism
            .unwrap_or_else(|| session.loaded.parallelism());
        let mut plan = saved.plan.clone();
        plan.notes = session.notes.clone();
        execute(&session, &plan, true, parallelism, "apply").await
    })
}

fn shown_environment(name: Option<&str>) -> String {
    name.map_or("no environment".to_owned(), |e| {
        format!("environment `{e}`")
    })
}
