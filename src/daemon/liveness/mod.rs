//! Looking at agents (config `look_at_agents`, on by default): is each
//! poked or supervised agent working, idle, stalled, waiting for a person,
//! or dead, and did each poke arrive and get an answer (docs/agents.md).
//!
//! The daemon stays a dumb scheduler: it states facts from what an
//! agent's own pane shows, and acts on them only where the operator opts
//! in (`stall_action: "restart"`, carried out by supervision through its
//! policy).
//!
//! A look is two tmux calls however many agents there are: one lists
//! every session's own pane, one captures them all ([`Tmux::view_panes`]).
//! The `liveness` thread looks every `supervise_interval`, and a moment
//! (`poke_confirm`) after each poke to confirm it; the heartbeat asks for
//! a look right before its pokes ([`Liveness::look_before_poking`]), so
//! no poke is typed into a question for a person (its Enter could answer
//! it). Looks never overlap: the record is held for a whole look.
//!
//! What is seen goes to one record, published whole after each look:
//! `state.json` (`liveness`, which `status` and `explain` read), the
//! metrics, and `notify_command` when an agent becomes stalled or starts
//! waiting for a person. [`screen`] and [`evidence`] hold the pure parts.

pub(crate) mod evidence;
pub(crate) mod screen;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::alert::Event;
use super::execute::HeldSessions;
use super::metrics::{AgentSeries, PokeCounts};
use super::monitoring::Monitoring;
use super::stop::StopFlag;
use crate::config::{Config, SharedConfig};
use crate::duration::human;
use crate::request::Agent;
use crate::state::{Activity, AgentLiveness, Delivery, StateStore};
use crate::text::escape;
use crate::tmux::{AgentPane, PaneView, Tmux, TmuxError};
use evidence::{verdict, Evidence, Folded, PaneKey, Rules, Sight, Step, Verdict};
use screen::{on_input_line, prompt_line, Patterns, Screen};

/// Agents watched at most (by session name): far more than a town has,
/// and a bound on the series and the entries in `state.json`.
pub(crate) const MAX_WATCHED: usize = 256;

/// Pokes due for confirming this close together are confirmed by one
/// look (a beat types its pokes one after another, a few ms apart).
const CONFIRM_TOGETHER: Duration = Duration::from_millis(250);

/// History rows captured above a pane's visible screen: none, as rows
/// are compared by their place in the scrollback (see [`screen`]).
const HISTORY_ROWS: u32 = 0;

/// The shared side of looking at agents: the heartbeat, supervision and
/// the `liveness` thread each hold it.
pub(crate) struct Liveness {
    config: SharedConfig,
    tmux: Tmux,
    held: Arc<HeldSessions>,
    state: Arc<StateStore>,
    monitoring: Monitoring,
    stop: Arc<StopFlag>,
    /// The sessions `supervise` names (read at start, as supervision is).
    supervised: Vec<String>,
    /// How often to look (`supervise_interval`, read at start).
    interval: Duration,
    /// The evidence, held for a whole look.
    record: Mutex<Record>,
    /// Pokes to confirm, and when the last full look was; `wake` is
    /// notified when a poke is queued or the daemon stops.
    queue: Mutex<Queue>,
    wake: Condvar,
    /// What the record said last, for readers that must not wait for a
    /// look (supervision).
    published: Mutex<BTreeMap<String, AgentLiveness>>,
}

#[derive(Default)]
struct Record {
    agents: BTreeMap<String, Evidence>,
    /// Per session: what became of its pokes, for the metrics.
    counts: BTreeMap<String, PokeCounts>,
    patterns: Patterns,
    /// Said once: more agents than [`MAX_WATCHED`].
    said_too_many: bool,
}

#[derive(Default)]
struct Queue {
    confirms: Vec<Confirm>,
    last_look: Option<Instant>,
}

/// A poke to confirm.
#[derive(Debug, Clone)]
struct Confirm {
    session: String,
    pane: String,
    text: String,
    at: DateTime<Utc>,
    due: Instant,
    step: Step,
}

