//! Typed values out of the span-carrying tree: a serde deserializer that knows where every
//! value came from, collects every unknown field of a document in one pass, and attaches the
//! span of the offending node to any error.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use crate::diagnostics::{FileId, Label, Problem, did_you_mean};
use crate::tree::{ByteSpan, Key, Node, Value, camel_to_kebab, kebab_to_camel};

/// What kind of problem a deserialization error is; it picks the diagnostic code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidType,
    InvalidValue,
    MissingField,
    UnknownField,
}

#[derive(Clone, Debug)]
pub struct DeError {
    pub kind: ErrorKind,
    pub message: String,
    pub help: Option<String>,
    pub span: Option<ByteSpan>,
    /// The field path from the document's spec down to the value, innermost last.
    pub path: Vec<String>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            kind: ErrorKind::InvalidValue,
            message: msg.to_string(),
            help: None,
            span: None,
            path: Vec::new(),
        }
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        DeError {
            kind: ErrorKind::InvalidType,
            message: format!("expected {expected}, found {unexpected}"),
            help: None,
            span: None,
            path: Vec::new(),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let help = match did_you_mean(variant, expected.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("use one of: {}", expected.join(", ")),
        };
        DeError {
            kind: ErrorKind::InvalidValue,
            message: format!(
                "unknown value `{variant}`; expected one of: {}",
                expected.join(", ")
            ),
            help: Some(help),
            span: None,
            path: Vec::new(),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let help = match did_you_mean(field, expected.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("the fields here are: {}", expected.join(", ")),
        };
        DeError {
            kind: ErrorKind::UnknownField,
            message: format!("unknown field `{field}`"),
            help: Some(help),
            span: None,
            path: Vec::new(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            kind: ErrorKind::MissingField,
            message: format!("missing field `{field}`"),
            help: None,
            span: None,
            path: Vec::new(),
        }
    }
}

impl DeError {
    fn within(mut self, segment: String) -> Self {
        self.path.insert(0, segment);
        self
    }

    fn at(mut self, span: ByteSpan) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }
}

/// Shared by every deserializer over one document: unknown fields found so far.
#[derive(Debug, Default)]
pub struct Context<'text> {
    /// Keys in KDL are kebab-case; in YAML they are camelCase.
    pub kdl: bool,
    pub unknown_fields: RefCell<Vec<DeError>>,
    /// The source text, for numbers read as strings (`version: 1.30` stays "1.30").
    pub text: &'text str,
}

/// Deserializes `T` from `node`; returns the value or the first error, and records every
/// unknown field in `context`.
pub fn from_node<'de, T: de::Deserialize<'de>>(
    node: &'de Node,
    context: &'de Context<'de>,
) -> Result<T, DeError> {
    T::deserialize(NodeDeserializer { node, context }).map_err(|e| e.at(node.span))
}

#[derive(Clone, Copy)]
struct NodeDeserializer<'a> {
    node: &'a Node,
    context: &'a Context<'a>,
}

impl<'a> NodeDeserializer<'a> {
    fn raw_text(&self) -> Option<&'a str> {
        let span = self.node.span;
        if self.context.kdl || span.len == 0 {
            return None;
        }
        self.context.text.get(span.start..span.end()).map(str::trim)
    }

    fn scalar_text(&self) -> Option<String> {
        match &self.node.value {
            Value::String(s) => Some(s.clone()),
            Value::Int(i) => Some(self.raw_text().map_or_else(|| i.to_string(), str::to_owned)),
            Value::Float(f) => Some(self.raw_text().map_or_else(|| f.to_string(), str::to_owned)),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.value {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Int(i) => de::Unexpected::Signed(*i),
            Value::Float(f) => de::Unexpected::Float(*f),
            Value::String(s) => de::Unexpected::Str(s),
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        }
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => match u64::try_from(*i) {
                Ok(v) => visitor.visit_u64(v),
                Err(_) => visitor.visit_i64(*i),
            },
            Value::Float(f) => visitor.visit_f64(*f),
            Value::String(s) => visitor.visit_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                context: self.context,
                index: 0,
            }),
            Value::Map(entries) => visitor.visit_map(MapAccess::new(entries, self.context, None)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match (&self.node.value, self.scalar_text()) {
            (Value::String(s), _) => visitor.visit_str(s),
            (_, Some(text)) => visitor.visit_string(text),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                context: self.context,
                index: 0,
            }),
            // In KDL a single argument is also a list of one: `depends-on "File/a"`.
            Value::Null => visitor.visit_seq(SeqAccess {
                items: [].iter(),
                context: self.context,
                index: 0,
            }),
            _ if self.context.kdl => visitor.visit_seq(SeqAccess {
                items: std::slice::from_ref(self.node).iter(),
                context: self.context,
                index: 0,
            }),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => visitor.visit_map(MapAccess::new(entries, self.context, None)),
            Value::Null => visitor.visit_map(MapAccess::new(&[], self.context, None)),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => {
                visitor.visit_map(MapAccess::new(entries, self.context, Some(fields)))
            }
            Value::Null => visitor.visit_map(MapAccess::new(&[], self.context, Some(fields))),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar_text() {
            Some(text) => visitor.visit_enum(text.into_deserializer()),
            None => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
    context: &'a Context<'a>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDeserializer {
                    node,
                    context: self.context,
                })
                .map(Some)
                .map_err(|e| e.at(node.span).within(format!("[{}]", self.index)))
                .inspect(|_| self.index += 1),
            None => Ok(None),
        }
    }
}

