//! What `gt daemon status` knows: the lock and state.json, corrected by
//! each other, and what only a live look can tell.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::TMUX_PATIENCE;
use crate::client::history::{self, Entry, Which};
use crate::config::{Config, WatchMode};
use crate::crash_loop::{CrashLoopGuard, Remembered};
use crate::duration::{exact, human};
use crate::process::agent::Census;
use crate::process::Processes;
use crate::request::Agent;
use crate::state::State;
use crate::text::{escape, escape_os, mebibytes};
use crate::tmux::Tmux;
use crate::town::Town;
use crate::{inbox, instance, service};

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
    /// Processes carrying this town's agent marks in no live pane, as this
    /// command saw them; null when tmux could not be asked.
    pub leftovers: Option<Leftovers>,
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

/// Leftovers: processes carrying this town's `GT_TOWN_ROOT` and an
/// agent's `GT_ROLE` in no live pane of the town's tmux server.
#[derive(Debug, Serialize)]
pub struct Leftovers {
    pub count: usize,
    pub resident_bytes: u64,
    /// False when the host has more processes than one look reads.
    pub complete: bool,
    /// The first [`LEFTOVERS_LISTED`], by PID.
    pub processes: Vec<LeftoverProcess>,
}

#[derive(Debug, Serialize)]
pub struct LeftoverProcess {
    pub pid: u32,
    /// Its `GT_ROLE`.
    pub agent: String,
    pub session: String,
    /// `no_live_pane` or `outside_its_pane`.
    pub reason: &'static str,
    pub resident_bytes: u64,
}

/// The most leftovers `status` lists one by one.
const LEFTOVERS_LISTED: usize = 20;

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
    /// What its pane shows, while the daemon runs and looks at it
    /// (`state.json` `liveness`): working, idle, stalled,
    /// waiting_for_person or dead, and since when.
    pub state: Option<crate::state::Activity>,
    pub state_since: Option<DateTime<Utc>>,
    /// Restarts within the crash-loop guard's window.
    pub restarts: usize,
    pub held: bool,
    pub held_until: Option<DateTime<Utc>>,
}

/// Looks at the town: its lock, state.json, inbox, tmux, the crash-loop
/// guard's and supervision's memory, the service unit.
pub fn report(town: &Town) -> Report {
    let now = Utc::now();
    let Life {
        mut state,
        crashed,
        last_alive_at,
        recorded_pid,
        releasing,
        unreadable,
    } = life(town);
    let (pending, oldest) = inbox::pending(&town.inbox());
    state.inbox_pending = pending;
    let config = Config::load(&town.config_file()).unwrap_or_default();
    let settings = settings(&state, &config);
    let age = |t: Option<DateTime<Utc>>| t.map(|t| now.signed_duration_since(t).num_seconds());
    let heartbeat = Heartbeat::of(&state, &settings, age(state.last_heartbeat));
    let binary_newer = state.running && binary_newer_than(state.pid, state.started_at);
    let shutting_down = town.shutdown_lock().exists();
    let mut degraded = Vec::new();
    if state.running && unreadable.is_some() {
        // The daemon cannot be telling anything there: its heartbeat, its
        // counts and its errors are all unknown.
        degraded.push("state.json unreadable".to_string());
    }
    let mut warnings: Vec<String> = unreadable.into_iter().collect();
    degraded.extend(health(&state, &heartbeat, &mut warnings));
    notices(
        town,
        &state,
        binary_newer,
        shutting_down,
        releasing,
        &mut warnings,
    );
    let guard = remembered(town, &config, settings.dry_run, now, &mut warnings);
    let tmux = Tmux::new(settings.tmux_socket.clone(), TMUX_PATIENCE);
    // /proc before tmux: an agent started in between has a pane and no
    // processes yet, never processes and no pane.
    let processes = crate::process::processes();
    let panes = tmux
        .panes()
        .map_err(|e| warnings.push(format!("cannot ask tmux about the agents: {e}")))
        .ok();
    let leftovers = panes
        .as_deref()
        .map(|panes| leftovers(processes, town, panes, state.pid, &mut warnings));
    let empty = BTreeMap::new();
    // A stopped daemon's last look is no fact about the agents now.
    let liveness = if state.running {
        &state.liveness
    } else {
        &empty
    };
    // Each agent's own pane (a pane a person opened in its session is not
    // it); asked only when tmux answered the listing above.
    let agent_panes = panes.as_ref().and_then(|_| match tmux.agent_panes() {
        Ok(panes) => Some(panes),
        // As the listing above takes it: no server, no agents.
        Err(crate::tmux::TmuxError::NoServer(_)) => Some(Vec::new()),
        Err(e) => {
            warnings.push(format!("cannot ask tmux about the agents: {e}"));
            None
        }
    });
    let agents = agents(agent_panes.as_deref(), &guard, &state.last_pokes, liveness);
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
        heartbeat_age_secs: heartbeat.age_secs,
        heartbeat_overdue: heartbeat.overdue,
        oldest_pending_secs: oldest
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs()),
        binary_newer,
        shutting_down,
        config: settings,
        unit: unit(town),
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
        supervision: supervision(town, &mut warnings),
        leftovers,
        recent_failures: history::recent(town, Which::Failed, 3),
        warnings,
        state,
    }
}

