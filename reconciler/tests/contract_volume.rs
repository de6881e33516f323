//! The SSH provider's btrfs Volumes run the provider contract on a real test-bed host, with
//! btrfs on a loop device. Checked on the host with btrfs-progs, not through nimbus.

#[path = "../../providers/tests/common/mod.rs"]
mod sshd;
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
        // nfs is not served: refused before anything is made.
        bad: spec("32Mi", "/srv/pool", "nfs"),
    };
    check(&provider, &hands, &case).await;
    drop(pool);
}
