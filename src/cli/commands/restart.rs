//! `gt daemon restart`: stop the running daemon, then start a new one, in
//! dry-run mode if the old one was started that way.
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::commands::{check, start};
use crate::client::control::{self, StopOutcome};
use crate::daemon::logging::LogOptions;
use crate::duration::human;
use crate::instance;
use crate::state::State;
use crate::town::Town;

/// Stop the daemon, then start it again (keeping --dry-run).
///
/// For an upgraded gt binary, or a setting only a start reads.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The new daemon is started in dry-run mode when the old one was started
with --dry-run (or pass --dry-run). Not running: starts it.
The checks of `gt daemon check` run first: when the new daemon could not
run (a bad config.json, say), nothing is stopped.
Most settings need no restart: SIGHUP makes a running daemon reload
config.json (`systemctl reload UNIT` under systemd).

Examples:
  gt daemon restart
  gt daemon restart --timeout 30s   give a long restart in hand time to finish")]
pub struct Args {
    /// Start the new daemon in dry-run mode, whatever the old one was.
    #[arg(long)]
    pub dry_run: bool,
    /// How long the old daemon gets to stop after SIGTERM before SIGKILL,
    /// and the new one to come up.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = crate::cli::commands::parse_duration_arg)]
    pub timeout: Duration,
}

pub fn run(town: &Town, args: Args, log: &LogOptions) -> color_eyre::Result<ExitCode> {
    crate::cli::commands::warn_if_service_managed(town, "restart");
    let dry_run = args.dry_run || instance::holder(town).is_some_and(|pid| started_dry(town, pid));
    let fatal = check::preflight(town, dry_run, log);
    if !fatal.is_empty() {
        check::print_refusal(
            &fatal,
            "not restarting; the running daemon, if any, was left alone",
        );
        return Ok(ExitCode::FAILURE);
    }
    match control::stop(town, args.timeout)? {
        StopOutcome::NotRunning => println!("Daemon was not running"),
        StopOutcome::Stopped(pid) => println!("Daemon stopped (PID {pid})"),
        StopOutcome::Killed(pid) => println!(
            "Daemon did not stop within {} of SIGTERM; killed it with SIGKILL (PID {pid})",
            human(args.timeout)
        ),
    }
    start::run(
        town,
        start::Args {
            dry_run,
            timeout: args.timeout,
            checked: true,
            log: crate::cli::LogArgs::default(),
        },
        log,
    )
}

/// Whether the daemon `pid` was started with `--dry-run`: its command line
/// says so; where that cannot be read, state.json's `dry_run` (which is
/// also on when config.json asks for it).
fn started_dry(town: &Town, pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(argv) => argv
            .split(|&b| b == 0)
            .skip_while(|&a| a != b"run")
            .any(|a| a == b"--dry-run"),
        Err(_) => State::load(&town.state_file()).is_ok_and(|s| s.running && s.dry_run),
    }
}
