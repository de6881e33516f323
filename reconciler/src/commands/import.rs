//! `nimbus import ADDRESS [ID]`: takes an object that already exists under management for a
//! manifest that is already written. State records it as owned, as it is observed (the object
//! is not touched); the next plan shows whatever differs from its manifest, and removing the
//! manifest later deletes it. The run's history says who imported it. A `kind: Import`
//! record does the same inside a plan, so that the import is reviewed first (docs/import.md).

use std::path::PathBuf;

use clap::Args;
use miette::{IntoDiagnostic, Result};
use nimbus_planner::plan::{Action, Change, Plan};

use crate::engine::{self, PlanOptions};
use crate::ops::{Session, SessionOptions};
use crate::render::{print_stderr, print_stdout};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The instance (`File/motd@web-1`) or resource (`File/motd`: each of its instances).
    pub address: String,
    /// The object's identity where it lives (a File's path, a unit's or container's name),
    /// checked against what the manifest names.
    pub id: Option<String>,
    /// The config repository (any folder in it).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Import even though a `nimbus reconcile` daemon reconciles this state: the run's
    /// history records the override and who used it.
    #[arg(long)]
    pub override_daemon: bool,
    /// An age identity file, or an unencrypted OpenSSH private key, that decrypts secrets
    /// (else NIMBUS_AGE_IDENTITY, else the Repository's secrets.identityFile); an SSH private
    /// key also logs in to the hosts, before any other key.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

pub fn run(args: ImportArgs) -> Result<i32> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(async {
        let mut loaded = engine::load_at(&args.dir, None)?;
        let import = nimbus_planner::modules::imported::check(
            &loaded.checked.model,
            &args.address,
            args.id.as_deref(),
        )
        .map_err(|refusal| miette::miette!(help = refusal.help, "{}", refusal.message))?;
        let target = match &import.host {
            Some(host) => format!("{}@{host}", import.resource),
            None => import.resource.clone(),
        };
        loaded.checked.model.imports.push(import.clone());
        let session = Session::open(
            loaded,
            SessionOptions {
                override_daemon: args.override_daemon,
                ..SessionOptions::for_command(Some("nimbus import"), args.identity.as_deref())
            },
        )
        .await?;
        let plan = session
            .plan(&PlanOptions {
                refresh: true,
                targets: vec![target.clone()],
                allow_deletes: false,
                destroy: false,
            })
            .await?;
        let mut imports: Vec<Change> = Vec::new();
        let mut refused = Vec::new();
        for change in plan.changes.iter().filter(|c| import.covers(&c.address)) {
            match (&change.error, change.action) {
                (Some(error), _) => refused.push(error.clone()),
                (None, Action::Import) => imports.push(Change {
                    // As it is: the object is recorded as observed, and not touched.
                    action: Action::Import,
                    after: change.before.clone(),
                    fields: Vec::new(),
                    depends_on: Vec::new(),
                    ..change.clone()
                }),
                (None, _) => refused.push(format!(
                    "{} is already managed: state records it (`nimbus state show {}`)",
                    change.address, change.address
                )),
            }
        }
        for reason in plan.unobserved.iter().filter(|u| import.covers(&u.address)) {
            refused.push(format!(
                "{} could not be observed: {}",
                reason.address, reason.reason
            ));
        }
        for reason in &refused {
            print_stderr(&format!("error: {reason}\n"));
        }
        if imports.is_empty() {
            if refused.is_empty() {
                print_stderr(&format!("error: {target} has no instance to import\n"));
            }
            return Ok(1);
        }
        let only = Plan {
            changes: imports,
            unobserved: Vec::new(),
            moves: Vec::new(),
            ..plan
        };
        let report = session
            .apply(&only, "import", 1, std::future::pending())
            .await?;
        for result in report
            .results
            .iter()
            .filter(|r| r.outcome == crate::executor::Outcome::Applied)
        {
            print_stdout(&format!("{} imported\n", result.address));
        }
        print_stdout(&format!(
            "\n{}\nThe next plan shows what differs from the manifest.\n",
            report.summary_of("Import")
        ));
        Ok(if report.succeeded() && refused.is_empty() {
            0
        } else {
            1
        })
    })
}
