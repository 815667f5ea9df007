//! `gt daemon status`: is the daemon up, is it doing its job, and what is
//! it doing: agents, requests in hand, the crash-loop guard, settings.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anstyle::{AnsiColor, Style};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::client::history::{self, Entry, Which};
use crate::config::{Config, WatchMode};
use crate::crash_loop::{CrashLoopGuard, Remembered};
use crate::duration::{exact, human};
use crate::request::Agent;
use crate::state::State;
use crate::text::{clip, escape, escape_os, pad, time, Zone};
use crate::tmux::Tmux;
use crate::town::Town;
use crate::{inbox, instance, service};

/// Exit status: running, and doing its job.
pub const RUNNING: u8 = 0;
/// Exit status: not running (stopped, or crashed), as `systemctl status`
/// and LSB init scripts say it.
pub const NOT_RUNNING: u8 = 3;
/// Exit status: running but degraded (heartbeat overdue, or outcomes that
/// cannot be filed).
pub const DEGRADED: u8 = 4;

/// How long status waits for tmux to list the agents' sessions.
const TMUX_PATIENCE: Duration = Duration::from_secs(2);

/// Show whether the daemon runs, whether it does its job, and what it is doing.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Running or not is decided by the daemon's lock, never by a PID that may have
been reused. A daemon that state.json says is running but that holds no lock
died without stopping: it is shown as crashed, with when it was last alive.
Counters count since the daemon started.

Exit status: 0 running, 3 not running (stopped or crashed), 4 running but
degraded (heartbeat overdue, or outcomes that cannot be filed).

Examples:
  gt daemon status
  gt daemon status --json | jq .agents
  gt daemon status >/dev/null || echo \"not healthy: $?\"")]
pub struct Args {
    /// Print one JSON object on stdout (see README: `status --json`).
    #[arg(long)]
    pub json: bool,
    /// Show times in local time ($TZ) instead of UTC.
    #[arg(long)]
    pub local: bool,
}

/// The `--json` object: state.json's fields, corrected by the lock, plus
/// what only a live look can tell. Field names are stable.
#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub state: State,
    /// `running`, `degraded`, `stopped` or `crashed`.
    pub status: &'static str,
    /// Why it is degraded, in a few words (`warnings` explains); empty
    /// unless `status` is `degraded`.
    pub degraded: Vec<String>,
    /// state.json says running, but no process holds the lock: the daemon
    /// died without stopping.
    pub crashed: bool,
    /// When state.json was last written: for a crashed daemon, the last
    /// sign of life; for a stopped one, when it stopped.
    pub last_alive_at: Option<DateTime<Utc>>,
    /// The PID state.json records for a daemon that is not running (the
    /// crashed one's, say); `pid` is null then.
    pub last_pid: Option<u32>,
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
    /// The settings that matter: the running daemon's, else config.json's.
    pub config: Settings,
    /// The service unit installed for this town, if any.
    pub unit: Option<Unit>,
    /// Requests claimed and being executed.
    pub in_progress: Vec<InProgress>,
    /// Agents known from tmux, the crash-loop guard and the heartbeat.
    pub agents: Vec<AgentStatus>,
    /// Sessions the crash-loop guard remembers, held ones first.
    pub guard: Vec<Guarded>,
    /// Supervision (config `supervise`): whether it is paused, and each
    /// supervised agent's state; null when supervision is off.
    pub supervision: Option<Supervision>,
    pub recent_failures: Vec<Entry>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub heartbeat_interval_secs: u64,
    /// `notify` or `poll`; for a running daemon, what it really does.
    pub watch_mode: String,
    /// `null`: tmux's default server.
    pub tmux_socket: Option<String>,
    pub dry_run: bool,
    pub max_restarts: u32,
    pub restart_window_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct Unit {
    pub name: String,
    pub path: String,
    /// `systemd` or `launchd`.
    pub manager: &'static str,
    pub active: bool,
}

#[derive(Debug, Serialize)]
pub struct InProgress {
    /// The file name in processing/ (escaped when it is not UTF-8).
    pub file: String,
    pub from: Option<String>,
    pub action: Option<String>,
    /// When it was claimed (renamed into processing/).
    pub claimed_at: Option<DateTime<Utc>>,
}

