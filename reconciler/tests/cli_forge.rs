//! `nimbus preview --post` against a local forge double that checks every request against the
//! forge's published API (tests/forges/api.json: the endpoints and fields nimbus uses, from
//! each forge's documentation): GitHub, GitLab and Gitea. One comment per pull request,
//! updated in place on the next push; the head commit's status set; a comment cut to the
//! forge's size; `--dry-run` sends nothing and shows no token. What this does not prove: that
//! the real forges answer as the double does (it answers as their documentation says).

use crate::common;
use common::{git, text};

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const TOKEN: &str = "forge-token-for-tests-123";

#[derive(Default)]
struct Forge {
    /// (method, endpoint name) of every request that fit the API.
    calls: Vec<(String, String)>,
    /// Requests that did not fit, with why.
    violations: Vec<String>,
    comments: Vec<(u64, String)>,
    statuses: Vec<serde_json::Value>,
}

fn api(forge: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/forges/api.json");
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    all[forge].clone()
}

/// Whether `path` fits the template (`{name}` is one segment; `{sha}` 40 hex digits).
fn fits(template: &str, path: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(t, p)| match t.strip_prefix('{') {
            Some("sha}") => p.len() == 40 && p.chars().all(|c| c.is_ascii_hexdigit()),
            Some(_) => !p.is_empty(),
            None => t == p,
        })
}

