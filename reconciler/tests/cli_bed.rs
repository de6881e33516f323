//! `nimbus apply` end to end on three real hosts: Debian containers booting systemd, each in
//! its own network namespace with its own sshd (`testbed/`), plus one declared host where
//! nothing answers. Files land with their content and mode, services run, a second plan is
//! empty, a hand edit is detected and corrected, a changed `restartOn` file restarts its
//! service, prune removes only what nimbus created, the unreachable host fails alone, and a
//! wrong host key is refused.

use crate::common;
use crate::sshd::bed as hostbed;
use common::{Repo, ok, text};

use std::path::Path;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const SECRET: &str = "bed-S3CRET-password-4242\n";

fn repo_for(bed: &hostbed::Bed) -> Repo {
    let repo = Repo::new();
    std::fs::copy(&bed.known_hosts, repo.dir.path().join("known_hosts"))
        .unwrap_or_else(|e| panic!("{e}"));
    repo.write(
        "nimbus.yaml",
        &format!(
            "{HEADER}kind: Repository\nmetadata: {{name: bed}}\nspec:\n  ssh:\n    identityFile: {key}\n    knownHosts: known_hosts\n    connectTimeout: 3\n  secrets:\n    recipients: [\"{public}\"]\n    identityFile: {key}\n",
            key = bed.key.display(),
            public = common::age_recipient(&bed.key)
        ),
    );
    // A secret, encrypted to the bed's client key (an ssh-ed25519 age recipient).
    common::encrypt_secret(repo.dir.path(), "db-password", SECRET);
    let mut hosts = String::new();
    for (i, host) in bed.hosts.iter().enumerate() {
        let role = if i < 2 { "web" } else { "db" };
        hosts.push_str(&format!(
            "---\n{HEADER}kind: Host\nmetadata: {{name: {}, labels: {{fleet: bed, role: {role}}}}}\nspec: {{address: {}, user: root}}\n",
            host.name, host.address
        ));
    }
    repo.write("hosts.yaml", &hosts);
    // A host that is declared but does not answer, with a key of its own.
    repo.write(
        "hosts-gone.yaml",
        &format!(
            "{HEADER}kind: Host\nmetadata: {{name: gone, labels: {{fleet: bed, role: web}}}}\nspec: {{address: {}, user: root, hostKey: \"{}\"}}\n",
            bed.unreachable_address(),
            bed.hosts[0].host_key
        ),
    );
    repo.write("files/app.conf", "greeting = hello\n");
    repo.write(
        "files.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: app-config}}\nspec: {{hosts: {{role: web}}, path: /etc/demo/app.conf, source: files/app.conf, mode: \"0640\"}}\n---\n\
             {HEADER}kind: File\nmetadata: {{name: motd}}\nspec: {{hosts: {{fleet: bed}}, path: /etc/demo/motd, content: \"managed by nimbus\\n\"}}\n"
        ),
    );
    repo.write(
        "db.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: db-config}}\nspec: {{host: {}, path: /etc/demo/db.conf, content: \"max_connections = 10\\n\", mode: \"0600\"}}\n",
            bed.hosts[2].name
        ),
    );
    repo.write(
        "secret.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: db-password}}\nspec: {{host: {}, path: /etc/demo/db.password, secret: db-password, mode: \"0600\", owner: root, group: daemon}}\n",
            bed.hosts[0].name
        ),
    );
    repo.write(
        "services.yaml",
        &format!(
            "{HEADER}kind: Service\nmetadata: {{name: demo-app}}\nspec:\n  hosts: {{role: web}}\n  restartOn: [File/app-config]\n  unit: |\n    [Unit]\n    Description=demo app: reads its config when it starts\n    [Service]\n    ExecStart=/bin/sh -c 'cp /etc/demo/app.conf /run/demo-app.seen; exec sleep infinity'\n    [Install]\n    WantedBy=multi-user.target\n"
        ),
    );
    repo
}