/// Whether the daemon lives, by its lock, beside what state.json says.
struct Life {
    /// state.json, with `running` and `pid` as the lock says.
    state: State,
    crashed: bool,
    last_alive_at: Option<DateTime<Utc>>,
    /// The PID state.json records.
    recorded_pid: u32,
    /// A dying daemon (this PID) still holds the lock.
    releasing: Option<u32>,
    /// Why state.json could not be read, when it could not.
    unreadable: Option<String>,
}

fn life(town: &Town) -> Life {
    let state_path = town.state_file();
    let (mut state, unreadable) = match State::load(&state_path) {
        Ok(state) => (state, None),
        Err(e) => (
            State::default(),
            Some(format!(
                "cannot read state.json: {}",
                escape(&e.to_string())
            )),
        ),
    };
    let last_alive_at = std::fs::metadata(&state_path)
        .and_then(|m| m.modified())
        .ok()
        .map(DateTime::<Utc>::from);
    let (said_running, recorded_pid) = (state.running, state.pid);
    let holder = instance::probe(town);
    state.running = holder.is_some();
    state.pid = holder.flatten().unwrap_or(0);
    let releasing = match instance::holder_state(town) {
        instance::Holder::Releasing(pid) => Some(pid),
        _ => None,
    };
    // A daemon that stops cleanly says so in state.json before it lets go
    // of the lock; one still "running" there without holding it (or only
    // as a dying process, killed) never got to.
    let crashed = said_running && !state.running;
    if state.town_root.as_os_str().is_empty() {
        state.town_root = town.root().to_path_buf();
    }
    Life {
        state,
        crashed,
        last_alive_at,
        recorded_pid,
        releasing,
        unreadable,
    }
}

/// How late the heartbeat is.
struct Heartbeat {
    interval: Duration,
    /// Seconds since the last one, while running.
    age_secs: Option<i64>,
    /// More than two intervals late: the daemon may hang.
    overdue: bool,
}

impl Heartbeat {
    fn of(state: &State, settings: &Settings, age_secs: Option<i64>) -> Heartbeat {
        let interval = Duration::from_secs(settings.heartbeat_interval_secs);
        let age_secs = age_secs.filter(|_| state.running);
        let overdue_after = crate::state::heartbeat_overdue_after(interval).as_secs() as i64;
        Heartbeat {
            interval,
            age_secs,
            overdue: age_secs.is_some_and(|a| a > overdue_after),
        }
    }
}

