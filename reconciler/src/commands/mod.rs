//! One thin module per command: arguments in, one library call, output.

pub mod completions;
pub mod graph;
pub mod init;
pub mod validate;
