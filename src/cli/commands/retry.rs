//! `gt daemon retry`: put a failed request back into the inbox.
use std::process::ExitCode;

use crate::town::Town;

/// Move a failed request back into the inbox to be consumed again.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  ls $GT_TOWN_ROOT/daemon/failed/\n  gt daemon retry 20261126T101500.123-4242-7.json")]
pub struct Args {
    /// File name in failed/ (a path to it works too).
    pub name: String,
}

pub fn run(_town: &Town, _args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}