/// Why a running daemon is degraded, in a few words each; each is also
/// explained in `warnings`.
fn health(state: &State, heartbeat: &Heartbeat, warnings: &mut Vec<String>) -> Vec<String> {
    let mut degraded = Vec::new();
    if heartbeat.overdue {
        degraded.push("heartbeat overdue".to_string());
        warnings.push(format!(
            "the last heartbeat was {} ago (interval {}): the daemon may be hung; see `gt daemon logs`",
            human(Duration::from_secs(heartbeat.age_secs.unwrap_or(0) as u64)),
            exact(heartbeat.interval)
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
    if let Some(why) = state.tmux_error.as_deref().filter(|_| state.running) {
        degraded.push("tmux not answering".to_string());
        warnings.push(format!("{}; see `gt daemon logs`", escape(why)));
    }
    if let Some(why) = state.supervision_error.as_deref().filter(|_| state.running) {
        degraded.push("supervision cannot act".to_string());
        warnings.push(format!(
            "supervision restarts nobody: {}; see `gt daemon logs`",
            escape(why)
        ));
    }
    if let Some(why) = state
        .metrics_endpoint_error
        .as_deref()
        .filter(|_| state.running)
    {
        degraded.push("metrics endpoint not serving".to_string());
        warnings.push(format!(
            "the metrics endpoint (metrics_listen) is not serving: {}; see `gt daemon logs`",
            escape(why)
        ));
    }
    degraded
}

/// What an operator should know that does not make the daemon degraded.
fn notices(
    town: &Town,
    state: &State,
    binary_newer: bool,
    shutting_down: bool,
    releasing: Option<u32>,
    warnings: &mut Vec<String>,
) {
    if binary_newer {
        warnings.push("the gt binary on disk is newer than the running daemon: restart it (gt daemon stop && gt daemon start)".into());
    }
    if shutting_down {
        warnings.push(format!(
            "the town is shutting down ({} exists): no heartbeat pokes, cycle and restart are refused",
            escape_os(town.shutdown_lock().as_os_str())
        ));
    }
    if let Some(pid) = releasing {
        warnings.push(format!(
            "the previous daemon (PID {pid}) is exiting but still holds {}; `gt daemon start` waits for it",
            escape_os(town.lock_file().as_os_str())
        ));
    }
    let pending = state.inbox_pending;
    if !state.running && pending > 0 {
        warnings.push(format!(
            "{pending} request(s) wait in the inbox but no daemon is running: gt daemon start"
        ));
    }
}

/// The sessions the crash-loop guard remembers (the dry-run guard's for a
/// dry-run daemon).
fn remembered(
    town: &Town,
    config: &Config,
    dry_run: bool,
    now: DateTime<Utc>,
    warnings: &mut Vec<String>,
) -> Vec<Remembered> {
    let guard = if dry_run {
        CrashLoopGuard::dry_run(town, config.max_restarts, config.restart_window)
    } else {
        CrashLoopGuard::new(town, config.max_restarts, config.restart_window)
    };
    guard.remembered(now).unwrap_or_else(|e| {
        warnings.push(format!(
            "cannot read the crash-loop guard's memory: {}",
            escape(&e.to_string())
        ));
        Vec::new()
    })
}

fn unit(town: &Town) -> Option<Unit> {
    service::find_installed(town).map(|u| Unit {
        active: u.is_active(),
        manager: match u.flavour {
            service::Flavour::Systemd => "systemd",
            service::Flavour::Launchd => "launchd",
        },
        path: u.path.to_string_lossy().into_owned(),
        name: u.name,
    })
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

fn supervision(town: &Town, warnings: &mut Vec<String>) -> Option<Supervision> {
    let on = Config::load(&town.config_file()).is_ok_and(|c| !c.supervise.is_empty());
    if !on {
        return None;
    }
    let memory = crate::supervision::load(town).unwrap_or_else(|e| {
        warnings.push(format!(
            "cannot read supervision's memory: {}",
            escape(&e.to_string())
        ));
        Default::default()
    });
    Some(Supervision {
        paused: memory.paused,
        agents: memory
            .agents
            .into_iter()
            .map(|(session, a)| (session, a.state))
            .collect(),
    })
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
    panes: Option<&[crate::tmux::AgentPane]>,
    guard: &[Remembered],
    pokes: &BTreeMap<String, DateTime<Utc>>,
    liveness: &BTreeMap<String, crate::state::AgentLiveness>,
) -> Vec<AgentStatus> {
    let mut sessions: BTreeSet<&str> = BTreeSet::new();
    sessions.extend(panes.into_iter().flatten().map(|p| p.session.as_str()));
    sessions.extend(guard.iter().map(|g| g.session.as_str()));
    sessions.extend(pokes.keys().map(String::as_str));
    sessions.extend(liveness.keys().map(String::as_str));
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
                pane_dead: pane.is_some_and(|p| p.dead()),
                pane_pid: pane.and_then(|p| p.pid),
                started_at: pane
                    .and_then(|p| p.created)
                    .and_then(|t| DateTime::from_timestamp(t, 0)),
                last_poke: pokes.get(session).copied(),
                state: liveness.get(session).map(|l| l.state),
                state_since: liveness.get(session).map(|l| l.since),
                restarts: remembered.map_or(0, |r| r.restarts),
                held: remembered.is_some_and(|r| r.held),
                held_until: remembered.and_then(|r| r.held_until),
            })
        })
        .collect()
}

/// What `census` finds in no live pane of `panes`.
fn leftovers(
    processes: Processes,
    town: &Town,
    panes: &[crate::tmux::ListedPane],
    daemon: u32,
    warnings: &mut Vec<String>,
) -> Leftovers {
    let panes: Vec<_> = panes.iter().filter_map(|p| p.process()).collect();
    let census = Census::take(processes, town.root(), &panes).sparing(daemon);
    let found = census.leftovers(&panes, |_| false);
    let resident_bytes = found.iter().map(|l| l.rss_bytes).sum();
    if !found.is_empty() {
        warnings.push(format!(
            "{} leftover process(es) of this town's agents run in no live pane ({} resident): \
             they outlived their agent (a killed daemon or tmux server); end them by hand, or set \
             end_leftovers: true in daemon/config.json and the daemon ends them",
            found.len(),
            mebibytes(resident_bytes)
        ));
    }
    if !census.complete() {
        warnings.push(format!(
            "more processes run than one look reads ({}): some were not looked at for leftovers",
            crate::process::MAX_PROCESSES
        ));
    }
    Leftovers {
        count: found.len(),
        resident_bytes,
        complete: census.complete(),
        processes: found
            .into_iter()
            .take(LEFTOVERS_LISTED)
            .map(|l| LeftoverProcess {
                pid: l.pid,
                agent: l.role,
                session: l.session,
                reason: l.reason.as_str(),
                resident_bytes: l.rss_bytes,
            })
            .collect(),
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
