//! What the stand-in checks and reads of a request without its store: paths, label selectors, merge
//! patches, field managers, an object's validation (quantities, names), and the Status of a
//! failure.

use crate::ssa::{FieldSet, Managed};
use http_body_util::Full;
use hyper::Response;
use hyper::StatusCode;
use hyper::body::Bytes;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use crate::catalogue::*;

/// A failed request: its HTTP status, reason and message, as a `Status` object.
pub(crate) struct Failure {
    pub(crate) code: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) causes: Vec<Value>,
}

pub(crate) fn failure(
    code: StatusCode,
    reason: &'static str,
    message: impl Into<String>,
) -> Failure {
    Failure {
        code,
        reason,
        message: message.into(),
        causes: Vec::new(),
    }
}

pub(crate) fn not_found(resource: &Resource, name: &str) -> Failure {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "{}.{} \"{name}\" not found",
            resource.plural, resource.group
        )
        .replace(". \"", " \""),
    )
}

/// What a request is about, from its path.
pub(crate) struct Target {
    pub(crate) resource: &'static Resource,
    pub(crate) namespace: String,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

pub(crate) fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let find = |plural: &str| {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    };
    let target = |resource, namespace: &str, name: Option<&&str>, sub: Option<&&str>| {
        Some(Target {
            resource,
            namespace: namespace.to_owned(),
            name: name.map(|n| (*n).to_owned()),
            subresource: sub.map(|s| (*s).to_owned()),
        })
    };
    match rest {
        ["namespaces", namespace, plural, more @ ..]
            if find(plural).is_some_and(|r| r.namespaced) =>
        {
            target(find(plural)?, namespace, more.first(), more.get(1))
        }
        [plural, more @ ..] => {
            let resource = find(plural)?;
            target(resource, "", more.first(), more.get(1))
        }
        _ => None,
    }
}

