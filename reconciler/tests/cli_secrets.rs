//! Secrets with age, end to end through the `nimbus` binary: the secret commands (encrypt,
//! decrypt, edit, rekey, list), the identity's precedence, a wrong and a missing identity, and
//! the leak test: with known plaintexts, every output of plan, apply, saved plans, markdown,
//! JSON, state and logs at trace is searched for them, and for their plain SHA-256.

use crate::common;
use common::{copy_dir, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DB_PASSWORD: &str = "db-S3CRET-plaintext-7731";
const API_KEY: &str = "API-S3CRET-key-8812";

struct Repo {
    dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
    assert!(status.success());
}

fn public_key(path: &Path) -> String {
    let text = std::fs::read_to_string(path.with_extension("pub")).unwrap_or_default();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Repo {
    /// The create fixture (hosts, a cluster, a tenant, a workload) plus a Repository whose
    /// secrets go to `alice`, and the keys of alice, bob and carol beside the repository.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/create/repo"),
            &dir.path().join("repo"),
        );
        for who in ["alice", "bob", "carol"] {
            keygen(&dir.path().join(who));
        }
        let repo = Repo { dir };
        repo.set_recipients(&["alice"]);
        repo
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn key(&self, who: &str) -> PathBuf {
        self.dir.path().join(who)
    }

    fn set_recipients(&self, who: &[&str]) {
        let list: Vec<String> = who
            .iter()
            .map(|w| format!("\"{}\"", public_key(&self.key(w))))
            .collect();
        std::fs::write(
            self.root().join("nimbus.yaml"),
            format!(
                "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {{name: secrets-test}}\nspec:\n  secrets:\n    recipients: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn write(&self, path: &str, content: &str) {
        std::fs::write(self.root().join(path), content).unwrap_or_else(|e| panic!("{e}"));
    }

    /// nimbus in the repository, with NIMBUS_AGE_IDENTITY cleared unless given.
    fn nimbus(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nimbus"));
        command
            .args(args)
            .current_dir(self.root())
            .env("NO_COLOR", "1")
            .env_remove("NIMBUS_AGE_IDENTITY")
            .env("NIMBUS_MEMORY_PROVIDER", self.root().join(".nimbus/memory"))
            .env_remove("RUST_LOG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nimbus: {e}"));
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .map(|mut s| s.write_all(input.as_bytes()))
                .transpose()
                .unwrap_or_else(|e| panic!("{e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("nimbus: {e}"))
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let output = self.nimbus(args, env, stdin);
        assert_eq!(
            output.status.code(),
            Some(0),
            "nimbus {args:?}:\n{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        output
    }
}

fn identity_arg(repo: &Repo, who: &str) -> String {
    repo.key(who).display().to_string()
}

#[test]
fn secret_commands_identities_and_rekey() {
    let repo = Repo::new();
    let alice = identity_arg(&repo, "alice");
    let bob = identity_arg(&repo, "bob");
    let carol = identity_arg(&repo, "carol");

    // encrypt from standard input and from a file; list shows each with its recipients.
    repo.ok(&["secret", "encrypt", "db"], &[], Some(DB_PASSWORD));
    let plain = repo.dir.path().join("app.yaml");
    std::fs::write(&plain, format!("apiKey: {API_KEY}\nregion: eu\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    repo.ok(
        &["secret", "encrypt", "app", &plain.display().to_string()],
        &[],
        None,
    );
    let armored = std::fs::read_to_string(repo.root().join("secrets/db.age")).unwrap_or_default();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!armored.contains(DB_PASSWORD));
    let listed = text(&repo.ok(&["secret", "list"], &[], None).stdout);
    assert_eq!(
        listed,
        "app\t1 recipient (ssh-ed25519)\ndb\t1 recipient (ssh-ed25519)\n"
    );

    // decrypt: --identity, then NIMBUS_AGE_IDENTITY, then secrets.identityFile.
    let out = repo.ok(
        &["secret", "decrypt", "db", "--identity", &alice],
        &[],
        None,
    );
    assert_eq!(text(&out.stdout), DB_PASSWORD);
    let out = repo.ok(
        &["secret", "decrypt", "db"],
        &[("NIMBUS_AGE_IDENTITY", &alice)],
        None,
    );
    assert_eq!(text(&out.stdout), DB_PASSWORD);
    // --identity wins over the environment.
    let out = repo.nimbus(
        &["secret", "decrypt", "db", "--identity", &carol],
        &[("NIMBUS_AGE_IDENTITY", &alice)],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not one of its recipients"),
        "{}",
        text(&out.stderr)
    );
    let manifest = std::fs::read_to_string(repo.root().join("nimbus.yaml")).unwrap_or_default();
    repo.write(
        "nimbus.yaml",
        &format!("{manifest}    identityFile: ../alice\n"),
    );
    let out = repo.ok(&["secret", "decrypt", "db"], &[], None);
    assert_eq!(text(&out.stdout), DB_PASSWORD);
    repo.write("nimbus.yaml", &manifest);

    // A missing identity says where one can come from; a missing secret how to make it.
    let out = repo.nimbus(&["secret", "decrypt", "db"], &[], None);
    assert_eq!(out.status.code(), Some(1));
    let message = text(&out.stderr);
    assert!(
        message.contains("--identity") && message.contains("NIMBUS_AGE_IDENTITY"),
        "{message}"
    );
    assert!(!message.contains(DB_PASSWORD));
    let out = repo.nimbus(
        &["secret", "decrypt", "nope", "--identity", &alice],
        &[],
        None,
    );
    assert!(
        text(&out.stderr).contains("nimbus secret encrypt nope"),
        "{}",
        text(&out.stderr)
    );

    // On a terminal, decrypt refuses without --force.
    if Path::new("/usr/bin/script").exists() {
        let command = format!(
            "{} secret decrypt db --identity {alice} --dir {}",
            env!("CARGO_BIN_EXE_nimbus"),
            repo.root().display()
        );
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("script: {e}"));
        let shown = text(&out.stdout);
        assert!(
            shown.contains("refusing to print secret `db` on a terminal"),
            "{shown}"
        );
        assert!(!shown.contains(DB_PASSWORD), "{shown}");
    }

    // Rekey: bob joins and alice leaves. Until the rekey, validate warns, reading only the
    // files' headers; after it, bob decrypts and alice cannot.
    repo.set_recipients(&["bob"]);
    let out = repo.ok(&["validate", "."], &[], None);
    let warned = text(&out.stderr);
    assert!(
        warned.contains("secrets/db.age is not encrypted to any recipient the Repository lists"),
        "{warned}"
    );
    assert!(warned.contains("secrets/app.age"), "{warned}");
    // A rekey needs an identity that opens every secret; with bob's, nothing is rewritten.
    let before = std::fs::read(repo.root().join("secrets/db.age")).unwrap_or_default();
    let out = repo.nimbus(&["secret", "rekey", "--identity", &bob], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nothing was rekeyed"));
    assert_eq!(
        std::fs::read(repo.root().join("secrets/db.age")).unwrap_or_default(),
        before
    );
    repo.ok(&["secret", "rekey", "--identity", &alice], &[], None);
    let out = repo.ok(&["validate", "."], &[], None);
    assert!(
        !text(&out.stderr).contains("not encrypted to any recipient"),
        "{}",
        text(&out.stderr)
    );
    let out = repo.ok(&["secret", "decrypt", "app", "--identity", &bob], &[], None);
    assert_eq!(
        text(&out.stdout),
        format!("apiKey: {API_KEY}\nregion: eu\n")
    );
    let out = repo.nimbus(
        &["secret", "decrypt", "db", "--identity", &alice],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1));

    // edit: $EDITOR gets a 0600 file in a private directory, which is gone afterwards.
    let scratch = repo.dir.path().join("tmp");
    std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{e}"));
    let editor = repo.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\nstat -c '%a' \"$1\" > {dir}/file-mode\nstat -c '%a' \"$(dirname \"$1\")\" > {dir}/dir-mode\nsed -i 's/7731/9999/' \"$1\"\n",
            dir = repo.dir.path().display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let editor_cmd = format!("sh {}", editor.display());
    let scratch_text = scratch.display().to_string();
    repo.ok(
        &["secret", "edit", "db", "--identity", &bob],
        &[
            ("EDITOR", editor_cmd.as_str()),
            ("TMPDIR", scratch_text.as_str()),
            ("XDG_RUNTIME_DIR", ""),
        ],
        None,
    );
    let read = |name: &str| std::fs::read_to_string(repo.dir.path().join(name)).unwrap_or_default();
    assert_eq!(read("file-mode"), "600\n");
    assert_eq!(read("dir-mode"), "700\n");
    assert_eq!(
        std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(1),
        0,
        "the temporary file and its directory are wiped"
    );
    let out = repo.ok(&["secret", "decrypt", "db", "--identity", &bob], &[], None);
    assert_eq!(text(&out.stdout), DB_PASSWORD.replace("7731", "9999"));
}

/// Every byte nimbus wrote under the repository's `.nimbus/` (state database, its WAL,
/// the in-memory provider's files), as lossy text.
fn state_bytes(root: &Path) -> String {
    let mut all = String::new();
    let mut stack = vec![root.join(".nimbus")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                all.push_str(&String::from_utf8_lossy(
                    &std::fs::read(&path).unwrap_or_default(),
                ));
            }
        }
    }
    all
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn no_secret_value_appears_in_any_output() {
    let repo = Repo::new();
    let alice = identity_arg(&repo, "alice");
    repo.ok(&["secret", "encrypt", "db"], &[], Some(DB_PASSWORD));
    repo.ok(
        &["secret", "encrypt", "app"],
        &[],
        Some(&format!("apiKey: {API_KEY}\nregion: eu\n")),
    );
    repo.write(
        "secret-files.yaml",
        "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: db-password}\nspec: {hosts: {role: web}, path: /etc/db/password, secret: db, mode: \"0600\"}\n",
    );
    let workload = std::fs::read_to_string(repo.root().join("workload.yaml")).unwrap_or_default();
    repo.write(
        "workload.yaml",
        &format!(
            "{workload}  env:\n    LOG_LEVEL: info\n    API_KEY: {{secret: \"app#apiKey\"}}\n"
        ),
    );
    let id = [("NIMBUS_AGE_IDENTITY", alice.as_str())];
    let saved = repo.dir.path().join("saved.json");
    let saved_arg = saved.display().to_string();

    let mut seen = String::new();
    let mut run = |args: &[&str], env: &[(&str, &str)]| -> Output {
        let output = repo.nimbus(args, env, None);
        seen.push_str(&text(&output.stdout));
        seen.push_str(&text(&output.stderr));
        output
    };
    let out = run(&["plan", "-vvv", "."], &id);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let planned = text(&out.stdout);
    assert!(
        planned.contains("+ content: (sensitive)"),
        "a secret's content shows as (sensitive):\n{planned}"
    );
    assert!(planned.contains("\"API_KEY\":(sensitive)"), "{planned}");
    run(&["plan", "--format", "json", "."], &id);
    run(&["plan", "--format", "markdown", "."], &id);
    run(&["plan", "--out", &saved_arg, "."], &id);
    let out = run(&["apply", "-vvv", "--log-format", "json", &saved_arg], &id);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&["plan", "--detailed-exitcode", "-vvv", "."], &id);
    assert_eq!(
        out.status.code(),
        Some(0),
        "converged: {}",
        text(&out.stdout)
    );

    // A new value of the secret is a change, shown without the value.
    repo.ok(
        &["secret", "encrypt", "db"],
        &[],
        Some("db-S3CRET-rotated-5500"),
    );
    let out = run(&["plan", "--detailed-exitcode", "."], &id);
    assert_eq!(out.status.code(), Some(2));
    let planned = text(&out.stdout);
    assert!(
        planned.contains("~ content: (sensitive value changed)"),
        "{planned}"
    );
    assert!(
        !planned.contains("API_KEY"),
        "only the changed secret: {planned}"
    );
    run(&["plan", "--format", "markdown", "."], &id);
    run(&["plan", "--format", "json", "."], &id);
    let out = run(&["apply", "--auto-approve", "-vvv", "."], &id);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    run(&["state", "list", "--json"], &[]);
    run(&["state", "show", "File/db-password@web-1"], &[]);
    run(&["state", "history"], &[]);

    // Without the identity, only the instances that use a secret fail, saying why.
    repo.ok(
        &["secret", "encrypt", "db"],
        &[],
        Some("db-S3CRET-third-1212"),
    );
    let motd = std::fs::read_to_string(repo.root().join("files.yaml")).unwrap_or_default();
    repo.write("files.yaml", &motd.replace("hello", "hello again"));
    let out = run(&["apply", "--auto-approve", "-vvv", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let applied = text(&out.stdout);
    assert!(
        applied.contains("failed   File/db-password@web-1: secret `db`: no age identity"),
        "{applied}"
    );
    assert!(
        applied.contains("updated File/motd@web-1")
            || text(&out.stderr).contains("updated File/motd@web-1")
    );
    // A wrong identity: the same, with its own reason.
    let carol = identity_arg(&repo, "carol");
    let out = run(
        &["apply", "--auto-approve", "."],
        &[("NIMBUS_AGE_IDENTITY", carol.as_str())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("not one of its recipients"),
        "{}",
        text(&out.stdout)
    );

    let saved_plan = std::fs::read_to_string(&saved).unwrap_or_default();
    assert!(
        saved_plan.contains("hmac-sha256:"),
        "the saved plan carries fingerprints"
    );
    let stored = state_bytes(&repo.root());
    assert!(
        stored.contains("hmac-sha256:"),
        "state carries fingerprints"
    );
    for secret in [
        DB_PASSWORD,
        API_KEY,
        "db-S3CRET-rotated-5500",
        "db-S3CRET-third-1212",
    ] {
        for (what, haystack) in [
            ("output and logs", &seen),
            ("the saved plan", &saved_plan),
            ("the state", &stored),
        ] {
            assert!(!haystack.contains(secret), "{what} holds a secret value");
            assert!(
                !haystack.contains(&sha256_hex(secret)),
                "{what} holds a plain hash of a secret"
            );
        }
    }
}

/// Regression: a changed secret applied without an identity warned, then said "No changes"
/// and exited 0, and the new value was never delivered. Now the instances that use it cannot
/// be planned: the plan names the identity options, the run exits 1, and everything else
/// still plans and applies.
#[test]
fn a_secret_that_cannot_be_decrypted_fails_the_run_not_silently() {
    let repo = Repo::new();
    let alice = identity_arg(&repo, "alice");
    let id = [("NIMBUS_AGE_IDENTITY", alice.as_str())];
    repo.ok(&["secret", "encrypt", "db"], &[], Some(DB_PASSWORD));
    repo.write(
        "secret-files.yaml",
        "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: db-password}\nspec: {host: web-1, path: /etc/db/password, secret: db, mode: \"0600\"}\n",
    );
    repo.ok(&["apply", "--auto-approve", "."], &id, None);
    // The secret's value changes, and a file without secrets changes too.
    repo.ok(&["secret", "encrypt", "db"], &[], Some("a-new-value-0001"));
    let motd = std::fs::read_to_string(repo.root().join("files.yaml")).unwrap_or_default();
    assert!(motd.contains("hello"), "{motd}");
    repo.write("files.yaml", &motd.replacen("hello", "hello again", 1));
    for args in [&["plan", "."][..], &["apply", "--auto-approve", "."][..]] {
        let output = repo.nimbus(args, &[], None);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{args:?}:\n{stdout}");
        assert!(!stdout.contains("No changes."), "{stdout}");
        assert!(
            stdout.contains("! File/db-password@web-1") && stdout.contains("cannot be planned"),
            "{stdout}"
        );
        for option in ["--identity", "NIMBUS_AGE_IDENTITY", "secrets.identityFile"] {
            assert!(stdout.contains(option), "{option} is not named:\n{stdout}");
        }
        assert!(!stdout.contains("a-new-value"), "{stdout}");
    }
    // Everything else was applied: the next plan with the identity has only the secret.
    let output = repo.nimbus(&["plan", "."], &id, None);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("File/db-password@web-1"), "{stdout}");
    assert!(!stdout.contains("File/motd"), "{stdout}");
    assert!(stdout.contains("Plan: 0 to add, 1 to change"), "{stdout}");
}
