//! The agent put on a real host: a test-bed host (Debian booting systemd, its own sshd,
//! `testbed/`) gets the built `nimbus` binary over its SSH connection into a versioned path
//! checked by sha256, runs it as a systemd unit, and answers through a forwarded socket (no
//! port opened): hello, then the host's own facts. A second `ensure` copies nothing; an agent
//! of another build is stopped.

use crate::sshd;
use sshd::bed::Bed;

use std::path::PathBuf;
use std::sync::Arc;

use nimbus_planner::plan::Observed;
use nimbus_providers::ObserveRequest;
use nimbus_providers::agent::Installer;
use nimbus_providers::protocol::{Call, Observations, ObserveParams};
use nimbus_providers::ssh::Pool;
use nimbus_schemas::Kind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_is_installed_over_ssh_and_answers_through_the_forwarded_socket() {
    let bed = Bed::up(1);
    let host = bed.hosts[0].name.clone();
    // An agent of another build, already running: it must go.
    bed.ssh_ok(
        &host,
        "systemd-run --quiet --unit=nimbus-agent-0.0.0-old.service sleep infinity",
    );
    let pool = Arc::new(Pool::new([bed.target(0)]));
    let session = pool.session(&host).await.unwrap_or_else(|e| panic!("{e}"));
    let installer = Installer::of(PathBuf::from(env!("CARGO_BIN_EXE_nimbus")))
        .unwrap_or_else(|e| panic!("{e}"));

    let copied = installer
        .ensure(&session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(copied, "a fresh host gets the binary");
    // In its versioned path, with the digest it was sent with, root's only.
    let listed = bed.ssh_ok(
        &host,
        &format!(
            "sha256sum {path} | cut -c1-16; stat -c %a {path}",
            path = installer.remote_path()
        ),
    );
    assert!(
        installer.remote_path().contains(&installer.build()),
        "{}",
        installer.remote_path()
    );
    assert_eq!(
        listed.lines().next().unwrap_or_default(),
        &installer.build()[installer.build().len() - 16..]
    );
    assert_eq!(listed.lines().nth(1), Some("700"));
    assert_eq!(
        bed.ssh_ok(
            &host,
            "systemctl is-active nimbus-agent-0.0.0-old.service || true"
        )
        .trim(),
        "inactive",
        "the other build's agent is stopped"
    );
    // It listens on no network port: no TCP or UDP socket of a nimbus process.
    let listening = bed.ssh_ok(
        &host,
        "command -v ss >/dev/null && ss -Hlntup > /tmp/listening && { grep -c nimbus /tmp/listening || true; }",
    );
    assert_eq!(listening.trim(), "0", "the agent listens on a port");

    // Through the forwarded socket: the host's own facts.
    let mut connection = installer
        .connect(&session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let observed: Observations = connection
        .call(Call::Observe(ObserveParams {
            target: Some(host.clone()),
            batch: vec![ObserveRequest {
                address: format!("Host/{host}"),
                kind: Kind::Host,
                desired: None,
            }],
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, seen) = observed
        .observations
        .into_iter()
        .next()
        .map(|o| o.into_observed())
        .unwrap_or_else(|| panic!("no observation"));
    let Observed::Present(spec) = seen else {
        panic!("{seen:?}")
    };
    assert_eq!(spec["facts"]["hostname"], host.as_str(), "{spec}");
    assert!(
        spec["load"]["memoryAvailable"].as_u64().unwrap_or(0) > 0,
        "{spec}"
    );

    // Again: nothing copied, the same agent answers.
    let again = installer
        .ensure(&session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!again, "copied a second time");
}
