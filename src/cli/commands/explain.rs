//! `gt daemon explain`: what the daemon sees of one agent (its state, and
//! the evidence for it), and what supervision decided about it, and why.
use std::process::ExitCode;

use color_eyre::eyre::eyre;

use crate::cli::table::Table;
use crate::config::Config;
use crate::crash_loop::CrashLoopGuard;
use crate::outcome::{Outcome, CAPTURE_SUFFIX};
use crate::request::Agent;
use crate::state::State;
use crate::supervision::{self, AgentState};
use crate::text::escape;
use crate::town::Town;

/// Show an agent's state and its evidence, and supervision's decisions about it.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
First what the daemon sees of the agent (look_at_agents): its state
(working, idle, stalled, waiting for a person, dead) and since when, when
its screen last moved, its last pokes and what became of each (delivered,
resubmitted, unconfirmed; answered or not), and the line of its screen
that asks a person something.

Supervision is on when daemon/config.json lists agents under `supervise`.
Each decision shows when it was made, what was decided (alive, restart,
backoff, quarantine, paused, stopped, started, interrupted, resume) and why;
a restart of a dead agent names the file holding the dead pane's last lines.
The restarts after a crash are those the crash-loop guard counts
(daemon/restart_state.json), by which supervision counts deaths.

Examples:
  gt daemon explain mayor
  gt daemon explain gastown/witness")]
pub struct Args {
    /// The agent, as in a request's `from` (or its session, gt-mayor).
    pub agent: String,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let name = args
        .agent
        .strip_prefix("gt-")
        .map_or(args.agent.clone(), |s| {
            // gt-mayor, gt-gastown-witness: the session name the logs print.
            match s.rsplit_once('-') {
                Some((rig, role @ ("witness" | "refinery"))) => format!("{rig}/{role}"),
                _ => s.to_string(),
            }
        });
    let agent = Agent::parse(&name).map_err(|e| eyre!("{e}"))?;
    let session = agent.session();
    liveness(town, &session);
    let memory = supervision::load(town).map_err(|e| {
        eyre!(
            "cannot read supervision's memory: {}",
            crate::text::escape(&e.to_string())
        )
    })?;
    if let Some(p) = &memory.paused {
        println!(
            "Supervision is paused until {} ({})",
            when(&p.until),
            crate::text::escape(&p.why)
        );
    }
    let Some(record) = memory.agents.get(&session) else {
        println!("Supervision has made no decision about {session}.");
        return Ok(ExitCode::SUCCESS);
    };
    let state = match &record.state {
        AgentState::Unknown => "not yet looked at".to_string(),
        AgentState::Running { since } => format!("running since {}", when(since)),
        AgentState::Backoff { until } => format!("backing off until {}", when(until)),
        AgentState::Quarantined { until, why } => {
            format!(
                "quarantined until {} ({})",
                when(until),
                crate::text::escape(why)
            )
        }
        AgentState::StoppedOnRequest { since } => {
            format!("stopped on request since {} (not restarted)", when(since))
        }
        AgentState::Interrupted { since } => format!(
            "its restart was cut short by a daemon stop at {} (restarted at the next look)",
            when(since)
        ),
    };
    println!("{session}: {state}");
    // Supervision counts deaths by the restarts that follow them, in the
    // crash-loop guard's record of restarts.
    let config = Config::load(&town.config_file()).unwrap_or_default();
    let guard = CrashLoopGuard::new(town, config.max_restarts, config.restart_window);
    let after_crash = guard
        .remembered(chrono::Utc::now())?
        .into_iter()
        .find(|r| r.session == session)
        .map_or(0, |r| r.after_crash);
    println!("Restarts after a crash within restart_window: {after_crash}");
    // Time, what was decided, why: a table so that the reasons line up.
    let rows: Vec<[String; 3]> = record
        .decisions
        .iter()
        .map(|d| {
            let pane = if d.capture.is_some() {
                " [pane captured]"
            } else {
                ""
            };
            [
                when(&d.at),
                crate::text::escape(&d.what).into_owned(),
                format!("{}{pane}", crate::text::escape(&d.why)),
            ]
        })
        .collect();
    let table = Table::new(&["", "", ""]).indent(2).fitting(&rows);
    for row in &rows {
        println!("{}", table.line(row));
    }
    let captures = capture_files(town, &session);
    if !captures.is_empty() {
        println!("Last lines of dead panes, newest first:");
        for path in captures.iter().take(5) {
            println!("  {}", crate::text::escape_os(path.as_os_str()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the daemon's last look saw of the agent (`state.json`).
fn liveness(town: &Town, session: &str) {
    let state = State::load(&town.state_file()).unwrap_or_default();
    let Some(seen) = state.liveness.get(session) else {
        println!("The daemon has not looked at {session}: it looks at the agents it supervises, and at those it pokes once it has seen their session (look_at_agents on).");
        return;
    };
    let now = chrono::Utc::now();
    let last = if state.running {
        ""
    } else {
        " (the daemon is not running: as it last saw it)"
    };
    println!(
        "{session} is {} (for {}, since {}){last}",
        seen.state.words(),
        ago(now, seen.since),
        when(&seen.since)
    );
    let pane = seen.pane.as_deref().map(escape).unwrap_or_default();
    println!("  pane {pane} watched since {}", when(&seen.watched_since));
    match seen.screen_moved_at {
        Some(t) => println!("  its screen last moved {} ({} ago)", when(&t), ago(now, t)),
        None => println!("  its screen has not moved since then"),
    }
    println!("  pokes unanswered in a row: {}", seen.unanswered_pokes);
    if let Some(line) = &seen.prompt {
        println!("  it asks a person: {}", escape(line));
    }
    if seen.pokes.is_empty() {
        return;
    }
    println!("  its last pokes, what became of the text, and whether it answered:");
    let rows: Vec<[String; 3]> = seen
        .pokes
        .iter()
        .rev()
        .map(|p| {
            let answer = match p.answered_at {
                Some(at) => format!("{} {}", p.answer.as_str(), when(&at)),
                None => p.answer.as_str().to_string(),
            };
            [when(&p.at), p.delivery.as_str().to_string(), answer]
        })
        .collect();
    let table = Table::new(&["", "", ""]).indent(4).fitting(&rows);
    for row in &rows {
        println!("{}", table.line(row));
    }
}

fn ago(now: chrono::DateTime<chrono::Utc>, t: chrono::DateTime<chrono::Utc>) -> String {
    crate::duration::human(now.signed_duration_since(t).to_std().unwrap_or_default())
}

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    crate::text::time(*t, crate::text::Zone::Utc)
}

/// The captures saved beside the records of this session's supervised
/// restarts, newest first (their names start with the time).
fn capture_files(town: &Town, session: &str) -> Vec<std::path::PathBuf> {
    let tail = format!("-daemon-{session}.json{CAPTURE_SUFFIX}");
    let mut found: Vec<std::path::PathBuf> = Outcome::ALL
        .into_iter()
        .flat_map(|o| {
            let dir = o.dir(town);
            std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(&tail))
                .map(|n| dir.join(n))
                .collect::<Vec<_>>()
        })
        .collect();
    found.sort_by(|a, b| b.file_name().cmp(&a.file_name()));
    found
}
