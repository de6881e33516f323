//! The diff step: two specs compared field by field, secret fields folded into one sensitive
//! change, digests shown with their texts.

use crate::record::Record;
use crate::rules::KindSchema;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

use super::types::*;

/// Field changes under a secret's location are one sensitive change of that location:
/// `~ content: (sensitive value changed)`.
pub(super) fn fold_secret_fields(
    fields: Vec<FieldChange>,
    locations: &[String],
) -> Vec<FieldChange> {
    if locations.is_empty() {
        return fields;
    }
    let mut out: Vec<FieldChange> = Vec::new();
    for mut field in fields {
        if let Some(location) = locations.iter().find(|l| {
            field.path == **l
                || field.path.starts_with(&format!("{l}."))
                || field.path.starts_with(&format!("{l}["))
        }) {
            if out.iter().any(|f| f.path == *location) {
                continue;
            }
            field.path = location.clone();
            field.sensitive = true;
            field.before = field.before.map(|_| Value::String(SENSITIVE.into()));
            field.after = field.after.map(|_| Value::String(SENSITIVE.into()));
        }
        out.push(field);
    }
    out
}

/// Compares two JSON values field by field, marking what the kind's schema says is sensitive
/// or forces a replacement.
pub fn field_changes(before: &Value, after: &Value, schema: &KindSchema) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    for change in &mut out {
        change.sensitive = schema.is_sensitive(&change.path);
        change.forces_replacement = schema.forces_replacement(&change.path);
    }
    out
}

pub(super) fn walk(
    path: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(&child, a.get(key), b.get(key), out);
            }
        }
        (Some(a), Some(b)) if a == b => {}
        (None, None) => {}
        (a, b) => out.push(FieldChange {
            path: path.to_owned(),
            before: a.cloned(),
            after: b.cloned(),
            sensitive: false,
            forces_replacement: false,
        }),
    }
}

/// A text field a provider compares by digest (a File's content over SSH) changes as
/// `content.sha256: A -> B`; when the text last applied is recorded and has digest A, the
/// change is shown as that text against the desired one, line by line.
pub(super) fn texts_for_digests(
    fields: Vec<FieldChange>,
    schema: &KindSchema,
    record: Option<&Record>,
    desired: &Value,
) -> Vec<FieldChange> {
    let Some(record) = record else {
        return fields;
    };
    fields
        .into_iter()
        .map(|field| {
            let Some(name) = field.path.strip_suffix(".sha256") else {
                return field;
            };
            let (Some(Value::String(before)), Some(Value::String(after))) =
                (record.applied.get(name), desired.get(name))
            else {
                return field;
            };
            let digest: String = Sha256::digest(before.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if !schema.digest_fields.iter().any(|f| f == name)
                || field.sensitive
                || field.before.as_ref().and_then(Value::as_str) != Some(digest.as_str())
            {
                return field;
            }
            FieldChange {
                path: name.to_owned(),
                before: Some(Value::String(before.clone())),
                after: Some(Value::String(after.clone())),
                ..field
            }
        })
        .collect()
}
