//! Loading a repository: (path, bytes) pairs in, typed documents with spans and problems out.
//!
//! The loader never touches the filesystem: the working tree and git objects are both fed in
//! as [`InputFile`]s, filtered by [`ManifestFilter`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use nimbus_schemas::{API_VERSION, Kind, Metadata, Resource, Spec};
use serde::de::DeserializeOwned;

use crate::de::{Context, DeError, ErrorKind, de_problem, from_node};
use crate::diagnostics::{
    FileId, Label, Problem, SourceText, Sources, did_you_mean, sort_problems,
};
use crate::kdl::{self, Envelope};
use crate::tree::{ByteSpan, Node, Value};
use crate::yaml::{self, drop_duplicate_keys, yaml_envelope, yaml_syntax_help};

/// Manifest files larger than this are refused rather than parsed.
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;

/// One file of the repository: its path relative to the root, with `/` separators, and bytes.
#[derive(Clone, Debug)]
pub struct InputFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// What the loader reads: every manifest file, and the paths of every other file in the
/// repository (for `source:` and `secret:` references).
#[derive(Clone, Debug, Default)]
pub struct RepositoryInput {
    pub manifests: Vec<InputFile>,
    pub other_paths: BTreeSet<String>,
    /// Symbolic links that lead outside the repository's root: never read, each a problem.
    pub outside_links: Vec<OutsideLink>,
}

/// A symbolic link in the repository that leads outside its root, directly or through a
/// chain of links (docs/security.md, "the repository is a jail"). Neither it nor its target
/// is read: the reader lists it here instead of among the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsideLink {
    /// The link's path in the repository.
    pub path: String,
    /// Where it points, as the link says (or where its chain ends).
    pub target: String,
}

/// Records each [`OutsideLink`] in the model and reports it: the link and its target, never
/// the target's content.
fn add_outside_links(model: &mut Model, links: &[OutsideLink], problems: &mut Vec<Problem>) {
    for link in links {
        let text = format!("{} -> {}\n", link.path, link.target);
        let span = ByteSpan::new(0, text.len().saturating_sub(1));
        let id = model.sources.add(SourceText::new(link.path.clone(), text));
        model
            .outside_links
            .insert(link.path.clone(), link.target.clone());
        problems.push(
            Problem::error(
                "nimbus::repository::outside_link",
                format!(
                    "{} is a symbolic link to {}, outside the repository; nimbus reads nothing outside the repository",
                    link.path, link.target
                ),
                Label::new(id, span, "leads outside the repository"),
            )
            .with_help(
                "copy the file into the repository, or remove the link (or list it in .nimbusignore)",
            ),
        );
    }
}

pub use crate::tree::Format;

pub use crate::filter::ManifestFilter;

/// The text of one manifest file, parsed again on demand. Documents keep only their typed
/// resource and a few spans; the span-carrying trees are rebuilt from the text the first time
/// a problem needs a place inside one (parsing is pure, so they come out the same). A
/// repository with no problems never pays for them.
#[derive(Debug)]
pub struct FileTrees {
    text: Arc<str>,
    format: Format,
    parsed: OnceLock<Vec<Envelope>>,
}

impl FileTrees {
    fn new(text: Arc<str>, format: Format) -> Self {
        FileTrees {
            text,
            format,
            parsed: OnceLock::new(),
        }
    }

    /// Trees already built (a module's file with its values filled in, a patched file).
    pub(crate) fn prebuilt(text: Arc<str>, format: Format, envelopes: Vec<Envelope>) -> Self {
        let parsed = OnceLock::new();
        let _ = parsed.set(envelopes);
        FileTrees {
            text,
            format,
            parsed,
        }
    }

    /// Every envelope of the file that loading numbered, in the same order.
    pub fn envelopes(&self) -> &[Envelope] {
        self.parsed.get_or_init(|| match self.format {
            Format::Yaml => yaml::parse(&self.text)
                .map(|nodes| {
                    nodes
                        .into_iter()
                        .filter_map(|n| yaml_envelope(n).ok())
                        .collect()
                })
                .unwrap_or_default(),
            Format::Kdl => kdl::parse(&self.text).unwrap_or_default(),
        })
    }
}

