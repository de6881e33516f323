//! Hostile values on a real test-bed host (issue 23, docs/security.md). A value that
//! validation lets through (shell characters, quotes, backslashes, `$(...)`, backticks, `;`,
//! a leading `-` inside a path, 10,000 characters, newlines inside content) reaches the host
//! as that literal value, and never as a command: the files on the host are checked, not
//! only nimbus's output. A value that validation refuses (a newline in an export client or
//! path) never reaches the host: nothing is written there. A File whose content is a secret
//! lands 0600. And systemd itself reads nimbus's quoting of a unit's command line back as
//! the literal words, a newline included, with no second directive.

use crate::common;
use crate::sshd;
use common::{ok, text, write};
use sshd::bed::Bed;

const HEADER: &str = "apiVersion: nimbus.dev/v1alpha1\n";

/// A value every shell-, systemd- and quote-sensitive character is in, on one line.
const NASTY: &str = "a b'c\"d\\e$(touch /tmp/pwned-1);f`touch /tmp/pwned-2`g|h&i>j<k*l?m%n$HOME";

/// YAML's double-quoted form of `text`.
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

#[test]
fn hostile_values_reach_the_host_literally_or_not_at_all() {
    let bed = Bed::up(1);
    let host = bed.hosts[0].name.clone();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path();
    common::bed_repository(repo, "hostile", &bed.known_hosts, &bed.key);
    write(repo, "hosts.yaml", &bed.hosts_manifest(""));
    let long = "x".repeat(10_000);
    // One path segment: the value's `/` would make folders (literally, too).
    let name = format!("-{}", NASTY.replace('/', "_"));
    let path = format!("/srv/hostile/{name}");
    let content =
        format!("line one {NASTY}\n$(touch /tmp/pwned-3)\n`touch /tmp/pwned-4`\n'\"\\\n{long}\n");
    write(
        repo,
        "files.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: nasty}}\nspec:\n  host: {host}\n  path: {}\n  content: {}\n  mode: \"0640\"\n---\n{HEADER}kind: File\nmetadata: {{name: long-name}}\nspec:\n  host: {host}\n  path: /srv/hostile/{}\n  content: {}\n",
            yaml_string(&path),
            yaml_string(&content),
            "y".repeat(200),
            yaml_string(&long),
        ),
    );
    common::encrypt_secret(repo, "token", "not-shown-anywhere-1234\n");
    write(
        repo,
        "secret.yaml",
        &format!(
            "{HEADER}kind: File\nmetadata: {{name: token}}\nspec: {{host: {host}, path: /srv/hostile/token, secret: token}}\n"
        ),
    );
    // The plan shows the mode a secret File gets.
    let plan = common::nimbus(&["plan", "."], repo);
    let said = ok(&plan);
    assert!(said.contains("\"0600\""), "{said}");
    assert!(!said.contains("not-shown-anywhere"), "{said}");
    ok(&common::nimbus(&["apply", "--auto-approve", "."], repo));
    // The literal path and content, and no command ran.
    let listed = bed.ssh_ok(&host, "ls -1 /srv/hostile");
    assert!(listed.lines().any(|l| l == name), "{listed}");
    let landed = bed.ssh_ok(
        &host,
        &format!("cat -- {}", nimbus_providers::quote::shell_quote(&path)),
    );
    assert_eq!(landed, content);
    assert_eq!(
        bed.ssh_ok(
            &host,
            &format!(
                "stat -c %a -- {}",
                nimbus_providers::quote::shell_quote(&path)
            )
        )
        .trim(),
        "640"
    );
    assert_eq!(
        bed.ssh_ok(&host, "stat -c %a /srv/hostile/token").trim(),
        "600"
    );
    assert_eq!(
        bed.ssh_ok(&host, &format!("wc -c < /srv/hostile/{}", "y".repeat(200)))
            .trim(),
        "10000"
    );
    assert_eq!(
        bed.ssh_ok(&host, "ls /tmp/pwned-* 2>/dev/null | wc -l")
            .trim(),
        "0"
    );
    // A second plan is empty: what landed is what was meant.
    let again = common::nimbus(&["plan", "--detailed-exitcode", "."], repo);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );

    // Refused values never reach the host: a tenant's export with a second line in a client,
    // and a pool that leaves the host's volume roots.
    write(
        repo,
        "tenants/acme/tenant.yaml",
        &format!("{HEADER}kind: Tenant\nmetadata: {{name: acme}}\nspec: {{}}\n"),
    );
    write(
        repo,
        "tenants/acme/share.yaml",
        &format!(
            "{HEADER}kind: Volume\nmetadata: {{name: share}}\nspec: {{type: nfs, size: 1Gi, host: {host}, clients: [\"10.0.0.1\\n\\\"/\\\" *\"]}}\n---\n{HEADER}kind: Volume\nmetadata: {{name: etc}}\nspec: {{type: nfs, size: 1Gi, host: {host}, pool: /etc}}\n"
        ),
    );
    let refused = common::nimbus(&["apply", "--auto-approve", "."], repo);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(
        said.contains("clients[0]") && said.contains("volume roots"),
        "{said}"
    );
    assert_eq!(
        bed.ssh_ok(
            &host,
            "ls /etc/exports.d /etc/ganesha/nimbus.d 2>/dev/null | grep -c nimbus || true"
        )
        .trim(),
        "0"
    );
    assert_eq!(
        bed.ssh_ok(&host, "test -e /etc/acme && echo made || echo none")
            .trim(),
        "none"
    );
}

#[test]
fn systemd_reads_nimbus_quoting_back_as_the_literal_words() {
    let bed = Bed::up(1);
    let host = bed.hosts[0].name.clone();
    let words = [
        "console=ttyS0\nExecStartPre=/bin/touch /tmp/pwned-unit".to_owned(),
        NASTY.to_owned(),
        "100% $USER ${HOME} \\x41 \"q\" 'q'".to_owned(),
        "tab\there".to_owned(),
    ];
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("\"{}\"", nimbus_providers::quote::systemd_escape(w)))
        .collect();
    // sh writes each argument it was given, NUL-terminated; its script is quoted the same way.
    let script = "for a in \"$@\"; do printf '%s\\0' \"$a\"; done > /tmp/argv";
    let unit = format!(
        "[Unit]\nDescription=nimbus quoting test\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c \"{}\" sh {}\n",
        nimbus_providers::quote::systemd_escape(script),
        quoted.join(" ")
    );
    assert_eq!(unit.lines().filter(|l| l.starts_with("Exec")).count(), 1);
    let local = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(local.path(), &unit).unwrap_or_else(|e| panic!("{e}"));
    bed.copy_to(
        &host,
        local.path(),
        "/etc/systemd/system/nimbus-quoting.service",
    );
    bed.ssh_ok(&host, "systemctl daemon-reload");
    // One directive, no ExecStartPre smuggled in.
    let pre = bed.ssh_ok(
        &host,
        "systemctl show -p ExecStartPre --value nimbus-quoting.service",
    );
    assert!(pre.trim().is_empty(), "{pre}");
    bed.ssh_ok(&host, "systemctl start nimbus-quoting.service");
    let hex = bed.ssh_ok(&host, "od -An -tx1 -v /tmp/argv");
    let bytes: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("{b}: {e}")))
        .collect();
    let argv: Vec<String> = bytes
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    assert_eq!(argv, words.to_vec());
    assert_eq!(
        bed.ssh_ok(&host, "ls /tmp/pwned-* 2>/dev/null | wc -l")
            .trim(),
        "0"
    );
}
