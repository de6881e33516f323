//! The hosts provider (Host facts, File) against a real sshd on loopback: the provider
//! contract of create, observe, update, idempotent re-apply, drift and delete, with files in a
//! temporary directory of this machine (which is the "host" here).

mod common;
use common::start_sshd;

use nimbus_planner::plan::{Action, Change, Observed, field_changes};
use nimbus_providers::hosts::{HostsProvider, kind_schema};
use nimbus_providers::{ObserveRequest, Provider};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

fn file_change(action: Action, path: &str, content: &str, before: Option<Value>) -> Change {
    Change {
        address: "File/motd@local".into(),
        resource: "File/motd".into(),
        kind: Kind::File,
        host: Some("local".into()),
        provider: "ssh".into(),
        previous_provider: None,
        error: None,
        action,
        before,
        after: (action != Action::Delete).then(
            || json!({"path": path, "content": content, "mode": "0640", "hosts": {"role": "web"}}),
        ),
        fields: Vec::new(),
        reason: None,
        depends_on: Vec::new(),
        protected: false,
        keep_on_removal: false,
        restart_for: Vec::new(),
        confirm: None,
    }
}

async fn observe(provider: &HostsProvider, desired: &Value) -> Observed {
    let request = ObserveRequest {
        address: "File/motd@local".into(),
        kind: Kind::File,
        desired: Some(desired.clone()),
    };
    let mut observed = provider
        .observe(Some("local"), std::slice::from_ref(&request))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    observed
        .pop()
        .map(|(_, o)| o)
        .unwrap_or(Observed::Unknown("not in the reply".into()))
}

/// The differences the planner would see between `desired` and what was observed.
fn diff(desired: &Value, observed: &Observed) -> Vec<String> {
    let Observed::Present(current) = observed else {
        return vec!["absent".into()];
    };
    let (mut d, mut c) = (desired.clone(), current.clone());
    kind_schema(Kind::File).normalize(&mut d);
    kind_schema(Kind::File).normalize(&mut c);
    field_changes(&c, &d, &kind_schema(Kind::File))
        .into_iter()
        .map(|f| f.path)
        .collect()
}

#[tokio::test]
async fn files_follow_the_provider_contract() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = start_sshd();
    let mut target = sshd.target();
    target.name = "local".into();
    let provider = HostsProvider::new([target]);
    let path = sshd.dir.path().join("etc/motd");
    let path_text = path.to_string_lossy().into_owned();

    // Absent, then created with its content and mode.
    let create = file_change(Action::Create, &path_text, "hello\n", None);
    let desired = create.after.clone().unwrap_or(Value::Null);
    assert_eq!(observe(&provider, &desired).await, Observed::Absent);
    provider
        .apply(&create, &nimbus_providers::Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        "hello\n"
    );
    assert_eq!(
        std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0),
        0o640
    );
    // Idempotent: observing again shows nothing to change.
    let observed = observe(&provider, &desired).await;
    assert!(diff(&desired, &observed).is_empty(), "{observed:?}");

    // Updated in place.
    let update = file_change(
        Action::Update,
        &path_text,
        "hello world\n",
        Some(json!({"path": path_text})),
    );
    let desired = update.after.clone().unwrap_or(Value::Null);
    assert_eq!(
        diff(&desired, &observe(&provider, &desired).await),
        ["content.sha256"]
    );
    provider
        .apply(&update, &nimbus_providers::Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        "hello world\n"
    );
    assert!(diff(&desired, &observe(&provider, &desired).await).is_empty());

    // A hand edit is drift: content and mode both show.
    std::fs::write(&path, "edited by hand\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        diff(&desired, &observe(&provider, &desired).await),
        ["content.sha256", "mode"]
    );
    provider
        .apply(&update, &nimbus_providers::Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(diff(&desired, &observe(&provider, &desired).await).is_empty());

    // Deleted.
    let delete = file_change(
        Action::Delete,
        &path_text,
        "",
        Some(json!({"path": path_text})),
    );
    provider
        .apply(&delete, &nimbus_providers::Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!path.exists());
    assert_eq!(observe(&provider, &desired).await, Observed::Absent);
    // No temporary file is left behind by the atomic writes.
    let leftovers: Vec<_> = std::fs::read_dir(sshd.dir.path().join("etc"))
        .map(|d| d.flatten().count())
        .into_iter()
        .collect();
    assert_eq!(leftovers, [0]);
}