fn serve(forge: &'static str, prefix: &'static str) -> (u16, Arc<Mutex<Forge>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let state = Arc::new(Mutex::new(Forge::default()));
    let shared = Arc::clone(&state);
    let description = api(forge);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (request, mut stream) = common::read_request(stream);
            let common::HttpRequest {
                method,
                target,
                headers,
                body,
            } = &request;
            let (method, target) = (method.as_str(), target.as_str());
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let path = path.strip_prefix(prefix).unwrap_or(path);
            let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
            let mut why = Vec::new();
            for (name, prefix) in description["headers"].as_object().into_iter().flatten() {
                let prefix = prefix.as_str().unwrap_or("");
                // Present, not empty, and as the forge wants it (`Bearer TOKEN`, a version).
                match headers.get(name.as_str()) {
                    Some(v) if !v.is_empty() && v.starts_with(prefix) => {}
                    other => why.push(format!("header {name}: {other:?}")),
                }
            }
            let endpoint = description["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["method"] == method && fits(e["path"].as_str().unwrap_or(""), path));
            let (status, reply) = match endpoint {
                None => {
                    why.push(format!("no endpoint {method} {path}"));
                    ("404 Not Found", serde_json::json!({"message": "Not Found"}))
                }
                Some(e) => {
                    let name = e["name"].as_str().unwrap_or("").to_owned();
                    let allowed_query: Vec<&str> = e["query"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|q| q.as_str())
                        .collect();
                    for pair in query.split('&').filter(|p| !p.is_empty()) {
                        let key = pair.split('=').next().unwrap_or("");
                        if !allowed_query.contains(&key) {
                            why.push(format!("{name}: query parameter {key}"));
                        }
                    }
                    let json: serde_json::Value = if body.is_empty() {
                        serde_json::Value::Null
                    } else {
                        serde_json::from_slice(body).unwrap_or_else(|_| {
                            why.push(format!("{name}: body is not JSON"));
                            serde_json::Value::Null
                        })
                    };
                    if let Some(required) = e["required"].as_array() {
                        if headers
                            .get("content-type")
                            .is_none_or(|c| !c.starts_with("application/json"))
                        {
                            why.push(format!(
                                "{name}: content-type {:?}",
                                headers.get("content-type")
                            ));
                        }
                        for field in required.iter().filter_map(|f| f.as_str()) {
                            if json.get(field).is_none() {
                                why.push(format!("{name}: no {field}"));
                            }
                        }
                        let allowed: Vec<&str> = e["allowed"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|f| f.as_str())
                            .collect();
                        for key in json.as_object().into_iter().flatten().map(|(k, _)| k) {
                            if !allowed.contains(&key.as_str()) {
                                why.push(format!("{name}: field {key}"));
                            }
                        }
                        for (field, values) in e["enum"].as_object().into_iter().flatten() {
                            if !values.as_array().is_some_and(|v| v.contains(&json[field])) {
                                why.push(format!("{name}: {field} = {}", json[field]));
                            }
                        }
                    }
                    state.calls.push((method.to_owned(), name.clone()));
                    match method {
                        "GET" => (
                            "200 OK",
                            serde_json::Value::Array(
                                state
                                    .comments
                                    .iter()
                                    .map(|(id, b)| serde_json::json!({"id": id, "body": b}))
                                    .collect(),
                            ),
                        ),
                        "POST" if path.contains("/statuses/") => {
                            state.statuses.push(json.clone());
                            ("201 Created", serde_json::json!({"id": 1}))
                        }
                        "POST" => {
                            let id = 100 + state.comments.len() as u64;
                            state
                                .comments
                                .push((id, json["body"].as_str().unwrap_or("").to_owned()));
                            (
                                "201 Created",
                                serde_json::json!({"id": id, "body": json["body"]}),
                            )
                        }
                        _ => {
                            let id: u64 = path
                                .rsplit('/')
                                .next()
                                .and_then(|i| i.parse().ok())
                                .unwrap_or(0);
                            match state.comments.iter_mut().find(|(i, _)| *i == id) {
                                Some(comment) => {
                                    comment.1 = json["body"].as_str().unwrap_or("").to_owned();
                                    (
                                        "200 OK",
                                        serde_json::json!({"id": id, "body": json["body"]}),
                                    )
                                }
                                None => {
                                    ("404 Not Found", serde_json::json!({"message": "Not Found"}))
                                }
                            }
                        }
                    }
                }
            };
            if !why.is_empty() {
                state
                    .violations
                    .push(format!("{method} {target}: {}", why.join("; ")));
            }
            drop(state);
            let reply = reply.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (port, state)
}

fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    let write = |path: &str, text: &str| {
        std::fs::write(repo.join(path), text).unwrap_or_else(|e| panic!("{e}"))
    };
    write(
        "nimbus.yaml",
        &format!("{HEADER}kind: Repository\nmetadata: {{name: forge}}\nspec: {{}}\n"),
    );
    write(
        "hosts.yaml",
        &format!("{HEADER}kind: Host\nmetadata: {{name: h1}}\nspec: {{address: 10.0.0.1}}\n"),
    );
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "base"]);
    git(repo, &["checkout", "-q", "-b", "pr"]);
    for i in 0..40 {
        write(
            &format!("f{i}.yaml"),
            &format!(
                "{HEADER}kind: File\nmetadata: {{name: f{i}}}\nspec: {{host: h1, path: /etc/f{i}, content: \"{}\\n\"}}\n",
                "x".repeat(40)
            ),
        );
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "files"]);
    dir
}

fn preview(
    repo: &Path,
    forge: &str,
    port: u16,
    prefix: &str,
    extra: &[&str],
    dry: bool,
) -> std::process::Output {
    let token_var = match forge {
        "github" => "GITHUB_TOKEN",
        "gitlab" => "GITLAB_TOKEN",
        _ => "GITEA_TOKEN",
    };
    let api = format!("http://127.0.0.1:{port}{prefix}");
    let mut args = vec![
        "preview",
        "--base",
        "main",
        "--head",
        "pr",
        "--post",
        forge,
        "--pr",
        "7",
        "--forge-api",
        &api,
        "--forge-repo",
        "acme/infra",
    ];
    args.extend_from_slice(extra);
    if dry {
        args.push("--dry-run");
    }
    args.push(".");
    common::nimbus_with(&args, repo, &[(token_var, if dry { "" } else { TOKEN })])
}

