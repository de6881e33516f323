//! Loading and checking a repository (working tree or revision), where its state lives,
//! and its sources' fingerprint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::graph::ResourceGraph;
use nimbus_planner::instances::InstanceGraph;
use nimbus_planner::{Checked, InputFile};
use nimbus_schemas::Spec;
use sha2::{Digest, Sha256};

use crate::render::{count_phrase, print_stderr, problems_text, stderr_is_terminal};
use crate::state::{StateLocation, postgres};
use crate::workdir::read_working_tree;

/// A loaded, checked repository and the graph of its instances.
pub struct Loaded {
    pub root: PathBuf,
    pub checked: Checked,
    pub graph: InstanceGraph,
    /// A digest of the manifests, every other path, and the content of every `source` file.
    pub fingerprint: String,
    /// The text of every file a File's `source` names.
    pub sources: HashMap<String, String>,
    /// The git commit the repository was read at (`--rev`); `None` for the working tree.
    pub revision: Option<String>,
    /// Where the repository's other files (sources, secrets) are read from.
    files: Option<crate::gitsource::RevisionFiles>,
}

impl Loaded {
    /// A repository file by its path: from the revision, else from the working tree.
    pub fn read_file(&self, path: &str) -> std::io::Result<Vec<u8>> {
        read_repository_file(self.files.as_ref(), &self.root, path)
    }
}

/// Loads and checks `root`'s working tree; a repository with errors prints them and is
/// refused.
pub fn load(root: &Path) -> Result<Loaded> {
    load_at(root, None)
}

/// Loads and checks `root` at a git revision (`--rev`), or its working tree.
pub fn load_at(root: &Path, rev: Option<&str>) -> Result<Loaded> {
    // The working tree: the repository DIR is in, found by walking up to its nimbus.yaml.
    let root = match rev {
        Some(_) => root.to_owned(),
        None => crate::workdir::repository_root(root)?,
    };
    load_from(&root, rev, &root)
}

fn load_from(repository: &Path, rev: Option<&str>, root: &Path) -> Result<Loaded> {
    match load_checked(repository, rev, root)? {
        Ok(loaded) => Ok(loaded),
        Err(invalid) => {
            let checked = &invalid.checked;
            print_stderr(&problems_text(
                &checked.problems,
                &checked.model.sources,
                stderr_is_terminal(),
            ));
            miette::bail!(
                "{}: {}; fix them first: a repository with errors is never planned or applied, in any part",
                root.display(),
                count_phrase(checked.error_count(), checked.warning_count())
            );
        }
    }
}

/// A repository (or revision) that does not validate: its problems, for the caller to show.
pub struct Invalid {
    pub checked: Checked,
    /// The commit, when a revision was read.
    pub revision: Option<String>,
}

/// Loads and checks revision `rev` of `repository` (or, without one, the working tree of
/// `root`), with state and relative settings under `root`. A repository with errors comes
/// back as `Err(Invalid)` for the caller to show; nothing is printed.
pub fn load_checked(
    repository: &Path,
    rev: Option<&str>,
    root: &Path,
) -> Result<std::result::Result<Loaded, Box<Invalid>>> {
    let environment = environment();
    let (checked, files, revision, fingerprint) = match rev {
        Some(rev) => {
            // Manifests a previous load in this process already parsed are not parsed again;
            // the tree id stands for the content of every file.
            let revision = crate::gitsource::load_revision(repository, rev)?;
            tracing::debug!(commit = %revision.commit, parsed = revision.parsed, "read the revision");
            let environment = effective_environment(&revision.model, environment)?;
            (
                nimbus_planner::check_in(revision.model, revision.problems, environment.as_deref()),
                Some(revision.files),
                Some(revision.commit),
                format!("git-tree:{}", revision.tree),
            )
        }
        None => {
            let (input, _) = read_working_tree(root)?;
            let fingerprint = source_fingerprint(&input.manifests, input.other_paths.iter());
            let (model, problems) = nimbus_planner::load::load(input);
            let environment = effective_environment(&model, environment)?;
            (
                nimbus_planner::check_in(model, problems, environment.as_deref()),
                None,
                None,
                fingerprint,
            )
        }
    };
    if checked.has_errors() {
        return Ok(Err(Box::new(Invalid { checked, revision })));
    }
    let resources = ResourceGraph::build(&checked.model);
    let graph = InstanceGraph::build(&checked.model, &resources);
    let mut sources = HashMap::new();
    let mut hasher = Sha256::new();
    hasher.update(fingerprint.as_bytes());
    for document in &checked.model.documents {
        let Spec::File(file) = &document.resource.spec else {
            continue;
        };
        let Some(path) = file
            .source
            .as_deref()
            .map(|p| p.trim_start_matches("./").to_owned())
        else {
            continue;
        };
        if sources.contains_key(&path) {
            continue;
        }
        let bytes = read_repository_file(files.as_ref(), root, &path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read the source file {path}"))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            miette::miette!("{path}, the source of File/{}, is not UTF-8 text; binary files are not supported yet", document.resource.name())
        })?;
        hasher.update(path.as_bytes());
        hasher.update(text.as_bytes());
        sources.insert(path, text);
    }
    let fingerprint: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tracing::info!(
        repository = %root.display(),
        documents = checked.model.documents.len(),
        instances = graph.instances.len(),
        warnings = checked.warning_count(),
        "loaded the repository"
    );
    Ok(Ok(Loaded {
        root: root.to_owned(),
        checked,
        graph,
        fingerprint,
        sources,
        revision,
        files,
    }))
}

