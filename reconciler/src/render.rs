//! Showing problems to people (miette) and to programs (JSON).

use std::io::{IsTerminal, Write};

use miette::{GraphicalReportHandler, GraphicalTheme};
use nimbus_planner::{Problem, Sources};

static COLOUR_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--no-color`: no output of this process is coloured.
pub fn turn_colour_off() {
    COLOUR_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether output to a terminal may be coloured: not with `--no-color`, nor with `NO_COLOR`
/// set to anything non-empty (no-color.org).
pub fn colour_allowed() -> bool {
    !COLOUR_OFF.load(std::sync::atomic::Ordering::Relaxed)
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The text plan for stdout: coloured by action on a terminal (`+` green, `-` red, `~`
/// yellow, `-/+` magenta, `<=` cyan, what could not be observed yellow, errors red), plain
/// otherwise.
pub fn plan_text(plan: &nimbus_planner::plan::Plan) -> String {
    let text = nimbus_planner::render::text(plan);
    if std::io::stdout().is_terminal() && colour_allowed() {
        colour_plan(&text)
    } else {
        text
    }
}

/// `text` (a rendered plan) with ANSI colours by what each line says.
pub fn colour_plan(text: &str) -> String {
    const RESET: &str = "\x1b[0m";
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        let body = line.trim_start();
        let colour = if body.starts_with("-/+ ") {
            Some("\x1b[35m")
        } else if body.starts_with("+ ") {
            Some("\x1b[32m")
        } else if body.starts_with("- ") {
            Some("\x1b[31m")
        } else if body.starts_with("~ ") {
            Some("\x1b[33m")
        } else if body.starts_with("<= ") {
            Some("\x1b[36m")
        } else if body.starts_with("? ") || body.starts_with("warning:") {
            Some("\x1b[33m")
        } else if body.starts_with("! ") || body.starts_with("error:") {
            Some("\x1b[31m")
        } else if body.starts_with("Plan:") || body.starts_with("No changes") {
            Some("\x1b[1m")
        } else {
            None
        };
        match colour {
            Some(colour) => {
                let (content, newline) = match line.strip_suffix('\n') {
                    Some(content) => (content, "\n"),
                    None => (line, ""),
                };
                let indent = &content[..content.len() - content.trim_start().len()];
                let content = content.trim_start();
                out.push_str(indent);
                out.push_str(colour);
                out.push_str(content);
                out.push_str(RESET);
                out.push_str(newline);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Renders problems for a terminal (colour, unicode) or for a log (plain ASCII).
pub fn problems_text(problems: &[Problem], sources: &Sources, terminal: bool) -> String {
    let theme = if terminal && colour_allowed() {
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

/// The version of every JSON document nimbus prints (`validate`, `state`, `graph`; a plan
/// carries its own, [`nimbus_planner::plan::PLAN_FORMAT_VERSION`]): it grows when a field
/// changes meaning or goes, never when one is added.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// `{"format_version": 1, "<key>": value}`, pretty, with a final newline.
pub fn versioned_json(key: &str, value: impl serde::Serialize) -> String {
    let document = serde_json::json!({
        "format_version": JSON_FORMAT_VERSION,
        key: value,
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&document).unwrap_or_default()
    )
}

/// An object's JSON with `format_version` first, pretty, with a final newline.
pub fn versioned_object(value: impl serde::Serialize) -> String {
    let mut document = serde_json::Map::new();
    document.insert("format_version".into(), JSON_FORMAT_VERSION.into());
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(value) {
        document.extend(fields);
    }
    format!(
        "{}\n",
        serde_json::to_string_pretty(&document).unwrap_or_default()
    )
}

/// The JSON document of `--format json`: `{"format_version": 1, "problems": [...]}`.
pub fn problems_json(problems: &[Problem], sources: &Sources) -> String {
    let items: Vec<_> = problems.iter().map(|p| p.to_json(sources)).collect();
    versioned_json("problems", items)
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
