//! The evidence of one agent's progress, folded look by look, and its
//! state from that evidence alone (pure: the time is given, tmux is
//! elsewhere).
//!
//! Evidence belongs to one pane ([`PaneKey`]): a restart or a cycle makes
//! a new pane, and with it fresh evidence, so nothing seen of an earlier
//! run (a quiet screen, pokes it never answered) ever counts against the
//! new one.
//!
//! The states, the first that holds ([`Evidence::classify`]):
//! - *dead*: its session is missing or its pane's process exited;
//! - *waiting for a person*: one of its screen's last lines asks a person
//!   something;
//! - *stalled*: quiet for `stall_after` **and** its last `stall_pokes`
//!   pokes (or more) unanswered: never on quiet alone, so an agent nobody
//!   pokes is never stalled, nor one that answers its pokes;
//! - *working*: its screen moved within the last two looks' time;
//! - *idle*: the rest.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::screen::{moved, Prompt, Screen};
use crate::state::{Activity, AgentLiveness, Answer, Delivery, PokeRecord};

/// Pokes kept per agent, for `explain`.
pub(crate) const POKES_KEPT: usize = 10;

/// A pane, told apart from any other the server ever had: tmux does not
/// reuse a pane id while it runs, and a new server (which may) gives new
/// PIDs and creation times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaneKey {
    pub(crate) id: String,
    pub(crate) pid: Option<u32>,
    pub(crate) created: Option<i64>,
}

/// The settings the states follow (config keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    pub(crate) stall_after: Duration,
    pub(crate) stall_pokes: u32,
    pub(crate) answer_within: Duration,
    /// A screen that moved within this counts as working: two looks'
    /// time (`supervise_interval` twice).
    pub(crate) working_for: Duration,
}

/// What one look saw of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sight {
    /// Its session is missing, or its pane's process has exited.
    Dead,
    /// Its screen, and the line of it that asks a person something.
    Screen {
        screen: Screen,
        prompt: Option<Prompt>,
    },
}

/// What folding one look into the evidence changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Folded {
    /// The state before and after, when it changed.
    pub(crate) change: Option<(Activity, Activity)>,
    /// Pokes judged answered, and unanswered, at this look.
    pub(crate) answered: u32,
    pub(crate) unanswered: u32,
}

/// Everything seen of one agent's pane since the daemon began watching it.
#[derive(Debug, Clone)]
pub(crate) struct Evidence {
    /// `None`: its session is missing.
    pub(crate) pane: Option<PaneKey>,
    watched_since: DateTime<Utc>,
    screen: Option<Screen>,
    moved_at: Option<DateTime<Utc>>,
    pokes: VecDeque<PokeRecord>,
    unanswered: u32,
    /// The question its screen asks a person, if any.
    prompt: Option<Prompt>,
    /// The row of a question a person has answered (their answer typed
    /// onto it): no question while it stays there.
    answered: Option<u64>,
    dead: bool,
    state: Activity,
    since: DateTime<Utc>,
}

impl Evidence {
    /// Nothing seen yet of `pane`: idle, until the first look says more.
    pub(crate) fn new(pane: Option<PaneKey>, now: DateTime<Utc>) -> Evidence {
        Evidence {
            pane,
            watched_since: now,
            screen: None,
            moved_at: None,
            pokes: VecDeque::new(),
            unanswered: 0,
            prompt: None,
            answered: None,
            dead: false,
            state: Activity::Idle,
            since: now,
        }
    }

    /// Folds in what a look at `now` saw.
    pub(crate) fn saw(&mut self, sight: Sight, now: DateTime<Utc>, rules: &Rules) -> Folded {
        let mut folded = Folded::default();
        match sight {
            Sight::Dead => {
                self.dead = true;
                self.prompt = None;
                self.answered = None;
            }
            Sight::Screen { screen, prompt } => {
                self.dead = false;
                if self.screen.as_ref().is_some_and(|old| moved(old, &screen)) {
                    self.moved_at = Some(now);
                    self.unanswered = 0;
                    for poke in self
                        .pokes
                        .iter_mut()
                        .filter(|p| p.answer == Answer::Pending)
                    {
                        poke.answer = Answer::Answered;
                        poke.answered_at = Some(now);
                        folded.answered += 1;
                    }
                }
                self.screen = Some(screen);
                self.prompt = self.still_asking(prompt);
                let window = chrono::Duration::from_std(rules.answer_within)
                    .unwrap_or(chrono::Duration::MAX);
                // A poke is judged once its delivery is known: one whose
                // text went in only with a second Enter was not heard
                // before then.
                let judged =
                    |p: &PokeRecord| p.answer == Answer::Pending && p.delivery != Delivery::Pending;
                for poke in self.pokes.iter_mut().filter(|p| judged(p)) {
                    if now.signed_duration_since(poke.at) >= window {
                        poke.answer = Answer::Unanswered;
                        self.unanswered += 1;
                        folded.unanswered += 1;
                    }
                }
            }
        }
        let state = self.classify(now, rules);
        if state != self.state {
            folded.change = Some((self.state, state));
            self.state = state;
            self.since = now;
        }
        folded
    }

