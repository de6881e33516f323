//! `nimbus apply` over SSH, end to end, against a real sshd on loopback standing in for a
//! host: files land with their content and mode, a second plan is empty, a hand edit is
//! drift and is corrected, prune removes only what nimbus wrote, an unreachable host fails
//! alone, and a wrong host key is refused.

use crate::common;
use crate::sshd;
use common::text;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new(server: &sshd::Sshd) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let target = server.target();
        let key = target.host_key.trim().to_owned();
        std::fs::write(
            dir.path().join("nimbus.yaml"),
            format!(
                "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: ssh-test}}\nspec:\n  ssh:\n    identityFile: {}\n    connectTimeout: 3\n",
                target.identity.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("hosts.yaml"),
            format!(
                "apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: local, labels: {{role: web}}}}\nspec: {{address: 127.0.0.1, port: {port}, user: {user}, hostKey: \"{key}\"}}\n---\n\
                 apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: gone}}\nspec: {{address: 127.0.0.1, port: 1, user: {user}, hostKey: \"{key}\"}}\n",
                port = server.port,
                user = target.user,
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let repo = Repo { dir };
        repo.write_files(server, true);
        repo
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn out(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("out").join(name)
    }

    fn write_files(&self, _server: &sshd::Sshd, with_extra: bool) {
        let mut text = format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {{name: motd}}\nspec: {{hosts: {{role: web}}, path: {}, mode: \"0640\", content: \"hello from nimbus\\n\"}}\n---\n\
             apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {{name: banner}}\nspec: {{host: gone, path: {}, content: \"never\\n\"}}\n",
            self.out("motd").display(),
            self.out("banner").display()
        );
        if with_extra {
            text.push_str(&format!(
                "---\napiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {{name: extra}}\nspec: {{host: local, path: {}, content: \"extra\\n\"}}\n",
                self.out("extra").display()
            ));
        }
        std::fs::write(self.dir.path().join("files.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    }

    fn nimbus(&self, args: &[&str]) -> std::process::Output {
        common::nimbus_with(args, self.root(), &[])
    }
}

#[test]
fn apply_over_ssh_converges_and_isolates_failures() {
    let server = sshd::start_sshd();
    let repo = Repo::new(&server);
    // Something that was there before nimbus, next to what it manages: never touched.
    std::fs::create_dir_all(repo.out("")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(repo.out("not-ours"), "mine\n").unwrap_or_else(|e| panic!("{e}"));

    let output = repo.nimbus(&["apply", "--auto-approve", "."]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the unreachable host fails: {stdout}\n{}",
        text(&output.stderr)
    );
    // The unreachable host is not observed, so nothing is applied there, and it is named.
    assert!(
        stdout.contains("unknown  Host/gone: cannot observe gone"),
        "{stdout}"
    );
    assert!(stdout.contains("unknown  File/banner@gone"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(repo.out("motd")).unwrap_or_default(),
        "hello from nimbus\n"
    );
    assert_eq!(
        std::fs::metadata(repo.out("motd"))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0),
        0o640
    );
    assert_eq!(
        std::fs::read_to_string(repo.out("extra")).unwrap_or_default(),
        "extra\n"
    );
    // Facts are in state.
    let shown = repo.nimbus(&["state", "show", "Host/local"]);
    let show = format!("{}{}", text(&shown.stdout), text(&shown.stderr));
    assert!(
        show.contains("\"cpus\"") && show.contains("\"kernel\""),
        "{show}"
    );

    // Without the unreachable host, a second plan is empty.
    let plan = repo.nimbus(&[
        "plan",
        "--detailed-exitcode",
        "--target",
        "Host/local",
        "--target",
        "File/motd",
        "--target",
        "File/extra",
        ".",
    ]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));

    // A hand edit is drift, and apply corrects it.
    std::fs::write(repo.out("motd"), "defaced\n").unwrap_or_else(|e| panic!("{e}"));
    let plan = repo.nimbus(&["plan", "--target", "File/motd", "."]);
    assert!(
        text(&plan.stdout).contains("drift: changed outside nimbus"),
        "{}",
        text(&plan.stdout)
    );
    let output = repo.nimbus(&["apply", "--auto-approve", "--target", "File/motd", "."]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert_eq!(
        std::fs::read_to_string(repo.out("motd")).unwrap_or_default(),
        "hello from nimbus\n"
    );

    // Removing a File from git removes the file nimbus wrote, and nothing else.
    repo.write_files(&server, false);
    let output = repo.nimbus(&["apply", "--auto-approve", "--target", "File/extra", "."]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(!repo.out("extra").exists());
    assert!(repo.out("motd").exists());
    assert_eq!(
        std::fs::read_to_string(repo.out("not-ours")).unwrap_or_default(),
        "mine\n"
    );
}

#[test]
fn a_wrong_host_key_is_refused() {
    let server = sshd::start_sshd();
    let repo = Repo::new(&server);
    let other = server.dir.path().join("other_key");
    sshd::keygen(&other);
    let wrong = std::fs::read_to_string(other.with_extension("pub")).unwrap_or_default();
    let hosts = std::fs::read_to_string(repo.root().join("hosts.yaml")).unwrap_or_default();
    let right = server.target().host_key.trim().to_owned();
    std::fs::write(
        repo.root().join("hosts.yaml"),
        hosts.replacen(&right, wrong.trim(), 1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = repo.nimbus(&["apply", "--auto-approve", "--target", "File/motd", "."]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("host key mismatch: expected SHA256:"),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        !repo.out("motd").exists(),
        "nothing was written to a host that failed its key check"
    );
}

/// With `ssh.trustOnFirstUse`, a host without a pinned key is trusted once: the key it
/// offers is recorded in state and pinned from then on, so a different key is refused later.
#[test]
fn trust_on_first_use_pins_the_first_key_seen() {
    let first = sshd::start_sshd();
    let second = sshd::start_sshd();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let target = first.target();
    // Both sshds accept the same client key.
    std::fs::copy(
        first.dir.path().join("authorized_keys"),
        second.dir.path().join("authorized_keys"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("nimbus.yaml"),
        format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: tofu}}\nspec:\n  ssh: {{identityFile: {}, trustOnFirstUse: true}}\n",
            target.identity.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let host = |port: u16| {
        format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: local}}\nspec: {{address: 127.0.0.1, port: {port}, user: {}}}\n",
            target.user
        )
    };
    std::fs::write(dir.path().join("hosts.yaml"), host(first.port))
        .unwrap_or_else(|e| panic!("{e}"));
    let output = common::nimbus_with(&["apply", "--auto-approve", "."], dir.path(), &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let shown = common::nimbus_with(&["state", "show", "--json", "Host/local"], dir.path(), &[]);
    let recorded: serde_json::Value = serde_json::from_slice(&shown.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&shown.stdout), text(&shown.stderr)));
    let first_key =
        std::fs::read_to_string(first.dir.path().join("host_key.pub")).unwrap_or_default();
    let first_key: Vec<&str> = first_key.split_whitespace().take(2).collect();
    assert_eq!(
        recorded["outputs"]["hostKey"]
            .as_str()
            .map(|k| k.split_whitespace().take(2).collect::<Vec<_>>()),
        Some(first_key),
        "{recorded}"
    );
    // The same name, now answered by a host with another key: refused.
    std::fs::write(dir.path().join("hosts.yaml"), host(second.port))
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = common::nimbus_with(&["plan", "--detailed-exitcode", "."], dir.path(), &[]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(
        text(&plan.stderr).contains("host key mismatch")
            && text(&plan.stdout)
                .contains("? Host/local: cannot observe local: Host/local: host key mismatch"),
        "{}\n{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );
}

/// `ssh.agent: true` and no identity file: the keys of the ssh-agent at `SSH_AUTH_SOCK` log in;
/// without an agent, the run stops before anything is planned and says what is missing.
#[test]
fn the_keys_of_an_ssh_agent_log_in() {
    let server = sshd::start_sshd();
    let agent = sshd::start_agent(&server);
    let repo = Repo::new(&server);
    let manifest = std::fs::read_to_string(repo.root().join("nimbus.yaml")).unwrap_or_default();
    let identity = server.target().identity.display().to_string();
    std::fs::write(
        repo.root().join("nimbus.yaml"),
        manifest.replace(&format!("identityFile: {identity}"), "agent: true"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let socket = agent.socket.display().to_string();
    let output = common::nimbus_with(
        &["apply", "--auto-approve", "--target", "File/motd", "."],
        repo.root(),
        &[("SSH_AUTH_SOCK", &socket)],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(repo.out("motd")).unwrap_or_default(),
        "hello from nimbus\n"
    );
    let output = common::nimbus_with(&["plan", "."], repo.root(), &[("SSH_AUTH_SOCK", "")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("SSH_AUTH_SOCK names no ssh-agent"),
        "{}",
        text(&output.stderr)
    );
}

/// `--identity KEY` with an SSH private key logs in, with no `ssh.identityFile` in the
/// Repository (the same key would also decrypt secrets encrypted to it).
#[test]
fn the_identity_flag_logs_in() {
    let server = sshd::start_sshd();
    let repo = Repo::new(&server);
    let manifest = std::fs::read_to_string(repo.root().join("nimbus.yaml")).unwrap_or_default();
    let identity = server.target().identity.display().to_string();
    std::fs::write(
        repo.root().join("nimbus.yaml"),
        manifest.replace(&format!("    identityFile: {identity}\n"), ""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !std::fs::read_to_string(repo.root().join("nimbus.yaml"))
            .unwrap_or_default()
            .contains("identityFile")
    );
    let output = repo.nimbus(&[
        "apply",
        "--auto-approve",
        "--identity",
        &identity,
        "--target",
        "File/motd",
        ".",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(repo.out("motd")).unwrap_or_default(),
        "hello from nimbus\n"
    );
}

/// With `--rev`, the Repository's `ssh.knownHosts` file is read from that revision, like the
/// manifests: the working tree may not have it at all.
#[test]
fn known_hosts_come_from_the_revision() {
    let server = sshd::start_sshd();
    let repo = Repo::new(&server);
    let key = server.target().host_key.trim().to_owned();
    let hosts = std::fs::read_to_string(repo.root().join("hosts.yaml")).unwrap_or_default();
    std::fs::write(
        repo.root().join("hosts.yaml"),
        hosts.replace(&format!(", hostKey: \"{key}\""), ""),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        repo.root().join("known_hosts"),
        format!("127.0.0.1 {key}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let manifest = std::fs::read_to_string(repo.root().join("nimbus.yaml")).unwrap_or_default();
    std::fs::write(
        repo.root().join("nimbus.yaml"),
        format!("{manifest}    knownHosts: known_hosts\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let git = |args: &[&str]| common::git(repo.root(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "pinned by known_hosts"]);
    std::fs::remove_file(repo.root().join("known_hosts")).unwrap_or_else(|e| panic!("{e}"));
    let output = repo.nimbus(&[
        "apply",
        "--rev",
        "HEAD",
        "--auto-approve",
        "--target",
        "File/motd",
        ".",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(repo.out("motd")).unwrap_or_default(),
        "hello from nimbus\n"
    );
}

/// Regression: Hosts with pinned keys and an ssh-agent holding the login key, but no `ssh`
/// settings, were planned and "applied" to the in-memory provider while nothing reached the
/// hosts. Hosts now go over SSH by default, logging in with the agent's keys; and with no
/// agent, the default key file in `~/.ssh/` is used, as OpenSSH would.
#[test]
fn hosts_go_over_ssh_without_any_ssh_setting() {
    let server = sshd::start_sshd();
    let agent = sshd::start_agent(&server);
    let repo = Repo::new(&server);
    std::fs::write(
        repo.root().join("nimbus.yaml"),
        "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {name: no-ssh-settings}\nspec: {}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let socket = agent.socket.display().to_string();
    let empty_home = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let home = empty_home.path().display().to_string();
    let output = common::nimbus_with(
        &["apply", "--auto-approve", "--target", "File/motd", "."],
        repo.root(),
        &[
            ("SSH_AUTH_SOCK", &socket),
            ("HOME", &home),
            ("NIMBUS_MEMORY_PROVIDER", ""),
        ],
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(!stdout.contains("in-memory"), "{stdout}");
    assert!(stdout.contains("by ssh"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(repo.out("motd")).unwrap_or_default(),
        "hello from nimbus\n"
    );
    // No agent: the default key in ~/.ssh/ logs in.
    std::fs::remove_file(repo.out("motd")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(empty_home.path().join(".ssh")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        &server.target().identity,
        empty_home.path().join(".ssh/id_ed25519"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = common::nimbus_with(
        &["apply", "--auto-approve", "--target", "File/motd", "."],
        repo.root(),
        &[("SSH_AUTH_SOCK", ""), ("HOME", &home)],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(repo.out("motd")).unwrap_or_default(),
        "hello from nimbus\n"
    );
    // No key at all: refused at plan time with the list of what to set.
    std::fs::remove_file(empty_home.path().join(".ssh/id_ed25519"))
        .unwrap_or_else(|e| panic!("{e}"));
    let output = common::nimbus_with(
        &["plan", "."],
        repo.root(),
        &[("SSH_AUTH_SOCK", ""), ("HOME", &home)],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("no SSH key")
            && stderr.contains("ssh.identityFile")
            && stderr.contains("id_ed25519"),
        "{stderr}"
    );
}

/// A failure the provider pins on a field of the manifest (here a File's `owner`, which the
/// host does not know) is shown with the file, line and column that write that field.
#[test]
fn a_failure_at_a_field_names_the_manifest_line() {
    let server = sshd::start_sshd();
    let repo = Repo::new(&server);
    std::fs::write(
        repo.root().join("files.yaml"),
        format!(
            "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata:\n  name: owned\nspec:\n  host: local\n  path: {}\n  content: \"x\\n\"\n  owner: nimbus-no-such-user\n",
            repo.out("owned").display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = repo.nimbus(&["apply", "--auto-approve", "--target", "File/owned", "."]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    let failed = stdout
        .lines()
        .find(|l| l.contains("failed") && l.contains("File/owned@local"))
        .unwrap_or_else(|| panic!("no failure line: {stdout}"));
    assert!(
        failed.contains("nimbus-no-such-user")
            && failed.ends_with("(at files.yaml:9:10, spec.owner)"),
        "{failed}"
    );
    // Written atomically: nothing is left at the path.
    assert!(!repo.out("owned").exists());
}
