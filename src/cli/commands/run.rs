//! `gt daemon run`: the daemon in the foreground.
use std::process::ExitCode;

use crate::config::{Config, EXIT_CONFIG};
use crate::daemon::logging::LogOptions;
use crate::town::Town;

/// Run the daemon in the foreground (for systemd, launchd and debugging).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
SIGTERM or SIGINT (Ctrl-C) stop it cleanly; SIGHUP reloads config.json (an
invalid one is refused and the running config stays; see the log).
`gt daemon start` runs this detached; service managers run it directly
(see `gt daemon install`).

Log lines go to daemon.log, and to stderr too when it is a terminal, when
systemd runs the daemon (journald: `journalctl -u UNIT`), or with
--log-stderr. A configuration the daemon refuses exits with status 78.

Examples:
  gt daemon run
  gt daemon run --dry-run --log-level debug
  gt daemon run --log-stderr 2>&1 | grep WARN   # in a container: logs on stderr")]
pub struct Args {
    /// Validate and file requests but do not call tmux (config `dry_run`).
    #[arg(long)]
    pub dry_run: bool,
    /// Also write the log lines to stderr (automatic in a terminal and
    /// under systemd).
    #[arg(long)]
    pub log_stderr: bool,
    #[command(flatten)]
    pub log: crate::cli::LogArgs,
}

pub fn run(town: &Town, args: Args, log: &LogOptions) -> color_eyre::Result<ExitCode> {
    town.ensure_dirs()?;
    let log = LogOptions {
        stderr: log.stderr || args.log_stderr,
        ..log.clone()
    };
    let config = Config::load_with_source(&town.config_file());
    // Fatal errors go where the daemon's lines go (daemon.log, in the
    // chosen format), so even a bad config is logged with the rotation
    // defaults and in JSON when JSON was asked for.
    let logging_config = config.as_ref().map(|(c, _)| c.clone()).unwrap_or_default();
    let stderr = match crate::daemon::logging::init(town, &logging_config, &log) {
        Ok(stderr) => stderr,
        Err(e) => {
            eprintln!("error: the daemon refuses to start: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let (result, code) = match config {
        Ok((mut config, source)) => {
            config.dry_run |= args.dry_run;
            (
                crate::daemon::run(town, config, source, &crate::testing::Hooks::from_env())
                    .map_err(|e| e.to_string()),
                ExitCode::FAILURE,
            )
        }
        Err(e) => (
            Err(format!("the daemon refuses to start: {e}")),
            ExitCode::from(EXIT_CONFIG),
        ),
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(message) => {
            tracing::error!("{message}");
            // Whoever reads stderr (a terminal, journald) already saw it
            // through the log; anyone else (a pipe) has not.
            if !stderr.shows_log() && !crate::daemon::logging::stderr_is_log(town) {
                eprintln!("error: {message}");
            }
            Ok(code)
        }
    }
}
