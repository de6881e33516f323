//! `nimbus validate` on real repositories: each folder under tests/validate/ is a repository,
//! and `<folder>.expected.json` is the exit code and the JSON problems it must give. Run with
//! `NIMBUS_BLESS=1` to rewrite the expected files after an intended change, and review the diff.

use crate::common;
use common::nimbus;

use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate")
}

fn check(case: &str) -> serde_json::Value {
    let dir = cases_dir().join(case);
    let output = nimbus(&["validate", "--format", "json", "."], &dir);
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{case}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(document["format_version"], 1, "{document}");
    let problems = document["problems"].clone();
    let actual = serde_json::json!({"exit": output.status.code(), "problems": problems});
    let expected_path = cases_dir().join(format!("{case}.expected.json"));
    let rendered = serde_json::to_string_pretty(&actual).unwrap_or_default() + "\n";
    if std::env::var_os("NIMBUS_BLESS").is_some() {
        std::fs::write(&expected_path, &rendered)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected_path.display()));
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with NIMBUS_BLESS=1 to create it",
            expected_path.display()
        )
    });
    assert_eq!(
        rendered,
        expected,
        "{case}: output differs from {}",
        expected_path.display()
    );
    actual
}

fn codes(actual: &serde_json::Value) -> Vec<String> {
    actual["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["code"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn many_mistakes_are_all_reported_in_one_run() {
    let actual = check("many-mistakes");
    assert_eq!(actual["exit"], 1);
    let codes = codes(&actual);
    for code in [
        "nimbus::manifest::unknown_field",
        "nimbus::manifest::invalid_value",
        "nimbus::manifest::invalid_name",
        "nimbus::manifest::unknown_kind",
        "nimbus::manifest::api_version",
        "nimbus::address::duplicate",
        "nimbus::host::duplicate_address",
        "nimbus::reference::missing",
        "nimbus::reference::missing_source",
        "nimbus::secret::missing",
        "nimbus::selector::no_match",
        "nimbus::graph::cycle",
        "nimbus::policy::tenant_scope",
        "nimbus::policy::quota",
        "nimbus::network::address",
        "nimbus::network::address_collision",
        "nimbus::value::path",
        "nimbus::value::mode",
    ] {
        assert!(codes.iter().any(|c| c == code), "no {code} in {codes:?}");
    }
    // Every problem names its file, line and column; they come sorted by file and line.
    let problems = actual["problems"].as_array().cloned().unwrap_or_default();
    let keys: Vec<(String, u64, u64)> = problems
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap_or("").to_owned(),
                p["line"].as_u64().unwrap_or(0),
                p["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        keys.iter()
            .all(|(f, l, c)| !f.is_empty() && *l > 0 && *c > 0),
        "{keys:?}"
    );
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn malformed_files_each_get_a_diagnostic_naming_the_file() {
    let actual = check("bad-input");
    assert_eq!(actual["exit"], 1);
    let problems = actual["problems"].as_array().cloned().unwrap_or_default();
    for (file, code) in [
        ("truncated.yaml", "nimbus::yaml::syntax"),
        ("tabs.yaml", "nimbus::yaml::syntax"),
        ("duplicate-keys.yaml", "nimbus::yaml::duplicate_key"),
        ("v1.kdl", "nimbus::kdl::syntax"),
        ("program.yaml", "nimbus::load::binary"),
        ("latin1.yaml", "nimbus::load::encoding"),
        ("empty.yaml", "nimbus::load::empty"),
        ("comments-only.yml", "nimbus::load::empty"),
        ("list.yaml", "nimbus::manifest::not_a_map"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p["file"] == file && p["code"] == code),
            "no {code} for {file} in {problems:#?}"
        );
    }
}

#[test]
fn kdl_mistakes_use_kdl_spelling_in_suggestions() {
    let actual = check("kdl-errors");
    assert_eq!(actual["exit"], 1);
    let text = actual.to_string();
    assert!(text.contains("did you mean `address`?"), "{text}");
    assert!(text.contains("did you mean `host-key`?"), "{text}");
    assert!(text.contains("did you mean `host`?"), "{text}");
    assert!(text.contains("must be quoted in KDL"), "{text}");
}

#[test]
fn warnings_alone_exit_zero() {
    let actual = check("warnings-only");
    assert_eq!(actual["exit"], 0);
    assert_eq!(codes(&actual), ["nimbus::selector::no_match"]);
    assert_eq!(actual["problems"][0]["severity"], "warning");
}

#[test]
fn text_output_shows_each_problem_with_its_place_and_snippet() {
    let output = nimbus(&["validate", "many-mistakes"], &cases_dir());
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hosts.yaml:8:3: Host/web-1: unknown field `adress`"),
        "{stderr}"
    );
    assert!(stderr.contains("8 |   adress: 10.0.0.2"), "{stderr}");
    assert!(stderr.contains("help: did you mean `address`?"), "{stderr}");
    assert!(stderr.contains("error: many-mistakes:"), "{stderr}");
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let output = nimbus(&["validate", "no-such-repository"], &cases_dir());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("cannot read the repository at no-such-repository")
    );
}