struct MapAccess<'a> {
    entries: Vec<(&'a Key, &'a Node, &'a str)>,
    position: usize,
    context: &'a Context<'a>,
}

impl<'a> MapAccess<'a> {
    /// For a struct, keys that name no field are recorded as problems and skipped, so that
    /// every unknown field of a document is reported at once.
    fn new(
        entries: &'a [(Key, Node)],
        context: &'a Context<'a>,
        fields: Option<&'static [&'static str]>,
    ) -> Self {
        let mut kept = Vec::with_capacity(entries.len());
        for (key, node) in entries {
            let Some(fields) = fields else {
                kept.push((key, node, key.name.as_str()));
                continue;
            };
            let field = fields
                .iter()
                .copied()
                .find(|f| *f == key.name || (context.kdl && kebab_to_camel(&key.name) == *f));
            match field {
                Some(field) => kept.push((key, node, field)),
                None => {
                    let spelled: Vec<String> = if context.kdl {
                        fields.iter().map(|f| camel_to_kebab(f)).collect()
                    } else {
                        fields.iter().map(|f| (*f).to_owned()).collect()
                    };
                    let help = match did_you_mean(&key.name, spelled.iter().map(String::as_str)) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("the fields here are: {}", spelled.join(", ")),
                    };
                    context.unknown_fields.borrow_mut().push(DeError {
                        kind: ErrorKind::UnknownField,
                        message: format!("unknown field `{}`", key.name),
                        help: Some(help),
                        span: Some(key.span),
                        path: Vec::new(),
                    });
                }
            }
        }
        MapAccess {
            entries: kept,
            position: 0,
            context,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.get(self.position) {
            Some((key, _, field)) => seed
                .deserialize(field.into_deserializer())
                .map(Some)
                .map_err(|e: DeError| e.at(key.span)),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node, _) = self.entries[self.position];
        self.position += 1;
        seed.deserialize(NodeDeserializer {
            node,
            context: self.context,
        })
        .map_err(|e| e.at(node.span).within(key.name.clone()))
    }
}

/// A deserialization error as a problem. `section` is `spec` or `metadata`; `owner` names
/// the resource (`Host/web-1`, or just the kind when the name is unknown).
pub(crate) fn de_problem(
    error: DeError,
    file: FileId,
    fallback: ByteSpan,
    section: &str,
    owner: &str,
) -> Problem {
    let code = match error.kind {
        ErrorKind::InvalidType => "nimbus::manifest::invalid_type",
        ErrorKind::InvalidValue => "nimbus::manifest::invalid_value",
        ErrorKind::MissingField => "nimbus::manifest::missing_field",
        ErrorKind::UnknownField => "nimbus::manifest::unknown_field",
    };
    let mut field = section.to_owned();
    for segment in &error.path {
        if !segment.starts_with('[') {
            field.push('.');
        }
        field.push_str(segment);
    }
    let help = error.help.clone().or_else(|| match error.kind {
        ErrorKind::MissingField => Some(format!(
            "add it to `{field}`; docs/manifests.md lists every kind's fields"
        )),
        ErrorKind::InvalidType => Some("docs/manifests.md gives the type of every field".into()),
        _ => None,
    });
    let (message, label) = match error.kind {
        ErrorKind::MissingField => (
            format!("{owner}: {} in `{field}`", error.message),
            format!("`{field}` needs this field"),
        ),
        ErrorKind::UnknownField => (
            format!("{owner}: {}", error.message),
            "unknown field".to_owned(),
        ),
        _ => (
            format!("{owner}: `{field}`: {}", error.message),
            "invalid value".to_owned(),
        ),
    };
    Problem::error(
        code,
        message,
        Label::new(file, error.span.unwrap_or(fallback), label),
    )
    .with_help_opt(help)
}
