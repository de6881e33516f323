//! `nimbus graph [DIR] [--format dot|mermaid|json]`: the instance graph, dependencies first.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use miette::Result;
use nimbus_planner::graph::ResourceGraph;
use nimbus_planner::instances::InstanceGraph;

use crate::render::{count_phrase, print_stderr, print_stdout, problems_text, stderr_is_terminal};
use crate::workdir::read_working_tree;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    #[default]
    Dot,
    Mermaid,
    Json,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The config repository's root.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// Prints the graph; a repository with errors gets its problems instead, and exit 1.
pub fn run(args: GraphArgs) -> Result<i32> {
    let (input, _) = read_working_tree(&args.dir)?;
    let checked = nimbus_planner::check(input);
    if checked.has_errors() {
        print_stderr(&problems_text(
            &checked.problems,
            &checked.model.sources,
            stderr_is_terminal(),
        ));
        print_stderr(&format!(
            "error: {}: {}; no graph for a repository with errors\n",
            args.dir.display(),
            count_phrase(checked.error_count(), checked.warning_count())
        ));
        return Ok(1);
    }
    let resources = ResourceGraph::build(&checked.model);
    let instances = InstanceGraph::build(&checked.model, &resources);
    let text = match args.format {
        GraphFormat::Dot => instances.to_dot(),
        GraphFormat::Mermaid => instances.to_mermaid(),
        GraphFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&instances.to_json()).unwrap_or_default()
        ),
    };
    print_stdout(&text);
    Ok(0)
}
