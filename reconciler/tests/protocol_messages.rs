//! The protocol's JSON Schemas (docs/protocol/*.schema.json) against real messages: every
//! request nimbus sends, and every reply of a plugin written in another language (the shipped
//! example, examples/plugins/jsonstore, Python) to a whole conversation.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use nimbus_planner::plan::{Action, Change};
use nimbus_providers::ObserveRequest;
use nimbus_providers::protocol::{
    ApplyParams, Call, CancelParams, Configure, Hello, ObserveParams, Request,
};
use nimbus_schemas::Kind;
use serde_json::{Value, json};

fn validator(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/protocol")
        .join(format!("{name}.schema.json"));
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn valid(name: &str, message: &Value) {
    let errors: Vec<String> = validator(name)
        .iter_errors(message)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {message}: {errors:?}");
}

#[test]
fn requests_and_a_python_plugin_s_replies_match_the_schemas() {
    let mut change = Change::of(
        Kind::Volume,
        "Volume/acme/data",
        None,
        Action::Create,
        None,
        Some(&json!({"type": "btrfs", "size": "1Gi"})),
    );
    change.provider = "jsonstore".into();
    let calls = vec![
        (
            "hello",
            Call::Hello(Hello {
                protocol_version: 1,
                software: "test".into(),
            }),
        ),
        (
            "configure",
            Call::Configure(Configure {
                name: "jsonstore".into(),
                settings: json!({"root": "store"}),
                repository: ".".into(),
            }),
        ),
        ("describe", Call::Describe),
        (
            "observe",
            Call::Observe(ObserveParams {
                target: None,
                batch: vec![ObserveRequest {
                    address: "Volume/acme/data".into(),
                    kind: Kind::Volume,
                    desired: change.after.clone(),
                }],
            }),
        ),
        ("apply", Call::Apply(Box::new(ApplyParams { change }))),
        ("cancel", Call::Cancel(CancelParams { request: 5 })),
    ];
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut plugin = Command::new("python3")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/plugins/jsonstore/jsonstore.py"),
        )
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let mut stdin = plugin.stdin.take().unwrap_or_else(|| panic!("stdin"));
    let mut replies = BufReader::new(plugin.stdout.take().unwrap_or_else(|| panic!("stdout")));
    for (id, (method, call)) in calls.into_iter().enumerate() {
        let request = serde_json::to_value(Request {
            id: id as u64 + 1,
            call,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        valid("request", &request);
        if let Some(params) = request.get("params") {
            valid(&format!("{method}.params"), params);
        }
        writeln!(stdin, "{request}").unwrap_or_else(|e| panic!("{e}"));
        stdin.flush().unwrap_or_else(|e| panic!("{e}"));
        let mut line = String::new();
        replies
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{e}"));
        let reply: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        valid("response", &reply);
        assert_eq!(reply["id"], id as u64 + 1, "{reply}");
        valid(&format!("{method}.result"), &reply["result"]);
    }
    // An error reply, and a malformed request's answer.
    writeln!(stdin, "not json").unwrap_or_else(|e| panic!("{e}"));
    let mut line = String::new();
    replies
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    let reply: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}"));
    valid("response", &reply);
    valid("error", &reply["error"]);
    drop(stdin);
    let _ = plugin.wait();
}
