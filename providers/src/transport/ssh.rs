//! The SSH transport (russh): one connection per host, opened on first use and shared by
//! every operation on that host, with several channels at once. Host keys are pinned: a key
//! that differs from the pinned one is refused, naming both fingerprints. Logins use an
//! identity file. A connect failure is transient (retried by the executor); a refused key or
//! login is not.
//!
//! This is the transport only; the Host, File and Service provider is built on it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};

use crate::ProviderError;

/// Where and how to log in to one host.
#[derive(Clone, Debug)]
pub struct SshTarget {
    /// The Host's name, for messages.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The pinned host key, `ssh-ed25519 AAAA...`.
    pub host_key: String,
    /// The private key to log in with; when empty, the keys of the ssh-agent at `agent`.
    pub identity: PathBuf,
    /// An ssh-agent's socket (`SSH_AUTH_SOCK`), used when there is no identity file.
    pub agent: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// A bastion Host (by name) this one is reached through.
    pub via: Option<String>,
    /// With no pinned key, accept the key the host offers (the Repository's
    /// `ssh.trustOnFirstUse`); the caller records it and pins it from then on.
    pub trust_on_first_use: bool,
}

/// What a remote command did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

struct Pinned {
    /// `None`: trust on first use.
    expected: Option<PublicKey>,
    /// The fingerprint and the OpenSSH line of the key the host offered.
    offered: Arc<Mutex<Option<(String, String)>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            // Host certificates are not supported: only a pinned key is trusted.
            return Ok(false);
        };
        if let Ok(mut seen) = self.offered.lock() {
            *seen = Some((
                key.fingerprint(HashAlg::Sha256).to_string(),
                key.to_openssh().unwrap_or_default(),
            ));
        }
        Ok(self
            .expected
            .as_ref()
            .is_none_or(|expected| key.key_data() == expected.key_data()))
    }
}

/// An open, authenticated connection to one host.
pub struct SshSession {
    handle: Handle<Pinned>,
    name: String,
    host_key: String,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("host", &self.name)
            .finish()
    }
}

impl SshSession {
    /// Connects, checks the host key against the pinned one, and logs in.
    pub async fn connect(target: &SshTarget) -> Result<Self, ProviderError> {
        Self::connect_via(target, None).await
    }

