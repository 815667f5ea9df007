//! Supervision's policy: given what supervision remembers of the agents
//! (their [`AgentRecord`]s), their restart counts, what one check saw of
//! each ([`Seen`]) and the time, what to do ([`Plan`]) and what to
//! remember.
//!
//! Pure: no tmux, no files, no clock, no log. The supervisor thread
//! ([`super::Supervisor`]) looks, reads and writes `supervise.json` around
//! it, and carries out the plan (restarts, alerts, metrics).
//!
//! An agent that is not alive is judged in two steps. First its state:
//! a deliberate stop, a wait still running, a wait just over, the first
//! look at a fresh start. Then, if none of those, a failure ([`Failure`]):
//! counted (a crash) or not (exit 0, `not_a_crash`), which restarts it at
//! once, after a backoff, or quarantines it. An agent the look at the
//! agents found stalled (with `stall_action: "restart"`) is one more
//! [`Seen`], a counted failure like a crash.
//!
//! Deaths are counted by the restarts that follow them, in the one record
//! of an agent's restarts, the crash-loop guard's ([`crate::crash_loop`]):
//! an agent restarted after `n` crashes within `restart_window` that
//! crashes again has died `n + 1` times. Restarts that follow no crash
//! (the start of an agent missing when supervision began, an exit that is
//! not a crash, the retry after a quarantine) are not recorded. A
//! quarantine's end and a stable run clear the record. Supervision never
//! asks for a restart the guard would refuse (`max_restarts` restarts of
//! any kind within the window, requests' too): it quarantines the agent
//! instead.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::duration::human;
use crate::supervision::{AgentRecord, AgentState, Memory, Paused};
use crate::tmux::Exit;

/// The settings the policy follows (config keys of the same names).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) max_restarts: u32,
    pub(crate) restart_window: Duration,
    pub(crate) stable_after: Duration,
    pub(crate) backoff: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) quarantine: Duration,
    pub(crate) not_a_crash: Vec<String>,
    pub(crate) mass_death: usize,
    pub(crate) mass_death_window: Duration,
    pub(crate) mass_death_pause: Duration,
}

impl Policy {
    pub(crate) fn of(c: &Config) -> Self {
        Policy {
            max_restarts: c.max_restarts,
            restart_window: c.restart_window,
            stable_after: c.stable_after,
            backoff: c.supervise_backoff,
            backoff_max: c.supervise_backoff_max,
            quarantine: c.quarantine,
            not_a_crash: c.not_a_crash.clone(),
            mass_death: c.mass_death,
            mass_death_window: c.mass_death_window,
            mass_death_pause: c.mass_death_pause,
        }
    }

    /// The wait before restarting after the `count`-th death within the
    /// window: none for the first, then `backoff` doubling with each death,
    /// at most `backoff_max`.
    pub(crate) fn backoff_for(&self, count: usize) -> Duration {
        if count <= 1 {
            return Duration::ZERO;
        }
        let doublings = (count - 2).min(16) as u32;
        self.backoff
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }

    /// Does the pane say that the agent stopped for a reason that is not a
    /// crash (a usage limit, say)?
    fn not_a_crash(&self, capture: Option<&str>) -> bool {
        capture.is_some_and(|text| {
            self.not_a_crash
                .iter()
                .any(|p| !p.is_empty() && text.contains(p.as_str()))
        })
    }
}

/// What one look at an agent saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Its session exists and its own pane's process runs.
    Alive,
    /// Its session is missing (`exit` is `None`), or its own pane's
    /// process exited with `exit`; `capture` holds the pane's last lines.
    Dead {
        exit: Option<Exit>,
        capture: Option<String>,
    },
    /// Alive, but stalled (`why`: for how long, how many pokes went
    /// unanswered); `capture` holds the pane's last lines.
    Stalled {
        why: String,
        capture: Option<String>,
    },
}

/// One agent, as one check saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Look {
    pub(crate) session: String,
    pub(crate) seen: Seen,
}

impl Look {
    fn capture(&self) -> Option<String> {
        match &self.seen {
            Seen::Dead { capture, .. } | Seen::Stalled { capture, .. } => capture.clone(),
            Seen::Alive => None,
        }
    }

