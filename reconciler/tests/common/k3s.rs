//! The k3s stand-in's parts on test-bed hosts, and kubectl through an SSH port forward: for
//! the k3s end-to-end test and its benchmark.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::text;
use crate::sshd::bed::Bed;

/// Where the stand-in (`testbed/k3s/k3s`) finds the test server and its certificates.
pub const TEST_DIR: &str = "/usr/local/lib/nimbus-test";

fn said(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// The stand-in k3s binary of this checkout.
pub fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/k3s/k3s")
}

/// Puts what the stand-in runs on every host of the bed (the test server, a CA and the API's
/// certificate for the first host's address); `fail_image`: rollouts of images containing it
/// fail.
pub fn prepare(bed: &Bed, dir: &Path, fail_image: &str) {
    let binary = testserver();
    let certificates = certificates(dir, &bed.hosts[0].address);
    for host in &bed.hosts {
        bed.copy_to(
            &host.name,
            &binary,
            &format!("{TEST_DIR}/nimbus-kube-testserver"),
        );
        for file in &certificates {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            bed.copy_to(&host.name, file, &format!("{TEST_DIR}/{name}"));
        }
        bed.ssh_ok(
            &host.name,
            &format!("chmod 0755 {TEST_DIR}/nimbus-kube-testserver && echo {fail_image} > {TEST_DIR}/fail-image"),
        );
    }
    let _ = std::fs::remove_file(&binary);
}

/// The test API server's binary (built with the workspace), stripped, next to it.
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
    let stripped = dir.join(format!(
        "nimbus-kube-testserver-stripped.{}",
        std::process::id()
    ));
    let status = Command::new("objcopy")
        .arg("--strip-all")
        .arg(&binary)
        .arg(&stripped)
        .status()
        .unwrap_or_else(|e| panic!("objcopy: {e}"));
    assert!(status.success(), "objcopy --strip-all");
    stripped
}

/// A certificate authority and the API's certificate signed by it, valid for the server's
/// loopback and address, as k3s makes them: `(ca.crt, tls.crt, tls.key)`.
fn certificates(dir: &Path, address: &str) -> [PathBuf; 3] {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            text(&out.stderr)
        );
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &new_key,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=k3s-server-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &new_key,
            &["-subj", "/CN=k3s", "-keyout", "tls.key", "-out", "tls.csr"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("tls.ext"),
        format!("subjectAltName=IP:127.0.0.1,IP:{address}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "tls.ext",
        "-out",
        "tls.crt",
    ]);
    ["ca.crt", "tls.crt", "tls.key"].map(|name| dir.join(name))
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
