//! Server-side apply, as the Kubernetes documentation specifies it (and as the reference
//! implementation, structured-merge-diff, does for the kinds served here): each manager owns a
//! set of fields; an **apply** names the fields its manager wants to own and their values,
//! conflicts with another manager that owns one of them with another value (unless forced,
//! which takes the field over), shares a field whose value it leaves as it is, and removes the
//! fields it owned before and no longer names when nobody else owns them; an **update**
//! (create, PUT, non-apply PATCH) takes the fields whose values it changes away from everyone
//! else, with no conflict.
//!
//! Lists are atomic (one field), except the associative lists of the served kinds, merged by
//! their keys (`containers` by `name`, container `ports` by `containerPort` and `protocol`,
//! `env` by `name`, ...), as their OpenAPI `x-kubernetes-list-map-keys` say.
//!
//! Field sets read and write the `fieldsV1` form of `metadata.managedFields`: `f:NAME` for a
//! map's field, `k:{"name":"web"}` for an associative list's item, `.` for the item itself.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One step of a path: a map's field, or an associative list's item by its keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Field(String),
    Key(String),
}

impl Step {
    fn text(&self) -> String {
        match self {
            Step::Field(name) => format!("f:{name}"),
            Step::Key(keys) => format!("k:{keys}"),
        }
    }

    fn parse(text: &str) -> Option<Step> {
        if let Some(name) = text.strip_prefix("f:") {
            Some(Step::Field(name.to_owned()))
        } else {
            text.strip_prefix("k:").map(|k| Step::Key(k.to_owned()))
        }
    }
}

/// A set of fields: a tree of steps; `own` marks a node that is itself in the set (a leaf
/// value, an atomic list, or an associative list's item as such).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    pub own: bool,
    pub children: BTreeMap<Step, FieldSet>,
}

/// The keys of an associative list at `field` (the name of the field that holds it, and that
/// of its parent), or `None` for an atomic list.
pub fn list_keys(parent: Option<&str>, field: &str) -> Option<&'static [&'static str]> {
    match (parent, field) {
        (_, "containers" | "initContainers" | "ephemeralContainers") => Some(&["name"]),
        (_, "env" | "volumes" | "imagePullSecrets") => Some(&["name"]),
        (_, "volumeMounts") => Some(&["mountPath"]),
        // A Service's ports, and a container's.
        (Some("spec"), "ports") => Some(&["port", "protocol"]),
        (_, "ports") => Some(&["containerPort", "protocol"]),
        _ => None,
    }
}

/// The key of an item of an associative list: its key fields as compact JSON (`protocol`
/// defaults to TCP, as the API server defaults it).
fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut map = Map::new();
    for key in keys {
        match item.get(*key) {
            Some(value) => {
                map.insert((*key).to_owned(), value.clone());
            }
            None if *key == "protocol" => {
                map.insert("protocol".to_owned(), Value::String("TCP".into()));
            }
            None => {}
        }
    }
    Value::Object(map).to_string()
}

impl FieldSet {
    /// The fields `value` sets (what an apply of it claims).
    pub fn of(value: &Value) -> FieldSet {
        fn walk(value: &Value, parent: Option<&str>, set: &mut FieldSet) {
            let Value::Object(map) = value else {
                set.own = true;
                return;
            };
            for (name, child) in map {
                let node = set.children.entry(Step::Field(name.clone())).or_default();
                match (child, list_keys(parent, name)) {
                    (Value::Array(items), Some(keys)) => {
                        for item in items {
                            let entry = node
                                .children
                                .entry(Step::Key(item_key(item, keys)))
                                .or_default();
                            entry.own = true;
                            walk(item, Some(name), entry);
                            entry.own = true;
                        }
                        if items.is_empty() {
                            node.own = true;
                        }
                    }
                    (Value::Object(inner), _) if !inner.is_empty() => walk(child, Some(name), node),
                    _ => node.own = true,
                }
            }
        }
        let mut set = FieldSet::default();
        walk(value, None, &mut set);
        set.own = false;
        set
    }

    pub fn is_empty(&self) -> bool {
        !self.own && self.children.values().all(FieldSet::is_empty)
    }

