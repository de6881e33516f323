//! Forges: a pull request's comment (one per pull request and environment, updated in place on
//! each push) and a commit's status, on GitHub, GitLab and Gitea/Forgejo, through their REST
//! APIs with a token from the environment. `--dry-run` prints the requests instead (the
//! token never). docs/ci.md lists the endpoints and fields used.

use std::time::Duration;

use clap::ValueEnum;
use miette::{Result, miette};
use serde_json::{Value, json};

/// Which forge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ForgeKind {
    Github,
    Gitlab,
    /// Gitea and Forgejo (the same API).
    Gitea,
}

impl ForgeKind {
    /// The environment variables that hold its token, in order.
    fn token_variables(self) -> &'static [&'static str] {
        match self {
            ForgeKind::Github => &["GITHUB_TOKEN", "NIMBUS_FORGE_TOKEN"],
            ForgeKind::Gitlab => &["GITLAB_TOKEN", "NIMBUS_FORGE_TOKEN"],
            ForgeKind::Gitea => &["GITEA_TOKEN", "NIMBUS_FORGE_TOKEN"],
        }
    }

    /// The longest comment it takes (characters).
    pub fn comment_limit(self) -> usize {
        match self {
            ForgeKind::Github | ForgeKind::Gitea => 65_536,
            ForgeKind::Gitlab => 1_000_000,
        }
    }
}

/// A commit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Pending,
    Success,
    Failure,
}

/// One forge, one repository (`owner/name`, or GitLab's project id or path).
#[derive(Clone, Debug)]
pub struct Forge {
    pub kind: ForgeKind,
    pub api: String,
    pub repo: String,
    token: String,
    pub dry_run: bool,
}

/// The hidden line that marks nimbus's comment (per environment), to find it again.
pub fn marker(environment: Option<&str>) -> String {
    match environment {
        Some(env) => format!("<!-- nimbus-preview env={env} -->"),
        None => "<!-- nimbus-preview -->".to_owned(),
    }
}

