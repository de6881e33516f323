//! The provider protocol: versioned, typed messages for hello (the version handshake),
//! configure, describe, observe and apply. Out-of-process providers (a plugin named in the
//! Repository, over its stdin and stdout; the agent, over a socket) speak it as JSON, one
//! message per line; the types are the ones in-process providers use, so that one type set
//! exists. docs/protocol.md is its reference.

use nimbus_planner::plan::{Change, Observed};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Applied, ObserveRequest, ProviderError};

/// The protocol's version. A peer that answers `hello` with another one is not spoken to.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request: `{"id": 1, "method": "observe", "params": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Request {
    pub id: u64,
    #[serde(flatten)]
    pub call: Call,
}

/// What nimbus asks, with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Call {
    /// First, always: the versions each side speaks.
    Hello(Hello),
    /// The provider's settings from the Repository, and where the repository is.
    Configure(Configure),
    /// The kinds it serves and how they compare.
    Describe,
    /// One batch of instances on one target.
    Observe(ObserveParams),
    /// One change.
    Apply(Box<ApplyParams>),
    /// The change under way with this request id should stop between steps.
    Cancel(CancelParams),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Hello {
    pub protocol_version: u32,
    /// The version of the program on this side (nimbus's, or the plugin's).
    #[serde(default)]
    pub software: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Configure {
    /// The provider's name in the Repository.
    pub name: String,
    /// The `settings` the Repository gives it, as written.
    #[serde(default)]
    pub settings: Value,
    /// The repository's root directory.
    #[serde(default)]
    pub repository: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObserveParams {
    pub target: Option<String>,
    pub batch: Vec<ObserveRequest>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApplyParams {
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CancelParams {
    pub request: u64,
}

/// One instance as observed: `{"address": ..., "state": "present", "spec": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Observation {
    pub address: String,
    pub state: ObservedState,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub spec: Value,
    /// With `unknown`: why it could not be observed (shown in the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObservedState {
    Present,
    Absent,
    Unknown,
}

impl Observation {
    pub fn into_observed(self) -> (String, Observed) {
        let observed = match self.state {
            ObservedState::Present => Observed::Present(self.spec),
            ObservedState::Absent => Observed::Absent,
            ObservedState::Unknown => Observed::Unknown(
                self.reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "its provider could not observe it".to_owned()),
            ),
        };
        (self.address, observed)
    }

    pub fn from_observed(address: String, observed: Observed) -> Self {
        let (state, spec, reason) = match observed {
            Observed::Present(spec) => (ObservedState::Present, spec, None),
            Observed::Absent => (ObservedState::Absent, Value::Null, None),
            Observed::Unknown(reason) => (ObservedState::Unknown, Value::Null, Some(reason)),
        };
        Observation {
            address,
            state,
            spec,
            reason,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Observations {
    pub observations: Vec<Observation>,
}

/// A reply: `{"id": 1, "result": ...}` or `{"id": 1, "error": {"kind": "failed", "message": ...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Response {
    pub id: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Result(Value),
    Error(ProviderError),
}

/// The result types, by call: what `Outcome::Result` holds.
pub mod results {
    pub use super::{Hello, Observations};
    pub use crate::Applied;
    use nimbus_planner::plan::ProviderSchema;

    /// `describe`'s answer: the kinds and how they compare, and how many requests the provider
    /// takes at once (absent: one at a time).
    #[derive(
        Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
    )]
    pub struct Described {
        #[serde(flatten)]
        pub schema: ProviderSchema,
        /// Requests it answers concurrently, each by its id, in any order; nimbus sends up to
        /// this many at once (and never more than `--parallelism` changes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub concurrency: Option<u32>,
    }

    /// `configure` and `cancel` answer `{}`.
    #[derive(
        Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
    )]
    pub struct Empty {}
}

/// The JSON Schema of every message of the protocol, by file name (`request`, `response`,
/// then each method's `params` and `result`): generated from these types, checked in under
/// docs/protocol/ and compared with them by the tests, so the documents cannot drift.
pub fn message_schemas() -> Vec<(&'static str, Value)> {
    fn schema<T: schemars::JsonSchema>() -> Value {
        serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
    }
    vec![
        ("request", schema::<Request>()),
        ("response", schema::<Response>()),
        ("error", schema::<ProviderError>()),
        ("hello.params", schema::<Hello>()),
        ("hello.result", schema::<Hello>()),
        ("configure.params", schema::<Configure>()),
        ("configure.result", schema::<results::Empty>()),
        ("describe.result", schema::<results::Described>()),
        ("observe.params", schema::<ObserveParams>()),
        ("observe.result", schema::<Observations>()),
        ("apply.params", schema::<ApplyParams>()),
        ("apply.result", schema::<Applied>()),
        ("cancel.params", schema::<CancelParams>()),
        ("cancel.result", schema::<results::Empty>()),
    ]
}

/// Checks a peer's hello: the same protocol version, or a sentence saying what differs.
pub fn check_hello(peer: &str, hello: &Hello) -> Result<(), ProviderError> {
    if hello.protocol_version == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(ProviderError::Failed(format!(
        "{peer} speaks protocol version {} and nimbus speaks version {PROTOCOL_VERSION}; \
         use a {peer} built for this nimbus",
        hello.protocol_version
    )))
}

