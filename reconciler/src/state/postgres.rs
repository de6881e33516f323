//! State in PostgreSQL: the same tables as SQLite, in a schema of their own per repository,
//! through tokio-postgres. The state's interface is synchronous (it is called under a mutex,
//! from threads and tasks alike), so the connection lives on a worker thread with a
//! current-thread runtime of its own, and each transaction is sent to it: no caller ever
//! blocks inside another runtime.
//!
//! Credentials come from the URL, `PGPASSWORD` or `~/.pgpass` (or the file `PGPASSFILE`
//! names), as libpq finds them; the password never appears in a message (see
//! [`Target::shown`]). `sslmode` is libpq's: `disable`, `prefer` (the default), `require`
//! (encrypted, the server's certificate not checked), `verify-ca` and `verify-full` (checked
//! against `sslrootcert`, else the system's roots).

use std::path::PathBuf;
use std::sync::{Arc, mpsc};

use super::db::{Cell, Db, DbError, Dialect, P, Row, Tx, Work};

/// Where a PostgreSQL state is: the server and database, and the schema of this repository.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    config: tokio_postgres::Config,
    pub schema: String,
    tls: Tls,
    shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tls {
    Disable,
    /// Encrypt when the server can (`prefer`) or always (`require`), certificate unchecked.
    Unverified {
        required: bool,
    },
    /// Encrypt, and check the certificate (and, for `verify-full`, the host name).
    Verified {
        root: Option<PathBuf>,
        host_name: bool,
    },
}

/// Whether `text` names a PostgreSQL state.
pub fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The schema a repository's state lives in: `nimbus_` and its name, in lower-case letters,
/// digits and `_`.
pub fn schema_for(repository: &str) -> String {
    let name: String = repository
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(50)
        .collect();
    format!("nimbus_{name}")
}

impl Target {
    /// Reads a `postgres://` URL. `schema` (a query parameter) overrides the schema given.
    pub fn parse(url: &str, schema: &str) -> Result<Target, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let mut sslmode = "prefer".to_owned();
        let mut root = None;
        let mut schema = schema.to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => sslmode = value.to_owned(),
                "sslrootcert" => root = Some(PathBuf::from(percent_decode(value))),
                "schema" => schema = percent_decode(value),
                _ => kept.push(pair),
            }
        }
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "schema `{schema}` must be lower-case letters, digits and `_`"
            ));
        }
        let tls = match sslmode.as_str() {
            "disable" => Tls::Disable,
            "allow" | "prefer" => Tls::Unverified { required: false },
            "require" if root.is_none() => Tls::Unverified { required: true },
            "require" | "verify-ca" => Tls::Verified {
                root,
                host_name: false,
            },
            "verify-full" => Tls::Verified {
                root,
                host_name: true,
            },
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        };
        let mut plain = base.to_owned();
        if !kept.is_empty() {
            plain.push('?');
            plain.push_str(&kept.join("&"));
        }
        let mut config: tokio_postgres::Config = plain
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        config.ssl_mode(match &tls {
            Tls::Disable => tokio_postgres::config::SslMode::Disable,
            Tls::Unverified { required: false } => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if config.get_user().is_none() {
            config.user(std::env::var("PGUSER").unwrap_or_else(|_| crate::state::this_user()));
        }
        if config.get_dbname().is_none()
            && let Ok(name) = std::env::var("PGDATABASE")
        {
            config.dbname(&name);
        }
        if config.get_password().is_none()
            && let Some(password) = password_from_environment(&config)
        {
            config.password(password);
        }
        let shown = shown(base, &schema);
        Ok(Target {
            config,
            schema,
            tls,
            shown,
        })
    }

    /// The same database, in the schema of environment `name` (the schema with `_NAME`).
    pub fn for_environment(&mut self, name: &str) {
        let suffix = schema_for(name);
        let suffix = suffix.trim_start_matches("nimbus_");
        let schema = format!("{}_{suffix}", self.schema);
        self.shown = self.shown.replace(
            &format!("(schema {})", self.schema),
            &format!("(schema {schema})"),
        );
        self.schema = schema;
    }

    /// Logs in with `password` (from an age secret), whatever the URL or the environment say.
    pub fn set_password(&mut self, password: &str) {
        self.config.password(password);
    }

    /// The URL without its password, and the schema: what messages and pages show.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn shown(base: &str, schema: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let rest = match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{rest} (schema {schema})")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `PGPASSWORD`, else the first matching line of `PGPASSFILE` or `~/.pgpass`
/// (`host:port:database:user:password`, `*` for any, `\:` and `\\` escaped), read only when
/// it is private (mode 0600 or less), as libpq does.
fn password_from_environment(config: &tokio_postgres::Config) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD")
        && !password.is_empty()
    {
        return Some(password);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(&file).ok()?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_owned();
    let database = config.get_dbname().unwrap_or(&user).to_owned();
    pgpass_lookup(&text, &[&host, &port, &database, &user])
}

/// The password of the first line of a pgpass file whose four fields match `wanted`.
pub fn pgpass_lookup(text: &str, wanted: &[&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut current = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
                other => current.push(other),
            }
        }
        fields.push(current);
        if fields.len() == 5
            && fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        {
            return fields.pop();
        }
    }
    None
}

