//! The pages a person reads, server-rendered HTML with no build step and two lines of inline
//! script (times in the reader's local time on hover): the overview at `/` (health counts,
//! the revision in force with its commit, the branch head waiting or refused, failures first,
//! the estate's picture, the last runs), a page per run (`/run/N`), per instance
//! (`/resource/ADDRESS`) and the list of every instance (`/instances`). No raw JSON: that
//! stays at `/status` and `/runs`. No secret value: specs are shown with sensitive fields as
//! `(sensitive)`, and state holds no secret value in the first place.
//!
//! Rendered with maud, which escapes every value it is given: no page is built from strings
//! by hand (docs/security.md). Only the style sheet and the script, constants, go in as they
//! are; the estate's SVG is a maud template too (`graph.rs`).

use std::collections::BTreeMap;
use std::fmt::Write;

use maud::{DOCTYPE, Markup, PreEscaped, html};
use nimbus_planner::plan::{KindSchema, Rules};
use serde_json::Value;

use super::estate::{Estate, Health, InstanceView};
pub use super::links::{decode, resource_href};
use super::status::Status;
use crate::gitsource::CommitInfo;
use crate::state::{ResourceResult, RunRow, StoredResource};

/// "3 minutes ago", from Unix seconds.
pub fn ago(now: f64, then: f64) -> String {
    let seconds = (now - then).max(0.0) as u64;
    let (n, unit) = match seconds {
        0..10 => return "just now".to_owned(),
        10..60 => (seconds, "second"),
        60..3600 => (seconds / 60, "minute"),
        3600..86400 => (seconds / 3600, "hour"),
        _ => (seconds / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A time in relative form, the absolute one (UTC, then the reader's local time) on hover.
fn time(now: f64, then: f64) -> Markup {
    let absolute = crate::state::format_time(then as i64);
    let iso = absolute.replace(' ', "T").replace("TUTC", "Z");
    html! { time datetime=(iso) title=(absolute) { (ago(now, then)) } }
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fafbfc}\
header{background:#24292f;color:#fff;padding:10px 20px}header a{color:#fff}main{padding:4px 20px 30px}\
h1{font-size:20px;margin:0}h2{font-size:16px;margin:22px 0 8px}a{color:#0550ae}\
.counts span{display:inline-block;margin:6px 8px 6px 0;padding:4px 10px;border-radius:12px;border:1px solid}\
table{border-collapse:collapse;background:#fff}td,th{padding:4px 10px;border-bottom:1px solid #e1e4e8;text-align:left;vertical-align:top}\
code{font:12px ui-monospace,monospace}.box{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;margin:8px 0}\
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px}\
.ok{color:#1a7f37;border-color:#1a7f37}.failed{color:#cf222e;border-color:#cf222e}.drifted{color:#9a6700;border-color:#bf8700}\
.changing{color:#0969da;border-color:#0969da}.unknown{color:#57606a;border-color:#8c959f}\
svg.estate{background:#fff;border:1px solid #d0d7de;border-radius:6px;max-width:100%;height:auto}\
svg .edges path{fill:none;stroke:#8c959f;stroke-opacity:.55}svg text{font:12px system-ui,sans-serif}\
svg text.layer{font-weight:600;fill:#57606a}svg text.name{font-weight:600;fill:#1b1f24}svg text.detail{fill:#424a53;font-size:11px}\
svg .node rect{stroke-width:2}svg .ok rect{fill:#dafbe1;stroke:#1a7f37}svg .failed rect{fill:#ffebe9;stroke:#cf222e;stroke-width:3}\
svg .drifted rect{fill:#fff8c5;stroke:#bf8700;stroke-dasharray:6 3}svg .changing rect{fill:#ddf4ff;stroke:#0969da}\
svg .unknown rect{fill:#f6f8fa;stroke:#8c959f;stroke-dasharray:2 3}svg a:hover rect{filter:brightness(.93)}";

const SCRIPT: &str = "for(const t of document.querySelectorAll('time'))t.title=new Date(t.dateTime).toLocaleString()+' ('+t.title+')';";

fn document(title: &str, refresh: bool, body: Markup) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                @if refresh { meta http-equiv="refresh" content="5"; }
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { h1 { a href="/" { "nimbus reconcile" } " \u{b7} " (title) } }
                main { (body) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    page.into_string() + "\n"
}

fn badge(health: Health) -> Markup {
    html! { span class=(health.class()) { (health.glyph()) " " (health.label()) } }
}

fn commit_line(commit: &str, info: Option<&CommitInfo>, now: f64) -> Markup {
    html! {
        code { (short(commit)) }
        @if let Some(info) = info {
            " \u{201c}" (info.subject) "\u{201d} by " (info.author) ", " (time(now, info.time as f64))
        }
    }
}

fn instance_link(address: &str) -> Markup {
    html! { a href=(resource_href(address)) { code { (address) } } }
}

/// An instance's link, with its module path when a module produced it.
fn view_link(view: &InstanceView) -> Markup {
    html! { a href=(resource_href(&view.address)) { code { (view.shown()) } } }
}

/// The overview at `/`.
pub fn overview(status: &Status, runs: &[RunRow], now: f64) -> String {
    let estate = &status.estate;
    let counts = estate.counts();
    let mut alarming: Vec<&InstanceView> = estate
        .instances
        .values()
        .filter(|i| matches!(i.health, Health::Failed | Health::Drifted))
        .collect();
    alarming.sort_by(|a, b| a.health.cmp(&b.health).then(a.address.cmp(&b.address)));
    let seen_line = status
        .revision_seen
        .as_ref()
        .filter(|seen| status.revision_applied.as_deref() != Some(seen.as_str()));
    let body = html! {
        @for note in &status.notes {
            p.box { strong { "note:" } " " (note) }
        }
        // At a glance.
        div.counts {
            strong { (estate.instances.len()) " instances" } " "
            @for health in Health::ALL {
                @let n = counts.get(&health).copied().unwrap_or(0);
                @if n > 0 || matches!(health, Health::Failed | Health::InSync) {
                    span class=(health.class()) { (health.glyph()) " " (n) " " (health.label()) }
                }
            }
            span.unknown { (status.drift_events) " drift events since start" }
        }
        div.box {
            @match &status.revision_applied {
                Some(commit) => {
                    "In force: " (commit_line(commit, status.commits.get(commit), now))
                    @if let Some(at) = status.applied_at { "; applied " (time(now, at)) }
                }
                None => { "In force: no revision applied yet" }
            }
            @if let Some(seen) = seen_line {
                @let line = commit_line(seen, status.commits.get(seen), now);
                br;
                @if let Some((_, what)) = status.head_failed.as_ref().filter(|(c, _)| c == seen && status.errors.is_empty()) {
                    span.failed { "\u{2717} Branch head " (line) ": " (what) }
                } @else if status.errors.is_empty() {
                    "Branch head " (line) ": being applied"
                } @else {
                    span.failed {
                        "\u{2717} Branch head " (line) " was refused: "
                        (status.errors.iter().map(|e| first_line(e)).collect::<Vec<_>>().join("; "))
                    }
                }
            }
            @if let Some(error) = &status.fetch_error {
                br;
                span.failed { "\u{2717} The last fetch failed: " (first_line(error)) }
            }
            @if let Some(environment) = &estate.environment {
                br;
                "Environment: " code { (environment) }
            }
            @if let Some(role) = &status.role {
                br;
                "This replica: " (role.describe())
                @if role.is_standby() { " \u{2014} read-only: runs and instances as the shared state records them" }
            }
        }
        @if estate.instances.values().any(|i| i.module.is_some()) {
            h2 { "By module" }
            table {
                tr { th { "module" } th { "instances" }
                    @for health in Health::ALL { th { (health.label()) } } }
                @for (module, counts) in estate.by_module() {
                    tr {
                        td { code { (module) } }
                        td { (counts.values().sum::<usize>()) }
                        @for health in Health::ALL {
                            td class=(health.class()) { (counts.get(&health).copied().unwrap_or(0)) }
                        }
                    }
                }
            }
        }
        @if !status.errors.is_empty() {
            h2 { "Why the branch head is not applied" }
            @for error in &status.errors { pre { (error) } }
        }
        // Failures first.
        @if alarming.is_empty() {
            h2 { "Failed and drifted" }
            p.ok { "\u{2713} Nothing failed or drifted." }
        } @else {
            h2 { "Failed and drifted (" (alarming.len()) ")" }
            table {
                tr { th { "status" } th { "instance" } th { "why" } th { "run" } th { "commit" } th { "since" } }
                @for instance in alarming.iter().take(200) {
                    tr {
                        td { (badge(instance.health)) }
                        td { (view_link(instance)) }
                        td { (instance.reason.as_deref().unwrap_or("")) }
                        td { @if let Some(r) = instance.run { a href={ "/run/" (r) } { "#" (r) } } }
                        td { @if let Some(c) = instance.revision.as_deref() { code { (short(c)) } } }
                        td { (time(now, instance.since)) }
                    }
                }
            }
            @if alarming.len() > 200 {
                p { "and " (alarming.len() - 200) " more on " a href="/instances" { "every instance" } "." }
            }
        }
        h2 { "The estate" }
        @if estate.instances.is_empty() {
            p { "No instances yet." }
        } @else {
            (super::graph::svg(estate))
            p { a href="/instances" { "Every instance" } " \u{b7} hover a box for its reason, click it for its page." }
        }
        (hosts_table(status, now))
        h2 { "Runs" }
        (runs_table(runs, &status.commits, now))
    };
    document("status", true, body)
}

/// Bytes as a person reads them: `1.5 GiB`.
fn bytes(value: &Value) -> String {
    let Some(mut amount) = value.as_f64() else {
        return "\u{2013}".to_owned();
    };
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if amount < 1024.0 {
            return format!("{amount:.1} {unit}");
        }
        amount /= 1024.0;
    }
    format!("{amount:.1} TiB")
}

/// Each Host's facts and load as its agent reported them after the last run.
fn hosts_table(status: &Status, now: f64) -> Markup {
    let figure = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "\u{2013}".to_owned(), |f| format!("{f:.2}"))
    };
    html! {
        @if !status.hosts.is_empty() {
            h2 { "Hosts" }
            p {
                "Facts and load from each host's agent, "
                (status.hosts_at.map_or_else(|| "not yet".to_owned(), |at| ago(now, at))) "."
            }
            table {
                tr { th { "host" } th { "cpus" } th { "load (1, 5, 15 min)" } th { "memory available" } th { "disk available" } th { "up" } }
                @for (host, seen) in &status.hosts {
                    @if let Some(error) = seen["error"].as_str() {
                        tr { td { (host) } td colspan="5" class="bad" { "does not answer: " (error) } }
                    } @else {
                        @let (facts, load) = (&seen["facts"], &seen["load"]);
                        tr {
                            td { (host) }
                            td { (facts["cpus"].as_u64().map_or_else(|| "\u{2013}".to_owned(), |c| c.to_string())) }
                            td { (figure(&load["load1"])) " " (figure(&load["load5"])) " " (figure(&load["load15"])) }
                            td { (bytes(&load["memoryAvailable"])) " of " (bytes(&facts["memory"])) }
                            td { (bytes(&load["diskAvailable"])) " of " (bytes(&facts["disk"])) }
                            td {
                                (load["uptime"].as_f64().map_or_else(
                                    || "\u{2013}".to_owned(),
                                    |u| ago(u, 0.0).replace(" ago", "")
                                ))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(text)
}

fn runs_table(runs: &[RunRow], commits: &BTreeMap<String, CommitInfo>, now: f64) -> Markup {
    html! {
        @if runs.is_empty() {
            p { "No runs yet." }
        } @else {
            table {
                tr { th { "run" } th { "when" } th { "revision" } th { "outcome" } th { "changes" } th { "took" } }
                @for run in runs {
                    @let outcome = run.outcome.as_deref().unwrap_or("running");
                    @let class = match outcome {
                        "succeeded" | "recovered" => "ok",
                        "running" => "changing",
                        _ => "failed",
                    };
                    tr {
                        td { a href={ "/run/" (run.id) } { "#" (run.id) } " " (run.command) }
                        td { (time(now, run.started_at as f64)) }
                        td {
                            @if let Some(c) = run.revision.as_deref() {
                                code { (short(c)) }
                                @if let Some(info) = commits.get(c) { " " (info.subject) }
                            }
                        }
                        td class=(class) { (outcome) }
                        td {
                            (run.applied) " applied, " (run.failed) " failed"
                            @if run.other > 0 { ", " (run.other) " not applied" }
                        }
                        td { @if let Some(end) = run.ended_at { (end - run.started_at) " s" } }
                    }
                }
            }
        }
    }
}

/// A run's page: its revision and every change with its result.
pub fn run_page(
    run: &RunRow,
    results: &[ResourceResult],
    commit: Option<&CommitInfo>,
    now: f64,
) -> String {
    let mut sorted: Vec<&ResourceResult> = results.iter().collect();
    sorted.sort_by_key(|r| (r.outcome == "applied", r.address.clone()));
    let body = html! {
        div.box {
            "Run #" (run.id) " \u{b7} " (run.command) " \u{b7} started " (time(now, run.started_at as f64))
            @if let Some(end) = run.ended_at { ", took " (end - run.started_at) " s" }
            br;
            "Outcome: " strong { (run.outcome.as_deref().unwrap_or("running")) } "; "
            (run.applied) " applied, " (run.failed) " failed, " (run.other) " not applied"
            br;
            "Revision: "
            @match run.revision.as_deref() {
                Some(c) => { (commit_line(c, commit, now)) }
                None => { "none (a local run)" }
            }
        }
        @if results.is_empty() {
            p { "It changed nothing." }
        } @else {
            h2 { "Changes" }
            table {
                tr { th { "instance" } th { "action" } th { "result" } th { "why" } }
                @for result in sorted {
                    @let applied = result.outcome == "applied";
                    tr {
                        td { (instance_link(&result.address)) }
                        td { (result.action) }
                        td class=(if applied { "ok" } else { "failed" }) {
                            (if applied { "\u{2713}" } else { "\u{2717}" }) " " (result.outcome)
                        }
                        td { (result.message.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    };
    document(&format!("run #{}", run.id), false, body)
}

/// A spec as indented lines, with sensitive fields as `(sensitive)`.
fn spec_lines(value: &Value, schema: &KindSchema, path: &str, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if schema.is_sensitive(&child_path) || is_secret_value(child) {
                    let _ = writeln!(out, "{pad}{key}: (sensitive)");
                } else if child.is_object() || child.is_array() {
                    let _ = writeln!(out, "{pad}{key}:");
                    spec_lines(child, schema, &child_path, depth + 1, out);
                } else {
                    let _ = writeln!(out, "{pad}{key}: {}", scalar(child));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let child_path = format!("{path}[{i}]");
                if item.is_object() || item.is_array() {
                    let _ = writeln!(out, "{pad}-");
                    spec_lines(item, schema, &child_path, depth + 1, out);
                } else {
                    let _ = writeln!(out, "{pad}- {}", scalar(item));
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other));
        }
    }
}

/// A value delivered from a secret is recorded as its fingerprint; it is never shown.
fn is_secret_value(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.starts_with("hmac-sha256:"))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) if s.contains('\n') => format!("|\n{s}"),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An instance's page.
pub fn resource_page(
    address: &str,
    view: Option<&InstanceView>,
    stored: Option<&StoredResource>,
    history: &[(RunRow, ResourceResult)],
    rules: &Rules,
    now: f64,
) -> String {
    let kind = view.map(|v| v.kind).or(stored.map(|s| s.record.kind));
    let provider = view
        .map(|v| v.provider.as_str())
        .or(stored.map(|s| s.record.provider.as_str()));
    let target = stored
        .and_then(|s| s.target.clone())
        .or_else(|| view.and_then(InstanceView::host));
    let shown = |sensitive: bool, value: &Option<Value>| {
        if sensitive {
            nimbus_planner::plan::SENSITIVE.to_owned()
        } else {
            value.as_ref().map_or_else(|| "(absent)".to_owned(), scalar)
        }
    };
    let applied = match (stored, kind) {
        (Some(stored), Some(kind)) => {
            let schema = rules.get(&stored.record.provider, kind);
            let mut spec = String::new();
            spec_lines(&stored.record.applied, schema, "", 0, &mut spec);
            let mut outputs = String::new();
            if !stored.record.outputs.is_null() {
                spec_lines(&stored.record.outputs, schema, "", 0, &mut outputs);
            }
            Some((stored.updated_at, spec, outputs))
        }
        _ => None,
    };
    let body = html! {
        div.box {
            code { (address) } br;
            @if let Some(module) = view.and_then(|v| v.module.as_deref()) {
                "Module: " code { (module) } br;
            }
            @if let Some(kind) = kind { "Kind: " (kind.to_string()) br; }
            @if let Some(provider) = provider { "Provider: " code { (provider) } br; }
            @if let Some(target) = &target { "Target: " code { (target) } br; }
            @match view {
                Some(view) => {
                    "Status: " (badge(view.health)) " "
                    @if let Some(reason) = view.reason.as_deref() { "\u{2014} " (reason) }
                    " (since " (time(now, view.since)) ")"
                    @if !view.depends_on.is_empty() {
                        br; "Depends on: "
                        @for (i, dependency) in view.depends_on.iter().enumerate() {
                            @if i > 0 { ", " }
                            (instance_link(dependency))
                        }
                    }
                }
                None => { "Status: not in the estate the daemon knows" }
            }
        }
        @if let Some(view) = view.filter(|v| !v.fields.is_empty()) {
            h2 { "Observed against desired" }
            p { "What the last plan of it found different: the observed value, and what the repository wants." }
            table {
                tr { th { "field" } th { "observed" } th { "desired" } }
                @for field in &view.fields {
                    tr {
                        td { code { (field.path) } }
                        td { code { (shown(field.sensitive, &field.before)) } }
                        td { code { (shown(field.sensitive, &field.after)) } }
                    }
                }
            }
        }
        @if let Some((updated_at, spec, outputs)) = &applied {
            h2 { "Desired spec, as last applied" }
            p {
                "What nimbus applied and observed in its last change, updated "
                (time(now, *updated_at as f64)) "; secrets show as (sensitive)."
            }
            pre { (spec) }
            @if !outputs.is_empty() {
                h2 { "Observed and generated values" }
                pre { (outputs) }
            }
        }
        h2 { "Last changes" }
        @if history.is_empty() {
            p { "None recorded." }
        } @else {
            table {
                tr { th { "run" } th { "when" } th { "action" } th { "result" } th { "why" } }
                @for (run, result) in history {
                    tr {
                        td { a href={ "/run/" (run.id) } { "#" (run.id) } }
                        td { (time(now, run.started_at as f64)) }
                        td { (result.action) }
                        td class=(if result.outcome == "applied" { "ok" } else { "failed" }) { (result.outcome) }
                        td { (result.message.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    };
    document(address, false, body)
}

/// Every instance, most alarming first.
pub fn instances_page(estate: &Estate, now: f64) -> String {
    let mut all: Vec<&InstanceView> = estate.instances.values().collect();
    all.sort_by(|a, b| a.health.cmp(&b.health).then(a.address.cmp(&b.address)));
    let body = html! {
        table {
            tr { th { "status" } th { "instance" } th { "provider" } th { "why" } th { "since" } }
            @for instance in all {
                tr {
                    td { (badge(instance.health)) }
                    td { (view_link(instance)) }
                    td { (instance.provider) }
                    td { (instance.reason.as_deref().unwrap_or("")) }
                    td { (time(now, instance.since)) }
                }
            }
        }
    };
    document("every instance", false, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_links() {
        for address in ["File/motd@web-1", "Workload/acme/web", "Host/h 1", "VM/ünï"] {
            let href = resource_href(address);
            assert!(!href.contains(' '));
            assert_eq!(decode(href.trim_start_matches("/resource/")), address);
        }
    }

    #[test]
    fn values_on_pages_are_escaped_by_the_template() {
        let run = RunRow {
            id: 7,
            command: "<script>alert(1)</script>".into(),
            revision: None,
            outcome: Some("failed\"><img src=x onerror=alert(1)>".into()),
            started_at: 0,
            ended_at: Some(1),
            applied: 0,
            failed: 1,
            other: 0,
        };
        let page = run_page(&run, &[], None, 10.0);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
    }

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(ago(1000.0, 995.0), "just now");
        assert_eq!(ago(1000.0, 958.0), "42 seconds ago");
        assert_eq!(ago(10_000.0, 10_000.0 - 180.0), "3 minutes ago");
        assert_eq!(ago(10_000.0, 10_000.0 - 3600.0), "1 hour ago");
        assert_eq!(ago(1_000_000.0, 1_000_000.0 - 86400.0 * 2.0), "2 days ago");
    }
}
