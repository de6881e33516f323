//! How nimbus reaches hosts: SSH sessions and the pool that shares one connection per host
//! ([`ssh`]), and `nimbus agent` on a host with the channel nimbus speaks to it over
//! ([`agent`]).

pub mod agent;
pub mod ssh;
