//! The daemon's HTTP side, on hyper's HTTP/1.1 server: the webhook, /status, /runs and
//! /metrics as data, the pages people read, and /healthz and /readyz for probes.
//!
//! The front door (docs/security.md): request headers must arrive within
//! [`HEADER_TIMEOUT`] and a webhook's body within [`BODY_TIMEOUT`], bodies are at most
//! [`MAX_BODY`], at most [`MAX_CONNECTIONS`] connections are served at once (more are closed
//! as they come, so the backlog never fills with them), and the accept loop backs off when
//! accepting fails (out of file descriptors) instead of spinning. With a token, every page
//! and data endpoint wants `Authorization: Bearer TOKEN`; webhooks are authenticated by
//! their signatures alone, probes by nothing.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use super::page;
use super::status::Status;
use super::webhook::{same, verify_webhook};

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a webhook's body, once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest webhook body read.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Connections served at once. Each costs a task and hyper's buffers (tens of KiB at most),
/// so this bounds the daemon's memory; the timeouts above free a slot within seconds.
pub const MAX_CONNECTIONS: usize = 4096;
/// The shortest secret or token the daemon takes, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// What every connection shares.
pub struct Front {
    pub status: Arc<Mutex<Status>>,
    pub wake: Arc<Notify>,
    /// The webhook secret; without one, every webhook is refused.
    pub secret: Option<String>,
    /// The bearer token the pages and data endpoints want; without one, they are open.
    pub token: Option<String>,
    pub workdir: PathBuf,
}

/// Reads a secret or token from `path`: its content, trimmed, refused when it is empty or
/// shorter than [`MIN_SECRET_BYTES`] (a signature made with an empty key would otherwise be
/// valid).
pub fn read_secret(path: &Path, what: &'static str) -> Result<String, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretFileError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    let secret = text.trim().to_owned();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(SecretFileError::TooShort {
            what,
            path: path.to_owned(),
            len: secret.len(),
        });
    }
    Ok(secret)
}

/// Why the daemon's webhook secret or bearer token cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SecretFileError {
    #[error("cannot read the {what} {}", path.display())]
    #[diagnostic(code(nimbus::daemon::secret_file))]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the {what} in {} is {len} bytes long; it must be at least {MIN_SECRET_BYTES} (make one with `head -c 32 /dev/urandom | base64`)",
        path.display()
    )]
    #[diagnostic(code(nimbus::daemon::secret_file))]
    TooShort {
        what: &'static str,
        path: std::path::PathBuf,
        len: usize,
    },
}

/// Accepts connections until `shutdown`, serving each on a task of its own.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    front: Arc<Front>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                stream
            }
            Err(e) => {
                // Out of file descriptors, or memory: wait for connections to end.
                tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let front = Arc::clone(&front);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let front = Arc::clone(&front);
                async move { Ok::<_, Infallible>(route(&front, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = connection.await;
            drop(slot);
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(code: StatusCode, kind: &str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = code;
    if let Ok(value) = hyper::header::HeaderValue::from_str(kind) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn text(code: StatusCode, body: &'static str) -> Reply {
    reply(code, "text/plain; charset=utf-8", body)
}

fn reply_json(body: &Value) -> Reply {
    let text = serde_json::to_string_pretty(body).unwrap_or_default();
    reply(StatusCode::OK, "application/json", text)
}

/// Whether the request carries the bearer token (or none is required).
fn authorized(front: &Front, request: &Request<Incoming>) -> bool {
    let Some(token) = &front.token else {
        return true;
    };
    request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()))
}

async fn route(front: &Front, request: Request<Incoming>) -> Reply {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (method.as_str(), path.as_str()) {
        ("GET", "/healthz") => text(StatusCode::OK, "ok\n"),
        ("GET", "/readyz") => {
            let status = front.status.lock().unwrap_or_else(|e| e.into_inner());
            // A standby is ready once it knows who leads: it serves its pages from the state.
            let standby = status
                .role
                .as_ref()
                .is_some_and(super::status::Role::is_standby);
            if (status.revision_seen.is_some() || standby) && status.fetch_error.is_none() {
                match &status.role {
                    Some(role) => reply(
                        StatusCode::OK,
                        "text/plain; charset=utf-8",
                        format!("ready: {}\n", role.describe()),
                    ),
                    None => text(StatusCode::OK, "ready\n"),
                }
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the branch has not been fetched yet, or the last fetch failed\n",
                )
            }
        }
        ("POST", "/hooks/git") => webhook(front, request).await,
        ("GET", _) if !authorized(front, &request) => {
            let mut response = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"nimbus\""),
            );
            response
        }
        ("GET", "/status") => {
            let body = front
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .json();
            reply_json(&body)
        }
        ("GET", "/metrics") => {
            let body = front
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .metrics();
            reply(StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        ("GET", _) if path == "/runs" || path.starts_with("/runs/") => {
            let query = request.uri().query().unwrap_or_default().to_owned();
            let state = state_path(front);
            // SQLite is read on the blocking pool, never on the workers that serve requests.
            let found = tokio::task::spawn_blocking(move || runs(&state, &path, &query)).await;
            match found {
                Ok(Some((body, next))) => {
                    let mut response = reply_json(&body);
                    if let Some(next) = next
                        && let Ok(link) = hyper::header::HeaderValue::from_str(&next)
                    {
                        response.headers_mut().insert(hyper::header::LINK, link);
                    }
                    response
                }
                Ok(None) => text(StatusCode::NOT_FOUND, "no such run\n"),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "reading state failed\n"),
            }
        }
        ("GET", _)
            if path == "/"
                || path == "/instances"
                || path.starts_with("/run/")
                || path.starts_with("/resource/") =>
        {
            let (status, state) = (Arc::clone(&front.status), state_path(front));
            match tokio::task::spawn_blocking(move || html(&status, &state, &path)).await {
                Ok(Some(page)) => reply(StatusCode::OK, "text/html; charset=utf-8", page),
                Ok(None) => text(StatusCode::NOT_FOUND, "not found\n"),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn state_path(front: &Front) -> crate::state::StateLocation {
    front
        .status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .state_path
        .clone()
        .unwrap_or_else(|| {
            crate::state::StateLocation::File(front.workdir.join(".nimbus/state.db"))
        })
}

/// A push webhook: its body read within [`BODY_TIMEOUT`] and [`MAX_BODY`], then its
/// signature checked.
async fn webhook(front: &Front, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
    }
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(_)) => return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
            Err(_) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive in time\n",
                );
            }
        };
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.trim().to_owned(),
            ))
        })
        .collect();
    let verified = front
        .secret
        .as_deref()
        .is_some_and(|s| verify_webhook(s, &headers, &body));
    if verified {
        let standby = front
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .role
            .clone()
            .filter(super::status::Role::is_standby);
        match (standby, state_path(front)) {
            // A standby records the push for the leader, which fetches when it sees it.
            (Some(role), location) => {
                let recorded = tokio::task::spawn_blocking(move || {
                    crate::state::StateStore::open(&location).and_then(|s| s.request_wake())
                })
                .await;
                match recorded {
                    Ok(Ok(())) => reply(
                        StatusCode::ACCEPTED,
                        "text/plain; charset=utf-8",
                        format!(
                            "recorded for the leader: this replica is {}\n",
                            role.describe()
                        ),
                    ),
                    _ => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "a standby could not record the push for the leader\n",
                    ),
                }
            }
            (None, _) => {
                front.wake.notify_one();
                text(StatusCode::ACCEPTED, "fetching\n")
            }
        }
    } else {
        front
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .webhooks_refused += 1;
        text(StatusCode::UNAUTHORIZED, "bad or missing signature\n")
    }
}

