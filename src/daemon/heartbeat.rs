//! The heartbeat: on its own thread so a slow restart in the
//! consumer never delays a poke, and a hung tmux never delays a request.
//!
//! Each beat pokes the agents `config.poke_text_for` names (the Mayor and
//! every Witness by default), in each agent's own pane, never the active
//! pane of a window a person split. With `look_at_agents`, it first has
//! them looked at ([`Liveness::look_before_poking`]): an agent whose
//! screen asks a person something is not poked (a poke's Enter could
//! answer the question), and each poke is handed over to be confirmed.
//!
//! Between beats (and before each) it checks that the daemon still owns
//! its town: a daemon whose lock file or town directory was removed or
//! replaced would serve the town beside the next daemon started, so it
//! stops instead.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::execute::HeldSessions;
use super::inlet::Message;
use super::leftovers::Leftovers;
use super::liveness::{Liveness, Target};
use super::logging::Repeats;
use super::metrics::Metrics;
use super::retention;
use super::sdnotify::{self, Manager};
use super::stop::StopFlag;
use crate::config::SharedConfig;
use crate::duration::human;
use crate::inbox;
use crate::instance::{Displaced, Ownership};
use crate::request::Agent;
use crate::state::StateStore;
use crate::tmux::{Tmux, TmuxError};
use crate::town::Town;

