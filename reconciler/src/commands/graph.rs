//! `nimbus graph [DIR] [--format dot|mermaid|json]`: the instance graph, dependencies first.

use std::path::PathBuf;

use crate::render::print_stdout;
use clap::{Args, ValueEnum};
use miette::Result;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    #[default]
    Dot,
    Mermaid,
    Json,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The config repository (any folder in it: the repository is found by walking up to its
    /// nimbus.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    /// The graph of a git revision (read from the object database, no checkout).
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
}

/// Prints the graph; a repository with errors gets its problems instead, and exit 1.
pub fn run(args: GraphArgs) -> Result<i32> {
    let loaded = crate::engine::load_at(&args.dir, args.rev.as_deref())?;
    let text = match args.format {
        GraphFormat::Dot => loaded.graph.to_dot(),
        GraphFormat::Mermaid => loaded.graph.to_mermaid(),
        GraphFormat::Json => crate::render::versioned_object(loaded.graph.to_json()),
    };
    print_stdout(&text);
    Ok(0)
}