#[test]
fn previews_post_one_comment_per_pull_request_and_a_status_on_each_forge() {
    let dir = repository();
    let repo = dir.path();
    let head = git(repo, &["rev-parse", "pr"]);
    for (forge, prefix) in [("github", ""), ("gitlab", "/api/v4"), ("gitea", "/api/v1")] {
        let (port, state) = serve(forge, prefix);
        for round in 0..2 {
            let output = preview(repo, forge, port, prefix, &[], false);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{forge}: {}",
                text(&output.stderr)
            );
            assert!(
                text(&output.stderr).contains(if round == 0 {
                    "created the comment"
                } else {
                    "updated the comment"
                }),
                "{forge}: {}",
                text(&output.stderr)
            );
        }
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            state.violations.is_empty(),
            "{forge}: {:#?}",
            state.violations
        );
        assert_eq!(
            state.comments.len(),
            1,
            "{forge}: one comment, updated in place"
        );
        assert!(
            state.comments[0].1.starts_with("<!-- nimbus-preview -->"),
            "{forge}"
        );
        assert!(
            state.comments[0].1.contains("40 to add"),
            "{forge}: {}",
            state.comments[0].1
        );
        let creates = state
            .calls
            .iter()
            .filter(|(m, n)| m == "POST" && !n.to_lowercase().contains("status"))
            .count();
        assert_eq!(creates, 1, "{forge}: {:?}", state.calls);
        assert_eq!(state.statuses.len(), 2, "{forge}");
        assert_eq!(state.statuses[0]["state"], "success", "{forge}");
    }
    // Cut to a size (here --max-chars 1500): shorter, and says so.
    let (port, state) = serve("github", "");
    let output = preview(repo, "github", port, "", &["--max-chars", "1500"], false);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let state = state.lock().unwrap_or_else(|e| e.into_inner());
    let body = &state.comments[0].1;
    assert!(body.chars().count() < 2000, "{}", body.len());
    assert!(
        body.contains("left out") || body.contains("not shown"),
        "{body}"
    );
    drop(state);
    // --dry-run: the requests printed, none sent, no token needed or shown.
    let (port, state) = serve("github", "");
    let output = preview(repo, "github", port, "", &[], true);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(
        printed.contains(&format!(
            "GET http://127.0.0.1:{port}/repos/acme/infra/issues/7/comments"
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("/repos/acme/infra/statuses/{head}")),
        "{printed}"
    );
    assert!(!printed.contains(TOKEN));
    assert!(
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .is_empty()
    );
}

