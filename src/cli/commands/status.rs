//! `gt daemon status`: is the daemon up, and what has it done.
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anstyle::{AnsiColor, Style};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::client::history::{self, Entry, Which};
use crate::config::Config;
use crate::duration::human;
use crate::state::State;
use crate::town::Town;
use crate::{inbox, instance};

/// Show whether the daemon runs, and its counters.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Running or not is decided by the daemon's lock, never by a PID that may have
been reused. Counters count since the daemon started.

Examples:
  gt daemon status
  gt daemon status --json | jq .pid")]
pub struct Args {
    /// Print one JSON object on stdout (see README: `status --json`).
    #[arg(long)]
    pub json: bool,
}

/// The `--json` object: state.json's fields, corrected by the lock, plus
/// what only a live look can tell. Field names are stable.
#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub state: State,
    /// Seconds since `started_at`, while running.
    pub uptime_secs: Option<i64>,
    /// Seconds since `last_heartbeat`.
    pub heartbeat_age_secs: Option<i64>,
    /// The heartbeat is more than two intervals late: the daemon may hang.
    pub heartbeat_overdue: bool,
    /// Age of the oldest request waiting in inbox/.
    pub oldest_pending_secs: Option<u64>,
    /// The binary on disk is newer than the running daemon.
    pub binary_newer: bool,
    /// `shutdown.lock` exists: no pokes, cycle/restart refused.
    pub shutting_down: bool,
    pub recent_failures: Vec<Entry>,
    pub warnings: Vec<String>,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let report = report(town);
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if !report.state.running || report.state.pid == 0 {
            value["pid"] = serde_json::Value::Null;
        }
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        print_text(town, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn report(town: &Town) -> Report {
    let mut state = State::load(&town.state_file()).unwrap_or_default();
    let holder = instance::probe(town);
    state.running = holder.is_some();
    state.pid = holder.flatten().unwrap_or(0);
    if state.town_root.as_os_str().is_empty() {
        state.town_root = town.root().to_path_buf();
    }
    let (pending, oldest) = inbox::pending(&town.inbox());
    state.inbox_pending = pending;
    let now = Utc::now();
    let interval = Config::load(&town.config_file())
        .map(|c| c.heartbeat_interval)
        .unwrap_or(Duration::from_secs(60));
    let age = |t: Option<DateTime<Utc>>| t.map(|t| now.signed_duration_since(t).num_seconds());
    let heartbeat_age_secs = age(state.last_heartbeat).filter(|_| state.running);
    let overdue_after = crate::state::heartbeat_overdue_after(interval).as_secs() as i64;
    let heartbeat_overdue = heartbeat_age_secs.is_some_and(|a| a > overdue_after);
    let binary_newer = state.running && binary_newer_than(state.pid, state.started_at);
    let mut warnings = Vec::new();
    if heartbeat_overdue {
        warnings.push(format!(
            "the last heartbeat was {} ago (interval {}): the daemon may be hung; see `gt daemon logs`",
            human(Duration::from_secs(heartbeat_age_secs.unwrap_or(0) as u64)),
            human(interval)
        ));
    }
    if binary_newer {
        warnings.push("the gt binary on disk is newer than the running daemon: restart it (gt daemon stop && gt daemon start)".into());
    }
    let shutting_down = town.shutdown_lock().exists();
    if shutting_down {
        warnings.push(format!(
            "the town is shutting down ({} exists): no heartbeat pokes, cycle and restart are refused",
            town.shutdown_lock().display()
        ));
    }
    if let instance::Holder::Releasing(pid) = instance::holder_state(town) {
        warnings.push(format!(
            "the previous daemon (PID {pid}) is exiting but still holds {}; `gt daemon start` waits for it",
            town.lock_file().display()
        ));
    }
    if !state.running && pending > 0 {
        warnings.push(format!(
            "{pending} request(s) wait in the inbox but no daemon is running: gt daemon start"
        ));
    }
    Report {
        uptime_secs: age(state.started_at).filter(|_| state.running),
        heartbeat_age_secs,
        heartbeat_overdue,
        oldest_pending_secs: oldest
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs()),
        binary_newer,
        shutting_down,
        recent_failures: history::recent(town, Which::Failed, 3),
        warnings,
        state,
    }
}