    /// Why a restart is asked for, as the restart metric labels it (an
    /// agent seen alive is only restarted when its last restart was cut
    /// short).
    fn cause(&self) -> &'static str {
        match self.seen {
            Seen::Dead { exit: None, .. } => "session_missing",
            Seen::Dead { exit: Some(_), .. } => "pane_exited",
            Seen::Stalled { .. } => "stalled",
            Seen::Alive => "interrupted",
        }
    }
}

/// An agent that stopped doing its job, as the policy weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// In words, for the log and `explain`.
    pub(crate) why: String,
    /// Counted toward backoff and quarantine (a crash), or not (it exited
    /// with status 0, or its pane shows one of `not_a_crash`).
    pub(crate) counted: bool,
}

impl Failure {
    /// What `seen` says failed, if anything.
    fn of(seen: &Seen, policy: &Policy) -> Option<Failure> {
        match seen {
            Seen::Alive => None,
            Seen::Dead { exit, capture } => Some(Failure {
                why: match exit {
                    None => "session missing".to_string(),
                    Some(exit) => format!("agent {exit}"),
                },
                counted: !exit.is_some_and(Exit::clean) && !policy.not_a_crash(capture.as_deref()),
            }),
            // Restarting it is what a crash costs: it counts the same.
            Seen::Stalled { why, .. } => Some(Failure {
                why: why.clone(),
                counted: true,
            }),
        }
    }
}

/// What supervision keeps between checks beside `supervise.json`.
#[derive(Debug, Default)]
pub(crate) struct Round {
    /// The daemon's first look: agents missing now are started, not dead.
    pub(crate) first: bool,
    /// Recent deaths of any supervised agent, for the mass-death pause.
    deaths: VecDeque<(DateTime<Utc>, String)>,
}

impl Round {
    pub(crate) fn first() -> Self {
        Round {
            first: true,
            deaths: VecDeque::new(),
        }
    }
}

/// A restart the policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) session: String,
    pub(crate) why: String,
    /// The restart metric's label.
    pub(crate) cause: &'static str,
    pub(crate) capture: Option<String>,
    /// The agent's restart count starts afresh first (a quarantine over,
    /// a stable run).
    pub(crate) afresh: bool,
    /// The restart follows a crash, and is recorded as such.
    pub(crate) after_crash: bool,
}

/// An agent's restarts within `restart_window`, as the crash-loop guard
/// records them: all of them, and those that followed a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Restarts {
    pub(crate) all: usize,
    pub(crate) after_crash: usize,
}

/// What one check decided, for the supervisor to carry out.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) restarts: Vec<Planned>,
    /// Agents made to wait: session, why.
    pub(crate) backoffs: Vec<(String, String)>,
    /// Agents quarantined now: session, why.
    pub(crate) quarantined: Vec<(String, String)>,
    /// Supervision paused now: the sessions that died together, and why.
    pub(crate) paused: Option<(Vec<String>, String)>,
    /// The memory changed and must be written.
    pub(crate) changed: bool,
}

/// What the state of a dead agent says before its death is weighed.
enum Case {
    /// Nothing to do: stopped on request, or still waiting.
    Leave,
    /// Restart it, for this reason; `afresh`: its count starts again;
    /// `after_crash`: the restart follows a crash.
    Retry {
        why: &'static str,
        afresh: bool,
        after_crash: bool,
    },
    /// A new death, to weigh.
    Death(Failure),
}

fn case(
    record: &AgentRecord,
    failure: Failure,
    seen: &Seen,
    now: DateTime<Utc>,
    first: bool,
) -> Case {
    match &record.state {
        AgentState::StoppedOnRequest { .. } => Case::Leave,
        AgentState::Quarantined { until, .. } | AgentState::Backoff { until } if *until > now => {
            Case::Leave
        }
        // The crash it waited after is counted by this restart.
        AgentState::Backoff { .. } => Case::Retry {
            why: "its backoff is over",
            afresh: false,
            after_crash: true,
        },
        AgentState::Quarantined { .. } => Case::Retry {
            why: "its quarantine is over",
            afresh: true,
            after_crash: false,
        },
        AgentState::Unknown if first && matches!(seen, Seen::Dead { exit: None, .. }) => {
            Case::Retry {
                why: "not running when supervision began",
                afresh: false,
                after_crash: false,
            }
        }
        _ => Case::Death(failure),
    }
}