/// One loaded resource and where it came from.
#[derive(Clone, Debug)]
pub struct Document {
    pub file: FileId,
    pub format: Format,
    pub resource: Resource,
    /// The whole document (YAML) or node (KDL).
    pub span: ByteSpan,
    /// The span of `kind` (YAML) or of the node name (KDL).
    pub kind_span: ByteSpan,
    name_span: ByteSpan,
    /// Which envelope of the file this is.
    index: usize,
    trees: Arc<FileTrees>,
    /// The module instance that produced it (`module.web[acme]`), if one did.
    pub module: Option<Arc<str>>,
}

impl Document {
    /// Which envelope of its file this is.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Its file's trees.
    pub(crate) fn trees(&self) -> &FileTrees {
        &self.trees
    }

    /// Its address as people read it: with the module path when a module produced it
    /// (`module.web[acme]/Workload/acme/api`).
    pub fn full_address(&self) -> String {
        match &self.module {
            Some(module) => format!("{module}/{}", self.resource.address()),
            None => self.resource.address(),
        }
    }

    /// The document's span-carrying tree, parsed again from the file on first use.
    pub fn envelope(&self) -> Option<&Envelope> {
        self.trees.envelopes().get(self.index)
    }

    /// The span of the value at `path` inside `spec`, falling back to the document's name.
    pub fn spec_span(&self, path: &[crate::tree::Segment<'_>]) -> ByteSpan {
        self.find_spec_span(path).unwrap_or(self.name_span())
    }

    /// The span of the value at `path` inside `spec`, when the manifest writes one.
    pub fn find_spec_span(&self, path: &[crate::tree::Segment<'_>]) -> Option<ByteSpan> {
        self.envelope()
            .and_then(|e| e.spec.as_ref())
            .and_then(|spec| spec.lookup(path))
            .map(|n| n.span)
    }

    /// The span of the key of the field at `path` inside `spec`.
    pub fn spec_key_span(&self, path: &[crate::tree::Segment<'_>]) -> ByteSpan {
        self.envelope()
            .and_then(|e| e.spec.as_ref())
            .and_then(|spec| spec.key_span(path))
            .unwrap_or_else(|| self.spec_span(path))
    }

    /// The span of `metadata.name`, or of the document when there is none.
    pub fn name_span(&self) -> ByteSpan {
        self.name_span
    }

    pub fn label(&self, span: ByteSpan, message: impl Into<String>) -> Label {
        Label::new(self.file, span, message)
    }
}

/// A resource that was declared, whether or not its document loaded cleanly. References to it
/// resolve, so one typo does not cascade into "missing" errors everywhere it is used.
#[derive(Clone, Debug)]
pub struct Declared {
    pub address: String,
    pub kind: Kind,
    pub labels: nimbus_schemas::Labels,
    pub file: FileId,
    /// The span of the name.
    pub span: ByteSpan,
    /// `spec.tenant` as written, with its span, when it was read: the tenant folder rule is
    /// checked on it even when the rest of the document has errors.
    pub tenant: Option<(String, ByteSpan)>,
}

/// A loaded repository: every document that loaded cleanly, and the sources problems point into.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub sources: Sources,
    pub documents: Vec<Document>,
    /// Every declared resource, including those whose document has errors.
    pub declared: Vec<Declared>,
    /// Paths of every file in the repository, manifests included.
    pub paths: BTreeSet<String>,
    /// Links that lead outside the repository (path -> target): not read, not in `paths`.
    pub outside_links: BTreeMap<String, String>,
    /// Documents of the reuse kinds (Use, Environment, Moved; a Module outside a module
    /// folder), kept as trees for the expansion of modules.
    pub meta: Vec<crate::reuse::MetaDoc>,
    /// The files of module folders, by path: parsed, typed only when a Use fills them in.
    pub templates: BTreeMap<String, crate::reuse::Template>,
    /// Where the documents of a module's copy (or a patched document's file) came from.
    pub origins: std::collections::HashMap<FileId, crate::reuse::Origin>,
    /// The `Moved` records, checked.
    pub moves: Vec<crate::reuse::Move>,
    /// The `Import` records, checked, and the imports asked for on the command line.
    pub imports: Vec<crate::reuse::Import>,
    /// The environment chosen (`--env`), if any.
    pub environment: Option<String>,
}

impl Model {
    /// Every declared Host's spec, by name.
    pub fn hosts_by_name(&self) -> std::collections::HashMap<&str, &nimbus_schemas::HostSpec> {
        self.documents
            .iter()
            .filter_map(|d| match &d.resource.spec {
                Spec::Host(h) => Some((d.resource.name(), h)),
                _ => None,
            })
            .collect()
    }

    pub fn repository(&self) -> Option<&Document> {
        self.documents
            .iter()
            .find(|d| d.resource.kind == Kind::Repository)
    }

    /// The path a file's documents are judged by for the tenant folder rule: the file's own,
    /// or, for a module's copy, the path of the Use that produced it.
    pub fn scope_path(&self, file: FileId) -> &str {
        match self.origins.get(&file) {
            Some(origin) => &origin.scope_path,
            None => self.sources.path(file),
        }
    }
}

/// Loads every manifest. Problems come back sorted by file and line; a document with an
/// error is left out of the model.
pub fn load(input: RepositoryInput) -> (Model, Vec<Problem>) {
    let mut model = Model::default();
    let mut problems = Vec::new();
    model.paths = input.other_paths;
    let mut manifests = input.manifests;
    manifests.sort_by(|a, b| a.path.cmp(&b.path));
    let modules = crate::reuse::module_dirs(manifests.iter().map(|f| f.path.as_str()));
    for file in manifests {
        model.paths.insert(file.path.clone());
        let template = crate::reuse::module_of(&file.path, &modules).is_some();
        load_file(file, template, &mut model, &mut problems);
    }
    add_outside_links(&mut model, &input.outside_links, &mut problems);
    sort_problems(&mut problems, &model.sources);
    (model, problems)
}

/// One manifest loaded on its own, as file 0: what it declares and its problems. Nothing in
/// it depends on the other files, so it can be kept by content (a git blob id) and merged into
/// the model of any revision that holds the same file at the same path.
#[derive(Clone, Debug)]
pub struct LoadedFile {
    source: SourceText,
    documents: Vec<Document>,
    declared: Vec<Declared>,
    problems: Vec<Problem>,
    meta: Vec<crate::reuse::MetaDoc>,
    template: Option<crate::reuse::Template>,
}

impl LoadedFile {
    /// A manifest of the repository.
    pub fn load(file: InputFile) -> LoadedFile {
        Self::load_as(file, false)
    }

    /// A file of a module's folder ([`crate::reuse::module_of`] says which are).
    pub fn load_template(file: InputFile) -> LoadedFile {
        Self::load_as(file, true)
    }

    fn load_as(file: InputFile, template: bool) -> LoadedFile {
        let path = file.path.clone();
        let mut model = Model::default();
        let mut problems = Vec::new();
        load_file(file, template, &mut model, &mut problems);
        let source = model
            .sources
            .take_first()
            .unwrap_or_else(|| SourceText::new(path, ""));
        LoadedFile {
            source,
            documents: model.documents,
            declared: model.declared,
            problems,
            meta: model.meta,
            template: model.templates.into_values().next(),
        }
    }

    fn merge_into(&self, model: &mut Model, problems: &mut Vec<Problem>) {
        let id = model.sources.add(self.source.clone());
        model.paths.insert(self.source.path.clone());
        model
            .documents
            .extend(self.documents.iter().cloned().map(|mut d| {
                d.file = id;
                d
            }));
        model
            .declared
            .extend(self.declared.iter().cloned().map(|mut d| {
                d.file = id;
                d
            }));
        model.meta.extend(self.meta.iter().cloned().map(|mut m| {
            m.file = id;
            m
        }));
        if let Some(template) = &self.template {
            model.templates.insert(
                self.source.path.clone(),
                crate::reuse::Template {
                    file: id,
                    ..template.clone()
                },
            );
        }
        problems.extend(self.problems.iter().cloned().map(|mut p| {
            p.primary.file = id;
            for label in &mut p.secondary {
                label.file = id;
            }
            p
        }));
    }
}

/// As [`load`], from manifests already loaded one by one (by [`LoadedFile::load`], or from a
/// cache), in any order.
pub fn load_files(
    mut files: Vec<std::sync::Arc<LoadedFile>>,
    other_paths: BTreeSet<String>,
    outside_links: &[OutsideLink],
) -> (Model, Vec<Problem>) {
    let mut model = Model {
        paths: other_paths,
        ..Model::default()
    };
    let mut problems = Vec::new();
    files.sort_by(|a, b| a.source.path.cmp(&b.source.path));
    for file in files {
        file.merge_into(&mut model, &mut problems);
    }
    add_outside_links(&mut model, outside_links, &mut problems);
    sort_problems(&mut problems, &model.sources);
    (model, problems)
}

/// Loads one manifest into `model`: typed documents, or, for a file of a module's folder
/// (`template`), its trees for the expansion of modules to fill in.
fn load_file(file: InputFile, template: bool, model: &mut Model, problems: &mut Vec<Problem>) {
    let format = ManifestFilter::format_of(&file.path).unwrap_or(Format::Yaml);
    let InputFile { path, bytes } = file;
    if bytes.len() > MAX_MANIFEST_BYTES {
        let id = model.sources.add(SourceText::new(path.clone(), ""));
        problems.push(
            Problem::error(
                "nimbus::load::too_large",
                format!(
                    "{path} is {:.1} MiB, more than the {} MiB a manifest may be",
                    bytes.len() as f64 / (1024.0 * 1024.0),
                    MAX_MANIFEST_BYTES / (1024 * 1024)
                ),
                Label::new(id, ByteSpan::default(), "too large to be a manifest"),
            )
            .with_help(
                "split it into smaller files, or add it to .nimbusignore if it is not a manifest",
            ),
        );
        return;
    }
    let scan = &bytes[..bytes.len().min(8192)];
    if scan.contains(&0) {
        let id = model.sources.add(SourceText::new(path.clone(), ""));
        problems.push(
            Problem::error(
                "nimbus::load::binary",
                format!("{path} is a binary file, not a manifest"),
                Label::new(id, ByteSpan::default(), "binary content"),
            )
            .with_help("add it to .nimbusignore, or give it a name that does not end in .yaml, .yml or .kdl"),
        );
        return;
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let valid = error.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(error.as_bytes()).into_owned();
            let id = model.sources.add(SourceText::new(path.clone(), lossy));
            problems.push(
                Problem::error(
                    "nimbus::load::encoding",
                    format!("{path} is not valid UTF-8"),
                    Label::new(id, ByteSpan::new(valid, 1), "invalid byte here"),
                )
                .with_help(
                    "manifests must be UTF-8; re-encode the file (for example with iconv -t UTF-8)",
                ),
            );
            return;
        }
    };
    // A byte-order mark is harmless; drop it so that spans line up with what editors show.
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    };
    let id = model
        .sources
        .add(SourceText::new(path.clone(), text.as_str()));
    let trees = Arc::new(FileTrees::new(model.sources.get(id).text.clone(), format));
    let document_count;
    let envelopes = match format {
        Format::Yaml => match yaml::parse(&text) {
            Ok(nodes) => {
                document_count = nodes.len();
                let mut envelopes = Vec::new();
                for mut node in nodes {
                    drop_duplicate_keys(&mut node, id, problems);
                    match yaml_envelope(node) {
                        Ok(envelope) => envelopes.push(envelope),
                        Err(span) => problems.push(
                            Problem::error(
                                "nimbus::manifest::not_a_map",
                                "a manifest must be a map",
                                Label::new(id, span, "this document is not a map"),
                            )
                            .with_help("start each document with `apiVersion: nimbus.dev/v1alpha1`, `kind:`, `metadata:` and `spec:`"),
                        ),
                    }
                }
                envelopes
            }
            Err(error) => {
                // `{name: web-${{ module.key }}}`: braces of a reference inside a flow map.
                let line_start = text[..error.span.start.min(text.len())]
                    .rfind('\n')
                    .map_or(0, |i| i + 1);
                let line_end = text[line_start..]
                    .find('\n')
                    .map_or(text.len(), |i| line_start + i);
                let help = if text[line_start..line_end].contains("${{") {
                    Some("a `${{ }}` inside `{ }` or `[ ]` must be quoted: `{name: \"web-${{ module.key }}\"}`, or write the map as indented lines".to_owned())
                } else {
                    yaml_syntax_help(&error.message)
                };
                problems.push(
                    Problem::error(
                        "nimbus::yaml::syntax",
                        format!("invalid YAML: {}", error.message),
                        Label::new(id, error.span, "here"),
                    )
                    .with_help_opt(help),
                );
                return;
            }
        },
        Format::Kdl => match kdl::parse(&text) {
            Ok(envelopes) => {
                document_count = envelopes.len();
                envelopes
            }
            Err(kdl_problems) => {
                for p in kdl_problems {
                    problems.push(
                        Problem::error(
                            "nimbus::kdl::syntax",
                            format!("invalid KDL: {}", p.message),
                            Label::new(id, p.span, p.label.unwrap_or_else(|| "here".into())),
                        )
                        .with_help_opt(p.help),
                    );
                }
                return;
            }
        },
    };
    if document_count == 0 {
        problems.push(
            Problem::warning(
                "nimbus::load::empty",
                format!("{path} holds no manifests"),
                Label::new(id, ByteSpan::default(), "empty"),
            )
            .with_help("delete the file, or add it to .nimbusignore"),
        );
        return;
    }
    if template {
        model.templates.insert(
            path,
            crate::reuse::Template {
                file: id,
                format,
                envelopes,
            },
        );
        return;
    }
    for (index, envelope) in envelopes.into_iter().enumerate() {
        if let Some(kind) = crate::reuse::reuse_kind(&envelope, format) {
            model.meta.push(crate::reuse::MetaDoc {
                kind,
                file: id,
                format,
                envelope,
            });
            continue;
        }
        let place = Place {
            file: id,
            index,
            trees: &trees,
        };
        if let Some(document) = typed_document(
            envelope,
            place,
            &path,
            format,
            &text,
            problems,
            &mut model.declared,
        ) {
            model.documents.push(document);
        }
    }
}

