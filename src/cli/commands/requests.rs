//! `gt daemon requests`: recent outcomes, newest first.
use std::process::ExitCode;

use crate::town::Town;

/// List recent request outcomes, newest first.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  gt daemon requests\n  gt daemon requests --failed -n 5\n  gt daemon requests --json | jq '.[0].error'")]
pub struct Args {
    /// Only failed requests.
    #[arg(long, conflicts_with = "processed")]
    pub failed: bool,
    /// Only processed requests.
    #[arg(long)]
    pub processed: bool,
    /// How many to show.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Print a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_town: &Town, _args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}
