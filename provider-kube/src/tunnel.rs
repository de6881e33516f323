//! The Kubernetes API of a server host, reached through that host's SSH connection: each HTTP
//! connection is a `direct-tcpip` channel to the API's port on the host's loopback (SPEC §11:
//! no API port needs to be open to nimbus, and no kubeconfig is written on nimbus's machine).
//! Plain HTTP for now (the test API server); the TLS of a real k3s API (its CA and client
//! certificate, read live from the server) is not in this release.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use nimbus_providers::ssh::SshSession;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower service that sends each request over a new channel of the session.
#[derive(Clone)]
pub struct Tunnel {
    session: Arc<SshSession>,
    port: u16,
}

impl Tunnel {
    pub fn new(session: Arc<SshSession>, port: u16) -> Tunnel {
        Tunnel { session, port }
    }

    /// A kube client over this tunnel, `default` its default namespace.
    pub fn client(self) -> kube::Client {
        kube::Client::new(self, "default")
    }
}

impl tower_service::Service<http::Request<kube::client::Body>> for Tunnel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<kube::client::Body>) -> Self::Future {
        let session = Arc::clone(&self.session);
        let port = self.port;
        Box::pin(async move {
            let stream = session.open_tcp("127.0.0.1", port).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            if !request.headers().contains_key(http::header::HOST) {
                let host = http::HeaderValue::from_str(&format!("127.0.0.1:{port}"))?;
                request.headers_mut().insert(http::header::HOST, host);
            }
            Ok(sender.send_request(request).await?)
        })
    }
}
