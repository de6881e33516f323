//! Showing problems to people (miette) and to programs (JSON).

use std::io::{IsTerminal, Write};

use miette::{GraphicalReportHandler, GraphicalTheme};
use nimbus_planner::{Problem, Sources};

/// Renders problems for a terminal (colour, unicode) or for a log (plain ASCII).
pub fn problems_text(problems: &[Problem], sources: &Sources, terminal: bool) -> String {
    let theme = if terminal && std::env::var_os("NO_COLOR").is_none() {
        GraphicalTheme::unicode()
    } else if terminal {
        GraphicalTheme::unicode_nocolor()
    } else {
        GraphicalTheme::none()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
    let mut out = String::new();
    for problem in problems {
        let diagnostic = problem.to_diagnostic(sources);
        if handler.render_report(&mut out, &diagnostic).is_err() {
            out.push_str(&format!("{}\n", problem.message));
        }
        out.push('\n');
    }
    out
}

/// The JSON array of `--format json`.
pub fn problems_json(problems: &[Problem], sources: &Sources) -> String {
    let items: Vec<_> = problems.iter().map(|p| p.to_json(sources)).collect();
    serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
}

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Writes to stdout, ignoring a closed pipe (`nimbus validate | head`).
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub fn print_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// `3 errors and 1 warning`.
pub fn count_phrase(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    match (errors, warnings) {
        (0, 0) => "no problems".into(),
        (e, 0) => plural(e, "error"),
        (0, w) => plural(w, "warning"),
        (e, w) => format!("{} and {}", plural(e, "error"), plural(w, "warning")),
    }
}
