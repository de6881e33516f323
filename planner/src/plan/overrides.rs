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
                reason: Some(
                    Why::ProviderSwitch {
                        from: record.provider.clone(),
                        to: provider.to_owned(),
                    }
                    .into(),
                ),
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
                reason: Some(Why::Tainted(first_line(why)).into()),
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
            reason: super::reason::and(change.reason, Why::Placed(reason.clone())),
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

#[cfg(test)]
mod tests {
    use nimbus_schemas::Kind;
    use serde_json::json;

    use super::*;

    fn change(action: Action) -> Change {
        Change {
            provider: "ssh".into(),
            ..Change::of(
                Kind::Vm,
                "VM/vm",
                None,
                action,
                Some(&json!({"cpus": 1})),
                Some(&json!({"cpus": 2})),
            )
        }
    }

    fn record(provider: &str, tainted: Option<&str>) -> Record {
        Record {
            address: "VM/vm".into(),
            kind: Kind::Vm,
            applied: json!({"cpus": 1}),
            owned: true,
            protected: false,
            keep_on_removal: false,
            depends_on: Vec::new(),
            provider: provider.into(),
            outputs: Value::Null,
            tainted: tainted.map(str::to_owned),
        }
    }

    #[test]
    fn a_provider_switch_is_a_replace_unless_it_is_a_create_or_unrecorded() {
        let switched = provider_switch(change(Action::NoOp), Some(&record("old", None)), "ssh");
        assert_eq!(switched.action, Action::Replace);
        assert_eq!(switched.previous_provider.as_deref(), Some("old"));
        for (action, record) in [
            (Action::Create, Some(record("old", None))),
            (Action::Update, Some(record("ssh", None))),
            (Action::Update, Some(record("", None))),
            (Action::Update, None),
        ] {
            let kept = provider_switch(change(action), record.as_ref(), "ssh");
            assert_eq!(kept.action, action);
            assert_eq!(kept.previous_provider, None);
        }
    }

    #[test]
    fn a_tainted_instance_is_made_again_unless_protected_or_gone() {
        let tainted = record("ssh", Some("boom\nsecond line"));
        let current = Some(json!({"cpus": 2}));
        let desired = json!({"cpus": 2});
        let made = taint(
            change(Action::NoOp),
            Some(&tainted),
            false,
            current.clone(),
            &desired,
        );
        assert_eq!(made.action, Action::Replace);
        let reason = made
            .reason
            .expect("a tainted instance says why it is made again");
        assert_eq!(reason.parts(), [Why::Tainted("boom".into())]);
        assert_eq!(
            reason.to_string(),
            "tainted: the apply that made it failed (boom); it is made again"
        );
        let protected = taint(
            change(Action::NoOp),
            Some(&tainted),
            true,
            current,
            &desired,
        );
        assert_eq!(protected.action, Action::NoOp);
        let gone = taint(
            change(Action::Create),
            Some(&tainted),
            false,
            None,
            &desired,
        );
        assert_eq!(gone.action, Action::Create);
    }

    #[test]
    fn a_placement_adds_its_reason_to_a_change_and_fails_what_fits_nowhere() {
        let on = Placement::On {
            host: "b".into(),
            reason: "placed on b: most room".into(),
        };
        let updated = Change {
            reason: Some(Why::ChangedOutside.into()),
            ..change(Action::Update)
        };
        let reason = placement(updated, Some(&on)).reason.unwrap();
        assert_eq!(
            reason.parts(),
            [
                Why::ChangedOutside,
                Why::Placed("placed on b: most room".into())
            ]
        );
        assert_eq!(
            reason.to_string(),
            "drift: changed outside nimbus; placed on b: most room"
        );
        assert_eq!(placement(change(Action::NoOp), Some(&on)).reason, None);
        let nowhere = Placement::Nowhere {
            reason: "no host has 3Gi free".into(),
        };
        assert_eq!(
            placement(change(Action::NoOp), Some(&nowhere))
                .error
                .as_deref(),
            Some("no host has 3Gi free")
        );
    }

    #[test]
    fn an_undecryptable_secret_fails_the_instance_saying_how_to_fix_it() {
        let failed = undecryptable(change(Action::Update), Some("no identity matches"));
        let error = failed.error.unwrap_or_default();
        assert!(
            error.starts_with("no identity matches; nimbus cannot tell"),
            "{error}"
        );
        assert!(error.contains("--identity FILE"), "{error}");
        let said = undecryptable(
            change(Action::Update),
            Some("the --identity file is not age"),
        );
        assert!(
            !said
                .error
                .unwrap_or_default()
                .contains("NIMBUS_AGE_IDENTITY")
        );
        assert_eq!(undecryptable(change(Action::Update), None).error, None);
    }
}
