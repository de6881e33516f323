//! Compute: VMs under systemd on their host, qemu or cloud-hypervisor ([`vm`]).

pub mod vm;
