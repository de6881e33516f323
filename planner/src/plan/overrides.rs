//! The overrides of a compared change, in order: an instance recorded under another provider
//! is replaced across providers; one tainted by a failed apply is made again; the scheduler's
//! reason goes with a placement (and one that fits nowhere fails); a secret that cannot be
//! decrypted leaves it unplanned.

use serde_json::Value;

use super::guards::first_line;
use super::types::*;
use crate::record::Record;
use crate::scheduler::Placement;

/// Recorded under another provider: never silently planned under this one; it is replaced
/// (deleted there, created here), visibly.
pub(super) fn provider_switch(change: Change, record: Option<&Record>, provider: &str) -> Change {
    match record {
        Some(record)
            if !record.provider.is_empty()
                && record.provider != provider
                && change.action != Action::Create =>
        {
            Change {
                action: Action::Replace,
                before: change
                    .before
                    .clone()
                    .or_else(|| Some(record.applied.clone())),
                previous_provider: Some(record.provider.clone()),
                reason: Some(format!(
                    "provider changed: recorded under `{}`, now served by `{provider}`",
                    record.provider
                )),
                ..change
            }
        }
        _ => change,
    }
}

/// Made by an apply that failed: made again, whatever it shows now (also when it cannot be
/// observed: it is known not to be right). Gone: created, as planned before this.
pub(super) fn taint(
    change: Change,
    record: Option<&Record>,
    protected: bool,
    current: Option<Value>,
    desired: &Value,
) -> Change {
    match record.and_then(|r| r.tainted.as_deref()) {
        Some(why)
            if !protected
                && current.is_some()
                && matches!(change.action, Action::NoOp | Action::Update) =>
        {
            Change {
                action: Action::Replace,
                before: current,
                after: Some(desired.clone()),
                reason: Some(format!(
                    "tainted: the apply that made it failed ({}); it is made again",
                    first_line(why)
                )),
                ..change
            }
        }
        _ => change,
    }
}

/// The scheduler's reason goes with a placement that changes something; an instance that
/// fits nowhere fails with where in the repository and why (`placement::placements`).
pub(super) fn placement(change: Change, placement: Option<&Placement>) -> Change {
    match placement {
        Some(Placement::On { reason, .. }) if change.action.is_change() => Change {
            reason: Some(match &change.reason {
                Some(first) => format!("{first}; {reason}"),
                None => reason.clone(),
            }),
            ..change
        },
        Some(Placement::Nowhere { reason }) => Change {
            error: Some(reason.clone()),
            ..change
        },
        _ => change,
    }
}

/// A secret that cannot be decrypted leaves the instance unknown: it is not planned,
/// whatever the target shows, and the run fails with the reason.
pub(super) fn undecryptable(change: Change, problem: Option<&str>) -> Change {
    let Some(problem) = problem else {
        return change;
    };
    let help = if problem.contains("--identity") {
        ""
    } else {
        "; give the identity that decrypts it with --identity FILE, \
         NIMBUS_AGE_IDENTITY=FILE or the Repository's secrets.identityFile"
    };
    Change {
        error: Some(format!(
            "{problem}; nimbus cannot tell whether it changed, so it is not applied{help}"
        )),
        ..change
    }
}