/// A session the crash-loop guard remembers.
#[derive(Debug, Serialize)]
pub struct Guarded {
    pub session: String,
    /// Restarts within `restart_window`.
    pub restarts: usize,
    /// It is refused cycle/restart now.
    pub held: bool,
    /// Until when.
    pub held_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct AgentStatus {
    pub session: String,
    /// As a request's `from` names it.
    pub agent: String,
    /// The session exists (`null`: tmux could not be asked).
    pub alive: Option<bool>,
    /// The pane's process has exited (a pane kept after its process).
    pub pane_dead: bool,
    pub pane_pid: Option<u32>,
    /// When the session was created.
    pub started_at: Option<DateTime<Utc>>,
    pub last_poke: Option<DateTime<Utc>>,
    /// Restarts within the crash-loop guard's window.
    pub restarts: usize,
    pub held: bool,
    pub held_until: Option<DateTime<Utc>>,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let report = report(town);
    let code = match report.status {
        "running" => RUNNING,
        "degraded" => DEGRADED,
        _ => NOT_RUNNING,
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if !report.state.running || report.state.pid == 0 {
            value["pid"] = serde_json::Value::Null;
        }
        crate::text::write_json(&mut std::io::stdout().lock(), &value)?;
    } else {
        print_text(town, &report, Zone::local_if(args.local))?;
    }
    Ok(ExitCode::from(code))
}

pub fn report(town: &Town) -> Report {
    let state_path = town.state_file();
    let mut state = State::load(&state_path).unwrap_or_default();
    let last_alive_at = std::fs::metadata(&state_path)
        .and_then(|m| m.modified())
        .ok()
        .map(DateTime::<Utc>::from);
    let (said_running, recorded_pid) = (state.running, state.pid);
    let holder = instance::probe(town);
    state.running = holder.is_some();
    state.pid = holder.flatten().unwrap_or(0);
    let releasing = matches!(instance::holder_state(town), instance::Holder::Releasing(_));
    // A daemon that stops cleanly says so in state.json before it lets go
    // of the lock; one still "running" there without holding it (or only
    // as a dying process, killed) never got to.
    let crashed = said_running && !state.running;
    if state.town_root.as_os_str().is_empty() {
        state.town_root = town.root().to_path_buf();
    }
    let (pending, oldest) = inbox::pending(&town.inbox());
    state.inbox_pending = pending;
    let now = Utc::now();
    let config = Config::load(&town.config_file()).unwrap_or_default();
    let settings = settings(&state, &config);
    let interval = Duration::from_secs(settings.heartbeat_interval_secs);
    let age = |t: Option<DateTime<Utc>>| t.map(|t| now.signed_duration_since(t).num_seconds());
    let heartbeat_age_secs = age(state.last_heartbeat).filter(|_| state.running);
    let overdue_after = crate::state::heartbeat_overdue_after(interval).as_secs() as i64;
    let heartbeat_overdue = heartbeat_age_secs.is_some_and(|a| a > overdue_after);
    let binary_newer = state.running && binary_newer_than(state.pid, state.started_at);
    let mut warnings = Vec::new();
    let mut degraded = Vec::new();
    if heartbeat_overdue {
        degraded.push("heartbeat overdue".to_string());
        warnings.push(format!(
            "the last heartbeat was {} ago (interval {}): the daemon may be hung; see `gt daemon logs`",
            human(Duration::from_secs(heartbeat_age_secs.unwrap_or(0) as u64)),
            exact(interval)
        ));
    }
    if state.running && state.outcomes_unfiled > 0 {
        degraded.push("outcomes cannot be filed".to_string());
        warnings.push(format!(
            "{} executed request(s) cannot be filed: {}; they are kept and tried again",
            state.outcomes_unfiled,
            escape(state.filing_error.as_deref().unwrap_or("unknown error"))
        ));
    }
    if binary_newer {
        warnings.push("the gt binary on disk is newer than the running daemon: restart it (gt daemon stop && gt daemon start)".into());
    }
    let shutting_down = town.shutdown_lock().exists();
    if shutting_down {
        warnings.push(format!(
            "the town is shutting down ({} exists): no heartbeat pokes, cycle and restart are refused",
            escape_os(town.shutdown_lock().as_os_str())
        ));
    }
    if releasing {
        if let instance::Holder::Releasing(pid) = instance::holder_state(town) {
            warnings.push(format!(
                "the previous daemon (PID {pid}) is exiting but still holds {}; `gt daemon start` waits for it",
                escape_os(town.lock_file().as_os_str())
            ));
        }
    }
    if !state.running && pending > 0 {
        warnings.push(format!(
            "{pending} request(s) wait in the inbox but no daemon is running: gt daemon start"
        ));
    }
    let dry_run = settings.dry_run;
    let guard = if dry_run {
        CrashLoopGuard::dry_run(town, config.max_restarts, config.restart_window)
    } else {
        CrashLoopGuard::new(town, config.max_restarts, config.restart_window)
    }
    .remembered(now)
    .unwrap_or_else(|e| {
        warnings.push(format!("cannot read the crash-loop guard's memory: {e}"));
        Vec::new()
    });
    let tmux = Tmux::new(settings.tmux_socket.clone(), TMUX_PATIENCE);
    let panes = tmux
        .panes()
        .map_err(|e| warnings.push(format!("cannot ask tmux about the agents: {e}")))
        .ok();
    let agents = agents(panes.as_deref(), &guard, &state.last_pokes);
    let status = match (state.running, degraded.is_empty(), crashed) {
        (true, true, _) => "running",
        (true, false, _) => "degraded",
        (false, _, true) => "crashed",
        (false, _, false) => "stopped",
    };
    Report {
        status,
        degraded,
        crashed,
        last_alive_at,
        last_pid: (!state.running && recorded_pid != 0).then_some(recorded_pid),
        uptime_secs: age(state.started_at).filter(|_| state.running),
        heartbeat_age_secs,
        heartbeat_overdue,
        oldest_pending_secs: oldest
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs()),
        binary_newer,
        shutting_down,
        config: settings,
        unit: service::find_installed(town).map(|u| Unit {
            active: u.is_active(),
            manager: match u.flavour {
                service::Flavour::Systemd => "systemd",
                service::Flavour::Launchd => "launchd",
            },
            path: u.path.to_string_lossy().into_owned(),
            name: u.name,
        }),
        in_progress: in_progress(town),
        agents,
        guard: guard
            .into_iter()
            .map(|g| Guarded {
                session: g.session,
                restarts: g.restarts,
                held: g.held,
                held_until: g.held_until,
            })
            .collect(),
        supervision: supervision(town),
        recent_failures: history::recent(town, Which::Failed, 3),
        warnings,
        state,
    }
}

