//! `nimbus agent [--socket PATH]`: serves the provider protocol on a unix socket, on the host
//! it runs on (SPEC §11). One JSON message per line, as plugins speak it; one call at a time
//! per connection; the socket is the only way in (mode 0600: root only), no network port.
//! It serves the host's facts and load (`nimbus_providers::agent::Local`).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use miette::{IntoDiagnostic, Result, miette};
use nimbus_providers::protocol::{self, Outcome, Request, Response};
use nimbus_providers::{Cancel, Provider, ProviderError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The longest request line the agent reads: a longer one is refused and the connection
/// closed.
const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The unix socket to listen on (its folder is made, mode 0700).
    #[arg(long, default_value = "/run/nimbus/agent.sock")]
    pub socket: PathBuf,
    /// Brings a Network's interface up from the configuration the agent saved on this host,
    /// then exits: what the interface's boot unit runs.
    #[arg(long, value_name = "INTERFACE")]
    pub network_up: Option<String>,
}

pub fn run(args: AgentArgs) -> Result<i32> {
    if let Some(interface) = &args.network_up {
        nimbus_providers::wireguard::Host::system()
            .up(interface)
            .map_err(|e| miette!("{interface}: {e}"))?;
        return Ok(0);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    runtime.block_on(serve(args.socket))
}

async fn serve(socket: PathBuf) -> Result<i32> {
    if let Some(folder) = socket.parent().filter(|f| !f.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .map_err(|e| miette!("cannot make {}: {e}", folder.display()))?;
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| miette!("cannot restrict {}: {e}", folder.display()))?;
    }
    if socket.exists() {
        // A socket someone answers on is another agent's; one nobody answers is left over.
        if UnixStream::connect(&socket).await.is_ok() {
            return Err(miette!(
                "an agent already listens on {}; stop it first, or give another --socket",
                socket.display()
            ));
        }
        std::fs::remove_file(&socket)
            .map_err(|e| miette!("cannot remove the stale {}: {e}", socket.display()))?;
    }
    let listener = UnixListener::bind(&socket)
        .map_err(|e| miette!("cannot listen on {}: {e}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| miette!("cannot restrict {}: {e}", socket.display()))?;
    tracing::info!(socket = %socket.display(), version = env!("CARGO_PKG_VERSION"), "agent listening");
    let provider: Arc<dyn Provider> = Arc::new(nimbus_providers::agent::Local::default());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted.into_diagnostic()?;
                tokio::spawn(connection(stream, Arc::clone(&provider)));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let _ = std::fs::remove_file(&socket);
    Ok(0)
}

/// Answers one connection's requests, in order, until it closes.
async fn connection(stream: UnixStream, provider: Arc<dyn Provider>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let cancel = Cancel::new();
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = line.len() > MAX_LINE;
        let refused = |message: String| Response {
            id: 0,
            outcome: Outcome::Error(ProviderError::Failed(message)),
        };
        let response = if too_long {
            refused(format!("a request longer than {MAX_LINE} bytes is refused"))
        } else {
            match serde_json::from_str::<Request>(line.trim_end()) {
                Ok(request) => Response {
                    id: request.id,
                    outcome: protocol::serve(provider.as_ref(), request.call, &cancel).await,
                },
                Err(e) => refused(format!(
                    "not a request of protocol version {}: {e}",
                    protocol::PROTOCOL_VERSION
                )),
            }
        };
        let mut text = serde_json::to_string(&response).unwrap_or_default();
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() || too_long {
            return;
        }
    }
}