/// A state database in PostgreSQL, on its worker thread.
pub struct Postgres {
    requests: mpsc::Sender<Request>,
    shown: String,
}

struct Request {
    write: bool,
    work: Work,
    reply: mpsc::SyncSender<Result<(), DbError>>,
}

impl Postgres {
    /// Connects (on a worker thread), makes the schema if it is missing and works in it.
    pub fn connect(target: &Target) -> Result<Postgres, DbError> {
        let (requests, incoming) = mpsc::channel::<Request>();
        let (ready, connected) = mpsc::sync_channel::<Result<(), DbError>>(1);
        let target = target.clone();
        let shown = target.shown.clone();
        std::thread::Builder::new()
            .name("nimbus-state-pg".into())
            .spawn(move || worker(target, incoming, ready))?;
        connected
            .recv()
            .map_err(|_| DbError::from("the PostgreSQL worker stopped"))??;
        Ok(Postgres { requests, shown })
    }
}

impl Db for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn location(&self) -> String {
        self.shown.clone()
    }

    fn transaction(&self, write: bool, work: Work) -> Result<(), DbError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .send(Request { write, work, reply })
            .map_err(|_| DbError::from("the PostgreSQL worker stopped"))?;
        answer
            .recv()
            .map_err(|_| DbError::from("the PostgreSQL worker stopped"))?
    }
}

fn worker(
    target: Target,
    incoming: mpsc::Receiver<Request>,
    ready: mpsc::SyncSender<Result<(), DbError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    // Statements prepared on this connection, by their text: each is parsed once.
    let mut prepared: std::collections::HashMap<String, tokio_postgres::Statement> =
        std::collections::HashMap::new();
    let mut client = match runtime.block_on(open(&target)) {
        Ok(client) => {
            let _ = ready.send(Ok(()));
            Some(client)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Ok(request) = incoming.recv() {
        // A connection that broke (the server restarted) is made again for the next
        // transaction; the one that saw it break has failed.
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            prepared.clear();
            client = runtime.block_on(open(&target)).ok();
        }
        let result = match &client {
            Some(client) => run_one(&runtime, client, &mut prepared, request.write, request.work),
            None => Err(DbError::from(format!(
                "cannot connect to {}",
                target.shown()
            ))),
        };
        let _ = request.reply.send(result);
    }
}

fn run_one(
    runtime: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    prepared: &mut std::collections::HashMap<String, tokio_postgres::Statement>,
    write: bool,
    work: Work,
) -> Result<(), DbError> {
    // BEGIN goes with the transaction's first statements, in the same round trip.
    let mut tx = PgTx {
        runtime,
        client,
        prepared,
        begin: Some(if write {
            "BEGIN ISOLATION LEVEL READ COMMITTED"
        } else {
            "BEGIN READ ONLY"
        }),
        failed: false,
        ended: false,
    };
    let commit = work(&mut tx) && !tx.failed;
    if tx.begin.is_none() && !tx.ended {
        runtime.block_on(client.batch_execute(if commit { "COMMIT" } else { "ROLLBACK" }))?;
    }
    Ok(())
}

async fn open(target: &Target) -> Result<tokio_postgres::Client, DbError> {
    let client = match &target.tls {
        Tls::Disable => {
            let (client, connection) = target.config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
        }
        tls => {
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(tls)?);
            let (client, connection) = target.config.connect(connector).await?;
            tokio::spawn(connection);
            client
        }
    };
    let schema = &target.schema;
    // A nimbus paused in the middle of a transaction (SIGSTOP, a laptop's lid) must not hold
    // the state's rows for ever: the server ends such a session after a few seconds, and a
    // statement waits at most a little longer for a row another holds.
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = '5s'; SET lock_timeout = '15s';
             CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\""
        ))
        .await?;
    Ok(client)
}