/// Compares the daemon's executable's mtime with its start time.
fn binary_newer_than(pid: u32, started: Option<DateTime<Utc>>) -> bool {
    let Some(started) = started else { return false };
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let exe = exe
        .to_string_lossy()
        .trim_end_matches(" (deleted)")
        .to_string();
    std::fs::metadata(exe)
        .and_then(|m| m.modified())
        .is_ok_and(|m| DateTime::<Utc>::from(m) > started)
}

fn ago(secs: i64) -> String {
    human(Duration::from_secs(secs.max(0) as u64)) + " ago"
}

fn print_text(town: &Town, r: &Report) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    let s = &r.state;
    let (green, red, yellow, dim) = (
        Style::new().fg_color(Some(AnsiColor::Green.into())).bold(),
        Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
        Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold(),
        Style::new().dimmed(),
    );
    if s.running {
        let mode = if s.dry_run { " [dry run]" } else { "" };
        writeln!(
            out,
            "{green}●{green:#} gt daemon: {green}running{green:#} (PID {}){mode}",
            s.pid
        )?;
    } else {
        writeln!(out, "{red}○{red:#} gt daemon: {red}not running{red:#}")?;
    }
    writeln!(out, "  town       {}", town.root().display())?;
    if let (true, Some(started)) = (s.running, s.started_at) {
        writeln!(
            out,
            "  started    {} (up {})",
            started.format("%Y-%m-%d %H:%M:%S UTC"),
            human(Duration::from_secs(r.uptime_secs.unwrap_or(0).max(0) as u64))
        )?;
    }
    match (s.last_heartbeat, r.heartbeat_age_secs) {
        (Some(t), Some(age)) => {
            let style = if r.heartbeat_overdue {
                yellow
            } else {
                Style::new()
            };
            writeln!(
                out,
                "  heartbeat  {style}{} ({}){style:#}, {} so far",
                t.format("%H:%M:%S"),
                ago(age),
                s.heartbeat_count
            )?
        }
        (Some(t), None) => writeln!(
            out,
            "  heartbeat  last {}",
            t.format("%Y-%m-%d %H:%M:%S UTC")
        )?,
        (None, _) => {}
    }
    let oldest = r
        .oldest_pending_secs
        .map(|a| format!(", oldest {}", ago(a as i64)))
        .unwrap_or_default();
    writeln!(out, "  inbox      {} pending{oldest}", s.inbox_pending)?;
    let since = if s.running { "" } else { " (last run)" };
    writeln!(
        out,
        "  requests   {} processed, {} failed{since}",
        s.requests_processed, s.requests_failed
    )?;
    if !r.recent_failures.is_empty() {
        writeln!(out, "  recent failures:")?;
        for e in &r.recent_failures {
            writeln!(
                out,
                "    {dim}{}{dim:#} {} {} ({}): {}",
                e.sidecar.finished_at.format("%m-%d %H:%M:%S"),
                e.sidecar.from.as_deref().unwrap_or("?"),
                e.sidecar.action.as_deref().unwrap_or("?"),
                e.file,
                e.sidecar.error.as_deref().unwrap_or("")
            )?;
        }
        if r.recent_failures.len() == 3 {
            writeln!(out, "    {dim}(more: gt daemon requests --failed; retry one: gt daemon retry FILE){dim:#}")?;
        }
    }
    drop(out);
    for w in &r.warnings {
        let mut err = anstream::stderr().lock();
        writeln!(err, "{yellow}warning:{yellow:#} {w}")?;
    }
    Ok(())
}
