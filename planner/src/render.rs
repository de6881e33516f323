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

fn headline(plan: &Plan, change: &Change) -> String {
    let subject = match &change.host {
        Some(host) => format!("{} on Host/{host}", plan.display_address(&change.resource)),
        None => plan.display_address(&change.address),
    };
    let what = match change.action {
        Action::Create => "will be created".to_owned(),
        Action::Update => "will be updated in place".to_owned(),
        Action::Replace => "must be replaced".to_owned(),
        Action::Delete => "will be destroyed".to_owned(),
        Action::Read => "will be read".to_owned(),
        Action::NoOp => "is left as it is".to_owned(),
        Action::Import => "will be imported".to_owned(),
    };
    let what = if change.error.is_some() {
        "cannot be planned".to_owned()
    } else if change.provider.is_empty() {
        what
    } else {
        format!("{what} by {}", change.provider)
    };
    match &change.reason {
        Some(reason) if change.error.is_none() => format!("{subject} {what} ({reason})"),
        _ => format!("{subject} {what}"),
    }
}

/// What a change applied with a confirm-or-revert timer says (SPEC §11).
pub fn confirm_line(confirm: &crate::plan::Confirm) -> String {
    let hosts = confirm
        .through
        .iter()
        .map(|h| format!("Host/{h}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "confirm or revert: nimbus reaches {hosts} through this network; unless it answers again within {} s of the change, the changed members restore their previous configuration by themselves",
        confirm.timeout_seconds
    )
}

/// Whether a field is the selector that made a per-host instance: noise on every instance.
fn is_selector(change: &Change, path: &str) -> bool {
    change.host.is_some() && matches!(path, "hosts" | "host" | "members")
        || change.host.is_some() && (path.starts_with("hosts.") || path.starts_with("members."))
}

/// The lines under a change's address: one per field.
fn field_lines(change: &Change) -> Vec<String> {
    match change.action {
        Action::Create => top_level_fields(change, "+"),
        Action::Delete => Vec::new(),
        Action::Update | Action::Replace | Action::NoOp | Action::Import => {
            let fields: Vec<&FieldChange> = change
                .fields
                .iter()
                .filter(|f| !is_selector(change, &f.path))
                .collect();
            let width = fields.iter().map(|f| f.path.len()).max().unwrap_or(0);
            fields
                .into_iter()
                .flat_map(|f| field_line(f, width))
                .collect()
        }
        Action::Read => Vec::new(),
    }
}

/// A change's fields for a ```diff block, where code hosts colour a line by its first
/// character: a changed field is its old value as a `-` line and its new one as a `+` line.
fn diff_lines(change: &Change) -> Vec<String> {
    if !matches!(
        change.action,
        Action::Update | Action::Replace | Action::Import
    ) {
        return field_lines(change);
    }
    let fields: Vec<&FieldChange> = change
        .fields
        .iter()
        .filter(|f| !is_selector(change, &f.path))
        .collect();
    let mut lines = Vec::new();
    for field in fields {
        let name = format!("{}:", field.path);
        let suffix = if field.forces_replacement {
            " # forces replacement"
        } else {
            ""
        };
        if field.sensitive {
            lines.push(format!("- {name} {SENSITIVE}{suffix}"));
            lines.push(format!("+ {name} (sensitive value changed){suffix}"));
            continue;
        }
        if let (Some(Value::String(before)), Some(Value::String(after))) =
            (&field.before, &field.after)
            && (before.contains('\n') || after.contains('\n'))
        {
            lines.push(format!("  {name} <<-EOT{suffix}"));
            lines.extend(line_diff(before, after));
            lines.push("  EOT".to_owned());
            continue;
        }
        if let Some(before) = &field.before {
            lines.push(format!("- {name} {}{suffix}", show(before)));
        }
        if let Some(after) = &field.after {
            lines.push(format!("+ {name} {}{suffix}", show(after)));
        }
    }
    lines
}

fn field_line(field: &FieldChange, width: usize) -> Vec<String> {
    let name = format!("{}:", field.path);
    let suffix = if field.forces_replacement {
        " # forces replacement"
    } else {
        ""
    };
    if field.sensitive {
        return vec![format!(
            "~ {name:<w$} (sensitive value changed){suffix}",
            w = width + 1
        )];
    }
    // Multi-line text (a unit, a config file) as a line diff, as Terraform shows heredocs.
    if let (Some(Value::String(before)), Some(Value::String(after))) = (&field.before, &field.after)
        && (before.contains('\n') || after.contains('\n'))
    {
        let mut lines = vec![format!("~ {name} <<-EOT{suffix}")];
        lines.extend(line_diff(before, after));
        lines.push("  EOT".to_owned());
        return lines;
    }
    vec![match (&field.before, &field.after) {
        (None, Some(after)) => format!("+ {name:<w$} {}{suffix}", show(after), w = width + 1),
        (Some(before), None) => format!("- {name:<w$} {}{suffix}", show(before), w = width + 1),
        (Some(before), Some(after)) => format!(
            "~ {name:<w$} {} -> {}{suffix}",
            show(before),
            show(after),
            w = width + 1
        ),
        (None, None) => format!("~ {name}"),
    }]
}

/// The lines of `before` and `after` as a diff: `  ` kept, `- ` removed, `+ ` added (longest
/// common subsequence; past a size where that is too dear, everything removed then added).
pub fn line_diff(before: &str, after: &str) -> Vec<String> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        return a
            .iter()
            .map(|l| format!("- {l}"))
            .chain(b.iter().map(|l| format!("+ {l}")))
            .collect();
    }
    // common[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

