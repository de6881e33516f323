//! The references that must not drift from the code, generated from it and checked in:
//! docs/reference/cli.md and the man pages docs/man/*.1 from the command line (clap), and
//! docs/reference/fields.md from the manifests' JSON Schemas. A change to a flag or a field
//! without the regenerated documents fails here (`NIMBUS_BLESS=1` writes them; review the
//! diff). Also: every problem code the code can emit is documented in docs/cli.md.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use nimbus::cli::Cli;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compares `text` with the checked-in file (writing it first under NIMBUS_BLESS).
fn compare(relative: &str, text: &str) {
    let path = root().join(relative);
    if std::env::var_os("NIMBUS_BLESS").is_some() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    }
    let checked_in = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{relative}: {e}; run with NIMBUS_BLESS=1"));
    assert!(
        checked_in == text,
        "{relative} differs from what the code generates; run with NIMBUS_BLESS=1 and review the diff"
    );
}

/// Every command, depth first, with its full name (`nimbus state list`).
fn commands(command: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    let name = if prefix.is_empty() {
        command.get_name().to_owned()
    } else {
        format!("{prefix} {}", command.get_name())
    };
    out.push((name.clone(), command.clone()));
    for sub in command.get_subcommands() {
        if sub.get_name() != "help" {
            commands(sub, &name, out);
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[test]
fn the_cli_reference_and_man_pages_are_the_command_line() {
    let mut cli = Cli::command();
    cli.build();
    let mut all = Vec::new();
    commands(&cli, "", &mut all);
    let mut out = String::from(
        "# Command-line reference\n\n\
         Generated from the command line itself (`reconciler/src/cli.rs`) by\n\
         `reconciler/tests/docs_reference.rs`; do not edit. What each command does, with\n\
         examples, is in [cli.md](../cli.md); man pages of the same are in [../man](../man).\n",
    );
    for (name, command) in &all {
        let _ = write!(out, "\n## `{name}`\n\n");
        if let Some(about) = command.get_long_about().or(command.get_about()) {
            let _ = writeln!(out, "{}\n", one_line(&about.to_string()));
        }
        let usage = command.clone().render_usage().to_string();
        let _ = writeln!(
            out,
            "```\n{}\n```\n",
            usage.trim_start_matches("Usage: ").trim()
        );
        // Global flags are listed once, under `nimbus`.
        let top = name == "nimbus";
        let arguments: Vec<&clap::Arg> = command
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
            .filter(|a| top || !a.is_global_set())
            .collect();
        if !arguments.is_empty() {
            out.push_str("| argument | meaning |\n|---|---|\n");
            for argument in arguments {
                let mut names = Vec::new();
                if let Some(short) = argument.get_short() {
                    names.push(format!("-{short}"));
                }
                if let Some(long) = argument.get_long() {
                    names.push(format!("--{long}"));
                }
                for alias in argument.get_visible_aliases().unwrap_or_default() {
                    names.push(format!("--{alias}"));
                }
                let value = argument
                    .get_value_names()
                    .map(|v| {
                        v.iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_else(|| argument.get_id().to_string().to_uppercase());
                let shown = if names.is_empty() {
                    value
                } else if argument.get_num_args().is_some_and(|n| n.takes_values())
                    && !matches!(
                        argument.get_action(),
                        clap::ArgAction::SetTrue | clap::ArgAction::Count
                    )
                {
                    format!("{} {value}", names.join(", "))
                } else {
                    names.join(", ")
                };
                let mut meaning = argument
                    .get_long_help()
                    .or(argument.get_help())
                    .map(|h| one_line(&h.to_string()))
                    .unwrap_or_default();
                let defaults: Vec<String> = argument
                    .get_default_values()
                    .iter()
                    .map(|d| d.to_string_lossy().into_owned())
                    .collect();
                if !defaults.is_empty() {
                    let _ = write!(meaning, " (default: `{}`)", defaults.join(" "));
                }
                let possible: Vec<String> = argument
                    .get_possible_values()
                    .iter()
                    .filter(|v| !v.is_hide_set())
                    .map(|v| v.get_name().to_owned())
                    .collect();
                if !possible.is_empty()
                    && !matches!(argument.get_action(), clap::ArgAction::SetTrue)
                {
                    let _ = write!(meaning, " (one of: `{}`)", possible.join("`, `"));
                }
                if argument.is_global_set() {
                    meaning.push_str(" (global)");
                }
                let _ = writeln!(out, "| `{shown}` | {} |", meaning.trim());
            }
            out.push('\n');
        }
    }
    compare("docs/reference/cli.md", &out);

    // A man page per command: nimbus.1, nimbus-plan.1, nimbus-state-list.1, ...
    let mut pages = BTreeSet::new();
    for (name, command) in &all {
        let file = format!("{}.1", name.replace(' ', "-"));
        let mut page = Vec::new();
        // clap takes a command's name as a &'static str.
        let page_name: &'static str = Box::leak(name.replace(' ', "-").into_boxed_str());
        clap_mangen::Man::new(command.clone().name(page_name))
            .render(&mut page)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        compare(&format!("docs/man/{file}"), &String::from_utf8_lossy(&page));
        pages.insert(file);
    }
    for entry in std::fs::read_dir(root().join("docs/man"))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let file = entry.file_name().to_string_lossy().into_owned();
        assert!(
            pages.contains(&file),
            "docs/man/{file} is no command of nimbus"
        );
    }
}

/// The spec fields of a schema, as rows `path | type | default | meaning`.
fn field_rows(schema: &Value, defs: &Value, path: &str, depth: usize, rows: &mut Vec<String>) {
    let resolve = |node: &Value| -> Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(reference) => defs
                .get(reference.trim_start_matches("#/$defs/"))
                .cloned()
                .unwrap_or(Value::Null),
            None => node.clone(),
        }
    };
    let schema = resolve(schema);
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: BTreeSet<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, field) in properties {
        let field_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        // `anyOf: [X, null]` is an optional X.
        let inner = field
            .get("anyOf")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|v| v.get("type") != Some(&Value::String("null".into())))
            })
            .map(resolve)
            .unwrap_or_else(|| resolve(field));
        let kind = type_of(&inner, field);
        let description = field
            .get("description")
            .or(inner.get("description"))
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        let default = field
            .get("default")
            .map(|d| format!("`{d}`"))
            .unwrap_or_else(|| {
                if required.contains(name.as_str()) {
                    "required".into()
                } else {
                    String::new()
                }
            });
        rows.push(format!(
            "| `{field_path}` | {kind} | {default} | {description} |"
        ));
        if depth < 3 {
            field_rows(&inner, defs, &field_path, depth + 1, rows);
            if let Some(items) = inner.get("items") {
                field_rows(items, defs, &format!("{field_path}[]"), depth + 1, rows);
            }
        }
    }
}

