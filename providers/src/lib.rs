//! nimbus providers: the provider contract and every backend (ssh, docker, kube, wireguard,
//! vm, agent). All backend I/O lives here and only here.
//!
//! Empty in this release: the contract arrives with the engine (plans and apply), and the
//! first backend with the SSH provider. The crate exists now so that the dependency direction
//! `reconciler -> providers -> planner -> schemas` is fixed from the start.
