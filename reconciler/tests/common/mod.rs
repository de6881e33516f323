//! Shared by the CLI tests: run the built `nimbus` as a user would.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `nimbus ARGS` in `dir`, without colour.
pub fn nimbus(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run nimbus: {e}"))
}
