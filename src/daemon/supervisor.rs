//! Supervision (opt-in, config `supervise`): keeps the listed agents alive.
//!
//! Each check, an agent counts as dead only when its session is missing or
//! its own pane's process has exited: never for age or silence, never for
//! extra panes or windows a person added. A dead agent's pane is captured,
//! then it is restarted through the same executor as a `restart` request
//! (the consumer files the restart like a request, `from: "daemon"`).
//! Repeated deaths back off, too many quarantine, several at once pause
//! supervision; a `shutdown` request or `shutdown.lock` is never undone.
//! Every decision is remembered with its reason (`gt daemon explain`).

use std::collections::VecDeque;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::alert::Event;
use super::execute::HeldSessions;
use super::inlet::{Message, Restart};
use super::metrics::Monitoring;
use super::stop::StopFlag;
use crate::config::Config;
use crate::duration::human;
use crate::request::Agent;
use crate::supervision::{self, AgentState, Paused};
use crate::tmux::Tmux;
use crate::town::Town;

/// The pause before a second look at the agents when one is found dead.
const CONFIRM: Duration = Duration::from_millis(300);

/// Lines of a dead pane kept beside the record of its restart.
const CAPTURE_LINES: u32 = 200;

pub(crate) struct Supervisor {
    pub(crate) town: Town,
    pub(crate) config: Config,
    pub(crate) tmux: Tmux,
    pub(crate) stop: Arc<StopFlag>,
    pub(crate) held: Arc<HeldSessions>,
    pub(crate) tx: SyncSender<Message>,
    pub(crate) monitoring: Monitoring,
}

/// The agents `supervise` names: the listed ones, and for `auto` every
/// agent whose work directory exists in the town.
pub(crate) fn agents(town: &Town, config: &Config) -> Vec<(String, Agent)> {
    let mut found: Vec<(String, Agent)> = Vec::new();
    let mut add = |name: String| {
        if let Ok(agent) = Agent::parse(&name) {
            if !found.iter().any(|(_, a)| a.session() == agent.session()) {
                found.push((name, agent));
            }
        }
    };
    for entry in &config.supervise {
        if entry != "auto" {
            add(entry.clone());
            continue;
        }
        for role in ["mayor", "deacon"] {
            if town.root().join(role).is_dir() {
                add(role.to_string());
            }
        }
        let Ok(dirs) = std::fs::read_dir(town.root()) else {
            continue;
        };
        let mut rigs: Vec<String> = dirs
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        rigs.sort();
        for rig in rigs {
            for role in ["witness", "refinery"] {
                if town.root().join(&rig).join(role).is_dir() {
                    add(format!("{rig}/{role}"));
                }
            }
        }
    }
    found
}

impl Supervisor {
    /// Checks now, then every `supervise_interval`, until the stop.
    pub(crate) fn run(self) {
        let agents = agents(&self.town, &self.config);
        let names: Vec<&str> = agents.iter().map(|(n, _)| n.as_str()).collect();
        tracing::info!(?names, every = %human(self.config.supervise_interval), "supervising agents");
        let mut round = Round {
            first: true,
            deaths: VecDeque::new(),
            shutdown_lock: false,
        };
        loop {
            self.check(&agents, &mut round);
            self.publish(&agents);
            round.first = false;
            if self.stop.wait(self.config.supervise_interval) {
                return;
            }
        }
    }

    fn check(&self, agents: &[(String, Agent)], round: &mut Round) {
        let now = Utc::now();
        let locked = self.town.shutdown_lock().exists();
        if locked != round.shutdown_lock {
            round.shutdown_lock = locked;
            if locked {
                tracing::warn!("supervision paused: the town is shutting down (shutdown.lock)");
            } else {
                tracing::info!("supervision resumes: shutdown.lock is gone");
            }
        }
        if locked {
            tracing::debug!("supervision check skipped: shutdown.lock");
            return;
        }
        if !self.pause_over(now) {
            tracing::debug!("supervision check skipped: paused");
            return;
        }
        tracing::debug!(agents = agents.len(), "supervision check");
        let mut dead = self.observe(agents, now);
        if !dead.is_empty() && !round.first {
            // A second look, a moment later, before deciding: a tmux server
            // going down takes its sessions one by one, and a mass death
            // seen half-way would restart the first agents it took.
            if self.stop.wait(CONFIRM) {
                return;
            }
            dead = self.observe(agents, Utc::now());
        }
        self.decide(dead, now, round);
    }

