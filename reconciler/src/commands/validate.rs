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
    let checked = check_environments(input)?;
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

/// Checks the repository for the chosen environment; without one, for each environment it
/// declares (a problem that only some of them have says which), or as it is when it declares
/// none. Problems that every environment shares are reported once.
fn check_environments(input: nimbus_planner::RepositoryInput) -> Result<nimbus_planner::Checked> {
    let (model, problems) = nimbus_planner::load::load(input);
    let declared: Vec<String> = nimbus_planner::modules::environments(&model)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let chosen = crate::engine::environment();
    if let Some(name) = chosen
        && !declared.iter().any(|d| d == name)
    {
        return Err(crate::engine::unknown_environment(name, &declared));
    }
    if chosen.is_some() || declared.len() < 2 {
        let environment = chosen.or(declared.first().map(String::as_str));
        // (One environment: it is the one to check.)
        return Ok(nimbus_planner::check_in(model, problems, environment));
    }
    // Every environment: the first one's model, and every environment's problems once each.
    let base_files = model.sources.len();
    let mut checks: Vec<(String, nimbus_planner::Checked)> = declared
        .iter()
        .map(|name| {
            (
                name.clone(),
                nimbus_planner::check_in(model.clone(), problems.clone(), Some(name)),
            )
        })
        .collect();
    let key = |p: &nimbus_planner::Problem, sources: &nimbus_planner::Sources| {
        let source = sources.get(p.primary.file);
        (
            p.code,
            source.path.clone(),
            source.line_column(p.primary.span.start),
            p.message.clone(),
        )
    };
    let mut counts: std::collections::HashMap<_, usize> = std::collections::HashMap::new();
    for (_, checked) in &checks {
        let mut seen = std::collections::HashSet::new();
        for p in &checked.problems {
            let k = key(p, &checked.model.sources);
            if seen.insert(k.clone()) {
                *counts.entry(k).or_default() += 1;
            }
        }
    }
    let (first_name, mut first) = checks.remove(0);
    let mut reported = std::collections::HashSet::new();
    let all = declared.len();
    let mut merged = Vec::new();
    for p in std::mem::take(&mut first.problems) {
        let k = key(&p, &first.model.sources);
        if reported.insert(k.clone()) {
            merged.push(tag(p, counts[&k] < all, &first_name));
        }
    }
    first.problems = merged;
    // Another environment's problem may point into its own copies of module files: those
    // are added to the first one's sources. Files loaded before expansion are the same.
    for (name, checked) in checks {
        for p in &checked.problems {
            let k = key(p, &checked.model.sources);
            if !reported.insert(k) {
                continue;
            }
            let mut moved = tag(p.clone(), true, &name);
            if moved.primary.file >= base_files {
                let source = checked.model.sources.get(p.primary.file).clone();
                moved.primary.file = first.model.sources.add(source);
            }
            moved.secondary.retain(|l| l.file < base_files);
            first.problems.push(moved);
        }
    }
    Ok(first)
}

/// A problem of some environments only says which.
fn tag(
    mut problem: nimbus_planner::Problem,
    only_some: bool,
    environment: &str,
) -> nimbus_planner::Problem {
    if only_some {
        problem.message = format!("{} (environment `{environment}`)", problem.message);
    }
    problem
}
