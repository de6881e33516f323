//! Why a change is what it is, as typed parts rendered by `Display`: the comparison's reason
//! first, then what each override and pass adds, joined by `; ` (as plans print it).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One part of a change's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Recorded, but gone from its target: made again.
    DeletedOutside,
    /// Recorded as applied, and its target shows something else.
    ChangedOutside,
    /// A Host seen for the first time: its facts are read and recorded.
    FirstContact,
    /// These fields cannot change in place.
    Replacing(Vec<String>),
    /// These fields cannot change in place, and the resource is protected.
    ProtectedFromReplace(Vec<String>),
    /// It exists at its target and nimbus has no record of it: imported.
    Imported,
    /// A delete refused: the instance is protected.
    ProtectedFromDelete,
    /// A delete of something already gone.
    AlreadyGone,
    /// Removed from git, kept in place under `nimbus.dev/prune: "false"`.
    KeptOnRemoval,
    /// Its provider could not tell what it shows.
    NotObserved(String),
    /// Recorded under one provider, now served by another.
    ProviderSwitch { from: String, to: String },
    /// Made by an apply that failed (that apply's first line).
    Tainted(String),
    /// Where the scheduler placed it, and why.
    Placed(String),
    /// A paused VM is resumed (QMP `cont`).
    VmResume,
    /// A VM its guest suspended is woken (QMP `system_wakeup`).
    VmWake,
    /// A VM that is not running is started.
    VmStart,
    /// A VM restarts for these fields.
    VmRestart(Vec<String>),
    /// A Service restarts after these changed Files.
    Restart(Vec<String>),
    /// A reason read back from a saved plan, in its words.
    Said(String),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::DeletedOutside => f.write_str("drift: deleted outside nimbus"),
            Why::ChangedOutside => f.write_str("drift: changed outside nimbus"),
            Why::FirstContact => f.write_str("first contact: its facts are read and recorded"),
            Why::Replacing(fields) => write!(f, "{} changed", fields.join(", ")),
            Why::ProtectedFromReplace(fields) => write!(
                f,
                "protected: {} changed, but a protected resource is never replaced",
                fields.join(", ")
            ),
            Why::Imported => f.write_str("exists, not managed yet: imported"),
            Why::ProtectedFromDelete => f.write_str(
                "protected: nimbus.dev/protect is \"true\"; lift it with `nimbus state unprotect` to delete",
            ),
            Why::AlreadyGone => f.write_str("already gone; removed from state"),
            Why::KeptOnRemoval => {
                f.write_str("removed from git, kept in place: nimbus.dev/prune is \"false\"")
            }
            Why::NotObserved(why) => write!(f, "not observed: {why}"),
            Why::ProviderSwitch { from, to } => write!(
                f,
                "provider changed: recorded under `{from}`, now served by `{to}`"
            ),
            Why::Tainted(why) => write!(
                f,
                "tainted: the apply that made it failed ({why}); it is made again"
            ),
            Why::Placed(why) | Why::Said(why) => f.write_str(why),
            Why::VmResume => f.write_str("resumes the VM (QMP cont): it is paused"),
            Why::VmWake => f.write_str("wakes the VM (QMP system_wakeup): its guest suspended it"),
            Why::VmStart => f.write_str("starts the VM again: it is not running"),
            Why::VmRestart(fields) => write!(f, "restarts the VM: {} changed", fields.join(", ")),
            Why::Restart(files) => write!(f, "restart: {} changed", files.join(", ")),
        }
    }
}

/// A change's reason: one or more parts. In a JSON plan, the sentence it renders to (a saved
/// plan read back keeps that sentence as one part).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub struct Reason(Vec<Why>);

impl Reason {
    pub fn parts(&self) -> &[Why] {
        &self.0
    }

    /// Whether some part is `why`.
    pub fn has(&self, why: &Why) -> bool {
        self.0.contains(why)
    }
}

impl From<Why> for Reason {
    fn from(why: Why) -> Reason {
        Reason(vec![why])
    }
}

/// `reason` with `why` added after what it says already.
pub fn and(reason: Option<Reason>, why: Why) -> Option<Reason> {
    Some(match reason {
        Some(Reason(mut parts)) => {
            parts.push(why);
            Reason(parts)
        }
        None => why.into(),
    })
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, why) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{why}")?;
        }
        Ok(())
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.to_string()
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Reason {
        Why::Said(text).into()
    }
}

impl schemars::JsonSchema for Reason {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Reason".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_render_in_order_joined_and_a_saved_plan_reads_back_its_sentence() {
        let reason = and(
            Some(Why::Replacing(vec!["disk.image".into(), "cpus".into()]).into()),
            Why::Placed("placed on b: most room".into()),
        )
        .unwrap();
        assert_eq!(
            reason.to_string(),
            "disk.image, cpus changed; placed on b: most room"
        );
        let json = serde_json::to_value(&reason).unwrap();
        assert_eq!(json, "disk.image, cpus changed; placed on b: most room");
        let back: Reason = serde_json::from_value(json).unwrap();
        assert_eq!(back.to_string(), reason.to_string());
        assert_eq!(
            back.parts(),
            [Why::Said(
                "disk.image, cpus changed; placed on b: most room".into()
            )]
        );
    }

    #[test]
    fn each_part_says_what_plans_have_always_said() {
        assert_eq!(
            Why::ProviderSwitch {
                from: "docker".into(),
                to: "kube".into()
            }
            .to_string(),
            "provider changed: recorded under `docker`, now served by `kube`"
        );
        assert_eq!(
            Why::Tainted("exit 1".into()).to_string(),
            "tainted: the apply that made it failed (exit 1); it is made again"
        );
        assert_eq!(
            Why::Restart(vec!["File/a@n1".into()]).to_string(),
            "restart: File/a@n1 changed"
        );
        assert_eq!(
            Why::VmRestart(vec!["memory".into()]).to_string(),
            "restarts the VM: memory changed"
        );
    }
}