/// The tenant a path under `tenants/<t>/` belongs to.
pub fn tenant_of_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("tenants/")?;
    let (tenant, rest) = rest.split_once('/')?;
    (!tenant.is_empty() && !rest.is_empty()).then_some(tenant)
}

/// Where a document is: its file, its number in the file, and the file's trees.
pub(crate) struct Place<'a> {
    pub(crate) file: FileId,
    pub(crate) index: usize,
    pub(crate) trees: &'a Arc<FileTrees>,
}

pub(crate) fn typed_document(
    envelope: Envelope,
    place: Place<'_>,
    path: &str,
    format: Format,
    text: &str,
    problems: &mut Vec<Problem>,
    declared: &mut Vec<Declared>,
) -> Option<Document> {
    let file = place.file;
    let before = problems.len();
    for key in &envelope.unknown {
        let help = match did_you_mean(&key.name, ["apiVersion", "kind", "metadata", "spec"]) {
            Some(close) => format!("did you mean `{close}`?"),
            None => "a manifest has only apiVersion, kind, metadata and spec at the top".into(),
        };
        problems.push(
            Problem::error(
                "nimbus::manifest::unknown_field",
                format!("unknown field `{}`", key.name),
                Label::new(file, key.span, "unknown field"),
            )
            .with_help(help),
        );
    }
    if format == Format::Yaml {
        match &envelope.api_version {
            None => problems.push(
                Problem::error(
                    "nimbus::manifest::api_version",
                    "missing `apiVersion`",
                    Label::new(file, envelope.span, "this document has no apiVersion"),
                )
                .with_help(format!("add `apiVersion: {API_VERSION}`")),
            ),
            Some(node) if node.as_str() != Some(API_VERSION) => problems.push(
                Problem::error(
                    "nimbus::manifest::api_version",
                    format!("unsupported apiVersion `{}`", node.as_str().unwrap_or("?")),
                    Label::new(file, node.span, "not a version nimbus knows"),
                )
                .with_help(format!("this release reads `{API_VERSION}`")),
            ),
            Some(_) => {}
        }
    } else if let Some(node) = &envelope.api_version
        && node.as_str() != Some(API_VERSION)
    {
        problems.push(
            Problem::error(
                "nimbus::manifest::api_version",
                "unsupported api-version",
                Label::new(file, node.span, "not a version nimbus knows"),
            )
            .with_help(format!("this release reads `{API_VERSION}`")),
        );
    }
    let kind = match &envelope.kind {
        None => {
            problems.push(
                Problem::error("nimbus::manifest::missing_kind", "missing `kind`", Label::new(file, envelope.span, "this document has no kind"))
                    .with_help("add `kind:` with one of: Repository, Host, File, Service, Network, Cluster, Tenant, Workload, VM, Volume"),
            );
            None
        }
        Some(node) => {
            let name = node.as_str().unwrap_or("");
            let kind = match format {
                Format::Yaml => Kind::from_yaml_name(name),
                Format::Kdl => Kind::from_kdl_name(name),
            };
            if kind.is_none() {
                let names: Vec<&str> = Kind::ALL
                    .iter()
                    .map(|k| {
                        if format == Format::Kdl {
                            k.kdl_name()
                        } else {
                            k.as_str()
                        }
                    })
                    .collect();
                let help = match did_you_mean(name, names.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("the kinds are: {}", names.join(", ")),
                };
                problems.push(
                    Problem::error(
                        "nimbus::manifest::unknown_kind",
                        format!("unknown kind `{name}`"),
                        Label::new(file, node.span, "unknown kind"),
                    )
                    .with_help(help),
                );
            }
            kind
        }
    };
    let kind = kind?;
    let context = Context {
        kdl: format == Format::Kdl,
        text: if format == Format::Yaml { text } else { "" },
        ..Context::default()
    };
    let empty_map = Node::new(Value::Map(Vec::new()), envelope.span);
    let metadata_node = envelope.metadata.as_ref().unwrap_or(&empty_map);
    let metadata: Option<Metadata> = match from_node(metadata_node, &context) {
        Ok(m) => Some(m),
        Err(e) => {
            problems.push(de_problem(
                e,
                file,
                envelope.span,
                "metadata",
                kind.as_str(),
            ));
            None
        }
    };
    if let Some(metadata) = &metadata
        && metadata.name.is_empty()
        && kind != Kind::Repository
    {
        let (span, label) = match &envelope.metadata {
            Some(node) => (node.span, "metadata has no name"),
            None => (envelope.span, "this document has no metadata"),
        };
        problems.push(
            Problem::error(
                "nimbus::manifest::missing_name",
                format!("{kind} has no name"),
                Label::new(file, span, label),
            )
            .with_help(if format == Format::Kdl {
                "give the node its name as the first argument: `host web-1 { ... }`"
            } else {
                "add `metadata: {name: ...}`"
            }),
        );
    }
    if let Some(name_node) = metadata_node.get("name")
        && let Some(name) = name_node.as_str()
    {
        let written_tenant = envelope
            .spec
            .as_ref()
            .and_then(|s| s.get("tenant"))
            .and_then(Node::as_str);
        let tenant = written_tenant
            .or_else(|| tenant_of_path(path))
            .filter(|_| kind.is_tenant_scoped());
        let address = match tenant {
            Some(t) => format!("{kind}/{t}/{name}"),
            None => format!("{kind}/{name}"),
        };
        let labels = metadata
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        let tenant_written = envelope
            .spec
            .as_ref()
            .and_then(|s| s.get("tenant"))
            .and_then(|node| node.as_str().map(|t| (t.to_owned(), node.span)))
            .filter(|_| kind.is_tenant_scoped());
        declared.push(Declared {
            address,
            kind,
            labels,
            file,
            span: name_node.span,
            tenant: tenant_written,
        });
    }
    let spec_node = match &envelope.spec {
        Some(node) => node,
        None if kind == Kind::Repository => &empty_map,
        None => {
            problems.push(
                Problem::error(
                    "nimbus::manifest::missing_spec",
                    format!("{kind} has no spec"),
                    Label::new(file, envelope.span, "this document has no spec"),
                )
                .with_help("add `spec:` with the kind's fields; docs/manifests.md lists them"),
            );
            return None;
        }
    };
    let owner = match &metadata {
        Some(m) if !m.name.is_empty() => format!("{kind}/{}", m.name),
        _ => kind.to_string(),
    };
    let spec = match kind {
        Kind::Repository => typed(spec_node, &context, Spec::Repository),
        Kind::Host => typed(spec_node, &context, Spec::Host),
        Kind::File => typed(spec_node, &context, Spec::File),
        Kind::Service => typed(spec_node, &context, Spec::Service),
        Kind::Network => typed(spec_node, &context, Spec::Network),
        Kind::Cluster => typed(spec_node, &context, Spec::Cluster),
        Kind::Tenant => typed(spec_node, &context, Spec::Tenant),
        Kind::Workload => typed(spec_node, &context, Spec::Workload),
        Kind::Vm => typed(spec_node, &context, Spec::Vm),
        Kind::Volume => typed(spec_node, &context, Spec::Volume),
    };
    let unknown_fields = context.unknown_fields.take();
    // `adress:` is reported once, as an unknown field with "did you mean `address`?", not
    // again as the missing `address` it was meant to be.
    let suggested: Vec<String> = unknown_fields
        .iter()
        .filter_map(|e| {
            e.help
                .as_deref()?
                .strip_prefix("did you mean `")?
                .strip_suffix("`?")
        })
        .map(crate::tree::kebab_to_camel)
        .collect();
    for unknown in unknown_fields {
        problems.push(de_problem(unknown, file, spec_node.span, "spec", &owner));
    }
    let spec = match spec {
        Ok(spec) => Some(spec),
        Err(e) => {
            let misspelt = e.kind == ErrorKind::MissingField
                && e.path.is_empty()
                && suggested
                    .iter()
                    .any(|s| e.message == format!("missing field `{s}`"));
            if !misspelt || problems.len() == before {
                problems.push(de_problem(e, file, spec_node.span, "spec", &owner));
            }
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    let (metadata, spec) = (metadata?, spec?);
    let declared_tenant = match &spec {
        Spec::Workload(w) => w.tenant.clone(),
        Spec::Volume(v) => v.tenant.clone(),
        _ => None,
    };
    let tenant = declared_tenant.or_else(|| {
        kind.is_tenant_scoped()
            .then(|| tenant_of_path(path).map(str::to_owned))
            .flatten()
    });
    let name_span = envelope
        .metadata
        .as_ref()
        .and_then(|m| m.get("name"))
        .map_or(envelope.span, |n| n.span);
    Some(Document {
        file,
        format,
        resource: Resource {
            api_version: API_VERSION.to_owned(),
            kind,
            metadata,
            spec,
            tenant,
        },
        span: envelope.span,
        kind_span: envelope.kind.as_ref().map_or(envelope.span, |k| k.span),
        name_span,
        index: place.index,
        trees: Arc::clone(place.trees),
        module: None,
    })
}

fn typed<'a, T: DeserializeOwned>(
    node: &'a Node,
    context: &'a Context<'a>,
    wrap: fn(T) -> Spec,
) -> Result<Spec, DeError> {
    from_node::<T>(node, context).map(wrap)
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
