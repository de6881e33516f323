//! Shared by the CLI tests: run the built `nimbus` as a user would.

use std::path::Path;
use std::process::{Command, Output};

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
