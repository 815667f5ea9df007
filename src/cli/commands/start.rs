//! `gt daemon start`: spawn `run` detached and wait until it is up.
use std::process::ExitCode;

use crate::cli::LogOptions;
use crate::town::Town;

/// Start the daemon in the background and wait until it is up.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  gt daemon start\n  gt --town ~/gt daemon start --dry-run   # log what would be done, touch no tmux session")]
pub struct Args {
    /// Validate and file requests but do not call tmux (config `dry_run`).
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the daemon to come up.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = crate::cli::commands::parse_duration_arg)]
    pub timeout: std::time::Duration,
}

pub fn run(_town: &Town, _args: Args, _log: &LogOptions) -> color_eyre::Result<ExitCode> {
    todo!()
}
