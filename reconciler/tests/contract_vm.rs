//! The SSH provider's VMs run the provider contract on a real test-bed host with qemu (TCG,
//! `testbed/vm/`), booting the test guest. Checked on the host with systemctl and qemu-img,
//! not through nimbus.

use crate::sshd;
use sshd::bed::{Bed, GUEST_INITRD, GUEST_KERNEL};

use nimbus_provider_contract::{Case, Hands, check};
use nimbus_providers::hosts::HostsProvider;
use nimbus_schemas::Kind;
use serde_json::{Value, json};

struct Shell<'a> {
    bed: &'a Bed,
    host: String,
}

const UNOWNED: &str = "/var/lib/nimbus/vms/by-hand";

impl Shell<'_> {
    fn test(&self, condition: &str) -> bool {
        self.bed.ssh(&self.host, condition).status.success()
    }
}

impl Hands for Shell<'_> {
    fn identity(&self, case: &Case, spec: &Value) -> String {
        // One VM by name; its disk is what a new image replaces.
        format!(
            "{} on {}",
            case.resource,
            spec["disk"]["image"].as_str().unwrap_or("a blank disk")
        )
    }
    fn exists(&self, case: &Case, spec: &Value) -> bool {
        let name = case.resource.trim_start_matches("VM/");
        let unit = self.test(&format!(
            "test -e /etc/systemd/system/nimbus-vm-{name}.service"
        ));
        match spec["disk"]["image"].as_str() {
            // The disk is an overlay on that image.
            Some(image) => {
                unit && self.test(&format!(
                    "qemu-img info -U /var/lib/nimbus/vms/{name}/disk.qcow2 | grep -q 'backing file: {image}'"
                ))
            }
            // A blank disk: no backing file.
            None => {
                unit && !self.test(&format!(
                    "qemu-img info -U /var/lib/nimbus/vms/{name}/disk.qcow2 | grep -q 'backing file'"
                ))
            }
        }
    }
    fn drift(&self, case: &Case, _spec: &Value) {
        let name = case.resource.trim_start_matches("VM/");
        self.bed.ssh_ok(
            &self.host,
            &format!("systemctl stop nimbus-vm-{name}.service"),
        );
    }
    fn make_unowned(&self, _case: &Case) {
        self.bed.ssh_ok(
            &self.host,
            &format!("mkdir -p {UNOWNED} && qemu-img create -q -f qcow2 {UNOWNED}/disk.qcow2 16M"),
        );
    }
    fn unowned_exists(&self, _case: &Case) -> bool {
        self.test(&format!("test -e {UNOWNED}/disk.qcow2"))
    }
    fn remove_unowned(&self, _case: &Case) {
        self.bed.ssh_ok(&self.host, &format!("rm -rf {UNOWNED}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssh_provider_keeps_the_contract_for_vms_under_qemu() {
    let bed = Bed::up_vm(1);
    let host = bed.hosts[0].name.clone();
    // A base image for the replace: a VM on another image is a new VM.
    bed.ssh_ok(
        &host,
        "qemu-img create -q -f qcow2 /srv/guest/base.qcow2 32M",
    );
    let provider = HostsProvider::new([bed.target(0)]);
    let hands = Shell {
        bed: &bed,
        host: host.clone(),
    };
    let spec = |memory: &str, image: Option<&str>| {
        let mut disk = json!({"size": "64Mi"});
        if let Some(image) = image {
            disk["image"] = json!(image);
        }
        json!({
            "host": host, "cpus": 1, "memory": memory, "disk": disk, "runtime": "qemu",
            "boot": {"kernel": GUEST_KERNEL, "initrd": GUEST_INITRD, "cmdline": "console=ttyS0 quiet"},
        })
    };
    let case = Case {
        kind: Kind::Vm,
        resource: "VM/contract".into(),
        target: None,
        spec: spec("128Mi", None),
        update: spec("160Mi", None),
        replace: Some(spec("160Mi", Some("/srv/guest/base.qcow2"))),
        // An image that is not a path on the host is refused before anything is made.
        bad: spec("128Mi", Some("debian-12")),
    };
    check(&provider, &hands, &case).await;
}
