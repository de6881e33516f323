//! The pages a person reads, server-rendered HTML with no build step and two lines of inline
//! script (times in the reader's local time on hover): the overview at `/` (health counts,
//! the revision in force with its commit, the branch head waiting or refused, failures first,
//! the estate's picture, the last runs), a page per run (`/run/N`), per instance
//! (`/resource/ADDRESS`) and the list of every instance (`/instances`). No raw JSON: that
//! stays at `/status` and `/runs`. No secret value: specs are shown with sensitive fields as
//! `(sensitive)`, and state holds no secret value in the first place.

use std::collections::BTreeMap;
use std::fmt::Write;

use nimbus_planner::plan::{KindSchema, Rules};
use serde_json::Value;

use super::estate::{Estate, Health, InstanceView};
use super::status::Status;
use crate::gitsource::CommitInfo;
use crate::state::{ResourceResult, RunRow, StoredResource};

/// Escapes text for HTML, attributes included.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The link to an instance's page.
pub fn resource_href(address: &str) -> String {
    let mut out = String::from("/resource/");
    for byte in address.bytes() {
        if byte.is_ascii_alphanumeric() || b"/@._-".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Undoes percent-encoding in a path.
pub fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
fn time(now: f64, then: f64) -> String {
    let absolute = crate::state::format_time(then as i64);
    let iso = absolute.replace(' ', "T").replace("TUTC", "Z");
    format!(
        "<time datetime=\"{iso}\" title=\"{absolute}\">{}</time>",
        ago(now, then)
    )
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

const SCRIPT: &str = "<script>for(const t of document.querySelectorAll('time'))t.title=new Date(t.dateTime).toLocaleString()+' ('+t.title+')';</script>";

fn document(title: &str, refresh: bool, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">{}<title>{}</title><style>{STYLE}</style></head><body><header><h1><a href=\"/\">nimbus reconcile</a> \u{b7} {}</h1></header><main>{body}</main>{SCRIPT}</body></html>\n",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"5\">"
        } else {
            ""
        },
        escape(title),
        escape(title)
    )
}

fn badge(health: Health) -> String {
    format!(
        "<span class=\"{}\">{} {}</span>",
        health.class(),
        health.glyph(),
        health.label()
    )
}

fn commit_line(commit: &str, info: Option<&CommitInfo>, now: f64) -> String {
    match info {
        Some(info) => format!(
            "<code>{}</code> \u{201c}{}\u{201d} by {}, {}",
            escape(short(commit)),
            escape(&info.subject),
            escape(&info.author),
            time(now, info.time as f64)
        ),
        None => format!("<code>{}</code>", escape(short(commit))),
    }
}

/// The overview at `/`.
pub fn overview(status: &Status, runs: &[RunRow], now: f64) -> String {
    let estate = &status.estate;
    let mut body = String::new();
    for note in &status.notes {
        let _ = write!(
            body,
            "<p class=\"box\"><strong>note:</strong> {}</p>",
            escape(note)
        );
    }
    // At a glance.
    body.push_str("<div class=\"counts\">");
    let counts = estate.counts();
    let _ = write!(
        body,
        "<strong>{} instances</strong> ",
        estate.instances.len()
    );
    for health in Health::ALL {
        let n = counts.get(&health).copied().unwrap_or(0);
        if n > 0 || matches!(health, Health::Failed | Health::InSync) {
            let _ = write!(
                body,
                "<span class=\"{}\">{} {n} {}</span>",
                health.class(),
                health.glyph(),
                health.label()
            );
        }
    }
    let _ = write!(
        body,
        "<span class=\"unknown\">{} drift events since start</span></div>",
        status.drift_events
    );
    body.push_str("<div class=\"box\">");
    match &status.revision_applied {
        Some(commit) => {
            let _ = write!(
                body,
                "In force: {}",
                commit_line(commit, status.commits.get(commit), now)
            );
            if let Some(at) = status.applied_at {
                let _ = write!(body, "; applied {}", time(now, at));
            }
        }
        None => body.push_str("In force: no revision applied yet"),
    }
    if let Some(seen) = &status.revision_seen
        && status.revision_applied.as_deref() != Some(seen.as_str())
    {
        let line = commit_line(seen, status.commits.get(seen), now);
        if let Some((commit, what)) = &status.head_failed
            && commit == seen
            && status.errors.is_empty()
        {
            let _ = write!(
                body,
                "<br><span class=\"failed\">\u{2717} Branch head {line}: {}</span>",
                escape(what)
            );
        } else if status.errors.is_empty() {
            let _ = write!(body, "<br>Branch head {line}: being applied");
        } else {
            let reason = status
                .errors
                .iter()
                .map(|e| first_line(e))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = write!(
                body,
                "<br><span class=\"failed\">\u{2717} Branch head {line} was refused: {}</span>",
                escape(&reason)
            );
        }
    }
    if let Some(error) = &status.fetch_error {
        let _ = write!(
            body,
            "<br><span class=\"failed\">\u{2717} The last fetch failed: {}</span>",
            escape(first_line(error))
        );
    }
    body.push_str("</div>");
    if !status.errors.is_empty() {
        body.push_str("<h2>Why the branch head is not applied</h2>");
        for error in &status.errors {
            let _ = write!(body, "<pre>{}</pre>", escape(error));
        }
    }

    // Failures first.
    let mut alarming: Vec<&InstanceView> = estate
        .instances
        .values()
        .filter(|i| matches!(i.health, Health::Failed | Health::Drifted))
        .collect();
    alarming.sort_by(|a, b| a.health.cmp(&b.health).then(a.address.cmp(&b.address)));
    if alarming.is_empty() {
        body.push_str(
            "<h2>Failed and drifted</h2><p class=\"ok\">\u{2713} Nothing failed or drifted.</p>",
        );
    } else {
        let _ = write!(
            body,
            "<h2>Failed and drifted ({})</h2><table><tr><th>status</th><th>instance</th><th>why</th><th>run</th><th>commit</th><th>since</th></tr>",
            alarming.len()
        );
        for instance in alarming.iter().take(200) {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><a href=\"{}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                badge(instance.health),
                escape(&resource_href(&instance.address)),
                escape(&instance.address),
                escape(instance.reason.as_deref().unwrap_or("")),
                instance
                    .run
                    .map(|r| format!("<a href=\"/run/{r}\">#{r}</a>"))
                    .unwrap_or_default(),
                instance
                    .revision
                    .as_deref()
                    .map(|c| format!("<code>{}</code>", escape(short(c))))
                    .unwrap_or_default(),
                time(now, instance.since)
            );
        }
        body.push_str("</table>");
        if alarming.len() > 200 {
            let _ = write!(
                body,
                "<p>and {} more on <a href=\"/instances\">every instance</a>.</p>",
                alarming.len() - 200
            );
        }
    }

    body.push_str("<h2>The estate</h2>");
    if estate.instances.is_empty() {
        body.push_str("<p>No instances yet.</p>");
    } else {
        body.push_str(&super::graph::svg(estate));
        body.push_str("<p><a href=\"/instances\">Every instance</a> \u{b7} hover a box for its reason, click it for its page.</p>");
    }

    body.push_str(&hosts_table(status, now));

    body.push_str("<h2>Runs</h2>");
    body.push_str(&runs_table(runs, &status.commits, now));
    document("status", true, &body)
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
fn hosts_table(status: &Status, now: f64) -> String {
    if status.hosts.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<h2>Hosts</h2><p>Facts and load from each host's agent, {}.</p><table><tr><th>host</th><th>cpus</th><th>load (1, 5, 15 min)</th><th>memory available</th><th>disk available</th><th>up</th></tr>",
        status
            .hosts_at
            .map_or_else(|| "not yet".to_owned(), |at| ago(now, at))
    );
    for (host, seen) in &status.hosts {
        let name = escape(host);
        if let Some(error) = seen["error"].as_str() {
            let _ = write!(
                out,
                "<tr><td>{name}</td><td colspan=\"5\" class=\"bad\">does not answer: {}</td></tr>",
                escape(error)
            );
            continue;
        }
        let (facts, load) = (&seen["facts"], &seen["load"]);
        let figure = |v: &Value| {
            v.as_f64()
                .map_or_else(|| "\u{2013}".to_owned(), |f| format!("{f:.2}"))
        };
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{} {} {}</td><td>{} of {}</td><td>{} of {}</td><td>{}</td></tr>",
            facts["cpus"]
                .as_u64()
                .map_or_else(|| "\u{2013}".to_owned(), |c| c.to_string()),
            figure(&load["load1"]),
            figure(&load["load5"]),
            figure(&load["load15"]),
            bytes(&load["memoryAvailable"]),
            bytes(&facts["memory"]),
            bytes(&load["diskAvailable"]),
            bytes(&facts["disk"]),
            load["uptime"].as_f64().map_or_else(
                || "\u{2013}".to_owned(),
                |u| ago(u, 0.0).replace(" ago", "")
            ),
        );
    }
    out.push_str("</table>");
    out
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(text)
}

