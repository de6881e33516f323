//! Reuse: modules (a folder of manifests with declared inputs, used by `Use` documents, also
//! from tenant folders and from other modules), `forEach`, environments (values and patches
//! chosen by `--env`) and `Moved` records. docs/modules.md is the user's guide.
//!
//! Expansion works on the span-carrying trees, before typing: each use of a module gets its
//! own copy of the module's files in [`Sources`](crate::diagnostics::Sources), so that the
//! documents it produces point into the module's lines, and the copy's [`Origin`] names the
//! use (and the value) that produced them: a diagnostic shows both places.

pub mod imported;
pub mod inputs;
pub mod moved;
pub mod patch;
pub mod schema;
pub mod subst;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use nimbus_schemas::{ModuleSpec, ReuseKind, UseSpec};

use crate::de::{Context, de_problem, from_node};
use crate::diagnostics::{FileId, Label, Problem, did_you_mean};
use crate::kdl::Envelope;
use crate::load::{FileTrees, Format, Model, Place, typed_document};
use crate::reuse::DECLARATIONS;
pub use crate::reuse::{MetaDoc, Origin, Template, module_dirs, module_of, reuse_kind};
use crate::tree::{ByteSpan, Node, Value};
use inputs::ModuleDecl;
use subst::{Scope, Sourced, substitute};

/// Uses of modules inside modules deeper than this are refused (a cycle is reported first).
const MAX_NESTING: usize = 8;

/// The environments a model declares, by name, with the place of each name.
pub fn environments(model: &Model) -> Vec<(String, Label)> {
    model
        .meta
        .iter()
        .filter(|m| m.kind == ReuseKind::Environment)
        .filter_map(|m| {
            let node = m.envelope.metadata.as_ref()?.get("name")?;
            Some((
                node.as_str()?.to_owned(),
                Label::new(m.file, node.span, "declared here"),
            ))
        })
        .collect()
}

/// Expands every Use into documents, applies the chosen environment's patches and reads the
/// Moved records. Runs once, after loading and before validation.
pub fn expand(model: &mut Model, problems: &mut Vec<Problem>, environment: Option<&str>) {
    model.environment = environment.map(str::to_owned);
    let decls = declarations(model, problems);
    for doc in model.meta.iter().filter(|m| m.kind == ReuseKind::Module) {
        problems.push(
            Problem::error(
                "nimbus::module::declaration",
                "a Module is declared by the module.yaml of its folder",
                Label::new(doc.file, doc.envelope.span, "not in a module.yaml"),
            )
            .with_help("move it into the module's folder as module.yaml (or module.kdl); its folder's other files are the module's manifests"),
        );
    }
    let env_values = environment.and_then(|name| patch::values_of(model, name));
    let uses: Vec<MetaDoc> = model
        .meta
        .iter()
        .filter(|m| m.kind == ReuseKind::Use)
        .cloned()
        .collect();
    let mut expander = Expander {
        model,
        problems,
        decls,
        env: env_values,
    };
    for doc in &uses {
        let path = expander.model.sources.path(doc.file).to_owned();
        let at = Using {
            file: doc.file,
            format: doc.format,
            path: &path,
            scope_path: &path,
        };
        expander.instantiate(&doc.envelope, &at, None, &mut Vec::new());
    }
    let Expander {
        model, problems, ..
    } = expander;
    if let Some(name) = environment {
        patch::apply_patches(model, name, problems);
    }
    moved::read_moves(model, problems);
    imported::read_imports(model, problems);
}

