//! `${{ ... }}` in a module's manifests and in a Use's values: a reference to an input, the
//! module's name or key, `forEach`'s element, or an environment's value. A field that is one
//! reference takes the value whole, keeping its type (a list stays a list); a reference inside
//! a longer string is written into it. Nothing else is evaluated: no operators, no functions.

use std::collections::BTreeMap;

use crate::diagnostics::{FileId, Label, Problem};
use crate::tree::{ByteSpan, Key, Node, Value, kebab_to_camel};

/// A value and where it was written (for the second place a diagnostic names).
#[derive(Clone, Debug)]
pub struct Sourced {
    pub node: Node,
    /// Where the value was written: the Use's value, the module's default, the environment.
    pub at: Option<Label>,
}

/// What `${{ ... }}` may name in one place.
#[derive(Default)]
pub struct Scope<'a> {
    /// `inputs.NAME`: inside a module.
    pub inputs: Option<&'a BTreeMap<String, Sourced>>,
    /// `module.name` and `module.key`: inside a module.
    pub module: Option<(&'a str, &'a str)>,
    /// `each.key` and `each.value`: in a Use with `forEach`.
    pub each: Option<(&'a str, &'a Sourced)>,
    /// `env.NAME`: in a Use at the repository's top, when an environment is chosen.
    pub env: Option<&'a BTreeMap<String, Sourced>>,
    /// Whether `env.` is allowed here at all (at the top) though no environment is chosen.
    pub env_allowed: bool,
}

pub use crate::reuse::Origins;

const OPEN: &str = "${{";
const CLOSE: &str = "}}";

/// Replaces every reference in `node` (recursively), in `file`. Problems are pushed; a value
/// that cannot be resolved is left as written.
pub fn substitute(
    node: &mut Node,
    scope: &Scope<'_>,
    file: FileId,
    origins: &mut Origins,
    problems: &mut Vec<Problem>,
) {
    match &mut node.value {
        Value::Seq(items) => {
            for item in items {
                substitute(item, scope, file, origins, problems);
            }
        }
        Value::Map(entries) => {
            for (_, value) in entries {
                substitute(value, scope, file, origins, problems);
            }
        }
        Value::String(text) if text.contains(OPEN) => {
            let span = node.span;
            match substitute_text(text, span, scope, file, origins) {
                Ok(Some(mut value)) => {
                    // A zero-length span at the reference: diagnostics point at it, and no
                    // number is read back from the reference's text.
                    respan(&mut value, ByteSpan::new(span.start, 0));
                    *node = value;
                }
                Ok(None) => {}
                Err(problem) => problems.push(*problem),
            }
        }
        _ => {}
    }
}

/// Gives every node of a value the span of the place it lands in.
pub fn respan(node: &mut Node, span: ByteSpan) {
    node.span = span;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| respan(n, span)),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, n)| {
            k.span = span;
            respan(n, span);
        }),
        _ => {}
    }
}