/// What supervision said of itself (daemon/supervise.json), when the
/// config asks for it.
#[derive(Debug, Serialize)]
pub struct Supervision {
    pub paused: Option<crate::supervision::Paused>,
    /// Session → state (`running`, `backoff`, `quarantined`,
    /// `stopped_on_request`) with its times and reason.
    pub agents: std::collections::BTreeMap<String, crate::supervision::AgentState>,
}

fn supervision(town: &Town) -> Option<Supervision> {
    let on = Config::load(&town.config_file()).is_ok_and(|c| !c.supervise.is_empty());
    if !on {
        return None;
    }
    let memory = crate::supervision::load(town);
    Some(Supervision {
        paused: memory.paused,
        agents: memory
            .agents
            .into_iter()
            .map(|(session, a)| (session, a.state))
            .collect(),
    })
}

/// One line per supervised agent, in words.
fn supervision_lines(s: &Supervision, zone: Zone) -> Vec<String> {
    use crate::supervision::AgentState;
    let mut lines = Vec::new();
    if let Some(p) = &s.paused {
        lines.push(format!(
            "PAUSED until {}: {} (gt daemon supervise resume)",
            crate::text::time(p.until, zone),
            escape(&p.why)
        ));
    }
    for (session, state) in &s.agents {
        let what = match state {
            AgentState::Unknown => "not looked at yet".to_string(),
            AgentState::Running { since } => {
                format!("running since {}", crate::text::time(*since, zone))
            }
            AgentState::Backoff { until } => {
                format!("backoff until {}", crate::text::time(*until, zone))
            }
            AgentState::Quarantined { until, why } => format!(
                "quarantined until {} ({})",
                crate::text::time(*until, zone),
                escape(why)
            ),
            AgentState::StoppedOnRequest { since } => format!(
                "stopped on request since {} (gt daemon supervise resume {session})",
                crate::text::time(*since, zone)
            ),
            AgentState::Interrupted { since } => format!(
                "restart cut short by a daemon stop at {} (restarted at the next look)",
                crate::text::time(*since, zone)
            ),
        };
        lines.push(format!("{session}: {what}"));
    }
    lines
}

