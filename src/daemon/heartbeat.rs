//! The heartbeat: on its own thread so a slow restart in the
//! consumer never delays a poke, and a hung tmux never delays a request.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::retention;
use super::execute::HeldSessions;
use super::stop::StopFlag;
use crate::duration::human;
use crate::inbox;
use crate::state::StateStore;
use crate::tmux::{Tmux, TmuxError};
use crate::town::Town;

pub(crate) const MAYOR_POKE: &str = "HEARTBEAT: check your rigs";
pub(crate) const WITNESS_POKE: &str = "HEARTBEAT: check your workers";

/// Pruning walks whole directories: often enough to bound them, rarely
/// enough to cost nothing.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

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
}

impl Heartbeat {
    /// Beats now, then every interval, until the stop.
    pub(crate) fn run(self) {
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                self.prune();
                last_prune = Some(std::time::Instant::now());
            }
            self.beat();
            if self.stop.wait(self.interval) {
                return;
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
