//! `nimbus init [DIR]`: scaffold a working config repository; never overwrites a file.

use std::fs;
use std::path::PathBuf;

use clap::Args;
use miette::{Context, IntoDiagnostic, Result};

use crate::render::print_stdout;
use crate::scaffold;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the repository; created if missing.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

pub fn run(args: InitArgs) -> Result<i32> {
    let root = args.dir;
    if root.exists() && !root.is_dir() {
        miette::bail!("{} exists and is not a directory", root.display());
    }
    let mut created = Vec::new();
    let mut kept = Vec::new();
    for (path, content) in scaffold::files() {
        let target = root.join(&path);
        if target.exists() {
            kept.push(path);
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create {}", parent.display()))?;
        }
        // create_new: a file that appeared since the check above is still not overwritten.
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .and_then(|mut file| std::io::Write::write_all(&mut file, content.as_bytes()));
        match written {
            Ok(()) => created.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => kept.push(path),
            Err(e) => {
                return Err(e)
                    .into_diagnostic()
                    .wrap_err_with(|| format!("cannot write {}", target.display()));
            }
        }
    }
    let mut out = String::new();
    let git = git_repository(&root);
    for path in &created {
        out.push_str(&format!("  created  {path}\n"));
    }
    for path in &kept {
        out.push_str(&format!("  kept     {path} (exists; not overwritten)\n"));
    }
    out.push_str(&git);
    out.push_str(&format!(
        "\nA nimbus repository is ready in {}. Next:\n  \
         1. put your machines in hosts.yaml (address and hostKey)\n  \
         2. nimbus validate {}\n  \
         3. copy what you need from examples/ (an example of every kind)\n",
        root.display(),
        root.display()
    ));
    print_stdout(&out);
    Ok(0)
}

/// Makes `root` a git repository with a first commit of what init wrote, unless it is already
/// inside one (then nothing is committed: the user's repository, the user's commits). Returns
/// the line that says what happened.
fn git_repository(root: &std::path::Path) -> String {
    use std::process::{Command, Stdio};
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
    };
    match git(&["rev-parse", "--is-inside-work-tree"]) {
        Ok(inside) if inside.status.success() => {
            return "  git      inside a git repository already: commit the new files yourself\n"
                .to_owned();
        }
        Ok(_) => {}
        Err(e) => {
            return format!(
                "  git      not run ({e}): install git, then `git init` and commit, for --rev, preview and reconcile\n"
            );
        }
    }
    // Who commits: the user's git identity, else one that says where the commit came from.
    let has_identity = git(&["config", "user.email"]).is_ok_and(|o| o.status.success());
    let mut steps: Vec<Vec<&str>> = vec![vec!["init", "-q", "-b", "main"], vec!["add", "-A"]];
    let commit = ["commit", "-q", "-m", "nimbus init"];
    let identity = [
        "-c",
        "user.name=nimbus init",
        "-c",
        "user.email=nimbus-init@localhost",
    ];
    steps.push(if has_identity {
        commit.to_vec()
    } else {
        identity.iter().chain(commit.iter()).copied().collect()
    });
    for step in &steps {
        match git(step) {
            Ok(done) if done.status.success() => {}
            Ok(done) => {
                return format!(
                    "  git      `git {}` failed: {}\n",
                    step.join(" "),
                    String::from_utf8_lossy(&done.stderr).trim()
                );
            }
            Err(e) => return format!("  git      `git {}` failed: {e}\n", step.join(" ")),
        }
    }
    "  git      a new git repository (branch main), with the files above as its first commit\n"
        .to_owned()
}