/// Every module's declaration (its `module.yaml`), by folder; problems in them are pushed.
pub fn declarations(model: &Model, problems: &mut Vec<Problem>) -> BTreeMap<String, ModuleDecl> {
    let mut decls = BTreeMap::new();
    for (path, template) in &model.templates {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if !DECLARATIONS.contains(&name) {
            continue;
        }
        let found = template
            .envelopes
            .iter()
            .find(|e| reuse_kind(e, template.format) == Some(ReuseKind::Module));
        let Some(envelope) = found else {
            problems.push(
                Problem::error(
                    "nimbus::module::declaration",
                    format!("{path} makes {dir} a module, but declares no Module"),
                    Label::new(template.file, ByteSpan::default(), "no `kind: Module` here"),
                )
                .with_help("start it with `kind: Module` and its `inputs:` (docs/modules.md)"),
            );
            continue;
        };
        let context = Context {
            kdl: template.format == Format::Kdl,
            ..Context::default()
        };
        let empty = Node::new(Value::Map(Vec::new()), envelope.span);
        let spec_node = envelope.spec.as_ref().unwrap_or(&empty);
        match from_node::<ModuleSpec>(spec_node, &context) {
            Ok(spec) => {
                let declared_at = spec_node.entry("inputs").map_or(
                    envelope.kind.as_ref().map_or(envelope.span, |k| k.span),
                    |(k, _)| k.span,
                );
                let decl = ModuleDecl::new(
                    dir.to_owned(),
                    template.file,
                    spec,
                    spec_node.get("inputs"),
                    declared_at,
                );
                decl.check_defaults(problems);
                decls.insert(dir.to_owned(), decl);
            }
            Err(e) => problems.push(de_problem(
                e,
                template.file,
                envelope.span,
                "spec",
                "Module",
            )),
        }
        for unknown in context.unknown_fields.take() {
            problems.push(de_problem(
                unknown,
                template.file,
                spec_node.span,
                "spec",
                "Module",
            ));
        }
    }
    decls
}

struct Expander<'m> {
    model: &'m mut Model,
    problems: &'m mut Vec<Problem>,
    decls: BTreeMap<String, ModuleDecl>,
    env: Option<BTreeMap<String, Sourced>>,
}

/// Where a Use is written.
struct Using<'a> {
    file: FileId,
    format: Format,
    /// Its file's path (for `./` and `../` module paths).
    path: &'a str,
    /// The path the tenant folder rule reads for what it produces.
    scope_path: &'a str,
}

/// The module instance a nested Use is written in.
struct Parent<'a> {
    path: &'a str,
    inputs: &'a BTreeMap<String, Sourced>,
    name: &'a str,
    key: &'a str,
}

