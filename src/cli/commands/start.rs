//! `gt daemon start`: spawn `run` detached and wait until it is up.
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

use crate::client::control::{self, ControlError, StartOutcome};
use crate::config::Config;
use crate::daemon::logging::LogOptions;
use crate::state::State;
use crate::text::{escape, escape_os};
use crate::town::Town;

/// Start the daemon in the background and wait until it is up.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Prints the daemon's PID, its town and its log. Already running: says so and
exits 0 (no second daemon is ever started), warning when the running one's
dry-run setting differs from what was asked. A start that gives up (it
failed, or --timeout passed) leaves no daemon running behind its error.
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
    /// Set by `restart`, which warned and ran the checks before stopping.
    #[arg(skip)]
    pub checked: bool,
    #[command(flatten)]
    pub log: crate::cli::LogArgs,
}

pub fn run(town: &Town, args: Args, log: &LogOptions) -> color_eyre::Result<ExitCode> {
    if !args.checked {
        crate::cli::commands::warn_if_service_managed(town, "start");
        // The checks of `gt daemon check` (a running daemon is left to say
        // "already running").
        let fatal = if crate::instance::holder(town).is_none() {
            crate::cli::commands::check::preflight(town, args.dry_run, log)
        } else {
            Vec::new()
        };
        if !fatal.is_empty() {
            crate::cli::commands::check::print_refusal(&fatal, "not starting");
            return Ok(ExitCode::FAILURE);
        }
    }
    // What this start asks for: --dry-run, or config.json's dry_run.
    let asked_dry = args.dry_run
        || Config::load(&town.config_file())
            .map(|c| c.dry_run)
            .unwrap_or(false);
    let outcome = control::start(
        town,
        &crate::cli::run_args(town, args.dry_run, log),
        args.timeout,
        |pid| {
            eprintln!(
                "Waiting for the previous daemon (PID {pid}), which is exiting, to release {}",
                escape_os(town.lock_file().as_os_str())
            )
        },
    );
    let mut out = std::io::stdout().lock();
    let (pid, verb) = match outcome {
        Ok(StartOutcome::Started(pid)) => (pid, "started"),
        Ok(StartOutcome::AlreadyRunning(pid)) => (pid, "already running"),
        Err(
            e @ (ControlError::Exited { log_from, .. } | ControlError::Timeout { log_from, .. }),
        ) => {
            eprintln!("error: {e}");
            let lines = log_since(&town.log_file(), log_from);
            let log = escape_os(town.log_file().as_os_str()).into_owned();
            if lines.is_empty() {
                eprintln!("(the log {log} says nothing more)");
            } else {
                eprintln!("from {log}:");
                for line in lines {
                    eprintln!("  {line}");
                }
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let running_dry = State::load(&town.state_file())
        .ok()
        .filter(|s| s.pid == pid)
        .map(|s| s.dry_run);
    let tag = if running_dry == Some(true) {
        " [dry run]"
    } else {
        ""
    };
    writeln!(out, "Daemon {verb} (PID {pid}){tag}")?;
    writeln!(out, "  town  {}", escape_os(town.root().as_os_str()))?;
    writeln!(out, "  log   {}", escape_os(town.log_file().as_os_str()))?;
    drop(out);
    match running_dry {
        Some(true) if !asked_dry => eprintln!(
            "warning: the running daemon is a dry run (it touches no tmux session), but a real one was asked for; \
             restart it: gt daemon stop && gt daemon start"
        ),
        Some(false) if asked_dry => eprintln!(
            "warning: the running daemon is a real one (it executes requests against tmux), but a dry run was asked for; \
             to dry-run: gt daemon stop && gt daemon start --dry-run"
        ),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The most of the log read for the excerpt: far more than the lines a
/// failed start writes.
const MAX_EXCERPT_BYTES: u64 = 1024 * 1024;

/// The log lines written since `offset` (what this start attempt logged),
/// the last 40 of the first [`MAX_EXCERPT_BYTES`].
fn log_since(path: &std::path::Path, offset: u64) -> Vec<String> {
    let Ok(Ok(mut file)) = crate::fs::open_regular(path, crate::fs::Links::Follow) else {
        return Vec::new();
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return Vec::new();
    }
    let lines: Vec<String> = BufReader::new(file.take(MAX_EXCERPT_BYTES))
        .lines()
        .map_while(Result::ok)
        .map(|line| escape(&readable(&line)).into_owned())
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
