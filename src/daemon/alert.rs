//! Notifications without code: `notify_command` runs on the events a
//! person must act on, the event as one JSON object on its stdin
//! (docs/monitoring.md, "Notifications", shows ntfy and Slack one-liners).
//!
//! Sending never blocks the thread that sends: events go through a small
//! queue to the notifier's own thread, which runs the command one at a
//! time, in a session of its own, with a deadline (`notify_timeout`). Of
//! what it prints only the first few hundred bytes are kept (the rest is
//! read and dropped), and when it exits, at its deadline or when the
//! daemon stops, everything it started is ended with it: a background
//! child, or one that left its session, never outlives it. The same event
//! (kind, and agent where there is one) is
//! sent at most once within `notify_window`; one whose command failed may
//! be sent again at once. The notifier also watches the heartbeat, so a
//! daemon whose heartbeat hangs still says so.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};

use super::metrics::Metrics;
use super::stop::StopFlag;
use crate::config::{CommandLine, Config};
use crate::duration::human;
use crate::text::escape;
use crate::town::Town;

/// Events waiting for the command; past this they are dropped (and
/// counted), never waited for.
const QUEUE: usize = 64;

/// Free text in an event (an error message) is cut to this many bytes.
const MAX_DETAIL: usize = 500;

/// An event a person must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Supervision gave up restarting an agent for a while.
    AgentQuarantined { session: String, detail: String },
    /// Several agents died at once, so supervision stopped restarting.
    SupervisionPaused {
        sessions: Vec<String>,
        detail: String,
    },
    /// Executed requests cannot be filed (a full disk, a directory gone).
    FilingFailing { unfiled: u64, error: String },
    /// The daemon runs but is not doing its job (its heartbeat is late).
    Degraded { detail: String },
    /// An agent is stalled: quiet, its pokes unanswered.
    AgentStalled { session: String, detail: String },
    /// An agent's screen asks a person something: `line`, as the screen
    /// shows it (escaped wherever it is sent).
    AgentWaiting { session: String, line: String },
}

impl Event {
    /// The event's name, in the JSON and in metric labels.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Event::AgentQuarantined { .. } => "agent_quarantined",
            Event::SupervisionPaused { .. } => "supervision_paused",
            Event::FilingFailing { .. } => "filing_failing",
            Event::Degraded { .. } => "degraded",
            Event::AgentStalled { .. } => "agent_stalled",
            Event::AgentWaiting { .. } => "agent_waiting_for_person",
        }
    }

    /// Events with the same key are one event repeated.
    fn key(&self) -> String {
        match self {
            Event::AgentQuarantined { session, .. } | Event::AgentStalled { session, .. } => {
                format!("{}/{session}", self.kind())
            }
            // Another question is another episode.
            Event::AgentWaiting { session, line } => format!("{}/{session}/{line}", self.kind()),
            _ => self.kind().to_string(),
        }
    }

    fn summary(&self, town: &str) -> String {
        match self {
            Event::AgentQuarantined { session, detail } => {
                format!(
                    "gt daemon {town}: agent {session} quarantined: {}",
                    cut(detail)
                )
            }
            Event::SupervisionPaused { sessions, detail } => format!(
                "gt daemon {town}: supervision paused, {} agents died at once ({}): {}",
                sessions.len(),
                sessions.join(", "),
                cut(detail)
            ),
            Event::FilingFailing { unfiled, error } => format!(
                "gt daemon {town}: cannot file request outcomes ({unfiled} waiting): {}",
                cut(error)
            ),
            Event::Degraded { detail } => format!("gt daemon {town}: degraded: {}", cut(detail)),
            Event::AgentStalled { session, detail } => {
                format!(
                    "gt daemon {town}: agent {session} is stalled: {}",
                    cut(detail)
                )
            }
            Event::AgentWaiting { session, line } => format!(
                "gt daemon {town}: agent {session} waits for a person: {}",
                cut(&escape(line))
            ),
        }
    }

    fn fields(&self) -> Value {
        match self {
            Event::AgentQuarantined { session, detail } => {
                json!({"session": session, "detail": cut(detail)})
            }
            Event::SupervisionPaused { sessions, detail } => {
                json!({"sessions": sessions, "detail": cut(detail)})
            }
            Event::FilingFailing { unfiled, error } => {
                json!({"unfiled": unfiled, "detail": cut(error)})
            }
            Event::Degraded { detail } => json!({"detail": cut(detail)}),
            Event::AgentStalled { session, detail } => {
                json!({"session": session, "detail": cut(detail)})
            }
            Event::AgentWaiting { session, line } => {
                json!({"session": session, "line": cut(&escape(line))})
            }
        }
    }
}

