//! Supervision's memory ([`Memory`]): for each supervised agent, what
//! state it is in and the recent decisions about it, with their reasons
//! and inputs ([`AgentRecord`]); and whether supervision as a whole is
//! paused.
//!
//! It lives in `daemon/supervise.json` (named after the config key that
//! turns supervision on) so a restarted daemon remembers a quarantine or a
//! deliberate stop, and so `status`, `explain`, `supervise resume` and
//! `clear-backoff` (other processes) can read and change it; both sides do
//! read-modify-write under an flock. The daemon's side is
//! `daemon::supervisor`: the thread that looks at the agents, and its
//! policy.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::town::Town;

/// Decisions kept per agent for `explain`.
const DECISIONS_KEPT: usize = 30;

/// What supervision is doing about one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    /// Not yet looked at.
    #[default]
    Unknown,
    /// Alive, since about then (when supervision last saw it start).
    Running { since: DateTime<Utc> },
    /// Died; restarted no earlier than `until`.
    Backoff { until: DateTime<Utc> },
    /// Died too often; left alone until `until`, then tried again.
    Quarantined { until: DateTime<Utc>, why: String },
    /// A `shutdown` request stopped it: left alone until a `restart` or
    /// `cycle` request for it, or `gt daemon supervise resume`.
    StoppedOnRequest { since: DateTime<Utc> },
}

/// One decision, with what it was based on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub at: DateTime<Utc>,
    /// What was decided: "alive", "restart", "backoff", "quarantine", ...
    pub what: String,
    /// Why, in words.
    pub why: String,
    /// The last lines of a dead pane, saved before it was replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
}

/// What supervision remembers of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentRecord {
    #[serde(flatten)]
    pub state: AgentState,
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

impl AgentRecord {
    /// Remembers a decision, keeping the last [`DECISIONS_KEPT`].
    pub fn note(&mut self, at: DateTime<Utc>, what: &str, why: String, capture: Option<String>) {
        self.decisions.push(Decision {
            at,
            what: what.into(),
            why,
            capture,
        });
        let excess = self.decisions.len().saturating_sub(DECISIONS_KEPT);
        self.decisions.drain(..excess);
    }
}

/// Supervision as a whole, paused after several agents died at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub why: String,
}

/// The whole of `supervise.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Memory {
    /// Keyed by the agent's tmux session (`gt-mayor`,
    /// `gt-gastown-witness`): the one name every part of the daemon and
    /// `status` print for it.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
}

/// Reads and changes `supervise.json` under its lock.
pub fn update<R>(town: &Town, change: impl FnOnce(&mut Memory) -> (R, bool)) -> io::Result<R> {
    crate::fs::locked_update(&town.supervise_file(), &town.supervise_lock(), change)
}

/// The current memory (empty when supervision never ran).
pub fn load(town: &Town) -> Memory {
    std::fs::read(town.supervise_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Ends a pause, a deliberate stop or a quarantine by hand: for one agent
/// (`Some` of its session, whose restart count starts afresh too), or the
/// pause of supervision as a whole (`None`). True when something was
/// ended.
pub fn resume(town: &Town, session: Option<&str>, by: &str) -> io::Result<bool> {
    let resumed = update(town, |s| {
        let now = Utc::now();
        match session {
            None => (s.paused.take().is_some(), true),
            Some(session) => {
                let entry = s.agents.entry(session.to_string()).or_default();
                let held = matches!(
                    entry.state,
                    AgentState::StoppedOnRequest { .. }
                        | AgentState::Quarantined { .. }
                        | AgentState::Backoff { .. }
                );
                if held {
                    entry.state = AgentState::Unknown;
                    entry.note(now, "resume", format!("resumed by {by}"), None);
                }
                (held, held)
            }
        }
    })?;
    if let (true, Some(session)) = (resumed, session) {
        crate::crash_loop::clear(town, session)?;
    }
    Ok(resumed)
}