/// Pruning walks whole directories: often enough to bound them, rarely
/// enough to cost nothing.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How often ownership of the town is checked, whatever the interval:
/// until a displaced daemon notices, a new one may run beside it.
const OWNERSHIP_CHECK_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Heartbeat {
    pub town: Town,
    /// Read at every beat: a reload (SIGHUP) changes the interval and the
    /// retention from the next one.
    pub config: SharedConfig,
    pub tmux: Tmux,
    pub dry_run: bool,
    pub state: Arc<StateStore>,
    pub stop: Arc<StopFlag>,
    /// Sessions a request is restarting: not to be poked meanwhile.
    pub held: Arc<HeldSessions>,
    /// What the daemon locked.
    pub ownership: Ownership,
    /// Wakes the consumer when the heartbeat stops the daemon.
    pub wake: SyncSender<Message>,
    /// Fed from here: the watchdog and the status line.
    pub service: Arc<Manager>,
    /// Why nobody is poked, logged when it begins and ends, not per beat.
    pub quiet: Repeats,
    pub metrics: Arc<Metrics>,
    /// Looked for at each beat but in a dry run (which touches no agent).
    pub leftovers: Leftovers,
    /// Looks before each poke and confirms it; `None` without
    /// `look_at_agents`.
    pub liveness: Option<Arc<Liveness>>,
    /// Agents not poked because they wait for a person, said once each.
    pub waiting: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Heartbeat {
    /// Beats now, then every interval, until the stop. Returns why it
    /// stopped the daemon itself: the town is no longer the one it locked.
    pub(crate) fn run(self) -> Option<Displaced> {
        let mut last_prune: Option<Instant> = None;
        let mut last_beat: Option<Instant> = None;
        loop {
            if let Err(displaced) = self.ownership.verify() {
                self.stop.set();
                let _ = self.wake.try_send(Message::Stop);
                return Some(displaced);
            }
            let interval = self.config.get().heartbeat_interval;
            if last_beat.is_none_or(|t| t.elapsed() >= interval) {
                if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                    self.prune();
                    last_prune = Some(Instant::now());
                }
                self.beat();
                last_beat = Some(Instant::now());
            }
            self.service.alive();
            let pending = self.state.read(|s| s.inbox_pending);
            self.service
                .status(&sdnotify::status_text(pending, self.dry_run));
            let nap = last_beat
                .map_or(Duration::ZERO, |t| interval.saturating_sub(t.elapsed()))
                .min(OWNERSHIP_CHECK_EVERY);
            if self.stop.wait(nap) {
                return None;
            }
        }
    }

    fn prune(&self) {
        let now = std::time::SystemTime::now();
        let config = self.config.get();
        for (dir, keep, key) in [
            (
                self.town.processed(),
                config.keep_processed,
                "keep_processed",
            ),
            (self.town.failed(), config.keep_failed, "keep_failed"),
        ] {
            let removed = retention::prune(&dir, keep, now);
            if removed > 0 {
                tracing::info!(removed, dir = %dir.display(), "pruned outcomes older than {key} ({})", human(keep));
            }
        }
    }

    fn beat(&self) {
        let pokes = if self.town.shutdown_lock().exists() {
            if self.quiet.began("shutdown.lock exists") {
                tracing::info!(
                    "town is shutting down (shutdown.lock): no pokes until it is removed"
                );
            }
            Pokes::default()
        } else if self.dry_run {
            tracing::debug!("dry run: no pokes");
            Pokes::default()
        } else {
            self.poke()
        };
        let poked = pokes.poked.len();
        let pending = inbox::pending_count(&self.town.inbox());
        let now = Utc::now();
        let result = self.state.update(|s| {
            s.last_heartbeat = Some(now);
            s.heartbeat_count += 1;
            s.inbox_pending = pending;
            s.tmux_error = crate::tmux::wedged();
            if let Some(sessions) = &pokes.sessions {
                s.last_pokes.retain(|session, _| sessions.contains(session));
            }
            for session in pokes.poked {
                s.last_pokes.insert(session, now);
            }
        });
        self.metrics.heartbeat();
        match result {
            Ok(()) => tracing::debug!(poked, pending, "heartbeat"),
            Err(e) => tracing::error!("heartbeat cannot write state.json: {e}"),
        }
        if !self.dry_run {
            self.leftovers.look();
        }
    }

    /// Pokes every agent that has a poke text (the Mayor and every
    /// Witness by default), in its own pane.
    fn poke(&self) -> Pokes {
        // Each condition is logged when it begins and when it ends: a town
        // without agents would otherwise log the same line every beat.
        let looked = match &self.liveness {
            Some(liveness) => liveness.look_before_poking(),
            None => self.tmux.agent_panes().map(|panes| {
                panes
                    .into_iter()
                    .map(|pane| Target {
                        pane,
                        waiting: false,
                    })
                    .collect()
            }),
        };
        let targets = match looked {
            Ok(targets) => {
                if let Some(was) = self.quiet.ended() {
                    tracing::info!("heartbeat: pokes resume (until now: {was})");
                }
                targets
            }
            Err(TmuxError::NoServer(_)) => {
                if self.quiet.began("no tmux server") {
                    tracing::info!("heartbeat: no tmux server is running, nobody to poke (said once, until that changes)");
                } else {
                    tracing::debug!("heartbeat: still no tmux server");
                }
                return Pokes {
                    sessions: Some(Vec::new()),
                    ..Pokes::default()
                };
            }
            Err(e) => {
                let why = format!("cannot list tmux sessions: {e}");
                if self.quiet.began(&why) {
                    tracing::warn!("heartbeat: {why} (said once, until that changes)");
                } else {
                    tracing::debug!("heartbeat: {why}");
                }
                return Pokes::default();
            }
        };
        let config = self.config.get();
        let mut poked = Vec::new();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.retain(|s| targets.iter().any(|t| t.waiting && t.pane.session == *s));
        for target in &targets {
            let pane = &target.pane;
            let session = pane.session.clone();
            let Some(text) = Agent::from_session(&session)
                .and_then(|a| config.poke_text_for(&a).map(str::to_string))
            else {
                continue;
            };
            if pane.dead() {
                tracing::debug!(
                    session,
                    "heartbeat: not poking an agent whose process exited"
                );
                continue;
            }
            if target.waiting {
                if waiting.insert(session.clone()) {
                    tracing::info!(session, "heartbeat: not poking an agent that waits for a person (its Enter could answer the question)");
                }
                continue;
            }
            self.service.alive();
            let typed = self.held.unless_held(&session, || {
                self.tmux.type_text(&pane.id, &text)?;
                let at = Utc::now();
                self.tmux.press_enter(&pane.id).map(|()| at)
            });
            match typed {
                Some(Ok(at)) => {
                    if let Some(liveness) = &self.liveness {
                        liveness.poked(&session, &pane.id, &text, at);
                    }
                    poked.push(session);
                }
                Some(Err(e)) => tracing::warn!(session, "heartbeat: cannot poke: {e}"),
                None => tracing::debug!(session, "heartbeat: not poking a session being restarted"),
            }
        }
        Pokes {
            poked,
            sessions: Some(targets.into_iter().map(|t| t.pane.session).collect()),
        }
    }
}

/// What one beat's pokes did: the sessions poked, and the sessions that
/// exist (`None` when tmux could not say).
#[derive(Debug, Default)]
struct Pokes {
    poked: Vec<String>,
    sessions: Option<Vec<String>>,
}