/// The running daemon's settings as it recorded them in state.json; else
/// (not running, or a daemon too old to record them) config.json's.
fn settings(state: &State, config: &Config) -> Settings {
    let recorded = state.running && state.heartbeat_interval_secs.is_some();
    let asked = match config.watch_mode {
        WatchMode::Notify => "notify",
        WatchMode::Poll => "poll",
    };
    Settings {
        heartbeat_interval_secs: state
            .heartbeat_interval_secs
            .filter(|_| recorded)
            .unwrap_or(config.heartbeat_interval.as_secs()),
        watch_mode: state
            .watch_mode
            .clone()
            .filter(|_| recorded)
            .unwrap_or_else(|| asked.into()),
        tmux_socket: if recorded {
            state.tmux_socket.clone()
        } else {
            config.tmux_socket.clone()
        },
        dry_run: if state.running {
            state.dry_run
        } else {
            config.dry_run
        },
        max_restarts: config.max_restarts,
        restart_window_secs: config.restart_window.as_secs(),
    }
}

/// The requests in processing/ (its dot-names are journal entries, not
/// requests). A claim is a rename, which sets the file's ctime.
fn in_progress(town: &Town) -> Vec<InProgress> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(town.processing()) else {
        return Vec::new();
    };
    let mut found: Vec<InProgress> = entries
        .flatten()
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|e| {
            let path = e.path();
            let read = crate::inbox::read_request(&path);
            let (_, partial) = crate::request::validate(read, Utc::now(), Duration::MAX);
            let name = e.file_name();
            InProgress {
                file: name
                    .to_str()
                    .map_or_else(|| escape_os(&name).into_owned(), str::to_owned),
                from: partial.from,
                action: partial.action,
                claimed_at: std::fs::symlink_metadata(&path)
                    .ok()
                    .and_then(|m| DateTime::from_timestamp(m.ctime(), m.ctime_nsec() as u32)),
            }
        })
        .collect();
    found.sort_by_key(|r| r.claimed_at);
    found
}

