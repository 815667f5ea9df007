//! `gt daemon status` for a person: a headline, the facts, then lists
//! (requests in hand, agents, recent failures, supervision); warnings go to
//! stderr.
use std::io::{self, Write};
use std::time::Duration;

use anstyle::{AnsiColor, Color, Style};
use chrono::{DateTime, Utc};

use super::report::{AgentStatus, Report, Supervision};
use crate::cli::table::{clip, Table};
use crate::duration::{exact, human};
use crate::process::agent::Reason;
use crate::text::{escape, escape_os, mebibytes, time, Zone};
use crate::town::Town;

const GREEN: Style = Style::new()
    .fg_color(Some(Color::Ansi(AnsiColor::Green)))
    .bold();
const RED: Style = Style::new()
    .fg_color(Some(Color::Ansi(AnsiColor::Red)))
    .bold();
const YELLOW: Style = Style::new()
    .fg_color(Some(Color::Ansi(AnsiColor::Yellow)))
    .bold();
const DIM: Style = Style::new().dimmed();
const BOLD: Style = Style::new().bold();

/// The widest a request's agent or action is shown in a list.
const CELL_MAX: usize = 48;

pub(super) fn print(town: &Town, r: &Report, zone: Zone) -> io::Result<()> {
    let mut out = anstream::stdout().lock();
    headline(&mut out, r, zone)?;
    facts(&mut out, town, r, zone)?;
    in_progress(&mut out, r)?;
    agents(&mut out, r, zone)?;
    recent_failures(&mut out, r, zone)?;
    leftovers(&mut out, r)?;
    if let Some(s) = &r.supervision {
        writeln!(out, "  supervision:")?;
        for line in supervision_lines(s, zone) {
            writeln!(out, "    {line}")?;
        }
    }
    if r.agents.iter().any(|a| a.held) {
        writeln!(
            out,
            "  {BOLD}held agents are refused cycle/restart until the time shown, or until `gt daemon clear-backoff SESSION`{BOLD:#}"
        )?;
    }
    drop(out);
    for w in &r.warnings {
        let mut err = anstream::stderr().lock();
        writeln!(err, "{YELLOW}warning:{YELLOW:#} {w}")?;
    }
    Ok(())
}

/// Running, degraded, crashed or not running, with the PID.
fn headline(out: &mut impl Write, r: &Report, zone: Zone) -> io::Result<()> {
    let s = &r.state;
    let mode = if s.running && s.dry_run {
        " [dry run]"
    } else {
        ""
    };
    match r.status {
        "running" => writeln!(
            out,
            "{GREEN}●{GREEN:#} gt daemon: {GREEN}running{GREEN:#} (PID {}){mode}",
            s.pid
        ),
        "degraded" => writeln!(
            out,
            "{YELLOW}●{YELLOW:#} gt daemon: {YELLOW}degraded{YELLOW:#} (PID {}){mode}: {}",
            s.pid,
            r.degraded.join(", ")
        ),
        "crashed" => {
            let when = r
                .last_alive_at
                .map(|t| format!("; last alive {}, {}", time(t, zone), since(t)))
                .unwrap_or_default();
            writeln!(
                out,
                "{RED}✗{RED:#} gt daemon: {RED}crashed{RED:#}, not running (PID {} died without stopping{when})",
                r.last_pid.unwrap_or(0)
            )
        }
        _ => {
            let when = r
                .last_alive_at
                .filter(|_| s.started_at.is_some())
                .map(|t| format!(" (stopped {})", time(t, zone)))
                .unwrap_or_default();
            writeln!(
                out,
                "{RED}○{RED:#} gt daemon: {RED}not running{RED:#}{when}"
            )
        }
    }
}

/// One labelled line each: town, started, heartbeat, settings, unit,
/// inbox, requests.
fn facts(out: &mut impl Write, town: &Town, r: &Report, zone: Zone) -> io::Result<()> {
    let s = &r.state;
    writeln!(
        out,
        "  town       {}{}",
        escape_os(town.root().as_os_str()),
        match town.origin() {
            crate::town::Origin::Env => " (from $GT_TOWN_ROOT)",
            _ => "",
        }
    )?;
    if let (true, Some(started)) = (s.running, s.started_at) {
        writeln!(
            out,
            "  started    {} (up {})",
            time(started, zone),
            human(Duration::from_secs(r.uptime_secs.unwrap_or(0).max(0) as u64))
        )?;
    }
    heartbeat(out, r, zone)?;
    let c = &r.config;
    writeln!(
        out,
        "  settings   inbox watched by {}, tmux {}{}",
        c.watch_mode,
        c.tmux_socket
            .as_deref()
            .map(|s| format!("socket {}", escape(s)))
            .unwrap_or_else(|| "default server".into()),
        if c.dry_run { ", dry run" } else { "" }
    )?;
    if let Some(unit) = &r.unit {
        writeln!(
            out,
            "  unit       {} ({}, {})",
            escape(&unit.name),
            unit.manager,
            if unit.active { "active" } else { "inactive" }
        )?;
    }
    let oldest = r
        .oldest_pending_secs
        .map(|a| format!(", oldest {}", ago(a as i64)))
        .unwrap_or_default();
    writeln!(out, "  inbox      {} pending{oldest}", s.inbox_pending)?;
    let last_run = if s.running { "" } else { " (last run)" };
    writeln!(
        out,
        "  requests   {} processed, {} failed{last_run}",
        s.requests_processed, s.requests_failed
    )
}

