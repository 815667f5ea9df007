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
    /// Why the tmux server looks wedged (its last calls all timed out),
    /// as of the last heartbeat; null while it answers.
    #[serde(default)]
    pub tmux_error: Option<String>,
    /// Why supervision cannot act (its memory, supervise.json, cannot be
    /// written), while it cannot; null otherwise.
    #[serde(default)]
    pub supervision_error: Option<String>,
    /// The settings this daemon runs with, for `status`: how it watches the
    /// inbox (`notify`, or `poll` when asked or when notify could not be set
    /// up), its heartbeat interval and its tmux socket.
    pub watch_mode: Option<String>,
    pub heartbeat_interval_secs: Option<u64>,
    pub tmux_socket: Option<String>,
    /// Session → when the heartbeat last poked it (sessions that still
    /// exist).
    pub last_pokes: BTreeMap<String, DateTime<Utc>>,
    /// Session → what the daemon sees of that agent at work: every agent
    /// it pokes or supervises, while it looks at them (docs/agents.md).
    pub liveness: BTreeMap<String, AgentLiveness>,
}

/// An agent's state, from what its pane shows (docs/agents.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Its screen moved recently.
    Working,
    /// Quiet, and answering its pokes (or never poked).
    Idle,
    /// Quiet for `stall_after`, and its last `stall_pokes` pokes or more
    /// went unanswered.
    Stalled,
    /// Its screen's last lines ask a person something
    /// (`human_prompt_patterns`).
    WaitingForPerson,
    /// Its session is missing, or its pane's process has exited.
    Dead,
}

impl Activity {
    pub const ALL: [Activity; 5] = [
        Activity::Working,
        Activity::Idle,
        Activity::Stalled,
        Activity::WaitingForPerson,
        Activity::Dead,
    ];

    /// As state.json and the metrics labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Working => "working",
            Activity::Idle => "idle",
            Activity::Stalled => "stalled",
            Activity::WaitingForPerson => "waiting_for_person",
            Activity::Dead => "dead",
        }
    }

    /// In words, for people.
    pub fn words(self) -> &'static str {
        match self {
            Activity::WaitingForPerson => "waiting for a person",
            other => other.as_str(),
        }
    }
}

/// One agent's entry in `state.json`'s `liveness`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLiveness {
    pub state: Activity,
    /// When it entered that state.
    pub since: DateTime<Utc>,
    /// Its own pane (`%N`); null while its session is missing.
    pub pane: Option<String>,
    /// When the daemon began watching this pane: nothing seen before (an
    /// earlier run of the agent, another pane) counts.
    pub watched_since: DateTime<Utc>,
    /// When its screen last moved other than by the daemon's own typing;
    /// null: not since `watched_since`.
    pub screen_moved_at: Option<DateTime<Utc>>,
    /// Pokes in a row that went unanswered (its screen did not move
    /// within `answer_within` of them).
    pub unanswered_pokes: u32,
    /// The line of its screen that asks a person something, as shown.
    pub prompt: Option<String>,
    /// Its last pokes, oldest first, and what became of each.
    pub pokes: Vec<PokeRecord>,
}

impl AgentLiveness {
    /// Since when its screen has been still.
    pub fn quiet_since(&self) -> DateTime<Utc> {
        self.screen_moved_at.unwrap_or(self.watched_since)
    }
}

/// One poke and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PokeRecord {
    /// When its text was typed (then Enter).
    pub at: DateTime<Utc>,
    pub delivery: Delivery,
    pub answer: Answer,
    /// When its answer was seen (the screen moving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
}

/// Whether a poke's text was submitted, as the pane showed it a moment
/// after (`poke_confirm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Not yet looked at.
    Pending,
    /// Gone from the input line at the first look.
    Delivered,
    /// Still on the input line at the first look; gone after Enter was
    /// pressed once more.
    Resubmitted,
    /// Still on the input line after that Enter too, or its pane went.
    Unconfirmed,
}

/// Whether the agent answered a poke: its screen moved within
/// `answer_within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Pending,
    Answered,
    Unanswered,
}

impl Delivery {
    pub const ALL: [Delivery; 3] = [
        Delivery::Delivered,
        Delivery::Resubmitted,
        Delivery::Unconfirmed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "pending",
            Delivery::Delivered => "delivered",
            Delivery::Resubmitted => "resubmitted",
            Delivery::Unconfirmed => "unconfirmed",
        }
    }
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Pending => "pending",
            Answer::Answered => "answered",
            Answer::Unanswered => "unanswered",
        }
    }
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
