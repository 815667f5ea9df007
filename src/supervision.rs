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
//!
//! It is rewritten and fsynced at each change, and `status` prints it
//! whole, so it holds supervised agents only: requests for other agents
//! never add to it, the supervisor forgets the agents it no longer
//! supervises when it starts, and past [`MAX_AGENTS`] the agents decided
//! about least recently are forgotten.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::town::Town;

/// Decisions kept per agent for `explain`.
const DECISIONS_KEPT: usize = 30;

/// Agents remembered at most: far more than a town supervises.
pub const MAX_AGENTS: usize = 1000;

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
    /// Its restart was cut short by a daemon stop (a crash, or a stop
    /// within `prime_delay`): it may run unprimed, so it is restarted at
    /// the next look, alive or not.
    Interrupted { since: DateTime<Utc> },
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

impl Memory {
    /// Forgets, past `max` agents, those decided about least recently.
    fn cap(&mut self, max: usize) {
        let excess = self.agents.len().saturating_sub(max);
        if excess == 0 {
            return;
        }
        let mut last: Vec<(Option<DateTime<Utc>>, String)> = self
            .agents
            .iter()
            .map(|(session, record)| (record.decisions.last().map(|d| d.at), session.clone()))
            .collect();
        last.sort_unstable();
        for (_, session) in last.into_iter().take(excess) {
            self.agents.remove(&session);
        }
    }
}

/// Reads and changes `supervise.json` under its lock.
pub fn update<R>(town: &Town, change: impl FnOnce(&mut Memory) -> (R, bool)) -> io::Result<R> {
    crate::fs::locked_update(&town.supervise_file(), &town.supervise_lock(), |memory| {
        let (answer, changed) = change(memory);
        if changed {
            memory.cap(MAX_AGENTS);
        }
        (answer, changed)
    })
}

/// Forgets every agent but the `supervised` sessions; how many were
/// forgotten.
pub fn keep_only(town: &Town, supervised: &[String]) -> io::Result<usize> {
    update(town, |memory| {
        let before = memory.agents.len();
        memory
            .agents
            .retain(|session, _| supervised.contains(session));
        let forgotten = before - memory.agents.len();
        (forgotten, forgotten > 0)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_decided_about_least_recently_go_past_the_cap() {
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut memory = Memory::default();
        for i in 0..5000 {
            let record = memory
                .agents
                .entry(format!("gt-rig{i}-witness"))
                .or_default();
            let at = t0 + chrono::Duration::seconds(i);
            record.note(at, "stopped", "a shutdown request".into(), None);
        }
        memory.agents.entry("gt-never-decided".into()).or_default();
        memory.cap(3);
        let left: Vec<&String> = memory.agents.keys().collect();
        assert_eq!(
            left,
            [
                "gt-rig4997-witness",
                "gt-rig4998-witness",
                "gt-rig4999-witness"
            ]
        );
    }

    #[test]
    fn only_the_supervised_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        update(&town, |memory| {
            for session in ["gt-mayor", "gt-old-witness", "gt-deacon"] {
                memory.agents.entry(session.into()).or_default();
            }
            ((), true)
        })
        .unwrap();
        let supervised = ["gt-mayor".to_string(), "gt-deacon".to_string()];
        assert_eq!(keep_only(&town, &supervised).unwrap(), 1);
        assert_eq!(keep_only(&town, &supervised).unwrap(), 0);
        let left: Vec<String> = load(&town).agents.into_keys().collect();
        assert_eq!(left, ["gt-deacon", "gt-mayor"]);
    }
}
