//! `nimbus preview --base REV --head REV`: the plan of a pull request, as the comment a CI job
//! posts: what head would change if base were applied (desired against desired), read from
//! the git object database without a checkout.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr};
use nimbus_planner::plan::{Action, Plan};
use nimbus_planner::render;
use nimbus_providers::Registry;

use crate::engine::{self, PlanOptions, RunSecrets};
use crate::ops::{self, Session, SessionOptions};
use crate::render::{print_stderr, print_stdout, problems_text};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PreviewFormat {
    #[default]
    Markdown,
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The revision the pull request goes into (its target branch, or the merge base).
    #[arg(long, value_name = "REV")]
    pub base: String,
    /// The pull request's revision.
    #[arg(long, value_name = "REV")]
    pub head: String,
    /// The config repository (a directory in a git repository), as every command takes it.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The same, as a flag (kept for scripts that name it this way).
    #[arg(long = "repo", value_name = "DIR", conflicts_with = "dir")]
    pub repo_flag: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = PreviewFormat::Markdown)]
    pub format: PreviewFormat,
    /// Also write the whole plan there, as plan.json and plan.txt (for a CI artifact).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// The longest markdown comment to print; past it, sections are left out with a note.
    #[arg(long, default_value_t = 60_000, value_name = "CHARS")]
    pub max_chars: usize,
    /// Exit 0 when the pull request changes nothing and 2 when it does.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// An age identity file, or an unencrypted OpenSSH private key, that decrypts secrets, so
    /// that a changed secret shows (as "sensitive value changed"); else NIMBUS_AGE_IDENTITY,
    /// else secrets.identityFile. With --refresh, an SSH private key also logs in to hosts.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Also observe the live targets (needs the credentials `nimbus plan` needs): head
    /// against what is there, as recorded in state, rather than against base.
    #[arg(long)]
    pub refresh: bool,
    /// Post the comment to the pull request on this forge (one per pull request and
    /// environment, updated in place), with the token from GITHUB_TOKEN, GITLAB_TOKEN or
    /// GITEA_TOKEN (else NIMBUS_FORGE_TOKEN), and set the head commit's status.
    #[arg(long, value_enum, value_name = "FORGE")]
    pub post: Option<crate::forge::ForgeKind>,
    /// The pull request (GitLab: the merge request's iid); default from the CI's variables.
    #[arg(long, value_name = "N")]
    pub pr: Option<u64>,
    /// The forge's API (default: GITHUB_API_URL or CI_API_V4_URL, else the public forge's).
    #[arg(long, value_name = "URL")]
    pub forge_api: Option<String>,
    /// OWNER/NAME (GitLab: the project's id or path); default from the CI's variables.
    #[arg(long, value_name = "REPO")]
    pub forge_repo: Option<String>,
    /// The head commit to set the status of (default: --head as git resolves it).
    #[arg(long, value_name = "SHA")]
    pub head_sha: Option<String>,
    /// Print the forge requests instead of sending them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Posts the comment and sets the head's status, when `--post` asks.
async fn post(
    args: &PreviewArgs,
    repo: &std::path::Path,
    body: &str,
    ok: bool,
    summary: &str,
) -> Result<()> {
    let Some(kind) = args.post else {
        return Ok(());
    };
    let forge = crate::forge::Forge::new(
        kind,
        args.forge_api.clone(),
        args.forge_repo.clone(),
        args.dry_run,
    )?;
    let number = args
        .pr
        .or_else(crate::forge::number_from_environment)
        .ok_or_else(|| {
            miette::miette!(
                help = "give --pr N",
                "which pull request? no --pr, and none in the CI's variables"
            )
        })?;
    let sha = match &args.head_sha {
        Some(sha) => sha.clone(),
        None => crate::gitsource::read_revision(repo, &args.head)?.commit,
    };
    let environment = crate::engine::environment();
    let marker = crate::forge::marker(environment);
    {
        let done = forge.upsert_comment(number, &marker, body).await?;
        forge
            .set_status(
                &sha,
                if ok {
                    crate::forge::State::Success
                } else {
                    crate::forge::State::Failure
                },
                summary,
                None,
                &match environment {
                    Some(env) => format!("nimbus/preview ({env})"),
                    None => "nimbus/preview".to_owned(),
                },
            )
            .await?;
        print_stderr(&format!(
            "{done} the comment on #{number}; status of {} set\n",
            short(&sha)
        ));
        Ok(())
    }
}

