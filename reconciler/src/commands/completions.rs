//! `nimbus completions bash|zsh|fish`: shell completion scripts on stdout.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

pub fn run<C: CommandFactory>(args: CompletionsArgs) -> i32 {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = C::command();
    // Written through the one stdout writer that takes a closed pipe quietly
    // (`nimbus completions zsh | head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "nimbus", &mut script);
    crate::render::print_stdout(&String::from_utf8_lossy(&script));
    0
}
