//! `nimbus init`, `completions`, `--version` and `help`, run as a user would.

mod common;
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
    assert_eq!(text(&output.stdout).trim(), "[]");

    // The examples of every kind are valid too, once they are no longer ignored.
    std::fs::write(root.join(".nimbusignore"), "").unwrap_or_else(|e| panic!("{e}"));
    let output = nimbus(&["validate", "--format", "json", "infra"], dir.path());
    assert_eq!(text(&output.stdout).trim(), "[]", "examples have problems");
    let output = nimbus(&["validate", "infra"], dir.path());
    assert!(
        text(&output.stdout).contains("11 resources"),
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