fn upper(bed: &hostbed::Bed, host: usize, path: &str) -> std::path::PathBuf {
    bed.hosts[host].upper.join(path.trim_start_matches('/'))
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn apply_configures_real_hosts_over_ssh() {
    let bed = hostbed::Bed::up(3);
    let repo = repo_for(&bed);
    let (h1, h2, h3) = (
        bed.hosts[0].name.as_str(),
        bed.hosts[1].name.as_str(),
        bed.hosts[2].name.as_str(),
    );

    // --- First apply: everything lands but what needs the host that does not answer.
    let output = repo.nimbus(&["apply", "--auto-approve", "-vvv", "."]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "only the unreachable host fails: {stdout}\n{}",
        text(&output.stderr)
    );
    // The secret reached its host, with its mode and owner, and nowhere else.
    let secret_file = upper(&bed, 0, "/etc/demo/db.password");
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap_or_default(),
        SECRET
    );
    assert_eq!(mode(&secret_file), 0o600);
    assert_eq!(
        bed.ssh_ok(h1, "stat -c '%U %G' /etc/demo/db.password"),
        "root daemon\n"
    );
    let secret_value = SECRET.trim();
    assert!(
        !stdout.contains(secret_value) && !text(&output.stderr).contains(secret_value),
        "the secret is in apply's output"
    );
    // The unreachable host is not observed, so nothing is applied there, and it is named.
    assert!(
        stdout.contains("unknown  Host/gone: cannot observe gone"),
        "{stdout}"
    );
    assert!(stdout.contains("unknown  File/motd@gone"), "{stdout}");
    for host in [0, 1] {
        let conf = upper(&bed, host, "/etc/demo/app.conf");
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap_or_default(),
            "greeting = hello\n"
        );
        assert_eq!(mode(&conf), 0o640);
    }
    assert!(!upper(&bed, 2, "/etc/demo/app.conf").exists());
    for host in 0..3 {
        assert_eq!(
            std::fs::read_to_string(upper(&bed, host, "/etc/demo/motd")).unwrap_or_default(),
            "managed by nimbus\n"
        );
    }
    assert_eq!(mode(&upper(&bed, 2, "/etc/demo/db.conf")), 0o600);
    for host in [h1, h2] {
        assert_eq!(
            bed.ssh_ok(
                host,
                "systemctl is-active demo-app; systemctl is-enabled demo-app; cat /run/demo-app.seen"
            ),
            "active\nenabled\ngreeting = hello\n"
        );
    }
    assert_ne!(
        text(&bed.ssh(h3, "systemctl is-active demo-app").stdout),
        "active\n"
    );
    // The facts of each host are in state.
    let shown = repo.nimbus(&["state", "show", "--json", &format!("Host/{h1}")]);
    let record: serde_json::Value = serde_json::from_slice(&shown.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&shown.stderr)));
    let facts = &record["outputs"]["facts"];
    assert_eq!(facts["hostname"], h1, "{record}");
    assert!(
        facts["os"].as_str().is_some_and(|o| o.contains("Debian")),
        "{record}"
    );

    // --- The unreachable host leaves git: a second plan is empty.
    repo.remove("hosts-gone.yaml");
    let plan = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "a second plan is empty: {}\n{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );

    // --- A hand edit of the secret is drift, shown without any value, and corrected.
    bed.ssh_ok(h1, "echo guessed > /etc/demo/db.password");
    let planned = ok(&repo.nimbus(&["plan", "."]));
    assert!(
        planned.contains("~ content: (sensitive value changed)")
            && planned.contains("drift: changed outside nimbus"),
        "{planned}"
    );
    assert!(!planned.contains("guessed") && !planned.contains(secret_value));
    ok(&repo.nimbus(&["apply", "--auto-approve", "."]));
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap_or_default(),
        SECRET
    );
    for file in ["state.db", "state.db-wal"] {
        let state = std::fs::read(repo.dir.path().join(".nimbus").join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&state).contains(secret_value),
            "{file}"
        );
    }

    // --- A hand edit is detected and corrected; so is a service stopped by hand.
    bed.ssh_ok(h2, "echo defaced > /etc/demo/motd; systemctl stop demo-app");
    let plan = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
    let planned = text(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "{planned}");
    assert!(planned.contains(&format!("File/motd@{h2}")), "{planned}");
    assert!(
        planned.contains(&format!("Service/demo-app@{h2}")),
        "{planned}"
    );
    assert!(
        planned.contains("drift: changed outside nimbus"),
        "{planned}"
    );
    ok(&repo.nimbus(&["apply", "--auto-approve", "."]));
    assert_eq!(
        std::fs::read_to_string(upper(&bed, 1, "/etc/demo/motd")).unwrap_or_default(),
        "managed by nimbus\n"
    );
    assert_eq!(bed.ssh_ok(h2, "systemctl is-active demo-app"), "active\n");
    assert_eq!(
        repo.nimbus(&["plan", "--detailed-exitcode", "."])
            .status
            .code(),
        Some(0)
    );

    // --- A changed source file is a changed File, and restarts the service that names it.
    repo.write("files/app.conf", "greeting = bonjour\n");
    let planned = ok(&repo.nimbus(&["plan", "."]));
    assert!(
        planned.contains(&format!("restart: File/app-config@{h1} changed")),
        "{planned}"
    );
    ok(&repo.nimbus(&["apply", "--auto-approve", "."]));
    for host in [h1, h2] {
        assert_eq!(
            bed.ssh_ok(host, "cat /run/demo-app.seen"),
            "greeting = bonjour\n",
            "the service was restarted on its new configuration"
        );
    }

    // --- Prune: what nimbus created goes, what it did not create stays.
    bed.ssh_ok(h3, "echo mine > /etc/demo/not-ours");
    repo.remove("db.yaml");
    repo.remove("services.yaml");
    let applied = ok(&repo.nimbus(&["apply", "--auto-approve", "."]));
    assert!(
        applied.contains(&format!("File/db-config@{h3}")),
        "{applied}"
    );
    assert!(!upper(&bed, 2, "/etc/demo/db.conf").exists());
    assert_eq!(bed.ssh_ok(h3, "cat /etc/demo/not-ours"), "mine\n");
    assert_eq!(
        bed.ssh_ok(h3, "ls /etc/demo | sort | tr '\\n' ' '"),
        "motd not-ours "
    );
    for host in [h1, h2] {
        assert_eq!(
            bed.ssh_ok(
                host,
                "systemctl show -p LoadState --value demo-app; ls /etc/systemd/system/demo-app.service 2>/dev/null | wc -l"
            ),
            "not-found\n0\n",
            "a removed Service is stopped, disabled and its unit removed"
        );
    }

    // --- A wrong host key is refused, naming the host and both fingerprints.
    repo.write(
        "hosts.yaml",
        &std::fs::read_to_string(repo.dir.path().join("hosts.yaml"))
            .unwrap_or_default()
            .replacen(
                &format!("spec: {{address: {}, user: root}}", bed.hosts[0].address),
                &format!(
                    "spec: {{address: {}, user: root, hostKey: \"{}\"}}",
                    bed.hosts[0].address, bed.hosts[1].host_key
                ),
                1,
            ),
    );
    bed.ssh_ok(h1, "echo defaced > /etc/demo/motd");
    let output = repo.nimbus(&["apply", "--auto-approve", "."]);
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("Host/{h1}")) && all.contains("host key mismatch: expected SHA256:"),
        "{all}"
    );
    assert_eq!(
        bed.ssh_ok(h1, "cat /etc/demo/motd"),
        "defaced\n",
        "nothing is written to a host that fails its key check"
    );
}
