//! The labels nimbus puts on what it creates in Docker, and on swarm nodes.

/// The nimbus address of a service, container, network or secret.
pub const ADDRESS_LABEL: &str = "dev.nimbus.address";
/// Marks what nimbus manages (and may delete).
pub const MANAGED_LABEL: &str = "dev.nimbus.managed-by";
/// The node label naming the Host a node is.
pub const HOST_LABEL: &str = "dev.nimbus.host";