/// Runs per page of `/runs` unless `limit` says otherwise, and at most.
const RUNS_PAGE: usize = 100;
const RUNS_PAGE_MAX: usize = 1000;

/// `/runs` (a page of the runs recorded in state, oldest first, with the `Link` of the page
/// before it: `?before=ID&limit=N`) or `/runs/ID`; `None` when there is no such run.
fn runs(
    state: &crate::state::StateLocation,
    path: &str,
    query: &str,
) -> Option<(Value, Option<String>)> {
    let store = crate::state::StateStore::open(state).ok();
    if let Some(id) = path.strip_prefix("/runs/") {
        let id: i64 = id.parse().ok()?;
        let run = store?
            .history_page(Some(id.checked_add(1)?), Some(1))
            .ok()?
            .into_iter()
            .find(|r| r.id == id)?;
        return Some((serde_json::to_value(run).unwrap_or(Value::Null), None));
    }
    let parameter = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<i64>().ok())
    };
    let limit = parameter("limit").map_or(RUNS_PAGE, |l| (l.max(1) as usize).min(RUNS_PAGE_MAX));
    let before = parameter("before");
    let Some(store) = store else {
        return Some((json!([]), None));
    };
    let page = store.history_page(before, Some(limit)).unwrap_or_default();
    let next = page
        .first()
        .filter(|first| first.id > 1 && page.len() == limit)
        .map(|first| format!("</runs?before={}&limit={limit}>; rel=\"next\"", first.id));
    Some((serde_json::to_value(page).unwrap_or(Value::Null), next))
}

/// The page at `path`, or `None` when there is no such run or instance. State is read for
/// runs and history (so that they survive a restart); the estate comes from memory.
fn html(
    status: &Mutex<Status>,
    state_path: &crate::state::StateLocation,
    path: &str,
) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `/runs` is a page of the newest runs, oldest first, with a link to the page before;
    /// `/runs/ID` one run; an unknown id nothing.
    #[test]
    fn runs_come_in_pages() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = crate::state::StateLocation::File(dir.path().join("state.db"));
        let store = crate::state::StateStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..5 {
            let run = store
                .begin_run("reconcile", Some(&format!("c{i}")))
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .end_run(run, "succeeded")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let ids = |page: &Value| -> Vec<i64> {
            page.as_array()
                .map(|a| a.iter().filter_map(|r| r["id"].as_i64()).collect())
                .unwrap_or_default()
        };
        let (page, next) = runs(&path, "/runs", "limit=2").unwrap_or_else(|| panic!("no page"));
        assert_eq!(ids(&page), [4, 5]);
        assert_eq!(
            next.as_deref(),
            Some("</runs?before=4&limit=2>; rel=\"next\"")
        );
        let (page, next) =
            runs(&path, "/runs", "before=4&limit=2").unwrap_or_else(|| panic!("no page"));
        assert_eq!(ids(&page), [2, 3]);
        assert!(next.is_some());
        let (page, next) =
            runs(&path, "/runs", "before=2&limit=2").unwrap_or_else(|| panic!("no page"));
        assert_eq!(ids(&page), [1]);
        assert_eq!(next, None);
        let (page, _) = runs(&path, "/runs", "").unwrap_or_else(|| panic!("no page"));
        assert_eq!(ids(&page), [1, 2, 3, 4, 5]);
        let (one, _) = runs(&path, "/runs/3", "").unwrap_or_else(|| panic!("no run"));
        assert_eq!(one["revision"], "c2");
        assert!(runs(&path, "/runs/9", "").is_none());
    }
}
