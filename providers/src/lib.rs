//! nimbus's built-in providers: hosts over SSH (Host, File, Service), plugins (an executable
//! speaking the protocol over stdio), and the in-memory provider that is used only when asked
//! for. The contract they implement is `nimbus-provider-core`, re-exported here whole so that
//! callers name one crate; providers with a heavy SDK have crates of their own.

// One room per job: how hosts are reached, what is on a host (files, services, facts),
// networks, compute, storage, plugins; quoting for every syntax a value lands in.
pub mod audit;
pub mod compute;
pub mod configure;
pub mod host;
pub mod memory;
pub mod network;
pub mod plugin;
pub mod quote;
pub mod storage;
pub mod transport;

// The modules by their own names, as callers have always named them.
pub use compute::vm;
pub use host as hosts;
pub use network::{mesh, wireguard};
pub use storage::{nfs, s3, volume};
pub use transport::{agent, ssh};

/// OpenSSH keys and signatures (sshsig), for verifying signed commits.
pub use russh::keys::ssh_key;

pub use nimbus_provider_core::*;

/// A SHA-256 digest in hex: how files, units and binaries are compared with what a host has.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
