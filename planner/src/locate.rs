//! Where a resource's field is written: the file, line and column of a field named as plans and
//! providers name them (`image`, `disk.image`, `env.LOG_LEVEL`, `ports[0]`), so that a failure at
//! apply time points at the manifest's line as a diagnostic does.

use std::collections::HashMap;
use std::fmt;

use crate::diagnostics::{FileId, SourceText};
use crate::load::{Document, Model};
use crate::tree::Segment;

/// A place in a manifest: `path:line:column` (1-based, as editors and diagnostics count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub path: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path, self.line, self.column)
    }
}

/// A dotted field path taken apart: `disk.image` → `disk`, `image`; `ports[0]` → `ports`, 0.
pub fn field_segments(field: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            match inner[..end].parse() {
                Ok(index) => out.push(Segment::Index(index)),
                Err(_) => out.push(Segment::Key(&inner[..end])),
            }
            rest = &inner[end + 1..];
        }
    }
    out
}

/// Where `field` of `document` is written: the field itself, or the nearest enclosing field
/// that is written (a default the manifest leaves out is at the resource's name).
pub fn locate(source: &SourceText, document: &Document, field: &[Segment<'_>]) -> Location {
    let span = (0..=field.len())
        .rev()
        .find_map(|n| document.find_spec_span(&field[..n]).filter(|_| n > 0))
        .unwrap_or_else(|| document.name_span());
    let (line, column) = source.line_column(span.start);
    Location {
        path: source.path.clone(),
        line,
        column,
    }
}

/// The manifests of a run's changes, kept so that a provider's failure naming a field is shown
/// at that field's line.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    documents: HashMap<String, Document>,
    sources: HashMap<FileId, SourceText>,
}

impl Manifests {
    /// The documents that declare `resources` (resource addresses, `Kind/name` or
    /// `Kind/tenant/name`).
    pub fn of<'a>(model: &Model, resources: impl IntoIterator<Item = &'a str>) -> Manifests {
        let wanted: std::collections::HashSet<&str> = resources.into_iter().collect();
        let mut manifests = Manifests::default();
        for document in &model.documents {
            let address = document.resource.address();
            if wanted.contains(address.as_str()) {
                manifests
                    .sources
                    .entry(document.file)
                    .or_insert_with(|| model.sources.get(document.file).clone());
                manifests.documents.insert(address, document.clone());
            }
        }
        manifests
    }

    /// Where `field` of `resource` is written, when the resource is one of these.
    pub fn field(&self, resource: &str, field: &str) -> Option<Location> {
        let document = self.documents.get(resource)?;
        let source = self.sources.get(&document.file)?;
        Some(locate(source, document, &field_segments(field)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_taken_apart_as_plans_name_them() {
        assert_eq!(
            field_segments("disk.image"),
            [Segment::Key("disk"), Segment::Key("image")]
        );
        assert_eq!(
            field_segments("ports[1].host"),
            [
                Segment::Key("ports"),
                Segment::Index(1),
                Segment::Key("host")
            ]
        );
        assert_eq!(field_segments("image"), [Segment::Key("image")]);
        assert!(field_segments("").is_empty());
    }

    #[test]
    fn a_field_is_found_at_its_line_or_at_what_encloses_it() {
        use crate::load::{InputFile, RepositoryInput, load};
        let (model, problems) = load(RepositoryInput {
            manifests: vec![InputFile {
                path: "tenants/acme/api.yaml".into(),
                bytes: b"apiVersion: nimbus.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: api\nspec:\n  image: nginx:1\n  env:\n    LOG: debug\n".to_vec(),
            }],
            other_paths: Default::default(),
            outside_links: Vec::new(),
        });
        assert!(problems.is_empty(), "{problems:?}");
        let manifests = Manifests::of(&model, ["Workload/acme/api"]);
        let at = |field: &str| {
            manifests
                .field("Workload/acme/api", field)
                .map(|l| l.to_string())
        };
        assert_eq!(at("image").as_deref(), Some("tenants/acme/api.yaml:6:10"));
        assert_eq!(at("env.LOG").as_deref(), Some("tenants/acme/api.yaml:8:10"));
        // Not written: the nearest field that is (`env`), else the resource's name.
        assert_eq!(
            at("env.OTHER").as_deref(),
            Some("tenants/acme/api.yaml:8:5")
        );
        assert_eq!(at("replicas").as_deref(), Some("tenants/acme/api.yaml:4:9"));
        assert_eq!(manifests.field("Workload/acme/web", "image"), None);
    }
}
