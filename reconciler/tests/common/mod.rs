//! Shared by the CLI tests: run the built `nimbus` as a user would.

use std::path::Path;
use std::process::{Command, Output};

pub mod pg;

/// Runs `nimbus ARGS` in `dir`, without colour.
#[allow(dead_code)]
pub fn nimbus(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run nimbus: {e}"))
}

/// Runs `nimbus ARGS` in `dir` with extra environment variables.
#[allow(dead_code)]
pub fn nimbus_with(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nimbus"));
    command
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run nimbus: {e}"))
}

/// The built `nimbus` without its symbols (a fifth of its size), for tests that put the agent
/// on many hosts (`NIMBUS_AGENT_BINARY`): made once per build, next to it.
#[allow(dead_code)]
pub fn stripped_agent() -> std::path::PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_nimbus"));
    let stamp = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let stripped = binary.with_file_name(format!("nimbus-agent-stripped-{stamp}"));
    if !stripped.exists() {
        let partial = binary.with_file_name(format!(
            "nimbus-agent-stripped-{stamp}.{}",
            std::process::id()
        ));
        let status = Command::new("objcopy")
            .arg("--strip-all")
            .arg(binary)
            .arg(&partial)
            .status()
            .unwrap_or_else(|e| panic!("cannot run objcopy: {e}"));
        assert!(status.success(), "objcopy --strip-all failed");
        std::fs::rename(&partial, &stripped).unwrap_or_else(|e| panic!("{e}"));
    }
    stripped
}

/// `nimbus_with`, installing [`stripped_agent`] as the agent on the hosts that need one.
#[allow(dead_code)]
pub fn nimbus_with_stripped_agent(args: &[&str], dir: &Path) -> Output {
    let agent = stripped_agent();
    nimbus_with(
        args,
        dir,
        &[("NIMBUS_AGENT_BINARY", &agent.display().to_string())],
    )
}

/// Copies a directory tree.
#[allow(dead_code)]
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{}: {e}", from.display()))
        .flatten()
    {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
    }
}

/// A scratch copy of the `create` plan fixture and an in-memory provider directory beside it.
#[allow(dead_code)]
pub struct Bed {
    pub dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl Bed {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/create/repo");
        copy_dir(&fixture, &dir.path().join("repo"));
        Bed { dir }
    }

    pub fn repo(&self) -> std::path::PathBuf {
        self.dir.path().join("repo")
    }

    /// The in-memory provider's directory (NIMBUS_MEMORY_PROVIDER).
    pub fn memory(&self) -> std::path::PathBuf {
        self.dir.path().join("memory")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    pub fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let memory = self.memory();
        let mut env = vec![(
            "NIMBUS_MEMORY_PROVIDER",
            memory.to_str().unwrap_or_default(),
        )];
        env.extend_from_slice(extra);
        nimbus_with(args, &self.repo(), &env)
    }

    /// The lines of the provider's change log.
    pub fn changes_applied(&self) -> usize {
        std::fs::read_to_string(self.memory().join("changes.log")).map_or(0, |t| t.lines().count())
    }
}

/// Output bytes as text.
#[allow(dead_code)]
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `git ARGS` in `dir` with a fixed author, asserts it succeeded, and returns its
/// trimmed standard output.
#[allow(dead_code)]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("git: {e}"));
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout).trim().to_owned()
}

/// A child process stopped (by its PID) when dropped.
#[allow(dead_code)]
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (at most 20 s) until something listens on `port` on loopback.
#[allow(dead_code)]
pub fn wait_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request to loopback; returns the status code and the body.
#[allow(dead_code)]
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    http_within(port, method, path, headers, body, None)
}

/// [`http`], giving up reading the answer after `within` (then code 0).
#[allow(dead_code)]
pub fn http_within(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    within: Option<std::time::Duration>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect: {e}"));
    stream
        .set_read_timeout(within)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// `git daemon` serving every repository under `repos` on `port` of loopback, until dropped.
#[allow(dead_code)]
pub fn git_daemon(repos: &Path, port: u16) -> Running {
    let daemon = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", repos.display()),
        ])
        .arg(repos)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("git daemon: {e}"));
    let running = Running(daemon);
    wait_port(port);
    running
}

/// A config repository served by `git daemon` on loopback, until dropped: the working clone
/// (already written) committed with `message` and pushed to `infra.git` under `dir/repos`.
#[allow(dead_code)]
pub struct GitServer {
    /// `git://127.0.0.1:PORT/infra.git`.
    pub url: String,
    /// The bare repository's path, to push to.
    pub bare: String,
    _daemon: Running,
}

