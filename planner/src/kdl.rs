//! KDL 2.0 documents into the span-carrying tree (SPEC §2's mapping; see docs/manifests.md).
//!
//! Each top-level node is one resource: the node name is the kind in kebab-case, the first
//! argument the resource's name, `labels`/`annotations` children the metadata, and every
//! other child a spec field:
//! - a child with one argument is a scalar (or a list of one where a list is expected),
//!   with several arguments a list;
//! - a child with properties is a map (`hosts role=web`);
//! - a child with children is a map of them, or a list when every child is named `-`;
//! - a child repeated under the same name is a list of its values.

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};

use crate::tree::MAX_DEPTH;
use crate::tree::{ByteSpan, Key, Node, Value};

/// The envelope of one manifest, from either syntax.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The whole document (YAML) or node (KDL).
    pub span: ByteSpan,
    pub api_version: Option<Node>,
    pub kind: Option<Node>,
    pub metadata: Option<Node>,
    pub spec: Option<Node>,
    /// Top-level keys that are none of the above.
    pub unknown: Vec<Key>,
}

#[derive(Debug)]
pub struct KdlProblem {
    pub message: String,
    pub span: ByteSpan,
    pub label: Option<String>,
    pub help: Option<String>,
}

fn span(source: miette::SourceSpan) -> ByteSpan {
    ByteSpan::new(source.offset(), source.len())
}

fn problem(message: impl Into<String>, at: ByteSpan, help: Option<&str>) -> KdlProblem {
    KdlProblem {
        message: message.into(),
        span: at,
        label: None,
        help: help.map(str::to_owned),
    }
}

