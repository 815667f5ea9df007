//! `gt daemon run`: the daemon in the foreground.
use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;

use crate::config::Config;
use crate::daemon::logging::LogOptions;
use crate::town::Town;

/// Run the daemon in the foreground (for systemd, launchd and debugging).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
SIGTERM, SIGINT (Ctrl-C) or SIGHUP stop it cleanly. `gt daemon start` runs
this detached; service managers run it directly (see `gt daemon install`).

Examples:
  gt daemon run
  gt daemon run --dry-run --log-level debug")]
pub struct Args {
    /// Validate and file requests but do not call tmux (config `dry_run`).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub log: crate::cli::LogArgs,
}

pub fn run(town: &Town, args: Args, log: &LogOptions) -> color_eyre::Result<ExitCode> {
    town.ensure_dirs()?;
    let config = Config::load(&town.config_file());
    // Fatal errors go where the daemon's lines go (daemon.log, in the
    // chosen format), so even a bad config is logged with the rotation
    // defaults and in JSON when JSON was asked for.
    let logging_config = config.as_ref().cloned().unwrap_or_default();
    if let Err(e) = crate::daemon::logging::init(town, &logging_config, log) {
        color_eyre::eyre::bail!(e);
    }
    let result = match config {
        Ok(mut config) => {
            config.dry_run |= args.dry_run;
            crate::daemon::run(town, config, &crate::testing::Hooks::from_env())
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("the daemon refuses to start: {e}")),
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(message) => {
            tracing::error!("{message}");
            // A terminal already saw it through the log; a pipe (journald)
            // has not, unless stderr is daemon.log itself (`start`).
            if !std::io::stderr().is_terminal() && !stderr_is(&town.log_file()) {
                eprintln!("error: {message}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn stderr_is(path: &std::path::Path) -> bool {
    let (Ok(ours), Ok(file)) = (
        std::fs::metadata("/proc/self/fd/2"),
        std::fs::metadata(path),
    ) else {
        return false;
    };
    ours.dev() == file.dev() && ours.ino() == file.ino()
}