fn client_config(tls: &Tls) -> Result<rustls::ClientConfig, DbError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    Ok(match tls {
        Tls::Verified { root, host_name } => {
            let mut roots = rustls::RootCertStore::empty();
            match root {
                Some(path) => {
                    use rustls::pki_types::pem::PemObject;
                    for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)? {
                        roots.add(cert?)?;
                    }
                }
                None => {
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                }
            }
            let roots = Arc::new(roots);
            if *host_name {
                builder.with_root_certificates(roots).with_no_client_auth()
            } else {
                let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    Arc::clone(&provider),
                )
                .build()?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Lenient {
                        provider,
                        chain: Some(verifier),
                    }))
                    .with_no_client_auth()
            }
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient {
                provider,
                chain: None,
            }))
            .with_no_client_auth(),
    })
}

/// The verifier of libpq's lenient modes: `prefer` and `require` (no `chain`: encrypted, the
/// certificate not checked) and `verify-ca` (the chain checked against the roots, whatever name
/// the certificate gives). The handshake's signatures are always checked.
#[derive(Debug)]
struct Lenient {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

struct PgTx<'a> {
    runtime: &'a tokio::runtime::Runtime,
    client: &'a tokio_postgres::Client,
    prepared: &'a mut std::collections::HashMap<String, tokio_postgres::Statement>,
    /// The BEGIN still to send (with the first statements).
    begin: Option<&'static str>,
    /// A statement failed: the transaction is rolled back whatever the work says.
    failed: bool,
    /// The COMMIT went with the last statements (a failed one made it a rollback).
    ended: bool,
}

/// What one pipelined statement answered.
enum Answer {
    Rows(Vec<tokio_postgres::Row>),
    Count(u64),
}

type Pending<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Answer, tokio_postgres::Error>> + 'a>,
>;

impl PgTx<'_> {
    /// The prepared statement of `sql` (prepared now when new: each is parsed once per
    /// connection).
    fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement, DbError> {
        let text = dialect_sql(sql);
        if let Some(statement) = self.prepared.get(&text) {
            return Ok(statement.clone());
        }
        let statement = self.runtime.block_on(self.client.prepare(&text))?;
        self.prepared.insert(text, statement.clone());
        Ok(statement)
    }

    /// Runs `statements` in one round trip (after the BEGIN, when it is still to send): each
    /// one's rows, or its count of rows changed.
    fn pipeline(
        &mut self,
        statements: &[(&str, &[P])],
        rows: bool,
    ) -> Result<Vec<Answer>, DbError> {
        self.pipeline_then(statements, rows, false)
    }

    /// [`PgTx::pipeline`], with the COMMIT after the statements when `commit`.
    fn pipeline_then(
        &mut self,
        statements: &[(&str, &[P])],
        rows: bool,
        commit: bool,
    ) -> Result<Vec<Answer>, DbError> {
        // Prepared first (new ones only), so that a failed prepare leaves no BEGIN open.
        let prepared = statements
            .iter()
            .map(|(sql, _)| self.statement(sql))
            .collect::<Result<Vec<_>, _>>()?;
        let owned: Vec<Vec<Param>> = statements.iter().map(|(_, p)| pg_params(p)).collect();
        let begin = self.begin.take();
        // Sent: the transaction ends with these statements, whatever they answer.
        self.ended |= commit;
        let client = self.client;
        let outcome = self.runtime.block_on(async {
            let mut pending: Vec<Pending<'_>> = Vec::new();
            if let Some(sql) = begin {
                pending.push(Box::pin(async move {
                    client.batch_execute(sql).await.map(|()| Answer::Count(0))
                }));
            }
            for (statement, params) in prepared.iter().zip(&owned) {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                pending.push(if rows {
                    Box::pin(async move { client.query(statement, &refs).await.map(Answer::Rows) })
                } else {
                    Box::pin(
                        async move { client.execute(statement, &refs).await.map(Answer::Count) },
                    )
                });
            }
            if commit {
                pending.push(Box::pin(async move {
                    client
                        .batch_execute("COMMIT")
                        .await
                        .map(|()| Answer::Count(0))
                }));
            }
            let mut answers = in_order(pending).await?;
            if begin.is_some() {
                answers.remove(0);
            }
            if commit {
                answers.pop();
            }
            Ok::<_, tokio_postgres::Error>(answers)
        });
        outcome.map_err(|e| {
            self.failed = true;
            e.into()
        })
    }
}

