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
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::claim::{self, Claim};
use super::dispatch::{Dispatcher, Done, Job};
use super::execute::{Executor, HeldSessions};
use super::filing::{self, Filer};
use super::inlet::{Hint, Inlet, Message};
use super::ledger::{Ledger, Tally};
use super::monitoring::Monitoring;
use super::recovery;
use super::stop::StopFlag;
use super::supervisor::restarts::Liaison;
use super::validate::{self, Settling, SETTLE};
use super::watch::{self, Watch};
use crate::config::SharedConfig;
use crate::crash_loop::Counted;
use crate::inbox;
use crate::request::{self, Partial};
use crate::state::StateStore;
use crate::testing::Hooks;
use crate::text::escape_os;
use crate::town::Town;

/// Files handled before the outcomes go to the ledger and the channel is
/// looked at again.
const BATCH: usize = 64;

pub(crate) struct Consumer {
    town: Town,
    /// Read where used: a reload (SIGHUP) applies to the next request.
    config: SharedConfig,
    filer: Filer,
    ledger: Ledger,
    dispatcher: Dispatcher,
    /// Kept to decide whether a request needs a durable claim first.
    executor: Arc<Executor>,
    supervision: Liaison,
    inlet: Inlet,
    /// The inbox's watch, paused while names in hand outnumber what events
    /// could add (see [`Consumer::pace_watch`]); none when polling.
    watch: Option<Watch>,
    /// Set by the signal thread, which also sends `Message::Stop` to wake us.
    stop: Arc<StopFlag>,
    /// Names to look at, in order; bounded by the inbox's size because a
    /// scan only runs when it is empty.
    queue: VecDeque<(OsString, Hint)>,
    settling: Settling,
    rescan_due: Option<&'static str>,
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
        let dispatcher = Dispatcher::start(
            config.get().max_parallel,
            executor.clone(),
            inlet.wake.clone(),
            stop.clone(),
        )?;
        Ok(Consumer {
            town: town.clone(),
            config: config.clone(),
            filer: Filer::new(town, state.clone(), monitoring),
            ledger: Ledger::start(town, state)?,
            dispatcher,
            executor,
            supervision: Liaison::new(town, &config.get(), held, stop.clone()),
            stop,
            queue: VecDeque::new(),
            settling: Settling::default(),
            rescan_due: Some("start-up"),
            next_rescan: Instant::now() + inlet.rescan_every,
            test_delay: hooks.request_delay.unwrap_or_default(),
            inlet,
            watch: None,
        })
    }

    /// The inbox's watch is the consumer's from now on.
    pub(crate) fn keep_watch(&mut self, watch: Watch) {
        self.watch = Some(watch);
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
            // Primes first: they take workers before new requests do.
            self.dispatcher.prime_due(Instant::now());
            self.dispatcher.slots.release(&mut self.queue);
            self.supervision.dispatch(&mut self.dispatcher);
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
        for name in self.settling.take_claimed() {
            if let Err(e) = claim::unclaim(&self.town, &name) {
                tracing::error!(file = %escape_os(&name), "cannot return a request (still being written) to the inbox: {e}");
            }
        }
        loop {
            // Agents still booting are filed at once, unprimed.
            let mut tally = Tally::default();
            self.collect_done(&mut tally);
            self.record(tally);
            if self.dispatcher.running_count() == 0 {
                break;
            }
            let running: Vec<&String> = self.dispatcher.running().collect();
            tracing::info!(?running, "waiting for requests in execution to finish");
            let _ = self.inlet.rx.recv_timeout(Duration::from_millis(200));
        }
        let mut tally = Tally::default();
        self.filer.refile_due(&mut tally, true);
        self.record(tally);
        self.filer.report_unfiled();
        self.dispatcher.finish();
        self.ledger.finish();
    }

    /// Fills the queue from the channel, timers and scans; false on stop.
    fn gather(&mut self) -> bool {
        if self.stop.is_set() {
            return false;
        }
        self.pace_watch();
        if self.queue.is_empty() && self.rescan_due.is_none() {
            let now = Instant::now();
            let wake = (self.settling.next_due().into_iter())
                .chain(self.filer.next_try())
                .chain(self.dispatcher.next_due())
                .fold(self.next_rescan, Instant::min);
            match self
                .inlet
                .rx
                .recv_timeout(wake.saturating_duration_since(now))
            {
                Ok(msg) => {
                    if !self.accept(msg) {
                        return false;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        while let Ok(msg) = self.inlet.rx.try_recv() {
            if !self.accept(msg) {
                return false;
            }
        }
        if self.inlet.overflow.swap(false, Ordering::AcqRel) {
            self.rescan_due = Some("event channel full");
        }
        let now = Instant::now();
        if now >= self.next_rescan {
            self.rescan_due.get_or_insert("periodic safety net");
        }
        self.queue.extend(self.settling.take_due(now));
        if let (true, Some(why)) = (self.queue.is_empty(), self.rescan_due) {
            self.rescan_due = None;
            self.next_rescan = now + self.inlet.rescan_every;
            let names = watch::scan(&self.town, why);
            self.queue
                .extend(names.into_iter().map(|n| (n, Hint::Scan)));
        }
        self.pace_watch();
        true
    }

    /// Pauses the inbox's watch while more than a batch of names is in
    /// hand: a scan follows once they are all handled, so events would add
    /// nothing, and each claim would cost the kernel an event and a
    /// wake-up of the watcher's thread (13% of this thread's time in a
    /// drain on tmpfs: BENCHMARKS.md). With nothing in hand it resumes it,
    /// and rescans for whatever came meanwhile; a watch that cannot be set
    /// up again leaves the inbox polled.
    fn pace_watch(&mut self) {
        let Some(watch) = &mut self.watch else {
            return;
        };
        if self.queue.len() > BATCH {
            watch.pause();
            return;
        }
        if !self.queue.is_empty() || !watch.is_paused() {
            return;
        }
        if let Err(e) = watch.resume() {
            let every = self.config.get().poll_interval;
            tracing::warn!(every = %crate::duration::human(every),
                "cannot watch the inbox again ({e}); falling back to polling");
            self.watch = None;
            self.inlet.rescan_every = every;
        }
        self.rescan_due
            .get_or_insert("inbox watched again after a drain");
    }

    fn accept(&mut self, msg: Message) -> bool {
        match msg {
            Message::Candidate(name, hint) => self.queue.push_back((name, hint)),
            Message::Rescan(why) => {
                tracing::debug!(why, "rescan requested");
                self.rescan_due = Some(why);
            }
            Message::Supervised(restart) => self.supervision.ask(*restart),
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

    /// Submits the claimed jobs once their claims are durable (one
    /// directory sync covers the batch).
    fn start(&mut self, jobs: Vec<Job>, tally: &mut Tally) {
        let durable = match jobs.is_empty() {
            true => Ok(()),
            false => claim::make_durable(&self.town),
        };
        for job in jobs {
            let Err(e) = &durable else {
                self.dispatcher.submit(job);
                continue;
            };
            let reason = format!("cannot make the claim durable, not executing: {e}");
            let sidecar = self
                .filer
                .sidecar(Err(reason), &job.partial, job.original_name);
            self.filer.file(job.name, sidecar, tally);
        }
    }

    /// Takes one name from claim to a job for the executor, or files it at
    /// once when it is refused. `Ok(None)`: nothing more to do now (gone,
    /// waiting, refused and filed, or not yet complete).
    fn handle(&mut self, name: &OsStr, hint: Hint, tally: &mut Tally) -> io::Result<Option<Job>> {
        let inbox_path = self.town.inbox().join(name);
        if hint == Hint::Created && self.settling.created(name, &inbox_path, Instant::now()) {
            return Ok(None);
        }
        if self.dispatcher.slots.is_deferred(name) {
            return Ok(None); // seen again by a scan; it keeps its place
        }
        if !matches!(hint, Hint::Claimed(_)) && self.left_waiting(name) {
            return Ok(None);
        }
        let (claimed_name, original_name) = match hint {
            Hint::Claimed(_) => (name.to_os_string(), None),
            _ => match claim::claim(&self.town, name) {
                Claim::Claimed { name, original } => {
                    self.filer.claimed(&name);
                    (name, original)
                }
                Claim::Gone => return Ok(None),
                Claim::Failed => {
                    let due =
                        Instant::now() + filing::REFILE_EVERY_MAX.min(self.inlet.rescan_every);
                    self.settling.push(name.to_os_string(), Hint::Scan, due);
                    return Ok(None);
                }
            },
        };
        let claimed = self.town.processing().join(&claimed_name);
        if !self.test_delay.is_zero() {
            std::thread::sleep(self.test_delay);
        }
        let read = inbox::read_request(&claimed);
        if let (Ok(Ok(bytes)), None) = (&read, &original_name) {
            let write_timeout = self.config.get().write_timeout;
            if let Some(again) = validate::still_writing(hint, &claimed, bytes, write_timeout) {
                tracing::debug!(file = %escape_os(&claimed_name), "still being written; looking again");
                self.settling
                    .push(claimed_name, again, Instant::now() + SETTLE);
                return Ok(None);
            }
        }
        let (request, partial) = match &original_name {
            Some(original) => (Err(claim::too_long(original)), Partial::default()),
            None => request::validate(read, Utc::now(), self.config.get().max_request_age),
        };
        let sidecar = match request {
            Ok(request) if self.executor.has_effects() => {
                let job = Job {
                    name: claimed_name,
                    request,
                    partial,
                    original_name,
                    supervised: None,
                };
                return self.queue_job(job);
            }
            // Nothing to wait for (dry run): run it here and now.
            Ok(request) => {
                let result = self.executor.execute_here(&request, Counted::Yes);
                self.filer.sidecar(result, &partial, original_name)
            }
            Err(reason) => self.filer.sidecar(Err(reason), &partial, original_name),
        };
        self.filer.file(claimed_name, sidecar, tally);
        Ok(None)
    }

    /// Looks before claiming: a valid request for a busy agent, or that
    /// finds every worker taken, stays in the inbox unclaimed. True when
    /// it was left waiting.
    fn left_waiting(&mut self, name: &OsStr) -> bool {
        if !self.executor.has_effects() || !self.dispatcher.slots.any_taken() {
            return false;
        }
        let peek = inbox::read_request(&self.town.inbox().join(name));
        let max_age = self.config.get().max_request_age;
        let (Ok(request), _) = request::validate(peek, Utc::now(), max_age) else {
            return false;
        };
        let session = request.session();
        let wait = self.dispatcher.slots.must_wait(&session);
        if wait {
            let starts = request.action.starts_session();
            self.dispatcher
                .slots
                .defer(name.to_os_string(), session, starts);
        }
        wait
    }

    /// The job for a claimed valid request, unless its agent became busy
    /// between the look and the claim: then back to the inbox it goes,
    /// unrun, to wait there.
    fn queue_job(&mut self, job: Job) -> io::Result<Option<Job>> {
        let session = job.request.session();
        if self.dispatcher.slots.must_wait(&session) {
            let back = claim::unclaim(&self.town, &job.name)?;
            self.filer.unclaimed(&job.name);
            let starts = job.request.action.starts_session();
            self.dispatcher.slots.defer(back, session, starts);
            return Ok(None);
        }
        self.dispatcher.slots.claimed(session);
        Ok(Some(job))
    }

    fn collect_done(&mut self, tally: &mut Tally) {
        for Done { job, result } in self.dispatcher.take_done() {
            let sidecar = self
                .filer
                .sidecar(result, &job.partial, job.original_name.clone());
            if job.supervised.is_some() {
                self.supervision.file(&mut self.filer, job, sidecar, tally);
                continue;
            }
            self.supervision.note(&job.request, &sidecar);
            self.filer.file(job.name, sidecar, tally);
        }
    }
}

#[cfg(test)]
mod tests;
