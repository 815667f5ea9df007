//! Supervision (opt-in, config `supervise`): keeps the listed agents alive.
//!
//! Each check, an agent counts as dead only when its session is missing or
//! its own pane's process has exited: never for age or silence, never for
//! extra panes or windows a person added. With `stall_action: "restart"`,
//! one the look at the agents found stalled ([`super::liveness`]: quiet
//! and its pokes unanswered, never waiting for a person) fails too. A
//! dead (or stalled) agent's pane is captured,
//! then it is restarted through the same executor as a `restart` request
//! (the consumer files the restart like a request, `from: "daemon"`).
//! Repeated deaths back off, too many quarantine, several at once pause
//! supervision; a `shutdown` request or `shutdown.lock` is never undone.
//! Every decision is remembered with its reason (`gt daemon explain`).
//!
//! This thread looks (tmux), reads and writes `supervise.json`, and acts
//! (restarts, alerts, metrics); what to do is [`policy`]'s decision, a
//! pure function. What happens to a restart on the consumer's side (its
//! job, its record, its filing) and what requests tell supervision is in
//! [`restarts`].

pub(crate) mod policy;
pub(crate) mod restarts;

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::alert::Event;
use super::execute::HeldSessions;
use super::inlet::{Message, Restart};
use super::liveness::Liveness;
use super::monitoring::Monitoring;
use super::stop::StopFlag;
use crate::config::{Config, SharedConfig, StallAction};
use crate::crash_loop::{self, CrashLoopGuard};
use crate::duration::human;
use crate::request::Agent;
use crate::state::StateStore;
use crate::supervision::{self, AgentState};
use crate::tmux::{Tmux, TmuxError};
use crate::town::Town;
use policy::{Look, Plan, Policy, Restarts, Round, Seen};

/// The pause before a second look at the agents when one is found dead.
const CONFIRM: Duration = Duration::from_millis(300);

/// Lines of a dead pane kept beside the record of its restart.
const CAPTURE_LINES: u32 = 200;

pub(crate) struct Supervisor {
    pub(crate) town: Town,
    /// Read each round: `max_restarts` and `restart_window` follow a
    /// reload, as the crash-loop guard of requests does; the keys read at
    /// start keep their values in it.
    pub(crate) config: SharedConfig,
    pub(crate) tmux: Tmux,
    pub(crate) stop: Arc<StopFlag>,
    pub(crate) held: Arc<HeldSessions>,
    pub(crate) tx: SyncSender<Message>,
    pub(crate) monitoring: Monitoring,
    /// What the agents' panes show; `None` without `look_at_agents`.
    pub(crate) liveness: Option<Arc<Liveness>>,
    /// Where `status` learns that supervision cannot act.
    pub(crate) state: Arc<StateStore>,
    /// What was last said there (said again only when it changes).
    pub(crate) said: std::cell::RefCell<Option<String>>,
}

