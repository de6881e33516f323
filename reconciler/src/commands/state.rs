//! `nimbus state list | show ADDR | history | rm ADDR | unprotect ADDR | unlock`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use miette::{IntoDiagnostic, Result};

use crate::engine;
use crate::render::{print_stderr, print_stdout};
use crate::state::format_time;

#[derive(Debug, Args)]
pub struct StateArgs {
    /// The config repository (any folder in it), as the positional DIR of each subcommand
    /// says it; kept for scripts that name it this way.
    #[arg(long = "dir", value_name = "DIR", global = true)]
    pub dir_flag: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every recorded instance.
    List {
        /// The config repository (default: the one the current folder is in).
        dir: Option<PathBuf>,
    },
    /// One recorded instance: what was last applied, outputs, flags.
    Show {
        address: String,
        /// The config repository (default: the one the current folder is in).
        dir: Option<PathBuf>,
    },
    /// Past runs and their results.
    History {
        /// The config repository (default: the one the current folder is in).
        dir: Option<PathBuf>,
    },
    /// Forget an instance without touching it.
    Rm {
        address: String,
        /// The config repository (default: the one the current folder is in).
        dir: Option<PathBuf>,
    },
    /// Rename what state records for a resource (a rename, a move into a module), with no
    /// change on any host: what `kind: Moved` does in a plan. Refused onto an address state
    /// already records.
    Mv {
        /// The address state records now (`File/old`; a module path before it is allowed).
        from: String,
        /// The address the manifests declare (`File/new`, `module.web[acme]/File/motd`).
        to: String,
        /// The config repository (default: the one the current folder is in).
        dir: Option<PathBuf>,
    },
    /// Lift the protection (nimbus.dev/protect, nimbus.dev/prune) recorded for an instance.
    Unprotect {
        address: String,
        /// The config repository (default: the one the current folder is in).
        dir: Option<PathBuf>,
    },
    /// Remove the state lock (when its holder is gone).
    Unlock {
        /// The config repository (default: the one the current folder is in).
        dir: Option<PathBuf>,
    },
    /// Copy this repository's state, whole, to another backend: `postgres://...` (credentials
    /// from PGPASSWORD or ~/.pgpass) or a SQLite file. The target must be empty; the state
    /// here is left as it was.
    Migrate {
        /// Where to: a `postgres://` URL (its schema: `schema=` in the URL, else this
        /// repository's) or a path to a new SQLite file.
        #[arg(long)]
        to: String,
        /// The config repository (default: the one the current folder is in).
        dir: Option<PathBuf>,
    },
}

