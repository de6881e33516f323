//! The SSH provider's btrfs and nfs Volumes run the provider contract on a real test-bed
//! host: btrfs on a loop device, checked with btrfs-progs; nfs exports served by nfs-ganesha,
//! checked in its configuration. Checked on the host, not through nimbus.

use crate::sshd;
use sshd::bed::{Bed, BtrfsPool};

use nimbus_provider_contract::{Case, Hands, check};
use nimbus_providers::hosts::HostsProvider;
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Shell<'a> {
    bed: &'a Bed,
    host: String,
}

const UNOWNED: &str = "/srv/pool/acme/by-hand";

impl Shell<'_> {
    fn test(&self, command: &str) -> bool {
        self.bed.ssh(&self.host, command).status.success()
    }
}

impl Hands for Shell<'_> {
    fn identity(&self, case: &Case, spec: &Value) -> String {
        let name = case.resource.trim_start_matches("Volume/");
        format!("{}/{name}", spec["pool"].as_str().unwrap_or_default())
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        self.test(&format!(
            "btrfs subvolume show {} >/dev/null 2>&1",
            self.identity(case, spec)
        ))
    }
    fn drift(&self, case: &Case, spec: &Value) {
        // Its limit changed by hand.
        self.bed.ssh_ok(
            &self.host,
            &format!("btrfs qgroup limit 1M {}", self.identity(case, spec)),
        );
    }
    fn make_unowned(&self, _case: &Case) {
        self.bed.ssh_ok(
            &self.host,
            &format!("mkdir -p /srv/pool/acme && btrfs subvolume create {UNOWNED} >/dev/null"),
        );
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.test(&format!("btrfs subvolume show {UNOWNED} >/dev/null 2>&1"))
    }
    fn remove_unowned(&self, _case: &Case) {
        self.bed.ssh_ok(
            &self.host,
            &format!("btrfs subvolume delete {UNOWNED} >/dev/null"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssh_provider_keeps_the_contract_for_btrfs_volumes() {
    let bed = Bed::up_vm(1);
    let host = bed.hosts[0].name.clone();
    let pool = BtrfsPool::new(&bed, &host, "/srv/pool");
    bed.ssh_ok(&host, "mkdir -p /srv/pool/other");
    let provider = HostsProvider::new([bed.target(0)]);
    let hands = Shell {
        bed: &bed,
        host: host.clone(),
    };
    let spec = |size: &str, pool: &str, kind: &str| json!({"type": kind, "size": size, "host": host, "pool": pool, "tenant": "acme"});
    let case = Case {
        kind: Kind::Volume,
        resource: "Volume/acme/contract".into(),
        target: None,
        spec: spec("32Mi", "/srv/pool", "btrfs"),
        update: spec("64Mi", "/srv/pool", "btrfs"),
        replace: Some(spec("64Mi", "/srv/pool/other", "btrfs")),
        // A pool that is not on btrfs: refused before anything is made.
        bad: spec("32Mi", "/srv", "btrfs"),
    };
    check(&provider, &hands, &case).await;
    drop(pool);
}

/// nfs exports on a host whose NFS server is nfs-ganesha (userspace; the kernel here has no
/// nfsd), the pool on tmpfs (ganesha cannot export the bed host's overlayfs root: the bad
/// input).
struct Exports<'a> {
    bed: &'a Bed,
    host: String,
}

const EXPORTS: &str = "/srv/exports";

impl Hands for Exports<'_> {
    fn identity(&self, case: &Case, spec: &Value) -> String {
        let name = case.resource.trim_start_matches("Volume/");
        format!(
            "{}/{name}",
            spec["pool"].as_str().unwrap_or("/srv/nimbus/exports")
        )
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        self.bed
            .ssh(
                &self.host,
                &format!(
                    "test -d {} && grep -q 'Path = \"{}\"' /etc/ganesha/nimbus-exports.conf",
                    self.identity(case, spec),
                    self.identity(case, spec)
                ),
            )
            .status
            .success()
    }
    fn drift(&self, _case: &Case, _spec: &Value) {
        // Its export removed by hand.
        self.bed
            .ssh_ok(&self.host, "rm -f /etc/ganesha/nimbus.d/acme-contract.conf");
    }
    fn make_unowned(&self, _case: &Case) {
        self.bed
            .ssh_ok(&self.host, &format!("mkdir -p {EXPORTS}/acme/by-hand"));
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.bed
            .ssh(&self.host, &format!("test -d {EXPORTS}/acme/by-hand"))
            .status
            .success()
    }
    fn remove_unowned(&self, _case: &Case) {
        self.bed
            .ssh_ok(&self.host, &format!("rmdir {EXPORTS}/acme/by-hand"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssh_provider_keeps_the_contract_for_nfs_volumes() {
    let bed = Bed::up_vm(1);
    let host = bed.hosts[0].name.clone();
    bed.ssh_ok(
        &host,
        &format!(
            "mkdir -p {EXPORTS} && mount -t tmpfs tmpfs {EXPORTS} && mkdir -p {EXPORTS}/other"
        ),
    );
    let provider = HostsProvider::new([bed.target(0)]);
    let hands = Exports {
        bed: &bed,
        host: host.clone(),
    };
    let spec = |clients: &[&str], pool: &str| json!({"type": "nfs", "size": "1Gi", "host": host, "pool": pool, "tenant": "acme", "clients": clients});
    let case = Case {
        kind: Kind::Volume,
        resource: "Volume/acme/contract".into(),
        target: None,
        spec: spec(&["10.233.0.0/16"], EXPORTS),
        update: spec(&["10.233.0.0/16", "192.0.2.7"], EXPORTS),
        replace: Some(spec(&["10.233.0.0/16"], &format!("{EXPORTS}/other"))),
        bad: spec(&["*"], "/srv/overlay-root"),
    };
    check(&provider, &hands, &case).await;
}