/// The string's value once its references are resolved (`None`: it holds none, only `$${{`).
fn substitute_text(
    text: &str,
    span: ByteSpan,
    scope: &Scope<'_>,
    file: FileId,
    origins: &mut Origins,
) -> Result<Option<Node>, Box<Problem>> {
    // A field that is one reference (and nothing else, not even a newline) takes its value
    // whole.
    if let Some(inner) = text
        .strip_prefix(OPEN)
        .and_then(|rest| rest.strip_suffix(CLOSE))
        && !inner.contains(OPEN)
        && !inner.contains(CLOSE)
    {
        let value = resolve(inner.trim(), span, scope, file)?;
        if let Some(at) = &value.at {
            origins.push((span, at.clone()));
        }
        return Ok(Some(value.node));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find(OPEN) {
        // `$${{` is a literal `${{`.
        if at > 0 && rest.as_bytes()[at - 1] == b'$' {
            out.push_str(&rest[..at - 1]);
            out.push_str(OPEN);
            rest = &rest[at + OPEN.len()..];
            changed = true;
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else {
            return Err(Box::new(
                Problem::error(
                    "nimbus::module::reference",
                    "`${{` is not closed with `}}`",
                    Label::new(file, span, "unclosed reference"),
                )
                .with_help("write `${{ inputs.NAME }}`, or `$${{` for a literal `${{`"),
            ));
        };
        let value = resolve(after[..end].trim(), span, scope, file)?;
        let piece = match &value.node.value {
            Value::String(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(Box::new(
                    Problem::error(
                        "nimbus::module::reference",
                        format!(
                            "`{}` is {}, which cannot be written inside a string",
                            after[..end].trim(),
                            value.node.kind_name()
                        ),
                        Label::new(file, span, "a string with a reference in it"),
                    )
                    .with_help("make the field the reference alone (`field: ${{ inputs.NAME }}`) to take a list or map whole"),
                ));
            }
        };
        if let Some(at) = &value.at {
            origins.push((span, at.clone()));
        }
        out.push_str(&piece);
        rest = &after[end + CLOSE.len()..];
        changed = true;
    }
    out.push_str(rest);
    Ok(changed.then(|| Node::new(Value::String(out), span)))
}

/// One reference: `inputs.NAME[.KEY...]`, `module.name`, `module.key`, `each.key`,
/// `each.value[.KEY...]`, `env.NAME[.KEY...]`.
fn resolve(
    expression: &str,
    span: ByteSpan,
    scope: &Scope<'_>,
    file: FileId,
) -> Result<Sourced, Box<Problem>> {
    let fail = |message: String, help: String| {
        Box::new(
            Problem::error(
                "nimbus::module::reference",
                message,
                Label::new(file, span, "this reference"),
            )
            .with_help(help),
        )
    };
    let mut parts = expression.split('.');
    let root = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let (base, path): (Sourced, &[&str]) = match root {
        "inputs" => {
            let Some(inputs) = scope.inputs else {
                return Err(fail(
                    format!("`{expression}`: inputs are read only inside a module"),
                    "give the value itself here".into(),
                ));
            };
            let Some(name) = rest.first() else {
                return Err(fail(
                    "`inputs` needs an input's name".into(),
                    "write `${{ inputs.NAME }}`".into(),
                ));
            };
            let found = inputs
                .get(*name)
                .or_else(|| inputs.get(&kebab_to_camel(name)));
            let Some(value) = found else {
                let names: Vec<&str> = inputs.keys().map(String::as_str).collect();
                return Err(fail(
                    format!("the module has no input `{name}`"),
                    match crate::diagnostics::did_you_mean(name, names.iter().copied()) {
                        Some(close) => format!("did you mean `inputs.{close}`?"),
                        None if names.is_empty() => {
                            "the module declares no inputs: add it under `inputs:` in module.yaml"
                                .into()
                        }
                        None => format!("the module's inputs are: {}", names.join(", ")),
                    },
                ));
            };
            (value.clone(), &rest[1..])
        }
        "module" => {
            let Some((name, key)) = scope.module else {
                return Err(fail(
                    format!("`{expression}` is read only inside a module"),
                    "give the value itself here".into(),
                ));
            };
            let text = match rest.as_slice() {
                ["name"] => name,
                ["key"] => key,
                _ => {
                    return Err(fail(
                        format!("`{expression}` is not known"),
                        "a module can read `module.name` (its use's name) and `module.key` (its forEach key, else its name)".into(),
                    ));
                }
            };
            (
                Sourced {
                    node: Node::new(Value::String(text.to_owned()), span),
                    at: None,
                },
                &[][..],
            )
        }
        "each" => {
            let Some((key, value)) = scope.each else {
                return Err(fail(
                    format!("`{expression}` is read only in a Use with `forEach`"),
                    "add `forEach:` to the Use, or give the value itself".into(),
                ));
            };
            match rest.split_first() {
                Some((&"key", [])) => (
                    Sourced {
                        node: Node::new(Value::String(key.to_owned()), span),
                        at: None,
                    },
                    &[][..],
                ),
                Some((&"value", path)) => (value.clone(), path),
                _ => {
                    return Err(fail(
                        format!("`{expression}` is not known"),
                        "write `each.key` or `each.value`".into(),
                    ));
                }
            }
        }
        "env" => {
            let Some(values) = scope.env else {
                return Err(if scope.env_allowed {
                    fail(
                        format!("`{expression}` needs an environment, and none is chosen"),
                        "choose one with --env NAME (nimbus validate checks every environment)"
                            .into(),
                    )
                } else {
                    fail(
                        format!(
                            "`{expression}`: environment values are read only by a Use at the repository's top"
                        ),
                        "pass the value to the module as an input".into(),
                    )
                });
            };
            let Some(name) = rest.first() else {
                return Err(fail(
                    "`env` needs a value's name".into(),
                    "write `${{ env.NAME }}`".into(),
                ));
            };
            let Some(value) = values.get(*name) else {
                let names: Vec<&str> = values.keys().map(String::as_str).collect();
                return Err(fail(
                    format!("the environment has no value `{name}`"),
                    format!(
                        "its values are: {}; add `{name}` under the Environment's `values:`",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            };
            (value.clone(), &rest[1..])
        }
        _ => {
            return Err(fail(
                format!("`{expression}` is not a reference nimbus knows"),
                "references are `inputs.NAME`, `module.name`, `module.key`, `each.key`, `each.value` and `env.NAME`; write `$${{` for a literal `${{`".into(),
            ));
        }
    };
    let mut value = base;
    for key in path {
        let next = value.node.get(key).cloned();
        match next {
            Some(node) => value.node = node,
            None => {
                return Err(fail(
                    format!(
                        "`{expression}`: there is no `{key}` in {}",
                        value.node.kind_name()
                    ),
                    "name a key the map has".into(),
                ));
            }
        }
    }
    Ok(value)
}

/// A JSON value (a default, an allowed value) as a tree node at `span`.
pub fn node_of_json(value: &serde_json::Value, span: ByteSpan) -> Node {
    let inner = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => {
            Value::Seq(items.iter().map(|v| node_of_json(v, span)).collect())
        }
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| {
                    (
                        Key {
                            name: k.clone(),
                            span,
                        },
                        node_of_json(v, span),
                    )
                })
                .collect(),
        ),
    };
    Node::new(inner, span)
}

/// A tree node as JSON, for comparing values.
pub fn json_of_node(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Value::from(*f),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(json_of_node).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (kebab_to_camel(&k.name), json_of_node(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Node {
        Node::new(Value::String(text.into()), ByteSpan::new(10, 5))
    }

    fn inputs() -> BTreeMap<String, Sourced> {
        let list = Node::new(
            Value::Seq(vec![string("a"), string("b")]),
            ByteSpan::new(100, 3),
        );
        [
            (
                "replicas".to_owned(),
                Sourced {
                    node: Node::new(Value::Int(3), ByteSpan::new(50, 1)),
                    at: Some(Label::new(7, ByteSpan::new(50, 1), "given here")),
                },
            ),
            (
                "hosts".to_owned(),
                Sourced {
                    node: list,
                    at: None,
                },
            ),
        ]
        .into()
    }

    #[test]
    fn a_whole_field_keeps_its_type_and_a_string_takes_text() {
        let inputs = inputs();
        let scope = Scope {
            inputs: Some(&inputs),
            module: Some(("web", "acme")),
            ..Scope::default()
        };
        let mut origins = Vec::new();
        let mut problems = Vec::new();
        let mut whole = string("${{ inputs.replicas }}");
        substitute(&mut whole, &scope, 0, &mut origins, &mut problems);
        assert_eq!(whole.value, Value::Int(3));
        assert_eq!(whole.span, ByteSpan::new(10, 0), "the module's place");
        assert_eq!(origins.len(), 1, "the use's place is remembered");
        let mut list = string("${{ inputs.hosts }}");
        substitute(&mut list, &scope, 0, &mut origins, &mut problems);
        assert!(matches!(list.value, Value::Seq(ref items) if items.len() == 2));
        let mut text = string("api-${{ module.key }}-${{inputs.replicas}} costs $${{ x }}");
        substitute(&mut text, &scope, 0, &mut origins, &mut problems);
        assert_eq!(
            text.value,
            Value::String("api-acme-3 costs ${{ x }}".into())
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn unknown_references_and_lists_in_strings_are_problems() {
        let inputs = inputs();
        let scope = Scope {
            inputs: Some(&inputs),
            ..Scope::default()
        };
        let mut problems = Vec::new();
        for text in [
            "${{ inputs.replica }}",
            "x-${{ inputs.hosts }}",
            "${{ env.size }}",
            "${{ each.key }}",
            "${{ inputs.replicas",
            "${{ shell(rm) }}",
        ] {
            let mut node = string(text);
            substitute(&mut node, &scope, 0, &mut Vec::new(), &mut problems);
            assert_eq!(node.value, Value::String(text.into()), "left as written");
        }
        assert_eq!(problems.len(), 6);
        assert!(
            problems[0]
                .help
                .as_deref()
                .unwrap_or("")
                .contains("inputs.replicas")
        );
    }
}