impl Expander<'_> {
    fn instantiate(
        &mut self,
        envelope: &Envelope,
        at: &Using<'_>,
        parent: Option<&Parent<'_>>,
        stack: &mut Vec<String>,
    ) {
        let file = at.file;
        let Some(name_node) = envelope.metadata.as_ref().and_then(|m| m.get("name")) else {
            self.problems.push(
                Problem::error(
                    "nimbus::manifest::missing_name",
                    "Use has no name",
                    Label::new(file, envelope.span, "this Use has no name"),
                )
                .with_help("name the use: `metadata: {name: web}` (it is the `web` of module.web)"),
            );
            return;
        };
        let name = name_node.as_str().unwrap_or_default().to_owned();
        if !is_key(&name) || name.contains('.') {
            self.problems.push(
                Problem::error(
                    "nimbus::module::name",
                    format!("`{name}` cannot name a use of a module"),
                    Label::new(file, name_node.span, "not a name"),
                )
                .with_help("use letters, digits, `-` and `_`"),
            );
            return;
        }
        let use_label = Label::new(file, name_node.span, "");
        let context = Context {
            kdl: at.format == Format::Kdl,
            ..Context::default()
        };
        let empty = Node::new(Value::Map(Vec::new()), envelope.span);
        let spec_node = envelope.spec.as_ref().unwrap_or(&empty);
        let typed = from_node::<UseSpec>(spec_node, &context);
        let owner = format!("Use/{name}");
        for unknown in context.unknown_fields.take() {
            self.problems
                .push(de_problem(unknown, file, spec_node.span, "spec", &owner));
        }
        let spec = match typed {
            Ok(spec) => spec,
            Err(e) => {
                self.problems
                    .push(de_problem(e, file, spec_node.span, "spec", &owner));
                return;
            }
        };
        let module_span = spec_node.get("module").map_or(name_node.span, |n| n.span);
        let Some(dir) = self.module_dir(&spec.module, at.path, file, module_span) else {
            return;
        };
        if let Some(first) = stack.iter().position(|d| *d == dir) {
            let mut cycle: Vec<&str> = stack[first..].iter().map(String::as_str).collect();
            cycle.push(&dir);
            self.problems.push(
                Problem::error(
                    "nimbus::module::cycle",
                    format!("modules use each other in a circle: {}", cycle.join(" → ")),
                    Label::new(file, module_span, "uses a module that leads back here"),
                )
                .with_help("a module cannot use itself, directly or through others"),
            );
            return;
        }
        if stack.len() >= MAX_NESTING {
            self.problems.push(Problem::error(
                "nimbus::module::depth",
                format!("modules are nested more than {MAX_NESTING} deep"),
                Label::new(file, module_span, "one use too many"),
            ));
            return;
        }
        // The environment's values, read by a use at the top only.
        let env = if parent.is_none() {
            self.env.clone()
        } else {
            None
        };
        let parent_scope = Scope {
            inputs: parent.map(|p| p.inputs),
            module: parent.map(|p| (p.name, p.key)),
            each: None,
            env: env.as_ref(),
            env_allowed: parent.is_none(),
        };
        let keys = match spec_node.get("forEach") {
            None => None,
            Some(node) => {
                let mut node = node.clone();
                let mut origins = Vec::new();
                substitute(&mut node, &parent_scope, file, &mut origins, self.problems);
                match self.each_keys(&node, file) {
                    Some(keys) => Some(keys),
                    None => return,
                }
            }
        };
        let instances: Vec<(String, Option<Sourced>)> = match keys {
            None => vec![(name.clone(), None)],
            Some(keys) => keys.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        };
        let Some(decl) = self.decls.get(&dir).cloned() else {
            return;
        };
        let for_each = spec_node.get("forEach").is_some();
        for (key, each) in instances {
            let path = match (parent, for_each) {
                (Some(p), true) => format!("{}.module.{name}[{key}]", p.path),
                (Some(p), false) => format!("{}.module.{name}", p.path),
                (None, true) => format!("module.{name}[{key}]"),
                (None, false) => format!("module.{name}"),
            };
            let scope = Scope {
                each: each.as_ref().map(|v| (key.as_str(), v)),
                inputs: parent_scope.inputs,
                module: parent_scope.module,
                env: parent_scope.env,
                env_allowed: parent_scope.env_allowed,
            };
            let mut given = Vec::new();
            if let Some(Value::Map(entries)) = spec_node.get("values").map(|n| &n.value) {
                for (k, value) in entries {
                    let mut node = value.clone();
                    let mut origins = Vec::new();
                    substitute(&mut node, &scope, file, &mut origins, self.problems);
                    let at = origins.pop().map(|(_, l)| l).unwrap_or_else(|| {
                        Label::new(file, value.span, format!("given here, for {path}"))
                    });
                    given.push((k.name.clone(), k.span, Sourced { node, at: Some(at) }));
                }
            }
            let used_at = Label::new(file, use_label.span, format!("{path} is used here"));
            // A use whose values are wrong produces nothing: its problems are at its values.
            let Some(bound) = decl.bind(given, file, &used_at, self.problems) else {
                continue;
            };
            stack.push(dir.clone());
            self.produce(&dir, &path, &name, &key, &bound, &used_at, at, stack);
            stack.pop();
        }
    }

    /// The documents of one instance of the module in `dir`.
    #[allow(clippy::too_many_arguments)]
    fn produce(
        &mut self,
        dir: &str,
        path: &str,
        name: &str,
        key: &str,
        inputs: &BTreeMap<String, Sourced>,
        used_at: &Label,
        at: &Using<'_>,
        stack: &mut Vec<String>,
    ) {
        let dirs: BTreeSet<String> = self.decls.keys().cloned().collect();
        let files: Vec<(String, Template)> = self
            .model
            .templates
            .iter()
            .filter(|(p, _)| module_of(p, &dirs).map(String::as_str) == Some(dir))
            .map(|(p, t)| (p.clone(), t.clone()))
            .collect();
        for (template_path, template) in files {
            let source = self.model.sources.get(template.file).clone();
            let text = source.text.clone();
            let copy = self.model.sources.add(source);
            let scope = Scope {
                inputs: Some(inputs),
                module: Some((name, key)),
                ..Scope::default()
            };
            let mut origins = Vec::new();
            let mut envelopes = Vec::with_capacity(template.envelopes.len());
            let mut resources = Vec::new();
            let mut nested = Vec::new();
            for (index, envelope) in template.envelopes.iter().enumerate() {
                match reuse_kind(envelope, template.format) {
                    Some(ReuseKind::Module) => {}
                    Some(ReuseKind::Use) => nested.push(index),
                    Some(other) => self.problems.push(
                        Problem::error(
                            "nimbus::module::misplaced",
                            format!(
                                "{} belongs in the repository, not in a module",
                                other.as_str()
                            ),
                            Label::new(copy, envelope.span, "inside module"),
                        )
                        .with_help("move it out of the module's folder"),
                    ),
                    None => resources.push(index),
                }
                let mut envelope = envelope.clone();
                if reuse_kind(&envelope, template.format).is_none() {
                    for node in [&mut envelope.metadata, &mut envelope.spec]
                        .into_iter()
                        .flatten()
                    {
                        substitute(node, &scope, copy, &mut origins, self.problems);
                    }
                }
                envelopes.push(envelope);
            }
            self.model.origins.insert(
                copy,
                Origin {
                    module: Some(path.to_owned()),
                    scope_path: at.scope_path.to_owned(),
                    used_at: Some(used_at.clone()),
                    values: origins,
                },
            );
            let trees = Arc::new(FileTrees::prebuilt(
                text.clone(),
                template.format,
                envelopes.clone(),
            ));
            for index in resources {
                let place = Place {
                    file: copy,
                    index,
                    trees: &trees,
                };
                if let Some(mut document) = typed_document(
                    envelopes[index].clone(),
                    place,
                    at.scope_path,
                    template.format,
                    "",
                    self.problems,
                    &mut self.model.declared,
                ) {
                    document.module = Some(Arc::from(path));
                    self.model.documents.push(document);
                }
            }
            for index in nested {
                let inner = Using {
                    file: copy,
                    format: template.format,
                    path: &template_path,
                    scope_path: at.scope_path,
                };
                let parent = Parent {
                    path,
                    inputs,
                    name,
                    key,
                };
                self.instantiate(&template.envelopes[index], &inner, Some(&parent), stack);
            }
        }
    }

    /// The module folder a Use names, checked.
    fn module_dir(
        &mut self,
        written: &str,
        using_path: &str,
        file: FileId,
        span: ByteSpan,
    ) -> Option<String> {
        let base = if written.starts_with("./") || written.starts_with("../") {
            using_path.rsplit_once('/').map_or("", |(dir, _)| dir)
        } else {
            ""
        };
        let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
        for part in written.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        self.problems.push(
                            Problem::error(
                                "nimbus::module::path",
                                format!("`{written}` leads outside the repository"),
                                Label::new(file, span, "outside the repository"),
                            )
                            .with_help("a module is a folder of this repository"),
                        );
                        return None;
                    }
                }
                part => parts.push(part),
            }
        }
        let dir = parts.join("/");
        if self.decls.contains_key(&dir) {
            return Some(dir);
        }
        let known: Vec<&str> = self.decls.keys().map(String::as_str).collect();
        let is_folder = self
            .model
            .paths
            .iter()
            .any(|p| p.starts_with(&format!("{dir}/")));
        self.problems.push(
            Problem::error(
                "nimbus::module::missing",
                if is_folder {
                    format!("{dir} is not a module: it has no module.yaml")
                } else {
                    format!("there is no module at {dir}")
                },
                Label::new(file, span, "no module here"),
            )
            .with_help(match did_you_mean(&dir, known.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None if known.is_empty() => {
                    "a module is a folder with a module.yaml declaring its inputs (docs/modules.md)"
                        .into()
                }
                None => format!("the modules are: {}", known.join(", ")),
            }),
        );
        None
    }

    /// The keys and values of a `forEach`: a list's elements (each its own key) or a map's
    /// entries. Keys are unique and fit in an address.
    fn each_keys(&mut self, node: &Node, file: FileId) -> Option<Vec<(String, Sourced)>> {
        let mut keys: Vec<(String, Sourced)> = Vec::new();
        let entries: Vec<(String, ByteSpan, Node)> = match &node.value {
            Value::Seq(items) => items
                .iter()
                .map(|item| {
                    let key = match &item.value {
                        Value::String(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        _ => String::new(),
                    };
                    (key, item.span, item.clone())
                })
                .collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.clone(), k.span, v.clone()))
                .collect(),
            _ => {
                self.problems.push(
                    Problem::error(
                        "nimbus::module::for_each",
                        format!(
                            "`forEach` must be a list or a map, and this is {}",
                            node.kind_name()
                        ),
                        Label::new(file, node.span, "not a list or map"),
                    )
                    .with_help(
                        "write a list of names (`[acme, globex]`) or a map from name to value",
                    ),
                );
                return None;
            }
        };
        let mut ok = true;
        for (key, span, value) in entries {
            if !is_key(&key) {
                self.problems.push(
                    Problem::error(
                        "nimbus::module::for_each",
                        if key.is_empty() {
                            "a list in `forEach` holds names or numbers, each one instance's key".to_owned()
                        } else {
                            format!("`{key}` cannot be an instance's key")
                        },
                        Label::new(file, span, "not a key"),
                    )
                    .with_help("keys are letters, digits, `-`, `_` and `.`; use a map to give each key a value"),
                );
                ok = false;
                continue;
            }
            if keys.iter().any(|(k, _)| *k == key) {
                self.problems.push(
                    Problem::error(
                        "nimbus::module::for_each",
                        format!("`{key}` appears twice in `forEach`"),
                        Label::new(file, span, "again"),
                    )
                    .with_help("each key makes one instance; remove the repeat"),
                );
                ok = false;
                continue;
            }
            keys.push((
                key,
                Sourced {
                    node: value,
                    at: Some(Label::new(file, span, "this element of forEach")),
                },
            ));
        }
        ok.then_some(keys)
    }
}

