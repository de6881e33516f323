//! The test-only API server on its own, for clients in other processes (kubectl, the Python
//! client, nimbus), and, behind a `k3s` stand-in script, for nimbus's k3s install path:
//!
//! ```text
//! nimbus-kube-testserver [--listen ADDR] [--fail-image TEXT]
//!     [--tls-cert PEM --tls-key PEM [--ca PEM]] [--token-file PATH] [--kubeconfig PATH] [--state FILE]
//!     [--node NAME [--node-label K=V]... [--node-ip IP]]
//! nimbus-kube-testserver join --server URL [--ca PEM] --node NAME [--node-label K=V]... [--node-ip IP]
//! ```
//!
//! As a k3s server does, it keeps a node token in `--token-file` (made when missing) and
//! writes an admin kubeconfig to `--kubeconfig`; every request must then carry the token.
//! `join` is the agent's side: it registers its Node with the server (the token from
//! `K3S_TOKEN`, as k3s agents take it) and stays running, as an agent does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use nimbus_kube_testserver::server;

fn usage() -> ! {
    eprintln!(
        "usage: nimbus-kube-testserver [--listen ADDR] [--fail-image TEXT] [--tls-cert PEM --tls-key PEM] \
         [--token-file PATH] [--kubeconfig PATH] [--state FILE] [--node NAME] [--node-label K=V]... [--node-ip IP]\n       \
         nimbus-kube-testserver join --server URL [--ca PEM] --node NAME [--node-label K=V]... [--node-ip IP]"
    );
    std::process::exit(2);
}

fn fail(message: String) -> ! {
    eprintln!("nimbus-kube-testserver: {message}");
    std::process::exit(1);
}

#[derive(Default)]
struct Args {
    listen: Option<SocketAddr>,
    failing_image: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    token_file: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    state: Option<PathBuf>,
    node: Option<String>,
    labels: Vec<(String, String)>,
    node_ip: Option<String>,
    server: Option<String>,
    ca: Option<PathBuf>,
}

fn parse(mut words: impl Iterator<Item = String>) -> Args {
    let mut args = Args::default();
    while let Some(flag) = words.next() {
        let Some(value) = words.next() else { usage() };
        match flag.as_str() {
            "--listen" => {
                args.listen = Some(
                    value
                        .parse()
                        .unwrap_or_else(|e| fail(format!("--listen {value}: {e}"))),
                )
            }
            "--fail-image" => args.failing_image = Some(value),
            "--tls-cert" => args.tls_cert = Some(value.into()),
            "--tls-key" => args.tls_key = Some(value.into()),
            "--token-file" => args.token_file = Some(value.into()),
            "--kubeconfig" => args.kubeconfig = Some(value.into()),
            "--state" => args.state = Some(value.into()),
            "--node" => args.node = Some(value),
            "--node-label" => match value.split_once('=') {
                Some((k, v)) => args.labels.push((k.to_owned(), v.to_owned())),
                None => fail(format!("--node-label {value}: not KEY=VALUE")),
            },
            "--node-ip" => args.node_ip = Some(value),
            "--server" => args.server = Some(value),
            "--ca" => args.ca = Some(value.into()),
            _ => usage(),
        }
    }
    args
}

/// The Node a server or agent registers.
fn node_object(args: &Args) -> Option<serde_json::Value> {
    let name = args.node.as_ref()?;
    let labels: serde_json::Map<String, serde_json::Value> = args
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::json!(v)))
        .collect();
    let mut node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
    });
    if let Some(ip) = &args.node_ip {
        node["metadata"]["annotations"] = serde_json::json!({"k3s.io/internal-ip": ip});
    }
    Some(node)
}

/// The token in `path`, made (random, root only) when there is none.
fn token(path: &std::path::Path) -> String {
    if let Ok(text) = std::fs::read_to_string(path)
        && !text.trim().is_empty()
    {
        return text.trim().to_owned();
    }
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap_or_else(|e| fail(format!("/dev/urandom: {e}")));
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(path, &format!("{token}\n"));
    token
}

fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = written {
        fail(format!("{}: {e}", path.display()));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut words = std::env::args().skip(1).peekable();
    if words.peek().map(String::as_str) == Some("join") {
        words.next();
        return join(parse(words)).await;
    }
    let args = parse(words);
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6443)));
    let mut options = server::Options {
        failing_image: args.failing_image.clone(),
        state_file: args.state.clone(),
        ..server::Options::default()
    };
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options.tls = Some(server::tls_config(cert, key).unwrap_or_else(|e| fail(e.to_string())));
    }
    options.token = args.token_file.as_deref().map(token);
    let running = server::serve(listen, options.clone())
        .await
        .unwrap_or_else(|e| fail(format!("cannot listen on {listen}: {e}")));
    if let Some(node) = node_object(&args) {
        let mut store = running
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Registered again after a restart: already there is as good.
        if let Err(e) = store.create_object("nodes", "", node, "k3s")
            && !e.contains("already exists")
        {
            fail(format!("cannot register its node: {e}"));
        }
    }
    if let Some(path) = &args.kubeconfig {
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        // The certificate authority clients check the server against: `--ca`, else the
        // server's own (self-signed) certificate.
        let authority = match args
            .ca
            .as_ref()
            .or(args.tls_cert.as_ref())
            .filter(|_| args.tls_cert.is_some())
        {
            Some(cert) => {
                use base64::Engine;
                let pem = std::fs::read(cert)
                    .unwrap_or_else(|e| fail(format!("{}: {e}", cert.display())));
                format!(
                    ", certificate-authority-data: {}",
                    base64::engine::general_purpose::STANDARD.encode(pem)
                )
            }
            None => String::new(),
        };
        let user = match &options.token {
            Some(token) => format!("{{token: {token}}}"),
            None => "{}".to_owned(),
        };
        write_private(
            path,
            &format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: default, cluster: {{server: \"{scheme}://127.0.0.1:{port}\"{authority}}}}}]\n\
                 users: [{{name: default, user: {user}}}]\ncontexts: [{{name: default, context: {{cluster: default, user: default}}}}]\ncurrent-context: default\n",
                port = running.address.port()
            ),
        );
    }
    println!("listening on {}", running.address);
    let _ = tokio::signal::ctrl_c().await;
}

/// An agent's side: registers its Node with the server over HTTP(S), then stays running.
async fn join(args: Args) {
    let Some(url) = args.server.clone() else {
        usage()
    };
    let Some(node) = node_object(&args) else {
        usage()
    };
    let token = std::env::var("K3S_TOKEN").unwrap_or_default();
    let uri: hyper::Uri = url
        .parse()
        .unwrap_or_else(|e| fail(format!("--server {url}: {e}")));
    let host = uri.host().unwrap_or("127.0.0.1").to_owned();
    let port = uri.port_u16().unwrap_or(6443);
    let body = serde_json::to_vec(&node).unwrap_or_default();
    loop {
        match register(&host, port, args.ca.as_deref(), &token, &body).await {
            Ok(200..=299 | 409) => break,
            Ok(401) => fail(format!("{url} refused the token (401 Unauthorized)")),
            Ok(code) => eprintln!("{url} answered {code}; trying again"),
            Err(e) => eprintln!("cannot reach {url}: {e}; trying again"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    println!("registered with {url}");
    let _ = tokio::signal::ctrl_c().await;
}

async fn register(
    host: &str,
    port: u16,
    ca: Option<&std::path::Path>,
    token: &str,
    body: &[u8],
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let request = hyper::Request::post("/api/v1/nodes")
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_vec())))?;
    let status = match ca {
        Some(ca) => {
            use tokio_rustls::rustls;
            use tokio_rustls::rustls::pki_types::CertificateDer;
            use tokio_rustls::rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)? {
                roots.add(cert?)?;
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, stream)
                .await?;
            send(stream, request).await?
        }
        None => send(stream, request).await?,
    };
    Ok(status)
}

/// One request on its own HTTP/1 connection over `stream`: the answer's status code.
async fn send<S>(
    stream: S,
    request: hyper::Request<http_body_util::Full<hyper::body::Bytes>>,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await?.status().as_u16())
}
