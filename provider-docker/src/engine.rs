//! Reaching a host's Docker engine: bollard talks HTTP to a unix socket on this machine, and
//! every connection to that socket is carried to the host's `/var/run/docker.sock` on a
//! `direct-streamlocal` channel of the host's SSH connection (the run's pool). No Docker port
//! is opened and no docker CLI is needed here. The API version is negotiated with the engine.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::{API_DEFAULT_VERSION, Docker};
use nimbus_providers::ProviderError;
use nimbus_providers::ssh::{Pool, SshSession};
use tokio::net::UnixListener;
use tokio::sync::OnceCell;

/// Where the engine listens on every host.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// One engine client per host, made on first use.
pub struct Engines {
    pool: Arc<Pool>,
    sockets: tempfile::TempDir,
    engines: tokio::sync::Mutex<HashMap<String, Arc<OnceCell<Docker>>>>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines").finish_non_exhaustive()
    }
}

/// A bollard error in words, for the host it came from.
pub fn failed(host: &str, what: &str, error: &bollard::errors::Error) -> ProviderError {
    let text = match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    ProviderError::Failed(format!("Host/{host}: {what}: {text}"))
}

/// Whether the engine answered that the object does not exist.
pub fn is_missing(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether an object's labels say nimbus made it for `address` (`dev.nimbus.address`).
pub fn labelled(address: &str, labels: Option<&HashMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(crate::labels::ADDRESS_LABEL))
        .is_some_and(|a| a == address)
}

impl Engines {
    pub fn new(pool: Arc<Pool>) -> Result<Self, ProviderError> {
        let sockets = tempfile::Builder::new()
            .prefix("nimbus-docker-")
            .tempdir()
            .map_err(|e| ProviderError::Failed(format!("cannot make a socket directory: {e}")))?;
        Ok(Engines {
            pool,
            sockets,
            engines: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The engine of `host`, reached through its SSH connection.
    pub async fn engine(&self, host: &str) -> Result<Docker, ProviderError> {
        let cell = {
            let mut engines = self.engines.lock().await;
            Arc::clone(engines.entry(host.to_owned()).or_default())
        };
        let docker = cell
            .get_or_try_init(|| async {
                let session = self.pool.session(host).await?;
                // A first channel says at once whether the host has an engine at all.
                drop(session.open_socket(DOCKER_SOCKET).await.map_err(|e| {
                    ProviderError::Failed(format!(
                        "{e} (is Docker installed and running on Host/{host}?)"
                    ))
                })?);
                let path = self.sockets.path().join(format!("{host}.sock"));
                let listener = UnixListener::bind(&path).map_err(|e| {
                    ProviderError::Failed(format!("cannot listen on {}: {e}", path.display()))
                })?;
                tokio::spawn(bridge(listener, session));
                let docker = Docker::connect_with_unix(
                    &path.display().to_string(),
                    120,
                    API_DEFAULT_VERSION,
                )
                .map_err(|e| failed(host, "cannot make a Docker client", &e))?;
                docker
                    .negotiate_version()
                    .await
                    .map_err(|e| failed(host, "the Docker engine does not answer", &e))
            })
            .await?;
        Ok(docker.clone())
    }
}

/// Carries each connection to the local socket to the engine's socket on the host.
async fn bridge(listener: UnixListener, session: Arc<SshSession>) {
    loop {
        let Ok((mut local, _)) = listener.accept().await else {
            return;
        };
        let session = Arc::clone(&session);
        tokio::spawn(async move {
            match session.open_socket(DOCKER_SOCKET).await {
                Ok(mut remote) => {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                }
                Err(error) => tracing::warn!(%error, "cannot reach the Docker socket"),
            }
        });
    }
}
