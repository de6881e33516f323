//! Discovery and generated manifests (issue 28) on a real host: a Debian container booting
//! systemd with its own sshd, in its own network namespace (`testbed/`), with things made by
//! hand: files (one holding a password), a unit, a qemu VM's unit, a WireGuard interface
//! (wireguard-go) and an NFS export. `nimbus discover` lists each with its kind and the
//! address it would get, and changes nothing on the host (its whole writable layer is the
//! same before and after); `--generate` writes manifests and Import records whose plan
//! imports them with no difference (the password encrypted, never in clear), after which
//! plans are empty.

use crate::common::{self, Repo, ok, text};
use crate::sshd::bed as hostbed;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const PASSWORD: &str = "hunter2-discover-7731";

/// Every entry of the host's writable layer: path, size, mtime.
fn layer(root: &Path) -> BTreeMap<String, (u64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            // The journal, logins' records and runtime state move on their own.
            let shown = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if ["var/log", "run", "tmp", "var/tmp"]
                .iter()
                .any(|skip| shown == *skip || shown.starts_with(&format!("{skip}/")))
            {
                continue;
            }
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(
                shown,
                (
                    meta.size(),
                    meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                ),
            );
        }
    }
    out
}

#[test]
fn discovery_lists_what_was_made_by_hand_and_generates_an_import() {
    let bed = hostbed::Bed::up(1);
    let host = bed.hosts[0].name.clone();
    bed.ssh_ok(
        &host,
        &format!(
            "mkdir -p /etc/legacy /srv/share && printf 'port = 8080\\n' > /etc/legacy/app.conf \
             && printf 'password = {PASSWORD}\\n' > /etc/legacy/db.conf && chmod 600 /etc/legacy/db.conf \
             && printf '[Unit]\\nDescription=legacy\\n[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/legacy.service \
             && printf '[Service]\\nExecStart=/usr/bin/qemu-system-x86_64 -m 256 -nographic\\n' > /etc/systemd/system/old-vm.service \
             && systemctl daemon-reload && systemctl enable --now legacy.service \
             && echo '/srv/share 10.0.0.0/24(rw,sync)' > /etc/exports \
             && (wireguard-go wg-hand >/dev/null 2>&1 || true)"
        ),
    );
    let repo = Repo::new();
    common::bed_repository(repo.dir.path(), "discover", &bed.known_hosts, &bed.key);
    repo.write(
        "hosts.yaml",
        &format!(
            "{HEADER}kind: Host\nmetadata: {{name: {host}}}\nspec: {{address: {}, user: root}}\n",
            bed.hosts[0].address
        ),
    );
    let before = layer(&bed.hosts[0].upper);

    let listed = repo.nimbus(&["discover", "--path", "/etc/legacy", "--format", "json", "."]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&listed.stdout), text(&listed.stderr)));
    let objects = json["discovered"]["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = |kind: &str, identity: &str, address: &str| {
        objects.iter().any(|o| {
            o["kind"] == kind
                && o["identity"] == identity
                && o["address"] == address
                && o["host"] == host.as_str()
        })
    };
    assert!(
        has(
            "File",
            "/etc/legacy/app.conf",
            &format!("File/etc-legacy-app-conf@{host}")
        ),
        "{json}"
    );
    assert!(
        has(
            "File",
            "/etc/legacy/db.conf",
            &format!("File/etc-legacy-db-conf@{host}")
        ),
        "{json}"
    );
    assert!(
        has(
            "Service",
            "legacy.service",
            &format!("Service/legacy@{host}")
        ),
        "{json}"
    );
    assert!(has("VM", "old-vm.service", "VM/old-vm"), "{json}");
    assert!(has("Volume", "/srv/share", "Volume/srv-share"), "{json}");
    let wireguard = bed.ssh_ok(&host, "ls /var/run/wireguard/ 2>/dev/null || true");
    if wireguard.contains("wg-hand.sock") {
        assert!(
            has("Network", "wg-hand", &format!("Network/wg-hand@{host}")),
            "{json}"
        );
    } else {
        panic!("wireguard-go could not make wg-hand on the test host");
    }
    // Nothing in the host's systemd units or anywhere else was touched, and no secret shown.
    assert!(!text(&listed.stdout).contains(PASSWORD));
    let shown = ok(&repo.nimbus(&["discover", "--path", "/etc/legacy", "."]));
    assert!(
        shown.contains("Nothing was changed on any host or API."),
        "{shown}"
    );
    assert!(shown.contains("regular file, 0600 root:root"), "{shown}");
    assert_eq!(
        layer(&bed.hosts[0].upper),
        before,
        "discovery changed the host"
    );

    // Manifests for the files and the unit, with Import records; the password encrypted.
    let generated = repo.nimbus(&[
        "discover",
        "--path",
        "/etc/legacy",
        "--generate",
        "--select",
        "File/*",
        "--select",
        "Service/*",
        ".",
    ]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    assert!(!text(&generated.stdout).contains(PASSWORD));
    assert!(!text(&generated.stderr).contains(PASSWORD));
    let written = std::fs::read_to_string(repo.dir.path().join(format!("discovered/{host}.yaml")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!written.contains(PASSWORD), "{written}");
    assert!(written.contains("kind: Import"), "{written}");
    assert!(
        written.contains("secret: \"etc-legacy-db-conf-h1\""),
        "{written}"
    );
    let secret_files: Vec<String> = std::fs::read_dir(repo.dir.path().join("secrets"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        secret_files
            .iter()
            .any(|f| f.starts_with("etc-legacy-db-conf-")),
        "{secret_files:?}"
    );
    for file in &secret_files {
        let armored =
            std::fs::read_to_string(repo.dir.path().join("secrets").join(file)).unwrap_or_default();
        assert!(armored.contains("BEGIN AGE ENCRYPTED FILE") && !armored.contains(PASSWORD));
    }

    // The plan imports each, with no difference, and touches nothing else.
    let plan = repo.nimbus(&["plan", "--format", "json", "."]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&plan.stderr)));
    let changes = plan["changes"].as_array().cloned().unwrap_or_default();
    let imports: Vec<&serde_json::Value> =
        changes.iter().filter(|c| c["action"] == "import").collect();
    assert_eq!(imports.len(), 3, "{plan}");
    for import in &imports {
        assert!(import["error"].is_null(), "{import}");
        assert!(
            import["fields"].as_array().is_none_or(Vec::is_empty),
            "an import with a difference: {import}"
        );
    }
    assert!(
        changes
            .iter()
            .all(|c| c["action"] == "import" || c["action"] == "read" || c["action"] == "no-op"),
        "{plan}"
    );
    ok(&repo.nimbus(&["apply", "--auto-approve", "."]));
    let again = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert_eq!(
        std::fs::read_to_string(bed.hosts[0].upper.join("etc/legacy/db.conf")).unwrap_or_default(),
        format!("password = {PASSWORD}\n")
    );
    // Discovery no longer lists what is now managed.
    let after = ok(&repo.nimbus(&["discover", "--path", "/etc/legacy", "."]));
    assert!(!after.contains("/etc/legacy/app.conf"), "{after}");
    assert!(!after.contains("legacy.service "), "{after}");
}
