//! `nimbus schemas [DIR] [--out DIR]`: the JSON Schemas editors use, written into the
//! repository: every kind's, and one per module for its `Use`s (their inputs, typed).

use std::path::PathBuf;

use clap::Args;
use miette::{IntoDiagnostic, Result, WrapErr};

use crate::render::print_stdout;

#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// The config repository (any folder in it: the repository is found by walking up to its
    /// nimbus.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where to write them (default: the repository's `.schemas/`); a module's goes to
    /// `modules/FOLDER.json` there (`modules/web` → `modules/modules-web.json`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Writes every schema and prints each path written.
pub fn run(args: SchemasArgs) -> Result<i32> {
    let root = crate::workdir::repository_root(&args.dir)?;
    let (input, _) = crate::workdir::read_working_tree(&root)?;
    let (model, _) = nimbus_planner::load::load(input);
    let out = args.out.unwrap_or_else(|| root.join(".schemas"));
    let mut files = crate::scaffold::schemas();
    let mut problems = Vec::new();
    for decl in nimbus_planner::modules::declarations(&model, &mut problems).values() {
        let schema = nimbus_planner::modules::schema::use_schema(decl);
        let mut text = serde_json::to_string_pretty(&schema).into_diagnostic()?;
        text.push('\n');
        files.push((
            format!(
                "modules/{}.json",
                nimbus_planner::modules::schema::file_stem(&decl.dir)
            ),
            text,
        ));
    }
    for (name, text) in files {
        let path = out.join(&name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write {}", path.display()))?;
        print_stdout(&format!("{}\n", path.display()));
    }
    Ok(0)
}