impl Forge {
    /// A forge from flags, else the CI's own variables (GitHub Actions and Gitea Actions:
    /// `GITHUB_API_URL`, `GITHUB_REPOSITORY`; GitLab CI: `CI_API_V4_URL`, `CI_PROJECT_ID`).
    /// The token comes from the environment only.
    pub fn new(
        kind: ForgeKind,
        api: Option<String>,
        repo: Option<String>,
        dry_run: bool,
    ) -> Result<Forge> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (api_var, repo_var, default_api) = match kind {
            ForgeKind::Github => (
                "GITHUB_API_URL",
                "GITHUB_REPOSITORY",
                Some("https://api.github.com"),
            ),
            ForgeKind::Gitlab => (
                "CI_API_V4_URL",
                "CI_PROJECT_ID",
                Some("https://gitlab.com/api/v4"),
            ),
            ForgeKind::Gitea => ("GITHUB_API_URL", "GITHUB_REPOSITORY", None),
        };
        let api = api
            .or_else(|| var(api_var))
            .or(default_api.map(str::to_owned))
            .ok_or_else(|| {
                miette!(
                    help = "give --forge-api https://HOST/api/v1",
                    "no API URL for {kind:?}"
                )
            })?;
        let repo = repo.or_else(|| var(repo_var)).ok_or_else(|| {
            miette!(
                help = "give --forge-repo OWNER/NAME (GitLab: the project's id or path)",
                "no repository for {kind:?}"
            )
        })?;
        let token = kind
            .token_variables()
            .iter()
            .find_map(|v| var(v))
            .or_else(|| dry_run.then(String::new))
            .ok_or_else(|| {
                miette!(
                    help = format!(
                        "set {} in the job's environment",
                        kind.token_variables().join(" or ")
                    ),
                    "no token for {kind:?}"
                )
            })?;
        Ok(Forge {
            kind,
            api: api.trim_end_matches('/').to_owned(),
            repo,
            token,
            dry_run,
        })
    }

    fn project(&self) -> String {
        match self.kind {
            // A project path goes URL-encoded (`group%2Fproject`); an id as it is.
            ForgeKind::Gitlab => self.repo.replace('/', "%2F"),
            _ => self.repo.clone(),
        }
    }

    fn comments_url(&self, number: u64) -> String {
        match self.kind {
            ForgeKind::Github | ForgeKind::Gitea => {
                format!("{}/repos/{}/issues/{number}/comments", self.api, self.repo)
            }
            ForgeKind::Gitlab => format!(
                "{}/projects/{}/merge_requests/{number}/notes",
                self.api,
                self.project()
            ),
        }
    }

    fn comment_url(&self, number: u64, id: u64) -> String {
        match self.kind {
            ForgeKind::Github | ForgeKind::Gitea => {
                format!("{}/repos/{}/issues/comments/{id}", self.api, self.repo)
            }
            ForgeKind::Gitlab => format!(
                "{}/projects/{}/merge_requests/{number}/notes/{id}",
                self.api,
                self.project()
            ),
        }
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let request = client
            .request(method, url)
            .header("user-agent", concat!("nimbus/", env!("CARGO_PKG_VERSION")));
        match self.kind {
            ForgeKind::Github => request
                .header("authorization", format!("Bearer {}", self.token))
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28"),
            ForgeKind::Gitlab => request.header("private-token", &self.token),
            ForgeKind::Gitea => request
                .header("authorization", format!("token {}", self.token))
                .header("accept", "application/json"),
        }
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        if self.dry_run {
            let mut line = format!("{method} {url}");
            if let Some(body) = body {
                line.push(' ');
                line.push_str(&body.to_string());
            }
            crate::render::print_stdout(&format!("{line}\n"));
            return Ok(Value::Array(Vec::new()));
        }
        let mut request = self.request(client, method.clone(), url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| miette!("{method} {url}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let cut: String = text.chars().take(300).collect();
            return Err(miette!(
                "{method} {url}: the forge answered {status}: {cut}"
            ));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Writes `body` as nimbus's comment on pull request `number`: the one carrying `marker`
    /// is updated in place, else one is made. Returns what was done (`created`, `updated`).
    pub async fn upsert_comment(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<&'static str> {
        let client = client();
        let text = format!("{marker}\n{body}");
        let mut existing = None;
        let mut page = 1;
        loop {
            // Gitea's list of an issue's comments is not paged; the others' are.
            let url = match self.kind {
                ForgeKind::Gitea => self.comments_url(number),
                _ => format!("{}?per_page=100&page={page}", self.comments_url(number)),
            };
            let list = self.send(&client, reqwest::Method::GET, &url, None).await?;
            let items = list.as_array().cloned().unwrap_or_default();
            if let Some(found) = items
                .iter()
                .find(|c| c["body"].as_str().is_some_and(|b| b.starts_with(marker)))
            {
                existing = found["id"].as_u64();
                break;
            }
            if items.len() < 100 || self.kind == ForgeKind::Gitea {
                break;
            }
            page += 1;
        }
        match existing {
            Some(id) => {
                let method = match self.kind {
                    ForgeKind::Gitlab => reqwest::Method::PUT,
                    _ => reqwest::Method::PATCH,
                };
                self.send(
                    &client,
                    method,
                    &self.comment_url(number, id),
                    Some(&json!({"body": text})),
                )
                .await?;
                Ok("updated")
            }
            None => {
                self.send(
                    &client,
                    reqwest::Method::POST,
                    &self.comments_url(number),
                    Some(&json!({"body": text})),
                )
                .await?;
                Ok("created")
            }
        }
    }

    /// Sets commit `sha`'s status (`context` names it: `nimbus/preview`, `nimbus/reconcile`).
    pub async fn set_status(
        &self,
        sha: &str,
        state: State,
        description: &str,
        target_url: Option<&str>,
        context: &str,
    ) -> Result<()> {
        let client = client();
        // Descriptions are short on every forge (GitHub's: 140 characters).
        let description: String = description.chars().take(140).collect();
        let (url, body) = match self.kind {
            ForgeKind::Github | ForgeKind::Gitea => {
                let state = match state {
                    State::Pending => "pending",
                    State::Success => "success",
                    State::Failure => "failure",
                };
                let mut body =
                    json!({"state": state, "description": description, "context": context});
                if let Some(target) = target_url {
                    body["target_url"] = Value::String(target.to_owned());
                }
                (
                    format!("{}/repos/{}/statuses/{sha}", self.api, self.repo),
                    body,
                )
            }
            ForgeKind::Gitlab => {
                let state = match state {
                    State::Pending => "pending",
                    State::Success => "success",
                    State::Failure => "failed",
                };
                let mut body = json!({"state": state, "description": description, "name": context});
                if let Some(target) = target_url {
                    body["target_url"] = Value::String(target.to_owned());
                }
                (
                    format!("{}/projects/{}/statuses/{sha}", self.api, self.project()),
                    body,
                )
            }
        };
        self.send(&client, reqwest::Method::POST, &url, Some(&body))
            .await?;
        Ok(())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// The pull request's number from the CI's variables: GitLab's `CI_MERGE_REQUEST_IID`,
/// GitHub's and Gitea's `GITHUB_REF` (`refs/pull/N/merge`).
pub fn number_from_environment() -> Option<u64> {
    if let Some(iid) = std::env::var("CI_MERGE_REQUEST_IID")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Some(iid);
    }
    std::env::var("GITHUB_REF")
        .ok()?
        .strip_prefix("refs/pull/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}
