//! Problems found in a repository, with file, span, help and code; rendered by miette or as JSON.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, Severity as MietteSeverity, SourceCode};
use serde::Serialize;

use crate::tree::ByteSpan;

/// Index of a file in [`Sources`].
pub type FileId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A place in a file: a span and what to say about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub file: FileId,
    pub span: ByteSpan,
    pub message: String,
}

impl Label {
    pub fn new(file: FileId, span: ByteSpan, message: impl Into<String>) -> Self {
        Label {
            file,
            span,
            message: message.into(),
        }
    }
}

/// One problem: a stable code (`nimbus::reference::missing`), a message, the primary place,
/// further places (possibly in other files), and what to do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
    /// A span of the primary file whose text is a secret written in clear: the snippet shows
    /// it as `*`s, so that the diagnostic does not repeat it into a terminal or a CI log.
    pub redact: Option<ByteSpan>,
}

impl Problem {
    pub fn error(code: &'static str, message: impl Into<String>, primary: Label) -> Self {
        Problem {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary,
            secondary: Vec::new(),
            help: None,
            redact: None,
        }
    }

    /// The snippet hides the text at `span` (a secret written in clear).
    pub fn with_redacted(mut self, span: ByteSpan) -> Self {
        self.redact = Some(span);
        self
    }

    pub fn warning(code: &'static str, message: impl Into<String>, primary: Label) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(code, message, primary)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    pub fn with_label(mut self, label: Label) -> Self {
        self.secondary.push(label);
        self
    }
}

/// The text of one file, with its line starts for line and column numbers.
#[derive(Clone, Debug)]
pub struct SourceText {
    pub path: String,
    pub text: Arc<str>,
    line_starts: Vec<usize>,
}

impl SourceText {
    pub fn new(path: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        let text: Arc<str> = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceText {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }
}

/// Every file problems may point into.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<SourceText>,
}

impl Sources {
    pub fn add(&mut self, source: SourceText) -> FileId {
        self.files.push(source);
        self.files.len() - 1
    }

    pub fn get(&self, id: FileId) -> &SourceText {
        &self.files[id]
    }