/// A name or key that fits in an address: `module.NAME[KEY]`.
pub fn is_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Adds, to every problem that points into a module's copy or a patched document, the places
/// its value came from and the use that produced it.
pub fn annotate(problems: &mut [Problem], origins: &HashMap<FileId, Origin>) {
    if origins.is_empty() {
        return;
    }
    for problem in problems {
        let Some(origin) = origins.get(&problem.primary.file) else {
            continue;
        };
        let at = problem.primary.span;
        for (span, label) in &origin.values {
            if at.start >= span.start
                && at.start <= span.end()
                && !problem.secondary.contains(label)
            {
                problem.secondary.push(label.clone());
            }
        }
        if let Some(used) = &origin.used_at
            && !problem.secondary.contains(used)
        {
            problem.secondary.push(used.clone());
        }
    }
}

/// A record's spec (`Moved`, `Import`), typed, with the node it was read from: a missing spec
/// is `missing`, and a spec that does not type, or has fields its kind does not know, is a
/// problem at the spec; `None` when it cannot be used.
fn record_spec<'d, T: serde::de::DeserializeOwned>(
    doc: &'d MetaDoc,
    missing: impl FnOnce() -> Problem,
    problems: &mut Vec<Problem>,
) -> Option<(T, &'d Node)> {
    let kind = doc.kind.as_str();
    let Some(spec_node) = &doc.envelope.spec else {
        problems.push(missing());
        return None;
    };
    let context = Context {
        kdl: doc.format == Format::Kdl,
        ..Context::default()
    };
    let spec: T = match from_node(spec_node, &context) {
        Ok(spec) => spec,
        Err(e) => {
            problems.push(de_problem(e, doc.file, spec_node.span, "spec", kind));
            return None;
        }
    };
    for unknown in context.unknown_fields.take() {
        problems.push(de_problem(unknown, doc.file, spec_node.span, "spec", kind));
    }
    Some((spec, spec_node))
}

/// `module.web[acme]/Workload/acme/api` → (`module.web[acme]`, `Workload/acme/api`).
pub fn split_address(address: &str) -> (Option<&str>, &str) {
    if !address.starts_with("module.") {
        return (None, address);
    }
    match address.split_once('/') {
        Some((module, rest)) => (Some(module), rest),
        None => (None, address),
    }
}

/// The module path of every resource a module produced, by its address.
pub fn layout(model: &Model) -> BTreeMap<String, String> {
    model
        .documents
        .iter()
        .filter_map(|d| Some((d.resource.address(), d.module.as_deref()?.to_owned())))
        .collect()
}

/// Every resource the manifests declare, with the module path of those a module produced.
pub fn desired_modules(model: &Model) -> BTreeMap<String, Option<String>> {
    model
        .documents
        .iter()
        .map(|d| (d.resource.address(), d.module.as_deref().map(str::to_owned)))
        .collect()
}

/// The Repository's `defaultEnvironment`, if it names one.
pub fn default_environment(model: &Model) -> Option<String> {
    match &model.repository()?.resource.spec {
        nimbus_schemas::Spec::Repository(r) => r.default_environment.clone(),
        _ => None,
    }
}
