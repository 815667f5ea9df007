//! `gt daemon send`: publish a request the way agents should.
use std::process::ExitCode;
use std::time::Duration;

use crate::town::Town;

/// Publish a lifecycle request into the inbox (atomically).
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status with --wait: 0 processed, 1 failed, 124 timed out.\n\nExamples:\n  gt daemon send cycle --from gastown/witness\n  gt daemon send restart --from mayor --wait --timeout 60s")]
pub struct Args {
    /// cycle (restart with handoff), restart (fresh) or shutdown.
    #[arg(value_parser = ["cycle", "restart", "shutdown"])]
    pub action: String,
    /// The requesting agent: mayor, deacon, <rig>/witness, <rig>-witness or <rig>/refinery.
    #[arg(long, value_name = "AGENT")]
    pub from: String,
    /// Block until the request is filed, print its outcome and reason.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long to wait (e.g. 30s).
    #[arg(long, value_name = "D", default_value = "60s", requires = "wait", value_parser = crate::cli::commands::parse_duration_arg)]
    pub timeout: Duration,
}

pub fn run(_town: &Town, _args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}