    /// Every path to a node in the set.
    pub fn paths(&self) -> Vec<Vec<Step>> {
        fn walk(set: &FieldSet, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
            if set.own {
                out.push(prefix.clone());
            }
            for (step, child) in &set.children {
                prefix.push(step.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }

    pub fn contains(&self, path: &[Step]) -> bool {
        match path.split_first() {
            None => self.own,
            Some((step, rest)) => self.children.get(step).is_some_and(|c| c.contains(rest)),
        }
    }

    pub fn insert(&mut self, path: &[Step]) {
        match path.split_first() {
            None => self.own = true,
            Some((step, rest)) => self.children.entry(step.clone()).or_default().insert(rest),
        }
    }

    pub fn remove(&mut self, path: &[Step]) {
        match path.split_first() {
            None => self.own = false,
            Some((step, rest)) => {
                if let Some(child) = self.children.get_mut(step) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.children.remove(step);
                    }
                }
            }
        }
    }

    /// The `fieldsV1` JSON of the set.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        if self.own && !self.children.is_empty() {
            map.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (step, child) in &self.children {
            map.insert(step.text(), child.to_json());
        }
        Value::Object(map)
    }

    /// A set from `fieldsV1` JSON.
    pub fn from_json(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        let Value::Object(map) = value else {
            return set;
        };
        if map.is_empty() {
            set.own = true;
        }
        for (text, child) in map {
            if text == "." {
                set.own = true;
            } else if let Some(step) = Step::parse(text) {
                set.children.insert(step, FieldSet::from_json(child));
            }
        }
        set
    }
}

/// The value at `path` in `object`, if any.
pub fn value_at<'a>(object: &'a Value, path: &[Step]) -> Option<&'a Value> {
    lookup(object, path, None)
}

fn lookup<'a>(value: &'a Value, path: &[Step], parent: Option<&str>) -> Option<&'a Value> {
    let Some((step, rest)) = path.split_first() else {
        return Some(value);
    };
    match step {
        Step::Field(name) => {
            let child = value.get(name)?;
            match rest.first() {
                Some(Step::Key(key)) => {
                    let keys = list_keys(parent, name)?;
                    let item = child
                        .as_array()?
                        .iter()
                        .find(|item| item_key(item, keys) == *key)?;
                    lookup(item, &rest[1..], Some(name))
                }
                _ => lookup(child, rest, Some(name)),
            }
        }
        Step::Key(_) => None,
    }
}

/// `config` merged into `live`: maps field by field, associative lists item by item (new
/// items after the existing ones), anything else replaced.
pub fn merge(live: &Value, config: &Value) -> Value {
    fn go(live: &Value, config: &Value, parent: Option<&str>) -> Value {
        match (live, config) {
            (Value::Object(l), Value::Object(c)) => {
                let mut out = l.clone();
                for (name, value) in c {
                    let merged = match (out.get(name), value, list_keys(parent, name)) {
                        (Some(Value::Array(old)), Value::Array(new), Some(keys)) => {
                            let mut items = old.clone();
                            for item in new {
                                let key = item_key(item, keys);
                                match items.iter_mut().find(|i| item_key(i, keys) == key) {
                                    Some(existing) => *existing = go(existing, item, Some(name)),
                                    None => items.push(item.clone()),
                                }
                            }
                            Value::Array(items)
                        }
                        (Some(old), new, _) => go(old, new, Some(name)),
                        (None, new, _) => new.clone(),
                    };
                    out.insert(name.clone(), merged);
                }
                Value::Object(out)
            }
            (_, config) => config.clone(),
        }
    }
    go(live, config, None)
}

/// `object` without the node at `path` (a map's field, or an associative list's item).
pub fn remove_at(object: &mut Value, path: &[Step]) {
    fn go(value: &mut Value, path: &[Step], parent: Option<&str>) {
        let Some((Step::Field(name), rest)) = path.split_first() else {
            return;
        };
        let Some(map) = value.as_object_mut() else {
            return;
        };
        match rest.split_first() {
            None => {
                map.remove(name);
            }
            Some((Step::Key(key), after)) => {
                let Some(keys) = list_keys(parent, name) else {
                    return;
                };
                let Some(items) = map.get_mut(name).and_then(Value::as_array_mut) else {
                    return;
                };
                if after.is_empty() {
                    items.retain(|item| item_key(item, keys) != *key);
                } else if let Some(item) = items.iter_mut().find(|i| item_key(i, keys) == *key) {
                    go(item, after, Some(name));
                }
            }
            Some(_) => {
                if let Some(child) = map.get_mut(name) {
                    go(child, rest, Some(name));
                }
            }
        }
    }
    go(object, path, None);
}

