//! The consumer: the one thread that takes each inbox file through
//! claim → read → validate → dispatch, and files every outcome.
//!
//! Exactly one consumer runs per town (the lock), and a file is only ever
//! executed after this thread renamed it out of `inbox/`, so duplicate
//! events and overlapping scans are harmless. Valid requests are executed
//! by the [`Dispatcher`]'s workers; bad ones are filed at once, never
//! queued behind a restart. Filing happens here, on one thread.
//!
//! A request for an agent whose earlier request is still executing, or
//! that finds every worker taken, is not claimed: the dispatcher keeps it
//! waiting in the inbox (see [`super::dispatch`]). In a dry run nothing
//! waits on an agent, and requests run right here.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::dispatch::{Dispatcher, Done, Job};
use super::execute::{Executor, HeldSessions};
use super::filing::{self, Filer};
use super::inlet::{Hint, Inlet, Message, Restart};
use super::ledger::{Ledger, Tally};
use super::metrics::Monitoring;
use super::recovery;
use super::stop::StopFlag;
use super::supervisor::restarts;
use super::validate::{self, SETTLE};
use crate::config::SharedConfig;
use crate::crash_loop::Counted;
use crate::fs::rename_unique;
use crate::inbox::{self, MAX_NAME_BYTES};
use crate::request::{self, Partial};
use crate::state::StateStore;
use crate::testing::Hooks;
use crate::text::escape_os;
use crate::town::Town;

/// Files handled before the outcomes go to the ledger and the channel is
/// looked at again.
const BATCH: usize = 64;

/// A file that may still be being written, to look at again at `due`.
struct Settling {
    name: OsString,
    hint: Hint,
    due: Instant,
}

pub(crate) struct Consumer {
    town: Town,
    /// Read where used: a reload (SIGHUP) applies to the next request.
    config: SharedConfig,
    filer: Filer,
    ledger: Ledger,
    dispatcher: Dispatcher,
    /// Kept to decide whether a request needs a durable claim first.
    executor: Arc<Executor>,
    /// Sessions supervision's restarts hold until they are filed.
    held: Arc<HeldSessions>,
    rx: Receiver<Message>,
    overflow: Arc<AtomicBool>,
    /// Set by the signal thread, which also sends `Message::Stop` to wake us.
    stop: Arc<StopFlag>,
    /// Names to look at, in order; bounded by the inbox's size because a
    /// scan only runs when it is empty.
    queue: VecDeque<(OsString, Hint)>,
    settling: Vec<Settling>,
    /// Restarts supervision asked for, to dispatch.
    supervised: Vec<Restart>,
    rescan_due: Option<&'static str>,
    rescan_every: Duration,
    next_rescan: Instant,
    test_delay: Duration,
}