/// Serves one request with an in-process provider: the agent and the tests answer requests
/// with the same code that a plugin's author would write against.
pub async fn serve(provider: &dyn crate::Provider, call: Call, cancel: &crate::Cancel) -> Outcome {
    let to_value = |value: Result<Value, serde_json::Error>| match value {
        Ok(value) => Outcome::Result(value),
        Err(e) => Outcome::Error(ProviderError::Bug(format!("cannot encode a reply: {e}"))),
    };
    match call {
        Call::Hello(hello) => {
            if let Err(e) = check_hello("nimbus", &hello) {
                return Outcome::Error(e);
            }
            to_value(serde_json::to_value(Hello {
                protocol_version: PROTOCOL_VERSION,
                software: env!("CARGO_PKG_VERSION").to_owned(),
            }))
        }
        Call::Configure(_) | Call::Cancel(_) => to_value(serde_json::to_value(results::Empty {})),
        Call::Describe => to_value(serde_json::to_value(provider.describe())),
        Call::Observe(params) => {
            match provider
                .observe(params.target.as_deref(), &params.batch)
                .await
            {
                Ok(found) => to_value(serde_json::to_value(Observations {
                    observations: found
                        .into_iter()
                        .map(|(a, o)| Observation::from_observed(a, o))
                        .collect(),
                })),
                Err(e) => Outcome::Error(e),
            }
        }
        Call::Apply(params) => match provider.apply(&params.change, cancel).await {
            Ok(applied) => to_value(serde_json::to_value::<Applied>(applied)),
            Err(e) => Outcome::Error(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_shape() {
        let request = Request {
            id: 7,
            call: Call::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                software: "0.1.0".into(),
            }),
        };
        let text = serde_json::to_string(&request).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"id":7,"method":"hello","params":{"protocol_version":1,"software":"0.1.0"}}"#
        );
        let describe: Request =
            serde_json::from_str(r#"{"id":2,"method":"describe"}"#).unwrap_or(request);
        assert_eq!(describe.call, Call::Describe);
        let error: Response = serde_json::from_str(
            r#"{"id":3,"error":{"kind":"transient","message":"connection refused"}}"#,
        )
        .unwrap_or(Response {
            id: 0,
            outcome: Outcome::Result(Value::Null),
        });
        assert_eq!(
            error.outcome,
            Outcome::Error(ProviderError::Transient("connection refused".into()))
        );
        let observed: Observation = serde_json::from_str(
            r#"{"address":"Volume/acme/data","state":"present","spec":{"size":"1Gi"}}"#,
        )
        .unwrap_or(Observation {
            address: String::new(),
            state: ObservedState::Unknown,
            spec: Value::Null,
            reason: None,
        });
        assert_eq!(
            observed.into_observed(),
            (
                "Volume/acme/data".to_owned(),
                Observed::Present(serde_json::json!({"size": "1Gi"}))
            )
        );
    }

    #[test]
    fn another_version_is_refused_with_a_sentence() {
        let refused = check_hello(
            "plugin kv",
            &Hello {
                protocol_version: 99,
                software: String::new(),
            },
        );
        assert!(
            matches!(&refused, Err(ProviderError::Failed(m)) if m.contains("version 99") && m.contains("version 1")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_failure_can_name_its_field_and_errors_without_one_read_as_before() {
        let reply = |text: &str| serde_json::from_str::<Response>(text).map(|r| r.outcome);
        assert_eq!(
            reply(r#"{"id": 1, "error": {"kind": "failed", "message": "Workload/a/b: no such image", "field": "image"}}"#).ok(),
            Some(Outcome::Error(ProviderError::field(
                "image",
                "Workload/a/b: no such image"
            )))
        );
        // Version 1 as it was: no field.
        assert_eq!(
            reply(r#"{"id": 1, "error": {"kind": "failed", "message": "boom"}}"#).ok(),
            Some(Outcome::Error(ProviderError::Failed("boom".into())))
        );
        // A field means nothing with the other kinds, and an empty one is none.
        assert_eq!(
            reply(r#"{"id": 1, "error": {"kind": "transient", "message": "refused", "field": "image"}}"#).ok(),
            Some(Outcome::Error(ProviderError::Transient("refused".into())))
        );
        assert_eq!(
            reply(r#"{"id": 1, "error": {"kind": "failed", "message": "boom", "field": " "}}"#)
                .ok(),
            Some(Outcome::Error(ProviderError::Failed("boom".into())))
        );
        let written = serde_json::to_value(Response {
            id: 2,
            outcome: Outcome::Error(ProviderError::field("disk.image", "VM/v: not found")),
        })
        .unwrap();
        assert_eq!(
            written,
            serde_json::json!({"id": 2, "error": {"kind": "failed", "message": "VM/v: not found", "field": "disk.image"}})
        );
        let plain = serde_json::to_value(ProviderError::Bug("x".into())).unwrap();
        assert_eq!(plain, serde_json::json!({"kind": "bug", "message": "x"}));
    }
}
