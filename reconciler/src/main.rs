//! The `nimbus` binary: parses the command line and hands each command to its module.

use clap::Parser;
use nimbus::cli::{Cli, Command};
use nimbus::commands::{
    agent, apply, completions, discover, graph, import, init, plan, preview, provider, reconcile,
    schemas, secret, state, validate,
};

/// glibc's allocator spends a third of `validate`'s time on the many small allocations of
/// parsed documents; mimalloc halves that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Usage errors exit 1, not clap's 2: with --detailed-exitcode, 2 means "there are changes".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 1 } else { 0 };
            let _ = error.print();
            std::process::exit(code);
        }
    };
    if cli.no_color {
        nimbus::render::turn_colour_off();
    }
    nimbus::logging::init(cli.verbose, cli.log_format);
    nimbus::engine::choose_environment(cli.environment.clone());
    let code = match cli.command {
        Command::Init(args) => init::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Schemas(args) => schemas::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Preview(args) => preview::run(args),
        Command::Apply(args) => apply::apply(args),
        Command::Destroy(args) => apply::destroy(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Import(args) => import::run(args),
        Command::Discover(args) => discover::run(args),
        Command::Healthcheck(args) => reconcile::healthcheck(args),
        Command::State(args) => state::run(args),
        Command::Secret(args) => secret::run(args),
        Command::Provider(args) => provider::run(args),
        Command::Completions(args) => Ok(completions::run::<Cli>(args)),
        Command::Agent(args) => agent::run(args),
    };
    match code {
        Ok(code) => std::process::exit(code),
        Err(report) => {
            nimbus::render::print_stderr(&format!("{report:?}\n"));
            std::process::exit(1);
        }
    }
}