fn type_of(inner: &Value, field: &Value) -> String {
    if let Some(values) = inner.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ");
    }
    match inner.get("type").or(field.get("type")) {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ if inner.get("oneOf").is_some() || inner.get("anyOf").is_some() => {
            "one of several forms".into()
        }
        _ => "any".into(),
    }
}

#[test]
fn the_manifest_field_reference_is_the_json_schemas() {
    let mut out = String::from(
        "# Manifest field reference\n\n\
         Generated from the manifests' JSON Schemas (`schemas/json/`, made from the Rust types)\n\
         by `reconciler/tests/docs_reference.rs`; do not edit. [manifests.md](../manifests.md)\n\
         explains each kind with examples.\n",
    );
    for kind in nimbus_schemas::Kind::ALL {
        let schema: Value =
            serde_json::from_str(&nimbus_schemas::json_schema::document_schema(kind))
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
        let spec = &schema["properties"]["spec"];
        let _ = write!(out, "\n## {kind}\n\n");
        if let Some(about) = spec.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", one_line(about));
        }
        out.push_str("| field | type | default | meaning |\n|---|---|---|---|\n");
        let mut rows = Vec::new();
        field_rows(spec, &defs, "", 0, &mut rows);
        for row in rows {
            let _ = writeln!(out, "{row}");
        }
    }
    compare("docs/reference/fields.md", &out);
}

/// Every problem code in the code (`nimbus::area::what`) is in docs/cli.md's table.
#[test]
fn every_problem_code_is_documented() {
    let documented = std::fs::read_to_string(root().join("docs/cli.md")).unwrap_or_default();
    let mut missing = Vec::new();
    let mut found = BTreeSet::new();
    for crate_dir in [
        "planner/src",
        "reconciler/src",
        "providers/src",
        "provider-core/src",
        "provider-docker/src",
        "provider-kube/src",
    ] {
        let mut stack = vec![root().join(crate_dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{e}"))
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for (i, _) in text.match_indices("\"nimbus::") {
                    let code: String = text[i + 1..]
                        .chars()
                        .take_while(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || *c == ':' || *c == '_'
                        })
                        .collect();
                    if code.matches("::").count() == 2 && !code.ends_with(':') {
                        found.insert(code);
                    }
                }
            }
        }
    }
    for code in &found {
        if !documented.contains(&format!("`{code}`")) {
            missing.push(code.clone());
        }
    }
    assert!(found.len() > 20, "found only {found:?}");
    assert!(
        missing.is_empty(),
        "problem codes not in docs/cli.md's table: {missing:?}"
    );
}
