//! The SSH transport against a real OpenSSH sshd on loopback, started by the test with its
//! own host key, client key and config, and stopped (by PID) when the test ends.

mod common;
use common::{keygen, start_agent, start_sshd, start_sshd_with};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nimbus_providers::ProviderError;
use nimbus_providers::ssh::SshSession;

#[tokio::test]
async fn commands_run_with_their_output_status_and_input() {
    let sshd = start_sshd();
    let session = SshSession::connect(&sshd.target())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = session
        .exec("echo out; echo err >&2; exit 3", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (out.status, out.stdout.as_slice(), out.stderr.as_slice()),
        (3, &b"out\n"[..], &b"err\n"[..])
    );
    let out = session
        .exec("wc -c", Some(&[7u8; 100_000]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100000");
}

#[tokio::test]
async fn one_connection_carries_many_channels_at_once() {
    let sshd = start_sshd();
    let session = SshSession::connect(&sshd.target())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let runs = (0..8).map(|i| {
        let session = &session;
        async move { session.exec(&format!("sleep 0.3; echo {i}"), None).await }
    });
    let outputs = futures_join(runs).await;
    for (i, out) in outputs.into_iter().enumerate() {
        let out = out.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), i.to_string());
    }
    assert!(
        started.elapsed() < Duration::from_millis(8 * 300),
        "the channels ran one after another"
    );
}

/// Runs futures concurrently on the current task and collects their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, future) in pinned.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => outputs[i] = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_naming_both_fingerprints() {
    let sshd = start_sshd();
    let other: PathBuf = sshd.dir.path().join("other_key");
    keygen(&other);
    let mut target = sshd.target();
    target.host_key = std::fs::read_to_string(other.with_extension("pub")).unwrap_or_default();
    let error = SshSession::connect(&target)
        .await
        .err()
        .unwrap_or_else(|| panic!("connected despite a wrong key"));
    let message = error.to_string();
    assert!(matches!(error, ProviderError::Failed(_)), "{error:?}");
    assert!(
        message.contains("Host/web-1: host key mismatch: expected SHA256:"),
        "{message}"
    );
    assert!(message.contains("offered SHA256:"), "{message}");
}

#[tokio::test]
async fn an_unreachable_host_is_a_transient_failure() {
    let sshd = start_sshd();
    let mut target = sshd.target();
    // Port 1 (tcpmux) has no listener here; a "free" port could be taken by a parallel test.
    target.port = 1;
    let error = SshSession::connect(&target)
        .await
        .err()
        .unwrap_or_else(|| panic!("connected to nothing"));
    assert!(error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

/// `via`: the connection to a host runs inside a channel of its bastion's connection. A
/// bastion that refuses forwarding makes the connection fail, which shows the path taken.
#[tokio::test]
async fn a_host_is_reached_through_its_bastion() {
    let target_sshd = start_sshd();
    let bastion_sshd = start_sshd();
    let mut bastion = bastion_sshd.target();
    bastion.name = "bastion".into();
    let bastion_session = SshSession::connect(&bastion)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut target = target_sshd.target();
    target.via = Some("bastion".into());
    let session = SshSession::connect_via(&target, Some(&bastion_session))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = session
        .exec("echo through", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.stdout, b"through\n");

    let closed_sshd = start_sshd_with("AllowTcpForwarding no\n");
    let mut closed = closed_sshd.target();
    closed.name = "closed".into();
    let closed_session = SshSession::connect(&closed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let error = SshSession::connect_via(&target, Some(&closed_session))
        .await
        .err()
        .unwrap_or_else(|| panic!("connected"));
    assert!(
        error
            .to_string()
            .contains("Host/closed could not open a connection"),
        "{error}"
    );
}

/// With no identity file, the keys of an ssh-agent log in (a real ssh-agent, started and
/// stopped by the test).
#[tokio::test]
async fn an_ssh_agent_logs_in() {
    let sshd = start_sshd();
    let agent = start_agent(&sshd);
    let socket = agent.socket.clone();
    let mut target = sshd.target();
    target.identity = PathBuf::new();
    target.agent = Some(socket.clone());
    let result = SshSession::connect(&target).await;
    // And without an agent, the failure says what is missing.
    target.agent = None;
    let missing = SshSession::connect(&target)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    drop(agent);
    let session = result.unwrap_or_else(|e| panic!("{e}"));
    let out = session
        .exec("echo agent", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.stdout, b"agent\n");
    assert!(
        missing.contains("no identity file and no ssh-agent"),
        "{missing}"
    );
}