/// A repository file by its path: from the revision's files, else from the working tree.
fn read_repository_file(
    files: Option<&crate::gitsource::RevisionFiles>,
    root: &Path,
    path: &str,
) -> std::io::Result<Vec<u8>> {
    match files {
        Some(files) => files.read(path),
        None => crate::workdir::read_inside(root, path),
    }
}

/// The environment chosen for this process (`--env`, else `NIMBUS_ENV`).
static ENVIRONMENT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// The variable that chooses an environment when `--env` does not.
pub const ENVIRONMENT_ENV: &str = "NIMBUS_ENV";

/// Chooses the environment every load of this process expands (`--env NAME`); without one,
/// `NIMBUS_ENV` is read.
pub fn choose_environment(name: Option<String>) {
    let name = name.or_else(|| {
        std::env::var(ENVIRONMENT_ENV)
            .ok()
            .filter(|v| !v.is_empty())
    });
    let _ = ENVIRONMENT.set(name);
}

/// The environment chosen for this process, if any.
pub fn environment() -> Option<&'static str> {
    ENVIRONMENT
        .get_or_init(|| {
            std::env::var(ENVIRONMENT_ENV)
                .ok()
                .filter(|v| !v.is_empty())
        })
        .as_deref()
}

/// An environment chosen (`--env`, `NIMBUS_ENV`, `defaultEnvironment`) that the repository
/// does not declare.
pub fn unknown_environment(name: &str, declared: &[String]) -> miette::Report {
    miette::miette!(
        code = "nimbus::environment::unknown",
        help = if declared.is_empty() {
            "this repository declares no environments (kind: Environment); drop --env".to_owned()
        } else {
            format!("its environments are: {}", declared.join(", "))
        },
        "environment `{name}` is not declared in this repository"
    )
}

/// The environment a load expands: the one chosen (`--env`, `NIMBUS_ENV`), else the
/// Repository's `defaultEnvironment`. A repository with environments is loaded for one of
/// them, and the one chosen must exist.
pub fn effective_environment(
    model: &nimbus_planner::Model,
    chosen: Option<&str>,
) -> Result<Option<String>> {
    let declared: Vec<String> = nimbus_planner::modules::environments(model)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let default = nimbus_planner::modules::default_environment(model);
    let chosen = chosen.map(str::to_owned).or(default);
    match chosen.as_deref() {
        Some(name) if !declared.iter().any(|d| d == name) => {
            Err(unknown_environment(name, &declared))
        }
        None if !declared.is_empty() => miette::bail!(
            code = "nimbus::environment::choose",
            help = format!(
                "choose one with --env NAME (or NIMBUS_ENV): {}",
                declared.join(", ")
            ),
            "this repository has environments, and none is chosen"
        ),
        _ => Ok(chosen),
    }
}

/// The environment variable whose `postgres://` URL puts state in PostgreSQL whatever the
/// Repository says (credentials included, kept out of the repository).
pub const STATE_URL_ENV: &str = "NIMBUS_STATE_URL";

/// Where state lives for a repository's settings: `NIMBUS_STATE_URL`, else `state.url`
/// (PostgreSQL, in the schema `nimbus_<Repository name>` unless the URL's `schema` says),
/// else `state.path` (relative to `root`), else `.nimbus/state.db`.
pub fn state_location_in(
    name: Option<&str>,
    repository: Option<&nimbus_schemas::RepositorySpec>,
    root: &Path,
) -> Result<StateLocation> {
    state_location_for(name, repository, None, root)
}

