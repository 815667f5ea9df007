//! The heartbeat: on its own thread so a slow restart in the
//! consumer never delays a poke, and a hung tmux never delays a request.
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
use super::metrics::Metrics;
use super::retention;
use super::stop::StopFlag;
use super::watch::Message;
use crate::duration::human;
use crate::inbox;
use crate::instance::{Displaced, Ownership};
use crate::state::StateStore;
use crate::tmux::{Tmux, TmuxError};
use crate::town::Town;

pub(crate) const MAYOR_POKE: &str = "HEARTBEAT: check your rigs";
pub(crate) const WITNESS_POKE: &str = "HEARTBEAT: check your workers";

/// Pruning walks whole directories: often enough to bound them, rarely
/// enough to cost nothing.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How often ownership of the town is checked, whatever the interval:
/// until a displaced daemon notices, a new one may run beside it.
const OWNERSHIP_CHECK_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Heartbeat {
    pub town: Town,
    pub keep_processed: Duration,
    pub keep_failed: Duration,
    pub tmux: Tmux,
    pub interval: Duration,
    pub dry_run: bool,
    pub state: Arc<StateStore>,
    pub stop: Arc<StopFlag>,
    /// Sessions a request is restarting: not to be poked meanwhile.
    pub held: Arc<HeldSessions>,
    /// What the daemon locked.
    pub ownership: Ownership,
    /// Wakes the consumer when the heartbeat stops the daemon.
    pub wake: SyncSender<Message>,
    pub metrics: Arc<Metrics>,
}

impl Heartbeat {
    /// Beats now, then every interval, until the stop. Returns why it
    /// stopped the daemon itself: the town is no longer the one it locked.
    pub(crate) fn run(self) -> Option<Displaced> {
        let mut last_prune: Option<Instant> = None;
        let mut next_beat = Instant::now();
        loop {
            if let Err(displaced) = self.ownership.verify() {
                self.stop.set();
                let _ = self.wake.try_send(Message::Stop);
                return Some(displaced);
            }
            if Instant::now() >= next_beat {
                if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                    self.prune();
                    last_prune = Some(Instant::now());
                }
                self.beat();
                next_beat = Instant::now() + self.interval;
            }
            let nap = next_beat
                .saturating_duration_since(Instant::now())
                .min(OWNERSHIP_CHECK_EVERY);
            if self.stop.wait(nap) {
                return None;
            }
        }
    }

    fn prune(&self) {
        let now = std::time::SystemTime::now();
        for (dir, keep, key) in [
            (self.town.processed(), self.keep_processed, "keep_processed"),
            (self.town.failed(), self.keep_failed, "keep_failed"),
        ] {
            let removed = retention::prune(&dir, keep, now);
            if removed > 0 {
                tracing::info!(removed, dir = %dir.display(), "pruned outcomes older than {key} ({})", human(keep));
            }
        }
    }

    fn beat(&self) {
        let poked = if self.town.shutdown_lock().exists() {
            tracing::info!("town is shutting down (shutdown.lock): no pokes");
            0
        } else if self.dry_run {
            tracing::debug!("dry run: no pokes");
            0
        } else {
            self.poke()
        };
        let pending = inbox::pending_count(&self.town.inbox());
        let result = self.state.update(|s| {
            s.last_heartbeat = Some(Utc::now());
            s.heartbeat_count += 1;
            s.inbox_pending = pending;
        });
        self.metrics.heartbeat();
        match result {
            Ok(()) => tracing::debug!(poked, pending, "heartbeat"),
            Err(e) => tracing::error!("heartbeat cannot write state.json: {e}"),
        }
    }

    /// Pokes the Mayor and every Witness; returns how many were poked.
    fn poke(&self) -> usize {
        let sessions = match self.tmux.list_sessions() {
            Ok(s) => s,
            Err(TmuxError::NoServer(_)) => {
                tracing::info!("heartbeat: no tmux server is running, nobody to poke");
                return 0;
            }
            Err(e) => {
                tracing::warn!("heartbeat: cannot list tmux sessions: {e}");
                return 0;
            }
        };
        let mut poked = 0;
        for session in sessions {
            let text = if session == "gt-mayor" {
                MAYOR_POKE
            } else if session.starts_with("gt-") && session.ends_with("-witness") {
                WITNESS_POKE
            } else {
                continue;
            };
            match self
                .held
                .unless_held(&session, || self.tmux.send_line(&session, text))
            {
                Some(Ok(())) => poked += 1,
                Some(Err(e)) => tracing::warn!(session, "heartbeat: cannot poke: {e}"),
                None => tracing::debug!(session, "heartbeat: not poking a session being restarted"),
            }
        }
        poked
    }
}
