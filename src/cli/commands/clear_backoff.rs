//! `gt daemon clear-backoff`: reset the crash-loop guard of one agent, or
//! list who it holds.
use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use color_eyre::eyre::bail;

use crate::cli::table::Table;
use crate::config::Config;
use crate::crash_loop::CrashLoopGuard;
use crate::duration::exact;
use crate::request::Agent;
use crate::text::{escape, time, Zone};
use crate::town::Town;

/// Reset the crash-loop guard of an agent (--list: who it holds).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Effective for every request filed after this command returns, also while the
daemon runs (the guard's memory is daemon/restart_state.json; a dry-run
daemon's is restart_state.dry-run.json, and both are cleared). The agent may
be named as in a request's `from` or by its tmux session, as the guard's
refusals and `gt daemon status` print it.

Examples:
  gt daemon clear-backoff --list
  gt daemon clear-backoff mayor
  gt daemon clear-backoff gt-gastown-witness")]
pub struct Args {
    /// The agent, as in a request's `from` (gastown/witness) or as its
    /// session (gt-gastown-witness).
    #[arg(
        value_name = "AGENT",
        required_unless_present = "list",
        value_parser = crate::cli::commands::completions::AgentName,
        hide_possible_values = true
    )]
    pub agent: Option<String>,
    /// List the sessions the guard remembers: their restarts within
    /// restart_window, and who is held until when.
    #[arg(long, conflicts_with = "agent")]
    pub list: bool,
    /// With --list: show times in local time ($TZ) instead of UTC.
    #[arg(long, requires = "list")]
    pub local: bool,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let config = Config::load(&town.config_file())?;
    match args.agent {
        None => list(town, &config, Zone::local_if(args.local))?,
        Some(agent) => clear(town, &agent)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `--list`: every session the guards remember (a dry run's tagged), with
/// its restarts and whether it is held.
fn list(town: &Town, config: &Config, zone: Zone) -> color_eyre::Result<()> {
    let guards = [
        (
            "",
            CrashLoopGuard::new(town, config.max_restarts, config.restart_window),
        ),
        (
            " (dry run)",
            CrashLoopGuard::dry_run(town, config.max_restarts, config.restart_window),
        ),
    ];
    let now = Utc::now();
    let mut rows = Vec::new();
    for (tag, guard) in &guards {
        for r in guard.remembered(now)? {
            let held = match (r.held, r.held_until) {
                (true, Some(until)) => format!("held until {}", time(until, zone)),
                (true, None) => "held".into(),
                (false, _) => "-".into(),
            };
            rows.push([format!("{}{tag}", r.session), r.restarts.to_string(), held]);
        }
    }
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        writeln!(
            out,
            "No session has restarts within restart_window ({}); nobody is held",
            exact(config.restart_window)
        )?;
        return Ok(());
    }
    let header = ["SESSION", "RESTARTS", "HELD"];
    let table = Table::new(&header).fitting(&rows);
    writeln!(out, "{}", table.line(&header))?;
    for row in &rows {
        writeln!(out, "{}", table.line(row))?;
    }
    writeln!(
        out,
        "(max_restarts {} within restart_window {})",
        config.max_restarts,
        exact(config.restart_window)
    )?;
    Ok(())
}

/// Clears the guard of `agent` (and supervision's backoff or quarantine
/// of it), saying what there was to clear.
fn clear(town: &Town, agent: &str) -> color_eyre::Result<()> {
    let sessions = sessions(agent)?;
    let mut out = std::io::stdout().lock();
    std::fs::create_dir_all(town.daemon_dir())?;
    let mut cleared = false;
    for session in &sessions {
        let had = crate::crash_loop::clear(town, session)?;
        for (tag, had) in [("", had.real), (" (dry run)", had.dry_run)] {
            if had {
                cleared = true;
                writeln!(out, "Cleared the crash-loop guard of {session}{tag}")?;
            }
        }
    }
    if !cleared {
        writeln!(
            out,
            "{} had no recorded restarts; nothing to clear",
            sessions.join(" and ")
        )?;
    }
    // Supervision's backoff and quarantine end too.
    if town.supervise_file().exists() {
        for session in &sessions {
            if crate::supervision::resume(town, Some(session), "clear-backoff")? {
                writeln!(
                    out,
                    "Ended supervision's backoff or quarantine of {session}"
                )?;
            }
        }
    }
    Ok(())
}

/// The sessions `agent` names: as an agent name, or a session name; some
/// text reads as both (`gt-x-witness` is the session of rig x, and the
/// agent of rig gt-x), and both sessions are cleared then.
fn sessions(agent: &str) -> color_eyre::Result<Vec<String>> {
    let mut sessions: Vec<String> = Vec::new();
    let as_agent = Agent::parse(agent);
    if let Ok(a) = &as_agent {
        sessions.push(a.session());
    }
    if let Some(a) = Agent::from_session(agent) {
        if !sessions.contains(&a.session()) {
            sessions.push(a.session());
        }
    }
    if sessions.is_empty() {
        let why = as_agent.err().map(|e| e.to_string()).unwrap_or_default();
        bail!(
            "{}\nhint: name the agent as a request's `from` does (mayor, gastown/witness) or by its session (gt-mayor)",
            escape(&why)
        );
    }
    Ok(sessions)
}
