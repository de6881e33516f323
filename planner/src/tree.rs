//! The span-carrying document tree that YAML and KDL are both read into before typing.
//!
//! Every node keeps the byte range it came from, so that any later diagnostic (a missing
//! reference, a quota overflow) can point at the exact field in either syntax.

/// Nesting deeper than this is refused: no manifest needs it, and it bounds the recursion of
/// everything that walks the tree later.
pub const MAX_DEPTH: usize = 32;

/// The syntax of a manifest file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Kdl,
}

/// A byte range inside one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ByteSpan {
    pub start: usize,
    pub len: usize,
}

impl ByteSpan {
    pub fn new(start: usize, len: usize) -> Self {
        ByteSpan { start, len }
    }

    pub fn end(&self) -> usize {
        self.start + self.len
    }

    /// The smallest span covering both.
    pub fn join(self, other: ByteSpan) -> ByteSpan {
        let start = self.start.min(other.start);
        let end = self.end().max(other.end());
        ByteSpan::new(start, end - start)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: ByteSpan,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: ByteSpan,
}

/// One step of a path into a document: a map key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl Node {
    pub fn new(value: Value, span: ByteSpan) -> Self {
        Node { value, span }
    }

    /// The entry of a map by key; in KDL the key may be written in kebab-case.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, node)| node)
    }

    /// The key and value of a map entry.
    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| {
                    k.name == key || (k.name.contains('-') && kebab_to_camel(&k.name) == key)
                })
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Follows a path; a one-element sequence path step also accepts a lone scalar
    /// (KDL's `depends-on "File/a"` is a list of one).
    pub fn lookup(&self, path: &[Segment<'_>]) -> Option<&Node> {
        let mut node = self;
        for segment in path {
            node = match (segment, &node.value) {
                (Segment::Key(key), Value::Map(_)) => node.get(key)?,
                (Segment::Index(i), Value::Seq(items)) => items.get(*i)?,
                (Segment::Index(0), _) => node,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The span of the key that leads to `path` (the field's name), or of the value when
    /// the last step is an index.
    pub fn key_span(&self, path: &[Segment<'_>]) -> Option<ByteSpan> {
        let (last, parent) = path.split_last()?;
        let parent = self.lookup(parent)?;
        match last {
            Segment::Key(key) => parent.entry(key).map(|(k, _)| k.span),
            Segment::Index(_) => self.lookup(path).map(|n| n.span),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

/// `host-key` → `hostKey`.
pub fn kebab_to_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `hostKey` → `host-key`.
pub fn camel_to_kebab(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_conversion_round_trips() {
        assert_eq!(kebab_to_camel("host-key"), "hostKey");
        assert_eq!(kebab_to_camel("trust-on-first-use"), "trustOnFirstUse");
        assert_eq!(camel_to_kebab("listenPort"), "listen-port");
        assert_eq!(kebab_to_camel("address"), "address");
    }
}
