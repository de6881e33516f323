//! The provider contract of the hosts provider on real hosts: Debian containers booting
//! systemd, each in its own network namespace with its own sshd (`testbed/`). Host facts, File
//! and Service (systemd) through create, observe, idempotent re-apply, drift, restart and
//! delete, and a host reached through another as its bastion.

mod common;
use common::bed::Bed;

use nimbus_planner::plan::{Action, Change, Observed, field_changes};
use nimbus_providers::hosts::{HostsProvider, kind_schema};
use nimbus_providers::ssh::SshTarget;
use nimbus_providers::{ObserveRequest, Provider};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

fn target(bed: &Bed, index: usize) -> SshTarget {
    bed.target(index)
}

fn change(kind: Kind, resource: &str, host: &str, action: Action, after: Option<Value>) -> Change {
    Change {
        address: if kind == Kind::Host {
            resource.into()
        } else {
            format!("{resource}@{host}")
        },
        resource: resource.into(),
        kind,
        host: (kind != Kind::Host).then(|| host.into()),
        provider: "ssh".into(),
        previous_provider: None,
        error: None,
        action,
        before: None,
        after,
        fields: Vec::new(),
        reason: None,
        depends_on: Vec::new(),
        protected: false,
        keep_on_removal: false,
        restart_for: Vec::new(),
        confirm: None,
    }
}

async fn apply(provider: &HostsProvider, change: &Change) {
    provider
        .apply(change, &nimbus_providers::Cancel::new())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", change.address));
}

async fn observe(provider: &HostsProvider, change: &Change, desired: &Value) -> Observed {
    let request = ObserveRequest {
        address: change.address.clone(),
        kind: change.kind,
        desired: Some(desired.clone()),
    };
    let mut observed = provider
        .observe(change.host.as_deref(), std::slice::from_ref(&request))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(observed.len(), 1, "{observed:?}");
    observed
        .pop()
        .map(|(_, o)| o)
        .unwrap_or(Observed::Unknown("not in the reply".into()))
}

/// The fields the planner would change to go from what was observed to `desired`.
fn diff(kind: Kind, desired: &Value, observed: &Observed) -> Vec<String> {
    let Observed::Present(current) = observed else {
        return vec!["absent".into()];
    };
    let (mut d, mut c) = (desired.clone(), current.clone());
    kind_schema(kind).normalize(&mut d);
    kind_schema(kind).normalize(&mut c);
    field_changes(&c, &d, &kind_schema(kind))
        .into_iter()
        .map(|f| f.path)
        .collect()
}

const UNIT: &str = "[Unit]\nDescription=nimbus test service\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n";

