//! Networks: a WireGuard interface on a host ([`wireguard`]) and the mesh provider that
//! configures every member through its agent ([`mesh`]).

pub mod mesh;
pub mod wireguard;
