//! `gt daemon run`: the daemon in the foreground.
use std::process::ExitCode;

use crate::cli::LogOptions;
use crate::town::Town;

/// Run the daemon in the foreground (for systemd, launchd and debugging).
#[derive(Debug, clap::Args)]
#[command(after_help = "SIGTERM or SIGINT (Ctrl-C) stop it cleanly.\n\nExamples:\n  gt daemon run\n  gt daemon run --dry-run --log-level debug")]
pub struct Args {
    /// Validate and file requests but do not call tmux (config `dry_run`).
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(_town: &Town, _args: Args, _log: &LogOptions) -> color_eyre::Result<ExitCode> {
    todo!()
}