#[tokio::test]
async fn the_hosts_provider_contract_on_systemd_hosts() {
    let bed = Bed::up(2);
    let h1 = bed.hosts[0].name.clone();
    let mut second = target(&bed, 1);
    // h2 is reached through h1, as `via: h1` says.
    second.via = Some(h1.clone());
    let provider = HostsProvider::new([target(&bed, 0), second]);

    // --- Host: facts, read over the connection every later operation shares.
    for (host, name) in [(&h1, "h1"), (&bed.hosts[1].name, "h2")] {
        let read = change(
            Kind::Host,
            &format!("Host/{host}"),
            host,
            Action::Read,
            Some(json!({"address": "x"})),
        );
        let applied = provider
            .apply(&read, &nimbus_providers::Cancel::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let facts = &applied.outputs["facts"];
        assert_eq!(facts["hostname"], name, "{facts}");
        assert!(
            facts["os"].as_str().is_some_and(|o| o.contains("Debian")),
            "{facts}"
        );
        assert!(facts["cpus"].as_u64().is_some_and(|n| n >= 1), "{facts}");
        assert!(facts["disk"].as_u64().is_some_and(|n| n > 0), "{facts}");
        assert_eq!(
            applied.outputs["hostKey"].as_str(),
            Some(
                bed.hosts[if name == "h1" { 0 } else { 1 }]
                    .host_key
                    .as_str()
            )
        );
    }

    // --- File: created with parents, content, mode, owner and group.
    let file = json!({"path": "/srv/app/conf/app.ini", "content": "port = 8080\n", "mode": "0640", "owner": "root", "group": "daemon"});
    let create = change(
        Kind::File,
        "File/app-ini",
        &h1,
        Action::Create,
        Some(file.clone()),
    );
    assert_eq!(observe(&provider, &create, &file).await, Observed::Absent);
    apply(&provider, &create).await;
    assert_eq!(
        bed.ssh_ok(
            &h1,
            "stat -c '%a %U %G' /srv/app/conf/app.ini; cat /srv/app/conf/app.ini"
        ),
        "640 root daemon\nport = 8080\n"
    );
    assert!(diff(Kind::File, &file, &observe(&provider, &create, &file).await).is_empty());
    // A hand edit shows as drift, and applying again corrects it.
    bed.ssh_ok(
        &h1,
        "echo 'port = 9' > /srv/app/conf/app.ini; chmod 0666 /srv/app/conf/app.ini",
    );
    assert_eq!(
        diff(Kind::File, &file, &observe(&provider, &create, &file).await),
        ["content.sha256", "mode"]
    );
    apply(&provider, &create).await;
    assert!(diff(Kind::File, &file, &observe(&provider, &create, &file).await).is_empty());
    // The atomic write leaves no temporary file behind.
    assert_eq!(bed.ssh_ok(&h1, "ls -A /srv/app/conf"), "app.ini\n");
    // Deleted.
    let mut delete = change(Kind::File, "File/app-ini", &h1, Action::Delete, None);
    delete.before = Some(file.clone());
    apply(&provider, &delete).await;
    assert_eq!(observe(&provider, &create, &file).await, Observed::Absent);

    // --- Writes under way together go to the host as one batch; a failure in it is that
    // file's alone. /proc/sys cannot take a new file; the others land.
    let batch: Vec<Change> = ["/srv/batch/a", "/proc/sys/nimbus/b", "/srv/batch/c"]
        .iter()
        .enumerate()
        .map(|(i, path)| {
            change(
                Kind::File,
                &format!("File/batch-{i}"),
                &h1,
                Action::Create,
                Some(json!({"path": path, "content": format!("{i}\n"), "owner": "daemon"})),
            )
        })
        .collect();
    let commands = provider.commands_run();
    let cancel = nimbus_providers::Cancel::new();
    let (a, b, c) = tokio::join!(
        provider.apply(&batch[0], &cancel),
        provider.apply(&batch[1], &cancel),
        provider.apply(&batch[2], &cancel)
    );
    assert_eq!(
        provider.commands_run(),
        commands + 1,
        "one command wrote all three"
    );
    assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
    let error = b.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("File/batch-1@h1") && error.contains("/proc/sys/nimbus"),
        "{error}"
    );
    assert_eq!(
        bed.ssh_ok(
            &h1,
            "cat /srv/batch/a /srv/batch/c; stat -c '%U %a' /srv/batch/a; ls -A /srv/batch | wc -l"
        ),
        "0\n2\ndaemon 644\n2\n"
    );

    // --- Service: unit written, daemon reloaded, enabled and running.
    let service = json!({"unit": UNIT, "enabled": true, "state": "running"});
    let create = change(
        Kind::Service,
        "Service/nimbus-test",
        &h1,
        Action::Create,
        Some(service.clone()),
    );
    assert_eq!(
        observe(&provider, &create, &service).await,
        Observed::Absent
    );
    apply(&provider, &create).await;
    assert_eq!(
        bed.ssh_ok(
            &h1,
            "systemctl is-active nimbus-test; systemctl is-enabled nimbus-test; cat /etc/systemd/system/nimbus-test.service"
        ),
        format!("active\nenabled\n{UNIT}")
    );
    assert!(
        diff(
            Kind::Service,
            &service,
            &observe(&provider, &create, &service).await
        )
        .is_empty()
    );
    let invocation =
        |bed: &Bed| bed.ssh_ok(&h1, "systemctl show -p InvocationID --value nimbus-test");
    let first = invocation(&bed);

    // Applying the same spec again changes nothing: the service is not restarted.
    apply(&provider, &create).await;
    assert_eq!(invocation(&bed), first);

    // A File it restarts on changed: restarted.
    let mut restart = create.clone();
    restart.action = Action::Update;
    restart.restart_for = vec![format!("File/app-ini@{h1}")];
    apply(&provider, &restart).await;
    let second = invocation(&bed);
    assert_ne!(second, first, "restartOn did not restart the service");

    // A changed unit is reloaded and the service restarted on it.
    let changed = json!({"unit": UNIT.replace("sleep infinity", "sleep 86400"), "enabled": true, "state": "running"});
    assert_eq!(
        diff(
            Kind::Service,
            &changed,
            &observe(&provider, &create, &changed).await
        ),
        ["unit.sha256"]
    );
    let update = change(
        Kind::Service,
        "Service/nimbus-test",
        &h1,
        Action::Update,
        Some(changed.clone()),
    );
    apply(&provider, &update).await;
    assert_eq!(
        bed.ssh_ok(
            &h1,
            "systemctl show -p NeedDaemonReload --value nimbus-test; pgrep -f 'sleep 86400' >/dev/null && echo running"
        ),
        "no\nrunning\n"
    );
    assert_ne!(invocation(&bed), second);

    // Stopped by hand: drift, corrected.
    bed.ssh_ok(&h1, "systemctl stop nimbus-test");
    assert_eq!(
        diff(
            Kind::Service,
            &changed,
            &observe(&provider, &update, &changed).await
        ),
        ["state"]
    );
    apply(&provider, &update).await;
    assert_eq!(
        bed.ssh_ok(&h1, "systemctl is-active nimbus-test"),
        "active\n"
    );

    // Stopped and disabled, as declared.
    let stopped = json!({"unit": changed["unit"], "enabled": false, "state": "stopped"});
    let stop = change(
        Kind::Service,
        "Service/nimbus-test",
        &h1,
        Action::Update,
        Some(stopped.clone()),
    );
    apply(&provider, &stop).await;
    let states = bed.ssh(
        &h1,
        "systemctl is-active nimbus-test; systemctl is-enabled nimbus-test",
    );
    assert_eq!(
        String::from_utf8_lossy(&states.stdout),
        "inactive\ndisabled\n"
    );
    assert!(
        diff(
            Kind::Service,
            &stopped,
            &observe(&provider, &stop, &stopped).await
        )
        .is_empty()
    );

    // A service that cannot start is an error that says so.
    let broken = json!({"unit": UNIT.replace("/bin/sleep infinity", "/nonexistent/binary"), "enabled": false, "state": "running"});
    let failing = change(
        Kind::Service,
        "Service/nimbus-broken",
        &h1,
        Action::Create,
        Some(broken),
    );
    let error = provider
        .apply(&failing, &nimbus_providers::Cancel::new())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("not running"), "{error}");

    // Deleted: stopped, disabled, the unit file removed, systemd reloaded.
    for name in ["nimbus-test", "nimbus-broken"] {
        let mut delete = change(
            Kind::Service,
            &format!("Service/{name}"),
            &h1,
            Action::Delete,
            None,
        );
        delete.before = Some(json!({"unit": {"sha256": "x"}}));
        apply(&provider, &delete).await;
    }
    assert_eq!(
        observe(&provider, &create, &service).await,
        Observed::Absent
    );
    assert_eq!(
        bed.ssh_ok(
            &h1,
            "ls /etc/systemd/system/nimbus-* 2>/dev/null | wc -l; systemctl show -p LoadState --value nimbus-test"
        ),
        "0\nnot-found\n"
    );

    // A service nimbus did not write (no `unit`) is managed as it is: stopped and started.
    let existing = json!({"enabled": true, "state": "running"});
    let cron = change(
        Kind::Service,
        "Service/cron",
        &h1,
        Action::Update,
        Some(existing.clone()),
    );
    let observed = observe(&provider, &cron, &existing).await;
    // Debian's minimal image has no cron: an absent unit is absent.
    assert_eq!(observed, Observed::Absent);
    let ssh_unit = change(
        Kind::Service,
        "Service/ssh",
        &h1,
        Action::Update,
        Some(existing.clone()),
    );
    assert!(
        diff(
            Kind::Service,
            &existing,
            &observe(&provider, &ssh_unit, &existing).await
        )
        .is_empty()
    );
}
