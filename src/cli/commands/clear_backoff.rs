//! `gt daemon clear-backoff`: reset the crash-loop guard of one agent.
use std::process::ExitCode;

use crate::town::Town;

/// Reset the crash-loop guard so the agent may be restarted again.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  gt daemon clear-backoff mayor\n  gt daemon clear-backoff gastown/witness")]
pub struct Args {
    /// The agent, as in a request's `from`.
    pub agent: String,
}

pub fn run(_town: &Town, _args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}
