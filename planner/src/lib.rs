//! nimbus planner: load, validate, graph, diff, plan and render. Pure and synchronous:
//! no I/O, no threads, no clock. Given the same files it returns the same answer.

pub mod de;
pub mod diagnostics;
pub mod fields;
pub mod filter;
pub mod graph;
pub mod instances;
pub mod kdl;
pub mod load;
pub mod locate;
pub mod mesh;
pub mod modules;
pub mod placement;
pub mod plan;
pub mod record;
pub mod render;
pub mod resolve;
pub mod reuse;
pub mod rules;
pub mod scheduler;
pub mod topology;
pub mod tree;
pub mod validate;
pub mod yaml;

pub use diagnostics::{Problem, Severity, Sources};
pub use load::{Document, Format, InputFile, ManifestFilter, Model, RepositoryInput};

/// A loaded and validated repository.
#[derive(Debug)]
pub struct Checked {
    pub model: Model,
    /// Every problem, sorted by file, line and column.
    pub problems: Vec<Problem>,
}

impl Checked {
    pub fn error_count(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    pub fn warning_count(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
            .count()
    }

    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }
}

/// Loads and validates a repository. Validation runs on every document that loaded, so one
/// broken file does not hide the problems of the others.
pub fn check(input: RepositoryInput) -> Checked {
    let (model, problems) = load::load(input);
    check_loaded(model, problems)
}

/// Validates a model loaded by [`load::load`] or [`load::load_files`], in the Repository's
/// `defaultEnvironment` when it names one.
pub fn check_loaded(model: load::Model, problems: Vec<diagnostics::Problem>) -> Checked {
    let environment = modules::default_environment(&model);
    check_in(model, problems, environment.as_deref())
}

/// Expands the model's modules for `environment` (its values and patches), then validates.
pub fn check_in(
    mut model: load::Model,
    mut problems: Vec<diagnostics::Problem>,
    environment: Option<&str>,
) -> Checked {
    modules::patch::check_environments(&model, &mut problems);
    modules::expand(&mut model, &mut problems, environment);
    problems.extend(validate::validate(&model));
    modules::annotate(&mut problems, &model.origins);
    diagnostics::sort_problems(&mut problems, &model.sources);
    Checked { model, problems }
}
