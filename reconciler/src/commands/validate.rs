//! `nimbus validate [DIR]`: load, type-check, resolve references and check policy; no live access.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result};

use crate::render::{count_phrase, print_stderr, print_stdout, problems_text, stderr_is_terminal};
use crate::workdir::read_working_tree;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProblemFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config repository (any folder in it: the repository is found by walking up to its
    /// nimbus.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// `json` prints the problems as one JSON document on stdout (`{"format_version": 1,
    /// "problems": [...]}`).
    #[arg(long, value_enum, default_value_t = ProblemFormat::Text)]
    pub format: ProblemFormat,
    /// Validate a git revision (read from the object database, no checkout) instead of the
    /// working tree.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
}

/// Returns the process exit code: 1 when there is any error, 0 otherwise.
pub fn run(args: ValidateArgs) -> Result<i32> {
    let (input, invalid_patterns) = match &args.rev {
        Some(rev) => {
            let revision = crate::gitsource::read_revision(&args.dir, rev)?;
            (revision.input, revision.invalid_patterns)
        }
        None => read_working_tree(&crate::workdir::repository_root(&args.dir)?)?,
    };
    let file_count = input.manifests.len();
    let checked = nimbus_planner::check(input);
    // Secret files whose headers show none of the listed recipients (nothing is decrypted).
    let recipients = match checked.model.repository().map(|d| &d.resource.spec) {
        Some(nimbus_schemas::Spec::Repository(r)) => r.secrets.recipients.clone(),
        _ => Vec::new(),
    };
    let secret_warnings = crate::secrets::recipient_warnings(&args.dir, &recipients);
    let (errors, warnings) = (
        checked.error_count(),
        checked.warning_count() + secret_warnings.len(),
    );
    match args.format {
        ProblemFormat::Json => {
            let mut items: Vec<serde_json::Value> = checked
                .problems
                .iter()
                .map(|p| serde_json::to_value(p.to_json(&checked.model.sources)))
                .collect::<Result<_, _>>()
                .into_diagnostic()?;
            for (file, warning) in &secret_warnings {
                items.push(serde_json::json!({
                    "code": "nimbus::secret::recipients",
                    "severity": "warning",
                    "message": warning,
                    "file": file,
                    "line": 1,
                    "column": 1,
                    "help": "nimbus secret rekey re-encrypts every secret to the current recipients",
                    "labels": [],
                }));
            }
            print_stdout(&crate::render::versioned_json("problems", items));
        }
        ProblemFormat::Text => {
            for (_, warning) in &secret_warnings {
                print_stderr(&format!("warning: {warning}\n"));
            }
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
