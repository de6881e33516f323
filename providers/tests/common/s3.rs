//! moto's S3 server on loopback with authentication on (testbed/s3.sh), and boto3, a
//! third-party client, to look at what nimbus did.

use std::path::{Path, PathBuf};
use std::process::Command;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// moto's server, stopped (by its PID) when dropped.
pub struct Moto {
    pub port: u16,
    dir: tempfile::TempDir,
    pid: i32,
}

impl Moto {
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let port = super::free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/s3.sh");
        let status = Command::new("bash")
            .arg(&script)
            .args(["up", &port.to_string()])
            .arg(dir.path())
            .status()
            .unwrap_or_else(|e| panic!("testbed/s3.sh: {e}"));
        let pid = std::fs::read_to_string(dir.path().join("moto.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        let moto = Moto { port, dir, pid };
        assert!(status.success(), "testbed/s3.sh up failed");
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The access key id and secret moto made.
    pub fn keys(&self) -> (String, String) {
        let text =
            std::fs::read_to_string(self.dir.path().join("keys")).unwrap_or_else(|e| panic!("{e}"));
        let mut lines = text.lines();
        (
            lines.next().unwrap_or_default().to_owned(),
            lines.next().unwrap_or_default().to_owned(),
        )
    }

    /// Runs boto3 code with `s3` a client logged in with moto's key; its stdout.
    pub fn boto3(&self, code: &str) -> String {
        let (id, secret) = self.keys();
        let python = PathBuf::from(
            std::env::var("NIMBUS_TESTBED_CACHE")
                .unwrap_or_else(|_| "/var/tmp/nimbus-testbed".to_owned()),
        )
        .join("s3/venv/bin/python3");
        let program = format!(
            "import boto3, json\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='{id}', aws_secret_access_key='{secret}')\n{code}\n",
            self.endpoint()
        );
        let output = Command::new(python)
            .args(["-c", &program])
            .output()
            .unwrap_or_else(|e| panic!("boto3: {e}"));
        assert!(output.status.success(), "boto3: {}", text(&output.stderr));
        text(&output.stdout)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if self.pid > 0 {
            let _ = Command::new("kill").arg(self.pid.to_string()).status();
        }
    }
}