fn heartbeat(out: &mut impl Write, r: &Report, zone: Zone) -> io::Result<()> {
    let s = &r.state;
    let every = exact(Duration::from_secs(r.config.heartbeat_interval_secs));
    match (s.last_heartbeat, r.heartbeat_age_secs) {
        (Some(t), Some(age)) => {
            let style = if r.heartbeat_overdue {
                YELLOW
            } else {
                Style::new()
            };
            writeln!(
                out,
                "  heartbeat  {style}{} ({}){style:#}, every {every}, {} so far",
                time(t, zone),
                ago(age),
                s.heartbeat_count
            )
        }
        (Some(t), None) => writeln!(out, "  heartbeat  last {}, every {every}", time(t, zone)),
        (None, _) => writeln!(out, "  heartbeat  every {every}"),
    }
}

/// The requests claimed and being executed.
fn in_progress(out: &mut impl Write, r: &Report) -> io::Result<()> {
    if r.in_progress.is_empty() {
        return Ok(());
    }
    writeln!(out, "  in progress:")?;
    for p in &r.in_progress {
        let claimed = p
            .claimed_at
            .map(|t| format!(", claimed {}", since(t)))
            .unwrap_or_default();
        writeln!(
            out,
            "    {} {} ({}{claimed})",
            clip(&escape(p.from.as_deref().unwrap_or("?")), CELL_MAX),
            clip(&escape(p.action.as_deref().unwrap_or("?")), CELL_MAX),
            escape(&p.file)
        )?;
    }
    Ok(())
}

/// The most agents the text lists: the crash-loop guard remembers up to a
/// thousand sessions, and a screen of them hides the rest of the report.
const AGENT_ROWS: usize = 50;

/// The agents table; held agents in red, stalled ones and those waiting
/// for a person in yellow. Past [`AGENT_ROWS`], the agents with a session
/// or a hold come first, and a line says how many more `--json` lists.
fn agents(out: &mut impl Write, r: &Report, zone: Zone) -> io::Result<()> {
    use crate::state::Activity;
    if r.agents.is_empty() {
        return Ok(());
    }
    writeln!(out, "  agents:")?;
    let mut shown: Vec<&AgentStatus> = r.agents.iter().collect();
    if shown.len() > AGENT_ROWS {
        // Stable: by session name within each group.
        shown.sort_by_key(|a| !(a.alive == Some(true) || a.held));
        shown.truncate(AGENT_ROWS);
    }
    let rows: Vec<[String; 6]> = shown.iter().map(|a| agent_row(a, zone)).collect();
    let header = [
        "SESSION",
        "STATE",
        "PID",
        "UP",
        "LAST POKE",
        "CRASH-LOOP GUARD",
    ];
    let table = Table::new(&header).indent(4).fitting(&rows);
    writeln!(out, "{DIM}{}{DIM:#}", table.line(&header))?;
    for (row, agent) in rows.iter().zip(&shown) {
        let text = table.line(row);
        if agent.held {
            writeln!(out, "{RED}{text}{RED:#}")?;
        } else if matches!(
            agent.state,
            Some(Activity::Stalled | Activity::WaitingForPerson)
        ) {
            writeln!(out, "{YELLOW}{text}{YELLOW:#}")?;
        } else {
            writeln!(out, "{text}")?;
        }
    }
    let more = r.agents.len() - shown.len();
    if more > 0 {
        writeln!(
            out,
            "    … and {more} more (gt daemon status --json lists every one)"
        )?;
    }
    Ok(())
}

