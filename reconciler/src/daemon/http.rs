//! The daemon's HTTP side: the webhook, /status, /runs and /metrics as data, and the pages
//! people read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::page;
use super::status::Status;
use super::webhook::verify_webhook;

pub async fn serve(
    mut stream: tokio::net::TcpStream,
    status: &Mutex<Status>,
    wake: &Notify,
    secret: Option<&str>,
    workdir: &Path,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 {
            return respond(&mut stream, 431, "text/plain", b"headers too large\n").await;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default().to_owned();
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if length > 4 * 1024 * 1024 {
        return respond(&mut stream, 413, "text/plain", b"body too large\n").await;
    }
    let mut body = buffer[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = path.split('?').next().unwrap_or("/");
    match (method, path) {
        ("POST", "/hooks/git") => {
            let verified = secret.is_some_and(|s| verify_webhook(s, &headers, &body));
            if verified {
                wake.notify_one();
                respond(&mut stream, 202, "text/plain", b"fetching\n").await
            } else {
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .webhooks_refused += 1;
                respond(
                    &mut stream,
                    401,
                    "text/plain",
                    b"bad or missing signature\n",
                )
                .await
            }
        }
        ("GET", "/status") => {
            let body = status.lock().unwrap_or_else(|e| e.into_inner()).json();
            respond_json(&mut stream, &body).await
        }
        ("GET", "/metrics") => {
            let body = status.lock().unwrap_or_else(|e| e.into_inner()).metrics();
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                body.as_bytes(),
            )
            .await
        }
        ("GET", "/runs") | ("GET", _) if path == "/runs" || path.starts_with("/runs/") => {
            let state_path = status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .state_path
                .clone()
                .unwrap_or_else(|| workdir.join(".nimbus/state.db"));
            let runs = runs(&state_path);
            let body = match path.strip_prefix("/runs/") {
                Some(id) => runs.as_array().and_then(|r| {
                    r.iter()
                        .find(|r| id.parse::<i64>().is_ok_and(|id| r["id"] == id))
                        .cloned()
                }),
                None => Some(runs),
            };
            match body {
                Some(body) => respond_json(&mut stream, &body).await,
                None => respond(&mut stream, 404, "text/plain", b"no such run\n").await,
            }
        }
        ("GET", _)
            if path == "/"
                || path == "/instances"
                || path.starts_with("/run/")
                || path.starts_with("/resource/") =>
        {
            let state_path = status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .state_path
                .clone()
                .unwrap_or_else(|| workdir.join(".nimbus/state.db"));
            match html(status, &state_path, path) {
                Some(page) => {
                    respond(
                        &mut stream,
                        200,
                        "text/html; charset=utf-8",
                        page.as_bytes(),
                    )
                    .await
                }
                None => respond(&mut stream, 404, "text/plain", b"not found\n").await,
            }
        }
        _ => respond(&mut stream, 404, "text/plain", b"not found\n").await,
    }
}

/// The runs recorded in state (at the Repository's `state.path`).
fn runs(path: &Path) -> Value {
    match crate::state::StateStore::open(path).and_then(|s| s.history()) {
        Ok(history) => serde_json::to_value(history).unwrap_or(Value::Null),
        Err(_) => json!([]),
    }
}

async fn respond_json(stream: &mut tokio::net::TcpStream, body: &Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(body).unwrap_or_default();
    respond(stream, 200, "application/json", text.as_bytes()).await
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    code: u16,
    kind: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        202 => "Accepted",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

/// The page at `path`, or `None` when there is no such run or instance. State is read for
/// runs and history (so that they survive a restart); the estate comes from memory.
fn html(status: &Mutex<Status>, state_path: &Path, path: &str) -> Option<String> {
    let now = super::now();
    let store = crate::state::StateStore::open(state_path).ok();
    if path == "/" {
        let runs = store
            .as_ref()
            .and_then(|s| s.recent_runs(15).ok())
            .unwrap_or_default();
        let status = status.lock().unwrap_or_else(|e| e.into_inner());
        return Some(page::overview(&status, &runs, now));
    }
    if path == "/instances" {
        let status = status.lock().unwrap_or_else(|e| e.into_inner());
        return Some(page::instances_page(&status.estate, now));
    }
    if let Some(id) = path.strip_prefix("/run/") {
        let store = store?;
        let run = store.run(id.parse().ok()?).ok()??;
        let results = store.run_results(run.id).unwrap_or_default();
        let status = status.lock().unwrap_or_else(|e| e.into_inner());
        let commit = run.revision.as_ref().and_then(|c| status.commits.get(c));
        return Some(page::run_page(&run, &results, commit, now));
    }
    let address = page::decode(path.strip_prefix("/resource/")?);
    let stored = store
        .as_ref()
        .and_then(|s| s.resource(&address).ok().flatten());
    let history = store
        .as_ref()
        .and_then(|s| s.results_of(&address, 20).ok())
        .unwrap_or_default();
    let status = status.lock().unwrap_or_else(|e| e.into_inner());
    let view = status.estate.instances.get(&address);
    if view.is_none() && stored.is_none() && history.is_empty() {
        return None;
    }
    Some(page::resource_page(
        &address,
        view,
        stored.as_ref(),
        &history,
        &status.rules,
        now,
    ))
}
