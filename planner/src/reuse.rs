//! What the loader keeps of the kinds that shape the repository (modules, uses,
//! environments, moves) for [`crate::modules`] to expand: their documents as trees, the files
//! of module folders, where expanded documents came from, and the moves.

use std::collections::BTreeSet;

use nimbus_schemas::ReuseKind;

use crate::diagnostics::{FileId, Label};
use crate::kdl::Envelope;
use crate::tree::{ByteSpan, Format};

/// Where substituted and patched values came from: their place in a copy, and where they
/// were written.
pub type Origins = Vec<(ByteSpan, Label)>;

/// A document of one of the reuse kinds, kept as its tree.
#[derive(Clone, Debug)]
pub struct MetaDoc {
    pub kind: ReuseKind,
    pub file: FileId,
    pub format: Format,
    pub envelope: Envelope,
}

/// A file of a module's folder: parsed, not typed (its values are filled in per use).
#[derive(Clone, Debug)]
pub struct Template {
    pub file: FileId,
    pub format: Format,
    pub envelopes: Vec<Envelope>,
}

/// Where the documents of a copy of a module's file came from.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    /// `module.web[acme]`, `module.web[acme].module.db`; none for a file copied for an
    /// environment's patch only.
    pub module: Option<String>,
    /// The path the tenant folder rule reads: the Use's file (or its use's, when nested).
    pub scope_path: String,
    /// The Use, for every diagnostic in the copy.
    pub used_at: Option<Label>,
    /// Substituted and patched values: their place in the copy, and where they were written.
    pub values: Origins,
}

/// The names of the files that make a folder a module.
pub(crate) const DECLARATIONS: [&str; 3] = ["module.yaml", "module.yml", "module.kdl"];

/// The folders that are modules: those that hold a `module.yaml` (or `.yml`, `.kdl`).
pub fn module_dirs<'a>(paths: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    paths
        .into_iter()
        .filter_map(|path| {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            DECLARATIONS.contains(&name).then(|| dir.to_owned())
        })
        .collect()
}

/// The module folder a path belongs to: the nearest folder above it that is a module.
pub fn module_of<'a>(path: &str, dirs: &'a BTreeSet<String>) -> Option<&'a String> {
    let mut dir = path;
    while let Some((parent, _)) = dir.rsplit_once('/') {
        if let Some(found) = dirs.get(parent) {
            return Some(found);
        }
        dir = parent;
    }
    dirs.get("")
}

/// The reuse kind an envelope declares, if it is one.
pub fn reuse_kind(envelope: &Envelope, format: Format) -> Option<ReuseKind> {
    let name = envelope.kind.as_ref()?.as_str()?;
    match format {
        Format::Yaml => ReuseKind::from_yaml_name(name),
        Format::Kdl => ReuseKind::from_kdl_name(name),
    }
}

/// One move, checked against the manifests.
#[derive(Clone, Debug, PartialEq)]
pub struct Move {
    /// As written, with the module path when there is one.
    pub from: String,
    pub to: String,
    /// The addresses state keys instances by (`Kind/tenant/name`).
    pub from_resource: String,
    pub to_resource: String,
    /// The Moved record, for plan-time problems.
    pub at: Label,
}

impl Move {
    /// A move between module paths only: state's key stays, only where it comes from changes.
    pub fn keeps_address(&self) -> bool {
        self.from_resource == self.to_resource
    }
}

/// One import: every instance of `resource`, or its instance on `host`.
#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    /// As written.
    pub to: String,
    /// The resource's address as state keys it (`Kind/tenant/name`).
    pub resource: String,
    pub host: Option<String>,
    pub id: Option<String>,
    /// The Import record; none for one given on the command line.
    pub at: Option<Label>,
    /// Taken over only where it exists (`apply --force-conflicts`): absent, it is created as
    /// usual rather than failed as "nothing to import".
    pub if_present: bool,
}

impl Import {
    /// Whether this import covers the instance at `address` (`File/motd@web-1`).
    pub fn covers(&self, address: &str) -> bool {
        let (resource, host) = match address.split_once('@') {
            Some((resource, host)) => (resource, Some(host)),
            None => (address, None),
        };
        resource == self.resource && (self.host.is_none() || self.host.as_deref() == host)
    }
}