/// Where state lives for a repository's settings and, when one is chosen, an environment:
/// the Environment's own `state` settings, else the repository's with the environment's own
/// file (`.nimbus/env/NAME/state.db`) or schema (`..._NAME`).
pub fn state_location_for(
    name: Option<&str>,
    repository: Option<&nimbus_schemas::RepositorySpec>,
    environment: Option<(&str, Option<&nimbus_schemas::StateSettings>)>,
    root: &Path,
) -> Result<StateLocation> {
    // The in-memory provider keeps its own state beside its objects: a run against it never
    // writes the state that real hosts are planned from.
    if let Some(directory) =
        std::env::var_os(crate::ops::MEMORY_PROVIDER_ENV).filter(|v| !v.is_empty())
    {
        let file = match environment {
            Some((env, _)) => format!("state-{env}.db"),
            None => "state.db".to_owned(),
        };
        return Ok(StateLocation::File(PathBuf::from(directory).join(file)));
    }
    if let Some((env, settings)) = environment {
        let own = settings.filter(|s| s.url.is_some() || s.path.is_some());
        if std::env::var(STATE_URL_ENV).is_ok_and(|u| !u.is_empty()) || own.is_none() {
            // The repository's place, made the environment's own.
            return Ok(match state_location_for(name, repository, None, root)? {
                StateLocation::Postgres(mut target) => {
                    target.for_environment(env);
                    StateLocation::Postgres(target)
                }
                StateLocation::File(path) => {
                    let default = root.join(".nimbus/state.db");
                    StateLocation::File(if path == default {
                        root.join(".nimbus/env").join(env).join("state.db")
                    } else {
                        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                        path.with_file_name(format!("{stem}-{env}.db"))
                    })
                }
            });
        }
        let own = own.cloned().unwrap_or_default();
        if let Some(url) = &own.url {
            if !postgres::is_url(url) {
                miette::bail!(
                    help = "write postgres://USER@HOST[:PORT]/DATABASE, with the password in PGPASSWORD or ~/.pgpass",
                    "the state.url of environment `{env}` is not a postgres:// URL"
                );
            }
            let schema = postgres::schema_for(&format!("{}_{env}", name.unwrap_or("repository")));
            let target = postgres::Target::parse(url, &schema)
                .map_err(|e| miette::miette!("environment `{env}`'s state.url: {e}"))?;
            return Ok(StateLocation::Postgres(Box::new(target)));
        }
        return Ok(StateLocation::File(
            root.join(own.path.as_deref().unwrap_or(".nimbus/state.db")),
        ));
    }
    let schema = postgres::schema_for(name.unwrap_or("repository"));
    let url = std::env::var(STATE_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| (u, STATE_URL_ENV))
        .or_else(|| {
            repository
                .and_then(|r| r.state.url.clone())
                .map(|u| (u, "state.url"))
        });
    if let Some((url, from)) = url {
        if !postgres::is_url(&url) {
            miette::bail!(
                help = "write postgres://USER@HOST[:PORT]/DATABASE, with the password in PGPASSWORD or ~/.pgpass",
                "{from} is not a postgres:// URL"
            );
        }
        let target =
            postgres::Target::parse(&url, &schema).map_err(|e| miette::miette!("{from}: {e}"))?;
        return Ok(StateLocation::Postgres(Box::new(target)));
    }
    match repository.map(|r| &r.state) {
        Some(settings) => Ok(StateLocation::File(
            root.join(settings.path.as_deref().unwrap_or(".nimbus/state.db")),
        )),
        None => Ok(StateLocation::File(root.join(".nimbus/state.db"))),
    }
}

/// Where state lives for a repository (or revision) that may not validate: its Repository
/// settings as far as they loaded. For commands that must work on a broken repository
/// (`nimbus state unlock`) and for the daemon's start.
pub fn state_location_of(
    repository: &Path,
    rev: Option<&str>,
    root: &Path,
) -> Result<StateLocation> {
    let model = match load_checked(repository, rev, root)? {
        Ok(loaded) => return loaded.state_location(),
        Err(invalid) => invalid.checked.model,
    };
    let document = model.repository();
    let settings = document.and_then(|d| match &d.resource.spec {
        Spec::Repository(r) => Some(r),
        _ => None,
    });
    let environment_state = environment_state(&model);
    state_location_for(
        document.map(|d| d.resource.name()),
        settings,
        model
            .environment
            .as_deref()
            .map(|e| (e, environment_state.as_ref())),
        root,
    )
}