    /// Like `connect`, through `bastion` when given: the connection to the target runs in a
    /// direct-tcpip channel of the bastion's connection, end to end encrypted.
    pub async fn connect_via(
        target: &SshTarget,
        bastion: Option<&SshSession>,
    ) -> Result<Self, ProviderError> {
        let name = &target.name;
        let expected = if target.host_key.trim().is_empty() {
            if !target.trust_on_first_use {
                return Err(ProviderError::Failed(format!(
                    "Host/{name} has no pinned host key: set its spec.hostKey, list it in the Repository's ssh.knownHosts file, \
                     or set ssh.trustOnFirstUse: true to pin the key it offers on first contact"
                )));
            }
            None
        } else {
            Some(
                PublicKey::from_openssh(target.host_key.trim()).map_err(|e| {
                    ProviderError::Failed(format!(
                        "Host/{name}: the pinned host key is not an OpenSSH public key: {e}"
                    ))
                })?,
            )
        };
        let offered = Arc::new(Mutex::new(None));
        let handler = Pinned {
            expected: expected.clone(),
            offered: Arc::clone(&offered),
        };
        let config = client::Config {
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        };
        let connecting = async {
            match bastion {
                None => {
                    client::connect(
                        Arc::new(config),
                        (target.address.as_str(), target.port),
                        handler,
                    )
                    .await
                }
                Some(bastion) => {
                    let channel = bastion
                        .handle
                        .channel_open_direct_tcpip(
                            target.address.clone(),
                            u32::from(target.port),
                            "127.0.0.1",
                            0,
                        )
                        .await?;
                    client::connect_stream(Arc::new(config), channel.into_stream(), handler).await
                }
            }
        };
        let mut handle = match tokio::time::timeout(target.connect_timeout, connecting).await {
            Err(_) => {
                return Err(ProviderError::Transient(format!(
                    "Host/{name}: no answer from {}:{} within {:?}",
                    target.address, target.port, target.connect_timeout
                )));
            }
            Ok(Err(russh::Error::UnknownKey)) => {
                let offered = offered
                    .lock()
                    .ok()
                    .and_then(|o| o.clone())
                    .map_or_else(|| "unknown".into(), |(f, _)| f);
                let expected = expected.map_or_else(
                    || "none".into(),
                    |k| k.fingerprint(HashAlg::Sha256).to_string(),
                );
                return Err(ProviderError::Failed(format!(
                    "Host/{name}: host key mismatch: expected {expected}, offered {offered}; if the host was rebuilt, update its hostKey"
                )));
            }
            Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
                let bastion = bastion.map_or("", |b| b.name.as_str());
                return Err(ProviderError::Transient(format!(
                    "Host/{name}: Host/{bastion} could not open a connection to {}:{}: {reason:?}",
                    target.address, target.port
                )));
            }
            Ok(Err(russh::Error::IO(e))) => {
                return Err(ProviderError::Transient(format!(
                    "Host/{name}: cannot connect to {}:{}: {e}",
                    target.address, target.port
                )));
            }
            Ok(Err(e)) => {
                return Err(ProviderError::Failed(format!(
                    "Host/{name}: SSH handshake failed: {e}"
                )));
            }
            Ok(Ok(handle)) => handle,
        };
        if target.identity.as_os_str().is_empty() {
            Self::login_with_agent(&mut handle, target).await?;
        } else {
            let key = russh::keys::load_secret_key(&target.identity, None).map_err(|e| {
                ProviderError::Failed(format!(
                    "cannot load the identity {}: {e}",
                    target.identity.display()
                ))
            })?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            let result = handle
                .authenticate_publickey(
                    target.user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(|e| ProviderError::Failed(format!("Host/{name}: login failed: {e}")))?;
            if !result.success() {
                return Err(ProviderError::Failed(format!(
                    "Host/{name}: {}@{} refused the key {}",
                    target.user,
                    target.address,
                    target.identity.display()
                )));
            }
        }
        let host_key = offered
            .lock()
            .ok()
            .and_then(|o| o.clone())
            .map(|(_, line)| line)
            .unwrap_or_default();
        Ok(SshSession {
            handle,
            name: name.clone(),
            host_key,
        })
    }

    /// Logs in with each key of the ssh-agent in turn.
    async fn login_with_agent(
        handle: &mut Handle<Pinned>,
        target: &SshTarget,
    ) -> Result<(), ProviderError> {
        let name = &target.name;
        let socket = target.agent.as_ref().ok_or_else(|| {
            ProviderError::Failed(format!(
                "Host/{name}: no identity file and no ssh-agent (SSH_AUTH_SOCK) to log in with"
            ))
        })?;
        let mut agent = russh::keys::agent::client::AgentClient::connect_uds(socket)
            .await
            .map_err(|e| {
                ProviderError::Failed(format!(
                    "cannot reach the ssh-agent at {}: {e}",
                    socket.display()
                ))
            })?;
        let identities = agent.request_identities().await.map_err(|e| {
            ProviderError::Failed(format!(
                "the ssh-agent at {} did not list its keys: {e}",
                socket.display()
            ))
        })?;
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        for identity in identities {
            let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = identity else {
                continue;
            };
            let result = handle
                .authenticate_publickey_with(target.user.clone(), key, hash, &mut agent)
                .await;
            if result.is_ok_and(|r| r.success()) {
                return Ok(());
            }
        }
        Err(ProviderError::Failed(format!(
            "Host/{name}: {}@{} accepted none of the ssh-agent's keys",
            target.user, target.address
        )))
    }

    /// The host key the host presented (and that was accepted), in OpenSSH form.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// The Host's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A stream to a unix socket on the host (`direct-streamlocal`, OpenSSH's
    /// `streamlocal-forwarding`): Docker's API socket, the agent's socket.
    pub async fn open_socket(
        &self,
        path: &str,
    ) -> Result<russh::ChannelStream<russh::client::Msg>, ProviderError> {
        let channel = self
            .handle
            .channel_open_direct_streamlocal(path)
            .await
            .map_err(|e| {
                ProviderError::Failed(format!(
                    "Host/{}: cannot reach {path} through the SSH connection: {e}",
                    self.name
                ))
            })?;
        Ok(channel.into_stream())
    }

