//! A test bed of real hosts for a test: systemd-nspawn containers booting systemd, each in its
//! own network namespace with its own sshd, brought up by `testbed/hosts-up.sh` and torn down
//! (by the PIDs it recorded) when the `Bed` is dropped.
//!
//! Each bed takes a free bed number (its own /24 and bridge), so tests in parallel processes
//! get beds of their own. The Debian root file system is built once and shared, under
//! `NIMBUS_TESTBED_CACHE` (default `/var/tmp/nimbus-testbed`).
//!
//! The bed needs root and systemd-nspawn (`testbed/setup.sh` installs it): a test that cannot
//! have its bed fails, saying why; it never passes without its hosts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The image the Docker test bed loads into every host: python3's http.server on port 8000,
/// built locally from the bed's root file system (`testbed/docker/image-tiny.sh`).
pub const TEST_IMAGE: &str = "nimbus-test/py-tiny:2";
/// The test guest's kernel and initramfs on a VM bed host ([`Bed::up_vm`]).
#[allow(dead_code)]
pub const GUEST_KERNEL: &str = "/srv/guest/vmlinux";
#[allow(dead_code)]
pub const GUEST_INITRD: &str = "/srv/guest/initrd.cpio.gz";

pub fn testbed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("NIMBUS_TESTBED_CACHE")
        .map_or_else(|| PathBuf::from("/var/tmp/nimbus-testbed"), PathBuf::from)
}

/// One host of a bed, as `hosts.json` lists it.
#[derive(Clone, Debug)]
pub struct BedHost {
    pub name: String,
    pub address: String,
    pub host_key: String,
    /// The container's overlay upper directory: what the host wrote, readable from outside.
    pub upper: PathBuf,
}

pub struct Bed {
    pub number: u32,
    pub tb: PathBuf,
    pub hosts: Vec<BedHost>,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub ssh_config: PathBuf,
    /// The lock that holds the bed's number (released when the bed is dropped).
    _lock: std::fs::File,
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Claims a free bed number: an exclusive lock on `/run/nimbus-beds/N.lock`, held by the
/// returned file for as long as the bed lives. The kernel drops the lock when its process
/// ends, so a claim is never stale and two tests can never hold one number (a claim made of a
/// directory and a PID written after it once let two tests take the same bed).
fn claim_bed() -> (u32, std::fs::File) {
    let root = Path::new("/run/nimbus-beds");
    std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let start = 20 + std::process::id() % 60;
    for offset in 0..80 {
        let number = 20 + (start - 20 + offset) % 80;
        let path = root.join(format!("{number}.lock"));
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if file.try_lock().is_ok() {
            return (number, file);
        }
    }
    panic!("no free test bed number under /run/nimbus-beds");
}

impl Bed {
    /// Brings up `n` hosts and waits until systemd runs on each.
    pub fn up(n: usize) -> Bed {
        Self::up_with(n, "rootfs-systemd", false)
    }

    /// Brings up `n` hosts that can run VMs (`testbed/vm/`: qemu under TCG, btrfs-progs), with
    /// the test guest (a kernel and a busybox initramfs) at [`GUEST_KERNEL`] and
    /// [`GUEST_INITRD`] on each.
    #[allow(dead_code)]
    pub fn up_vm(n: usize) -> Bed {
        let cache = cache_dir();
        std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
        run(
            Command::new("flock")
                .arg(cache.join(".lock"))
                .arg("bash")
                .arg(testbed_dir().join("rootfs-systemd.sh"))
                .env("TB", &cache),
            "testbed/rootfs-systemd.sh",
        );
        run(
            Command::new("flock")
                .arg(cache.join(".lock"))
                .arg("sh")
                .arg("-c")
                .arg("bash \"$0\" && bash \"$1\"")
                .arg(testbed_dir().join("vm/rootfs-vm.sh"))
                .arg(testbed_dir().join("vm/guest.sh"))
                .env("SRC", cache.join("rootfs-systemd"))
                .env("DST", cache.join("rootfs-vm"))
                .env("OUT", cache.join("guest")),
            "testbed/vm/rootfs-vm.sh and guest.sh",
        );
        let bed = Self::up_with(n, "rootfs-vm", false);
        for host in &bed.hosts {
            for (file, path) in [("vmlinux", GUEST_KERNEL), ("initrd.cpio.gz", GUEST_INITRD)] {
                bed.copy_to(&host.name, &cache.join("guest").join(file), path);
            }
        }
        bed
    }

