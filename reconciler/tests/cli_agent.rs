//! `nimbus agent` on this machine: the real binary listening on a unix socket, spoken to over
//! that socket with the protocol's JSON lines, as the controller will speak to it through a
//! forwarded socket. Hello (the version), describe, the host's facts and load, garbage refused
//! without closing the connection, the socket private, a second agent on the same socket
//! refused, and the socket removed when the agent stops.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ask(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, message: &str) -> Value {
    stream
        .write_all(format!("{message}\n").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn the_agent_serves_the_protocol_on_its_socket() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let socket = dir.path().join("run/agent.sock");
    let agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["agent", "--socket"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        if let Ok(stream) = UnixStream::connect(&socket) {
            break stream;
        }
        assert!(Instant::now() < deadline, "the agent does not listen");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mode = std::fs::metadata(&socket)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is root's only");
    let mut reader = BufReader::new(stream.try_clone().unwrap_or_else(|e| panic!("{e}")));

    let hello = ask(
        &mut stream,
        &mut reader,
        r#"{"id":1,"method":"hello","params":{"protocol_version":1,"software":"test"}}"#,
    );
    assert_eq!(hello["id"], 1);
    assert_eq!(hello["result"]["protocol_version"], 1, "{hello}");
    assert_eq!(hello["result"]["software"], env!("CARGO_PKG_VERSION"));

    // Another version is refused with a sentence.
    let other = ask(
        &mut stream,
        &mut reader,
        r#"{"id":2,"method":"hello","params":{"protocol_version":99}}"#,
    );
    assert!(
        other["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("version 99")),
        "{other}"
    );

    let described = ask(&mut stream, &mut reader, r#"{"id":3,"method":"describe"}"#);
    assert_eq!(described["result"]["provider"], "agent", "{described}");
    assert_eq!(
        described["result"]["kinds"][0]["kind"], "Host",
        "{described}"
    );

    // Garbage: refused, and the connection still answers.
    let garbage = ask(&mut stream, &mut reader, "rm -rf /");
    assert!(
        garbage["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a request")),
        "{garbage}"
    );

    let observed = ask(
        &mut stream,
        &mut reader,
        &json!({"id": 4, "method": "observe", "params": {"target": null, "batch": [
            {"address": "Host/here", "kind": "Host", "desired": null}
        ]}})
        .to_string(),
    );
    let seen = &observed["result"]["observations"][0];
    assert_eq!(seen["state"], "present", "{observed}");
    // The same facts this machine's kernel gives.
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    assert_eq!(seen["spec"]["facts"]["cpus"], cpus, "{observed}");
    assert!(seen["spec"]["facts"]["memory"].as_u64().unwrap_or(0) > 0);
    assert!(seen["spec"]["load"]["load1"].is_number(), "{observed}");
    assert!(
        seen["spec"]["load"]["memoryAvailable"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );

    // What it does not serve: refused with a sentence.
    let network = ask(
        &mut stream,
        &mut reader,
        &json!({"id": 5, "method": "observe", "params": {"target": null, "batch": [
            {"address": "Workload/acme/api", "kind": "Workload", "desired": {}}
        ]}})
        .to_string(),
    );
    assert!(
        network["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not serve Workload")),
        "{network}"
    );

    // A second agent on the same socket is refused; the first keeps serving.
    let second = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["agent", "--socket"])
        .arg(&socket)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.status.code(), Some(1));
    assert!(
        common::text(&second.stderr).contains("already listens"),
        "{}",
        common::text(&second.stderr)
    );
    let again = ask(&mut stream, &mut reader, r#"{"id":6,"method":"describe"}"#);
    assert_eq!(again["id"], 6);

    // Interrupted, it stops and takes its socket away.
    let mut agent = agent;
    let stopped = Command::new("kill")
        .args(["-INT", &agent.0.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.0.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!socket.exists(), "the socket is left behind");
}
