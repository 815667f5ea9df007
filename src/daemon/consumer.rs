//! The consumer: the one thread that takes each inbox file through
//! claim → read → validate → execute → file → count.
//!
//! Exactly one consumer runs per town (the lock), and a file is only ever
//! executed after this thread renamed it out of `inbox/`, so duplicate
//! events and overlapping scans are harmless.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::execute::Executor;
use super::filing::Filer;
use super::ledger::{Ledger, Tally};
use super::stop::StopFlag;
use super::validate::{self, SETTLE};
use super::watch::{Hint, Message};
use crate::config::Config;
use crate::fs::rename_unique;
use crate::inbox;
use crate::outcome::{self, Outcome, Sidecar};
use crate::request::{Partial, Rejection};
use crate::state::StateStore;
use crate::testing::Hooks;
use crate::town::Town;

const INTERRUPTED: &str =
    "interrupted: the daemon stopped while executing this request; it was not run again \
                           (at most once). Check the agent, then `gt daemon retry` it if needed";

/// Files handled before the outcomes go to the ledger and the channel is
/// looked at again.
const BATCH: usize = 64;

pub(crate) struct Consumer {
    town: Town,
    config: Config,
    executor: Executor,
    filer: Filer,
    ledger: Ledger,
    state: Arc<StateStore>,
    rx: Receiver<Message>,
    overflow: Arc<AtomicBool>,
    /// Set by the signal thread, which also sends `Message::Stop` to wake us.
    stop: Arc<StopFlag>,
    pid: u32,
    /// Names to look at, in order; bounded by the inbox's size because a
    /// scan only runs when it is empty.
    queue: VecDeque<(OsString, Hint)>,
    /// Files that may still be being written, to look at again later.
    settling: Vec<(OsString, Hint, Instant)>,
    rescan_due: Option<&'static str>,
    rescan_every: Duration,
    next_rescan: Instant,
    test_delay: Duration,
}

/// What the watcher hands the consumer: names on `rx`, `overflow` when it
/// had to drop some, and how often to rescan anyway.
pub(crate) struct Inlet {
    pub(crate) rx: Receiver<Message>,
    pub(crate) overflow: Arc<AtomicBool>,
    pub(crate) rescan_every: Duration,
}

impl Consumer {
    pub(crate) fn new(
        town: &Town,
        config: &Config,
        state: Arc<StateStore>,
        inlet: Inlet,
        stop: Arc<StopFlag>,
        hooks: &Hooks,
    ) -> io::Result<Self> {
        let test_delay = hooks.request_delay.unwrap_or_default();
        let Inlet {
            rx,
            overflow,
            rescan_every,
        } = inlet;
        Ok(Consumer {
            town: town.clone(),
            config: config.clone(),
            executor: Executor::new(town, config),
            filer: Filer::new(town)?,
            ledger: Ledger::start(std::fs::File::open(town.daemon_dir())?, state.clone())?,
            state,
            rx,
            overflow,
            stop,
            pid: std::process::id(),
            queue: VecDeque::new(),
            settling: Vec::new(),
            rescan_due: Some("start-up"),
            rescan_every,
            next_rescan: Instant::now() + rescan_every,
            test_delay,
        })
    }

    /// Files left in `processing/` by a daemon that died mid-request. They
    /// may have run, so they are never run again (at most once): each is
    /// filed as interrupted, unless its sidecar shows it was already filed.
    pub(crate) fn recover(&self) -> io::Result<usize> {
        let mut count = 0;
        for entry in std::fs::read_dir(self.town.processing())? {
            let name = entry?.file_name();
            let source = self.town.processing().join(&name);
            if let Some(dir) = self.already_filed(&name) {
                tracing::info!(file = ?name, "finishing the filing of a request that completed before the stop");
                rename_unique(&source, &dir, &name)?;
                continue;
            }
            // A request that does not validate was never executed (the
            // stop caught it being read, or still being written): it gets
            // its own reason. A valid one may have run: interrupted.
            let (reason, partial) = match validate::validate(
                validate::read_request(&source),
                Utc::now(),
                Duration::MAX,
            ) {
                (Ok(_), partial) => (INTERRUPTED.to_string(), partial),
                (Err(reason), partial) => (reason, partial),
            };
            let sidecar = self.sidecar(Err(reason), &partial);
            let path = self.filer.file(&name, &sidecar)?;
            tracing::warn!(file = %path.display(), from = ?partial.from, action = ?partial.action,
                reason = sidecar.error.as_deref().unwrap_or_default(), "request left in processing/ by a stopped daemon");
            count += 1;
        }
        if count > 0 {
            self.filer.sync()?;
            self.state.update(|s| s.requests_failed += count as u64)?;
        }
        Ok(count)
    }