/// The chosen Environment's own `state` settings, when it has them.
fn environment_state(model: &nimbus_planner::Model) -> Option<nimbus_schemas::StateSettings> {
    let name = model.environment.as_deref()?;
    let doc = model.meta.iter().find(|m| {
        m.kind == nimbus_schemas::ReuseKind::Environment
            && m.envelope
                .metadata
                .as_ref()
                .and_then(|n| n.get("name"))
                .and_then(|n| n.as_str())
                == Some(name)
    })?;
    let spec = doc.envelope.spec.as_ref()?;
    let context = nimbus_planner::de::Context {
        kdl: doc.format == nimbus_planner::Format::Kdl,
        ..Default::default()
    };
    nimbus_planner::de::from_node::<nimbus_schemas::EnvironmentSpec>(spec, &context)
        .ok()?
        .state
}

/// A digest of every manifest's path and bytes and of every other path.
pub fn source_fingerprint<'a>(
    manifests: &[InputFile],
    other_paths: impl Iterator<Item = &'a String>,
) -> String {
    let mut hasher = Sha256::new();
    let mut files: Vec<&InputFile> = manifests.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for file in files {
        hasher.update(file.path.as_bytes());
        hasher.update([0]);
        hasher.update((file.bytes.len() as u64).to_le_bytes());
        hasher.update(&file.bytes);
    }
    for path in other_paths {
        hasher.update(path.as_bytes());
        hasher.update([1]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Loaded {
    pub fn repository(&self) -> Option<&nimbus_schemas::RepositorySpec> {
        self.checked
            .model
            .repository()
            .and_then(|d| match &d.resource.spec {
                Spec::Repository(r) => Some(r),
                _ => None,
            })
    }

    /// Where state lives ([`state_location_in`]); a PostgreSQL state's password from its
    /// age secret (`state.passwordSecret`) when `NIMBUS_STATE_URL` does not give the state.
    pub fn state_location(&self) -> Result<StateLocation> {
        let environment_state = environment_state(&self.checked.model);
        let mut location = state_location_for(
            self.checked.model.repository().map(|d| d.resource.name()),
            self.repository(),
            self.checked
                .model
                .environment
                .as_deref()
                .map(|e| (e, environment_state.as_ref())),
            &self.root,
        )?;
        let from_environment = std::env::var(STATE_URL_ENV).is_ok_and(|u| !u.is_empty());
        if let (StateLocation::Postgres(target), Some(repository), false) =
            (&mut location, self.repository(), from_environment)
            && let Some(name) = &repository.state.password_secret
        {
            let password = self.repository_secret(name, None, "state.passwordSecret")?;
            target.set_password(&password);
        }
        Ok(location)
    }

    /// The value of the repository's age secret `name` (`secrets/NAME.age` of this revision),
    /// its trailing newline trimmed, decrypted with `identity`, else `NIMBUS_AGE_IDENTITY`,
    /// else `secrets.identityFile`. `what` names the setting that wants it, in errors.
    pub fn repository_secret(
        &self,
        name: &str,
        identity: Option<&Path>,
        what: &str,
    ) -> Result<String> {
        let configured = self
            .repository()
            .and_then(|r| r.secrets.identity_file.as_deref());
        let (path, origin) = crate::secrets::identity_path(identity, &self.root, configured)
            .ok_or_else(|| {
                miette::miette!(
                    help = "set NIMBUS_AGE_IDENTITY, or secrets.identityFile in the Repository",
                    "{what} `{name}` needs an age identity to decrypt it"
                )
            })?;
        let identities = crate::secrets::load_identities(&path)
            .wrap_err_with(|| format!("the identity named by {origin}"))?;
        let file = self
            .read_file(&format!("secrets/{name}.age"))
            .into_diagnostic()
            .wrap_err_with(|| format!("{what}: cannot read secrets/{name}.age"))?;
        let value = crate::secrets::decrypt(&identities, &file)
            .wrap_err_with(|| format!("{what} `{name}`"))?;
        let text = value
            .text()
            .map_err(|e| miette::miette!("{what} `{name}` {e}"))?;
        Ok(text.trim_end_matches(['\n', '\r']).to_owned())
    }

    pub fn parallelism(&self) -> usize {
        self.repository()
            .map_or(nimbus_schemas::DEFAULT_PARALLELISM, |r| r.parallelism) as usize
    }
}
