//! `Import` records: objects that already exist where the manifests declare an instance, taken under
//! management. Without one, such an object is refused by the plan ("exists, not managed") and
//! left as it is; with one (`kind: Import {to, id}` in the repository, or `nimbus import
//! ADDRESS`), the plan shows the import and whatever differs, and apply records it as owned.

use nimbus_schemas::{Address, ImportSpec, Kind, ReuseKind, Spec};

use crate::diagnostics::{Label, Problem};
use crate::load::{Document, Model};
pub use crate::reuse::Import;

/// Why an address cannot be imported, for the record's problem or the command's error.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub label: &'static str,
    pub help: String,
}

/// Parses and checks `to` (and `id`) against the model's documents.
pub fn check(model: &Model, to: &str, id: Option<&str>) -> Result<Import, Refusal> {
    let (_module, written) = super::split_address(to);
    let address: Address = written.parse().map_err(|e: nimbus_schemas::AddressError| Refusal {
        code: "nimbus::import::address",
        message: e.to_string(),
        label: "not an address",
        help: "write the address as `nimbus plan` shows it: `File/motd`, `File/motd@web-1`, `Workload/acme/web`".into(),
    })?;
    if address.kind == Kind::Host {
        return Err(Refusal {
            code: "nimbus::import::host",
            message: format!("{written}: a Host is read on first contact, never imported"),
            label: "a Host",
            help: "remove this import; `nimbus plan` reads a declared Host by itself".into(),
        });
    }
    let resource = Address {
        host: None,
        ..address.clone()
    }
    .to_string();
    let Some(document) = model
        .documents
        .iter()
        .find(|d| d.resource.address() == resource)
    else {
        return Err(Refusal {
            code: "nimbus::import::unknown",
            message: format!("no manifest declares {resource}: an import takes an existing object under management for a manifest that is already written"),
            label: "declared nowhere",
            help: "write its manifest first (`nimbus discover --generate` writes manifests for what it finds), or correct the address".into(),
        });
    };
    if let Some(id) = id
        && !identity_matches(document, id)
    {
        return Err(Refusal {
            code: "nimbus::import::id",
            message: format!(
                "`{id}` is not the object {resource} declares ({}): nimbus finds an object by its manifest and never renames one",
                identity(document)
            ),
            label: "another object",
            help: "give the id its manifest names, or change the manifest (its path or name) to the object's".into(),
        });
    }
    Ok(Import {
        to: to.to_owned(),
        resource,
        host: address.host,
        id: id.map(str::to_owned),
        at: None,
        if_present: false,
    })
}

/// What a document's object is known by where it lives: a File's path, a Service's unit,
/// otherwise its name.
fn identity(document: &Document) -> String {
    match &document.resource.spec {
        Spec::File(file) => file.path.clone(),
        Spec::Service(_) => format!("{}.service", document.resource.name()),
        _ => document.resource.name().to_owned(),
    }
}

fn identity_matches(document: &Document, id: &str) -> bool {
    let own = identity(document);
    id == own
        || id == document.resource.name()
        || (matches!(document.resource.spec, Spec::Service(_))
            && id.strip_suffix(".service") == Some(document.resource.name()))
}

/// Reads and checks every `Import` record into `model.imports`.
pub fn read_imports(model: &mut Model, problems: &mut Vec<Problem>) {
    let mut imports = Vec::new();
    for doc in model.meta.iter().filter(|m| m.kind == ReuseKind::Import) {
        let missing = || {
            Problem::error(
                "nimbus::import::spec",
                "Import needs `to`",
                Label::new(doc.file, doc.envelope.span, "no spec"),
            )
            .with_help("write `spec: {to: ADDRESS}`, e.g. `spec: {to: File/motd@web-1}`")
        };
        let Some((spec, spec_node)) = super::record_spec::<ImportSpec>(doc, missing, problems)
        else {
            continue;
        };
        let span_of = |field: &str| spec_node.get(field).map_or(spec_node.span, |n| n.span);
        match check(model, &spec.to, spec.id.as_deref()) {
            Ok(mut import) => {
                import.at = Some(Label::new(doc.file, span_of("to"), "imported here"));
                imports.push(import);
            }
            Err(refusal) => {
                let field = if refusal.code == "nimbus::import::id" {
                    "id"
                } else {
                    "to"
                };
                problems.push(
                    Problem::error(
                        refusal.code,
                        refusal.message,
                        Label::new(doc.file, span_of(field), refusal.label),
                    )
                    .with_help(refusal.help),
                );
            }
        }
    }
    model.imports.extend(imports);
}
