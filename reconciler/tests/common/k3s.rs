//! The k3s stand-in's parts on test-bed hosts, and kubectl through an SSH port forward: for
//! the k3s end-to-end test and its benchmark.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::text;
use crate::sshd::bed::Bed;

fn said(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// The stand-in k3s binary of this checkout.
pub fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/k3s/k3s")
}

/// A file's SHA-256 as `sha256sum` computes it (not nimbus's own code, which it checks).
pub fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("sha256sum: {e}"));
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Puts what the stand-in runs on every host of the bed (`testbed/k3s/prepare.sh`: the test
/// server, a CA and the API's certificate for the first host's address); `fail_image`:
/// rollouts of images containing it fail.
pub fn prepare(bed: &Bed, fail_image: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/k3s/prepare.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&bed.ssh_config)
        .arg(testserver())
        .arg(&bed.hosts[0].address)
        .arg(fail_image)
        .args(bed.hosts.iter().map(|h| h.name.as_str()))
        .output()
        .unwrap_or_else(|e| panic!("testbed/k3s/prepare.sh: {e}"));
    assert!(
        out.status.success(),
        "testbed/k3s/prepare.sh: {}",
        said(&out)
    );
}

/// The test API server's binary, built with the workspace (in nimbus's profile).
fn testserver() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_nimbus"))
        .parent()
        .unwrap_or_else(|| panic!("no target dir"))
        .to_path_buf();
    let binary = dir.join("nimbus-kube-testserver");
    if !binary.exists() {
        // The profile nimbus was built with (a benchmark's is release).
        let release = dir.ends_with("release").then_some("--release");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "nimbus-kube-testserver"])
            .args(release)
            .status()
            .unwrap_or_else(|e| panic!("cargo: {e}"));
        assert!(status.success(), "building nimbus-kube-testserver");
    }
    binary
}

/// kubectl on this machine, through an SSH port forward to the server's loopback :6443, with
/// the server's own kubeconfig.
pub struct Kubectl {
    forward: std::process::Child,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(bed: &Bed, server: &str, dir: &Path) -> Kubectl {
        let port = {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            listener
                .local_addr()
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let forward = Command::new("ssh")
            .arg("-F")
            .arg(&bed.ssh_config)
            .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("127.0.0.1:{port}:127.0.0.1:6443"))
            .arg(server)
            .spawn()
            .unwrap_or_else(|e| panic!("ssh -L: {e}"));
        crate::common::wait_port(port);
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            bed.ssh_ok(server, "cat /etc/rancher/k3s/k3s.yaml")
                .replace("127.0.0.1:6443", &format!("127.0.0.1:{port}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Kubectl {
            forward,
            kubeconfig,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("kubectl: {e}"))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", said(&out));
        text(&out.stdout)
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = self.forward.kill();
        let _ = self.forward.wait();
    }
}
