//! YAML documents into the span-carrying tree, through serde-saphyr.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Spanned};

use crate::tree::{ByteSpan, Key, Node, Value};

/// Nesting deeper than this is refused: no manifest needs it, and it keeps the parser's
/// recursion (about 40 KiB of stack a level in a debug build) bounded.
pub const MAX_DEPTH: usize = 32;

/// A YAML syntax problem: what went wrong and where.
#[derive(Debug)]
pub struct YamlError {
    pub message: String,
    pub span: ByteSpan,
}

fn span_of(location: &serde_saphyr::Location, text: &str) -> ByteSpan {
    let span = location.span();
    match (span.byte_offset(), span.byte_len()) {
        (Some(start), Some(len)) => {
            let start = usize::try_from(start).unwrap_or(usize::MAX).min(text.len());
            let len = usize::try_from(len).unwrap_or(0).min(text.len() - start);
            ByteSpan::new(start, len)
        }
        _ => line_column_offset(text, location.line(), location.column()),
    }
}

/// The byte offset of a 1-based line and character column.
fn line_column_offset(text: &str, line: u64, column: u64) -> ByteSpan {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let col = l
                .char_indices()
                .nth(column.saturating_sub(1) as usize)
                .map_or(l.len(), |(i, _)| i);
            return ByteSpan::new(offset + col, 0);
        }
        offset += l.len();
    }
    ByteSpan::new(text.len(), 0)
}

struct RawValue(Value);

struct RawNode(Node);

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<RawValue>::deserialize(deserializer)?;
        // Spans are fixed up to byte offsets by `parse`, which has the text.
        let location = spanned.referenced;
        let span = location.span();
        let start = span.byte_offset().unwrap_or(0) as usize;
        let len = span.byte_len().unwrap_or(0) as usize;
        Ok(RawNode(Node::new(spanned.value.0, ByteSpan::new(start, len))))
    }
}

struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match RawValue::deserialize(deserializer)?.0 {
            Value::String(s) => Ok(KeyText(s)),
            Value::Int(i) => Ok(KeyText(i.to_string())),
            Value::Float(f) => Ok(KeyText(f.to_string())),
            Value::Bool(b) => Ok(KeyText(b.to_string())),
            Value::Null => Ok(KeyText("null".into())),
            Value::Seq(_) | Value::Map(_) => {
                Err(de::Error::custom("a map key must be a plain string, not a list or map"))
            }
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
                Ok(RawValue(Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
                Ok(RawValue(Value::Null))
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
                RawValue::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
                Ok(RawValue(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
                Ok(RawValue(Value::Int(i128::from(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
                Ok(RawValue(Value::Int(i128::from(v))))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
                Ok(RawValue(Value::Int(v)))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawValue, E> {
                Ok(RawValue(Value::Int(i128::try_from(v).unwrap_or(i128::MAX))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
                Ok(RawValue(Value::Float(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
                Ok(RawValue(Value::String(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
                Ok(RawValue(Value::String(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawValue, E> {
                Ok(RawValue(Value::String(String::from_utf8_lossy(v).into_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
                let mut items = Vec::new();
                while let Some(RawNode(node)) = seq.next_element()? {
                    items.push(node);
                }
                Ok(RawValue(Value::Seq(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
                    let RawNode(value) = map.next_value()?;
                    let span = key.referenced.span();
                    let start = span.byte_offset().unwrap_or(0) as usize;
                    let len = span.byte_len().unwrap_or(0) as usize;
                    entries.push((Key { name: key.value.0, span: ByteSpan::new(start, len) }, value));
                }
                Ok(RawValue(Value::Map(entries)))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// An upper bound on the nesting depth of a YAML text, found line by line without parsing,
/// with the offset of the first line that goes past `limit`. Block scalars (`|`, `>`) are
/// skipped; flow brackets outside quotes count as levels.
fn first_too_deep(text: &str, limit: usize) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow_depth = 0usize;
    let mut block_scalar_indent: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        let content = content.trim_end();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some(scalar_indent) = block_scalar_indent {
            if indent > scalar_indent {
                continue;
            }
            block_scalar_indent = None;
        }
        if flow_depth == 0 {
            while indents.last().is_some_and(|&top| top >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        // Each `- ` at the start of a line opens one more level.
        let mut rest = content;
        let mut dashes = 0;
        while let Some(after) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("-\t")) {
            dashes += 1;
            rest = after.trim_start();
        }
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for c in rest.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') if matches!(previous, ' ' | '[' | '{' | ',' | ':') => quote = Some(c),
                (None, '[' | '{') if flow_depth > 0 || matches!(previous, ' ' | '[' | '{' | ',') => {
                    flow_depth += 1
                }
                (None, ']' | '}') if flow_depth > 0 => flow_depth -= 1,
                (None, '#') if previous == ' ' => break,
                _ => {}
            }
            previous = c;
        }
        if indents.len() + dashes + flow_depth > limit {
            return Some(line_start + indent);
        }
        if content.ends_with('|')
            || content.ends_with('>')
            || content.rsplit_once(' ').is_some_and(|(_, last)| {
                last.len() <= 3 && (last.starts_with('|') || last.starts_with('>'))
            })
        {
            block_scalar_indent = Some(indent);
        }
    }
    None
}

/// Parses every document of a YAML file. Empty documents are dropped.
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    if let Some(start) = first_too_deep(text, MAX_DEPTH) {
        return Err(YamlError {
            message: format!("nesting is deeper than {MAX_DEPTH} levels"),
            span: ByteSpan::new(start, 0),
        });
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        leading_zero_numbers_as_strings: true,
        budget: Some(budget),
    };
    match serde_saphyr::from_str_multiple_with_options::<RawNode, Vec<RawNode>>(text, options) {
        Ok(nodes) => Ok(nodes
            .into_iter()
            .map(|n| n.0)
            .filter(|n| n.value != Value::Null)
            .collect()),
        Err(error) => {
            let span = error
                .location()
                .map(|l| span_of(&l, text))
                .unwrap_or_default();
            let rendered = error.render_with_options(serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
            });
            let message = rendered
                .lines()
                .next()
                .unwrap_or("invalid YAML");
            // The location is shown by the diagnostic itself.
            let message = match message.rfind(" at line ") {
                Some(i) => &message[..i],
                None => message,
            }
            .to_owned();
            Err(YamlError { message, span })
        }
    }
}