impl Consumer {
    // The consumer meets every other part of the daemon; `run` wires it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        town: &Town,
        config: &SharedConfig,
        state: Arc<StateStore>,
        inlet: Inlet,
        stop: Arc<StopFlag>,
        held: Arc<HeldSessions>,
        hooks: &Hooks,
        monitoring: Monitoring,
    ) -> io::Result<Self> {
        let executor = Arc::new(Executor::new(town, config, stop.clone(), held.clone()));
        let dispatcher =
            Dispatcher::start(config.get().max_parallel, executor.clone(), inlet.wake)?;
        Ok(Consumer {
            town: town.clone(),
            config: config.clone(),
            filer: Filer::new(town, state.clone(), monitoring),
            ledger: Ledger::start(town, state)?,
            dispatcher,
            executor,
            held,
            rx: inlet.rx,
            overflow: inlet.overflow,
            stop,
            queue: VecDeque::new(),
            settling: Vec::new(),
            supervised: Vec::new(),
            rescan_due: Some("start-up"),
            rescan_every: inlet.rescan_every,
            next_rescan: Instant::now() + inlet.rescan_every,
            test_delay: hooks.request_delay.unwrap_or_default(),
        })
    }

    /// Files what a stopped daemon left in `processing/` (see
    /// [`recovery`]); how many were filed as interrupted.
    pub(crate) fn recover(&mut self) -> io::Result<usize> {
        recovery::recover(&self.town, &mut self.filer, &self.ledger)
    }

    /// Runs until the stop. Requests being executed are finished (the
    /// executor cuts its waits short on a stop); a request claimed while
    /// still being written goes back to the inbox.
    pub(crate) fn run(mut self) {
        while self.gather() {
            let mut tally = Tally::default();
            self.collect_done(&mut tally);
            self.dispatcher.slots.release(&mut self.queue);
            self.dispatch_supervised();
            self.process_batch(&mut tally);
            self.filer.refile_due(&mut tally, false);
            self.record(tally);
        }
        self.wind_down();
    }

    fn record(&mut self, mut tally: Tally) {
        if !tally.is_empty() {
            tally.pending = (self.queue.len()
                + self.settling.len()
                + self.dispatcher.slots.deferred_count()
                + self.dispatcher.running_count()) as u64;
            self.ledger.record(tally);
        }
    }

    fn wind_down(mut self) {
        for entry in std::mem::take(&mut self.settling) {
            if let Hint::Claimed(_) = entry.hint {
                self.unclaim(&entry.name, "still being written");
            }
        }
        while self.dispatcher.running_count() > 0 {
            let running: Vec<&String> = self.dispatcher.running().collect();
            tracing::info!(?running, "waiting for requests in execution to finish");
            let _ = self.rx.recv_timeout(Duration::from_millis(200));
            let mut tally = Tally::default();
            self.collect_done(&mut tally);
            self.record(tally);
        }
        let mut tally = Tally::default();
        self.filer.refile_due(&mut tally, true);
        self.record(tally);
        self.filer.report_unfiled();
        self.dispatcher.finish();
        self.ledger.finish();
    }

    /// Puts a claimed request that never ran back into the inbox.
    fn unclaim(&self, name: &OsStr, why: &str) {
        let source = self.town.processing().join(name);
        if let Err(e) = rename_unique(&source, &self.town.inbox(), name) {
            tracing::error!(file = %escape_os(name), "cannot return a request ({why}) to the inbox: {e}");
        }
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
                .map(|s| s.due)
                .chain(self.filer.next_try())
                .fold(self.next_rescan, Instant::min);
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
                self.settling.drain(..).partition(|s| s.due <= now);
            self.settling = later;
            self.queue.extend(due.into_iter().map(|s| (s.name, s.hint)));
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
                        filing::heal_dirs(&self.town);
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
            Message::Supervised(restart) => self.supervised.push(*restart),
            Message::Done | Message::Stop => {}
        }
        !self.stop.is_set()
    }

    fn process_batch(&mut self, tally: &mut Tally) {
        self.dispatcher.slots.begin_batch();
        let jobs = self.claim_batch(tally);
        self.start(jobs, tally);
        // Its jobs are busy at a worker now, or filed: the batch itself no
        // longer takes a worker.
        self.dispatcher.slots.end_batch();
    }

    /// Handles up to [`BATCH`] queued names; the valid requests claimed.
    fn claim_batch(&mut self, tally: &mut Tally) -> Vec<Job> {
        let mut jobs = Vec::new();
        for _ in 0..BATCH {
            let Some((name, hint)) = self.queue.pop_front() else {
                break;
            };
            match self.handle(&name, hint, tally) {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(file = %escape_os(&name), "cannot handle request file: {e}")
                }
            }
            if self.stop.is_set() {
                break;
            }
        }
        jobs
    }

    /// Submits the claimed jobs once their claims are durable: claims must
    /// survive power loss before anything runs, or a restart could come
    /// back from inbox/ and run twice. One directory sync covers the batch.
    fn start(&mut self, jobs: Vec<Job>, tally: &mut Tally) {
        if jobs.is_empty() {
            return;
        }
        if self.executor.has_effects() {
            if let Err(e) = self.filer.sync_claims() {
                for job in jobs {
                    let reason = format!("cannot make the claim durable, not executing: {e}");
                    let sidecar = self
                        .filer
                        .sidecar(Err(reason), &job.partial, job.original_name);
                    self.filer.file(job.name, sidecar, tally);
                }
                return;
            }
        }
        for job in jobs {
            self.dispatcher.submit(job);
        }
    }

    /// Takes one name from claim to a job for the executor, or files it at
    /// once when it is refused. `Ok(None)`: nothing more to do now (gone,
    /// refused and filed, or not yet complete).
    fn handle(&mut self, name: &OsStr, hint: Hint, tally: &mut Tally) -> io::Result<Option<Job>> {
        if hint == Hint::Created {
            // A regular file just created gets its close-write event when
            // complete; look again later in case it never does (a hard
            // link, a writer that keeps it open). Anything else (FIFO,
            // directory, symlink) never will: take it now.
            let is_file =
                std::fs::symlink_metadata(self.town.inbox().join(name)).is_ok_and(|m| m.is_file());
            if is_file {
                let now = Instant::now();
                self.settling.push(Settling {
                    name: name.to_os_string(),
                    hint: Hint::Announced(now),
                    due: now + SETTLE,
                });
                return Ok(None);
            }
        }
        if self.dispatcher.slots.is_deferred(name) {
            return Ok(None); // seen again by a scan; it keeps its place
        }
        if !matches!(hint, Hint::Claimed(_))
            && self.executor.has_effects()
            && self.dispatcher.slots.any_taken()
        {
            // Look before claiming: a request for a busy agent stays in
            // the inbox, unclaimed, until that agent is free.
            let peek = request::read(&self.town.inbox().join(name));
            if let (Ok(request), _) =
                request::validate(peek, Utc::now(), self.config.get().max_request_age)
            {
                let session = request.session();
                if self.dispatcher.slots.must_wait(&session) {
                    self.dispatcher.slots.defer(name.to_os_string(), session);
                    return Ok(None);
                }
            }
        }
        let (claimed_name, original_name) = match hint {
            Hint::Claimed(_) => (name.to_os_string(), None),
            _ => match self.claim(name)? {
                Some(claimed) => claimed,
                None => return Ok(None),
            },
        };
        let claimed = self.town.processing().join(&claimed_name);
        if !self.test_delay.is_zero() {
            std::thread::sleep(self.test_delay);
        }
        let read = request::read(&claimed);
        if let Ok(Ok(bytes)) = &read {
            let announced = match hint {
                Hint::Announced(at) | Hint::Claimed(Some(at)) => Some(at),
                _ => None,
            };
            let still_writing = match (hint, announced) {
                (Hint::Ready, _) => false,
                (_, Some(at)) => {
                    !validate::is_complete_json(bytes)
                        && at.elapsed() < self.config.get().write_timeout
                }
                (_, None) => validate::may_still_be_written(&claimed, bytes),
            };
            if still_writing && original_name.is_none() {
                tracing::debug!(file = %escape_os(&claimed_name), "still being written; looking again");
                self.settling.push(Settling {
                    name: claimed_name,
                    hint: Hint::Claimed(announced),
                    due: Instant::now() + SETTLE,
                });
                return Ok(None);
            }
        }
        let (request, partial) = if let Some(original) = &original_name {
            let reason = format!(
                "file name too long: {} bytes, at most {MAX_NAME_BYTES} (so that it can be filed); \
                 filed under a shortened name, the original is in this sidecar's original_name",
                original.len()
            );
            (Err(reason), Partial::default())
        } else {
            request::validate(read, Utc::now(), self.config.get().max_request_age)
        };
        match request {
            Ok(request) if !self.executor.has_effects() => {
                // Nothing to wait for (dry run): run it here and now.
                let result = self.executor.execute(&request, Counted::Yes);
                let sidecar = self.filer.sidecar(result, &partial, original_name);
                self.filer.file(claimed_name, sidecar, tally);
                Ok(None)
            }
            Ok(request) => {
                let session = request.session();
                if self.dispatcher.slots.must_wait(&session) {
                    // It changed between the look and the claim: back it
                    // goes, unrun.
                    let back = rename_unique(&claimed, &self.town.inbox(), &claimed_name)?;
                    self.filer.unclaimed(&claimed_name);
                    let back = back.file_name().unwrap_or(&claimed_name).to_os_string();
                    self.dispatcher.slots.defer(back, session);
                    return Ok(None);
                }
                self.dispatcher.slots.claimed(session);
                Ok(Some(Job {
                    name: claimed_name,
                    request,
                    partial,
                    original_name,
                    supervised: None,
                }))
            }
            Err(reason) => {
                let sidecar = self.filer.sidecar(Err(reason), &partial, original_name);
                self.filer.file(claimed_name, sidecar, tally);
                Ok(None)
            }
        }
    }

    /// Claims `inbox/NAME` by renaming it into `processing/` (under a
    /// shortened name when NAME is too long to file). `None`: it is gone,
    /// already handled. A claim that fails for any other reason is
    /// reported and tried again later, never skipped silently.
    fn claim(&mut self, name: &OsStr) -> io::Result<Option<(OsString, Option<String>)>> {
        let source = self.town.inbox().join(name);
        let (target, original) = if name.len() > MAX_NAME_BYTES {
            (
                inbox::shortened(name),
                Some(name.to_string_lossy().into_owned()),
            )
        } else {
            (name.to_os_string(), None)
        };
        let mut healed = false;
        loop {
            match rename_unique(&source, &self.town.processing(), &target) {
                Ok(path) => {
                    let claimed = path.file_name().unwrap_or(&target).to_os_string();
                    self.filer.claimed(&claimed);
                    return Ok(Some((claimed, original)));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !exists(&source) => {
                    return Ok(None)
                }
                Err(e) if !healed => {
                    healed = true;
                    if !filing::heal_dirs(&self.town) {
                        return self.claim_failed(name, e);
                    }
                }
                Err(e) => return self.claim_failed(name, e),
            }
        }
    }

    fn claim_failed(
        &mut self,
        name: &OsStr,
        e: io::Error,
    ) -> io::Result<Option<(OsString, Option<String>)>> {
        tracing::error!(file = %escape_os(name), "cannot claim a request into processing/ ({e}); it stays in the inbox and is tried again");
        self.settling.push(Settling {
            name: name.to_os_string(),
            hint: Hint::Scan,
            due: Instant::now() + filing::REFILE_EVERY_MAX.min(self.rescan_every),
        });
        Ok(None)
    }

    fn collect_done(&mut self, tally: &mut Tally) {
        for Done { job, result } in self.dispatcher.take_done() {
            let sidecar = self.filer.sidecar(result, &job.partial, job.original_name);
            match job.supervised {
                None => {
                    restarts::note_request(&self.town, &self.config.get(), &job.request, &sidecar);
                    self.filer.file(job.name, sidecar, tally);
                }
                Some(record) => {
                    restarts::file(
                        &self.town,
                        &mut self.filer,
                        job.name,
                        record,
                        sidecar,
                        tally,
                    );
                    self.held.release(&job.request.session());
                }
            }
        }
    }

    /// Hands supervision's restarts to the executor, unless a request is
    /// working on that agent (supervision looks again at its next check).
    fn dispatch_supervised(&mut self) {
        for restart in std::mem::take(&mut self.supervised) {
            let session = restart.session.clone();
            let Some(job) = restarts::job(restart, Utc::now()) else {
                self.held.release(&session);
                continue;
            };
            if !self.dispatcher.slots.may_start(&session) {
                tracing::debug!(
                    session,
                    "a request is handling this agent; supervision waits"
                );
                self.held.release(&session);
                continue;
            }
            self.dispatcher.submit(job);
        }
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