#[test]
fn huge_and_deeply_nested_files_give_diagnostics_not_crashes() {
    let repo = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        repo.path().join("nimbus.yaml"),
        "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {name: hostile}\nspec: {}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let huge = "# padding\n".repeat(5 * 1024 * 1024);
    std::fs::write(repo.path().join("huge.yaml"), huge).unwrap_or_else(|e| panic!("{e}"));
    // 2,000 levels of block mappings (4 MB of indentation), and 10,000 of sequences on a line.
    let deep_yaml: String = (0..2_000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    std::fs::write(repo.path().join("deep.yaml"), deep_yaml).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        repo.path().join("deep-seq.yaml"),
        "- ".repeat(10_000) + "x\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(repo.path().join("deep-flow.yaml"), "[".repeat(10_000))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(repo.path().join("deep.kdl"), "a {".repeat(10_000))
        .unwrap_or_else(|e| panic!("{e}"));
    let output = nimbus(&["validate", "--format", "json", "."], repo.path());
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    let problems = &document["problems"];
    for (file, needle) in [
        ("huge.yaml", "more than the 8 MiB"),
        ("deep.yaml", "deeper than"),
        ("deep-flow.yaml", "deeper than"),
        ("deep-seq.yaml", "deeper than"),
        ("deep.kdl", "deeper than"),
    ] {
        let found = problems.as_array().is_some_and(|a| {
            a.iter().any(|p| {
                p["file"] == file && p["message"].as_str().is_some_and(|m| m.contains(needle))
            })
        });
        assert!(found, "no diagnostic for {file}: {problems:#}");
    }
}

/// Regression: a Workload in `tenants/acme/` that declares `tenant: globex` was not reported
/// as out of its tenant's folder when the same document had another error (an invalid
/// `memory`); and a Cluster's missing `network` must be reported while another Network
/// document has an error.
#[test]
fn one_error_does_not_hide_another() {
    let actual = check("errors-do-not-hide-others");
    let codes = codes(&actual);
    assert!(
        codes.contains(&"nimbus::policy::tenant_scope".to_owned()),
        "{codes:?}"
    );
    assert!(
        codes.contains(&"nimbus::reference::missing".to_owned()),
        "{codes:?}"
    );
    let text = actual.to_string();
    assert!(text.contains("Workload/globex/api"), "{text}");
    assert!(text.contains("Network/mesh"), "{text}");
}

#[test]
fn networks_that_overlap_or_clash_on_an_interface_are_refused() {
    let actual = check("networks");
    assert_eq!(actual["exit"], 1);
    let codes = codes(&actual);
    // The default subnet of `mesh` lies inside `office`'s; `mesh` takes `office`'s interface;
    // `wg-a-very-long-network-name` is longer than Linux allows.
    assert_eq!(
        codes
            .iter()
            .filter(|c| *c == "nimbus::network::overlap")
            .count(),
        1,
        "{actual}"
    );
    assert_eq!(
        codes
            .iter()
            .filter(|c| *c == "nimbus::network::interface")
            .count(),
        2,
        "{actual}"
    );
    let text = actual.to_string();
    assert!(text.contains("network.yaml"), "{text}");
}

#[test]
fn storage_vm_bridge_and_k3s_mistakes_are_named_at_their_lines() {
    let actual = check("storage");
    assert_eq!(actual["exit"], 1);
    let mut codes = codes(&actual);
    codes.sort();
    // s3.endpoint without a scheme; s3.secretAccessKey in plain text; a bucket S3 refuses; a
    // VM's bridge name too long for Linux and `ports` beside it; a k3s binary that is not in
    // the repository, with a digest that is not one; a VM naming a Network its host is not a
    // member of (a warning).
    for code in [
        "nimbus::value::format",
        "nimbus::secret::plain_text",
        "nimbus::volume::bucket_name",
        "nimbus::vm::bridge",
        "nimbus::manifest::conflicting_fields",
        "nimbus::cluster::k3s_source",
        "nimbus::cluster::k3s_sha256",
        "nimbus::vm::network",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} missing: {actual}");
    }
    let text = actual.to_string();
    // A k3s Cluster with no binary pinned at all (none on it, none on the Repository): named
    // at its `type` line.
    let unpinned = actual["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["message"]
                .as_str()
                .is_some_and(|m| m.contains("no k3s binary is pinned"))
        })
        .unwrap_or_else(|| panic!("no diagnostic for the unpinned cluster: {text}"));
    assert_eq!(
        unpinned["code"], "nimbus::cluster::k3s_source",
        "{unpinned}"
    );
    assert_eq!(
        (&unpinned["file"], &unpinned["line"]),
        (&serde_json::json!("cluster.yaml"), &serde_json::json!(13)),
        "{unpinned}"
    );
    assert!(
        !text.contains("wJalrXUtnFEMI"),
        "the plain-text key is repeated: {text}"
    );
}

/// Issue 23's attacks, written as a tenant (and an operator) would: every value that would
/// reach a host with a newline, a quote, `$(...)`, backticks, `;`, a leading `-` or a path
/// out of the host's volume roots is refused at its line, and nothing else is missed.
#[test]
fn hostile_values_are_refused_at_their_lines() {
    let actual = check("hostile-values");
    assert_eq!(actual["exit"], 1);
    let problems = actual["problems"].as_array().cloned().unwrap_or_default();
    let at = |file: &str, line: u64| {
        problems
            .iter()
            .any(|p| p["file"] == file && p["line"] == line && p["severity"] == "error")
    };
    // Each hostile client, pool, path, owner, image and command line, at its own line.
    for (file, line) in [
        ("tenants/acme/volumes.yaml", 10),
        ("tenants/acme/volumes.yaml", 15),
        ("tenants/acme/volumes.yaml", 20),
        ("tenants/acme/volumes.yaml", 25),
        ("tenants/acme/volumes.yaml", 30),
        ("tenants/acme/volumes.yaml", 35),
        ("tenants/acme/volumes.yaml", 40),
        ("tenants/acme/volumes.yaml", 46),
        ("tenants/acme/volumes.yaml", 48),
        ("tenants/acme/volumes.yaml", 49),
        ("vms.yaml", 8),
        ("vms.yaml", 11),
        ("vms.yaml", 12),
        ("files.yaml", 6),
        ("files.yaml", 8),
        ("files.yaml", 9),
        ("files.yaml", 17),
        ("files.yaml", 25),
        ("hosts.yaml", 6),
        ("hosts.yaml", 13),
        ("hosts.yaml", 19),
    ] {
        assert!(
            at(file, line),
            "nothing refused at {file}:{line}: {problems:#?}"
        );
    }
    // Seven hostile clients on one line, each its own problem but the CIDR.
    let clients = problems
        .iter()
        .filter(|p| p["file"] == "tenants/acme/volumes.yaml" && p["line"] == 10)
        .count();
    assert_eq!(clients, 6, "{problems:#?}");
    let codes = codes(&actual);
    assert!(
        codes.iter().any(|c| c == "nimbus::volume::outside_roots"),
        "{codes:?}"
    );
    assert!(
        codes.iter().any(|c| c == "nimbus::volume::overlap"),
        "{codes:?}"
    );
}

/// Commands find their repository by walking up to its nimbus.yaml, as git and cargo do; a
/// folder with none above it is an error that says what to do, not an empty plan.
#[test]
fn the_repository_is_found_by_walking_up_and_a_folder_without_one_is_an_error() {
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for args in [
        vec!["plan", "."],
        vec!["validate", "."],
        vec!["apply", "--auto-approve", "."],
        vec!["state", "list"],
        vec!["graph", "."],
    ] {
        let output = nimbus(&args, empty.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("is not in a nimbus repository") && stderr.contains("nimbus init"),
            "{args:?}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("No changes"),
            "{args:?}"
        );
    }
    // From a folder inside a repository, the repository is the one above it.
    let repo = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        repo.path().join("nimbus.yaml"),
        "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nmetadata: {name: up}\nspec: {}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        repo.path().join("bad.yaml"),
        "apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {name: h1}\nspec: {adress: 10.0.0.1}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let inside = repo.path().join("hosts/more");
    std::fs::create_dir_all(&inside).unwrap_or_else(|e| panic!("{e}"));
    let from_inside = nimbus(&["validate", "--format", "json"], &inside);
    let document: serde_json::Value =
        serde_json::from_slice(&from_inside.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_inside.status.code(), Some(1));
    assert_eq!(document["problems"][0]["file"], "bad.yaml", "{document:#}");
}

/// A PostgreSQL state's URL with its password written in the repository is refused at its
/// line, and the diagnostic does not repeat the password.
#[test]
fn a_state_url_with_a_password_is_refused_without_showing_it() {
    let actual = check("state-url");
    assert_eq!(actual["exit"], 1);
    assert_eq!(codes(&actual), ["nimbus::secret::plain_text"]);
    assert_eq!(actual["problems"][0]["line"], 7);
    let output = nimbus(&["validate", "state-url"], &cases_dir());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("state.url holds a password"), "{stderr}");
    assert!(!actual.to_string().contains("hunter2-in-git"), "{actual}");
    assert!(!stderr.contains("hunter2-in-git"), "{stderr}");
    // The snippet still shows where: the line, its value as stars.
    assert!(stderr.contains("url: ****"), "{stderr}");
    // The same for an S3 key written in clear.
    let output = nimbus(&["validate", "storage"], &cases_dir());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("s3.secretAccessKey is written in plain text"),
        "{stderr}"
    );
    assert!(!stderr.contains("wJalrXUtnFEMI-plain-text"), "{stderr}");
}