impl StateArgs {
    /// DIR as given to the subcommand, else `--dir`, else the current folder.
    fn dir(&self) -> PathBuf {
        let positional = match &self.command {
            StateCommand::List { dir }
            | StateCommand::Show { dir, .. }
            | StateCommand::History { dir }
            | StateCommand::Rm { dir, .. }
            | StateCommand::Mv { dir, .. }
            | StateCommand::Unprotect { dir, .. }
            | StateCommand::Unlock { dir }
            | StateCommand::Migrate { dir, .. } => dir.clone(),
        };
        positional
            .or_else(|| self.dir_flag.clone())
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

pub fn run(args: StateArgs) -> Result<i32> {
    let dir = args.dir();
    if matches!(args.command, StateCommand::Unlock { .. }) {
        // A lock left behind must be removable even when the repository does not validate.
        let root = crate::workdir::repository_root(&dir)?;
        let store = engine::open_state(&engine::state_location_of(&root, None, &root)?)?;
        return unlock(&store);
    }
    let loaded = engine::load(&dir)?;
    let mut store = engine::open_state(&loaded.state_location()?)?;
    let error = miette::Report::new;
    match args.command {
        StateCommand::List { .. } => {
            let resources = store.resources().map_err(error)?;
            let modules = store.modules().map_err(error)?;
            if args.json {
                print_stdout(&crate::render::versioned_json("resources", &resources));
            } else {
                for r in resources {
                    let resource = r.record.address.split('@').next().unwrap_or_default();
                    let shown = match modules.get(resource) {
                        Some(module) => format!("{module}/{}", r.record.address),
                        None => r.record.address.clone(),
                    };
                    let mut flags = Vec::new();
                    if !r.record.owned {
                        flags.push("not owned");
                    }
                    if r.record.protected {
                        flags.push("protected");
                    }
                    if r.record.keep_on_removal {
                        flags.push("kept on removal");
                    }
                    if r.record.tainted.is_some() {
                        flags.push("tainted: replaced by the next apply");
                    }
                    let flags = if flags.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", flags.join(", "))
                    };
                    print_stdout(&format!("{shown}{flags}\n"));
                }
            }
        }
        StateCommand::Show { address, .. } => {
            let Some(resource) = store
                .resources()
                .map_err(error)?
                .into_iter()
                .find(|r| r.record.address == address)
            else {
                miette::bail!("{address} is not in state; `nimbus state list` shows what is");
            };
            if args.json {
                print_stdout(&crate::render::versioned_object(&resource));
            } else {
                print_stdout(&format!(
                    "address:   {}\nkind:      {}\nprovider:  {}\nowned:     {}\nprotected: {}\nupdated:   {}\napplied:\n{}\noutputs:   {}\n",
                    resource.record.address,
                    resource.record.kind,
                    resource.record.provider,
                    resource.record.owned,
                    resource.record.protected,
                    format_time(resource.updated_at),
                    serde_json::to_string_pretty(&resource.record.applied).into_diagnostic()?,
                    resource.record.outputs
                ));
                if let Some(why) = &resource.record.tainted {
                    print_stdout(&format!(
                        "tainted:   the apply that made it failed: {why}\n"
                    ));
                }
            }
        }
        StateCommand::History { .. } => {
            let history = store.history().map_err(error)?;
            if args.json {
                print_stdout(&crate::render::versioned_json("runs", &history));
            } else {
                for run in history {
                    let applied = run
                        .results
                        .iter()
                        .filter(|r| r.outcome == "applied")
                        .count();
                    let failed = run.results.iter().filter(|r| r.outcome == "failed").count();
                    print_stdout(&format!(
                        "#{:<4} {}  {:<8} {:<12} {}@{}  {} applied, {} failed\n",
                        run.id,
                        format_time(run.started_at),
                        run.command,
                        run.outcome.as_deref().unwrap_or("unfinished"),
                        run.user,
                        run.host,
                        applied,
                        failed
                    ));
                    if let Some(note) = &run.note {
                        print_stdout(&format!("      {note}\n"));
                    }
                }
            }
        }
        StateCommand::Rm { address, .. } => {
            let lock = engine::LockGuard::acquire(&loaded.state_location()?, "nimbus state rm")?;
            store.fence_with(lock.token());
            if !store.remove(&address).map_err(error)? {
                miette::bail!("{address} is not in state");
            }
            print_stderr(&format!(
                "Removed {address} from state; nothing was changed on its target.\n"
            ));
        }
        StateCommand::Mv { from, to, .. } => {
            let (_, from_resource) = nimbus_planner::modules::split_address(&from);
            let (_, to_resource) = nimbus_planner::modules::split_address(&to);
            for (text, resource) in [(&from, from_resource), (&to, to_resource)] {
                let address: nimbus_schemas::Address = resource
                    .parse()
                    .map_err(|e| miette::miette!(code = "nimbus::moved::address", "{text}: {e}"))?;
                if address.host.is_some() {
                    miette::bail!(
                        help = "drop the `@host`: every instance of the resource moves",
                        "{text} names one host's instance; a move names a resource"
                    );
                }
            }
            let lock = engine::LockGuard::acquire(&loaded.state_location()?, "nimbus state mv")?;
            store.fence_with(lock.token());
            if from_resource == to_resource {
                print_stderr(&format!(
                    "{from} and {to} are one instance in state; the next apply records its module path.\n"
                ));
                return Ok(0);
            }
            let moved = store.rename(from_resource, to_resource).map_err(error)?;
            if moved == 0 {
                miette::bail!("{from} is not in state");
            }
            print_stderr(&format!(
                "Moved {from} to {to} in state ({moved} {}); nothing was changed on any host.\n",
                if moved == 1 { "instance" } else { "instances" }
            ));
        }
        StateCommand::Unprotect { address, .. } => {
            let lock =
                engine::LockGuard::acquire(&loaded.state_location()?, "nimbus state unprotect")?;
            store.fence_with(lock.token());
            if !store.unprotect(&address).map_err(error)? {
                miette::bail!("{address} is not in state");
            }
            print_stderr(&format!(
                "Lifted the protection of {address}; the next plan may delete or replace it.\n"
            ));
        }
        StateCommand::Unlock { .. } => return unlock(&store),
        StateCommand::Migrate { to, .. } => {
            let from = loaded.state_location()?;
            let name = loaded
                .checked
                .model
                .repository()
                .map(|d| d.resource.name().to_owned());
            let target = if crate::state::postgres::is_url(&to) {
                let schema =
                    crate::state::postgres::schema_for(name.as_deref().unwrap_or("repository"));
                crate::state::StateLocation::Postgres(Box::new(
                    crate::state::postgres::Target::parse(&to, &schema)
                        .map_err(|e| miette::miette!("--to: {e}"))?,
                ))
            } else {
                crate::state::StateLocation::File(PathBuf::from(&to))
            };
            if target == from {
                miette::bail!("--to names the state this repository already uses ({from})");
            }
            // No apply changes the state while it is copied.
            let lock = engine::LockGuard::acquire(&from, "nimbus state migrate")?;
            store.fence_with(lock.token());
            let destination = engine::open_state(&target)?;
            let count = store.copy_into(&destination).map_err(error)?;
            let setting = match &target {
                // Shown without its password, which belongs in PGPASSWORD or ~/.pgpass.
                crate::state::StateLocation::Postgres(t) => format!(
                    "state: {{url: ...}} in nimbus.yaml or NIMBUS_STATE_URL, for {}",
                    t.shown()
                ),
                crate::state::StateLocation::File(path) => {
                    format!("state: {{path: {}}} in nimbus.yaml", path.display())
                }
            };
            print_stderr(&format!(
                "Copied {} instances, {} runs and {} results, the serial and the secrets' key from {from} to {target}.\n\
                 The state here is left as it was: point the Repository at the new one ({setting}), then remove the old one.\n",
                count.instances, count.runs, count.results
            ));
        }
    }
    Ok(0)
}

fn unlock(store: &crate::state::StateStore) -> Result<i32> {
    match store.force_unlock()? {
        Some(lock) => print_stderr(&format!(
            "Removed the lock held by {} (pid {} on {}, since {}).\n",
            lock.holder,
            lock.pid,
            lock.host,
            format_time(lock.since)
        )),
        None => print_stderr("The state was not locked.\n"),
    }
    Ok(0)
}
