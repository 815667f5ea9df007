//! `gt daemon status`: is the daemon up, and what has it done.
use std::process::ExitCode;

use crate::town::Town;

/// Show whether the daemon runs, and its counters.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  gt daemon status\n  gt daemon status --json | jq .pid")]
pub struct Args {
    /// Print one JSON object on stdout (running, pid and the state.json fields).
    #[arg(long)]
    pub json: bool,
}

pub fn run(_town: &Town, _args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}
