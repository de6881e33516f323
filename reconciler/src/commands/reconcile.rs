//! `nimbus reconcile --repo URL|DIR --branch main`: the GitOps daemon. It fetches the branch
//! (every `--interval`, jittered, and at once when a verified webhook arrives), validates,
//! plans and applies each new commit under the state lock, keeps the last good revision in
//! force when a commit does not validate, corrects drift every `--drift-interval`, and serves
//! its status, runs and metrics on `--listen`. SIGTERM: the changes under way finish and are
//! recorded, then it exits.

//!
//! The daemon itself is `crate::daemon`; this module is its command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use miette::Result;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The config repository: a URL (file://, git://, http(s)://) fetched into a cache, or a
    /// local git repository read in place.
    #[arg(long, env = "NIMBUS_REPO")]
    pub repo: String,
    /// The branch to apply.
    #[arg(long, default_value = "main", env = "NIMBUS_BRANCH")]
    pub branch: String,
    /// How often to fetch, e.g. 30s, 5m (jittered by up to a tenth).
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "NIMBUS_INTERVAL")]
    pub interval: Duration,
    /// How often to observe and correct drift.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "NIMBUS_DRIFT_INTERVAL")]
    pub drift_interval: Duration,
    /// Where the status, runs, metrics and webhook endpoints listen.
    #[arg(long, default_value = "127.0.0.1:7070", env = "NIMBUS_LISTEN")]
    pub listen: String,
    /// A file holding the webhook secret; without it, POST /hooks/git is refused.
    #[arg(long, value_name = "FILE", env = "NIMBUS_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// A file holding a bearer token (at least 16 bytes) that the pages, /status, /runs and
    /// /metrics then require (`Authorization: Bearer TOKEN`); webhooks keep their signatures,
    /// /healthz and /readyz stay open.
    #[arg(
        long,
        value_name = "FILE",
        visible_alias = "bearer-token-file",
        alias = "auth-token-file",
        env = "NIMBUS_TOKEN_FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// The directory state and the in-memory provider live in (the Repository's state.path
    /// is relative to it).
    #[arg(long, default_value = ".", env = "NIMBUS_WORKDIR")]
    pub workdir: PathBuf,
    /// Where remote repositories are mirrored.
    #[arg(long, value_name = "DIR", env = "NIMBUS_CACHE")]
    pub cache: Option<PathBuf>,
    /// For an ssh:// remote: the known_hosts file that pins the git server's key (required;
    /// a key is never trusted on first use).
    #[arg(long, value_name = "FILE", env = "NIMBUS_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// For an ssh:// remote: the private key to log in with (else ssh's defaults and agent).
    #[arg(long, value_name = "FILE", env = "NIMBUS_SSH_KEY")]
    pub ssh_key: Option<PathBuf>,
    /// An age identity file, or an unencrypted OpenSSH private key, that decrypts secrets
    /// (else NIMBUS_AGE_IDENTITY, else the Repository's secrets.identityFile); an SSH private
    /// key also logs in to the hosts, before any other key.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Set a status on each commit applied, failed or refused, on this forge (token from
    /// GITHUB_TOKEN, GITLAB_TOKEN or GITEA_TOKEN, else NIMBUS_FORGE_TOKEN), linking to the
    /// run's page.
    #[arg(long, value_enum, value_name = "FORGE", env = "NIMBUS_FORGE")]
    pub forge: Option<crate::forge::ForgeKind>,
    /// The forge's API (default: the public forge's; required for Gitea).
    #[arg(long, value_name = "URL", env = "NIMBUS_FORGE_API")]
    pub forge_api: Option<String>,
    /// OWNER/NAME on the forge (GitLab: the project's id or path).
    #[arg(long, value_name = "REPO", env = "NIMBUS_FORGE_REPO")]
    pub forge_repo: Option<String>,
    /// How people reach this daemon's pages (`https://nimbus.example.com`), for the links in
    /// statuses and notifications; default: http://LISTEN.
    #[arg(long, value_name = "URL", env = "NIMBUS_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// `30s`, `5m`, `1h`, `250ms` or plain seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| (&text[..at], &text[at..]));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (30s, 5m, 1h, 250ms)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if seconds <= 0.0 {
        return Err(format!("`{text}` must be more than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub fn run(args: ReconcileArgs) -> Result<i32> {
    let forge = match args.forge {
        Some(kind) => Some(crate::forge::Forge::new(
            kind,
            args.forge_api.clone(),
            args.forge_repo.clone(),
            false,
        )?),
        None => None,
    };
    let mut settings: crate::daemon::Settings = args.into();
    settings.forge = forge;
    crate::daemon::run(settings)
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The daemon's listen address (an unspecified address such as 0.0.0.0 is asked on
    /// loopback).
    #[arg(long, default_value = "127.0.0.1:7070", env = "NIMBUS_LISTEN")]
    pub listen: String,
    /// Give up after this long, e.g. 3s.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `nimbus healthcheck`: GET /healthz of a daemon on this machine; exit 0 when it answers 200,
/// else 1 with the reason on stderr. The container image's HEALTHCHECK (it has no curl).
pub fn healthcheck(args: HealthcheckArgs) -> Result<i32> {
    match probe(&args.listen, args.timeout) {
        Ok(()) => Ok(0),
        Err(reason) => {
            eprintln!("nimbus healthcheck: {}: {reason}", args.listen);
            Ok(1)
        }
    }
}

fn probe(listen: &str, timeout: Duration) -> std::result::Result<(), String> {
    use std::net::{SocketAddr, ToSocketAddrs};

    let mut address: SocketAddr = listen
        .to_socket_addrs()
        .map_err(|e| format!("not an address: {e}"))?
        .next()
        .ok_or("not an address")?;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{address}/healthz");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let status = client
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .status();
        if status == reqwest::StatusCode::OK {
            Ok(())
        } else {
            Err(format!("/healthz answered `{status}`"))
        }
    })
}

impl From<ReconcileArgs> for crate::daemon::Settings {
    fn from(args: ReconcileArgs) -> Self {
        crate::daemon::Settings {
            repo: args.repo,
            branch: args.branch,
            interval: args.interval,
            drift_interval: args.drift_interval,
            listen: args.listen,
            webhook_secret_file: args.webhook_secret_file,
            token_file: args.token_file,
            workdir: args.workdir,
            cache: args.cache,
            known_hosts: args.known_hosts,
            ssh_key: args.ssh_key,
            identity: args.identity,
            forge: None,
            public_url: args.public_url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn healthcheck_needs_a_200_from_healthz() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\nok\n",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
            ] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                    request.push(byte[0]);
                }
                assert!(String::from_utf8_lossy(&request).starts_with("GET /healthz HTTP/1.1\r\n"));
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        let second = Duration::from_secs(1);
        assert_eq!(probe(&format!("0.0.0.0:{port}"), second), Ok(()));
        let refused = probe(&format!("127.0.0.1:{port}"), second).unwrap_err();
        assert!(refused.contains("503"), "{refused}");
        server.join().unwrap();
        assert!(
            probe(&format!("127.0.0.1:{port}"), second).is_err(),
            "nothing listens"
        );
    }
}
