//! A throwaway PostgreSQL server for the tests: Debian's `postgresql` (installed by
//! scripts/setup.sh), a cluster made with `initdb` in a temporary folder, started with
//! `pg_ctl` on a free loopback port, as the `postgres` user (PostgreSQL will not run as root),
//! and stopped when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// With TLS: the test authority's certificate (PEM), for `sslrootcert`.
    pub certificate: Option<PathBuf>,
}

fn as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runuser {}: {e}", program.display()))
}

fn newest_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap_or_else(|e| panic!("PostgreSQL is not installed (run scripts/setup.sh): {e}"))
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .unwrap_or_else(|| panic!("no initdb under /usr/lib/postgresql (run scripts/setup.sh)"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

impl Postgres {
    /// A new server: its `postgres` user trusted on the socket (for [`Postgres::psql`]), and
    /// on loopback TCP a `nimbus` role that logs in with a password (SCRAM), as nimbus must.
    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// The same, with TLS on (a certificate for 127.0.0.1 and localhost signed by a test
    /// authority, made with openssl).
    pub fn start_tls() -> Postgres {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Postgres {
        let bin = newest_bin();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success(), "chown of the cluster's folder");
        let data = dir.path().join("data");
        let data_text = data.display().to_string();
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                &data_text,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A test authority, and the server's certificate it signs (for 127.0.0.1 and
        // localhost): what `sslrootcert` names.
        let certificate = tls.then(|| {
            let at = |name: &str| dir.path().join(name);
            std::fs::write(
                at("server.ext"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let openssl = |args: &[&str]| {
                let out = Command::new("openssl")
                    .args(args)
                    .current_dir(dir.path())
                    .output()
                    .unwrap_or_else(|e| panic!("openssl: {e}"));
                assert!(
                    out.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=nimbus-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "server.crt",
                "-extfile",
                "server.ext",
            ]);
            for file in ["server.crt", "server.key"] {
                let _ = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(at(file))
                    .status();
            }
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(at("server.key"), std::fs::Permissions::from_mode(0o600));
            at("ca.crt")
        });
        let mut pg = Postgres {
            dir,
            bin,
            port: 0,
            certificate,
        };
        pg.run();
        let created = pg.psql(&format!(
            "CREATE ROLE nimbus LOGIN PASSWORD '{}' SUPERUSER",
            Self::PASSWORD
        ));
        assert!(created.contains("CREATE ROLE"), "{created}");
        pg
    }

    /// Starts the server (again), on a new port unless it had one.
    fn run(&mut self) {
        if self.port == 0 {
            self.port = free_port();
        }
        let data = self.dir.path().join("data").display().to_string();
        let log = self.dir.path().join("pg.log").display().to_string();
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        if self.certificate.is_some() {
            let dir = self.dir.path().display();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key"
            ));
        }
        let out = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server now (`-m immediate`: as if it died), then starts it again.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn stop(&self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }

    /// The password of the `nimbus` role.
    pub const PASSWORD: &'static str = "nimbus-test-password";

    /// The URL of its `postgres` database as `nimbus`, password included.
    pub fn url(&self) -> String {
        format!(
            "postgres://nimbus:{}@127.0.0.1:{}/postgres?sslmode=disable",
            Self::PASSWORD,
            self.port
        )
    }

    /// The same URL without the password (it must come from elsewhere).
    pub fn url_without_password(&self) -> String {
        format!(
            "postgres://nimbus@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL with psql; its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres"])
            .args(["-d", "postgres", "-Atc", sql])
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
