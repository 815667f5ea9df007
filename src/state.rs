//! `state.json`: what the daemon tells the world about itself.
//!
//! Readers (`status`, scripts, other agents) may read at any moment, so the
//! file is only ever replaced whole: temp file in the same directory, fsync,
//! rename.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The original Go daemon's field names first (scripts read them), then ours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub running: bool,
    pub pid: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub heartbeat_count: u64,
    pub town_root: PathBuf,
    pub version: String,
    pub requests_processed: u64,
    pub requests_failed: u64,
    pub inbox_pending: u64,
    pub last_request_at: Option<DateTime<Utc>>,
    pub dry_run: bool,
    /// Executed requests whose outcome waits to be filed (a full disk, an
    /// outcome directory gone), and the last reason filing failed.
    pub outcomes_unfiled: u64,
    pub filing_error: Option<String>,
    /// Why the metrics endpoint is not serving, while it is not (it
    /// restarts itself); null when it serves or is not configured.
    pub metrics_endpoint_error: Option<String>,
    /// The settings this daemon runs with, for `status`: how it watches the
    /// inbox (`notify`, or `poll` when asked or when notify could not be set
    /// up), its heartbeat interval and its tmux socket.
    pub watch_mode: Option<String>,
    pub heartbeat_interval_secs: Option<u64>,
    pub tmux_socket: Option<String>,
    /// Session → when the heartbeat last poked it (sessions that still
    /// exist).
    pub last_pokes: BTreeMap<String, DateTime<Utc>>,
}

/// The most of state.json that is read. The daemon's is a kilobyte or
/// two, plus a line per agent session the heartbeat pokes; a larger file
/// (or a FIFO, a device) was not written by the daemon.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;

impl State {
    /// Reads the file as [`crate::fs::read_bounded`] does (never blocking,
    /// at most [`MAX_BYTES`]); a missing file is the default (never ran).
    /// An error names the file and says what is wrong with it.
    pub fn load(path: &Path) -> io::Result<State> {
        crate::fs::read_json(path, MAX_BYTES)
    }

    /// Do this state's counters include the outcome filed with `sidecar`?
    /// Yes when another daemon filed it (nothing to wait for), or when the
    /// counters have reached its number; `None` when it carries none (an
    /// older daemon's).
    pub fn counts(&self, sidecar: &crate::outcome::Sidecar) -> Option<bool> {
        let seq = sidecar.seq?;
        Some(
            self.pid != sidecar.daemon_pid
                || !self.running
                || self.requests_processed + self.requests_failed >= seq,
        )
    }

    /// Replaces the file atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        bytes.push(b'\n');
        crate::fs::write_atomic(path, &bytes, None)
    }
}

/// How long after the last heartbeat the daemon counts as degraded (it may
/// hang): two intervals and 10 s. `status`, `/healthz` and the degraded
/// notification all use this.
pub fn heartbeat_overdue_after(interval: Duration) -> Duration {
    interval
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(10))
}

/// The daemon's live state, shared by the consumer and the heartbeat thread.
/// The mutex also serialises writers of the file.
pub struct StateStore {
    path: PathBuf,
    state: Mutex<State>,
}

impl StateStore {
    pub fn new(path: PathBuf, initial: State) -> Self {
        StateStore {
            path,
            state: Mutex::new(initial),
        }
    }

    /// Reads the live state without writing it.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies `change` and writes the result.
    pub fn update(&self, change: impl FnOnce(&mut State)) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut state);
        state.save(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_seed_field_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = State {
            running: true,
            pid: 42,
            heartbeat_count: 3,
            ..State::default()
        };
        state.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            "running",
            "pid",
            "started_at",
            "last_heartbeat",
            "heartbeat_count",
        ] {
            assert!(
                text.contains(&format!("\"{key}\"")),
                "{key} missing in {text}"
            );
        }
        assert_eq!(State::load(&path).unwrap(), state);
        // No temp files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
