//! The command line: every command, flag and argument, as clap reads them. The binary parses
//! it; the tests generate the CLI reference and the man pages from it (docs/reference/).

use clap::{Parser, Subcommand};

use crate::commands::{
    agent, apply, completions, discover, graph, import, init, plan, preview, provider, reconcile,
    schemas, secret, state, validate,
};

const EXAMPLES: &str = "\
Examples:
  nimbus init my-infra              scaffold a config repository in ./my-infra
  nimbus validate my-infra          check every manifest; exit 1 on any error
  nimbus validate --format json .   the same problems as JSON
  nimbus plan my-infra              what apply would change
  nimbus plan --rev HEAD~1 .        the same, for a git revision (no checkout)
  nimbus preview --base main --head HEAD   a pull request's plan as markdown
  nimbus apply --auto-approve my-infra
  nimbus graph my-infra | dot -Tsvg > graph.svg
  nimbus secret encrypt db-password < password.txt
  nimbus secret edit db-password
  nimbus completions bash > /etc/bash_completion.d/nimbus

Docs: docs/ in the nimbus repository (manifests.md, cli.md, architecture.md).";

/// nimbus: a declarative GitOps reconciler for hosts, WireGuard networks, clusters, tenants,
/// workloads, VMs and volumes, driven by a git repository of manifests.
#[derive(Debug, Parser)]
#[command(name = "nimbus", version, about, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Logs as text or as JSON lines.
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Text, global = true)]
    pub log_format: crate::logging::LogFormat,
    /// No colour in any output (as NO_COLOR does); colour is only ever used on a terminal.
    #[arg(long, global = true)]
    pub no_color: bool,
    /// The environment to load (its values, patches and state; docs/modules.md); else
    /// NIMBUS_ENV. A repository with environments needs one, except for `validate`, which
    /// checks them all.
    #[arg(long = "env", value_name = "NAME", global = true)]
    pub environment: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a config repository with a working example of every kind.
    Init(init::InitArgs),
    /// Load, type-check, resolve references and check policy; no live access.
    Validate(validate::ValidateArgs),
    /// Show what apply would change.
    Plan(plan::PlanArgs),
    /// The plan of a pull request (head as if base were applied), as a PR comment.
    Preview(preview::PreviewArgs),
    /// Show the plan, ask, and apply it (or apply a saved plan exactly).
    Apply(apply::ApplyArgs),
    /// Destroy every instance nimbus created (or the targets).
    Destroy(apply::DestroyArgs),
    /// Take an object that already exists under management, for a manifest already written.
    Import(import::ImportArgs),
    /// List what runs on the declared Hosts that nimbus does not manage; changes nothing.
    /// With --generate, write manifests and Import records for it.
    Discover(discover::DiscoverArgs),
    /// The GitOps daemon: apply each new commit of a branch, correct drift, serve status.
    Reconcile(reconcile::ReconcileArgs),
    /// Ask a daemon on this machine whether it is up (GET /healthz); exit 0 when it is.
    Healthcheck(reconcile::HealthcheckArgs),
    /// Inspect and repair state.
    State(state::StateArgs),
    /// Manage the age-encrypted secrets under secrets/.
    Secret(secret::SecretArgs),
    /// Print the dependency graph of the instances (dot, mermaid or json).
    Graph(graph::GraphArgs),
    /// Write the JSON Schemas editors use into .schemas/: every kind's, and one per module
    /// for its Uses (their inputs, typed).
    Schemas(schemas::SchemasArgs),
    /// Check a provider plugin against the provider contract, before publishing it.
    Provider(provider::ProviderArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(completions::CompletionsArgs),
    /// Run on a host: serve the provider protocol on a unix socket (the host's facts and load).
    Agent(agent::AgentArgs),
}
