//! nimbus's built-in providers: hosts over SSH (Host, File, Service), plugins (an executable
//! speaking the protocol over stdio), and the in-memory provider that is used only when asked
//! for. The contract they implement is `nimbus-provider-core`, re-exported here whole so that
//! callers name one crate; providers with a heavy SDK have crates of their own.

pub mod agent;
pub mod audit;
pub mod configure;
pub mod hosts;
pub mod memory;
pub mod mesh;
pub mod nfs;
pub mod plugin;
pub mod quote;
pub mod s3;
pub mod ssh;
pub mod vm;
pub mod volume;
pub mod wireguard;

/// OpenSSH keys and signatures (sshsig), for verifying signed commits.
pub use russh::keys::ssh_key;

pub use nimbus_provider_core::*;
