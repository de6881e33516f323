//! `nimbus init`, `completions`, `--version` and `help`, run as a user would.

use crate::common;
use common::nimbus;
use common::text;

#[test]
fn init_scaffolds_a_repository_that_validates_cleanly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = nimbus(&["init", "infra"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let root = dir.path().join("infra");
    for file in [
        "nimbus.yaml",
        "hosts.yaml",
        ".gitignore",
        ".nimbusignore",
        "examples/vm.yaml",
        ".schemas/host.json",
    ] {
        assert!(root.join(file).is_file(), "init did not write {file}");
    }
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
    assert!(gitignore.lines().any(|l| l == ".nimbus/"), "{gitignore}");
    let hosts = std::fs::read_to_string(root.join("hosts.yaml")).unwrap_or_default();
    assert!(
        hosts.starts_with("# yaml-language-server: $schema=.schemas/host.json"),
        "{hosts}"
    );

    let output = nimbus(&["validate", "--format", "json", "infra"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let parsed: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed["format_version"], 1);
    assert_eq!(parsed["problems"], serde_json::json!([]));

    // The examples of every kind are valid too, once they are no longer ignored.
    std::fs::write(root.join(".nimbusignore"), "").unwrap_or_else(|e| panic!("{e}"));
    let output = nimbus(&["validate", "--format", "json", "infra"], dir.path());
    let parsed: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed["problems"],
        serde_json::json!([]),
        "examples have problems"
    );
    let output = nimbus(&["validate", "infra"], dir.path());
    assert!(
        text(&output.stdout).contains("13 resources"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn init_never_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("hosts.yaml"), "# mine\n").unwrap_or_else(|e| panic!("{e}"));
    let output = nimbus(&["init"], dir.path());
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hosts.yaml")).unwrap_or_default(),
        "# mine\n"
    );
    assert!(
        text(&output.stdout).contains("kept     hosts.yaml"),
        "{}",
        text(&output.stdout)
    );
    // A second run keeps everything.
    let output = nimbus(&["init"], dir.path());
    assert!(
        !text(&output.stdout).contains("created"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn completions_version_and_help() {
    let dir = std::env::temp_dir();
    for shell in ["bash", "zsh", "fish"] {
        let output = nimbus(&["completions", shell], &dir);
        assert_eq!(output.status.code(), Some(0));
        assert!(
            text(&output.stdout).contains("validate"),
            "{shell} completions lack commands"
        );
    }
    let output = nimbus(&["--version"], &dir);
    assert_eq!(
        text(&output.stdout).trim(),
        format!("nimbus {}", env!("CARGO_PKG_VERSION"))
    );
    let output = nimbus(&["help"], &dir);
    let help = text(&output.stdout);
    assert!(
        help.contains("Examples:") && help.contains("nimbus validate"),
        "{help}"
    );
    // A usage error exits 1: 2 is reserved for "changes" under --detailed-exitcode.
    let output = nimbus(&["frobnicate"], &dir);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("unrecognized subcommand"),
        "{}",
        text(&output.stderr)
    );
}

fn git(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("git: {e}"))
}

/// `nimbus init` in a folder that is not in a git repository makes one, with what it wrote as
/// the first commit; inside a git repository it commits nothing. A copied example that names
/// a `source` under examples/ (ignored as manifests) validates.
#[test]
fn init_makes_a_git_repository_and_its_examples_can_be_copied() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = nimbus(&["init", "infra"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("first commit"),
        "{}",
        text(&output.stdout)
    );
    let root = dir.path().join("infra");
    let log = git(&root, &["log", "--format=%s"]);
    assert_eq!(
        text(&log.stdout).trim(),
        "nimbus init",
        "{}",
        text(&log.stderr)
    );
    let status = git(&root, &["status", "--porcelain"]);
    assert_eq!(text(&status.stdout), "", "init left files uncommitted");

    // In a git repository already: nothing committed.
    let nested = root.join("more");
    let output = nimbus(&["init", "more"], &root);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("inside a git repository already"));
    assert!(!nested.join(".git").exists());
    let log = git(&root, &["log", "--format=%s"]);
    assert_eq!(text(&log.stdout).trim(), "nimbus init");
    std::fs::remove_dir_all(&nested).unwrap_or_else(|e| panic!("{e}"));

    // An example copied next to the manifests, as init's hint says: its source is found.
    let example = std::fs::read_to_string(root.join("examples/file.yaml")).unwrap_or_default();
    std::fs::write(root.join("file.yaml"), example).unwrap_or_else(|e| panic!("{e}"));
    let output = nimbus(&["validate", "infra"], dir.path());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The README's quick start, run exactly as written (but the daemon, which runs until
/// stopped): every step exits 0.
#[test]
fn the_readme_quick_start_runs_as_written() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let start = readme
        .find("```sh\nnimbus init infra")
        .unwrap_or_else(|| panic!("no quick start in README.md"));
    let block = &readme[start + "```sh\n".len()..];
    let block = &block[..block.find("```").unwrap_or(block.len())];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let memory = dir.path().join("try");
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("nimbus reconcile"))
        .map(|l| l.replace("/tmp/try", &memory.display().to_string()))
        .map(|l| format!("echo '>>> {}'\n{l}\n", l.replace('\'', "")))
        .collect();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_nimbus"))
        .parent()
        .unwrap_or_else(|| panic!("no bin dir"))
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = std::process::Command::new("sh")
        .args(["-ec", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("sh: {e}"));
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{said}");
    assert!(said.contains("Apply complete"), "{said}");
    assert!(
        std::fs::read_to_string(dir.path().join("graph.svg"))
            .unwrap_or_default()
            .contains("<svg"),
        "{said}"
    );
}

/// No command panics on a closed pipe (`nimbus completions zsh | head`).
#[test]
fn a_closed_pipe_is_not_a_panic() {
    for args in ["completions zsh", "completions bash", "help", "init infra"] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let output = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "{} {args} | head -c 1 >/dev/null",
                    env!("CARGO_BIN_EXE_nimbus")
                ),
            ])
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("sh: {e}"));
        let stderr = text(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
    }
}

/// Colour on a terminal (a pseudo-terminal from `script`), and none with `--no-color` or
/// `NO_COLOR`, nor when stdout is not a terminal.
#[test]
fn the_plan_is_coloured_on_a_terminal_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        nimbus(&["init", "infra"], dir.path()).status.code(),
        Some(0)
    );
    let memory = dir.path().join("memory");
    let run = |flags: &str, env: &str| {
        let command = format!(
            "{env} NIMBUS_MEMORY_PROVIDER={} {} plan {flags} infra",
            memory.display(),
            env!("CARGO_BIN_EXE_nimbus")
        );
        let output = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(dir.path())
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("script: {e}"));
        text(&output.stdout)
    };
    let coloured = run("", "");
    assert!(coloured.contains("\x1b[32m+ "), "{coloured:?}");
    assert!(!run("--no-color", "").contains('\x1b'));
    assert!(!run("", "NO_COLOR=1").contains('\x1b'));
    let piped = common::nimbus_with(
        &["plan", "infra"],
        dir.path(),
        &[("NIMBUS_MEMORY_PROVIDER", &memory.display().to_string())],
    );
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped.stderr));
    assert!(!text(&piped.stdout).contains('\x1b'));
}
