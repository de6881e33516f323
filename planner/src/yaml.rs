//! YAML documents into the span-carrying tree, built from the event stream of serde-saphyr's
//! parser (granit-parser) with an explicit stack: no recursion, so no input can overflow the
//! stack, and no per-node allocation beyond the tree itself.
//!
//! Plain scalars are resolved by YAML 1.2's core schema (`no` stays a string), except that a
//! number with a leading zero (`0644`) stays a string, so file modes keep their octal digits.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, ScalarStyle, StructureStyle};

use std::collections::BTreeMap;

use crate::diagnostics::{FileId, Label, Problem};
use crate::kdl::Envelope;
use crate::tree::{ByteSpan, Key, Node, Value};

pub use crate::tree::MAX_DEPTH;

/// Aliases may not expand a file past this many nodes (a "billion laughs" stays small).
pub const MAX_NODES: usize = 1_000_000;

/// A YAML syntax problem: what went wrong and where.
#[derive(Debug)]
pub struct YamlError {
    pub message: String,
    pub span: ByteSpan,
}

fn offset(marker: &Marker, text: &str) -> usize {
    marker.byte_offset().unwrap_or_else(|| {
        // Only reader inputs lack byte offsets; fall back to the character index.
        text.char_indices()
            .nth(marker.index())
            .map_or(text.len(), |(i, _)| i)
    })
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: usize,
        flow: bool,
        anchor: usize,
    },
    Map {
        entries: Vec<(Key, Node)>,
        key: Option<Key>,
        start: usize,
        flow: bool,
        anchor: usize,
    },
}

fn error(message: impl Into<String>, at: usize) -> YamlError {
    YamlError {
        message: message.into(),
        span: ByteSpan::new(at, 0),
    }
}

