//! `nimbus provider check --examples FILE -- COMMAND ARGS...`: the provider contract suite
//! (the one every built-in provider passes) run against a plugin, with the example specs its
//! author supplies, printing each step's result. What a plugin's author runs before publishing.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_provider_contract::{Case, StepOutcome};
use nimbus_providers::Provider;
use nimbus_providers::plugin::{PluginProvider, PluginSpec};
use nimbus_schemas::Kind;
use serde::Deserialize;
use serde_json::Value;

use crate::render::print_stdout;

#[derive(Debug, Args)]
pub struct ProviderArgs {
    #[command(subcommand)]
    pub command: ProviderCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Run the provider contract suite against a plugin: `nimbus provider check --examples
    /// cases.yaml -- python3 my_plugin.py`.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The example cases (YAML or JSON): `settings` for `configure`, and `cases`, each with
    /// `kind`, `resource`, `target` (per-host kinds), `spec`, `update`, `replace` (optional)
    /// and `bad` (docs/protocol.md).
    #[arg(long, value_name = "FILE")]
    pub examples: PathBuf,
    /// Seconds one call may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// The plugin's command and arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The examples file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Examples {
    /// The plugin's name while checked (its `configure` name).
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    settings: Value,
    cases: Vec<ExampleCase>,
}

fn default_name() -> String {
    "checked".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleCase {
    kind: Kind,
    resource: String,
    #[serde(default)]
    target: Option<String>,
    spec: Value,
    update: Value,
    #[serde(default)]
    replace: Option<Value>,
    bad: Value,
}

pub fn run(args: ProviderArgs) -> Result<i32> {
    match args.command {
        ProviderCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> Result<i32> {
    let text = std::fs::read_to_string(&args.examples)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {}", args.examples.display()))?;
    let examples: Examples = serde_saphyr::from_str(&text)
        .into_diagnostic()
        .wrap_err_with(|| {
            format!(
                "{} is not an examples file (settings, cases: [{{kind, resource, target, spec, update, replace, bad}}])",
                args.examples.display()
            )
        })?;
    if examples.cases.is_empty() {
        miette::bail!("{} has no cases", args.examples.display());
    }
    let mut kinds: Vec<Kind> = examples.cases.iter().map(|c| c.kind).collect();
    kinds.sort_by_key(ToString::to_string);
    kinds.dedup();
    let here = std::env::current_dir().into_diagnostic()?;
    let spec = PluginSpec {
        name: examples.name.clone(),
        argv: args.command.clone(),
        kinds,
        settings: examples.settings.clone(),
        repository: here,
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(async {
        let plugin = PluginProvider::start(spec).await.into_diagnostic()?;
        let mut failed = 0;
        let mut passed = 0;
        for example in &examples.cases {
            let case = Case {
                kind: example.kind,
                resource: example.resource.clone(),
                target: example.target.clone(),
                spec: example.spec.clone(),
                update: example.update.clone(),
                replace: example.replace.clone(),
                bad: example.bad.clone(),
            };
            print_stdout(&format!("{}:\n", case.address()));
            for report in nimbus_provider_contract::run(&plugin as &dyn Provider, None, &case).await
            {
                let line = match &report.outcome {
                    StepOutcome::Passed => {
                        passed += 1;
                        format!("  ok       {}\n", report.step)
                    }
                    StepOutcome::Failed(why) => {
                        failed += 1;
                        format!("  FAILED   {}: {why}\n", report.step)
                    }
                    StepOutcome::Skipped(why) => format!("  skipped  {}: {why}\n", report.step),
                };
                print_stdout(&line);
            }
        }
        print_stdout(&format!(
            "\n{} {passed} steps passed, {failed} failed, over {} case(s).\n",
            if failed == 0 {
                "Contract kept:"
            } else {
                "Contract broken:"
            },
            examples.cases.len()
        ));
        Ok(if failed == 0 { 0 } else { 1 })
    })
}
