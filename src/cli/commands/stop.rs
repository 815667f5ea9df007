//! `gt daemon stop`: SIGTERM, wait for the lock, SIGKILL after the timeout.
use std::process::ExitCode;
use std::time::Duration;

use crate::client::control::{self, StopOutcome};
use crate::duration::human;
use crate::town::Town;

/// Stop the running daemon.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The daemon finishes the request in hand (a restart may take prime_delay +
kill_grace), then exits. If it is still running after --timeout it is killed
with SIGKILL, and stop says so. Not running: says so and exits 0.

Examples:
  gt daemon stop
  gt daemon stop --timeout 30s   # give a long restart time to finish")]
pub struct Args {
    /// How long to wait after SIGTERM before SIGKILL (e.g. 10s; a bare number is seconds).
    #[arg(long, value_name = "D", default_value = "10s", value_parser = crate::cli::commands::parse_duration_arg)]
    pub timeout: Duration,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    crate::cli::commands::warn_if_service_managed(town, "stop");
    match control::stop(town, args.timeout)? {
        StopOutcome::NotRunning => println!("Daemon is not running"),
        StopOutcome::Stopped(pid) => println!("Daemon stopped (PID {pid})"),
        StopOutcome::Killed(pid) => println!(
            "Daemon did not stop within {} of SIGTERM; killed it with SIGKILL (PID {pid})",
            human(args.timeout)
        ),
    }
    Ok(ExitCode::SUCCESS)
}