/// An agent's own pane as the heartbeat pokes it, after a look.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) pane: AgentPane,
    /// Its screen asks a person something: not to be poked.
    pub(crate) waiting: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Liveness {
    pub(crate) fn new(
        config: &SharedConfig,
        supervised: Vec<String>,
        held: Arc<HeldSessions>,
        state: Arc<StateStore>,
        monitoring: Monitoring,
        stop: Arc<StopFlag>,
    ) -> Liveness {
        let now = config.get();
        Liveness {
            config: config.clone(),
            tmux: Tmux::new(now.tmux_socket.clone(), now.tmux_timeout),
            held,
            state,
            monitoring,
            stop,
            supervised,
            interval: now.supervise_interval,
            record: Mutex::new(Record::default()),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            published: Mutex::new(BTreeMap::new()),
        }
    }

    /// The `liveness` thread: a look now, then every interval, and the
    /// confirming looks as they fall due, until the stop.
    pub(crate) fn run(&self) {
        loop {
            if self.stop.is_set() {
                return;
            }
            let now = Instant::now();
            let (confirms, look) = {
                let mut queue = lock(&self.queue);
                // Under the lock that `wake` takes: a stop set after this
                // finds the thread waiting, and wakes it.
                if self.stop.is_set() {
                    return;
                }
                let look_at = queue.last_look.map_or(now, |t| t + self.interval);
                let next = queue
                    .confirms
                    .iter()
                    .map(|c| c.due)
                    .chain([look_at])
                    .min()
                    .unwrap_or(look_at);
                if next > now {
                    let nap = next - now;
                    let _ = self.wake.wait_timeout(queue, nap);
                    continue;
                }
                // A beat's pokes, typed one after another, are confirmed
                // by one look.
                let soon = now + CONFIRM_TOGETHER;
                let (due, later) = std::mem::take(&mut queue.confirms)
                    .into_iter()
                    .partition(|c| c.due <= soon);
                queue.confirms = later;
                (due, look_at <= now)
            };
            if !confirms.is_empty() {
                self.confirm(confirms);
            }
            if look {
                if let Err(e) = self.look() {
                    tracing::debug!("cannot look at the agents: {e}");
                }
            }
        }
    }

    /// Wakes the thread (to see the stop).
    pub(crate) fn wake(&self) {
        let _queue = lock(&self.queue);
        self.wake.notify_all();
    }

    /// A look at every agent now, for the heartbeat about to poke: each
    /// session's own pane, and whether its screen asks a person
    /// something.
    pub(crate) fn look_before_poking(&self) -> Result<Vec<Target>, TmuxError> {
        let panes = self.look()?;
        let published = lock(&self.published);
        Ok(panes
            .into_iter()
            .map(|pane| {
                let waiting = published.get(&pane.session).is_some_and(|a| {
                    a.state == Activity::WaitingForPerson && a.pane.as_ref() == Some(&pane.id)
                });
                Target { pane, waiting }
            })
            .collect())
    }

    /// The heartbeat typed `text` and Enter into `pane` of `session` at
    /// `at`: it is confirmed `poke_confirm` later.
    pub(crate) fn poked(&self, session: &str, pane: &str, text: &str, at: DateTime<Utc>) {
        {
            let mut record = lock(&self.record);
            let Some(evidence) = record.agents.get_mut(session) else {
                return;
            };
            if evidence.pane.as_ref().is_none_or(|p| p.id != pane) {
                return; // not the pane the look saw: it starts afresh
            }
            // Published with its confirmation: one write of state.json
            // for a beat's pokes, not one each.
            evidence.poked(at);
        }
        let mut queue = lock(&self.queue);
        queue.confirms.push(Confirm {
            session: session.to_string(),
            pane: pane.to_string(),
            text: text.to_string(),
            at,
            due: Instant::now() + self.config.get().poke_confirm,
            step: Step::First,
        });
        self.wake.notify_all();
    }

    /// Why `session` is stalled, if a look now finds its pane `pane`
    /// stalled. Only when the last look said so is there a look now: a
    /// restarted agent may have a new pane with the old one's id (a tmux
    /// server that exited with its last session numbers panes afresh), and
    /// a look is what tells the two apart and starts its evidence afresh.
    pub(crate) fn stalled(&self, session: &str, pane: &str) -> Option<String> {
        let said = |published: &BTreeMap<String, AgentLiveness>| {
            published
                .get(session)
                .is_some_and(|a| a.state == Activity::Stalled && a.pane.as_deref() == Some(pane))
        };
        if !said(&lock(&self.published)) {
            return None;
        }
        if let Err(e) = self.look() {
            tracing::debug!(session, "cannot look at the agents: {e}");
            return None;
        }
        let published = lock(&self.published);
        if !said(&published) {
            return None;
        }
        let agent = published.get(session)?;
        let quiet = Utc::now()
            .signed_duration_since(agent.quiet_since())
            .to_std()
            .unwrap_or_default();
        Some(format!(
            "stalled: its screen has not moved for {}, and its last {} pokes went unanswered",
            human(quiet),
            agent.unanswered_pokes
        ))
    }

    /// One full look: every watched agent's pane listed and captured,
    /// folded into the record, published. Returns every session's own
    /// pane; no tmux server is said as the error, after the supervised
    /// agents are seen dead.
    fn look(&self) -> Result<Vec<AgentPane>, TmuxError> {
        let mut guard = lock(&self.record);
        let record = &mut *guard;
        let (panes, no_server) = match self.tmux.agent_panes() {
            Ok(panes) => (panes, None),
            Err(e @ TmuxError::NoServer(_)) => (Vec::new(), Some(e)),
            Err(e) => return Err(e),
        };
        lock(&self.queue).last_look = Some(Instant::now());
        let config = self.config.get();
        let watched = self.watched(&config, &panes, record);
        let live: Vec<&str> = watched
            .iter()
            .filter_map(|(_, p)| p.filter(|p| !p.dead()).map(|p| p.id.as_str()))
            .collect();
        let views = self.view(&live);
        let now = Utc::now();
        let rules = rules(&config, self.interval);
        let typed = typed(&config);
        let typed: Vec<&str> = typed.iter().map(String::as_str).collect();
        record.patterns.update(&config.human_prompt_patterns);
        let mut kept = BTreeSet::new();
        for (session, pane) in &watched {
            kept.insert(session.clone());
            let key = pane.map(|p| PaneKey {
                id: p.id.clone(),
                pid: p.pid,
                created: p.created,
            });
            let sight = match pane {
                None => Sight::Dead,
                Some(p) if p.dead() => Sight::Dead,
                Some(p) => match views.iter().find(|v| v.id == p.id) {
                    Some(view) => sight(view, &typed, &record.patterns),
                    None => continue, // gone between the two calls
                },
            };
            let evidence = record
                .agents
                .entry(session.clone())
                .or_insert_with(|| Evidence::new(key.clone(), now));
            if evidence.pane != key {
                // Started, restarted, cycled: nothing before counts.
                *evidence = Evidence::new(key, now);
            }
            let folded = evidence.saw(sight, now, &rules);
            self.tell(session, &folded, evidence, &mut record.counts);
        }
        // Agents no longer watched (a Witness shut down) are forgotten;
        // those a request holds are not looked at and keep their evidence.
        let held = |s: &str| self.held.is_held(s);
        record.agents.retain(|s, _| kept.contains(s) || held(s));
        let agents = &record.agents;
        record.counts.retain(|s, _| agents.contains_key(s));
        self.publish(record);
        tracing::debug!(agents = kept.len(), "looked at the agents");
        match no_server {
            Some(e) => Err(e),
            None => Ok(panes),
        }
    }

    /// The agents to look at: every session the heartbeat pokes, every
    /// supervised one (missing or not), and every one looked at before
    /// whose session has gone since (dead, not forgotten: a poked agent
    /// that crashes must not vanish from status and the metrics), but those
    /// a request is working on, at most [`MAX_WATCHED`].
    fn watched<'a>(
        &self,
        config: &Config,
        panes: &'a [AgentPane],
        record: &mut Record,
    ) -> Vec<(String, Option<&'a AgentPane>)> {
        let mut watched: BTreeMap<String, Option<&AgentPane>> = BTreeMap::new();
        for pane in panes {
            let poked = Agent::from_session(&pane.session)
                .is_some_and(|a| config.poke_text_for(&a).is_some());
            if poked || self.supervised.contains(&pane.session) {
                watched.insert(pane.session.clone(), Some(pane));
            }
        }
        for session in self.supervised.iter().chain(record.agents.keys()) {
            watched.entry(session.clone()).or_insert(None);
        }
        watched.retain(|s, _| !self.held.is_held(s));
        if watched.len() > MAX_WATCHED && !record.said_too_many {
            record.said_too_many = true;
            tracing::warn!(
                agents = watched.len(),
                "more agents than are looked at ({MAX_WATCHED}): the first by session name are"
            );
        }
        watched.into_iter().take(MAX_WATCHED).collect()
    }

    /// Views of `panes`, in as few calls as their output allows: a call
    /// whose output was cut at its bound leaves the rest for the next. At
    /// most as many calls as panes: each sees one pane more, or drops the
    /// first left (one pane alone past the bound).
    fn view(&self, panes: &[&str]) -> Vec<PaneView> {
        let mut views: Vec<PaneView> = Vec::new();
        let mut left: Vec<&str> = panes.to_vec();
        while !left.is_empty() && !self.stop.is_set() {
            let (got, whole) = match self.tmux.view_panes(&left, HISTORY_ROWS) {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!("cannot capture the agents' panes: {e}");
                    break;
                }
            };
            if whole {
                views.extend(got);
                break; // the panes left out are gone
            }
            if got.is_empty() {
                tracing::debug!(
                    pane = left[0],
                    "a pane's capture is past its bound: not looked at"
                );
                left.remove(0);
                continue;
            }
            left.retain(|id| !got.iter().any(|v| v.id == *id));
            views.extend(got);
        }
        views
    }

    /// Confirms the pokes due: one capture of their panes; Enter pressed
    /// once more where the text still sits on the input line.
    fn confirm(&self, due: Vec<Confirm>) {
        let mut guard = lock(&self.record);
        let record = &mut *guard;
        let ids: Vec<&str> = due.iter().map(|c| c.pane.as_str()).collect();
        let ids: Vec<&str> = ids
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let views = self.view(&ids);
        let config = self.config.get();
        let now = Utc::now();
        let rules = rules(&config, self.interval);
        let typed = typed(&config);
        let typed: Vec<&str> = typed.iter().map(String::as_str).collect();
        let mut again = Vec::new();
        for c in due {
            let view = views.iter().find(|v| v.id == c.pane && !v.dead);
            // Why a poke ends unconfirmed, for the log.
            let mut why = "its text still sits on the input line after a second Enter";
            let mut step = match view {
                None => {
                    why = "its pane was gone (or its process had ended) when it was looked at";
                    Verdict::Done(Delivery::Unconfirmed)
                }
                Some(view) => verdict(c.step, on_input_line(view, &c.text)),
            };
            if step == Verdict::PressEnter {
                let pressed = self
                    .held
                    .unless_held(&c.session, || self.tmux.press_enter(&c.pane));
                match pressed {
                    Some(Ok(())) => {
                        tracing::info!(
                            session = c.session,
                            "a poke's text still sat on the input line: Enter pressed once more"
                        );
                        again.push(Confirm {
                            due: Instant::now() + config.poke_confirm,
                            step: Step::AfterEnter,
                            ..c.clone()
                        });
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(session = c.session, "cannot press Enter: {e}");
                        why = "Enter could not be pressed once more";
                        step = Verdict::Done(Delivery::Unconfirmed);
                    }
                    None => {
                        why = "a request took its agent before Enter was pressed once more";
                        step = Verdict::Done(Delivery::Unconfirmed);
                    }
                }
            }
            let Verdict::Done(delivery) = step else {
                continue;
            };
            let Some(evidence) = record.agents.get_mut(&c.session) else {
                continue;
            };
            if !evidence.confirmed(c.at, delivery) {
                continue; // its pane is gone, and its evidence with it
            }
            let counts = record.counts.entry(c.session.clone()).or_default();
            match delivery {
                Delivery::Delivered => counts.delivered += 1,
                Delivery::Resubmitted => counts.resubmitted += 1,
                _ => counts.unconfirmed += 1,
            }
            if delivery == Delivery::Unconfirmed {
                tracing::warn!(session = c.session, "a poke was not confirmed: {why}");
            } else {
                tracing::debug!(
                    session = c.session,
                    delivery = delivery.as_str(),
                    "poke confirmed"
                );
            }
        }
        // What the confirming look saw is a look at those agents too.
        for view in &views {
            let Some((session, evidence)) = record
                .agents
                .iter_mut()
                .find(|(_, e)| e.pane.as_ref().is_some_and(|p| p.id == view.id))
            else {
                continue;
            };
            let session = session.clone();
            let folded = evidence.saw(sight(view, &typed, &record.patterns), now, &rules);
            let evidence = &record.agents[&session];
            self.tell(&session, &folded, evidence, &mut record.counts);
        }
        self.publish(record);
        drop(guard);
        if !again.is_empty() {
            lock(&self.queue).confirms.extend(again);
        }
    }

    /// Counts what a look judged and says what changed: the log, and
    /// `notify_command` when an agent stalls or starts waiting for a
    /// person (once per episode).
    fn tell(
        &self,
        session: &str,
        folded: &Folded,
        evidence: &Evidence,
        counts: &mut BTreeMap<String, PokeCounts>,
    ) {
        if folded.answered + folded.unanswered > 0 {
            let c = counts.entry(session.to_string()).or_default();
            c.answered += u64::from(folded.answered);
            c.unanswered += u64::from(folded.unanswered);
        }
        let Some((was, now)) = folded.change else {
            return;
        };
        let published = evidence.published();
        match now {
            Activity::Stalled => {
                let detail = format!(
                    "its screen has not moved since {}, and its last {} pokes went unanswered",
                    crate::text::time(published.quiet_since(), crate::text::Zone::Utc),
                    published.unanswered_pokes
                );
                tracing::warn!(session, "agent stalled: {detail}");
                self.monitoring.alerts.send(Event::AgentStalled {
                    session: session.to_string(),
                    detail,
                });
            }
            Activity::WaitingForPerson => {
                let line = published.prompt.unwrap_or_default();
                tracing::warn!(session, "agent waits for a person: {}", escape(&line));
                self.monitoring.alerts.send(Event::AgentWaiting {
                    session: session.to_string(),
                    line,
                });
            }
            _ if matches!(was, Activity::Stalled | Activity::WaitingForPerson) => {
                tracing::info!(session, "agent {} again (was {})", now.words(), was.words());
            }
            _ => tracing::debug!(session, "agent {} (was {})", now.words(), was.words()),
        }
    }

    /// Puts the record where it is read: `state.json` (when it changed),
    /// the metrics, supervision.
    fn publish(&self, record: &Record) {
        let map: BTreeMap<String, AgentLiveness> = record
            .agents
            .iter()
            .map(|(s, e)| (s.clone(), e.published()))
            .collect();
        let series = map
            .iter()
            .map(|(session, a)| AgentSeries {
                session: session.clone(),
                state: a.state,
                quiet_since: a.quiet_since(),
                counts: record.counts.get(session).copied().unwrap_or_default(),
            })
            .collect();
        self.monitoring.metrics.agents_seen(series);
        let mut last = lock(&self.published);
        if *last == map {
            return;
        }
        let copy = map.clone();
        if let Err(e) = self.state.update(|s| s.liveness = copy) {
            tracing::error!("cannot write state.json: {e}");
        }
        *last = map;
    }
}

/// The states' settings from the config in force.
fn rules(config: &Config, interval: Duration) -> Rules {
    Rules {
        stall_after: config.stall_after,
        stall_pokes: config.stall_pokes,
        answer_within: config.answer_within,
        working_for: interval.saturating_mul(2),
    }
}

/// What the daemon types into panes: its pokes and the prime text. Their
/// echo is not progress.
fn typed(config: &Config) -> Vec<String> {
    let mut typed = vec![
        config.mayor_poke_text.clone(),
        config.witness_poke_text.clone(),
        config.prime_text.clone(),
    ];
    typed.extend(config.poke_texts.values().cloned());
    typed.retain(|t| !t.trim().is_empty());
    typed
}

fn sight(view: &PaneView, typed: &[&str], patterns: &Patterns) -> Sight {
    Sight::Screen {
        screen: Screen::of(view, typed),
        prompt: prompt_line(view, patterns, typed),
    }
}
