//! The container image (issue 29): `Dockerfile` built with the machine's Docker engine (no
//! registry: its base is a Debian slim image made here by `testbed/docker/image-base.sh`, and
//! the binary under test goes in as `prebuilt/nimbus`), then run as the reconcile daemon
//! against two test-bed hosts (Debian containers booting systemd, each with its own sshd in
//! its own network namespace) and a git server on loopback. The daemon in the container, as
//! its own non-root user with its state in a volume, applies the repository onto the hosts
//! (a secret decrypted there too), applies a pushed commit, is reported healthy by the image's
//! HEALTHCHECK, and stops cleanly on `docker stop`.

use crate::common;
use crate::sshd;
use common::{git, text};
use sshd::bed as hostbed;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const SECRET: &str = "image-S3CRET-7781\n";
/// The image's user (Dockerfile).
const UID: u32 = 10001;

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(
        output.status.success(),
        "docker {args:?}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout).trim().to_owned()
}

/// Removes the container, the volume and the images the test made, whatever happened.
struct Cleanup {
    container: String,
    volume: String,
    image: String,
    /// The build's `BUILD_ID`: the label of its build stage's image.
    build: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
        let _ = docker(&["volume", "rm", "-f", &self.volume]);
        let _ = docker(&["image", "rm", "-f", &self.image]);
        // The build stage's image, which the legacy builder keeps.
        let stages = docker(&[
            "images",
            "-q",
            "--filter",
            &format!("label=nimbus.build={}", self.build),
        ]);
        for id in text(&stages.stdout).split_whitespace() {
            let _ = docker(&["image", "rm", "-f", id]);
        }
    }
}

/// The image built from the repository's Dockerfile with the binary under test (its debug
/// information stripped, as `cargo build --profile dist` would) as `prebuilt/nimbus`.
fn build_image(tag: &str, build_id: &str, context: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = Command::new("bash")
        .arg(root.join("testbed/docker/image-base.sh"))
        .output()
        .unwrap_or_else(|e| panic!("image-base.sh: {e}"));
    assert!(
        base.status.success(),
        "testbed/docker/image-base.sh: {}",
        text(&base.stderr)
    );
    let base = text(&base.stdout).trim().to_owned();
    for file in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(root.join(file), context.join(file)).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::create_dir_all(context.join("prebuilt")).unwrap_or_else(|e| panic!("{e}"));
    let strip = Command::new("objcopy")
        .args(["--strip-debug", env!("CARGO_BIN_EXE_nimbus")])
        .arg(context.join("prebuilt/nimbus"))
        .status()
        .unwrap_or_else(|e| panic!("objcopy: {e}"));
    assert!(strip.success(), "objcopy --strip-debug");
    let started = Instant::now();
    docker_ok(&[
        "build",
        "-q",
        "--build-arg",
        &format!("RUST_IMAGE={base}"),
        "--build-arg",
        &format!("BASE_IMAGE={base}"),
        "--build-arg",
        &format!("BUILD_ID={build_id}"),
        "-t",
        tag,
        &context.display().to_string(),
    ]);
    let size: f64 = docker_ok(&["image", "inspect", "-f", "{{.Size}}", tag])
        .parse()
        .unwrap_or_else(|e| panic!("image size: {e}"));
    let base_size: f64 = docker_ok(&["image", "inspect", "-f", "{{.Size}}", &base])
        .parse()
        .unwrap_or_else(|e| panic!("base size: {e}"));
    println!(
        "image {tag}: {:.1} MB (base {base}: {:.1} MB), built in {:.1} s",
        size / 1e6,
        base_size / 1e6,
        started.elapsed().as_secs_f64()
    );
}

/// A repository of the bed's two hosts, a File on each and a secret File on the first, with
/// the key the daemon logs in and decrypts with at /keys/id in the container.
fn write_repo(bed: &hostbed::Bed, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&bed.known_hosts, dir.join("known_hosts")).unwrap_or_else(|e| panic!("{e}"));
    common::write(
        dir,
        "nimbus.yaml",
        &format!(
            "{HEADER}kind: Repository\nmetadata: {{name: image}}\nspec:\n  ssh:\n    identityFile: /keys/id\n    knownHosts: known_hosts\n    connectTimeout: 5\n  secrets:\n    recipients: [\"{}\"]\n    identityFile: /keys/id\n",
            common::age_recipient(&bed.key)
        ),
    );
    let mut hosts = String::new();
    for host in &bed.hosts {
        hosts.push_str(&format!(
            "---\n{HEADER}kind: Host\nmetadata: {{name: {}, labels: {{fleet: image}}}}\nspec: {{address: {}, user: root}}\n",
            host.name, host.address
        ));
    }
    common::write(dir, "hosts.yaml", &hosts);
    common::write(
        dir,
        "files.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: motd}}\nspec: {{hosts: {{fleet: image}}, path: /etc/demo/motd, content: \"from the image\\n\"}}\n---\n\
             {HEADER}kind: File\nmetadata: {{name: password}}\nspec: {{host: {}, path: /etc/demo/password, secret: db-password, mode: \"0600\"}}\n",
            bed.hosts[0].name
        ),
    );
    // The recipient is the bed's client key; encrypting needs only the public half.
    common::encrypt_secret(dir, "db-password", SECRET);
}