#[tokio::test]
async fn a_host_reports_its_facts() {
    let sshd = start_sshd();
    let mut target = sshd.target();
    target.name = "local".into();
    let provider = HostsProvider::new([target]);
    let change = Change {
        address: "Host/local".into(),
        resource: "Host/local".into(),
        kind: Kind::Host,
        host: None,
        provider: "ssh".into(),
        previous_provider: None,
        error: None,
        action: Action::Create,
        before: None,
        after: Some(json!({"address": "127.0.0.1", "port": 22, "user": "root"})),
        fields: Vec::new(),
        reason: None,
        depends_on: Vec::new(),
        protected: false,
        keep_on_removal: false,
        restart_for: Vec::new(),
        confirm: None,
    };
    let applied = provider
        .apply(&change, &nimbus_providers::Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let facts = &applied.outputs["facts"];
    assert!(facts["cpus"].as_u64().is_some_and(|n| n >= 1), "{facts}");
    assert!(
        facts["memory"].as_u64().is_some_and(|n| n > 1 << 20),
        "{facts}"
    );
    assert!(
        facts["kernel"].as_str().is_some_and(|k| !k.is_empty()),
        "{facts}"
    );
    assert!(
        facts["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "{facts}"
    );
    // Observing every instance of a host is one command: a Host and three Files.
    let requests: Vec<ObserveRequest> = std::iter::once(ObserveRequest {
        address: "Host/local".into(),
        kind: Kind::Host,
        desired: change.after.clone(),
    })
    .chain((0..3).map(|i| ObserveRequest {
        address: format!("File/f{i}@local"),
        kind: Kind::File,
        desired: Some(json!({"path": format!("/nonexistent/{i}"), "content": "x"})),
    }))
    .collect();
    let commands = provider.commands_run();
    let observed = provider
        .observe(Some("local"), &requests)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(observed.len(), 4, "{observed:?}");
    assert_eq!(
        provider.commands_run(),
        commands + 1,
        "one command observed all four"
    );
}

/// One observation of many files, whatever their names: spaces, tabs, `=`, a newline or a
/// backslash, a directory where a file should be, and one that does not exist.
#[tokio::test]
async fn odd_paths_are_observed_exactly() {
    let sshd = start_sshd();
    let mut target = sshd.target();
    target.name = "local".into();
    let provider = HostsProvider::new([target]);
    let dir = sshd.dir.path().join("odd");
    std::fs::create_dir_all(dir.join("a directory")).unwrap_or_else(|e| panic!("{e}"));
    let names = [
        "plain",
        "with space",
        "tab\there",
        "a=b  c",
        "new\nline",
        "back\\slash",
    ];
    for name in names {
        std::fs::write(dir.join(name), format!("{name}\n")).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut requests: Vec<ObserveRequest> = names
        .iter()
        .chain(["a directory", "missing"].iter())
        .enumerate()
        .map(|(i, name)| ObserveRequest {
            address: format!("File/f{i}@local"),
            kind: Kind::File,
            desired: Some(
                json!({"path": dir.join(name).to_string_lossy(), "content": format!("{name}\n")}),
            ),
        })
        .collect();
    requests.reverse();
    let commands = provider.commands_run();
    let observed: std::collections::HashMap<String, Observed> = provider
        .observe(Some("local"), &requests)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .collect();
    assert_eq!(provider.commands_run(), commands + 1);
    for (i, name) in names.iter().enumerate() {
        let request = requests
            .iter()
            .find(|r| r.address == format!("File/f{i}@local"))
            .unwrap_or_else(|| panic!("no request {i}"));
        let desired = request.desired.clone().unwrap_or(Value::Null);
        let got = observed
            .get(&request.address)
            .cloned()
            .unwrap_or(Observed::Unknown("not in the reply".into()));
        assert!(diff(&desired, &got).is_empty(), "{name:?}: {got:?}");
    }
    assert_eq!(
        observed.get("File/f6@local"),
        Some(&Observed::Absent),
        "a directory"
    );
    assert_eq!(
        observed.get("File/f7@local"),
        Some(&Observed::Absent),
        "missing"
    );
}
