//! `gt daemon logs`: the tail of daemon.log, optionally followed.
use std::process::ExitCode;

use crate::town::Town;

/// Print the daemon's log.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  gt daemon logs -n 100\n  gt daemon logs -f            # keeps following across log rotation")]
pub struct Args {
    /// Number of lines to print.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
}

pub fn run(_town: &Town, _args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}
