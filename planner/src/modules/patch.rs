//! Environments: the values a top-level Use reads as `${{ env.NAME }}`, and patches that
//! change any field of any resource (RFC 7386 merge patches over the document's tree). A
//! patched document is typed again from a copy of its file, with the patched values placed
//! at the base's lines and the patch's lines as their origin: a problem shows both.

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_schemas::{EnvironmentSpec, ReuseKind};

use super::subst::{Sourced, respan};
use super::{MetaDoc, Origin, split_address};
use crate::de::{Context, de_problem, from_node};
use crate::diagnostics::{Label, Problem};
use crate::load::{FileTrees, Model, Place, typed_document};
use crate::tree::{ByteSpan, Key, Node, Value};

/// The Environment named `name`, if the model declares it.
fn environment<'m>(model: &'m Model, name: &str) -> Option<&'m MetaDoc> {
    model.meta.iter().find(|m| {
        m.kind == ReuseKind::Environment
            && m.envelope
                .metadata
                .as_ref()
                .and_then(|n| n.get("name"))
                .and_then(Node::as_str)
                == Some(name)
    })
}

/// Type-checks every Environment (chosen or not), refuses two of one name, and checks the
/// Repository's `defaultEnvironment` names one.
pub fn check_environments(model: &Model, problems: &mut Vec<Problem>) {
    if let Some(document) = model.repository()
        && let nimbus_schemas::Spec::Repository(repository) = &document.resource.spec
        && let Some(default) = &repository.default_environment
    {
        let names: Vec<String> = super::environments(model)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if !names.contains(default) {
            problems.push(
                Problem::error(
                    "nimbus::environment::unknown",
                    format!("defaultEnvironment `{default}` is not declared"),
                    document.label(
                        document.spec_span(&[crate::tree::Segment::Key("defaultEnvironment")]),
                        "no such environment",
                    ),
                )
                .with_help(if names.is_empty() {
                    "declare it (kind: Environment), or remove defaultEnvironment".to_owned()
                } else {
                    format!("the environments are: {}", names.join(", "))
                }),
            );
        }
    }
    let mut seen: BTreeMap<String, Label> = BTreeMap::new();
    for doc in model
        .meta
        .iter()
        .filter(|m| m.kind == ReuseKind::Environment)
    {
        let name_node = doc.envelope.metadata.as_ref().and_then(|m| m.get("name"));
        let Some((name, span)) = name_node.and_then(|n| Some((n.as_str()?.to_owned(), n.span)))
        else {
            problems.push(
                Problem::error(
                    "nimbus::manifest::missing_name",
                    "Environment has no name",
                    Label::new(doc.file, doc.envelope.span, "no name"),
                )
                .with_help("name it as `--env` will choose it: `metadata: {name: prod}`"),
            );
            continue;
        };
        if !super::is_key(&name) {
            problems.push(
                Problem::error(
                    "nimbus::environment::name",
                    format!("`{name}` cannot name an environment"),
                    Label::new(doc.file, span, "not a name"),
                )
                .with_help("use letters, digits, `-`, `_` and `.`"),
            );
        }
        if let Some(first) = seen.get(&name) {
            problems.push(
                Problem::error(
                    "nimbus::environment::duplicate",
                    format!("environment `{name}` is declared twice"),
                    Label::new(doc.file, span, "declared again here"),
                )
                .with_label(first.clone()),
            );
        } else {
            seen.insert(
                name.clone(),
                Label::new(doc.file, span, "first declared here"),
            );
        }
        let context = Context {
            kdl: doc.format == crate::load::Format::Kdl,
            ..Context::default()
        };
        let empty = Node::new(Value::Map(Vec::new()), doc.envelope.span);
        let spec = doc.envelope.spec.as_ref().unwrap_or(&empty);
        let owner = format!("Environment/{name}");
        if let Err(e) = from_node::<EnvironmentSpec>(spec, &context) {
            problems.push(de_problem(e, doc.file, spec.span, "spec", &owner));
        }
        for unknown in context.unknown_fields.take() {
            problems.push(de_problem(unknown, doc.file, spec.span, "spec", &owner));
        }
    }
}

/// The chosen environment's values, each with its place.
pub fn values_of(model: &Model, name: &str) -> Option<BTreeMap<String, Sourced>> {
    let doc = environment(model, name)?;
    let mut values = BTreeMap::new();
    if let Some(Value::Map(entries)) = doc
        .envelope
        .spec
        .as_ref()
        .and_then(|s| s.get("values"))
        .map(|n| &n.value)
    {
        for (key, node) in entries {
            values.insert(
                crate::tree::kebab_to_camel(&key.name),
                Sourced {
                    node: node.clone(),
                    at: Some(Label::new(
                        doc.file,
                        node.span,
                        format!("`{}` of environment `{name}`", key.name),
                    )),
                },
            );
        }
    }
    Some(values)
}