fn top_level_fields(change: &Change, sign: &str) -> Vec<String> {
    let Some(Value::Object(map)) = change.after.as_ref() else {
        return Vec::new();
    };
    let shown: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, v)| !v.is_null() && !is_selector(change, k))
        .collect();
    let width = shown.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = Vec::new();
    for (k, v) in shown {
        match v {
            Value::String(text) if text.contains('\n') => {
                out.push(format!("{sign} {k}: <<-EOT"));
                out.extend(text.lines().map(|l| format!("  {l}")));
                out.push("  EOT".to_owned());
            }
            _ => out.push(format!(
                "{sign} {:<w$} {}",
                format!("{k}:"),
                show(v),
                w = width + 1
            )),
        }
    }
    out
}

/// `Plan: 1 to add, 1 to change, 1 to replace, 0 to destroy.`, and the instances that
/// cannot be planned.
pub fn summary(plan: &Plan) -> String {
    let imports = plan.count(Action::Import);
    let mut line = format!(
        "Plan: {}{} to add, {} to change, {} to replace, {} to destroy.",
        if imports > 0 {
            format!("{imports} to import, ")
        } else {
            String::new()
        },
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    );
    if !plan.moves.is_empty() {
        let _ = write!(line, " {} to move.", plan.moves.len());
    }
    let errors = plan.errors().count();
    if errors > 0 {
        let _ = write!(
            line,
            " {errors} {} cannot be planned: the run fails.",
            if errors == 1 { "instance" } else { "instances" }
        );
    }
    let unobserved = plan.unobserved.len();
    if unobserved > 0 {
        let _ = write!(
            line,
            " {unobserved} {} not observed: there may be differences.",
            if unobserved == 1 {
                "instance"
            } else {
                "instances"
            }
        );
    }
    line
}

/// The instances that could not be observed, each with why.
pub fn unobserved_text(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.unobserved.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nNot observed (nothing is planned for them; whether they match is unknown):"
    );
    for item in &plan.unobserved {
        let _ = writeln!(out, "  ? {}: {}", item.address, item.reason);
    }
    out
}

/// The plan's notes, one `note:` line each: what the reader must know first.
fn notes(plan: &Plan) -> String {
    plan.notes
        .iter()
        .map(|n| format!("{}\n", note_line(n)))
        .collect()
}

/// The instances that cannot be planned, each with its reason.
fn errors_text(plan: &Plan) -> String {
    let mut out = String::new();
    for change in plan.errors() {
        let _ = writeln!(
            out,
            "\n  # {}\n  ! {}\n      error: {}",
            headline(plan, change),
            plan.display_address(&change.address),
            change.error.as_deref().unwrap_or_default()
        );
    }
    out
}

/// The text plan of SPEC §6.
pub fn text(plan: &Plan) -> String {
    let mut out = notes(plan);
    // What could not be observed is listed apart, with why, not as a change.
    let unobserved: std::collections::HashSet<&str> =
        plan.unobserved.iter().map(|u| u.address.as_str()).collect();
    let shown: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.error.is_none() && (c.action.is_change() || c.reason.is_some()))
        .filter(|c| !(c.action == Action::NoOp && unobserved.contains(c.address.as_str())))
        .collect();
    if !plan.has_changes() {
        if plan.errors().next().is_some() {
            out.push_str("No changes can be made, and some instances cannot be planned:\n");
            out.push_str(&errors_text(plan));
            out.push_str(&unobserved_text(plan));
            let _ = writeln!(out, "\n{}", summary(plan));
        } else if !plan.unobserved.is_empty() {
            out.push_str(
                "No changes for what was observed, but some instances could not be observed:\n",
            );
            out.push_str(&unobserved_text(plan));
            let _ = writeln!(out, "\n{}", summary(plan));
        } else if plan.changes.iter().any(|c| c.action == Action::Read) {
            out.push_str(
                "No changes. nimbus will only read what it has not read yet (a new Host's facts):\n",
            );
        } else {
            out.push_str("No changes. The observed state matches the repository.\n");
        }
        for change in shown {
            let _ = writeln!(out, "\n  # {}", headline(plan, change));
        }
        return out;
    }
    out.push_str("nimbus will perform the following actions:\n");
    out.push_str(&moves_text(plan));
    for change in shown {
        let _ = writeln!(out, "\n  # {}", headline(plan, change));
        if let Some(confirm) = &change.confirm {
            let _ = writeln!(out, "  # {}", confirm_line(confirm));
        }
        let symbol = change.action.symbol();
        let _ = writeln!(out, "{symbol:>3} {}", plan.display_address(&change.address));
        for line in field_lines(change) {
            let _ = writeln!(out, "      {line}");
        }
    }
    out.push_str(&errors_text(plan));
    out.push_str(&unobserved_text(plan));
    let _ = writeln!(out, "\n{}", summary(plan));
    out.push_str(&by_module(plan));
    out
}

