//! Plans for people: Terraform-like text, and markdown for pull-request comments. The JSON
//! form is the `Plan` type itself (docs/plan-format.md).

use std::fmt::Write as _;

use serde_json::Value;

use crate::plan::{Action, Change, FieldChange, Plan, SENSITIVE};

/// A value as shown: a secret (a File's `{"fingerprint": ...}` content, an `{secret, fingerprint}`
/// reference) shows as `(sensitive)`, and so does anything redacted.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) if s == SENSITIVE => SENSITIVE.to_owned(),
        Value::Object(map) if map.contains_key("fingerprint") => SENSITIVE.to_owned(),
        Value::Object(map) if map.values().any(has_secret) => {
            let shown: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let key = serde_json::to_string(k).unwrap_or_default();
                    format!("{key}:{}", show(v))
                })
                .collect();
            format!("{{{}}}", shown.join(","))
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn has_secret(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key("fingerprint") || map.values().any(has_secret),
        Value::Array(items) => items.iter().any(has_secret),
        _ => false,
    }
}

fn headline(change: &Change) -> String {
    let subject = match &change.host {
        Some(host) => format!("{} on Host/{host}", change.resource),
        None => change.address.clone(),
    };
    let what = match change.action {
        Action::Create => "will be created".to_owned(),
        Action::Update => "will be updated in place".to_owned(),
        Action::Replace => "must be replaced".to_owned(),
        Action::Delete => "will be destroyed".to_owned(),
        Action::Read => "will be read".to_owned(),
        Action::NoOp => "is left as it is".to_owned(),
    };
    match &change.reason {
        Some(reason) => format!("{subject} {what} ({reason})"),
        None => format!("{subject} {what}"),
    }
}

/// The lines under a change's address: one per field.
fn field_lines(change: &Change) -> Vec<String> {
    match change.action {
        Action::Create => top_level_fields(change.after.as_ref(), "+"),
        Action::Delete => Vec::new(),
        Action::Update | Action::Replace | Action::NoOp => {
            let width = change
                .fields
                .iter()
                .map(|f| f.path.len())
                .max()
                .unwrap_or(0);
            change.fields.iter().map(|f| field_line(f, width)).collect()
        }
        Action::Read => Vec::new(),
    }
}

fn field_line(field: &FieldChange, width: usize) -> String {
    let name = format!("{}:", field.path);
    let suffix = if field.forces_replacement {
        " # forces replacement"
    } else {
        ""
    };
    if field.sensitive {
        return format!(
            "~ {name:<w$} (sensitive value changed){suffix}",
            w = width + 1
        );
    }
    match (&field.before, &field.after) {
        (None, Some(after)) => format!("+ {name:<w$} {}{suffix}", show(after), w = width + 1),
        (Some(before), None) => format!("- {name:<w$} {}{suffix}", show(before), w = width + 1),
        (Some(before), Some(after)) => format!(
            "~ {name:<w$} {} -> {}{suffix}",
            show(before),
            show(after),
            w = width + 1
        ),
        (None, None) => format!("~ {name}"),
    }
}

fn top_level_fields(value: Option<&Value>, sign: &str) -> Vec<String> {
    let Some(Value::Object(map)) = value else {
        return Vec::new();
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!("{sign} {:<w$} {}", format!("{k}:"), show(v), w = width + 1))
        .collect()
}

/// `Plan: 1 to add, 1 to change, 1 to replace, 0 to destroy.`
pub fn summary(plan: &Plan) -> String {
    format!(
        "Plan: {} to add, {} to change, {} to replace, {} to destroy.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    )
}

/// The text plan of SPEC §6.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let shown: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action.is_change() || c.reason.is_some())
        .collect();
    if !plan.has_changes() {
        out.push_str("No changes. The observed state matches the repository.\n");
        for change in shown {
            let _ = writeln!(out, "\n  # {}", headline(change));
        }
        return out;
    }
    out.push_str("nimbus will perform the following actions:\n");
    for change in shown {
        let _ = writeln!(out, "\n  # {}", headline(change));
        let symbol = change.action.symbol();
        let _ = writeln!(out, "{symbol:>3} {}", change.address);
        for line in field_lines(change) {
            let _ = writeln!(out, "      {line}");
        }
    }
    let _ = writeln!(out, "\n{}", summary(plan));
    out
}

/// A pull-request comment: a summary table, then one collapsible section per change.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::from("### nimbus plan\n\n");
    if !plan.has_changes() {
        out.push_str("No changes. The observed state matches the repository.\n");
        return out;
    }
    out.push_str(&markdown_summary(plan));
    for change in plan.changes.iter().filter(|c| c.action.is_change()) {
        out.push_str(&markdown_section(change));
    }
    let _ = writeln!(out, "{}", summary(plan));
    out
}

/// The top of a markdown plan: counts by action, then every deletion and replacement.
pub fn markdown_summary(plan: &Plan) -> String {
    let mut out = String::from("| action | count |\n|---|---:|\n");
    for (action, label) in [
        (Action::Create, "create"),
        (Action::Update, "update"),
        (Action::Replace, "replace"),
        (Action::Delete, "destroy"),
    ] {
        let _ = writeln!(out, "| {label} | {} |", plan.count(action));
    }
    let alarming: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .collect();
    if !alarming.is_empty() {
        out.push_str("\n**Destroys or replaces:**\n");
        for change in alarming {
            let _ = writeln!(
                out,
                "- `{}` {}",
                change.address,
                headline(change).trim_start_matches(&change.address).trim()
            );
        }
    }
    out.push('\n');
    out
}

/// One changed instance as a collapsible markdown section with its field changes.
pub fn markdown_section(change: &Change) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<details><summary><code>{} {}</code></summary>\n",
        change.action.symbol(),
        change.address
    );
    let _ = writeln!(out, "{}\n", headline(change));
    let lines = field_lines(change);
    if !lines.is_empty() {
        out.push_str("```diff\n");
        for line in lines {
            // diff highlighting wants the sign in the first column.
            let _ = writeln!(out, "{line}");
        }
        out.push_str("```\n");
    }
    out.push_str("</details>\n\n");
    out
}