    /// Brings up `n` hosts with a Docker engine each (`testbed/docker/`), waits until every
    /// engine answers, and loads the test image ([`TEST_IMAGE`], built locally: there is no
    /// registry) into each.
    pub fn up_docker(n: usize) -> Bed {
        let tar = cache_dir().join("py-tiny-2.tar");
        run(
            Command::new("bash")
                .arg(testbed_dir().join("docker/prepare.sh"))
                .env("NIMBUS_TESTBED_CACHE", cache_dir()),
            "testbed/docker/prepare.sh",
        );
        let bed = Self::up_with(n, "rootfs-docker", true);
        for host in &bed.hosts {
            bed.wait_for(
                &host.name,
                "docker info --format '{{.ServerVersion}}'",
                std::time::Duration::from_secs(90),
                "dockerd does not answer",
            );
        }
        let loads: Vec<_> = bed
            .hosts
            .iter()
            .map(|host| {
                Command::new("ssh")
                    .arg("-F")
                    .arg(&bed.ssh_config)
                    .arg(&host.name)
                    .arg("docker load -q")
                    .stdin(std::fs::File::open(&tar).unwrap_or_else(|e| panic!("{e}")))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("ssh: {e}"))
            })
            .collect();
        for mut load in loads {
            assert!(load.wait().is_ok_and(|s| s.success()), "docker load failed");
        }
        bed
    }