fn on_host(bed: &hostbed::Bed, host: usize, path: &str) -> Option<String> {
    std::fs::read_to_string(bed.hosts[host].upper.join(path.trim_start_matches('/'))).ok()
}

fn wait_until(what: &str, container: &str, seconds: u64, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        if Instant::now() > deadline {
            let logs = docker(&["logs", "--tail", "60", container]);
            panic!(
                "timed out waiting for {what}; the container's log:\n{}{}",
                text(&logs.stdout),
                text(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_image_reconciles_a_repository_onto_test_hosts() {
    let bed = hostbed::Bed::up(2);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let id = std::process::id();
    let cleanup = Cleanup {
        container: format!("nimbus-image-test-{id}"),
        volume: format!("nimbus-image-test-state-{id}"),
        image: format!("nimbus-test/nimbus:{id}"),
        build: format!("nimbus-image-test-{id}"),
    };
    let context = work.path().join("context");
    std::fs::create_dir_all(&context).unwrap_or_else(|e| panic!("{e}"));
    build_image(&cleanup.image, &cleanup.build, &context);

    // What the image promises: its own user, the state directory a volume, a health check.
    let config = docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.User}} {{json .Config.Volumes}} {{json .Config.Healthcheck.Test}}",
        &cleanup.image,
    ]);
    assert!(
        config.starts_with(&format!("{UID}:{UID} ")),
        "the image's user: {config}"
    );
    assert!(config.contains("\"/var/lib/nimbus\""), "{config}");
    assert!(config.contains("\"nimbus\",\"healthcheck\""), "{config}");

    // The config repository, served by git daemon on loopback.
    let clone = work.path().join("work");
    write_repo(&bed, &clone);
    let server = common::serve_clone(work.path(), &clone, "hosts and files");

    // The key, readable by the image's user alone, mounted read-only.
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap_or_else(|e| panic!("{e}"));
    let key: PathBuf = keys.join("id");
    std::fs::copy(&bed.key, &key).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::chown(&key, Some(UID), Some(UID)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));

    // Host networking: the bed's hosts and the git server are reached as from this machine.
    let port = sshd::free_port();
    let listen = format!("127.0.0.1:{port}");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &cleanup.container,
        "--network",
        "host",
        "--health-interval",
        "1s",
        "-v",
        &format!("{}:/var/lib/nimbus", cleanup.volume),
        "-v",
        &format!("{}:/keys:ro", keys.display()),
        "-e",
        &format!("NIMBUS_REPO={}", server.url),
        "-e",
        &format!("NIMBUS_LISTEN={listen}"),
        "-e",
        "NIMBUS_INTERVAL=1s",
        &cleanup.image,
    ]);
    let container = cleanup.container.as_str();
    wait_until("the first commit on both hosts", container, 120, || {
        on_host(&bed, 0, "/etc/demo/motd").as_deref() == Some("from the image\n")
            && on_host(&bed, 1, "/etc/demo/motd").as_deref() == Some("from the image\n")
            && on_host(&bed, 0, "/etc/demo/password").as_deref() == Some(SECRET)
    });
    wait_until("the health check to pass", container, 60, || {
        docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", container]) == "healthy"
    });

    // The daemon runs as the image's user; what it keeps is in the volume, owned by it.
    assert_eq!(docker_ok(&["exec", container, "id", "-u"]), UID.to_string());
    let state = docker_ok(&[
        "exec",
        container,
        "stat",
        "-c",
        "%u %a",
        "/var/lib/nimbus/.nimbus/state.db",
    ]);
    assert_eq!(state, format!("{UID} 600"), "the state database");
    // Its pages answer through the port it was given.
    let status = common::get("127.0.0.1", port);
    assert!(status.starts_with("HTTP/1.0 200 OK"), "{status}");

    // A pushed commit is applied: the GitOps loop, from inside the container.
    common::write(
        &clone,
        "files.yaml",
        &std::fs::read_to_string(clone.join("files.yaml"))
            .unwrap_or_default()
            .replace("from the image\\n", "pushed\\n"),
    );
    git(&clone, &["commit", "-q", "-am", "new motd"]);
    git(&clone, &["push", "-q", &server.bare, "main"]);
    wait_until("the pushed commit on both hosts", container, 120, || {
        (0..2).all(|h| on_host(&bed, h, "/etc/demo/motd").as_deref() == Some("pushed\n"))
    });

    // SIGTERM from docker stop: the daemon exits by itself, with 0, well inside the grace.
    let started = Instant::now();
    docker_ok(&["stop", "-t", "60", container]);
    let code = docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", container]);
    assert_eq!(code, "0", "exit code after docker stop");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "docker stop had to kill it"
    );
    // No secret value in what it logged.
    let logs = docker(&["logs", container]);
    let logged = format!("{}{}", text(&logs.stdout), text(&logs.stderr));
    assert!(!logged.contains(SECRET.trim()), "{logged}");
    drop(cleanup);
}
