//! `Moved` records: the instance state records at `from` is the one the manifests now declare
//! at `to` (a rename, a move into a module, a change of `forEach` key). The plan shows a move,
//! with no delete and no create, and apply renames the state's records.

use std::collections::BTreeMap;

use nimbus_schemas::{Address, Kind, MovedSpec, ReuseKind};
use serde::{Deserialize, Serialize};

use super::split_address;
use crate::diagnostics::{Label, Problem};
use crate::load::Model;
use crate::record::Record;
pub use crate::reuse::Move;

/// Kinds whose instances are known on their host by something other than their name (a
/// File by its path): renaming one renames nothing on the host. Other kinds' names are
/// their identity there (a unit, a container, a folder), so a rename is a new instance.
fn renamable(kind: Kind) -> bool {
    matches!(kind, Kind::File)
}

/// Reads and checks every `Moved` record into `model.moves`.
pub fn read_moves(model: &mut Model, problems: &mut Vec<Problem>) {
    let mut moves: Vec<Move> = Vec::new();
    for doc in model.meta.iter().filter(|m| m.kind == ReuseKind::Moved) {
        let missing = || {
            Problem::error(
                "nimbus::moved::spec",
                "Moved needs `from` and `to`",
                Label::new(doc.file, doc.envelope.span, "no spec"),
            )
            .with_help("write `spec: {from: OLD-ADDRESS, to: NEW-ADDRESS}`")
        };
        let Some((spec, spec_node)) = super::record_spec::<MovedSpec>(doc, missing, problems)
        else {
            continue;
        };
        let span_of = |field: &str| spec_node.get(field).map_or(spec_node.span, |n| n.span);
        let label = |field: &str, message: &str| Label::new(doc.file, span_of(field), message);
        let mut parsed = Vec::new();
        for (field, text) in [("from", &spec.from), ("to", &spec.to)] {
            let (module, resource) = split_address(text);
            if let Some(module) = module
                && !valid_module_path(module)
            {
                problems.push(
                    Problem::error(
                        "nimbus::moved::address",
                        format!("`{module}` is not a module path"),
                        label(field, "not a module path"),
                    )
                    .with_help("module paths read `module.NAME`, `module.NAME[KEY]`, joined by `.` when nested"),
                );
                break;
            }
            match resource.parse::<Address>() {
                Ok(address) if address.host.is_none() => parsed.push(address),
                Ok(_) => {
                    problems.push(
                        Problem::error(
                            "nimbus::moved::address",
                            format!("`{text}` names one host's instance; a move names a resource"),
                            label(field, "has @host"),
                        )
                        .with_help("drop the `@host`: every instance of the resource moves"),
                    );
                    break;
                }
                Err(e) => {
                    problems.push(
                        Problem::error(
                            "nimbus::moved::address",
                            e.to_string(),
                            label(field, "not an address"),
                        )
                        .with_help(
                            "write the address as `nimbus plan` or `nimbus state list` shows it",
                        ),
                    );
                    break;
                }
            }
        }
        let [from, to] = parsed.as_slice() else {
            continue;
        };
        if spec.from == spec.to {
            problems.push(Problem::error(
                "nimbus::moved::same",
                "a move from an address to itself",
                label("to", "the same as `from`"),
            ));
            continue;
        }
        if from.kind != to.kind {
            problems.push(
                Problem::error(
                    "nimbus::moved::kind",
                    format!("a {} cannot become a {}", from.kind, to.kind),
                    label("to", "another kind"),
                )
                .with_help(
                    "a move keeps the kind; remove the record to delete one and create the other",
                ),
            );
            continue;
        }
        if from.to_string() != to.to_string() && !renamable(from.kind) {
            problems.push(
                Problem::error(
                    "nimbus::moved::rename",
                    format!(
                        "{} cannot be renamed to {}: a {}'s name is what its host knows it by",
                        from, to, from.kind
                    ),
                    label("to", "another name"),
                )
                .with_help("moves into a module or to another key keep the name and are fine; a new name is a new instance (delete and create: remove this record)"),
            );
            continue;
        }
        let declared = |module: Option<&str>, resource: &str| {
            model.documents.iter().any(|d| {
                d.resource.address() == resource
                    && match module {
                        Some(m) => d.module.as_deref() == Some(m),
                        None => d.module.is_none(),
                    }
            })
        };
        let (from_module, from_resource) = split_address(&spec.from);
        let (to_module, to_resource) = split_address(&spec.to);
        if declared(from_module, from_resource) {
            problems.push(
                Problem::error(
                    "nimbus::moved::still_declared",
                    format!("{} is still declared, so it cannot have moved", spec.from),
                    label("from", "still declared"),
                )
                .with_help("remove (or rename) what declares it, or remove this record"),
            );
            continue;
        }
        if !declared(to_module, to_resource) {
            problems.push(
                Problem::error(
                    "nimbus::moved::missing",
                    format!("{} is moved to {}, which no manifest declares", spec.from, spec.to),
                    label("to", "not declared"),
                )
                .with_help("write the new address as `nimbus plan` shows it (with its module path when it comes from a module)"),
            );
            continue;
        }
        if let Some(other) = moves.iter().find(|m| m.from == spec.from) {
            problems.push(
                Problem::error(
                    "nimbus::moved::twice",
                    format!("{} is moved twice", spec.from),
                    label("from", "moved again here"),
                )
                .with_label(other.at.clone()),
            );
            continue;
        }
        if let Some(other) = moves.iter().find(|m| m.to == spec.to) {
            problems.push(
                Problem::error(
                    "nimbus::moved::twice",
                    format!("two moves lead to {}", spec.to),
                    label("to", "a second move onto it"),
                )
                .with_label(other.at.clone()),
            );
            continue;
        }
        moves.push(Move {
            from: spec.from.clone(),
            to: spec.to.clone(),
            from_resource: from_resource.to_owned(),
            to_resource: to_resource.to_owned(),
            at: label("from", "moved here"),
        });
    }
    model.moves = moves;
}

