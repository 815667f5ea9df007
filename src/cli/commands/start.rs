//! `gt daemon start`: spawn `run` detached and wait until it is up.
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::process::ExitCode;
use std::time::Duration;

use crate::client::control::{self, ControlError, StartOutcome};
use crate::daemon::logging::LogOptions;
use crate::town::Town;

/// Start the daemon in the background and wait until it is up.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Already running: says so and exits 0 (no second daemon is ever started).
A previous daemon that is still exiting (killed, not yet gone) is waited for.
A failed start exits 1 and prints the log lines that say why.

Examples:
  gt daemon start
  gt --town ~/gt daemon start --dry-run   # log what would be done, touch no tmux session")]
pub struct Args {
    /// Validate and file requests but do not call tmux (config `dry_run`).
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the daemon to come up.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = crate::cli::commands::parse_duration_arg)]
    pub timeout: Duration,
    #[command(flatten)]
    pub log: crate::cli::LogArgs,
}

pub fn run(town: &Town, args: Args, log: &LogOptions) -> color_eyre::Result<ExitCode> {
    crate::cli::commands::warn_if_service_managed(town, "start");
    match control::start(
        town,
        &crate::cli::run_args(town, args.dry_run, log),
        args.timeout,
        |pid| {
            eprintln!(
                "Waiting for the previous daemon (PID {pid}), which is exiting, to release {}",
                town.lock_file().display()
            )
        },
    ) {
        Ok(StartOutcome::Started(pid)) => println!("Daemon started (PID {pid})"),
        Ok(StartOutcome::AlreadyRunning(pid)) => println!("Daemon already running (PID {pid})"),
        Err(
            e @ (ControlError::Exited { log_from, .. } | ControlError::Timeout { log_from, .. }),
        ) => {
            eprintln!("error: {e}");
            let lines = log_since(&town.log_file(), log_from);
            if lines.is_empty() {
                eprintln!("(the log {} says nothing more)", town.log_file().display());
            } else {
                eprintln!("from {}:", town.log_file().display());
                for line in lines {
                    eprintln!("  {line}");
                }
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The log lines written since `offset` (what this start attempt logged).
fn log_since(path: &std::path::Path, offset: u64) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return Vec::new();
    }
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .map(|line| readable(&line))
        .collect();
    let skip = lines.len().saturating_sub(40);
    lines.into_iter().skip(skip).collect()
}

/// A `--log-format json` line shown as "LEVEL message" to a person.
fn readable(line: &str) -> String {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_string();
    };
    match (value["level"].as_str(), value["fields"]["message"].as_str()) {
        (Some(level), Some(message)) => format!("{level} {message}"),
        _ => line.to_string(),
    }
}
