//! A real OpenSSH sshd on loopback for provider tests: its own host key, client key and
//! config in a temporary directory, started by the test and stopped (by PID) when dropped.
#![allow(dead_code)]

pub mod bed;
pub mod s3;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nimbus_providers::ssh::SshTarget;

pub struct Sshd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e} (install openssh-client)"));
    assert!(status.success());
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn start_sshd() -> Sshd {
    start_sshd_with("")
}

/// An sshd with extra configuration lines.
pub fn start_sshd_with(extra: &str) -> Sshd {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "/usr/sbin/sshd is missing: scripts/setup.sh installs openssh-server"
    );
    let _ = std::fs::create_dir_all("/run/sshd");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    keygen(&dir.path().join("host_key"));
    keygen(&dir.path().join("client_key"));
    std::fs::copy(
        dir.path().join("client_key.pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Tests start sshds in parallel: a port found free may be taken by the time sshd binds
    // it. Wait for this sshd's own "Server listening" line, and try another port if it died.
    for _attempt in 0..10 {
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\nPidFile {pid}\n\
             StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUseDNS no\nMaxSessions 32\n{extra}",
            host = dir.path().join("host_key").display(),
            auth = dir.path().join("authorized_keys").display(),
            pid = dir.path().join("sshd.pid").display(),
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("sshd.log");
        let mut child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sshd: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(&format!("Server listening on 127.0.0.1 port {port}")) {
                return Sshd { child, dir, port };
            }
            if matches!(child.try_wait(), Ok(Some(_))) {
                break; // most likely the port was taken: try another
            }
            assert!(Instant::now() < deadline, "sshd did not listen: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "sshd could not listen on any port: {}",
        std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
    );
}

pub fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

impl Sshd {
    pub fn target(&self) -> SshTarget {
        let host_key =
            std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap_or_default();
        SshTarget {
            name: "web-1".into(),
            address: "127.0.0.1".into(),
            port: self.port,
            user: user(),
            host_key,
            identity: self.dir.path().join("client_key"),
            connect_timeout: Duration::from_secs(5),
            via: None,
            trust_on_first_use: false,
            agent: None,
        }
    }
}

/// A real ssh-agent holding the sshd's client key, listening on a socket in the sshd's
/// directory; stopped (by PID) when dropped.
pub struct Agent {
    child: Child,
    pub socket: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_agent(sshd: &Sshd) -> Agent {
    let socket = sshd.dir.path().join("agent.sock");
    let child = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start ssh-agent: {e}"));
    let agent = Agent { child, socket };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.socket.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(sshd.dir.path().join("client_key"))
        .env("SSH_AUTH_SOCK", &agent.socket)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("ssh-add: {e}"));
    assert!(added.success(), "ssh-add failed");
    agent
}