/// One manager's fields, as `metadata.managedFields` holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct Managed {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub fields: FieldSet,
}

/// A field another manager owns with another value than the apply gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// `.spec.replicas`, as the API server writes it.
    pub field: String,
}

/// A path as the API server's conflict messages write it.
pub fn path_text(path: &[Step]) -> String {
    path.iter()
        .map(|step| match step {
            Step::Field(name) => format!(".{name}"),
            Step::Key(key) => format!("[{key}]"),
        })
        .collect()
}

/// Fields that metadata bookkeeping sets, never owned by anyone.
fn is_bookkeeping(path: &[Step]) -> bool {
    matches!(path, [Step::Field(m), Step::Field(f), ..] if m == "metadata"
        && matches!(f.as_str(), "managedFields" | "resourceVersion" | "uid" | "generation" | "creationTimestamp"))
        || matches!(path, [Step::Field(f), ..] if f == "status" || f == "apiVersion" || f == "kind")
}

/// Applies `config` as `manager` to `live` (absent: a create) with the fields `managed`
/// records. Returns the new object and managed fields, or the conflicts (when not forced).
pub fn apply(
    live: Option<&Value>,
    managed: &[Managed],
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<(Value, Vec<Managed>), Vec<Conflict>> {
    let empty = Value::Object(Map::new());
    let live = live.unwrap_or(&empty);
    let mut claimed = FieldSet::of(config);
    for path in claimed.paths() {
        if is_bookkeeping(&path) {
            claimed.remove(&path);
        }
    }
    let mut conflicts = Vec::new();
    let mut others: Vec<Managed> = managed
        .iter()
        .filter(|m| !(m.manager == manager && m.operation == "Apply"))
        .cloned()
        .collect();
    for path in claimed.paths() {
        // An item of an associative list is compared by its own fields, not as a whole.
        if matches!(path.last(), Some(Step::Key(_))) {
            continue;
        }
        let differs = value_at(live, &path) != value_at(config, &path);
        for other in &mut others {
            if other.fields.contains(&path) && differs {
                if force {
                    other.fields.remove(&path);
                } else {
                    conflicts.push(Conflict {
                        manager: other.manager.clone(),
                        field: path_text(&path),
                    });
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let mut object = merge(live, config);
    // What this manager applied before and now leaves out goes, unless someone else owns it.
    if let Some(before) = managed
        .iter()
        .find(|m| m.manager == manager && m.operation == "Apply")
    {
        let mut dropped: Vec<Vec<Step>> = before
            .fields
            .paths()
            .into_iter()
            .filter(|p| !claimed.contains(p))
            .filter(|p| !others.iter().any(|o| o.fields.contains(p)))
            .collect();
        // Deepest first, so that an item goes after its fields.
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for path in dropped {
            remove_at(&mut object, &path);
        }
    }
    others.retain(|m| !m.fields.is_empty());
    let mut result = others;
    result.push(Managed {
        manager: manager.to_owned(),
        operation: "Apply".to_owned(),
        fields: claimed,
    });
    Ok((object, result))
}

/// An update (create, PUT, a non-apply PATCH) by `manager` from `old` to `new`: the fields
/// whose values change become its own and nobody else's. No conflicts.
pub fn update(
    old: Option<&Value>,
    new: &Value,
    managed: &[Managed],
    manager: &str,
) -> Vec<Managed> {
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    let mut changed = FieldSet::default();
    for path in FieldSet::of(new).paths() {
        if !is_bookkeeping(&path) && value_at(old, &path) != value_at(new, &path) {
            changed.insert(&path);
        }
    }
    // Fields that went away are nobody's any more.
    let mut gone = Vec::new();
    for path in FieldSet::of(old).paths() {
        if value_at(new, &path).is_none() {
            gone.push(path);
        }
    }
    let mut result: Vec<Managed> = managed.to_vec();
    for entry in &mut result {
        for path in changed.paths().iter().chain(gone.iter()) {
            entry.fields.remove(path);
        }
    }
    match result
        .iter_mut()
        .find(|m| m.manager == manager && m.operation == "Update")
    {
        Some(entry) => {
            for path in changed.paths() {
                entry.fields.insert(&path);
            }
        }
        None if !changed.is_empty() => result.push(Managed {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            fields: changed,
        }),
        None => {}
    }
    result.retain(|m| !m.fields.is_empty());
    result
}
