//! `nimbus validate [DIR]`: load, type-check, resolve references and check policy; no live access.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use miette::Result;

use crate::render::{
    count_phrase, print_stderr, print_stdout, problems_json, problems_text, stderr_is_terminal,
};
use crate::workdir::read_working_tree;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProblemFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config repository's root.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// `json` prints the problems as a JSON array on stdout.
    #[arg(long, value_enum, default_value_t = ProblemFormat::Text)]
    pub format: ProblemFormat,
}

/// Returns the process exit code: 1 when there is any error, 0 otherwise.
pub fn run(args: ValidateArgs) -> Result<i32> {
    let (input, invalid_patterns) = read_working_tree(&args.dir)?;
    let file_count = input.manifests.len();
    let checked = nimbus_planner::check(input);
    let (errors, warnings) = (checked.error_count(), checked.warning_count());
    match args.format {
        ProblemFormat::Json => print_stdout(&format!(
            "{}\n",
            problems_json(&checked.problems, &checked.model.sources)
        )),
        ProblemFormat::Text => {
            for pattern in invalid_patterns {
                print_stderr(&format!(
                    "warning: .nimbusignore: `{pattern}` is not a valid pattern and is ignored\n"
                ));
            }
            print_stderr(&problems_text(
                &checked.problems,
                &checked.model.sources,
                stderr_is_terminal(),
            ));
            let resources = checked.model.documents.len();
            let summary = format!(
                "{}: {resources} resources in {file_count} files, {}\n",
                args.dir.display(),
                count_phrase(errors, warnings)
            );
            if errors > 0 {
                print_stderr(&format!("error: {summary}"));
            } else {
                print_stdout(&format!("ok: {summary}"));
            }
        }
    }
    Ok(if errors > 0 { 1 } else { 0 })
}