/// Applies the chosen environment's patches to the documents they target.
pub fn apply_patches(model: &mut Model, name: &str, problems: &mut Vec<Problem>) {
    let Some(doc) = environment(model, name).cloned() else {
        return;
    };
    let Some(Value::Seq(patches)) = doc
        .envelope
        .spec
        .as_ref()
        .and_then(|s| s.get("patches"))
        .map(|n| n.value.clone())
    else {
        return;
    };
    for item in &patches {
        let (Some(target), Some(patch)) = (item.get("target"), item.get("patch")) else {
            continue;
        };
        let Some(text) = target.as_str() else {
            continue;
        };
        let (module, base) = split_address(text);
        let found = model.documents.iter().position(|d| {
            d.resource.address() == base && (module.is_none() || d.module.as_deref() == module)
        });
        let Some(index) = found else {
            problems.push(
                Problem::error(
                    "nimbus::environment::patch_target",
                    format!("environment `{name}` patches {text}, which no manifest declares"),
                    Label::new(doc.file, target.span, "no such resource"),
                )
                .with_help("write the address as `nimbus plan` shows it (with its module path when it comes from a module)"),
            );
            continue;
        };
        if let Some(Value::Map(entries)) = Some(&patch.value)
            && let Some((key, _)) = entries
                .iter()
                .find(|(k, _)| k.name != "metadata" && k.name != "spec")
        {
            problems.push(
                Problem::error(
                    "nimbus::environment::patch",
                    format!("a patch sets `metadata` and `spec`, not `{}`", key.name),
                    Label::new(doc.file, key.span, "not patchable"),
                )
                .with_help("put the fields under `spec:` (or `metadata:`)"),
            );
            continue;
        }
        if !matches!(patch.value, Value::Map(_)) {
            problems.push(
                Problem::error(
                    "nimbus::environment::patch",
                    format!("a patch is a map, and this is {}", patch.kind_name()),
                    Label::new(doc.file, patch.span, "not a map"),
                )
                .with_help("write `patch: {spec: {FIELD: VALUE}}`"),
            );
            continue;
        }
        patch_document(model, index, &doc, name, patch, problems);
    }
}

fn patch_document(
    model: &mut Model,
    index: usize,
    env: &MetaDoc,
    name: &str,
    patch: &Node,
    problems: &mut Vec<Problem>,
) {
    let document = &model.documents[index];
    let Some(mut envelope) = document.envelope().cloned() else {
        return;
    };
    let mut envelopes = document.trees().envelopes().to_vec();
    let (file, format, place_index) = (document.file, document.format, document.index());
    let module = document.module.clone();
    let mut origins = Vec::new();
    let label = |span: ByteSpan| Label::new(env.file, span, format!("set by environment `{name}`"));
    for (key, value) in match &patch.value {
        Value::Map(entries) => entries.as_slice(),
        _ => &[],
    } {
        let slot = match key.name.as_str() {
            "metadata" => &mut envelope.metadata,
            _ => &mut envelope.spec,
        };
        let base = slot.get_or_insert_with(|| {
            Node::new(
                Value::Map(Vec::new()),
                ByteSpan::new(envelope.span.start, 0),
            )
        });
        merge(base, value, &mut origins, &label);
    }
    let source = model.sources.get(file).clone();
    let text = source.text.clone();
    let copy = model.sources.add(source);
    let mut origin = model.origins.get(&file).cloned().unwrap_or_else(|| Origin {
        scope_path: model.sources.path(file).to_owned(),
        ..Origin::default()
    });
    origin.values.extend(origins);
    let scope_path = origin.scope_path.clone();
    model.origins.insert(copy, origin);
    if let Some(slot) = envelopes.get_mut(place_index) {
        *slot = envelope.clone();
    }
    let trees = Arc::new(FileTrees::prebuilt(text.clone(), format, envelopes));
    let place = Place {
        file: copy,
        index: place_index,
        trees: &trees,
    };
    let mut declared = Vec::new();
    let raw = if format == crate::load::Format::Yaml {
        text.as_ref()
    } else {
        ""
    };
    match typed_document(
        envelope,
        place,
        &scope_path,
        format,
        raw,
        problems,
        &mut declared,
    ) {
        Some(mut patched) => {
            patched.module = module;
            model.documents[index] = patched;
        }
        None => {
            model.documents.remove(index);
        }
    }
}

/// RFC 7386 over trees: maps merge, `null` removes, anything else replaces. What a patch
/// sets is placed at the base's line (the field it replaces, else the map it joins) with
/// the patch's line as its origin.
fn merge(
    base: &mut Node,
    patch: &Node,
    origins: &mut super::subst::Origins,
    label: &dyn Fn(ByteSpan) -> Label,
) {
    let Value::Map(patch_entries) = &patch.value else {
        let span = ByteSpan::new(base.span.start, 0);
        origins.push((base.span, label(patch.span)));
        let mut value = patch.clone();
        respan(&mut value, span);
        *base = value;
        return;
    };
    if !matches!(base.value, Value::Map(_)) {
        base.value = Value::Map(Vec::new());
    }
    let base_span = base.span;
    let Value::Map(entries) = &mut base.value else {
        return;
    };
    for (key, value) in patch_entries {
        let position = entries.iter().position(|(k, _)| {
            k.name == key.name || crate::tree::kebab_to_camel(&k.name) == key.name
        });
        match (&value.value, position) {
            (Value::Null, Some(i)) => {
                entries.remove(i);
            }
            (Value::Null, None) => {}
            (_, Some(i)) => merge(&mut entries[i].1, value, origins, label),
            (_, None) => {
                let span = ByteSpan::new(base_span.start, 0);
                origins.push((
                    ByteSpan::new(base_span.start, base_span.len),
                    label(value.span),
                ));
                let mut node = if matches!(value.value, Value::Map(_)) {
                    let mut empty = Node::new(Value::Map(Vec::new()), span);
                    merge(&mut empty, value, origins, label);
                    empty
                } else {
                    value.clone()
                };
                respan(&mut node, span);
                entries.push((
                    Key {
                        name: key.name.clone(),
                        span,
                    },
                    node,
                ));
            }
        }
    }
}
