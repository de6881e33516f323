//! The repository is a jail (issue 23, docs/security.md): a symbolic link that leads out of
//! the repository, directly or through a chain of links, is a diagnostic naming the link and
//! where it points, in the working tree and in a committed revision alike, and the content
//! of what it points to appears nowhere (plan, diagnostic, log). Links that stay inside work.

use crate::common;
use common::{Bed, git, text, write};

use std::os::unix::fs::symlink;
use std::path::Path;

const OUTSIDE_FILE: &str = "TOP-SECRET-OUTSIDE-THE-REPOSITORY";
const OUTSIDE_MANIFEST: &str = "OUTSIDE-MANIFEST-MARKER";

/// Files outside the repository, and links to them from inside (one through a chain).
fn plant(repo: &Path, outside: &Path) {
    std::fs::write(outside.join("secret.txt"), format!("{OUTSIDE_FILE}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        outside.join("evil.yaml"),
        format!("apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: evil}}\nspec: {{address: {OUTSIDE_MANIFEST}}}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(repo.join("files")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(repo.join("files/real.txt"), "inside\n").unwrap_or_else(|e| panic!("{e}"));
    let link = |target: &Path, at: &str| {
        symlink(target, repo.join(at)).unwrap_or_else(|e| panic!("{at}: {e}"));
    };
    link(&outside.join("secret.txt"), "files/secret.txt");
    link(&outside.join("evil.yaml"), "evil.yaml");
    // A chain: files/chain.txt -> hop.txt (inside) -> the outside file.
    link(&outside.join("secret.txt"), "files/hop.txt");
    link(Path::new("hop.txt"), "files/chain.txt");
    // A link that stays inside: read as its target.
    link(Path::new("real.txt"), "files/alias.txt");
    write(
        repo,
        "leak.yaml",
        "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: leak}\nspec:\n  hosts: {role: web}\n  path: /etc/leak\n  source: files/chain.txt\n",
    );
}

fn assert_jailed(said: &str, code: Option<i32>) {
    assert_eq!(code, Some(1), "{said}");
    assert!(
        !said.contains(OUTSIDE_FILE),
        "the outside file's content leaked: {said}"
    );
    assert!(
        !said.contains(OUTSIDE_MANIFEST),
        "the outside manifest leaked: {said}"
    );
    for link in ["evil.yaml", "files/secret.txt", "files/chain.txt"] {
        assert!(said.contains(link), "{link} is not named: {said}");
    }
    assert!(said.contains("outside the repository"), "{said}");
    assert!(said.contains("nimbus::repository::outside_link"), "{said}");
}

#[test]
fn links_out_of_the_working_tree_are_named_and_never_read() {
    let bed = Bed::new();
    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    plant(&bed.repo(), outside.path());
    for args in [&["validate", "."][..], &["plan", "."][..]] {
        let output = bed.run(args);
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert_jailed(&said, output.status.code());
        // The diagnostic names where the link points.
        assert!(
            said.contains(&outside.path().join("evil.yaml").display().to_string()),
            "{said}"
        );
    }
    let json = bed.run(&["validate", "--format", "json", "."]);
    assert_jailed(
        &format!("{}{}", text(&json.stdout), text(&json.stderr)),
        json.status.code(),
    );
}

#[test]
fn committed_links_out_of_the_repository_are_named_and_links_inside_are_followed() {
    let bed = Bed::new();
    let repo = bed.repo();
    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    plant(&repo, outside.path());
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "links"]);
    let output = bed.run(&["validate", "--rev", "HEAD", "."]);
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_jailed(&said, output.status.code());
    // Without the outside links, the inside one is a File's source like any file.
    for link in [
        "evil.yaml",
        "files/secret.txt",
        "files/chain.txt",
        "files/hop.txt",
    ] {
        std::fs::remove_file(repo.join(link)).unwrap_or_else(|e| panic!("{e}"));
    }
    write(
        &repo,
        "leak.yaml",
        "apiVersion: nimbus.dev/v1alpha1\nkind: File\nmetadata: {name: leak}\nspec:\n  hosts: {role: web}\n  path: /etc/leak\n  source: files/alias.txt\n",
    );
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "inside only"]);
    for args in [&["plan", "--rev", "HEAD", "."][..], &["plan", "."][..]] {
        let output = bed.run(args);
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(0), "{args:?}: {said}");
        assert!(said.contains("File/leak"), "{said}");
        assert!(
            said.contains("inside"),
            "the alias's target is the content: {said}"
        );
    }
}