/// Polls every future, in order every time, until all are done: tokio-postgres sends each
/// request when its future is first polled, so they go out in this order without waiting for
/// each other's answers (pipelining). The first error, if any.
async fn in_order(mut pending: Vec<Pending<'_>>) -> Result<Vec<Answer>, tokio_postgres::Error> {
    use std::task::Poll;
    let mut done: Vec<Option<Result<Answer, tokio_postgres::Error>>> =
        pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (future, slot) in pending.iter_mut().zip(done.iter_mut()) {
            if slot.is_none()
                && let Poll::Ready(result) = future.as_mut().poll(cx)
            {
                *slot = Some(result);
            }
        }
        if done.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// `?N` placeholders as PostgreSQL writes them (`$N`), and SQLite's `rowid` as the `id`
/// column the PostgreSQL tables have.
fn dialect_sql(sql: &str) -> String {
    sql.replace('?', "$").replace("rowid", "id")
}

type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

fn pg_params(params: &[P]) -> Vec<Param> {
    params
        .iter()
        .map(|p| -> Param {
            match p {
                P::I(v) => Box::new(*v),
                P::T(v) => Box::new(v.clone()),
                P::OptT(v) => Box::new(v.clone()),
                P::OptI(v) => Box::new(*v),
            }
        })
        .collect()
}

impl PgTx<'_> {
    /// Each statement's count of rows, all in one round trip (with the COMMIT, when `commit`).
    fn counts(&mut self, statements: &[(&str, Vec<P>)], commit: bool) -> Result<Vec<u64>, DbError> {
        let borrowed: Vec<(&str, &[P])> = statements
            .iter()
            .map(|(sql, params)| (*sql, params.as_slice()))
            .collect();
        Ok(self
            .pipeline_then(&borrowed, false, commit)?
            .into_iter()
            .map(|answer| match answer {
                Answer::Count(n) => n,
                Answer::Rows(rows) => rows.len() as u64,
            })
            .collect())
    }
}

impl Tx for PgTx<'_> {
    fn query(&mut self, sql: &str, params: &[P]) -> Result<Vec<Row>, DbError> {
        match self.pipeline(&[(sql, params)], true)?.pop() {
            Some(Answer::Rows(rows)) => rows.iter().map(pg_row).collect(),
            _ => Ok(Vec::new()),
        }
    }

    fn execute(&mut self, sql: &str, params: &[P]) -> Result<u64, DbError> {
        match self.pipeline(&[(sql, params)], false)?.pop() {
            Some(Answer::Count(n)) => Ok(n),
            _ => Ok(0),
        }
    }

    fn execute_all(&mut self, statements: &[(&str, Vec<P>)]) -> Result<Vec<u64>, DbError> {
        self.counts(statements, false)
    }

    fn commit_all(&mut self, statements: &[(&str, Vec<P>)]) -> Result<Vec<u64>, DbError> {
        self.counts(statements, true)
    }
}

/// One row of PostgreSQL's as cells.
fn pg_row(row: &tokio_postgres::Row) -> Result<Row, DbError> {
    use tokio_postgres::types::Type;
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let cell = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::I),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Cell::I(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Cell::I(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Cell::I(v.into())),
            // `SELECT pg_advisory_xact_lock(..)` and the like.
            Type::VOID => None,
            _ => row.try_get::<_, Option<String>>(i)?.map(Cell::T),
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_read_with_its_own_settings_and_shown_without_its_password() {
        let target = Target::parse(
            "postgres://nimbus:s3cret@db.example:5433/estate?sslmode=require&schema=team_a&connect_timeout=5",
            "nimbus_x",
        )
        .unwrap();
        assert_eq!(target.schema, "team_a");
        assert_eq!(target.tls, Tls::Unverified { required: true });
        assert_eq!(
            target.shown(),
            "postgres://nimbus@db.example:5433/estate (schema team_a)"
        );
        assert!(!format!("{target:?}").contains("s3cret"));
        assert_eq!(target.config.get_password(), Some(&b"s3cret"[..]));
        assert!(Target::parse("postgres://h/db?sslmode=sometimes", "s").is_err());
        assert!(Target::parse("postgres://h/db?schema=Bad-Name", "s").is_err());
        assert_eq!(schema_for("My Estate-2"), "nimbus_my_estate_2");
    }

    #[test]
    fn pgpass_lines_match_field_by_field_with_wildcards_and_escapes() {
        let text =
            "# comment\nother:5432:*:*:no\nlocalhost:*:estate:nimbus:pa\\:ss\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, &["localhost", "5432", "estate", "nimbus"]).as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            pgpass_lookup(text, &["db", "5432", "estate", "nimbus"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("a:b:c:d:e\n", &["x", "b", "c", "d"]), None);
    }
}