fn runs_table(runs: &[RunRow], commits: &BTreeMap<String, CommitInfo>, now: f64) -> String {
    if runs.is_empty() {
        return "<p>No runs yet.</p>".to_owned();
    }
    let mut out = String::from(
        "<table><tr><th>run</th><th>when</th><th>revision</th><th>outcome</th><th>changes</th><th>took</th></tr>",
    );
    for run in runs {
        let outcome = run.outcome.as_deref().unwrap_or("running");
        let class = match outcome {
            "succeeded" | "recovered" => "ok",
            "running" => "changing",
            _ => "failed",
        };
        let revision = run
            .revision
            .as_deref()
            .map_or_else(String::new, |c| match commits.get(c) {
                Some(info) => format!(
                    "<code>{}</code> {}",
                    escape(short(c)),
                    escape(&info.subject)
                ),
                None => format!("<code>{}</code>", escape(short(c))),
            });
        let took = run
            .ended_at
            .map(|end| format!("{} s", end - run.started_at))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td><a href=\"/run/{id}\">#{id}</a> {}</td><td>{}</td><td>{revision}</td><td class=\"{class}\">{}</td><td>{} applied, {} failed{}</td><td>{took}</td></tr>",
            escape(&run.command),
            time(now, run.started_at as f64),
            escape(outcome),
            run.applied,
            run.failed,
            if run.other > 0 {
                format!(", {} not applied", run.other)
            } else {
                String::new()
            },
            id = run.id,
        );
    }
    out.push_str("</table>");
    out
}