/// Decides about every agent `looks` saw, and records the decisions in
/// `memory`; `restarts` holds each session's restarts within the window
/// (none: 0). Deaths of several agents within `mass_death_window`
/// pause supervision instead of restarting anyone.
pub(crate) fn decide(
    policy: &Policy,
    memory: &mut Memory,
    looks: &[Look],
    restarts: &HashMap<String, Restarts>,
    now: DateTime<Utc>,
    round: &mut Round,
) -> Plan {
    let mut plan = Plan::default();
    let mut deaths: Vec<(&Look, Failure, Restarts)> = Vec::new();
    for look in looks {
        let record = memory.agents.entry(look.session.clone()).or_default();
        let count = restarts.get(&look.session).copied().unwrap_or_default();
        if let AgentState::Interrupted { .. } = record.state {
            // Alive or not, it may never have been primed.
            let start = Start {
                why: "its last restart was cut short by a daemon stop (it may run unprimed)".into(),
                afresh: false,
                after_crash: false,
            };
            plan.start_or_hold(policy, record, look, start, count, now);
            continue;
        }
        let Some(failure) = Failure::of(&look.seen, policy) else {
            if !matches!(
                record.state,
                AgentState::Running { .. } | AgentState::StoppedOnRequest { .. }
            ) {
                record.state = AgentState::Running { since: now };
                record.note(now, "alive", "the agent is running".into(), None);
                plan.changed = true;
            }
            continue;
        };
        match case(record, failure, &look.seen, now, round.first) {
            Case::Leave => {}
            Case::Retry {
                why,
                afresh,
                after_crash,
            } => {
                let start = Start {
                    why: why.to_string(),
                    afresh,
                    after_crash,
                };
                plan.start_or_hold(policy, record, look, start, count, now);
            }
            Case::Death(failure) => deaths.push((look, failure, count)),
        }
    }
    if deaths.is_empty() && plan.restarts.is_empty() {
        return plan;
    }
    plan.changed = true;
    if mass_death(policy, &deaths, now, round) {
        pause(policy, memory, &deaths, now, round, &mut plan);
        return plan;
    }
    for (look, failure, count) in deaths {
        let record = memory.agents.entry(look.session.clone()).or_default();
        weigh(policy, record, look, failure, count, now, &mut plan);
    }
    for r in &plan.restarts {
        let record = memory.agents.entry(r.session.clone()).or_default();
        record.note(now, "restart", r.why.clone(), r.capture.clone());
        record.state = AgentState::Running { since: now };
    }
    plan
}

/// A restart about to be planned.
struct Start {
    why: String,
    afresh: bool,
    after_crash: bool,
}

impl Plan {
    /// Plans the restart, unless the agent's count is full (the guard
    /// would refuse it): then it is quarantined.
    fn start_or_hold(
        &mut self,
        policy: &Policy,
        record: &mut AgentRecord,
        look: &Look,
        start: Start,
        restarts: Restarts,
        now: DateTime<Utc>,
    ) {
        let count = if start.afresh { 0 } else { restarts.all };
        if count >= policy.max_restarts as usize {
            let why = format!(
                "{}, but the crash-loop guard holds it: {count} restarts within {} \
                 (max_restarts {})",
                start.why,
                human(policy.restart_window),
                policy.max_restarts,
            );
            self.quarantine(policy, record, look, why, now);
            return;
        }
        self.restarts.push(Planned {
            session: look.session.clone(),
            why: start.why,
            cause: look.cause(),
            capture: look.capture(),
            afresh: start.afresh,
            after_crash: start.after_crash,
        });
    }

    /// Leaves the agent alone for `quarantine`: `why` says why, then
    /// `gt daemon clear-backoff` or the end of the quarantine.
    fn quarantine(
        &mut self,
        policy: &Policy,
        record: &mut AgentRecord,
        look: &Look,
        why: String,
        now: DateTime<Utc>,
    ) {
        let why = format!(
            "{why}: quarantined for {}, or until `gt daemon clear-backoff`",
            human(policy.quarantine)
        );
        let until = now + chrono::Duration::from_std(policy.quarantine).unwrap_or_default();
        record.note(now, "quarantine", why.clone(), look.capture());
        record.state = AgentState::Quarantined {
            until,
            why: why.clone(),
        };
        self.quarantined.push((look.session.clone(), why));
        self.changed = true;
    }
}