    pub fn path(&self, id: FileId) -> &str {
        &self.files[id].path
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// The first file, taken out (a single file's load).
    pub fn take_first(&mut self) -> Option<SourceText> {
        (!self.files.is_empty()).then(|| self.files.remove(0))
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// A problem as JSON (`--format json`): one element of the array.
#[derive(Clone, Debug, Serialize)]
pub struct JsonProblem {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub help: Option<String>,
    /// Every other place the problem concerns.
    pub labels: Vec<JsonLabel>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JsonLabel {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Problem {
    pub fn to_json(&self, sources: &Sources) -> JsonProblem {
        let source = sources.get(self.primary.file);
        let (line, column) = source.line_column(self.primary.span.start);
        JsonProblem {
            code: self.code,
            severity: self.severity,
            message: self.message.clone(),
            file: source.path.clone(),
            line,
            column,
            help: self.help.clone(),
            labels: self
                .secondary
                .iter()
                .map(|label| {
                    let source = sources.get(label.file);
                    let (line, column) = source.line_column(label.span.start);
                    JsonLabel {
                        file: source.path.clone(),
                        line,
                        column,
                        message: label.message.clone(),
                    }
                })
                .collect(),
        }
    }

    /// `path:line:column`, the place a person looks first.
    pub fn location(&self, sources: &Sources) -> String {
        let source = sources.get(self.primary.file);
        let (line, column) = source.line_column(self.primary.span.start);
        format!("{}:{line}:{column}", source.path)
    }

    /// A miette diagnostic for this problem: labels in the primary file are shown on its
    /// snippet; labels in other files become related diagnostics with their own snippet.
    pub fn to_diagnostic(&self, sources: &Sources) -> RenderedProblem {
        let source = sources.get(self.primary.file);
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(self.primary.message.clone()).filter(|m| !m.is_empty()),
            (self.primary.span.start, self.primary.span.len),
        )];
        let mut related = Vec::new();
        for label in &self.secondary {
            if label.file == self.primary.file {
                labels.push(LabeledSpan::new_with_span(
                    Some(label.message.clone()),
                    (label.span.start, label.span.len),
                ));
            } else {
                let other = sources.get(label.file);
                let (line, column) = other.line_column(label.span.start);
                related.push(RenderedProblem {
                    code: None,
                    severity: MietteSeverity::Advice,
                    message: format!("{}:{line}:{column}: {}", other.path, label.message),
                    source: NamedSource::new(other.path.clone(), other.text.clone()),
                    labels: vec![LabeledSpan::new_primary_with_span(
                        Some(label.message.clone()),
                        (label.span.start, label.span.len),
                    )],
                    help: None,
                    related: Vec::new(),
                });
            }
        }
        RenderedProblem {
            code: Some(self.code),
            severity: match self.severity {
                Severity::Error => MietteSeverity::Error,
                Severity::Warning => MietteSeverity::Warning,
            },
            message: format!("{}: {}", self.location(sources), self.message),
            source: NamedSource::new(source.path.clone(), redacted(&source.text, self.redact)),
            labels,
            help: self.help.clone(),
            related,
        }
    }
}

/// A [`Problem`] ready for miette's report handlers.
#[derive(Debug)]
pub struct RenderedProblem {
    code: Option<&'static str>,
    severity: MietteSeverity,
    message: String,
    source: NamedSource<Arc<str>>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
    related: Vec<RenderedProblem>,
}

impl fmt::Display for RenderedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RenderedProblem {}

impl Diagnostic for RenderedProblem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.map(|c| Box::new(c) as Box<dyn fmt::Display>)
    }
    fn severity(&self) -> Option<MietteSeverity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
        }
    }
}

/// Sorts problems by file, line and column, errors before warnings at the same place.
/// `text` with the bytes of `span` as `*` (the same length, so every span stays valid).
fn redacted(text: &Arc<str>, span: Option<ByteSpan>) -> Arc<str> {
    let Some(span) = span else {
        return Arc::clone(text);
    };
    let bytes = text.as_bytes();
    let end = (span.start + span.len).min(bytes.len());
    let start = span.start.min(end);
    let mut out = String::with_capacity(bytes.len());
    out.push_str(&String::from_utf8_lossy(&bytes[..start]));
    out.push_str(&"*".repeat(end - start));
    out.push_str(&String::from_utf8_lossy(&bytes[end..]));
    out.into()
}

pub fn sort_problems(problems: &mut [Problem], sources: &Sources) {
    problems.sort_by(|a, b| {
        let key = |p: &Problem| {
            (
                sources.path(p.primary.file).to_owned(),
                p.primary.span.start,
                p.severity,
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
    });
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let distance = edit_distance(&lower, &c.to_lowercase());
            (distance, c)
        })
        .filter(|(distance, c)| {
            let longest = word.chars().count().max(c.chars().count());
            *distance <= (longest / 3).max(1) && *distance < longest
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring characters (`hots` is one step from `host`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("adress", ["address", "port", "user"]),
            Some("address")
        );
        assert_eq!(did_you_mean("Hots", ["Host", "File"]), Some("Host"));
        assert_eq!(did_you_mean("hots", ["host", "file"]), Some("host"));
        assert_eq!(did_you_mean("zzzzzz", ["address", "port"]), None);
        assert_eq!(did_you_mean("web-3", ["web-1", "db-1"]), Some("web-1"));
    }

    #[test]
    fn line_and_column_are_one_based_in_characters() {
        let source = SourceText::new("a.yaml", "ab\nçd: x\n");
        assert_eq!(source.line_column(0), (1, 1));
        assert_eq!(source.line_column(3), (2, 1));
        assert_eq!(source.line_column(5), (2, 2));
    }
}
