//! `nimbus discover [DIR]`: what runs on the declared Hosts that nimbus does not manage (units
//! made on the host, qemu VMs, files under the folders named with `--path`, WireGuard
//! interfaces, NFS exports, btrfs subvolumes, Docker containers, services, networks and
//! secrets), on the Kubernetes Clusters (namespaces, Deployments, Services) and at the S3
//! endpoint (buckets), each with its kind, where it is and the address it would get. It changes
//! nothing anywhere. With `--generate`, it writes manifests for the Files, Services, Kubernetes
//! namespaces and Deployments and swarm services found, in the repository's syntax, with an
//! `Import` record for each, so that the next plan imports them; what holds a secret is
//! written as an age-encrypted secret.
//! The work is `crate::discovery`; docs/import.md.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result};

use crate::discovery::{self, Found};
use crate::engine;
use crate::ops::{Session, SessionOptions};
use crate::render::{print_stderr, print_stdout};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DiscoverFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The config repository (any folder in it).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// A folder whose files are listed (repeatable): Files are looked for only there.
    #[arg(long = "path", value_name = "DIR")]
    pub paths: Vec<String>,
    /// Only this Host (repeatable); default: every declared Host.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    #[arg(long, value_enum, default_value_t = DiscoverFormat::Text)]
    pub format: DiscoverFormat,
    /// Write manifests, with an Import record each, for the Files, Services, Kubernetes
    /// namespaces and Deployments and swarm services found that no manifest declares.
    #[arg(long)]
    pub generate: bool,
    /// With --generate: only what matches this pattern (repeatable): an address or an
    /// identity, `*` matching any run of characters (`File/*`, `/etc/app/*`, `*@web-1`).
    #[arg(long = "select", value_name = "PATTERN")]
    pub select: Vec<String>,
    /// With --generate: the folder, under the repository, the manifests are written to.
    #[arg(long, default_value = "discovered", value_name = "DIR")]
    pub out: PathBuf,
    /// An age identity file, or an unencrypted OpenSSH private key (also logs in to hosts).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

pub fn run(args: DiscoverArgs) -> Result<i32> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(async {
        let loaded = engine::load_at(&args.dir, None)?;
        let session = Session::open(
            loaded,
            SessionOptions::for_command(None, args.identity.as_deref()),
        )
        .await?;
        let options = discovery::Options {
            paths: args.paths.clone(),
            hosts: args.hosts.clone(),
            contents: args.generate,
        };
        let (found, unreachable) = discovery::discover(&session, &options).await?;
        match args.format {
            DiscoverFormat::Json => print_stdout(&crate::render::versioned_json(
                "discovered",
                serde_json::json!({"objects": found, "unreachable": unreachable}),
            )),
            DiscoverFormat::Text => print_stdout(&text(&found, &unreachable)),
        }
        if args.generate {
            let written = discovery::generate(&session.loaded, &args.out, &found, &args.select)?;
            print_stderr(&written);
        }
        Ok(if unreachable.is_empty() { 0 } else { 1 })
    })
}

fn text(found: &[Found], unreachable: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    if found.is_empty() {
        out.push_str("Nothing found that nimbus does not manage.\n");
    } else {
        out.push_str(&format!(
            "{} {} nimbus does not manage:\n",
            found.len(),
            if found.len() == 1 {
                "object"
            } else {
                "objects"
            }
        ));
        let width = |f: fn(&Found) -> usize| found.iter().map(f).max().unwrap_or(0);
        let (k, h, i) = (
            width(|f| f.kind.len()),
            width(|f| f.host.len()),
            width(|f| f.identity.len()),
        );
        for f in found {
            let what = if f.declared {
                format!(
                    "{} (declared, not managed: `nimbus import {}`)",
                    f.address, f.address
                )
            } else {
                f.address.clone()
            };
            out.push_str(&format!(
                "  {:k$}  {:h$}  {:i$}  {}  -> {what}\n",
                f.kind,
                if f.host.is_empty() { "-" } else { &f.host },
                f.identity,
                f.detail
            ));
        }
    }
    for (what, reason) in unreachable {
        out.push_str(&format!("  ? {what}: not asked: {reason}\n"));
    }
    out.push_str("Nothing was changed on any host or API.\n");
    out
}