/// Issue 27: a wrong input value (type, range, unknown input, missing input) is reported at
/// the value with the input's declaration as its second place; a module cycle names the
/// circle; what a module produces in a tenant's folder is held to that folder's rule, at the
/// module's line with the use as its second place.
#[test]
fn module_mistakes_name_both_places() {
    let actual = check("module-errors");
    assert_eq!(actual["exit"], 1);
    let problems = actual["problems"].as_array().cloned().unwrap_or_default();
    let find = |code: &str, file: &str, line: u64| {
        problems
            .iter()
            .find(|p| p["code"] == code && p["file"] == file && p["line"] == line)
            .cloned()
            .unwrap_or_else(|| panic!("no {code} at {file}:{line}: {problems:#?}"))
    };
    let labelled = |p: &serde_json::Value, file: &str, line: u64| {
        p["labels"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["file"] == file && l["line"] == line))
    };
    for (line, what) in [(9, "an integer"), (19, "at most 10"), (20, "at most 2Gi")] {
        let p = find("nimbus::module::input_value", "uses.yaml", line);
        assert!(p["message"].as_str().unwrap_or("").contains(what), "{p}");
        assert!(
            labelled(
                &p,
                "modules/web/module.yaml",
                if line == 20 { 8 } else { 7 }
            ),
            "{p}"
        );
    }
    let unknown = find("nimbus::module::unknown_input", "uses.yaml", 30);
    assert!(
        labelled(&unknown, "modules/web/module.yaml", 5),
        "{unknown}"
    );
    assert!(
        unknown["help"].as_str().unwrap_or("").contains("replicas"),
        "{unknown}"
    );
    let missing = find("nimbus::module::missing_input", "uses.yaml", 35);
    assert!(
        labelled(&missing, "modules/web/module.yaml", 6),
        "{missing}"
    );
    let cycle = find("nimbus::module::cycle", "modules/b/uses.yaml", 6);
    assert!(
        cycle["message"]
            .as_str()
            .unwrap_or("")
            .contains("modules/a → modules/b → modules/a"),
        "{cycle}"
    );
    find("nimbus::module::missing", "uses.yaml", 44);
    let scope = find("nimbus::policy::tenant_scope", "modules/web/web.yaml", 6);
    assert!(labelled(&scope, "tenants/acme/web.yaml", 8), "{scope}");
    assert!(labelled(&scope, "tenants/acme/web.yaml", 4), "{scope}");
}

