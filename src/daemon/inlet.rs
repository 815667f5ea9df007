//! The consumer's inlet: the one channel every other thread of the daemon
//! speaks to the consumer through, and what travels on it.
//!
//! A leaf: it names what the watcher, the executor's workers, the signal
//! thread and the supervisor send, and imports none of them, so each can
//! depend on it without depending on another.

use std::ffi::OsString;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a name came to our attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    /// Closed after writing, or renamed in: complete.
    Ready,
    /// Just created: a regular file may still be being written.
    Created,
    /// Created at this instant and looked at again: complete once it
    /// parses (or its close-write event arrives), else after
    /// `write_timeout`.
    Announced(Instant),
    /// Found by a scan: may be anything.
    Scan,
    /// Already claimed into `processing/` while still being written: look
    /// at it there again (with the instant it was announced, if it was).
    Claimed(Option<Instant>),
}

#[derive(Debug)]
pub(crate) enum Message {
    Candidate(OsString, Hint),
    /// The watcher may have missed events (queue overflow, error).
    Rescan(&'static str),
    /// An executor worker finished a request.
    Done,
    /// Supervision asks for an agent to be restarted.
    Supervised(Box<Restart>),
    Stop,
}

/// A restart the supervisor asks the consumer to record, execute and file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Restart {
    /// The agent as configured (its identity, as in a request's `from`).
    pub(crate) agent: String,
    /// Its tmux session, held (see `HeldSessions::claim`) from the moment
    /// the supervisor asks until the restart is filed or dropped.
    pub(crate) session: String,
    pub(crate) reason: String,
    /// The dead pane's last lines, if there was a pane.
    pub(crate) capture: Option<String>,
    /// Whether the restart follows a crash: then it is recorded as such in
    /// the agent's restarts (the crash-loop guard's memory), which is how
    /// supervision counts deaths. Its start of an agent missing when it
    /// began, a restart after an exit that is not a crash and its retry
    /// once a quarantine is over are not recorded.
    pub(crate) after_crash: bool,
}

/// What the watcher hands the consumer: names on `rx`, `overflow` when it
/// had to drop some, and how often to rescan anyway; `wake` is the sending
/// side of `rx`, for the executor's workers.
pub(crate) struct Inlet {
    pub(crate) rx: Receiver<Message>,
    pub(crate) wake: SyncSender<Message>,
    pub(crate) overflow: Arc<AtomicBool>,
    pub(crate) rescan_every: Duration,
}
