//! `nimbus plan [DIR]`: what apply would change, as text, JSON or markdown.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};

use crate::engine::{self, PlanOptions, SavedPlan};
use crate::ops::{Session, SessionOptions};
use crate::render::print_stdout;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The config repository (any folder in it: the repository is found by walking up to its
    /// nimbus.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Plan a git revision of the repository (a branch, tag, `HEAD~1`, a commit), read from
    /// its object database without a checkout, instead of the working tree.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Only this resource or instance and what it depends on (repeatable).
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Save the plan, for `nimbus apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Observe the targets first (the default).
    #[arg(long, overrides_with = "no_refresh")]
    pub refresh: bool,
    /// Plan from state alone, without observing.
    #[arg(long)]
    pub no_refresh: bool,
    /// Exit 0 when there is nothing to change and 2 when there is.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Lift the Repository's deletion budget.
    #[arg(long)]
    pub allow_deletes: bool,
    /// An age identity file, or an unencrypted OpenSSH private key, that decrypts secrets
    /// (else NIMBUS_AGE_IDENTITY, else the Repository's secrets.identityFile); an SSH private
    /// key also logs in to the hosts, before any other key.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

pub fn run(args: PlanArgs) -> Result<i32> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(async {
        let loaded = engine::load_at(&args.dir, args.rev.as_deref())?;
        // Read-only: no lock, and an interrupted run's changes are counted, not recorded.
        let session = Session::open(
            loaded,
            SessionOptions::for_command(None, args.identity.as_deref()),
        )
        .await?;
        let options = PlanOptions {
            refresh: !args.no_refresh,
            targets: args.targets.clone(),
            allow_deletes: args.allow_deletes,
            destroy: false,
        };
        let plan = session.plan(&options).await?;
        let loaded = &session.loaded;
        let rendered = match args.format {
            PlanFormat::Text => crate::render::plan_text(&plan),
            PlanFormat::Markdown => nimbus_planner::render::markdown(&plan),
            PlanFormat::Json => format!(
                "{}\n",
                serde_json::to_string_pretty(&plan).into_diagnostic()?
            ),
        };
        print_stdout(&rendered);
        if let Some(out) = &args.out {
            let saved = SavedPlan {
                repository: std::fs::canonicalize(&args.dir).into_diagnostic()?,
                revision: loaded.revision.clone(),
                refresh: options.refresh,
                plan: plan.clone(),
            };
            let bytes = serde_json::to_vec_pretty(&saved).into_diagnostic()?;
            std::fs::write(out, bytes)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write {}", out.display()))?;
            crate::render::print_stderr(&format!(
                "Saved the plan to {}; apply it with `nimbus apply {}`.\n",
                out.display(),
                out.display()
            ));
        }
        if matches!(args.format, PlanFormat::Json) {
            for note in &plan.notes {
                crate::render::print_stderr(&format!(
                    "{}\n",
                    nimbus_planner::render::note_line(note)
                ));
            }
        }
        // An instance that cannot be planned fails the plan, whatever else it holds.
        // So does a plugin that could not be started. What could not be observed may differ.
        Ok(
            if plan.errors().next().is_some() || session.plugin_errors > 0 {
                1
            } else if args.detailed_exitcode && (plan.has_changes() || !plan.unobserved.is_empty())
            {
                2
            } else {
                0
            },
        )
    })
}