/// Notification receivers without what their type needs are refused at their lines.
#[test]
fn notification_receivers_are_checked_at_their_lines() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("nimbus.yaml"),
        "apiVersion: nimbus.dev/v1alpha1\nkind: Repository\nspec:\n  notifications:\n    - {name: a, type: webhook}\n    - {name: b, type: slack, url: \"ftp://x\"}\n    - {name: c, type: email, smtp: \"mail\", to: [nobody]}\n    - {name: c, type: slack, url: \"https://x.example/\", secret: k}\n    - {name: d, type: webhook, url: \"https://x.example/\", secret: missing}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = nimbus(&["validate", "--format", "json", "."], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<u64> = document["problems"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter(|p| p["code"] == "nimbus::notification::receiver")
                .filter_map(|p| p["line"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    for line in [5, 6, 7, 8] {
        assert!(lines.contains(&line), "nothing at line {line}: {document}");
    }
    assert!(
        document["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["line"] == 9
                && p["code"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("nimbus::secret")))),
        "{document}"
    );
}

/// Issue 28: an `Import` record is checked at its line: it names a declared resource (not a
/// Host), its `id` is the object the manifest names, and it has no other field; a good one
/// is no problem.
#[test]
fn import_records_are_checked_at_their_lines() {
    let actual = check("import-errors");
    assert_eq!(actual["exit"], 1);
    let problems = actual["problems"].as_array().cloned().unwrap_or_default();
    let at = |code: &str, line: u64| {
        problems
            .iter()
            .any(|p| p["code"] == code && p["file"] == "imports.yaml" && p["line"] == line)
    };
    assert!(at("nimbus::import::unknown", 4), "{problems:#?}");
    assert!(at("nimbus::import::host", 9), "{problems:#?}");
    assert!(at("nimbus::import::id", 15), "{problems:#?}");
    assert!(
        problems
            .iter()
            .any(|p| p["file"] == "imports.yaml" && p["line"] == 21),
        "the unknown field `from`: {problems:#?}"
    );
    assert_eq!(problems.len(), 4, "the last record is fine: {problems:#?}");
}