/// Each move: `# File/old has moved to File/new` (the instance is kept; state is renamed).
fn moves_text(plan: &Plan) -> String {
    let mut out = String::new();
    for m in &plan.moves {
        let _ = writeln!(
            out,
            "\n  # {} has moved to {}\n {} {} -> {}",
            m.from, m.to, MOVE_SYMBOL, m.from, m.to
        );
    }
    out
}

/// The symbol of a move in text plans.
pub const MOVE_SYMBOL: &str = "~>";

/// The moves of a markdown plan.
pub fn markdown_moves(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.moves.is_empty() {
        return out;
    }
    out.push_str("**Moves** (kept, renamed in state):\n");
    for m in &plan.moves {
        let _ = writeln!(out, "- `{}` → `{}`", m.from, m.to);
    }
    out.push('\n');
    out
}

/// The plan's changes counted by the module they come from, when modules produced any.
pub fn by_module(plan: &Plan) -> String {
    if plan.modules.is_empty() {
        return String::new();
    }
    let mut groups: std::collections::BTreeMap<&str, [usize; 4]> = Default::default();
    for change in plan.changes.iter().filter(|c| c.error.is_none()) {
        let slot = match change.action {
            Action::Create => 0,
            Action::Update => 1,
            Action::Replace => 2,
            Action::Delete => 3,
            _ => continue,
        };
        let module = plan
            .modules
            .get(change.resource.as_str())
            .map_or("(root)", String::as_str);
        groups.entry(module).or_default()[slot] += 1;
    }
    if groups.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nBy module:\n");
    for (module, [add, change, replace, destroy]) in groups {
        let _ = writeln!(
            out,
            "  {module}: {add} to add, {change} to change, {replace} to replace, {destroy} to destroy"
        );
    }
    out
}

/// A pull-request comment: a summary table, then one collapsible section per change.
/// A plan's note as a line: `note: …`, or `warning: …` for one that warns.
pub fn note_line(note: &str) -> String {
    if note.starts_with("warning: ") {
        note.to_owned()
    } else {
        format!("note: {note}")
    }
}

pub fn markdown(plan: &Plan) -> String {
    let mut out: String = plan
        .notes
        .iter()
        .map(|n| match n.strip_prefix("warning: ") {
            Some(warning) => format!("> **warning:** {warning}\n"),
            None => format!("> **note:** {n}\n"),
        })
        .collect();
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str("### nimbus plan\n\n");
    if !plan.has_changes() && plan.errors().next().is_none() && plan.unobserved.is_empty() {
        out.push_str("No changes. The observed state matches the repository.\n");
        return out;
    }
    out.push_str(&markdown_unobserved(plan));
    for change in plan.errors() {
        let _ = writeln!(
            out,
            "> **error:** `{}` cannot be planned: {}\n",
            plan.display_address(&change.address),
            change.error.as_deref().unwrap_or_default()
        );
    }
    out.push_str(&markdown_summary(plan));
    out.push_str(&markdown_moves(plan));
    for change in plan.changes.iter().filter(|c| c.action.is_change()) {
        out.push_str(&markdown_section(plan, change));
    }
    let _ = writeln!(out, "{}", summary(plan));
    out
}

/// One quoted line per instance that could not be observed, for markdown plans and comments.
pub fn markdown_unobserved(plan: &Plan) -> String {
    let mut out = String::new();
    for item in &plan.unobserved {
        let _ = writeln!(
            out,
            "> **not observed:** `{}`: {} (nothing is planned for it; there may be a difference)\n",
            item.address, item.reason
        );
    }
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
                plan.display_address(&change.address),
                headline(plan, change)
                    .trim_start_matches(&plan.display_address(&change.address))
                    .trim()
            );
        }
    }
    out.push('\n');
    out
}

/// One changed instance as a collapsible markdown section with its field changes.
pub fn markdown_section(plan: &Plan, change: &Change) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<details><summary><code>{} {}</code></summary>\n",
        change.action.symbol(),
        plan.display_address(&change.address)
    );
    let _ = writeln!(out, "{}\n", headline(plan, change));
    let lines = diff_lines(change);
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
