//! `gt daemon run`: the daemon in the foreground.
use std::process::ExitCode;

use color_eyre::eyre::{eyre, WrapErr};

use crate::cli::LogOptions;
use crate::config::Config;
use crate::town::Town;

/// Run the daemon in the foreground (for systemd, launchd and debugging).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "SIGTERM, SIGINT (Ctrl-C) or SIGHUP stop it cleanly.\n\nExamples:\n  gt daemon run\n  gt daemon run --dry-run --log-level debug"
)]
pub struct Args {
    /// Validate and file requests but do not call tmux (config `dry_run`).
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(town: &Town, args: Args, log: &LogOptions) -> color_eyre::Result<ExitCode> {
    town.ensure_dirs()?;
    let mut config = Config::load(&town.config_file()).wrap_err("the daemon refuses to start")?;
    config.dry_run |= args.dry_run;
    let _flush = crate::logging::init(town, &config, log).map_err(|e| eyre!(e))?;
    crate::daemon::run(town, config).map_err(|e| {
        tracing::error!("{e}");
        eyre!(e)
    })?;
    Ok(ExitCode::SUCCESS)
}