/// Every agent session known to tmux, to the crash-loop guard or to the
/// heartbeat, by session name. `panes`: `None` when tmux could not say.
fn agents(
    panes: Option<&[crate::tmux::ListedPane]>,
    guard: &[Remembered],
    pokes: &BTreeMap<String, DateTime<Utc>>,
) -> Vec<AgentStatus> {
    let mut sessions: BTreeSet<&str> = BTreeSet::new();
    sessions.extend(panes.into_iter().flatten().map(|p| p.session.as_str()));
    sessions.extend(guard.iter().map(|g| g.session.as_str()));
    sessions.extend(pokes.keys().map(String::as_str));
    sessions
        .into_iter()
        .filter_map(|session| {
            let agent = Agent::from_session(session)?;
            let pane = panes.and_then(|p| p.iter().find(|p| p.session == session));
            let remembered = guard.iter().find(|g| g.session == session);
            Some(AgentStatus {
                session: session.to_string(),
                agent: agent.name(),
                alive: panes.map(|_| pane.is_some()),
                pane_dead: pane.is_some_and(|p| p.dead),
                pane_pid: pane.and_then(|p| p.pid),
                started_at: pane
                    .and_then(|p| p.created)
                    .and_then(|t| DateTime::from_timestamp(t, 0)),
                last_poke: pokes.get(session).copied(),
                restarts: remembered.map_or(0, |r| r.restarts),
                held: remembered.is_some_and(|r| r.held),
                held_until: remembered.and_then(|r| r.held_until),
            })
        })
        .collect()
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

fn since(t: DateTime<Utc>) -> String {
    ago(Utc::now().signed_duration_since(t).num_seconds())
}

fn print_text(town: &Town, r: &Report, zone: Zone) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    let s = &r.state;
    let (green, red, yellow, dim, bold) = (
        Style::new().fg_color(Some(AnsiColor::Green.into())).bold(),
        Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
        Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold(),
        Style::new().dimmed(),
        Style::new().bold(),
    );
    let mode = if s.running && s.dry_run {
        " [dry run]"
    } else {
        ""
    };
    match r.status {
        "running" => writeln!(
            out,
            "{green}●{green:#} gt daemon: {green}running{green:#} (PID {}){mode}",
            s.pid
        )?,
        "degraded" => writeln!(
            out,
            "{yellow}●{yellow:#} gt daemon: {yellow}degraded{yellow:#} (PID {}){mode}: {}",
            s.pid,
            r.degraded.join(", ")
        )?,
        "crashed" => {
            let when = r
                .last_alive_at
                .map(|t| format!("; last alive {}, {}", time(t, zone), since(t)))
                .unwrap_or_default();
            writeln!(
                out,
                "{red}✗{red:#} gt daemon: {red}crashed{red:#}, not running (PID {} died without stopping{when})",
                r.last_pid.unwrap_or(0)
            )?
        }
        _ => {
            let when = r
                .last_alive_at
                .filter(|_| s.started_at.is_some())
                .map(|t| format!(" (stopped {})", time(t, zone)))
                .unwrap_or_default();
            writeln!(
                out,
                "{red}○{red:#} gt daemon: {red}not running{red:#}{when}"
            )?
        }
    }
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
    let every = exact(Duration::from_secs(r.config.heartbeat_interval_secs));
    match (s.last_heartbeat, r.heartbeat_age_secs) {
        (Some(t), Some(age)) => {
            let style = if r.heartbeat_overdue {
                yellow
            } else {
                Style::new()
            };
            writeln!(
                out,
                "  heartbeat  {style}{} ({}){style:#}, every {every}, {} so far",
                time(t, zone),
                ago(age),
                s.heartbeat_count
            )?
        }
        (Some(t), None) => writeln!(out, "  heartbeat  last {}, every {every}", time(t, zone))?,
        (None, _) => writeln!(out, "  heartbeat  every {every}")?,
    }
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
    )?;
    if !r.in_progress.is_empty() {
        writeln!(out, "  in progress:")?;
        for p in &r.in_progress {
            let claimed = p
                .claimed_at
                .map(|t| format!(", claimed {}", since(t)))
                .unwrap_or_default();
            writeln!(
                out,
                "    {} {} ({}{claimed})",
                clip(&escape(p.from.as_deref().unwrap_or("?")), 48),
                clip(&escape(p.action.as_deref().unwrap_or("?")), 48),
                escape(&p.file)
            )?;
        }
    }
    if !r.agents.is_empty() {
        writeln!(out, "  agents:")?;
        let rows: Vec<[String; 5]> = r.agents.iter().map(|a| agent_row(a, zone)).collect();
        let header = ["SESSION", "PID", "UP", "LAST POKE", "CRASH-LOOP GUARD"];
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut line = String::from("    ");
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 < cells.len() {
                    line += &pad(cell, widths[i]);
                    line += "  ";
                } else {
                    line += cell;
                }
            }
            line.trim_end().to_string()
        };
        writeln!(out, "{dim}{}{dim:#}", line(header))?;
        for (row, agent) in rows.iter().zip(&r.agents) {
            let text = line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
            if agent.held {
                writeln!(out, "{red}{text}{red:#}")?;
            } else {
                writeln!(out, "{text}")?;
            }
        }
    }
    if !r.recent_failures.is_empty() {
        writeln!(out, "  recent failures:")?;
        for e in &r.recent_failures {
            writeln!(
                out,
                "    {dim}{}{dim:#} {} {} ({}): {}",
                time(e.sidecar.finished_at, zone),
                clip(&escape(e.sidecar.from.as_deref().unwrap_or("?")), 48),
                clip(&escape(e.sidecar.action.as_deref().unwrap_or("?")), 48),
                escape(&e.file),
                escape(e.sidecar.error.as_deref().unwrap_or(""))
            )?;
        }
        if r.recent_failures.len() == 3 {
            writeln!(out, "    {dim}(more: gt daemon requests --failed; retry one: gt daemon retry FILE){dim:#}")?;
        }
    }
    if let Some(s) = &r.supervision {
        writeln!(out, "  supervision:")?;
        for line in supervision_lines(s, zone) {
            writeln!(out, "    {line}")?;
        }
    }
    if r.agents.iter().any(|a| a.held) {
        writeln!(
            out,
            "  {bold}held agents are refused cycle/restart until the time shown, or until `gt daemon clear-backoff SESSION`{bold:#}"
        )?;
    }
    drop(out);
    for w in &r.warnings {
        let mut err = anstream::stderr().lock();
        writeln!(err, "{yellow}warning:{yellow:#} {w}")?;
    }
    Ok(())
}

/// One row of the agents table: session, pane PID, uptime, last poke,
/// crash-loop guard.
fn agent_row(a: &AgentStatus, zone: Zone) -> [String; 5] {
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
    [a.session.clone(), pid, up, poke, guard]
}
