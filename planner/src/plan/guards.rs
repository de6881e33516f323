//! What keeps a plan safe: what was not observed is not planned, deletes of protected instances are
//! refused, sensitive values are redacted, and the deletion budget holds.

use crate::load::Model;
use crate::record::{Observed, Record};
use crate::rules::Rules;
use nimbus_schemas::Spec;
use serde_json::Value;

use super::types::*;

/// The change of an instance that could not be observed: nothing is done to it, it says why,
/// and it is listed in `unobserved`.
pub(super) fn not_planned(base: Change, reason: &str, unobserved: &mut Vec<Unobserved>) -> Change {
    unobserved.push(Unobserved {
        address: base.address.clone(),
        reason: reason.to_owned(),
    });
    Change {
        action: Action::NoOp,
        after: None,
        reason: Some(Why::NotObserved(reason.to_owned()).into()),
        ..base
    }
}

/// Why an instance could not be observed, when its provider was asked and could not tell.
pub(super) fn not_observed<'a>(input: &'a PlanInput<'_>, address: &str) -> Option<&'a String> {
    match input.observed.get(address) {
        Some(Observed::Unknown(reason)) => Some(reason),
        _ => None,
    }
}

/// Replaces every sensitive value in a change by `(sensitive)`, so that no plan, saved plan
/// or rendering ever holds one.
pub(super) fn redact(mut changes: Vec<Change>, rules: &Rules) -> Vec<Change> {
    for change in &mut changes {
        let sensitive = &rules.get(&change.provider, change.kind).sensitive_fields;
        if sensitive.is_empty() {
            continue;
        }
        for value in [&mut change.before, &mut change.after]
            .into_iter()
            .flatten()
        {
            for path in sensitive {
                redact_path(value, path);
            }
        }
        for field in &mut change.fields {
            if field.sensitive {
                for value in [&mut field.before, &mut field.after].into_iter().flatten() {
                    *value = Value::String(SENSITIVE.into());
                }
            }
        }
    }
    changes
}

/// `after` (a redacted spec) with each of `paths` that shows `(sensitive)` given its value
/// from `written` (the spec as the manifest has it); `None` when nothing was redacted.
pub fn unredacted(after: &Value, written: &Value, paths: &[String]) -> Option<Value> {
    let mut restored = after.clone();
    let mut any = false;
    for path in paths {
        let pointer: String = path.split('.').map(|p| format!("/{p}")).collect();
        if restored.pointer(&pointer).and_then(Value::as_str) == Some(SENSITIVE)
            && let Some(value) = written.pointer(&pointer)
            && let Some(slot) = restored.pointer_mut(&pointer)
        {
            *slot = value.clone();
            any = true;
        }
    }
    any.then_some(restored)
}

pub(super) fn redact_path(value: &mut Value, path: &str) {
    let mut current = value;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(next) = current.get_mut(part) else {
            return;
        };
        if parts.peek().is_none() {
            if !next.is_null() {
                *next = Value::String(SENSITIVE.into());
            }
            return;
        }
        current = next;
    }
}

/// A reason's first line, at most 200 characters, for a plan's one-line reasons.
pub(super) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_owned(),
    }
}

pub(super) fn delete_change(
    base: Change,
    record: &Record,
    protected: bool,
    observed: &Observed,
) -> Change {
    let before = match observed {
        Observed::Present(v) => Some(v.clone()),
        _ => Some(record.applied.clone()),
    };
    if protected {
        return Change {
            before,
            after: None,
            reason: Some(Why::ProtectedFromDelete.into()),
            ..base
        };
    }
    let reason = match observed {
        Observed::Absent => Some(Why::AlreadyGone.into()),
        _ => None,
    };
    Change {
        action: Action::Delete,
        before,
        after: None,
        reason,
        ..base
    }
}

pub(super) fn check_deletion_budget(
    model: &Model,
    input: &PlanInput<'_>,
    changes: &[Change],
) -> Result<(), PlanError> {
    if input.allow_deletes || input.destroy {
        return Ok(());
    }
    let Some(budget) = model.repository().and_then(|d| match &d.resource.spec {
        Spec::Repository(r) => r.policy.deletion_budget.clone(),
        _ => None,
    }) else {
        return Ok(());
    };
    let deletes = changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .count();
    let managed = input.records.iter().filter(|r| r.owned).count();
    let over_count = budget.max_resources.is_some_and(|n| deletes > n as usize);
    let over_percent = budget
        .max_percent
        .is_some_and(|p| managed > 0 && deletes * 100 > p as usize * managed);
    if over_count || over_percent {
        let mut parts = Vec::new();
        if let Some(n) = budget.max_resources {
            parts.push(format!("at most {n}"));
        }
        if let Some(p) = budget.max_percent {
            parts.push(format!("at most {p}%"));
        }
        return Err(PlanError::DeletionBudget {
            deletes,
            managed,
            budget: parts.join(" and "),
        });
    }
    Ok(())
}
