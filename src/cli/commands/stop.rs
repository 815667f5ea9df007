//! `gt daemon stop`: SIGTERM, wait for the lock, SIGKILL after the timeout.
use std::process::ExitCode;
use std::time::Duration;

use crate::town::Town;

/// Stop the running daemon.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  gt daemon stop\n  gt daemon stop --timeout 30s   # give a long restart time to finish")]
pub struct Args {
    /// How long to wait after SIGTERM before SIGKILL (e.g. 10s; a bare number is seconds).
    #[arg(long, value_name = "D", default_value = "10s", value_parser = crate::cli::commands::parse_duration_arg)]
    pub timeout: Duration,
}

pub fn run(_town: &Town, _args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}