/// A run's page: its revision and every change with its result.
pub fn run_page(
    run: &RunRow,
    results: &[ResourceResult],
    commit: Option<&CommitInfo>,
    now: f64,
) -> String {
    let mut body = format!(
        "<div class=\"box\">Run #{} \u{b7} {} \u{b7} started {}{}<br>Outcome: <strong>{}</strong>; {} applied, {} failed, {} not applied<br>Revision: {}</div>",
        run.id,
        escape(&run.command),
        time(now, run.started_at as f64),
        run.ended_at
            .map(|e| format!(", took {} s", e - run.started_at))
            .unwrap_or_default(),
        escape(run.outcome.as_deref().unwrap_or("running")),
        run.applied,
        run.failed,
        run.other,
        run.revision.as_deref().map_or_else(
            || "none (a local run)".to_owned(),
            |c| commit_line(c, commit, now)
        ),
    );
    if results.is_empty() {
        body.push_str("<p>It changed nothing.</p>");
    } else {
        body.push_str("<h2>Changes</h2><table><tr><th>instance</th><th>action</th><th>result</th><th>why</th></tr>");
        let mut sorted: Vec<&ResourceResult> = results.iter().collect();
        sorted.sort_by_key(|r| (r.outcome == "applied", r.address.clone()));
        for result in sorted {
            let class = if result.outcome == "applied" {
                "ok"
            } else {
                "failed"
            };
            let _ = write!(
                body,
                "<tr><td><a href=\"{}\"><code>{}</code></a></td><td>{}</td><td class=\"{class}\">{} {}</td><td>{}</td></tr>",
                escape(&resource_href(&result.address)),
                escape(&result.address),
                escape(&result.action),
                if class == "ok" {
                    "\u{2713}"
                } else {
                    "\u{2717}"
                },
                escape(&result.outcome),
                escape(result.message.as_deref().unwrap_or("")),
            );
        }
        body.push_str("</table>");
    }
    document(&format!("run #{}", run.id), false, &body)
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
    let mut body = String::from("<div class=\"box\">");
    let _ = write!(body, "<code>{}</code><br>", escape(address));
    let kind = view.map(|v| v.kind).or(stored.map(|s| s.record.kind));
    if let Some(kind) = kind {
        let _ = write!(body, "Kind: {kind}<br>");
    }
    let provider = view
        .map(|v| v.provider.as_str())
        .or(stored.map(|s| s.provider.as_str()));
    if let Some(provider) = provider {
        let _ = write!(body, "Provider: <code>{}</code><br>", escape(provider));
    }
    let target = stored
        .and_then(|s| s.target.clone())
        .or_else(|| view.and_then(|v| v.host().map(str::to_owned)));
    if let Some(target) = target {
        let _ = write!(body, "Target: <code>{}</code><br>", escape(&target));
    }
    match view {
        Some(view) => {
            let _ = write!(
                body,
                "Status: {} {}{}",
                badge(view.health),
                view.reason
                    .as_deref()
                    .map(|r| format!("\u{2014} {}", escape(r)))
                    .unwrap_or_default(),
                format_args!(" (since {})", time(now, view.since))
            );
            if !view.depends_on.is_empty() {
                body.push_str("<br>Depends on: ");
                let links: Vec<String> = view
                    .depends_on
                    .iter()
                    .map(|d| {
                        format!(
                            "<a href=\"{}\"><code>{}</code></a>",
                            escape(&resource_href(d)),
                            escape(d)
                        )
                    })
                    .collect();
                body.push_str(&links.join(", "));
            }
        }
        None => body.push_str("Status: not in the estate the daemon knows"),
    }
    body.push_str("</div>");
    if let Some(view) = view
        && !view.fields.is_empty()
    {
        body.push_str("<h2>Observed against desired</h2><p>What the last plan of it found different: the observed value, and what the repository wants.</p><table><tr><th>field</th><th>observed</th><th>desired</th></tr>");
        for field in &view.fields {
            let shown = |value: &Option<Value>| {
                if field.sensitive {
                    nimbus_planner::plan::SENSITIVE.to_owned()
                } else {
                    value.as_ref().map_or_else(|| "(absent)".to_owned(), scalar)
                }
            };
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                escape(&field.path),
                escape(&shown(&field.before)),
                escape(&shown(&field.after))
            );
        }
        body.push_str("</table>");
    }
    if let (Some(stored), Some(kind)) = (stored, kind) {
        let schema = rules.get(&stored.provider, kind);
        let mut lines = String::new();
        spec_lines(&stored.record.applied, schema, "", 0, &mut lines);
        let _ = write!(
            body,
            "<h2>Desired spec, as last applied</h2><p>What nimbus applied and observed in its last change, updated {}; secrets show as (sensitive).</p><pre>{}</pre>",
            time(now, stored.updated_at as f64),
            escape(&lines)
        );
        if !stored.record.outputs.is_null() {
            let mut lines = String::new();
            spec_lines(&stored.record.outputs, schema, "", 0, &mut lines);
            let _ = write!(
                body,
                "<h2>Observed and generated values</h2><pre>{}</pre>",
                escape(&lines)
            );
        }
    }
    body.push_str("<h2>Last changes</h2>");
    if history.is_empty() {
        body.push_str("<p>None recorded.</p>");
    } else {
        body.push_str(
            "<table><tr><th>run</th><th>when</th><th>action</th><th>result</th><th>why</th></tr>",
        );
        for (run, result) in history {
            let _ = write!(
                body,
                "<tr><td><a href=\"/run/{id}\">#{id}</a></td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                time(now, run.started_at as f64),
                escape(&result.action),
                if result.outcome == "applied" {
                    "ok"
                } else {
                    "failed"
                },
                escape(&result.outcome),
                escape(result.message.as_deref().unwrap_or("")),
                id = run.id
            );
        }
        body.push_str("</table>");
    }
    document(address, false, &body)
}

/// Every instance, most alarming first.
pub fn instances_page(estate: &Estate, now: f64) -> String {
    let mut all: Vec<&InstanceView> = estate.instances.values().collect();
    all.sort_by(|a, b| a.health.cmp(&b.health).then(a.address.cmp(&b.address)));
    let mut body = String::from(
        "<table><tr><th>status</th><th>instance</th><th>provider</th><th>why</th><th>since</th></tr>",
    );
    for instance in all {
        let _ = write!(
            body,
            "<tr><td>{}</td><td><a href=\"{}\"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            badge(instance.health),
            escape(&resource_href(&instance.address)),
            escape(&instance.address),
            escape(&instance.provider),
            escape(instance.reason.as_deref().unwrap_or("")),
            time(now, instance.since)
        );
    }
    body.push_str("</table>");
    document("every instance", false, &body)
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
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
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