/// Counts the new deaths among the recent ones: have `mass_death`
/// distinct agents died within `mass_death_window`? One agent dying again
/// and again is a crash loop (backoff and quarantine), not a mass death.
fn mass_death(
    policy: &Policy,
    deaths: &[(&Look, Failure, Restarts)],
    now: DateTime<Utc>,
    round: &mut Round,
) -> bool {
    let window =
        chrono::Duration::from_std(policy.mass_death_window).unwrap_or(chrono::Duration::MAX);
    // Deaths only: a stalled agent restarted says nothing of a tmux
    // server crash or the machine out of memory.
    let died = deaths
        .iter()
        .filter(|(look, _, _)| matches!(look.seen, Seen::Dead { .. }));
    for (look, _, _) in died {
        round.deaths.push_back((now, look.session.clone()));
    }
    while round
        .deaths
        .front()
        .is_some_and(|(at, _)| now.signed_duration_since(*at) > window)
    {
        round.deaths.pop_front();
    }
    let distinct: BTreeSet<&str> = round.deaths.iter().map(|(_, s)| s.as_str()).collect();
    distinct.len() >= policy.mass_death
}

/// Pauses supervision as a whole: nobody is restarted, the dead wait for
/// the pause's end (or `gt daemon supervise resume`).
fn pause(
    policy: &Policy,
    memory: &mut Memory,
    deaths: &[(&Look, Failure, Restarts)],
    now: DateTime<Utc>,
    round: &mut Round,
    plan: &mut Plan,
) {
    let sessions: Vec<String> = round
        .deaths
        .iter()
        .map(|(_, s)| s.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let why = format!(
        "{} supervised agents died within {} ({}); a tmux server crash or the \
         machine out of memory is likely. Resume with `gt daemon supervise resume`",
        sessions.len(),
        human(policy.mass_death_window),
        sessions.join(", ")
    );
    for (look, failure, _) in deaths {
        let record = memory.agents.entry(look.session.clone()).or_default();
        record.note(
            now,
            "paused",
            format!("{}; supervision paused", failure.why),
            look.capture(),
        );
        record.state = AgentState::Backoff { until: now };
    }
    memory.paused = Some(Paused {
        since: now,
        until: now + chrono::Duration::from_std(policy.mass_death_pause).unwrap_or_default(),
        why: why.clone(),
    });
    round.deaths.clear();
    plan.restarts.clear();
    plan.paused = Some((sessions, why));
}

/// Weighs one new death: restart now, back off, or quarantine. Its number
/// is one more than the agent's restarts after a crash within the window.
fn weigh(
    policy: &Policy,
    record: &mut AgentRecord,
    look: &Look,
    failure: Failure,
    restarts: Restarts,
    now: DateTime<Utc>,
    plan: &mut Plan,
) {
    let stable = chrono::Duration::from_std(policy.stable_after).unwrap_or(chrono::Duration::MAX);
    // It had run stable: a fresh count.
    let afresh = matches!(record.state,
        AgentState::Running { since } if now.signed_duration_since(since) >= stable);
    let restarts = if afresh {
        Restarts::default()
    } else {
        restarts
    };
    if !failure.counted {
        let start = Start {
            why: format!("{} (not a crash: not counted)", failure.why),
            afresh,
            after_crash: false,
        };
        plan.start_or_hold(policy, record, look, start, restarts, now);
        return;
    }
    let count = restarts.after_crash + 1;
    if count >= policy.max_restarts as usize {
        let why = format!(
            "{}; died {count} times within {} (max_restarts {})",
            failure.why,
            human(policy.restart_window),
            policy.max_restarts,
        );
        plan.quarantine(policy, record, look, why, now);
        return;
    }
    let delay = policy.backoff_for(count);
    if delay.is_zero() {
        let start = Start {
            why: failure.why,
            afresh,
            after_crash: true,
        };
        plan.start_or_hold(policy, record, look, start, restarts, now);
        return;
    }
    let why = format!(
        "{}; death {count} within {}: restart in {}",
        failure.why,
        human(policy.restart_window),
        human(delay)
    );
    record.note(now, "backoff", why.clone(), look.capture());
    record.state = AgentState::Backoff {
        until: now + chrono::Duration::from_std(delay).unwrap_or_default(),
    };
    plan.backoffs.push((look.session.clone(), why));
}

#[cfg(test)]
mod tests;
