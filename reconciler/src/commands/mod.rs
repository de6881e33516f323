//! One thin module per command: arguments in, one library call, output.

pub mod agent;
pub mod apply;
pub mod completions;
pub mod discover;
pub mod graph;
pub mod import;
pub mod init;
pub mod plan;
pub mod preview;
pub mod provider;
pub mod reconcile;
pub mod schemas;
pub mod secret;
pub mod state;
pub mod validate;
