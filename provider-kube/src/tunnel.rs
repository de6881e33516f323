//! The Kubernetes API of a server host, reached through that host's SSH connection: each HTTP
//! connection is a `direct-tcpip` channel to the address and port the kubeconfig names, as
//! the host itself sees them (k3s: `https://127.0.0.1:6443`, the host's loopback). SPEC §11:
//! no API port needs to be open to nimbus, and no kubeconfig is written on nimbus's machine.
//!
//! The kubeconfig (read live from the server, kept in memory) decides the rest, as kube-rs
//! decides it for any kubeconfig: TLS with its certificate authority and client certificate
//! for `https://`, its token or basic credentials as the `Authorization` header.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use kube::client::ConfigExt;
use nimbus_providers::ssh::SshSession;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector (a tower service from URI to stream) that opens a channel of the session to
/// the URI's host and port, resolved on the far side.
#[derive(Clone)]
pub struct Tunnel {
    session: Arc<SshSession>,
}

/// One connection through the tunnel.
pub struct TunnelStream(TokioIo<russh::ChannelStream<russh::client::Msg>>);

impl Tunnel {
    pub fn new(session: Arc<SshSession>) -> Tunnel {
        Tunnel { session }
    }

    /// A kube client for `kubeconfig` (its current context) over this tunnel. The error says
    /// what is wrong without repeating the kubeconfig, which holds credentials.
    pub async fn client(self, kubeconfig: &str) -> Result<kube::Client, String> {
        let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig)
            .map_err(|_| "its kubeconfig is not YAML kube can read".to_owned())?;
        let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default())
            .await
            .map_err(|_| "its kubeconfig has no usable current context".to_owned())?;
        let https = config
            .rustls_https_connector_with_connector(self)
            .map_err(|e| format!("its kubeconfig's TLS settings cannot be used: {e}"))?;
        let auth = config
            .auth_layer()
            .map_err(|e| format!("its kubeconfig's credentials cannot be used: {e}"))?;
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        let service = tower::ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .option_layer(auth)
            .map_err(BoxError::from)
            .service(http);
        Ok(kube::Client::new(service, config.default_namespace))
    }
}

impl tower_service::Service<http::Uri> for Tunnel {
    type Response = TunnelStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TunnelStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let session = Arc::clone(&self.session);
        Box::pin(async move {
            let host = uri.host().unwrap_or("127.0.0.1").to_owned();
            let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            // An IPv6 literal comes bracketed in a URI; sshd wants it bare.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let stream = session.open_tcp(host, port).await?;
            Ok(TunnelStream(TokioIo::new(stream)))
        })
    }
}

impl Connection for TunnelStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
