//! The CLI and integration tests of `nimbus`, built as one test binary (as ripgrep does):
//! one link for all of them instead of one per file. Each file under `tests/` is a module;
//! `common` (running the binary, git, HTTP), `sshd` (the test bed: sshd hosts in network
//! namespaces, Docker, qemu, btrfs, S3) and `k3s` are shared.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/k3s.rs"]
mod k3s;
#[path = "../../../providers/tests/common/mod.rs"]
mod sshd;

#[path = "../agent_bed.rs"]
mod agent_bed;
#[path = "../architecture.rs"]
mod architecture;
#[path = "../cli_agent.rs"]
mod cli_agent;
#[path = "../cli_bed.rs"]
mod cli_bed;
#[path = "../cli_bed_recovery.rs"]
mod cli_bed_recovery;
#[path = "../cli_cloud_init.rs"]
mod cli_cloud_init;
#[path = "../cli_crash_lock.rs"]
mod cli_crash_lock;
#[path = "../cli_discover.rs"]
mod cli_discover;
#[path = "../cli_docker.rs"]
mod cli_docker;
#[path = "../cli_docker_host.rs"]
mod cli_docker_host;
#[path = "../cli_docker_mesh.rs"]
mod cli_docker_mesh;
#[path = "../cli_engine.rs"]
mod cli_engine;
#[path = "../cli_failover.rs"]
mod cli_failover;
#[path = "../cli_forge.rs"]
mod cli_forge;
#[path = "../cli_front_door.rs"]
mod cli_front_door;
#[path = "../cli_git.rs"]
mod cli_git;
#[path = "../cli_graph.rs"]
mod cli_graph;
#[path = "../cli_hostile_bed.rs"]
mod cli_hostile_bed;
#[path = "../cli_image.rs"]
mod cli_image;
#[path = "../cli_import.rs"]
mod cli_import;
#[path = "../cli_init.rs"]
mod cli_init;
#[path = "../cli_jail.rs"]
mod cli_jail;
#[path = "../cli_k3s.rs"]
mod cli_k3s;
#[path = "../cli_mesh.rs"]
mod cli_mesh;
#[path = "../cli_modules.rs"]
mod cli_modules;
#[path = "../cli_nfs.rs"]
mod cli_nfs;
#[path = "../cli_notify.rs"]
mod cli_notify;
#[path = "../cli_plugin.rs"]
mod cli_plugin;
#[path = "../cli_provider_check.rs"]
mod cli_provider_check;
#[path = "../cli_reconcile.rs"]
mod cli_reconcile;
#[path = "../cli_s3.rs"]
mod cli_s3;
#[path = "../cli_secrets.rs"]
mod cli_secrets;
#[path = "../cli_ssh.rs"]
mod cli_ssh;
#[path = "../cli_state_pg.rs"]
mod cli_state_pg;
#[path = "../cli_validate.rs"]
mod cli_validate;
#[path = "../cli_vm.rs"]
mod cli_vm;
#[path = "../cli_volume.rs"]
mod cli_volume;
#[path = "../contract_k3s.rs"]
mod contract_k3s;
#[path = "../contract_network.rs"]
mod contract_network;
#[path = "../contract_s3.rs"]
mod contract_s3;
#[path = "../contract_vm.rs"]
mod contract_vm;
#[path = "../contract_volume.rs"]
mod contract_volume;
#[path = "../deploy_unit.rs"]
mod deploy_unit;
#[path = "../docs_reference.rs"]
mod docs_reference;
#[path = "../examples.rs"]
mod examples;
#[path = "../executor.rs"]
mod executor;
#[path = "../install.rs"]
mod install;
#[path = "../json_schemas.rs"]
mod json_schemas;
#[path = "../plans.rs"]
mod plans;
#[path = "../protocol_messages.rs"]
mod protocol_messages;
#[path = "../state_backends.rs"]
mod state_backends;
#[path = "../status_page.rs"]
mod status_page;
#[path = "../testbed_lock.rs"]
mod testbed_lock;
