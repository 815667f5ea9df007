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
//! about least recently are forgotten. Its size is bounded too, since
//! other users of the machine may be able to write to the town: each
//! decision keeps a short reason and only the end of a captured pane, and
//! past [`MAX_BYTES`] the oldest decisions are forgotten; it is read only
//! up to that size, and never blocks on a FIFO put in its place.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::town::Town;

/// Decisions kept per agent for `explain`.
const DECISIONS_KEPT: usize = 30;

/// Agents remembered at most: far more than a town supervises.
pub const MAX_AGENTS: usize = 1000;

/// The most supervise.json holds, and so the most of it that is read. A
/// town's is a few kilobytes; past this the oldest decisions are
/// forgotten first.
pub const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// A decision's reason is kept up to this many bytes.
const WHY_KEPT: usize = 1024;

/// The end of a dead pane kept with a decision, in bytes: enough to tell
/// why it died; the whole capture is filed beside the restart's record
/// (`NAME.pane.txt`).
const CAPTURE_KEPT: usize = 4096;

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
    /// Its reason and capture are cut to [`WHY_KEPT`] and [`CAPTURE_KEPT`].
    pub fn note(&mut self, at: DateTime<Utc>, what: &str, why: String, capture: Option<String>) {
        self.decisions.push(Decision {
            at,
            what: what.into(),
            why: head(why, WHY_KEPT),
            capture: capture.map(|c| tail(c, CAPTURE_KEPT)),
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

    /// Forgets, while the file would be over `budget` bytes, the oldest
    /// decisions, then (none left) agents; reasons are cut to
    /// [`WHY_KEPT`].
    fn fit(&mut self, budget: usize) {
        for record in self.agents.values_mut() {
            if let AgentState::Quarantined { why, .. } = &mut record.state {
                *why = head(std::mem::take(why), WHY_KEPT);
            }
        }
        if let Some(paused) = &mut self.paused {
            paused.why = head(std::mem::take(&mut paused.why), WHY_KEPT);
        }
        loop {
            let size = serde_json::to_vec_pretty(self).map_or(usize::MAX, |b| b.len() + 1);
            let Some(mut excess) = size.checked_sub(budget).filter(|&e| e > 0) else {
                return;
            };
            // Each agent's decisions are in the order they were made, so
            // the oldest of all are a first few of each agent's.
            let mut all: Vec<(DateTime<Utc>, String, usize)> = self
                .agents
                .iter()
                .flat_map(|(session, record)| {
                    record.decisions.iter().map(move |d| {
                        // As written, with the indentation it has there.
                        let len = serde_json::to_vec(d).map_or(0, |b| b.len()) + 64;
                        (d.at, session.clone(), len)
                    })
                })
                .collect();
            if all.is_empty() {
                let Some(session) = self.agents.keys().next().cloned() else {
                    return;
                };
                self.agents.remove(&session);
                continue;
            }
            all.sort();
            let mut forget: BTreeMap<String, usize> = BTreeMap::new();
            for (_, session, len) in all {
                if excess == 0 {
                    break;
                }
                *forget.entry(session).or_default() += 1;
                excess = excess.saturating_sub(len);
            }
            for (session, n) in forget {
                if let Some(record) = self.agents.get_mut(&session) {
                    record.decisions.drain(..n.min(record.decisions.len()));
                }
            }
        }
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), ending in
/// `…` when cut.
fn head(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The last `max` bytes of `text` or fewer (from a character boundary),
/// starting with `…` when cut.
fn tail(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Reads and changes `supervise.json` under its lock.
pub fn update<R>(town: &Town, change: impl FnOnce(&mut Memory) -> (R, bool)) -> io::Result<R> {
    let (file, lock) = (town.supervise_file(), town.supervise_lock());
    crate::fs::locked_update(&file, &lock, MAX_BYTES, |memory: &mut Memory| {
        let (answer, changed) = change(memory);
        if changed {
            memory.cap(MAX_AGENTS);
            memory.fit(MAX_BYTES as usize);
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

/// The current memory (empty when supervision never ran). An error names
/// the file and says why it cannot be read: not a regular file, over
/// [`MAX_BYTES`], not what the daemon writes.
pub fn load(town: &Town) -> io::Result<Memory> {
    crate::fs::read_json(&town.supervise_file(), MAX_BYTES)
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
    fn the_file_stays_under_its_size_the_oldest_decisions_going_first() {
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut memory = Memory::default();
        for i in 0..100 {
            let record = memory
                .agents
                .entry(format!("gt-rig{i}-witness"))
                .or_default();
            for j in 0..DECISIONS_KEPT as i64 {
                let at = t0 + chrono::Duration::seconds(j * 100 + i);
                let capture = format!("{}the end {i} {j}", "é".repeat(100_000));
                record.note(at, "restart", "why ".repeat(1000), Some(capture));
            }
        }
        let kept = &memory.agents["gt-rig7-witness"].decisions[0];
        assert!(kept.why.len() <= WHY_KEPT && kept.why.ends_with('…'));
        let capture = kept.capture.as_deref().unwrap();
        assert!(capture.len() <= CAPTURE_KEPT, "{}", capture.len());
        assert!(capture.starts_with('…') && capture.ends_with("the end 7 0"));

        let budget = 2 * 1024 * 1024;
        memory.fit(budget);
        let size = serde_json::to_vec_pretty(&memory).unwrap().len() + 1;
        assert!(size <= budget, "{size} bytes");
        assert!(size > budget / 2, "not more forgotten than needed: {size}");
        // What is left is each agent's newest decisions.
        for (session, record) in &memory.agents {
            let i = session.strip_prefix("gt-rig").unwrap();
            let i = i.strip_suffix("-witness").unwrap();
            let newest = format!("the end {i} {}", DECISIONS_KEPT - 1);
            let last = record.decisions.last().and_then(|d| d.capture.as_deref());
            assert!(last.is_some_and(|c| c.ends_with(&newest)), "{session}");
            assert!(record.decisions.len() < DECISIONS_KEPT, "{session}");
        }
    }

    #[test]
    fn a_memory_that_cannot_be_read_says_why_and_is_replaced_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        std::os::unix::fs::symlink("/dev/zero", town.supervise_file()).unwrap();
        let e = load(&town).unwrap_err().to_string();
        assert!(
            e.contains("supervise.json") && e.contains("symbolic link"),
            "{e}"
        );
        assert!(resume(&town, None, "a test").is_ok());
        assert_eq!(load(&town).unwrap(), Memory::default());
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
        let left: Vec<String> = load(&town).unwrap().agents.into_keys().collect();
        assert_eq!(left, ["gt-deacon", "gt-mayor"]);
    }
}