    /// Looks at every agent: marks the living as running, returns the dead.
    fn observe(&self, agents: &[(String, Agent)], now: DateTime<Utc>) -> Vec<Death> {
        let mut dead = Vec::new();
        for (name, agent) in agents {
            let session = agent.session();
            if self.held.is_held(&session) {
                continue; // a request is working on it right now
            }
            let pane = match self.tmux.agent_pane(&session) {
                Ok(pane) => pane,
                Err(e) => {
                    tracing::warn!(session, "supervision cannot look at the agent: {e}");
                    continue;
                }
            };
            let alive = pane.as_ref().is_some_and(|p| p.exit.is_none());
            self.monitoring.metrics.agent_up(&session, alive);
            if alive {
                self.mark_running(&session, now);
                continue;
            }
            let why = match &pane {
                None => "session missing".to_string(),
                Some(p) => format!("agent exited with status {}", p.exit.unwrap_or(-1)),
            };
            let capture = pane
                .as_ref()
                .and_then(|p| self.tmux.capture(&p.id, CAPTURE_LINES).ok());
            dead.push(Death {
                name: name.clone(),
                session,
                why,
                exit: pane.and_then(|p| p.exit),
                capture,
            });
        }
        dead
    }

    /// False while supervision is paused; ends a pause whose time is up.
    fn pause_over(&self, now: DateTime<Utc>) -> bool {
        let paused = supervision::load(&self.town).paused;
        match paused {
            Some(p) if p.until > now => false,
            Some(_) => {
                let _ = supervision::update(&self.town, |s| (s.paused.take(), true));
                tracing::info!("supervision resumes: its pause after a mass death is over");
                true
            }
            None => true,
        }
    }

    fn mark_running(&self, session: &str, now: DateTime<Utc>) {
        let result = supervision::update(&self.town, |s| {
            let agent = s.agents.entry(session.to_string()).or_default();
            match agent.state {
                AgentState::Running { .. } | AgentState::StoppedOnRequest { .. } => ((), false),
                _ => {
                    agent.state = AgentState::Running { since: now };
                    agent.note(now, "alive", "the agent is running".into(), None);
                    ((), true)
                }
            }
        });
        if let Err(e) = result {
            tracing::error!("cannot write supervise.json: {e}");
        }
    }

