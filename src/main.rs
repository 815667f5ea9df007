use std::process::ExitCode;

use clap::Parser;

fn main() -> color_eyre::Result<ExitCode> {
    color_eyre::install()?;
    gt::cli::dispatch(gt::cli::Cli::parse())
}