fn cut(text: &str) -> &str {
    if text.len() <= MAX_DETAIL {
        return text;
    }
    let mut end = MAX_DETAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The sending side: cheap to clone, never blocks. Without
/// `notify_command` sending does nothing.
#[derive(Clone)]
pub(crate) struct Alerts {
    /// `None` on the channel wakes the notifier to stop.
    tx: Option<SyncSender<Option<Event>>>,
    metrics: Arc<Metrics>,
}

impl Alerts {
    pub(crate) fn send(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        let kind = event.kind();
        if let Err(TrySendError::Full(_)) = tx.try_send(Some(event)) {
            self.metrics.notification(kind, "dropped");
            tracing::warn!(
                event = kind,
                "notification dropped: {QUEUE} are already waiting for notify_command"
            );
        }
    }
}

/// The notifier's thread, to wait for once the stop switch is set: a
/// command it is running is ended, with everything it started.
pub(crate) struct Notifier {
    tx: SyncSender<Option<Event>>,
    thread: JoinHandle<()>,
}

impl Notifier {
    /// Waits for the thread to end (the stop switch must be set).
    pub(crate) fn join(self) {
        let _ = self.tx.try_send(None);
        let _ = self.thread.join();
    }
}

/// Starts the notifier when `notify_command` is set.
pub(crate) fn start(
    town: &Town,
    config: &Config,
    metrics: Arc<Metrics>,
    stop: Arc<StopFlag>,
) -> io::Result<(Alerts, Option<Notifier>)> {
    let Some(command) = config.notify_command.clone() else {
        return Ok((Alerts { tx: None, metrics }, None));
    };
    let (tx, rx) = sync_channel(QUEUE);
    let notifier = Sender {
        command,
        timeout: config.notify_timeout,
        window: config.notify_window,
        // Often enough to notice a late heartbeat soon after it is
        // overdue, rarely enough to cost nothing.
        tick: config
            .heartbeat_interval
            .clamp(Duration::from_secs(1), Duration::from_secs(15)),
        town: town.root().to_path_buf(),
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        metrics: metrics.clone(),
        stop,
        last_sent: HashMap::new(),
        degraded: false,
    };
    let thread = std::thread::Builder::new()
        .name("notifier".into())
        .spawn(move || notifier.run(rx))?;
    let alerts = Alerts {
        tx: Some(tx.clone()),
        metrics,
    };
    Ok((alerts, Some(Notifier { tx, thread })))
}

/// The notifier's thread: runs the command for each event.
struct Sender {
    command: CommandLine,
    timeout: Duration,
    window: Duration,
    tick: Duration,
    town: PathBuf,
    host: String,
    metrics: Arc<Metrics>,
    stop: Arc<StopFlag>,
    /// When each event key was last sent; only keys sent within the
    /// window are kept, so it stays as small as the set of events.
    last_sent: HashMap<String, Instant>,
    /// The heartbeat was overdue at the last look.
    degraded: bool,
}

impl Sender {
    fn run(mut self, rx: Receiver<Option<Event>>) {
        loop {
            match rx.recv_timeout(self.tick) {
                Ok(Some(event)) if !self.stop.is_set() => self.notify(event),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.stop.is_set() {
                return;
            }
            self.watch_heartbeat();
        }
    }

    /// Sends `degraded` when the heartbeat becomes overdue, or the tmux
    /// server stops answering (again).
    fn watch_heartbeat(&mut self) {
        let health = self.metrics.health();
        let why = if health.heartbeat_overdue() {
            Some(format!(
                "no heartbeat for {} (overdue after {}): the daemon may be hung (a wedged tmux server?); see gt daemon status and gt daemon logs",
                human(health.heartbeat_age()),
                human(health.overdue_after())
            ))
        } else {
            crate::tmux::wedged()
                .map(|why| format!("{why}; see gt daemon status and gt daemon logs"))
        };
        if let Some(detail) = why.as_ref().filter(|_| !self.degraded) {
            tracing::warn!("{detail}");
            self.notify(Event::Degraded {
                detail: detail.clone(),
            });
        }
        self.degraded = why.is_some();
    }

    fn notify(&mut self, event: Event) {
        let kind = event.kind();
        let now = Instant::now();
        self.last_sent
            .retain(|_, sent| now.duration_since(*sent) < self.window);
        let key = event.key();
        if self.last_sent.contains_key(&key) {
            tracing::debug!(
                event = kind,
                "notification already sent within notify_window"
            );
            self.metrics.notification(kind, "deduplicated");
            return;
        }
        let town = self.town.display().to_string();
        let summary = event.summary(&town);
        let mut body = json!({
            "event": kind,
            "summary": summary,
            "town": town,
            "host": self.host,
            "daemon_pid": std::process::id(),
            "at": Utc::now(),
        });
        if let (Value::Object(body), Value::Object(fields)) = (&mut body, event.fields()) {
            body.extend(fields);
        }
        let mut input = body.to_string().into_bytes();
        input.push(b'\n');
        let mut cmd = Command::new(&self.command.0[0]);
        cmd.args(&self.command.0[1..])
            .env("GT_EVENT", kind)
            .env("GT_EVENT_SUMMARY", &summary)
            .env("GT_TOWN_ROOT", &self.town)
            .env_remove("NOTIFY_SOCKET");
        let stop = self.stop.clone();
        let ran =
            crate::process::run_contained(&mut cmd, &input, self.timeout, MAX_DETAIL, &|| {
                stop.is_set()
            });
        if let Ok(ran) = &ran {
            if ran.leftovers > 0 {
                tracing::info!(
                    event = kind,
                    "notify_command left {} process(es) behind: ended",
                    ran.leftovers
                );
            }
            if ran.dropped > 0 {
                tracing::debug!(
                    event = kind,
                    "notify_command wrote {} bytes more than are kept: dropped",
                    ran.dropped
                );
            }
        }
        let failure = match ran {
            Ok(ran) => match ran.status {
                Some(status) if status.success() => None,
                Some(status) => {
                    // What it said about it: stderr, else stdout.
                    let said = if ran.stderr.iter().all(u8::is_ascii_whitespace) {
                        &ran.stdout
                    } else {
                        &ran.stderr
                    };
                    Some(format!(
                        "exited with {status}: {:?}",
                        cut(String::from_utf8_lossy(said).trim())
                    ))
                }
                None if self.stop.is_set() => Some("ended: the daemon is stopping".into()),
                None => Some(format!(
                    "did not finish within {} (notify_timeout): killed",
                    human(self.timeout)
                )),
            },
            Err(e) => Some(format!("cannot run it: {e}")),
        };
        match failure {
            None => {
                self.last_sent.insert(key, now);
                self.metrics.notification(kind, "sent");
                tracing::info!(event = kind, "notification sent: {summary}");
            }
            Some(why) => {
                self.metrics.notification(kind, "failed");
                tracing::warn!(event = kind, command = %self.command, "notify_command failed ({why}); the event was: {summary}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_share_a_key_and_agents_do_not() {
        let q = |s: &str| Event::AgentQuarantined {
            session: s.into(),
            detail: "5 restarts in 15m".into(),
        };
        assert_eq!(q("gt-mayor").key(), q("gt-mayor").key());
        assert_ne!(q("gt-mayor").key(), q("gt-deacon").key());
        let f = |n| Event::FilingFailing {
            unfiled: n,
            error: "disk full".into(),
        };
        assert_eq!(f(1).key(), f(7).key());
    }

    #[test]
    fn a_waiting_line_is_escaped_and_each_question_is_an_episode() {
        let w = |line: &str| Event::AgentWaiting {
            session: "gt-mayor".into(),
            line: line.into(),
        };
        let forged = w("Continue? [y/N]\n{\"event\":\"forged\"}\u{1b}]2;owned\u{7}");
        let line = forged.fields()["line"].as_str().unwrap().to_string();
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line:?}");
        assert!(line.contains("\\n") && line.contains("\\x1b"), "{line:?}");
        let summary = forged.summary("/town");
        assert!(
            !summary.contains('\n') && !summary.contains('\u{1b}'),
            "{summary:?}"
        );
        assert_eq!(w("a? (y/n)").key(), w("a? (y/n)").key());
        assert_ne!(w("a? (y/n)").key(), w("b? (y/n)").key());
    }

    #[test]
    fn long_details_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_DETAIL);
        let c = cut(&long);
        assert!(c.len() <= MAX_DETAIL && c.chars().all(|ch| ch == 'é'));
        let e = Event::Degraded { detail: long };
        assert!(e.fields()["detail"].as_str().unwrap().len() <= MAX_DETAIL);
    }
}