pub fn run(mut args: PreviewArgs) -> Result<i32> {
    let repo = args
        .dir
        .take()
        .or_else(|| args.repo_flag.take())
        .unwrap_or_else(|| PathBuf::from("."));
    // Head's problems are the first thing a reviewer needs: shown, and the preview fails.
    let head = match engine::load_checked(&repo, Some(&args.head), &repo)? {
        Ok(head) => head,
        Err(invalid) => {
            let checked = &invalid.checked;
            let commit = invalid.revision.as_deref().unwrap_or(&args.head);
            let problems = problems_text(&checked.problems, &checked.model.sources, false);
            let mut out = format!(
                "### nimbus preview `{}`\n\n**{} in the head revision; nothing can be planned until they are fixed.**\n\n```\n",
                short(commit),
                crate::render::count_phrase(checked.error_count(), checked.warning_count())
            );
            out.push_str(&problems);
            out.push_str("```\n");
            match args.format {
                PreviewFormat::Json => {
                    print_stdout(&crate::render::problems_json(
                        &checked.problems,
                        &checked.model.sources,
                    ));
                }
                _ => print_stdout(&truncate(&out, args.max_chars)),
            }
            if args.post.is_some() {
                let summary = format!(
                    "{} in the head revision",
                    crate::render::count_phrase(checked.error_count(), checked.warning_count())
                );
                tokio::runtime::Runtime::new()
                    .into_diagnostic()?
                    .block_on(post(
                        &args,
                        &repo,
                        &truncate(&out, post_limit(&args)),
                        false,
                        &summary,
                    ))?;
            }
            return Ok(1);
        }
    };
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(async {
        // One fingerprint key for both sides, made for this preview: nothing is written.
        let key = crate::secrets::random_key().into_diagnostic()?;
        let head_secrets = engine::resolve_secrets_with_key(&head, args.identity.as_deref(), &key)?;
        let registry = Registry::new();
        let options = PlanOptions {
            refresh: false,
            targets: Vec::new(),
            allow_deletes: true,
            destroy: false,
        };
        // Base, as if applied: every instance recorded as base declares it.
        let no_modules = std::collections::BTreeMap::new();
        let (records, base_modules, base_commit) = match engine::load_at(&repo, Some(&args.base)) {
            Ok(base) => {
                let base_secrets =
                    engine::resolve_secrets_with_key(&base, args.identity.as_deref(), &key)?;
                let plan = ops::make_plan(
                    &base,
                    &[],
                    &no_modules,
                    0,
                    &registry,
                    &options,
                    &base_secrets,
                )
                .await?;
                let records: Vec<_> = plan.changes.iter().filter_map(|c| c.record()).collect();
                (records, plan.modules.clone(), base.revision.clone())
            }
            Err(e) => {
                print_stderr(&format!(
                    "warning: the base revision `{}` does not load ({e}); previewing against nothing\n",
                    args.base
                ));
                let commit = crate::gitsource::read_revision(&repo, &args.base)
                    .ok()
                    .map(|r| r.commit);
                (Vec::new(), no_modules.clone(), commit)
            }
        };
        let base_commit = base_commit.unwrap_or_else(|| args.base.clone());
        // State, where there is one: what it records that base does not declare is planned
        // too (as a deletion, or with --refresh against what is observed).
        let state_path = head.state_location()?;
        let stored = if state_path.exists() {
            engine::open_state(&state_path)?
                .snapshot()
                ?
                .0
        } else {
            Vec::new()
        };
        let mut records = records;
        for record in stored {
            if !records.iter().any(|r| r.address == record.address) {
                records.push(record);
            }
        }
        let plan = if args.refresh {
            // The session every command uses, read-only, with this preview's secret key.
            let session_options = SessionOptions {
                secret_key: Some(key.clone()),
                ..SessionOptions::for_command(None, args.identity.as_deref())
            };
            if session_options.memory.is_some() {
                // Base's instances, as if applied, were applied where head's go.
                for record in &mut records {
                    record.provider = nimbus_planner::rules::MEMORY.to_owned();
                }
            }
            let session = Session::open(head, session_options).await?;
            let options = PlanOptions {
                refresh: true,
                ..options
            };
            let mut plan = ops::make_plan(
                &session.loaded,
                &records,
                &base_modules,
                0,
                &session.registry,
                &options,
                &session.secrets,
            )
            .await?;
            plan.notes = session.notes.clone();
            plan
        } else {
            ops::make_plan(
                &head,
                &records,
                &base_modules,
                0,
                &registry,
                &options,
                &head_secrets,
            )
            .await?
        };
        if let Some(dir) = &args.out_dir {
            write_artifacts(dir, &plan)?;
        }
        let rendered = match args.format {
            PreviewFormat::Markdown => comment(&plan, &base_commit, &head_secrets, &args),
            PreviewFormat::Text => crate::render::plan_text(&plan),
            PreviewFormat::Json => format!(
                "{}\n",
                serde_json::to_string_pretty(&plan).into_diagnostic()?
            ),
        };
        print_stdout(&rendered);
        if args.post.is_some() {
            // The comment fits the forge: cut (with a pointer to the whole plan) when needed.
            let mut posted = args.clone_for_comment();
            posted.max_chars = post_limit(&args);
            // A comment is markdown, whatever --format printed.
            let body = comment(&plan, &base_commit, &head_secrets, &posted);
            let ok = plan.errors().next().is_none();
            post(&args, &repo, &body, ok, &render::summary(&plan)).await?;
        }
        Ok(if args.detailed_exitcode && (plan.has_changes() || !plan.unobserved.is_empty()) {
            2
        } else {
            0
        })
    })
}

