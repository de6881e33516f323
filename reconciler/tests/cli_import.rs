//! Imports and explicit adoption (issue 28) on a real host: a Debian container booting
//! systemd with its own sshd, in its own network namespace (`testbed/`). A file and a unit
//! made by hand where manifests declare a File and a Service are refused by the plan ("exists,
//! not managed") and left exactly as they are (same inode, mtime and content) while the rest
//! applies; `nimbus import` records the file as owned without touching it, the next plan
//! shows only what differs, and removing its manifest then deletes it; a `kind: Import`
//! record imports the unit inside a plan; the run history says who imported.

use crate::common::{self, Repo, ok, text};
use crate::sshd::bed as hostbed;

use std::os::unix::fs::MetadataExt;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";
const UNIT: &str = "[Unit]\nDescription=made by hand\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n";

fn stat(path: &std::path::Path) -> (u64, i64, String) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (
        meta.ino(),
        meta.mtime_nsec(),
        std::fs::read_to_string(path).unwrap_or_default(),
    )
}

fn plan_json(repo: &Repo) -> serde_json::Value {
    let out = repo.nimbus(&["plan", "--format", "json", "."]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

fn change<'a>(plan: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    plan["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["address"] == address))
        .unwrap_or_else(|| panic!("no {address} in {plan}"))
}

#[test]
fn objects_made_by_hand_are_refused_until_imported() {
    let bed = hostbed::Bed::up(1);
    let host = &bed.hosts[0].name;
    // Made by hand before nimbus ever ran: a config file and a unit.
    bed.ssh_ok(
        host,
        &format!(
            "mkdir -p /etc/legacy && printf 'port = 8080\\n' > /etc/legacy/app.conf && printf '{}' > /etc/systemd/system/legacy.service && systemctl daemon-reload",
            UNIT.replace('\n', "\\n")
        ),
    );
    let file = bed.hosts[0].upper.join("etc/legacy/app.conf");
    let unit = bed.hosts[0].upper.join("etc/systemd/system/legacy.service");
    let (file_before, unit_before) = (stat(&file), stat(&unit));

    let repo = Repo::new();
    common::bed_repository(repo.dir.path(), "import", &bed.known_hosts, &bed.key);
    repo.write(
        "hosts.yaml",
        &format!(
            "{HEADER}kind: Host\nmetadata: {{name: {host}}}\nspec: {{address: {}, user: root}}\n",
            bed.hosts[0].address
        ),
    );
    let files = format!(
        "{HEADER}kind: File\nmetadata: {{name: legacy-config}}\nspec: {{host: {host}, path: /etc/legacy/app.conf, content: \"port = 9090\\n\"}}\n---\n\
         {HEADER}kind: File\nmetadata: {{name: fresh}}\nspec: {{host: {host}, path: /etc/legacy/fresh.conf, content: \"new\\n\"}}\n"
    );
    repo.write("files.yaml", &files);
    repo.write(
        "service.yaml",
        &format!(
            "{HEADER}kind: Service\nmetadata: {{name: legacy}}\nspec:\n  host: {host}\n  enabled: false\n  state: stopped\n  unit: |\n{}",
            UNIT.lines().map(|l| format!("    {l}\n")).collect::<String>()
        ),
    );

    // Refused, named, and left alone; what is not in the way applies.
    let plan = plan_json(&repo);
    for address in [
        format!("File/legacy-config@{host}"),
        format!("Service/legacy@{host}"),
    ] {
        let refused = change(&plan, &address);
        assert!(
            refused["error"]
                .as_str()
                .is_some_and(|e| e.contains("exists, not managed")
                    && e.contains(&format!("nimbus import {address}"))),
            "{refused}"
        );
    }
    let out = repo.nimbus(&["plan", "."]);
    assert!(
        text(&out.stdout).contains("exists, not managed"),
        "{}",
        text(&out.stdout)
    );
    let applied = repo.nimbus(&["apply", "--auto-approve", "."]);
    assert_eq!(
        applied.status.code(),
        Some(1),
        "the refused instances fail the run: {}{}",
        text(&applied.stdout),
        text(&applied.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(bed.hosts[0].upper.join("etc/legacy/fresh.conf"))
            .unwrap_or_default(),
        "new\n"
    );
    assert_eq!(stat(&file), file_before, "the hand-made file was touched");
    assert_eq!(stat(&unit), unit_before, "the hand-made unit was touched");

    // `nimbus import` records the file as it is, touching nothing.
    let imported = ok(&common::nimbus_with(
        &[
            "import",
            &format!("File/legacy-config@{host}"),
            "/etc/legacy/app.conf",
        ],
        repo.dir.path(),
        &[("USER", "alice")],
    ));
    assert!(imported.contains("imported"), "{imported}");
    assert_eq!(stat(&file), file_before, "import changed the file");
    let shown = ok(&repo.nimbus(&["state", "show", &format!("File/legacy-config@{host}")]));
    assert!(shown.contains("owned:     true"), "{shown}");
    let history = ok(&repo.nimbus(&["state", "history"]));
    assert!(
        history
            .lines()
            .any(|l| l.contains(" import ") && l.contains(" alice@")),
        "the history names the import and who ran it: {history}"
    );
    // Importing it again is refused: it is managed now.
    let again = repo.nimbus(&["import", &format!("File/legacy-config@{host}")]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already managed"),
        "{}",
        text(&again.stderr)
    );

    // The next plan shows exactly the difference: the content, nothing else.
    let plan = plan_json(&repo);
    let update = change(&plan, &format!("File/legacy-config@{host}"));
    assert_eq!(update["action"], "update", "{update}");
    let fields: Vec<&str> = update["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["path"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !fields.is_empty() && fields.iter().all(|f| f.starts_with("content")),
        "{update}"
    );

    // A `kind: Import` record imports the unit inside the plan, for review first.
    repo.write(
        "imports.yaml",
        &format!("{HEADER}kind: Import\nspec: {{to: Service/legacy, id: legacy.service}}\n"),
    );
    let plan = plan_json(&repo);
    let import = change(&plan, &format!("Service/legacy@{host}"));
    assert_eq!(import["action"], "import", "{import}");
    assert!(import["error"].is_null(), "{import}");
    let text_plan = ok(&repo.nimbus(&["plan", "."]));
    assert!(text_plan.contains("1 to import"), "{text_plan}");
    ok(&repo.nimbus(&["apply", "--auto-approve", "."]));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "port = 9090\n"
    );
    let shown = ok(&repo.nimbus(&["state", "show", &format!("Service/legacy@{host}")]));
    assert!(shown.contains("owned:     true"), "{shown}");
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap_or_default(),
        UNIT,
        "the unit's text was the manifest's already"
    );
    // Converged: an empty plan, with the Import record still there (it did its work).
    let out = repo.nimbus(&["plan", "--detailed-exitcode", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // Imported means owned: removing the manifests deletes what was imported.
    repo.remove("imports.yaml");
    repo.write(
        "files.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: fresh}}\nspec: {{host: {host}, path: /etc/legacy/fresh.conf, content: \"new\\n\"}}\n"
        ),
    );
    repo.remove("service.yaml");
    ok(&repo.nimbus(&["apply", "--auto-approve", "."]));
    assert!(!file.exists(), "the imported file was not pruned");
    assert_eq!(
        bed.ssh_ok(
            host,
            "test -e /etc/systemd/system/legacy.service && echo there || echo gone"
        )
        .trim(),
        "gone"
    );
}