/// `a=b,c!=d,e,!f,g in (x,y),h notin (z)` against `labels`.
pub fn selects(selector: &str, labels: &Map<String, Value>) -> bool {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    let label = |key: &str| labels.get(key.trim()).and_then(Value::as_str);
    terms
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .all(|term| {
            let set = |list: &str| -> Vec<String> {
                list.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .collect()
            };
            if let Some((key, list)) = term.split_once(" notin ") {
                !label(key).is_some_and(|v| set(list).iter().any(|x| x == v))
            } else if let Some((key, list)) = term.split_once(" in ") {
                label(key).is_some_and(|v| set(list).iter().any(|x| x == v))
            } else if let Some((key, value)) = term.split_once("!=") {
                label(key) != Some(value.trim())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                label(key) == Some(value.trim())
            } else if let Some(key) = term.strip_prefix('!') {
                label(key).is_none()
            } else {
                label(term).is_some()
            }
        })
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(changes) => {
            let mut out = match target {
                Value::Object(map) => map.clone(),
                _ => Map::new(),
            };
            for (key, value) in changes {
                if value.is_null() {
                    out.remove(key);
                } else {
                    let merged = merge_patch(out.get(key).unwrap_or(&Value::Null), value);
                    out.insert(key.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

pub(crate) fn managed_of(object: &Value) -> Vec<Managed> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| Managed {
                    manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
                    fields: FieldSet::from_json(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn managed_json(managed: &[Managed], api_version: &str) -> Value {
    Value::Array(
        managed
            .iter()
            .map(|m| {
                json!({
                    "manager": m.manager,
                    "operation": m.operation,
                    "apiVersion": api_version,
                    "time": NOW,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": m.fields.to_json(),
                })
            })
            .collect(),
    )
}

/// Every timestamp the server writes (tests compare objects, not clocks).
pub(crate) const NOW: &str = "2026-01-01T00:00:00Z";

/// An object without the fields the server keeps: what managers' fields are computed on.
pub(crate) fn content(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
        ] {
            meta.remove(key);
        }
    }
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
    }
    out
}

/// What the API server's validation would refuse of the served kinds, in part: a container
/// without an image, a quantity that is not one, a Deployment whose selector does not match
/// its pods' labels or differs from the one it was made with (`previous`: immutable).
pub(crate) fn validate(
    resource: &Resource,
    name: &str,
    object: &Value,
    previous: Option<&Value>,
) -> Result<(), Failure> {
    let invalid = |field: String, why: &str| {
        failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} \"{name}\" is invalid: {field}: {why}", resource.kind),
        )
    };
    let is_quantity = |text: &str| {
        let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        !digits.is_empty()
            && digits.parse::<f64>().is_ok()
            && [
                "", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti", "n", "u",
            ]
            .contains(&&text[digits.len()..])
    };
    let quantity_text = |v: &Value| match v {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    if resource.kind == "Deployment" {
        let selector = &object["spec"]["selector"];
        if let Some(old) = previous
            && old["spec"]["selector"] != *selector
        {
            return Err(invalid(
                "spec.selector".into(),
                &format!("Invalid value: {selector}: field is immutable"),
            ));
        }
        let labels = &object["spec"]["template"]["metadata"]["labels"];
        let selected = selector["matchLabels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if selected.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return Err(invalid(
                "spec.template.metadata.labels".into(),
                &format!("Invalid value: {labels}: `selector` does not match template `labels`"),
            ));
        }
        let containers = object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, container) in containers.iter().enumerate() {
            let image = container["image"].as_str().unwrap_or_default();
            if image.is_empty() {
                return Err(invalid(
                    format!("spec.template.spec.containers[{i}].image"),
                    "Required value",
                ));
            }
            if image.trim() != image {
                return Err(invalid(
                    format!("spec.template.spec.containers[{i}].image"),
                    &format!(
                        "Invalid value: \"{image}\": must not have leading or trailing whitespace"
                    ),
                ));
            }
            for kind in ["requests", "limits"] {
                if let Some(map) = container["resources"][kind].as_object() {
                    for (key, value) in map {
                        if !is_quantity(&quantity_text(value)) {
                            return Err(invalid(
                                format!(
                                    "spec.template.spec.containers[{i}].resources.{kind}[{key}]"
                                ),
                                "Invalid value: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                            ));
                        }
                    }
                }
            }
        }
    }
    if resource.kind == "ResourceQuota"
        && let Some(hard) = object["spec"]["hard"].as_object()
    {
        for (key, value) in hard {
            if !is_quantity(&quantity_text(value)) {
                return Err(invalid(
                    format!("spec.hard[{key}]"),
                    "Invalid value: must be a quantity",
                ));
            }
        }
    }
    Ok(())
}

/// A Kubernetes quantity as a number (cpu in cores, memory in bytes).
pub fn quantity(text: &str) -> f64 {
    let text = text.trim().trim_matches('"');
    let suffixes: [(&str, f64); 11] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("n", 1e-9),
        ("u", 1e-6),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().unwrap_or(0.0) * factor;
        }
    }
    text.parse().unwrap_or(0.0)
}

pub(crate) fn fmt_quantity(value: f64) -> String {
    if value >= 1024.0 * 1024.0 && (value / (1024.0 * 1024.0)).fract() == 0.0 {
        format!("{}Mi", value / (1024.0 * 1024.0))
    } else if value.fract() != 0.0 {
        format!("{}m", (value * 1000.0).round())
    } else {
        format!("{value}")
    }
}

/// The query's parameters.
pub(crate) fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn status_of(failure: &Failure) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": failure.message, "reason": failure.reason, "code": failure.code.as_u16(),
        "details": {"causes": failure.causes},
    })
}

/// Parses a request body: JSON, or YAML (an apply patch may be either).
pub(crate) fn parse_body(bytes: &[u8]) -> Result<Value, Failure> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).or_else(|_| {
        let text = String::from_utf8_lossy(bytes);
        serde_saphyr::from_str::<Value>(&text).map_err(|e| {
            failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body is neither JSON nor YAML: {e}"),
            )
        })
    })
}

pub(crate) fn respond(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