/// The sessions of the agents `supervise` names (see [`agents`]).
pub(crate) fn sessions(town: &Town, config: &Config) -> Vec<String> {
    agents(town, config)
        .iter()
        .map(|(_, a)| a.session())
        .collect()
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
        let config = self.config.get();
        let agents = agents(&self.town, &config);
        let names: Vec<&str> = agents.iter().map(|(n, _)| n.as_str()).collect();
        tracing::info!(?names, every = %human(config.supervise_interval), "supervising agents");
        let sessions: Vec<String> = agents.iter().map(|(_, a)| a.session()).collect();
        match supervision::keep_only(&self.town, &sessions) {
            Ok(0) => {}
            Ok(n) => tracing::info!("supervise.json: forgot {n} agents no longer supervised"),
            Err(e) => tracing::warn!("cannot tidy supervise.json: {e}"),
        }
        let mut round = Round::first();
        let mut shutdown_lock = false;
        loop {
            let config = self.config.get();
            let policy = Policy::of(&config);
            self.check(&agents, &policy, &mut round, &mut shutdown_lock);
            self.publish(&agents);
            round.first = false;
            if self.stop.wait(config.supervise_interval) {
                return;
            }
        }
    }

    fn check(
        &self,
        agents: &[(String, Agent)],
        policy: &Policy,
        round: &mut Round,
        shutdown_lock: &mut bool,
    ) {
        let locked = self.town.shutdown_lock().exists();
        if locked != *shutdown_lock {
            *shutdown_lock = locked;
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
        let now = Utc::now();
        if !self.pause_over(now) {
            tracing::debug!("supervision check skipped: paused");
            return;
        }
        tracing::debug!(agents = agents.len(), "supervision check");
        let mut looks = self.observe(agents);
        let any_dead = looks.iter().any(|l| l.seen != Seen::Alive);
        if any_dead && !round.first {
            // A second look, a moment later, before deciding: a tmux server
            // going down takes its sessions one by one, and a mass death
            // seen half-way would restart the first agents it took.
            if self.stop.wait(CONFIRM) {
                return;
            }
            looks = self.observe(agents);
        }
        let restarts = self.restart_counts(policy, now);
        let decided = supervision::update(&self.town, |memory| {
            let plan = policy::decide(policy, memory, &looks, &restarts, now, round);
            let changed = plan.changed;
            (plan, changed)
        });
        match decided {
            Ok(plan) => {
                self.say(None);
                self.carry_out(plan, agents)
            }
            Err(e) => {
                let why = format!("cannot write supervise.json, not restarting anyone: {e}");
                tracing::error!("{why}");
                self.say(Some(why));
            }
        }
    }

    /// Tells `status` (through state.json) that supervision cannot act,
    /// or that it can again.
    fn say(&self, why: Option<String>) {
        if *self.said.borrow() == why {
            return;
        }
        match self.state.update(|s| s.supervision_error = why.clone()) {
            Ok(()) => *self.said.borrow_mut() = why,
            Err(e) => tracing::warn!("cannot write state.json: {e}"),
        }
    }

    /// Looks at every agent no request is working on right now: one
    /// listing of the server's panes for all of them.
    fn observe(&self, agents: &[(String, Agent)]) -> Vec<Look> {
        // Held before the listing or after it: a request that ended in
        // between may have been half-way through when tmux answered.
        let unheld: Vec<String> = agents
            .iter()
            .map(|(_, agent)| agent.session())
            .filter(|session| !self.held.is_held(session))
            .collect();
        let panes = match self.tmux.agent_panes() {
            Ok(panes) => panes,
            // No server: every session is missing (a mass death, if they
            // were running, which pauses supervision).
            Err(TmuxError::NoServer(_)) => Vec::new(),
            Err(e) => {
                tracing::warn!("supervision cannot look at the agents: {e}");
                return Vec::new();
            }
        };
        let mut looks = Vec::new();
        for session in unheld {
            if self.held.is_held(&session) {
                continue; // a request is working on it right now
            }
            let pane = panes.iter().find(|p| p.session == session);
            let alive = pane.is_some_and(|p| !p.dead());
            self.monitoring.metrics.agent_up(&session, alive);
            let stalled = pane
                .filter(|_| alive)
                .and_then(|p| Some((p, self.stalled(&session, &p.id)?)));
            let seen = if let Some((pane, why)) = stalled {
                Seen::Stalled {
                    why,
                    capture: self.tmux.capture(&pane.id, CAPTURE_LINES).ok(),
                }
            } else if alive {
                Seen::Alive
            } else {
                Seen::Dead {
                    exit: pane.and_then(|p| p.exit),
                    capture: pane.and_then(|p| self.tmux.capture(&p.id, CAPTURE_LINES).ok()),
                }
            };
            looks.push(Look { session, seen });
        }
        looks
    }

    /// Why the agent in `pane` is to be restarted as stalled, when
    /// `stall_action` says so and the last look found that very pane
    /// stalled (a restarted agent's new pane has fresh evidence).
    fn stalled(&self, session: &str, pane: &str) -> Option<String> {
        if self.config.get().stall_action != StallAction::Restart {
            return None;
        }
        self.liveness.as_ref()?.stalled(session, pane)
    }

    /// Each session's restarts within the window, as the crash-loop guard
    /// records them (none when its memory cannot be read: said in the log).
    fn restart_counts(&self, policy: &Policy, now: DateTime<Utc>) -> HashMap<String, Restarts> {
        let guard = CrashLoopGuard::new(&self.town, policy.max_restarts, policy.restart_window);
        match guard.remembered(now) {
            Ok(remembered) => remembered
                .into_iter()
                .map(|r| {
                    let restarts = Restarts {
                        all: r.restarts,
                        after_crash: r.after_crash,
                    };
                    (r.session, restarts)
                })
                .collect(),
            Err(e) => {
                tracing::warn!("cannot read the restart counts (restart_state.json): {e}");
                HashMap::new()
            }
        }
    }

    /// False while supervision is paused; ends a pause whose time is up.
    fn pause_over(&self, now: DateTime<Utc>) -> bool {
        // Unreadable: not paused; the next decision written replaces it.
        let paused = supervision::load(&self.town).unwrap_or_default().paused;
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

    /// Says what the policy decided (log, notifier, metrics) and asks the
    /// consumer for its restarts.
    fn carry_out(&self, plan: Plan, agents: &[(String, Agent)]) {
        for (session, why) in &plan.backoffs {
            tracing::warn!(session, "{why}");
        }
        let alerts = &self.monitoring.alerts;
        for (session, detail) in plan.quarantined {
            tracing::error!(session, "{detail}");
            alerts.send(Event::AgentQuarantined { session, detail });
        }
        if let Some((sessions, detail)) = plan.paused {
            tracing::error!("supervision paused: {detail}");
            alerts.send(Event::SupervisionPaused { sessions, detail });
        }
        for r in plan.restarts {
            let Some((name, _)) = agents.iter().find(|(_, a)| a.session() == r.session) else {
                continue;
            };
            if r.afresh {
                if let Err(e) = crash_loop::clear(&self.town, &r.session) {
                    tracing::warn!(session = r.session, "cannot clear the restart count: {e}");
                }
            }
            tracing::warn!(
                session = r.session,
                "restarting a supervised agent: {}",
                r.why
            );
            self.monitoring.metrics.agent_restarted(&r.session, r.cause);
            // Held from now until the consumer files or drops it: until the
            // restart creates the session, the next check would see it
            // missing and restart it again.
            self.held.claim(&r.session);
            self.send(Restart {
                agent: name.clone(),
                session: r.session,
                reason: r.why,
                capture: r.capture,
                after_crash: r.after_crash,
            });
        }
    }

    /// Tells the metrics what supervise.json says now (also what
    /// `gt daemon clear-backoff` and `supervise resume` changed).
    fn publish(&self, agents: &[(String, Agent)]) {
        let now = Utc::now();
        let state = supervision::load(&self.town).unwrap_or_default();
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
