//! `gt completions` and `gt man`: generated from the clap definitions.
use std::process::ExitCode;

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(_args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}

pub fn man() -> color_eyre::Result<ExitCode> {
    todo!()
}