/// Parses every document of a YAML file. Empty documents are dropped.
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut nodes = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            let message = e.info();
            let message = message.lines().next().unwrap_or("invalid YAML");
            let message = if message.contains("recursion limit") {
                format!("nesting is deeper than {MAX_DEPTH} levels")
            } else {
                message.to_owned()
            };
            error(message, offset(e.marker(), text))
        })?;
        let start = offset(&span.start, text);
        let end = offset(&span.end, text).max(start);
        let finished = match event {
            Event::Scalar(value, style, anchor, tag) => {
                let plain =
                    style == ScalarStyle::Plain && tag.as_ref().is_none_or(|t| t.suffix() != "str");
                let node = Node::new(
                    if plain {
                        resolve_plain(&value)
                    } else {
                        Value::String(value.into_owned())
                    },
                    ByteSpan::new(start, end - start),
                );
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::SequenceStart(style, anchor, _) => {
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    start,
                    flow: style == StructureStyle::Flow,
                    anchor,
                });
                None
            }
            Event::MappingStart(style, anchor, _) => {
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    start,
                    flow: style == StructureStyle::Flow,
                    anchor,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    start,
                    flow,
                    anchor,
                }) => {
                    let node = Node::new(Value::Seq(items), collection_span(start, end, flow));
                    if anchor != 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    Some(node)
                }
                Some(Frame::Map {
                    entries,
                    start,
                    flow,
                    anchor,
                    ..
                }) => {
                    let node = Node::new(
                        Value::Map(merge_keys(entries)),
                        collection_span(start, end, flow),
                    );
                    if anchor != 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    Some(node)
                }
                None => return Err(error("unbalanced end of a collection", start)),
            },
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => {
                    nodes += count_nodes(node);
                    if nodes > MAX_NODES {
                        return Err(error(
                            format!("aliases expand this file past {MAX_NODES} nodes"),
                            start,
                        ));
                    }
                    let mut copy = node.clone();
                    copy.span = ByteSpan::new(start, end - start);
                    Some(copy)
                }
                None => return Err(error("alias to an unknown anchor", start)),
            },
            Event::UnresolvedAlias(name) => {
                return Err(error(format!("alias `*{name}` has no anchor"), start));
            }
            _ => None,
        };
        if stack.len() > MAX_DEPTH {
            return Err(error(
                format!("nesting is deeper than {MAX_DEPTH} levels"),
                start,
            ));
        }
        let Some(node) = finished else { continue };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(error(
                format!("this file has more than {MAX_NODES} nodes"),
                start,
            ));
        }
        match stack.last_mut() {
            None => {
                if node.value != Value::Null {
                    documents.push(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let name = match &node.value {
                        Value::String(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => "null".into(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(error(
                                "a map key must be a plain string, not a list or map",
                                node.span.start,
                            ));
                        }
                    };
                    *key = Some(Key {
                        name,
                        span: node.span,
                    });
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(documents)
}

/// A flow collection (`{role: web}`) is labelled whole; a block collection at its start only,
/// so that a label on a map does not cover the rest of the document.
fn collection_span(start: usize, end: usize, flow: bool) -> ByteSpan {
    if flow {
        ByteSpan::new(start, end - start)
    } else {
        ByteSpan::new(start, 0)
    }
}

fn count_nodes(node: &Node) -> usize {
    let mut count = 0;
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        count += 1;
        match &n.value {
            Value::Seq(items) => stack.extend(items),
            Value::Map(entries) => stack.extend(entries.iter().map(|(_, v)| v)),
            _ => {}
        }
    }
    count
}

/// `<<: *base` (or a list of them) merges the entries of those maps that the map does not set
/// itself.
fn merge_keys(entries: Vec<(Key, Node)>) -> Vec<(Key, Node)> {
    if !entries.iter().any(|(k, _)| k.name == "<<") {
        return entries;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) =
        entries.into_iter().partition(|(k, _)| k.name == "<<");
    for (_, merge) in merges {
        let sources = match merge.value {
            Value::Map(map) => vec![map],
            Value::Seq(items) => items
                .into_iter()
                .filter_map(|n| match n.value {
                    Value::Map(map) => Some(map),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for source in sources {
            for (key, value) in source {
                if !own.iter().any(|(k, _)| k.name == key.name) {
                    own.push((key, value));
                }
            }
        }
    }
    own
}

/// YAML 1.2 core schema for plain scalars, keeping leading-zero numbers as strings.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return Value::String(text.to_owned());
    }
    if let Some(octal) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(octal, 8)
    {
        return Value::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    let digits = text.trim_start_matches(['-', '+']);
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
    if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.is_empty() {
        if leading_zero {
            return Value::String(text.to_owned());
        }
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
    }
    let float_like = !digits.is_empty()
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit())
        && !leading_zero;
    if float_like && let Ok(f) = text.parse::<f64>() {
        return Value::Float(f);
    }
    Value::String(text.to_owned())
}

pub(crate) fn yaml_syntax_help(message: &str) -> Option<String> {
    if message.contains("tab") {
        Some("YAML indents with spaces only; replace the tabs with spaces".into())
    } else {
        Some("check the indentation and the brackets and quotes around this place".into())
    }
}

/// Reports every key that appears twice in the same map, at both places, and keeps only the
/// first so that the same mistake is not reported again as a duplicate field.
pub(crate) fn drop_duplicate_keys(root: &mut Node, file: FileId, problems: &mut Vec<Problem>) {
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        match &mut node.value {
            Value::Map(entries) => {
                let mut seen: BTreeMap<String, ByteSpan> = BTreeMap::new();
                entries.retain(|(key, _)| match seen.get(&key.name) {
                    Some(first) => {
                        problems.push(
                            Problem::error(
                                "nimbus::yaml::duplicate_key",
                                format!("duplicate key `{}`", key.name),
                                Label::new(file, key.span, "set again here"),
                            )
                            .with_label(Label::new(file, *first, "first set here"))
                            .with_help("remove one of them; YAML maps may not repeat a key"),
                        );
                        false
                    }
                    None => {
                        seen.insert(key.name.clone(), key.span);
                        true
                    }
                });
                stack.extend(entries.iter_mut().map(|(_, value)| value));
            }
            Value::Seq(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

pub(crate) fn yaml_envelope(node: Node) -> Result<Envelope, ByteSpan> {
    let span = node.span;
    let Value::Map(entries) = node.value else {
        return Err(span);
    };
    let mut envelope = Envelope {
        span: entries.first().map_or(span, |(k, _)| k.span),
        api_version: None,
        kind: None,
        metadata: None,
        spec: None,
        unknown: Vec::new(),
    };
    for (key, value) in entries {
        let slot = match key.name.as_str() {
            "apiVersion" => &mut envelope.api_version,
            "kind" => &mut envelope.kind,
            "metadata" => &mut envelope.metadata,
            "spec" => &mut envelope.spec,
            _ => {
                envelope.unknown.push(key);
                continue;
            }
        };
        *slot = Some(value);
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        parse(&format!("v: {text}\n"))
            .ok()
            .and_then(|mut d| d.pop())
            .and_then(|n| n.get("v").cloned())
            .map_or(Value::Null, |n| n.value)
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        assert_eq!(value("12"), Value::Int(12));
        assert_eq!(value("-3"), Value::Int(-3));
        assert_eq!(value("0o755"), Value::Int(0o755));
        assert_eq!(value("0644"), Value::String("0644".into()));
        assert_eq!(value("1.5"), Value::Float(1.5));
        assert_eq!(value("true"), Value::Bool(true));
        assert_eq!(value("no"), Value::String("no".into()));
        assert_eq!(value("~"), Value::Null);
        assert_eq!(value("'12'"), Value::String("12".into()));
        assert_eq!(value("10.0.0.1"), Value::String("10.0.0.1".into()));
        assert_eq!(value("512Mi"), Value::String("512Mi".into()));
        assert_eq!(value("1e3"), Value::Float(1000.0));
    }

    #[test]
    fn spans_are_byte_ranges_of_keys_and_values() {
        let text = "a: 1\nb: {c: [x, 'y']}\n";
        let docs = parse(text).unwrap_or_default();
        let b = docs[0]
            .get("b")
            .cloned()
            .unwrap_or_else(|| Node::new(Value::Null, ByteSpan::default()));
        assert_eq!(&text[b.span.start..b.span.end()], "{c: [x, 'y']}");
        let (key, _) = docs[0]
            .entry("b")
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap_or_else(|| panic!("no b"));
        assert_eq!(&text[key.span.start..key.span.end()], "b");
    }

    #[test]
    fn documents_anchors_and_merges() {
        let text = "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n---\n---\nz: 1\n";
        let docs = parse(text).unwrap_or_default();
        assert_eq!(docs.len(), 2);
        let derived = docs[0]
            .get("derived")
            .cloned()
            .unwrap_or_else(|| panic!("no derived"));
        assert_eq!(
            derived.get("x").map(|n| n.value.clone()),
            Some(Value::Int(1))
        );
        assert_eq!(
            derived.get("y").map(|n| n.value.clone()),
            Some(Value::Int(3))
        );
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_refused() {
        assert!(parse(&"[".repeat(10_000)).is_err());
        assert!(parse(&("- ".repeat(10_000) + "x")).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let message = parse(&bomb)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.message);
        assert!(message.contains("nodes"), "{message}");
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let error = parse("a: [1, 2\nb: 3\n")
            .err()
            .unwrap_or_else(|| panic!("parsed"));
        assert!(error.span.start > 0, "{error:?}");
        let error = parse("a:\n\tb: 1\n")
            .err()
            .unwrap_or_else(|| panic!("parsed"));
        assert!(error.message.contains("tab"), "{error:?}");
    }
}