    /// A stream to a TCP port on the host's side (`direct-tcpip`, OpenSSH's TCP forwarding):
    /// a Kubernetes API on the host's loopback, with no port opened to the network.
    pub async fn open_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> Result<russh::ChannelStream<russh::client::Msg>, ProviderError> {
        let channel = self
            .handle
            .channel_open_direct_tcpip(host.to_owned(), u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| {
                ProviderError::Transient(format!(
                    "Host/{}: cannot reach {host}:{port} through the SSH connection: {e}",
                    self.name
                ))
            })?;
        Ok(channel.into_stream())
    }

    /// The last `lines` lines of a systemd unit's journal on the host, trimmed (empty when
    /// there are none, or they cannot be read): for a failure's message.
    pub async fn journal(&self, unit: &str, lines: u32) -> String {
        self.exec(
            &format!("journalctl -u {unit} -n {lines} --no-pager -o cat 2>/dev/null"),
            None,
        )
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
    }

    /// Runs `command` on a new channel of this connection, feeding it `stdin`.
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, ProviderError> {
        let name = &self.name;
        let lost = |e: russh::Error| {
            ProviderError::Transient(format!("Host/{name}: connection lost: {e}"))
        };
        let channel = self.handle.channel_open_session().await.map_err(lost)?;
        channel.exec(true, command).await.map_err(lost)?;
        // Written while the answer is read: a command that exits before it has read all of
        // its input (a failing `mkdir` in front of a `cat`) must not leave the writer waiting
        // for window space that never comes.
        let (mut read, write) = channel.split();
        let writing = async {
            if let Some(input) = stdin {
                write.data_bytes(input.to_vec()).await?;
            }
            write.eof().await
        };
        tokio::pin!(writing);
        let mut written = false;
        let mut output = ExecOutput::default();
        let mut status = None;
        loop {
            tokio::select! {
                // The command may have ended first: its exit status says how it went.
                _ = &mut writing, if !written => written = true,
                message = read.wait() => match message {
                    None => break,
                    Some(ChannelMsg::Data { data }) => output.stdout.extend_from_slice(&data),
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        output.stderr.extend_from_slice(&data)
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                    Some(_) => {}
                },
            }
        }
        output.status = status.ok_or_else(|| {
            ProviderError::Transient(format!(
                "Host/{name}: the command ended without an exit status"
            ))
        })?;
        Ok(output)
    }
}

/// The connections of a run, one per host, opened on first use (through a host's bastion when
/// it has one) and shared by every provider that goes over SSH: commands, file writes and
/// forwarded sockets all travel on the same connection.
pub struct Pool {
    targets: std::collections::HashMap<String, SshTarget>,
    sessions: tokio::sync::Mutex<
        std::collections::HashMap<String, Arc<tokio::sync::OnceCell<Arc<SshSession>>>>,
    >,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.targets.keys()).finish()
    }
}

impl Pool {
    pub fn new(targets: impl IntoIterator<Item = SshTarget>) -> Self {
        Pool {
            targets: targets.into_iter().map(|t| (t.name.clone(), t)).collect(),
            sessions: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The hosts it can reach, by name.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    pub fn target(&self, host: &str) -> Option<&SshTarget> {
        self.targets.get(host)
    }

    /// The connection to `host`, made once even when many ask at the same time.
    pub fn session<'a>(
        &'a self,
        host: &'a str,
    ) -> crate::BoxFuture<'a, Result<Arc<SshSession>, ProviderError>> {
        Box::pin(async move {
            let cell = {
                let mut sessions = self.sessions.lock().await;
                Arc::clone(sessions.entry(host.to_owned()).or_default())
            };
            let session = cell
                .get_or_try_init(|| async {
                    let target = self.targets.get(host).ok_or_else(|| {
                        ProviderError::Failed(format!("Host/{host} is not declared"))
                    })?;
                    let bastion = match &target.via {
                        Some(via) if via == host => {
                            return Err(ProviderError::Failed(format!(
                                "Host/{host} is its own bastion"
                            )));
                        }
                        Some(via) => Some(self.session(via).await?),
                        None => None,
                    };
                    SshSession::connect_via(target, bastion.as_deref())
                        .await
                        .map(Arc::new)
                })
                .await?;
            Ok(Arc::clone(session))
        })
    }
}
