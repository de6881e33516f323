//! Issue 27 end to end on two real hosts (the test bed's sshd in network namespaces): a module
//! used with `forEach` and environment values, an environment's patch, each environment's own
//! state, a `Moved` rename and a reordered `forEach` that change nothing on the hosts (the
//! files are not written again), and `nimbus state mv` refused onto an address state records.

use crate::common;
use crate::sshd::bed as hostbed;
use common::{Repo, text};

use std::os::unix::fs::MetadataExt;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";

fn sites(order: &str) -> String {
    format!(
        "{HEADER}kind: Use\nmetadata: {{name: site}}\nspec:\n  module: modules/site\n  forEach: [{order}]\n  values:\n    title: ${{{{ env.title }}}} ${{{{ each.key }}}}\n"
    )
}

#[test]
fn modules_environments_and_moves_on_real_hosts() {
    let bed = hostbed::Bed::up(2);
    let repo = Repo::new();
    std::fs::copy(&bed.known_hosts, repo.dir.path().join("known_hosts"))
        .unwrap_or_else(|e| panic!("{e}"));
    repo.write(
        "nimbus.yaml",
        &format!(
            "{HEADER}kind: Repository\nmetadata: {{name: bed}}\nspec:\n  ssh:\n    identityFile: {}\n    knownHosts: known_hosts\n    connectTimeout: 3\n",
            bed.key.display()
        ),
    );
    let mut hosts = String::new();
    for host in &bed.hosts {
        hosts.push_str(&format!(
            "---\n{HEADER}kind: Host\nmetadata: {{name: {}, labels: {{role: web}}}}\nspec: {{address: {}, user: root}}\n",
            host.name, host.address
        ));
    }
    repo.write("hosts.yaml", &hosts);
    repo.write(
        "modules/site/module.yaml",
        &format!("{HEADER}kind: Module\nspec:\n  inputs:\n    title: {{type: string}}\n"),
    );
    repo.write(
        "modules/site/site.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata:\n  name: site-${{{{ module.key }}}}\nspec:\n  hosts: {{role: web}}\n  path: /srv/site/${{{{ module.key }}}}/index.html\n  content: \"<h1>${{{{ inputs.title }}}}</h1>\\n\"\n"
        ),
    );
    repo.write("sites.yaml", &sites("alpha, beta"));
    repo.write(
        "motd.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: motd}}\nspec: {{hosts: {{role: web}}, path: /etc/demo/motd, content: \"a test machine\\n\"}}\n"
        ),
    );
    repo.write(
        "environments/staging.yaml",
        &format!("{HEADER}kind: Environment\nmetadata: {{name: staging}}\nspec:\n  values: {{title: Staging}}\n"),
    );
    repo.write(
        "environments/prod.yaml",
        &format!(
            "{HEADER}kind: Environment\nmetadata: {{name: prod}}\nspec:\n  values: {{title: Production}}\n  patches:\n    - target: File/motd\n      patch: {{spec: {{content: \"production\\n\"}}}}\n"
        ),
    );
    let h1 = bed.hosts[0].upper.clone();

    // Without an environment, nothing is planned: the repository has two.
    let output = repo.nimbus(&["plan", "."]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(
        text(&output.stderr).contains("choose one with --env"),
        "{}",
        text(&output.stderr)
    );

    // Staging: the module's files with staging's value, in staging's own state.
    let output = repo.nimbus(&["apply", "--auto-approve", "--env", "staging", "."]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let alpha = h1.join("srv/site/alpha/index.html");
    assert_eq!(
        std::fs::read_to_string(&alpha).unwrap_or_default(),
        "<h1>Staging alpha</h1>\n"
    );
    assert_eq!(
        std::fs::read_to_string(h1.join("etc/demo/motd")).unwrap_or_default(),
        "a test machine\n"
    );
    assert!(
        repo.dir
            .path()
            .join(".nimbus/env/staging/state.db")
            .is_file()
    );
    assert!(!repo.dir.path().join(".nimbus/state.db").exists());
    assert!(
        text(&output.stdout).contains("module.site[alpha]/File/site-alpha"),
        "{}",
        text(&output.stdout)
    );

    // Prod has a state of its own (nothing recorded: staging's files, found on the same
    // hosts, are refused as not managed until imported), its values and its patch.
    let output = repo.nimbus(&["plan", "--env", "prod", "--format", "json", "."]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let plan: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan["environment"], "prod");
    let after = |address: String| {
        plan["changes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["address"] == address.as_str()))
            .map(|c| c["after"].clone())
            .unwrap_or_else(|| panic!("no {address}: {plan}"))
    };
    let h1_name = &bed.hosts[0].name;
    assert_eq!(
        after(format!("File/site-alpha@{h1_name}"))["content"],
        "<h1>Production alpha</h1>\n"
    );
    assert_eq!(
        after(format!("File/motd@{h1_name}"))["content"],
        "production\n"
    );
    assert!(
        plan["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["error"]
                .as_str()
                .is_some_and(|r| r.contains("exists, not managed")))),
        "prod's state records nothing: {plan}"
    );

    // A rename with a Moved record and a reordered forEach: moves, nothing written again.
    let inode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .map(|m| (m.ino(), m.mtime_nsec()))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let before = (inode(&alpha), inode(&h1.join("etc/demo/motd")));
    repo.write(
        "motd.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: message}}\nspec: {{hosts: {{role: web}}, path: /etc/demo/motd, content: \"a test machine\\n\"}}\n---\n{HEADER}kind: Moved\nspec: {{from: File/motd, to: File/message}}\n"
        ),
    );
    repo.write("sites.yaml", &sites("beta, alpha"));
    let output = repo.nimbus(&["plan", "--env", "staging", "--no-color", "."]);
    let plan = text(&output.stdout);
    assert!(
        plan.contains("# File/motd has moved to File/message"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy. 1 to move."),
        "{plan}"
    );
    let output = repo.nimbus(&["apply", "--auto-approve", "--env", "staging", "."]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(
        (inode(&alpha), inode(&h1.join("etc/demo/motd"))),
        before,
        "a move writes nothing on the hosts"
    );
    let output = repo.nimbus(&["state", "list", "--env", "staging", "."]);
    let list = text(&output.stdout);
    assert!(
        list.contains(&format!("File/message@{}", bed.hosts[0].name)),
        "{list}"
    );
    assert!(!list.contains("File/motd@"), "{list}");
    assert!(
        list.contains(&format!(
            "module.site[alpha]/File/site-alpha@{}",
            bed.hosts[0].name
        )),
        "{list}"
    );
    let output = repo.nimbus(&[
        "plan",
        "--env",
        "staging",
        "--detailed-exitcode",
        "--no-color",
        ".",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "the move is done: {}",
        text(&output.stdout)
    );

    // state mv onto an address state records is refused, and changes nothing.
    let output = repo.nimbus(&[
        "state",
        "mv",
        "--env",
        "staging",
        "File/message",
        "File/site-alpha",
        ".",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("state already records"),
        "{}",
        text(&output.stderr)
    );
    // ... and onto a free one renames, for the next plan to find.
    let output = repo.nimbus(&[
        "state",
        "mv",
        "--env",
        "staging",
        "File/message",
        "File/greeting",
        ".",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("2 instances"),
        "{}",
        text(&output.stderr)
    );
    let output = repo.nimbus(&["state", "list", "--env", "staging", "."]);
    assert!(
        text(&output.stdout).contains("File/greeting@"),
        "{}",
        text(&output.stdout)
    );
}