    fn decide(&self, dead: Vec<Death>, now: DateTime<Utc>, round: &mut Round) {
        if dead.is_empty() {
            return;
        }
        let c = &self.config;
        let window = chrono::Duration::from_std(c.restart_window).unwrap_or(chrono::Duration::MAX);
        let stable = chrono::Duration::from_std(c.stable_after).unwrap_or(chrono::Duration::MAX);
        let mass_window =
            chrono::Duration::from_std(c.mass_death_window).unwrap_or(chrono::Duration::MAX);
        let first = round.first;
        let mut restarts = Vec::new();
        // For the notifier, once supervise.json has them.
        let mut quarantined: Vec<(String, String)> = Vec::new();
        let mut paused = None;
        let result = supervision::update(&self.town, |s| {
            // Which deaths are new and count: a deliberate stop, a wait
            // already running, or the first look at a fresh start are not.
            let mut new_deaths = Vec::new();
            for d in &dead {
                let agent = s.agents.entry(d.session.clone()).or_default();
                match &agent.state {
                    AgentState::StoppedOnRequest { .. } => continue,
                    AgentState::Quarantined { until, .. } | AgentState::Backoff { until }
                        if *until > now =>
                    {
                        continue
                    }
                    AgentState::Backoff { .. } => {
                        restarts.push((d, "its backoff is over".to_string()));
                        continue;
                    }
                    AgentState::Quarantined { .. } => {
                        agent.deaths.clear();
                        // The request guard counts the same restarts; its
                        // memory goes with the quarantine.
                        let guard = crate::crash_loop::CrashLoopGuard::new(
                            &self.town,
                            c.max_restarts,
                            c.restart_window,
                        );
                        if let Err(e) = guard.clear(&d.session) {
                            tracing::warn!(
                                session = d.session,
                                "cannot clear the crash-loop guard: {e}"
                            );
                        }
                        restarts.push((d, "its quarantine is over".to_string()));
                        continue;
                    }
                    AgentState::Unknown if first && d.exit.is_none() => {
                        restarts.push((d, "not running when supervision began".to_string()));
                        continue;
                    }
                    _ => {}
                }
                new_deaths.push(d);
            }
            for d in &new_deaths {
                round.deaths.push_back((now, d.session.clone()));
            }
            while round
                .deaths
                .front()
                .is_some_and(|(at, _)| now.signed_duration_since(*at) > mass_window)
            {
                round.deaths.pop_front();
            }
            // Distinct agents: one agent dying again and again is a crash
            // loop (backoff and quarantine), not a mass death.
            let distinct: std::collections::BTreeSet<&str> =
                round.deaths.iter().map(|(_, s)| s.as_str()).collect();
            if distinct.len() >= c.mass_death {
                let why = format!(
                    "{} supervised agents died within {} ({}); a tmux server crash or the \
                     machine out of memory is likely. Resume with `gt daemon supervise resume`",
                    distinct.len(),
                    human(c.mass_death_window),
                    distinct.into_iter().collect::<Vec<_>>().join(", ")
                );
                tracing::error!("supervision paused: {why}");
                let mut sessions: Vec<String> =
                    round.deaths.iter().map(|(_, s)| s.clone()).collect();
                sessions.sort();
                sessions.dedup();
                paused = Some((sessions, why.clone()));
                let until =
                    now + chrono::Duration::from_std(c.mass_death_pause).unwrap_or_default();
                for d in &new_deaths {
                    let agent = s.agents.entry(d.session.clone()).or_default();
                    agent.note(
                        now,
                        "paused",
                        format!("{}; supervision paused", d.why),
                        d.capture.clone(),
                    );
                    agent.state = AgentState::Backoff { until: now };
                }
                s.paused = Some(Paused {
                    since: now,
                    until,
                    why,
                });
                round.deaths.clear();
                restarts.clear();
                return ((), true);
            }
            for d in new_deaths {
                let agent = s.agents.entry(d.session.clone()).or_default();
                let not_a_crash = d.exit == Some(0)
                    || d.capture.as_deref().is_some_and(|text| {
                        c.not_a_crash
                            .iter()
                            .any(|p| !p.is_empty() && text.contains(p.as_str()))
                    });
                if let AgentState::Running { since } = agent.state {
                    if now.signed_duration_since(since) >= stable {
                        agent.deaths.clear(); // it had run stable: a fresh count
                    }
                }
                agent
                    .deaths
                    .retain(|t| now.signed_duration_since(*t) < window);
                if not_a_crash {
                    restarts.push((d, format!("{} (not a crash: not counted)", d.why)));
                    continue;
                }
                agent.deaths.push(now);
                let count = agent.deaths.len();
                if count >= c.max_restarts as usize {
                    let until = now + chrono::Duration::from_std(c.quarantine).unwrap_or_default();
                    let why = format!(
                        "{}; died {count} times within {} (max_restarts {}): quarantined for {}, \
                         or until `gt daemon clear-backoff`",
                        d.why,
                        human(c.restart_window),
                        c.max_restarts,
                        human(c.quarantine)
                    );
                    tracing::error!(session = d.session, "{why}");
                    quarantined.push((d.session.clone(), why.clone()));
                    agent.note(now, "quarantine", why.clone(), d.capture.clone());
                    agent.state = AgentState::Quarantined { until, why };
                    continue;
                }
                let delay = if count <= 1 {
                    Duration::ZERO
                } else {
                    c.supervise_backoff
                        .saturating_mul(1 << (count - 2).min(16))
                        .min(c.supervise_backoff_max)
                };
                if delay.is_zero() {
                    restarts.push((d, d.why.clone()));
                } else {
                    let until = now + chrono::Duration::from_std(delay).unwrap_or_default();
                    let why = format!(
                        "{}; death {count} within {}: restart in {}",
                        d.why,
                        human(c.restart_window),
                        human(delay)
                    );
                    tracing::warn!(session = d.session, "{why}");
                    agent.note(now, "backoff", why, d.capture.clone());
                    agent.state = AgentState::Backoff { until };
                }
            }
            for (d, why) in &restarts {
                let agent = s.agents.entry(d.session.clone()).or_default();
                agent.note(now, "restart", why.clone(), d.capture.clone());
                agent.state = AgentState::Running { since: now };
            }
            ((), true)
        });
        if let Err(e) = result {
            tracing::error!("cannot write supervise.json, not restarting anyone: {e}");
            return;
        }
        let alerts = &self.monitoring.alerts;
        for (session, detail) in quarantined {
            alerts.send(Event::AgentQuarantined { session, detail });
        }
        if let Some((sessions, detail)) = paused {
            alerts.send(Event::SupervisionPaused { sessions, detail });
        }
        for (d, why) in restarts {
            tracing::warn!(session = d.session, "restarting a supervised agent: {why}");
            let reason = match d.exit {
                None => "session_missing",
                Some(_) => "pane_exited",
            };
            self.monitoring.metrics.agent_restarted(&d.session, reason);
            self.send(Restart {
                agent: d.name.clone(),
                reason: why,
                capture: d.capture.clone(),
            });
        }
    }

    /// Tells the metrics what supervise.json says now (also what
    /// `gt daemon clear-backoff` and `supervise resume` changed).
    fn publish(&self, agents: &[(String, Agent)]) {
        let now = Utc::now();
        let state = supervision::load(&self.town);
        let metrics = &self.monitoring.metrics;
        metrics.supervision_paused(state.paused.is_some_and(|p| p.until > now));
        for (_, agent) in agents {
            let session = agent.session();
            let quarantined = state.agents.get(&session).is_some_and(
                |a| matches!(a.state, AgentState::Quarantined { until, .. } if until > now),
            );
            metrics.agent_quarantined(&session, quarantined);
        }
    }

    fn send(&self, restart: Restart) {
        let mut msg = Message::Supervised(Box::new(restart));
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    if self.stop.wait(Duration::from_millis(20)) {
                        return;
                    }
                    msg = back;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

struct Round {
    /// The daemon's first look: agents missing now are started, not dead.
    first: bool,
    /// Recent deaths of any supervised agent, for the mass-death pause.
    deaths: VecDeque<(DateTime<Utc>, String)>,
    shutdown_lock: bool,
}

struct Death {
    name: String,
    session: String,
    why: String,
    exit: Option<i32>,
    capture: Option<String>,
}