/// The last three failures, with a hint when there may be more.
fn recent_failures(out: &mut impl Write, r: &Report, zone: Zone) -> io::Result<()> {
    if r.recent_failures.is_empty() {
        return Ok(());
    }
    writeln!(out, "  recent failures:")?;
    for e in &r.recent_failures {
        writeln!(
            out,
            "    {DIM}{}{DIM:#} {} {} ({}): {}",
            time(e.sidecar.finished_at, zone),
            clip(&escape(e.sidecar.from.as_deref().unwrap_or("?")), CELL_MAX),
            clip(
                &escape(e.sidecar.action.as_deref().unwrap_or("?")),
                CELL_MAX
            ),
            escape(&e.file),
            escape(e.sidecar.error.as_deref().unwrap_or(""))
        )?;
    }
    if r.recent_failures.len() == 3 {
        writeln!(
            out,
            "    {DIM}(more: gt daemon requests --failed; retry one: gt daemon retry FILE){DIM:#}"
        )?;
    }
    Ok(())
}

/// Processes of the town's agents in no live pane, one a line.
fn leftovers(out: &mut impl Write, r: &Report) -> io::Result<()> {
    let Some(l) = r.leftovers.as_ref().filter(|l| l.count > 0) else {
        return Ok(());
    };
    writeln!(
        out,
        "  {YELLOW}leftover processes{YELLOW:#} ({}, {} resident):",
        l.count,
        mebibytes(l.resident_bytes)
    )?;
    for p in &l.processes {
        let why = Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == p.reason)
            .map_or(p.reason, Reason::describe);
        writeln!(
            out,
            "    PID {} {} ({}): {why}, {}",
            p.pid,
            escape(&p.agent),
            escape(&p.session),
            mebibytes(p.resident_bytes)
        )?;
    }
    if l.count > l.processes.len() {
        writeln!(
            out,
            "    {DIM}and {} more{DIM:#}",
            l.count - l.processes.len()
        )?;
    }
    Ok(())
}

/// One line per supervised agent, in words.
fn supervision_lines(s: &Supervision, zone: Zone) -> Vec<String> {
    use crate::supervision::AgentState;
    let mut lines = Vec::new();
    if let Some(p) = &s.paused {
        // The reason names the way out when the daemon wrote it.
        let hint = if p.why.contains("supervise resume") {
            ""
        } else {
            " (gt daemon supervise resume)"
        };
        lines.push(format!(
            "PAUSED until {}: {}{hint}",
            time(p.until, zone),
            escape(&p.why)
        ));
    }
    for (session, state) in &s.agents {
        let what = match state {
            AgentState::Unknown => "not looked at yet".to_string(),
            AgentState::Running { since } => {
                format!("running since {}", time(*since, zone))
            }
            AgentState::Backoff { until } => {
                format!("backoff until {}", time(*until, zone))
            }
            AgentState::Quarantined { until, why } => {
                format!("quarantined until {} ({})", time(*until, zone), escape(why))
            }
            AgentState::StoppedOnRequest { since } => format!(
                "stopped on request since {} (gt daemon supervise resume {session})",
                time(*since, zone)
            ),
            AgentState::Interrupted { since } => format!(
                "restart cut short by a daemon stop at {} (restarted at the next look)",
                time(*since, zone)
            ),
        };
        lines.push(format!("{session}: {what}"));
    }
    lines
}

/// One row of the agents table: session, state and for how long, pane
/// PID, uptime, last poke, crash-loop guard.
fn agent_row(a: &AgentStatus, zone: Zone) -> [String; 6] {
    let pid = match (a.alive, a.pane_pid) {
        (Some(false), _) => "no session".to_string(),
        (_, Some(pid)) if a.pane_dead => format!("{pid} (exited)"),
        (_, Some(pid)) => pid.to_string(),
        _ => "-".into(),
    };
    let up = a
        .started_at
        .filter(|_| a.alive == Some(true))
        .map(|t| {
            human(
                Utc::now()
                    .signed_duration_since(t)
                    .to_std()
                    .unwrap_or_default(),
            )
        })
        .unwrap_or_else(|| "-".into());
    let poke = a.last_poke.map(since).unwrap_or_else(|| "-".into());
    let guard = match (a.restarts, a.held, a.held_until) {
        (0, _, _) => "-".to_string(),
        (n, true, Some(until)) => format!("held until {} ({n} restarts)", time(until, zone)),
        (n, true, None) => format!("held ({n} restarts)"),
        (1, false, _) => "1 restart".into(),
        (n, false, _) => format!("{n} restarts"),
    };
    let state = match (a.state, a.state_since) {
        (Some(state), Some(since)) => format!(
            "{} {}",
            state.words(),
            human(
                Utc::now()
                    .signed_duration_since(since)
                    .to_std()
                    .unwrap_or_default()
            )
        ),
        _ => "-".into(),
    };
    [a.session.clone(), state, pid, up, poke, guard]
}

fn ago(secs: i64) -> String {
    human(Duration::from_secs(secs.max(0) as u64)) + " ago"
}

fn since(t: DateTime<Utc>) -> String {
    ago(Utc::now().signed_duration_since(t).num_seconds())
}