#[allow(dead_code)]
pub fn serve_clone(dir: &Path, clone: &Path, message: &str) -> GitServer {
    let repos = dir.join("repos");
    std::fs::create_dir_all(&repos).unwrap_or_else(|e| panic!("{e}"));
    git(&repos, &["init", "-q", "--bare", "-b", "main", "infra.git"]);
    let port = crate::sshd::free_port();
    let daemon = git_daemon(&repos, port);
    git(clone, &["init", "-q", "-b", "main"]);
    git(clone, &["add", "-A"]);
    git(clone, &["commit", "-q", "-m", message]);
    let bare = repos.join("infra.git").display().to_string();
    git(clone, &["push", "-q", &bare, "main"]);
    GitServer {
        url: format!("git://127.0.0.1:{port}/infra.git"),
        bare,
        _daemon: daemon,
    }
}

/// What `nimbus discover --format json` lists in `repo` (with `args` before the folder).
#[allow(dead_code)]
pub fn discovered(repo: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["discover", "--format", "json"];
    all.extend_from_slice(args);
    all.push(".");
    let output = nimbus_with(&all, repo, &[]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&output.stdout), text(&output.stderr)));
    json["discovered"]["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The age recipient of an SSH key pair (its public key's type and key).
#[allow(dead_code)]
pub fn age_recipient(private_key: &Path) -> String {
    std::fs::read_to_string(private_key.with_extension("pub"))
        .unwrap_or_default()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `nimbus secret encrypt NAME` in `repo`, the value on standard input.
#[allow(dead_code)]
pub fn encrypt_secret(repo: &Path, name: &str, value: &str) {
    use std::io::Write;
    let mut encrypt = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["secret", "encrypt", name])
        .current_dir(repo)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = encrypt.stdin.take() {
        stdin
            .write_all(value.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        encrypt.wait().is_ok_and(|s| s.success()),
        "secret encrypt {name}"
    );
}

/// The stdout of a run that must have succeeded (exit 0); else both outputs in the panic.
#[allow(dead_code)]
pub fn ok(output: &Output) -> String {
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    stdout
}

/// Writes `body` to `dir/name`, making its folders.
#[allow(dead_code)]
pub fn write(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// The body of `GET /` on `address:port`, or an empty string.
#[allow(dead_code)]
pub fn get(address: &str, port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(target) = format!("{address}:{port}").parse() else {
        return String::new();
    };
    let Ok(mut stream) =
        std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(2))
    else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

/// Whether `address:port` serves a page containing `needle` within ten seconds (a process
/// counts as running once it started; its server binds the port a moment later).
#[allow(dead_code)]
pub fn serves(address: &str, port: u16, needle: &str) -> bool {
    for _ in 0..40 {
        if get(address, port).contains(needle) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    false
}

/// A config repository for a test bed in `repo`: the bed's pinned host keys, and a Repository
/// named `name` that logs in with the bed's key and encrypts its secrets to it.
#[allow(dead_code)]
pub fn bed_repository(repo: &Path, name: &str, known_hosts: &Path, key: &Path) {
    std::fs::copy(known_hosts, repo.join("known_hosts")).unwrap_or_else(|e| panic!("{e}"));
    write(
        repo,
        "nimbus.yaml",
        &format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: {name}}}\nspec:\n  ssh: {{identityFile: {key}, knownHosts: known_hosts}}\n  secrets: {{recipients: [\"{public}\"], identityFile: {key}}}\n",
            key = key.display(),
            public = age_recipient(key)
        ),
    );
}

/// A webhook's `X-Hub-Signature-256`: HMAC-SHA256 of `body` with `secret`, computed
/// independently of nimbus (python's hmac module).
#[allow(dead_code)]
pub fn sign(secret: &str, body: &str) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())",
            secret,
            body,
        ])
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    format!("sha256={}", text(&output.stdout).trim())
}

/// One HTTP/1.1 request, as a test's local server reads it: the method, the target, the
/// headers (names in lower case) and the body (by its content-length).
#[allow(dead_code)]
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Reads one request from a connection a test's server accepted; the stream is given back
/// for the reply.
#[allow(dead_code)]
pub fn read_request(stream: std::net::TcpStream) -> (HttpRequest, std::net::TcpStream) {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(stream);
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    let mut headers = std::collections::BTreeMap::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut words = first.split_whitespace();
    let request = HttpRequest {
        method: words.next().unwrap_or("").to_owned(),
        target: words.next().unwrap_or("").to_owned(),
        headers,
        body,
    };
    (request, reader.into_inner())
}

/// A config repository in a temporary folder, written file by file, and `nimbus` run in it.
#[allow(dead_code)]
pub struct Repo {
    pub dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl Repo {
    pub fn new() -> Repo {
        Repo {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Writes `text` at `path` (folders made as needed).
    pub fn write(&self, path: &str, text: &str) {
        let path = self.dir.path().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.path().join(path)).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn nimbus(&self, args: &[&str]) -> Output {
        nimbus_with(args, self.dir.path(), &[])
    }
}