/// The deepest `{` nesting outside strings and comments, and where it first passes `limit`.
fn first_too_deep(text: &str, limit: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses a KDL file into one envelope per top-level node.
pub fn parse(text: &str) -> Result<Vec<Envelope>, Vec<KdlProblem>> {
    if let Some(at) = first_too_deep(text, MAX_DEPTH) {
        return Err(vec![problem(
            format!("nesting is deeper than {MAX_DEPTH} levels"),
            ByteSpan::new(at, 1),
            None,
        )]);
    }
    let document = match KdlDocument::parse_v2(text) {
        Ok(document) => document,
        Err(error) => {
            if KdlDocument::parse_v1(text).is_ok() {
                let first_line = text.lines().next().map_or(0, str::len);
                return Err(vec![problem(
                    "this is KDL 1.0; nimbus reads KDL 2.0",
                    ByteSpan::new(0, first_line),
                    Some(
                        "KDL 2.0 writes booleans and null as #true, #false and #null, and raw strings as #\"...\"#; \
                         see docs/manifests.md (KDL syntax) for the changes",
                    ),
                )]);
            }
            let mut problems: Vec<KdlProblem> = error
                .diagnostics
                .into_iter()
                .map(|d| {
                    let mut at = span(d.span);
                    // The parser often blames a whole node; point at an unquoted quantity in
                    // it when there is one, which is the usual culprit.
                    if let Some(token) = text.get(at.start..at.end()).and_then(quantity_token) {
                        at = ByteSpan::new(at.start + token.0, token.1);
                    } else if d.message.as_deref().is_some_and(|m| m.contains("value"))
                        && let Some(token) = quantity_token(text)
                    {
                        at = ByteSpan::new(token.0, token.1);
                    }
                    let word = text.get(at.start..at.end()).unwrap_or("");
                    let token = word.split_whitespace().find(|t| starts_like_quantity(t));
                    let help = match (word, token) {
                        ("true" | "false" | "null", _) => Some(format!(
                            "KDL 2.0 writes `{word}` as `#{word}`; a bare `{word}` is not allowed (that is KDL 1.0)"
                        )),
                        (w, _) if w.starts_with("r\"") || w.starts_with("r#") => Some(
                            "`r\"...\"` is a KDL 1.0 raw string; KDL 2.0 writes `#\"...\"#`".to_owned(),
                        ),
                        (_, Some(token)) => {
                            let value = token.rsplit('=').next().unwrap_or(token);
                            Some(format!(
                                "a value that starts with a digit but is not a number must be quoted in KDL: write \"{value}\""
                            ))
                        }
                        _ => d.help,
                    };
                    KdlProblem {
                        message: d.message.unwrap_or_else(|| "invalid KDL".into()),
                        span: at,
                        label: d.label,
                        help,
                    }
                })
                .collect();
            // Later diagnostics of a broken file mostly cascade from the first one.
            problems.truncate(1);
            if problems.is_empty() {
                problems.push(problem("invalid KDL", ByteSpan::default(), None));
            }
            return Err(problems);
        }
    };
    let mut envelopes = Vec::new();
    let mut problems = Vec::new();
    for node in document.nodes() {
        match envelope(node) {
            Ok(envelope) => envelopes.push(envelope),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(envelopes)
    } else {
        Err(problems)
    }
}

/// The offset and length of the first unquoted token in `text` that looks like a quantity.
fn quantity_token(text: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let code = line.split("//").next().unwrap_or(line);
        let mut in_string = false;
        let mut start = None;
        for (i, c) in code.char_indices() {
            if c == '"' {
                in_string = !in_string;
            }
            let boundary = c.is_whitespace() || c == '{' || c == '}' || c == ';';
            match (start, boundary || in_string) {
                (None, false) => start = Some(i),
                (Some(s), true) => {
                    if starts_like_quantity(&code[s..i]) {
                        return Some((offset + s, i - s));
                    }
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start
            && starts_like_quantity(code[s..].trim_end())
        {
            return Some((offset + s, code[s..].trim_end().len()));
        }
        offset += line.len();
    }
    None
}

/// `512Mi`, `500m`, `cpu=2x`: a digit followed by letters, which KDL reads as a broken number.
fn starts_like_quantity(token: &str) -> bool {
    let value = token.rsplit('=').next().unwrap_or(token);
    value.starts_with(|c: char| c.is_ascii_digit())
        && value.chars().any(|c| c.is_ascii_alphabetic())
        && !value.starts_with("0x")
        && !value.starts_with("0o")
        && !value.starts_with("0b")
}

fn string_node(text: &str, at: ByteSpan) -> Node {
    Node::new(Value::String(text.to_owned()), at)
}

fn envelope(node: &KdlNode) -> Result<Envelope, Vec<KdlProblem>> {
    let node_span = span(node.span());
    let kind_span = span(node.name().span());
    let mut problems = Vec::new();
    let mut metadata: Vec<(Key, Node)> = Vec::new();
    let mut spec: Vec<(Key, Node)> = Vec::new();
    let mut api_version = None;
    let mut arguments = node.entries().iter().filter(|e| e.name().is_none());
    if let Some(name) = arguments.next() {
        let at = span(name.span());
        metadata.push((
            Key {
                name: "name".into(),
                span: at,
            },
            scalar(name.value(), at),
        ));
    }
    for extra in arguments {
        problems.push(problem(
            "a resource node takes one argument, its name",
            span(extra.span()),
            Some("put spec fields in the node's children block: `host web-1 { address \"192.0.2.10\" }`"),
        ));
    }
    for property in node.entries().iter().filter(|e| e.name().is_some()) {
        if let Some((key, value)) = property_entry(property) {
            spec.push((key, value));
        }
    }
    if let Some(children) = node.children() {
        for child in children.nodes() {
            let name = child.name().value();
            let key = Key {
                name: name.to_owned(),
                span: span(child.name().span()),
            };
            match name {
                "labels" | "annotations" => match node_value(child, 1) {
                    Ok(value) => metadata.push((key, value)),
                    Err(mut p) => problems.append(&mut p),
                },
                "api-version" | "apiVersion" => match node_value(child, 1) {
                    Ok(value) => api_version = Some(value),
                    Err(mut p) => problems.append(&mut p),
                },
                _ => match node_value(child, 1) {
                    Ok(value) => push_merging(&mut spec, key, value),
                    Err(mut p) => problems.append(&mut p),
                },
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let body_span = node.children().map_or(node_span, |c| span(c.span()));
    Ok(Envelope {
        span: node_span,
        api_version,
        kind: Some(string_node(node.name().value(), kind_span)),
        metadata: Some(Node::new(Value::Map(metadata), kind_span)),
        spec: Some(Node::new(Value::Map(spec), body_span)),
        unknown: Vec::new(),
    })
}

/// Adds a map entry; a repeated key turns into a list of the values.
fn push_merging(entries: &mut Vec<(Key, Node)>, key: Key, value: Node) {
    if let Some((_, existing)) = entries.iter_mut().find(|(k, _)| k.name == key.name) {
        let previous = std::mem::replace(existing, Node::new(Value::Null, ByteSpan::default()));
        let span = previous.span.join(value.span);
        let mut items = match previous.value {
            Value::Seq(items) => items,
            _ => vec![previous],
        };
        match value.value {
            Value::Seq(more) => items.extend(more),
            _ => items.push(value),
        }
        *existing = Node::new(Value::Seq(items), span);
    } else {
        entries.push((key, value));
    }
}

fn scalar(value: &KdlValue, at: ByteSpan) -> Node {
    let value = match value {
        KdlValue::String(s) => Value::String(s.clone()),
        // Integers beyond 64 bits fit no field; keep their digits for the error message.
        KdlValue::Integer(i) => {
            i64::try_from(*i).map_or_else(|_| Value::String(i.to_string()), Value::Int)
        }
        KdlValue::Float(f) => Value::Float(*f),
        KdlValue::Bool(b) => Value::Bool(*b),
        KdlValue::Null => Value::Null,
    };
    Node::new(value, at)
}

fn property_entry(entry: &KdlEntry) -> Option<(Key, Node)> {
    let name = entry.name()?;
    let key = Key {
        name: name.value().to_owned(),
        span: span(name.span()),
    };
    Some((key, scalar(entry.value(), span(entry.span()))))
}

fn node_value(node: &KdlNode, depth: usize) -> Result<Node, Vec<KdlProblem>> {
    let node_span = span(node.span());
    let arguments: Vec<&KdlEntry> = node
        .entries()
        .iter()
        .filter(|e| e.name().is_none())
        .collect();
    let properties: Vec<&KdlEntry> = node
        .entries()
        .iter()
        .filter(|e| e.name().is_some())
        .collect();
    let name = node.name().value();
    if depth > MAX_DEPTH {
        return Err(vec![problem(
            format!("nesting is deeper than {MAX_DEPTH} levels"),
            node_span,
            None,
        )]);
    }
    if let Some(children) = node.children() {
        if !arguments.is_empty() || !properties.is_empty() {
            return Err(vec![problem(
                format!("`{name}` has both values and a children block"),
                node_span,
                Some(
                    "give a field either values (`quota cpu=4`) or a children block (`quota { cpu 4 }`), not both",
                ),
            )]);
        }
        let nodes = children.nodes();
        let body_span = span(children.span());
        if !nodes.is_empty() && nodes.iter().all(|n| n.name().value() == "-") {
            let mut items = Vec::new();
            let mut problems = Vec::new();
            for item in nodes {
                match node_value(item, depth + 1) {
                    Ok(value) => items.push(value),
                    Err(mut p) => problems.append(&mut p),
                }
            }
            return if problems.is_empty() {
                Ok(Node::new(Value::Seq(items), body_span))
            } else {
                Err(problems)
            };
        }
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for child in nodes {
            let key = Key {
                name: child.name().value().to_owned(),
                span: span(child.name().span()),
            };
            match node_value(child, depth + 1) {
                Ok(value) => push_merging(&mut entries, key, value),
                Err(mut p) => problems.append(&mut p),
            }
        }
        return if problems.is_empty() {
            Ok(Node::new(Value::Map(entries), body_span))
        } else {
            Err(problems)
        };
    }
    if !properties.is_empty() {
        if !arguments.is_empty() {
            return Err(vec![problem(
                format!("`{name}` mixes values and key=value properties"),
                node_span,
                Some(
                    "write either `field \"value\"` or `field key=value ...`; for a list of maps use children named `-`",
                ),
            )]);
        }
        let mut entries = Vec::new();
        for property in properties {
            if let Some((key, value)) = property_entry(property) {
                entries.push((key, value));
            }
        }
        return Ok(Node::new(Value::Map(entries), node_span));
    }
    match arguments.as_slice() {
        [] => Ok(Node::new(Value::Map(Vec::new()), node_span)),
        [one] => Ok(scalar(one.value(), span(one.span()))),
        many => Ok(Node::new(
            Value::Seq(
                many.iter()
                    .map(|e| scalar(e.value(), span(e.span())))
                    .collect(),
            ),
            node_span,
        )),
    }
}