    /// The question `seen` now, unless a person has answered it: the line
    /// it was seen on changed (their answer echoed onto it, as a program
    /// reading a line shows it) while it still holds the pattern. A
    /// program that draws its question in a box clears it when answered.
    fn still_asking(&mut self, seen: Option<Prompt>) -> Option<Prompt> {
        let Some(seen) = seen else {
            self.answered = None;
            return None;
        };
        if self.answered == Some(seen.row) {
            return None;
        }
        let before = self.prompt.as_ref().filter(|p| p.row == seen.row);
        if before.is_some_and(|before| before.whole != seen.whole) {
            self.answered = Some(seen.row);
            return None;
        }
        Some(seen)
    }

    /// The state the evidence says at `now` (see the module's doc).
    pub(crate) fn classify(&self, now: DateTime<Utc>, rules: &Rules) -> Activity {
        let quiet = now
            .signed_duration_since(self.moved_at.unwrap_or(self.watched_since))
            .to_std()
            .unwrap_or_default();
        if self.dead {
            Activity::Dead
        } else if self.prompt.is_some() {
            Activity::WaitingForPerson
        } else if quiet >= rules.stall_after && self.unanswered >= rules.stall_pokes {
            Activity::Stalled
        } else if self.moved_at.is_some() && quiet < rules.working_for {
            Activity::Working
        } else {
            Activity::Idle
        }
    }

    /// The heartbeat typed a poke into this pane at `at`.
    pub(crate) fn poked(&mut self, at: DateTime<Utc>) {
        // A look between the typing and this call may already have seen
        // the answer.
        let seen = self.moved_at.filter(|&m| m > at);
        self.pokes.push_back(PokeRecord {
            at,
            delivery: Delivery::Pending,
            answer: if seen.is_some() {
                Answer::Answered
            } else {
                Answer::Pending
            },
            answered_at: seen,
        });
        while self.pokes.len() > POKES_KEPT {
            self.pokes.pop_front();
        }
    }

    /// What became of the text of the poke typed at `at`; false when that
    /// poke is not this pane's (any more).
    pub(crate) fn confirmed(&mut self, at: DateTime<Utc>, delivery: Delivery) -> bool {
        match self.pokes.iter_mut().find(|p| p.at == at) {
            Some(poke) => {
                poke.delivery = delivery;
                true
            }
            None => false,
        }
    }

    /// The evidence as `state.json` holds it.
    pub(crate) fn published(&self) -> AgentLiveness {
        AgentLiveness {
            state: self.state,
            since: self.since,
            pane: self.pane.as_ref().map(|p| p.id.clone()),
            watched_since: self.watched_since,
            screen_moved_at: self.moved_at,
            unanswered_pokes: self.unanswered,
            prompt: self.prompt.as_ref().map(|p| p.text.clone()),
            pokes: self.pokes.iter().cloned().collect(),
        }
    }
}

/// One step of confirming a poke: the first look after it, or the look
/// after Enter was pressed once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    First,
    AfterEnter,
}

/// What to do after a confirming look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The text sits on the input line: press Enter alone, look again.
    PressEnter,
    Done(Delivery),
}

/// Decides a confirming look: `on_line`, the poke's text is still on the
/// input line. The text itself is never typed twice.
pub(crate) fn verdict(step: Step, on_line: bool) -> Verdict {
    match (step, on_line) {
        (Step::First, true) => Verdict::PressEnter,
        (Step::First, false) => Verdict::Done(Delivery::Delivered),
        (Step::AfterEnter, true) => Verdict::Done(Delivery::Unconfirmed),
        (Step::AfterEnter, false) => Verdict::Done(Delivery::Resubmitted),
    }
}

#[cfg(test)]
mod tests;