/// The longest comment the forge takes, less room for nimbus's marker line.
fn post_limit(args: &PreviewArgs) -> usize {
    args.post.map_or(args.max_chars, |f| {
        args.max_chars.min(f.comment_limit() - 200)
    })
}

impl PreviewArgs {
    /// The settings a comment is rendered with (its length may differ).
    fn clone_for_comment(&self) -> PreviewArgs {
        PreviewArgs {
            base: self.base.clone(),
            head: self.head.clone(),
            dir: None,
            repo_flag: None,
            format: self.format,
            out_dir: None,
            max_chars: self.max_chars,
            detailed_exitcode: self.detailed_exitcode,
            identity: self.identity.clone(),
            refresh: self.refresh,
            post: self.post,
            pr: self.pr,
            forge_api: self.forge_api.clone(),
            forge_repo: self.forge_repo.clone(),
            head_sha: self.head_sha.clone(),
            dry_run: self.dry_run,
        }
    }
}

fn short(commit: &str) -> String {
    // Characters, not bytes: a revision's name may be any text.
    commit.chars().take(12).collect()
}

fn write_artifacts(dir: &std::path::Path, plan: &Plan) -> Result<()> {
    std::fs::create_dir_all(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join("plan.json"),
        serde_json::to_vec_pretty(plan).into_diagnostic()?,
    )
    .and_then(|()| std::fs::write(dir.join("plan.txt"), render::text(plan)))
    .into_diagnostic()
    .wrap_err_with(|| format!("cannot write the plan into {}", dir.display()))
}

/// The tenant of an address (`Workload/acme/api` → acme), or the infrastructure.
fn tenant(address: &str) -> String {
    address
        .parse::<nimbus_schemas::Address>()
        .ok()
        .and_then(|a| a.tenant)
        .unwrap_or_default()
}

