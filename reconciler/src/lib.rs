//! nimbus reconciler: the command line, the working tree and (later) git, state, the executor
//! and the reconcile loop. The only crate that knows about files, time and concurrency.

pub mod cli;
pub mod commands;
pub mod daemon;
pub mod discovery;
pub mod engine;
pub mod executor;
pub mod forge;
pub mod gitsource;
pub mod logging;
pub mod ops;
pub mod render;
pub mod scaffold;
pub mod secrets;
pub mod state;
pub mod workdir;
