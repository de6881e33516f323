//! How the stand-in is started: its options and its TLS configuration.

use std::sync::Arc;

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A Deployment whose containers' images contain this text never becomes available: its
    /// rollout fails (`ProgressDeadlineExceeded`).
    pub failing_image: Option<String>,
    /// Every request must carry `Authorization: Bearer TOKEN` (else 401 Unauthorized).
    pub token: Option<String>,
    /// Serve HTTPS with this certificate and key (else plain HTTP).
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Keep the objects in this file (JSON), written after every change and read at start,
    /// as k3s keeps them in its datastore across restarts.
    pub state_file: Option<std::path::PathBuf>,
}

/// A TLS configuration from a PEM certificate chain and key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<Arc<tokio_rustls::rustls::ServerConfig>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| std::io::Error::other(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", key.display())))?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(std::io::Error::other)?;
    Ok(Arc::new(config))
}