/// The PR comment: summary first (counts, deletions and replacements, resources by tenant),
/// then a collapsible section per changed resource, under `max_chars`.
fn comment(plan: &Plan, base: &str, secrets: &RunSecrets, args: &PreviewArgs) -> String {
    let commit = plan.source_revision.as_deref().unwrap_or(&args.head);
    let mut head = format!(
        "### nimbus preview: `{}` → `{}`\n\n",
        short(base),
        short(commit)
    );
    // What could not be observed (with --refresh) is named first: nothing is planned for it.
    head.push_str(&render::markdown_unobserved(plan));
    if !plan.has_changes() {
        head.push_str(if plan.unobserved.is_empty() {
            "No changes: this revision plans nothing new against its base.\n"
        } else {
            "No changes for what was observed.\n"
        });
        return head;
    }
    head.push_str(&render::markdown_summary(plan));
    // Resources by tenant.
    let mut tenants: std::collections::BTreeMap<String, [usize; 4]> = Default::default();
    for change in plan.changes.iter().filter(|c| c.action.is_change()) {
        let counts = tenants.entry(tenant(&change.address)).or_default();
        let column = match change.action {
            Action::Create => 0,
            Action::Update => 1,
            Action::Replace => 2,
            _ => 3,
        };
        counts[column] += 1;
    }
    head.push_str("| tenant | create | update | replace | destroy |\n|---|---:|---:|---:|---:|\n");
    for (name, [c, u, r, d]) in &tenants {
        let name = if name.is_empty() {
            "(infrastructure)"
        } else {
            name
        };
        let _ = writeln!(head, "| {name} | {c} | {u} | {r} | {d} |");
    }
    head.push('\n');
    // Resources by module, when modules produced any.
    if !plan.modules.is_empty() {
        let mut modules: std::collections::BTreeMap<&str, [usize; 4]> = Default::default();
        for change in plan.changes.iter().filter(|c| c.action.is_change()) {
            let module = plan
                .modules
                .get(change.resource.as_str())
                .map_or("(root)", String::as_str);
            let column = match change.action {
                Action::Create => 0,
                Action::Update => 1,
                Action::Replace => 2,
                _ => 3,
            };
            modules.entry(module).or_default()[column] += 1;
        }
        head.push_str(
            "| module | create | update | replace | destroy |\n|---|---:|---:|---:|---:|\n",
        );
        for (module, [c, u, r, d]) in &modules {
            let _ = writeln!(head, "| `{module}` | {c} | {u} | {r} | {d} |");
        }
        head.push('\n');
    }
    head.push_str(&render::markdown_moves(plan));
    if secrets.fingerprints.values().any(Result::is_err) {
        head.push_str("_Some secrets could not be decrypted here (no identity); a change of their values does not show._\n\n");
    }
    let footer = format!("{}\n", render::summary(plan));
    let sections: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action.is_change())
        .map(|c| render::markdown_section(plan, c))
        .collect();
    let mut out = head;
    let budget = args.max_chars.saturating_sub(footer.len() + 400);
    let mut shown = 0;
    for section in &sections {
        if out.len() + section.len() > budget {
            break;
        }
        out.push_str(section);
        shown += 1;
    }
    if shown < sections.len() {
        let _ = writeln!(
            out,
            "_{} more changed resources are not shown, to keep this comment under {} characters. The whole plan is in plan.json and plan.txt{}._\n",
            sections.len() - shown,
            args.max_chars,
            match &args.out_dir {
                Some(dir) => format!(" in `{}` (the CI job's artifact)", dir.display()),
                None => " (`nimbus preview --out-dir DIR`)".to_owned(),
            }
        );
    }
    out.push_str(&footer);
    out
}

/// Cuts text to `max` characters at a line boundary, with a note.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max.saturating_sub(200);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = text[..cut].rfind('\n').unwrap_or(cut);
    format!(
        "{}\n```\n_…cut to stay under {max} characters._\n",
        &text[..cut]
    )
}