    fn up_with(n: usize, rootfs: &str, docker: bool) -> Bed {
        assert!(
            nix_is_root(),
            "the host test bed needs root (network namespaces, systemd-nspawn)"
        );
        let dir = testbed_dir();
        let cache = cache_dir();
        std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
        // One rootfs for every bed, built by one test at a time.
        run(
            Command::new("flock")
                .arg(cache.join(".lock"))
                .arg("bash")
                .arg(dir.join("rootfs-systemd.sh"))
                .env("TB", &cache),
            "testbed/rootfs-systemd.sh",
        );
        let (number, lock) = claim_bed();
        let tb = std::env::temp_dir().join(format!("nimbus-test-bed-{number}"));
        let mut bed = Bed {
            number,
            tb: tb.clone(),
            hosts: Vec::new(),
            key: tb.join("keys/id_ed25519"),
            known_hosts: tb.join("known_hosts"),
            ssh_config: tb.join("ssh_config"),
            _lock: lock,
        };
        // From here on, dropping `bed` tears down whatever was started.
        run(
            Command::new("bash")
                .arg(dir.join("hosts-up.sh"))
                .env("N", n.to_string())
                .env("BED", number.to_string())
                .env("TB", &tb)
                .env("ROOTFS", cache.join(rootfs))
                .env("DOCKER", if docker { "1" } else { "0" })
                .env(
                    "NSPAWN_EXTRA",
                    if docker {
                        "--system-call-filter=@keyring"
                    } else if rootfs == "rootfs-vm" {
                        // nfs-ganesha's VFS opens files by handle, which nspawn's default
                        // system call filter refuses (EPERM on every read of an export).
                        "--system-call-filter=open_by_handle_at"
                    } else {
                        ""
                    },
                ),
            "testbed/hosts-up.sh",
        );
        let listing = std::fs::read_to_string(tb.join("hosts.json"))
            .unwrap_or_else(|e| panic!("hosts.json: {e}"));
        let listing: Value =
            serde_json::from_str(&listing).unwrap_or_else(|e| panic!("hosts.json: {e}"));
        let hosts = listing["hosts"]
            .as_array()
            .map(|hosts| {
                hosts
                    .iter()
                    .map(|h| BedHost {
                        name: h["name"].as_str().unwrap_or_default().to_owned(),
                        address: h["address"].as_str().unwrap_or_default().to_owned(),
                        host_key: h["host_key"].as_str().unwrap_or_default().to_owned(),
                        upper: PathBuf::from(h["upper"].as_str().unwrap_or_default()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        bed.hosts = hosts;
        bed
    }

    /// How nimbus's SSH transport reaches host `index` of the bed (root, pinned key).
    pub fn target(&self, index: usize) -> nimbus_providers::ssh::SshTarget {
        let host = &self.hosts[index];
        nimbus_providers::ssh::SshTarget {
            name: host.name.clone(),
            address: host.address.clone(),
            port: 22,
            user: "root".into(),
            host_key: host.host_key.clone(),
            identity: self.key.clone(),
            agent: None,
            connect_timeout: std::time::Duration::from_secs(5),
            via: None,
            trust_on_first_use: false,
        }
    }

    /// An address on this bed's network where no host answers.
    pub fn unreachable_address(&self) -> String {
        format!("10.233.{}.250", self.number)
    }

    /// The bed's hosts as Host manifests (YAML, one document each), each with `labels` (a
    /// flow map's inside, such as `mesh: "yes"`, or empty).
    #[allow(dead_code)]
    pub fn hosts_manifest(&self, labels: &str) -> String {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!(", labels: {{{labels}}}")
        };
        self.hosts
            .iter()
            .map(|h| {
                format!(
                    "apiVersion: nimbus.dev/v1alpha1\nkind: Host\nmetadata: {{name: {}{labels}}}\nspec: {{address: {}}}\n",
                    h.name, h.address
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// Copies the local file `from` to `to` on `host` (its folder made), through ssh.
    #[allow(dead_code)]
    pub fn copy_to(&self, host: &str, from: &Path, to: &str) {
        let folder = to.rsplit_once('/').map_or(".", |(folder, _)| folder);
        let status = Command::new("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .arg(host)
            .arg(format!("mkdir -p {folder} && cat > {to}"))
            .stdin(std::fs::File::open(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())))
            .status()
            .unwrap_or_else(|e| panic!("ssh: {e}"));
        assert!(
            status.success(),
            "copying {} to {host}:{to}",
            from.display()
        );
    }

    /// Runs `command` on `host` with the system's ssh client (pinned keys, key auth).
    pub fn ssh(&self, host: &str, command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .arg(host)
            .arg(command)
            .output()
            .unwrap_or_else(|e| panic!("ssh {host}: {e}"))
    }

    /// The standard output of `command` on `host`, which must succeed.
    pub fn ssh_ok(&self, host: &str, command: &str) -> String {
        let output = self.ssh(host, command);
        assert!(
            output.status.success(),
            "ssh {host} {command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until `command` succeeds on `host`; panics with `what` after `within`.
    #[allow(dead_code)]
    pub fn wait_for(&self, host: &str, command: &str, within: std::time::Duration, what: &str) {
        let deadline = std::time::Instant::now() + within;
        while !self.ssh(host, command).status.success() {
            assert!(std::time::Instant::now() < deadline, "{what} ({host})");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

fn nix_is_root() -> bool {
    // The effective uid from /proc, without a libc dependency.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(testbed_dir().join("hosts-down.sh"))
            .env("BED", self.number.to_string())
            .env("TB", &self.tb)
            .output();
        let _ = std::fs::remove_dir_all(&self.tb);
        // The lock file stays: removing it could let two tests lock two files of one name.
    }
}

/// A btrfs file system on a loop device, mounted at `mount` on a bed host (the kernel has
/// btrfs; nspawn's /dev has no loop nodes, so they are made); detached again when dropped
/// (loop devices belong to the whole machine).
#[allow(dead_code)]
pub struct BtrfsPool<'a> {
    bed: &'a Bed,
    host: String,
    mount: String,
    device: String,
}

#[allow(dead_code)]
impl<'a> BtrfsPool<'a> {
    pub fn new(bed: &'a Bed, host: &str, mount: &str) -> Self {
        let device = bed.ssh_ok(
            host,
            &format!(
                "set -e; [ -e /dev/loop-control ] || mknod /dev/loop-control c 10 237; \
                 for i in $(seq 0 63); do [ -e /dev/loop$i ] || mknod /dev/loop$i b 7 $i; done; \
                 [ -e /dev/btrfs-control ] || mknod /dev/btrfs-control c 10 234; \
                 truncate -s 512M /srv/pool.img; d=$(losetup --find --show /srv/pool.img); \
                 mkfs.btrfs -q $d >/dev/null; mkdir -p {mount}; mount $d {mount}; echo $d"
            ),
        );
        BtrfsPool {
            bed,
            host: host.to_owned(),
            mount: mount.to_owned(),
            device: device.lines().last().unwrap_or_default().trim().to_owned(),
        }
    }
}

impl Drop for BtrfsPool<'_> {
    fn drop(&mut self) {
        let detached = self.bed.ssh(
            &self.host,
            &format!(
                "umount -l {}; for d in {} $(losetup -j /srv/pool.img | cut -d: -f1); do losetup -d $d 2>/dev/null; done; losetup -j /srv/pool.img | wc -l",
                self.mount, self.device
            ),
        );
        let left = String::from_utf8_lossy(&detached.stdout).trim().to_owned();
        assert!(
            left == "0" || std::thread::panicking(),
            "the loop device is still attached: {left}"
        );
    }
}