/// `module.web`, `module.web[acme]`, `module.web[acme].module.db`.
pub fn valid_module_path(path: &str) -> bool {
    let mut rest = path;
    loop {
        let Some(after) = rest.strip_prefix("module.") else {
            return false;
        };
        let end = after.find(['[', '.']).unwrap_or(after.len());
        if !super::is_key(&after[..end]) {
            return false;
        }
        let mut tail = &after[end..];
        if let Some(keyed) = tail.strip_prefix('[') {
            let Some(close) = keyed.find(']') else {
                return false;
            };
            if !super::is_key(&keyed[..close]) {
                return false;
            }
            tail = &keyed[close + 1..];
        }
        if tail.is_empty() {
            return true;
        }
        match tail.strip_prefix('.') {
            Some(next) => rest = next,
            None => return false,
        }
    }
}

/// A move the plan carries: the instance shown at `to` is the one state records at `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMove {
    /// Both as people read them, with module paths.
    pub from: String,
    pub to: String,
    /// The state records renamed (old address, new address): none for a move between
    /// module paths only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renames: Vec<(String, String)>,
}

/// Why a move cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot move {from} to {to}: state already records {to} (a move onto an address that exists); remove the Moved record, or remove the record of {to} with `nimbus state rm`"
)]
pub struct MoveOntoExisting {
    pub from: String,
    pub to: String,
}

/// The resource part of an instance address (`File/motd@web-1` → `File/motd`), and its
/// `@host` suffix.
fn split_host(address: &str) -> (&str, &str) {
    match address.find('@') {
        Some(at) => (&address[..at], &address[at..]),
        None => (address, ""),
    }
}

fn with_module(module: Option<&String>, resource: &str) -> String {
    match module {
        Some(m) => format!("{m}/{resource}"),
        None => resource.to_owned(),
    }
}

/// The records as the plan must read them once the model's moves are made (renamed to
/// their new addresses, what depended on them too), and the moves that change something:
/// `Moved` records whose `from` state still holds, and resources whose recorded module path
/// is not the one the manifests give now.
pub fn plan_moves(
    records: &[Record],
    recorded_modules: &BTreeMap<String, String>,
    moves: &[Move],
    desired: &BTreeMap<String, Option<String>>,
) -> Result<(Vec<Record>, Vec<PlannedMove>), MoveOntoExisting> {
    let mut records = records.to_vec();
    let mut planned = Vec::new();
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for m in moves.iter().filter(|m| !m.keeps_address()) {
        let holds = |resource: &str| records.iter().any(|r| split_host(&r.address).0 == resource);
        if !holds(&m.from_resource) {
            continue;
        }
        if holds(&m.to_resource) {
            return Err(MoveOntoExisting {
                from: m.from.clone(),
                to: m.to.clone(),
            });
        }
        let mut renames = Vec::new();
        for record in &mut records {
            let (resource, host) = split_host(&record.address);
            if resource == m.from_resource {
                let new = format!("{}{host}", m.to_resource);
                renames.push((record.address.clone(), new.clone()));
                record.address = new;
            }
        }
        renamed.extend(renames.iter().cloned());
        renamed.insert(m.from_resource.clone(), m.to_resource.clone());
        let from_module = recorded_modules.get(&m.from_resource);
        let to_module = desired.get(&m.to_resource).cloned().flatten();
        planned.push(PlannedMove {
            from: with_module(from_module, &m.from_resource),
            to: with_module(to_module.as_ref(), &m.to_resource),
            renames,
        });
    }
    if !renamed.is_empty() {
        for record in &mut records {
            for dependency in &mut record.depends_on {
                if let Some(new) = renamed.get(dependency.as_str()) {
                    *dependency = new.clone();
                }
            }
        }
    }
    // Moves between module paths: state's key stays; only where it comes from changes.
    let mut seen = std::collections::BTreeSet::new();
    for record in &records {
        let (resource, _) = split_host(&record.address);
        if !seen.insert(resource.to_owned()) {
            continue;
        }
        let Some(wanted) = desired.get(resource) else {
            continue;
        };
        let old_key = renamed
            .iter()
            .find(|(_, new)| new.as_str() == resource)
            .map_or(resource, |(old, _)| old.as_str());
        let recorded = recorded_modules.get(old_key);
        if recorded == wanted.as_ref() || old_key != resource {
            continue;
        }
        planned.push(PlannedMove {
            from: with_module(recorded, resource),
            to: with_module(wanted.as_ref(), resource),
            renames: Vec::new(),
        });
    }
    Ok((records, planned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths() {
        assert!(valid_module_path("module.web"));
        assert!(valid_module_path("module.web[acme]"));
        assert!(valid_module_path("module.web[acme].module.db[0]"));
        assert!(!valid_module_path("module.web[acme"));
        assert!(!valid_module_path("mod.web"));
        assert!(!valid_module_path("module.web[a b]"));
        assert!(!valid_module_path("module.web.x"));
    }
}