    /// A complete sidecar without its request: the crash came between the
    /// two steps of filing. A sidecar cut short (the crash came while it was
    /// being written) proves nothing and is removed, so the request is
    /// filed as interrupted under that name with a readable sidecar.
    fn already_filed(&self, name: &OsStr) -> Option<std::path::PathBuf> {
        [self.town.processed(), self.town.failed()].into_iter().find(|dir| {
            let sidecar = outcome::sidecar_path(&dir.join(name));
            if dir.join(name).exists() || !sidecar.exists() {
                return false;
            }
            if outcome::read_sidecar(&sidecar).is_some() {
                return true;
            }
            tracing::warn!(sidecar = %sidecar.display(), "removing a sidecar cut short by a crash");
            let _ = std::fs::remove_file(&sidecar);
            false
        })
    }

    /// Runs until the stop; the request in hand is always finished.
    pub(crate) fn run(mut self) {
        while self.gather() {
            let mut tally = self.process_batch();
            if tally.processed + tally.failed > 0 {
                tally.pending = (self.queue.len() + self.settling.len()) as u64;
                self.ledger.record(tally);
            }
        }
        self.unclaim_settling();
        self.ledger.finish();
    }

    /// Fills the queue from the channel, timers and scans; false on stop.
    fn gather(&mut self) -> bool {
        if self.stop.is_set() {
            return false;
        }
        if self.queue.is_empty() && self.rescan_due.is_none() {
            let now = Instant::now();
            let wake = self
                .settling
                .iter()
                .map(|(_, _, at)| *at)
                .min()
                .unwrap_or(self.next_rescan)
                .min(self.next_rescan);
            match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(msg) => {
                    if !self.accept(msg) {
                        return false;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        while let Ok(msg) = self.rx.try_recv() {
            if !self.accept(msg) {
                return false;
            }
        }
        if self.overflow.swap(false, Ordering::AcqRel) {
            self.rescan_due = Some("event channel full");
        }
        let now = Instant::now();
        if now >= self.next_rescan {
            self.rescan_due.get_or_insert("periodic safety net");
        }
        if !self.settling.is_empty() {
            let (due, later): (Vec<_>, Vec<_>) =
                self.settling.drain(..).partition(|(_, _, at)| *at <= now);
            self.settling = later;
            self.queue
                .extend(due.into_iter().map(|(name, hint, _)| (name, hint)));
        }
        if self.queue.is_empty() {
            if let Some(why) = self.rescan_due.take() {
                self.next_rescan = now + self.rescan_every;
                match inbox::scan(&self.town.inbox()) {
                    Ok(names) => {
                        if !names.is_empty() {
                            tracing::debug!(count = names.len(), why, "inbox scan found requests");
                        }
                        self.queue
                            .extend(names.into_iter().map(|n| (n, Hint::Scan)));
                    }
                    Err(e) => {
                        tracing::error!(inbox = %self.town.inbox().display(), "cannot scan the inbox: {e}")
                    }
                }
            }
        }
        true
    }

    fn accept(&mut self, msg: Message) -> bool {
        match msg {
            Message::Candidate(name, hint) => self.queue.push_back((name, hint)),
            Message::Rescan(why) => {
                tracing::debug!(why, "rescan requested");
                self.rescan_due = Some(why);
            }
            Message::Stop => {}
        }
        !self.stop.is_set()
    }

    fn process_batch(&mut self) -> Tally {
        let mut tally = Tally::default();
        for _ in 0..BATCH {
            let Some((name, hint)) = self.queue.pop_front() else {
                break;
            };
            match self.handle(&name, hint) {
                Ok(Some(Outcome::Processed)) => tally.processed += 1,
                Ok(Some(Outcome::Failed)) => tally.failed += 1,
                Ok(None) => {}
                Err(e) => tracing::error!(file = ?name, "cannot handle request file: {e}"),
            }
            // A stop is honoured between files, never inside one.
            if self.stop.is_set() {
                break;
            }
        }
        tally
    }

    /// One file from name to filed outcome. `Ok(None)`: nothing to do (gone,
    /// or not yet complete).
    fn handle(&mut self, name: &OsStr, hint: Hint) -> io::Result<Option<Outcome>> {
        if hint == Hint::Created {
            // A regular file just created gets its close-write event when
            // complete; look again later in case it never does (a hard
            // link, a writer that keeps it open). Anything else (FIFO,
            // directory, symlink) never will: take it now.
            let is_file =
                std::fs::symlink_metadata(self.town.inbox().join(name)).is_ok_and(|m| m.is_file());
            if is_file {
                self.settling
                    .push((name.to_os_string(), Hint::Scan, Instant::now() + SETTLE));
                return Ok(None);
            }
        }
        let claimed_name = if hint == Hint::Claimed {
            name.to_os_string()
        } else {
            // Claim. A vanished source means it was already handled.
            match rename_unique(&self.town.inbox().join(name), &self.town.processing(), name) {
                Ok(path) => path.file_name().unwrap_or(name).to_os_string(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        let claimed = self.town.processing().join(&claimed_name);
        if !self.test_delay.is_zero() {
            std::thread::sleep(self.test_delay);
        }
        let read = validate::read_request(&claimed);
        if hint != Hint::Ready {
            if let Ok(Ok(bytes)) = &read {
                if validate::may_still_be_written(&claimed, bytes) {
                    self.settling
                        .push((claimed_name, Hint::Claimed, Instant::now() + SETTLE));
                    return Ok(None);
                }
            }
        }
        let (result, partial) = self.validate_and_execute(read);
        let sidecar = self.sidecar(result, &partial);
        let outcome = sidecar.outcome;
        let path = self.filer.file(&claimed_name, &sidecar)?;
        log_outcome(&path, &sidecar);
        Ok(Some(outcome))
    }

    /// On a clean stop, files claimed while still being written go back to
    /// the inbox: they were never executed, so they are not "interrupted".
    fn unclaim_settling(&mut self) {
        for (name, hint, _) in self.settling.drain(..) {
            if hint == Hint::Claimed {
                let source = self.town.processing().join(&name);
                if let Err(e) = rename_unique(&source, &self.town.inbox(), &name) {
                    tracing::error!(file = ?name, "cannot return a half-written request to the inbox: {e}");
                }
            }
        }
    }

    fn validate_and_execute(
        &self,
        read: io::Result<Result<Vec<u8>, Rejection>>,
    ) -> (Result<(), String>, Partial) {
        let (request, partial) = validate::validate(read, Utc::now(), self.config.max_request_age);
        let request = match request {
            Ok(r) => r,
            Err(reason) => return (Err(reason), partial),
        };
        if self.executor.has_effects(&request) {
            if let Err(e) = self.filer.sync_claims() {
                return (
                    Err(format!("cannot make the claim durable, not executing: {e}")),
                    partial,
                );
            }
        }
        (self.executor.execute(&request), partial)
    }

    fn sidecar(&self, result: Result<(), String>, partial: &Partial) -> Sidecar {
        let (outcome, error) = match result {
            Ok(()) => (Outcome::Processed, None),
            Err(reason) => (Outcome::Failed, Some(reason)),
        };
        Sidecar {
            outcome,
            error,
            from: partial.from.clone(),
            action: partial.action.clone(),
            session: partial.session.clone(),
            finished_at: Utc::now(),
            daemon_pid: self.pid,
        }
    }
}

fn log_outcome(path: &Path, s: &Sidecar) {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let from = s.from.as_deref().unwrap_or("-");
    let action = s.action.as_deref().unwrap_or("-");
    match &s.error {
        None => tracing::info!(%file, %action, %from, result = "processed", "request processed"),
        Some(reason) => {
            tracing::warn!(%file, %action, %from, result = "failed", %reason, "request failed")
        }
    }
}