/// `nimbus reconcile --forge github`: each commit it applies gets a success status linking to
/// its run's page, and a commit it refuses a failure, through the checking double.
#[test]
fn the_daemon_sets_a_status_on_each_commit() {
    let dir = repository();
    let repo = dir.path();
    git(repo, &["checkout", "-q", "main"]);
    let (forge_port, state) = serve("github", "");
    let workdir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = crate::sshd::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["reconcile", "--repo"])
        .arg(repo)
        .args([
            "--branch",
            "main",
            "--interval",
            "1s",
            "--drift-interval",
            "1h",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--forge", "github", "--forge-repo", "acme/infra"])
        .args(["--forge-api", &format!("http://127.0.0.1:{forge_port}")])
        .args(["--public-url", "https://nimbus.example.test"])
        .arg("--workdir")
        .arg(workdir.path())
        .env(
            "NIMBUS_MEMORY_PROVIDER",
            workdir.path().join("infrastructure"),
        )
        .env("GITHUB_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let _daemon = common::Running(child);
    let wait = |what: &str, check: &dyn Fn(&Forge) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            {
                let state = state.lock().unwrap_or_else(|e| e.into_inner());
                if check(&state) {
                    assert!(state.violations.is_empty(), "{:#?}", state.violations);
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "timed out waiting for {what}: {:?}",
                    state.statuses
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait("a success status", &|f: &Forge| {
        f.statuses.iter().any(|s| {
            s["state"] == "success"
                && s["context"] == "nimbus/reconcile"
                && s["target_url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("https://nimbus.example.test/run/"))
        })
    });
    assert!(
        state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .iter()
            .all(|(_, n)| n == "create a commit status")
    );
    std::fs::write(
        repo.join("broken.yaml"),
        format!("{HEADER}kind: File\nmetadata: {{name: x}}\nspec: {{host: nowhere}}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "broken"]);
    wait("a failure status", &|f: &Forge| {
        f.statuses.iter().any(|s| s["state"] == "failure")
    });
}

/// The ready-made CI files (deploy/ci/): their preview step's commands, run with the
/// variables the CI would set (against the checking double), post one comment and a status.
#[test]
fn the_ready_made_ci_files_post_through_the_forge() {
    let dir = repository();
    let repo = dir.path();
    git(
        repo,
        &["remote", "add", "origin", &repo.display().to_string()],
    );
    git(repo, &["fetch", "-q", "origin"]);
    let head = git(repo, &["rev-parse", "HEAD"]);
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ci");
    let bin = Path::new(env!("CARGO_BIN_EXE_nimbus"))
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    let run = |script: &str, env: &[(&str, String)]| {
        let output = std::process::Command::new("bash")
            .args(["-e", "-c", script])
            .current_dir(repo)
            .env("PATH", &path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            output.status.success(),
            "{script}\n{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
    };
    let yaml = |name: &str| -> serde_json::Value {
        serde_saphyr::from_str(&std::fs::read_to_string(deploy.join(name)).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    // GitHub Actions: the Preview step, its expressions as the runner fills them.
    let workflow = yaml("github-actions.yml");
    let step = workflow["jobs"]["preview"]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "Preview"))
        .cloned()
        .unwrap_or_else(|| panic!("no Preview step: {workflow}"));
    let script = step["run"]
        .as_str()
        .unwrap_or_default()
        .replace("${{ github.base_ref }}", "main")
        .replace("${{ github.event.pull_request.number }}", "7")
        .replace("${{ github.event.pull_request.head.sha }}", &head);
    assert_eq!(step["env"]["GITHUB_TOKEN"], "${{ secrets.GITHUB_TOKEN }}");
    let (port, state) = serve("github", "");
    run(
        &script,
        &[
            ("GITHUB_TOKEN", TOKEN.to_owned()),
            ("GITHUB_API_URL", format!("http://127.0.0.1:{port}")),
            ("GITHUB_REPOSITORY", "acme/infra".to_owned()),
        ],
    );
    {
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        assert!(state.violations.is_empty(), "{:#?}", state.violations);
        assert_eq!(state.comments.len(), 1);
        assert_eq!(state.statuses.len(), 1);
    }
    assert!(repo.join("plan/plan.json").is_file(), "the artifact");
    // GitLab CI: the job's script, line by line, with a merge request pipeline's variables.
    let job = yaml("gitlab-ci.yml");
    let script: Vec<&str> = job["nimbus-preview"]["script"]
        .as_array()
        .map(|s| s.iter().filter_map(|l| l.as_str()).collect())
        .unwrap_or_default();
    let (port, state) = serve("gitlab", "/api/v4");
    run(
        &script.join("\n"),
        &[
            ("GITLAB_TOKEN", TOKEN.to_owned()),
            ("CI_API_V4_URL", format!("http://127.0.0.1:{port}/api/v4")),
            ("CI_PROJECT_ID", "acme/infra".to_owned()),
            ("CI_MERGE_REQUEST_IID", "7".to_owned()),
            ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main".to_owned()),
            ("CI_COMMIT_SHA", head.clone()),
        ],
    );
    let state = state.lock().unwrap_or_else(|e| e.into_inner());
    assert!(state.violations.is_empty(), "{:#?}", state.violations);
    assert_eq!((state.comments.len(), state.statuses.len()), (1, 1));
}
