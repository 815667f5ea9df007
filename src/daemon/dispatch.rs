//! Dispatching validated requests to the executor's workers: requests for
//! one agent run one at a time, in the order they were claimed; requests
//! for different agents run at the same time, at most `max_parallel` at
//! once. A slow restart of one agent never holds another's request.
//!
//! The dispatcher owns "busy" and "waiting". A request whose agent is busy,
//! or that finds every worker taken, is not claimed: it waits in the inbox
//! (its name remembered here, in the order seen) until its agent, or a
//! worker, is free. So a job is only ever submitted when a worker and its
//! agent are free, `processing/` only ever holds requests in hand, and a
//! crash can only call "interrupted" a request that may really have run.
//!
//! A worker is taken only while it works. A cycle or restart comes back
//! from its worker once the new session runs, its agent booting
//! ([`Booting`]): the dispatcher keeps it, its agent still busy (so the
//! agent's next request still waits), until its prime text is due, and
//! then hands that last step to a worker again. The wait is a timer the
//! consumer's loop keeps ([`Dispatcher::next_due`],
//! [`Dispatcher::prime_due`]), not a sleeping worker; primes due at once
//! run on as many workers at once, ahead of requests not yet started. A
//! stop ends the waits at once: each is filed as what it was.
//!
//! The consumer thread owns the [`Dispatcher`] and does all the
//! bookkeeping ([`Slots`], kept apart from the threads so its decisions can
//! be tested alone); workers only execute and hand the result back, waking
//! the consumer through its channel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::sync::mpsc::{channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::execute::{Booting, Executed, Executor};
use super::inlet::{Hint, Message};
use super::stop::StopFlag;
use crate::crash_loop::Counted;
use crate::request::{Partial, Request};
use crate::text::escape_os;

/// A claimed, valid request in execution.
#[derive(Debug)]
pub(crate) struct Job {
    /// Its name in `processing/`.
    pub(crate) name: OsString,
    pub(crate) request: Request,
    pub(crate) partial: Partial,
    pub(crate) original_name: Option<String>,
    /// For a restart decided by supervision: the record to file for it
    /// (there is no request file) and the dead pane's last lines.
    pub(crate) supervised: Option<SupervisedRecord>,
}

#[derive(Debug)]
pub(crate) struct SupervisedRecord {
    pub(crate) body: Vec<u8>,
    pub(crate) capture: Option<String>,
    /// Whether the restart follows a crash (and counts as one).
    pub(crate) after_crash: bool,
}

impl Job {
    /// How executing it counts toward its agent's restarts: a request's
    /// cycle or restart always, a supervised restart as supervision says.
    pub(crate) fn counted(&self) -> Counted {
        match &self.supervised {
            None => Counted::Yes,
            Some(s) if s.after_crash => Counted::AfterCrash,
            Some(_) => Counted::No,
        }
    }
}

/// A job finished.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) job: Job,
    pub(crate) result: Result<(), String>,
}

/// What a worker is handed: a job, or the last step of one whose agent
/// has booted.
enum Work {
    Start(Job),
    Prime(Job, Booting),
}

/// What a worker hands back.
enum Report {
    Done(Done),
    /// The job's agent boots; its prime is due later.
    Booting(Job, Booting),
}

/// Which agents are busy, how many workers are taken, and which requests
/// wait in the inbox for either.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// How many requests may execute at once (`max_parallel`).
    size: usize,
    /// Sessions with a job in hand: at a worker, or its agent booting.
    busy: HashSet<String>,
    /// Workers taken (a booting agent takes none).
    working: usize,
    /// Sessions of the jobs claimed in the batch being handled, not yet
    /// submitted.
    batch: HashSet<String>,
    /// Requests left in the inbox until their agent is free, per session
    /// in the order they were seen, and the names of all waiting requests.
    deferred: HashMap<String, VecDeque<OsString>>,
    deferred_names: HashSet<OsString>,
    /// Requests left in the inbox until a worker is free: those that
    /// start a session, and those that do not (a shutdown), which go
    /// first.
    pool_waiting: VecDeque<OsString>,
    pool_waiting_first: VecDeque<OsString>,
}

impl Slots {
    pub(crate) fn new(size: usize) -> Self {
        Slots {
            size: size.max(1),
            ..Slots::default()
        }
    }

    /// Is this inbox name already waiting? (A scan sees it again: it
    /// keeps its place.)
    pub(crate) fn is_deferred(&self, name: &OsStr) -> bool {
        self.deferred_names.contains(name)
    }

    /// Is any worker taken, or any job claimed in this batch? If not, no
    /// request can have to wait, and none is looked at before its claim.
    pub(crate) fn any_taken(&self) -> bool {
        !self.busy.is_empty() || !self.batch.is_empty()
    }

    /// Must a valid request for `session` be left in the inbox for now?
    pub(crate) fn must_wait(&self, session: &str) -> bool {
        self.session_taken(session) || self.full()
    }

    /// May supervision start `session` now? Not while a request is working
    /// on that agent or waits for it, nor with every worker taken:
    /// supervision looks again at its next check.
    pub(crate) fn may_start(&self, session: &str) -> bool {
        !self.busy.contains(session) && !self.deferred.contains_key(session) && !self.full()
    }

    /// Is `session` executing, or has it a job claimed in this batch?
    fn session_taken(&self, session: &str) -> bool {
        self.busy.contains(session) || self.batch.contains(session)
    }

    /// Are all `max_parallel` workers taken? Then a valid request is not
    /// claimed either: nothing claimed ever waits for a worker.
    fn full(&self) -> bool {
        self.working + self.batch.len() >= self.size
    }

    /// Leaves a valid request unclaimed in the inbox until its agent, or
    /// else a worker, is free. Of those waiting for a worker, the ones
    /// that start no session (`starts` false: a shutdown) get one first:
    /// a storm of restarts, each ending and starting a session, must not
    /// hold up a request to end one, which is bounded by `kill_grace`.
    pub(crate) fn defer(&mut self, name: OsString, session: String, starts: bool) {
        self.deferred_names.insert(name.clone());
        if self.session_taken(&session) {
            tracing::debug!(file = %escape_os(&name), session, "left in the inbox until the agent's earlier request is done");
            self.deferred.entry(session).or_default().push_back(name);
        } else {
            tracing::debug!(file = %escape_os(&name), session, "left in the inbox until a worker is free (max_parallel)");
            match starts {
                true => self.pool_waiting.push_back(name),
                false => self.pool_waiting_first.push_back(name),
            }
        }
    }

    /// A new batch of claims begins.
    pub(crate) fn begin_batch(&mut self) {
        self.batch.clear();
    }

    /// A job for `session` was claimed in this batch.
    pub(crate) fn claimed(&mut self, session: String) {
        self.batch.insert(session);
    }

    /// The batch is over: its jobs were submitted (and are busy) or filed.
    pub(crate) fn end_batch(&mut self) {
        self.batch.clear();
    }

    /// Queues again the requests that waited for a worker, as many as are
    /// free, at the back; then the first request left waiting for each
    /// agent that is free now, at the front (they were seen first).
    pub(crate) fn release(&mut self, queue: &mut VecDeque<(OsString, Hint)>) {
        let free = self.size.saturating_sub(self.working);
        for _ in 0..free {
            let next = self.pool_waiting_first.pop_front();
            let Some(name) = next.or_else(|| self.pool_waiting.pop_front()) else {
                break;
            };
            self.deferred_names.remove(&name);
            queue.push_back((name, Hint::Ready));
        }
        if self.deferred.is_empty() || self.full() {
            return;
        }
        let free: Vec<String> = self
            .deferred
            .keys()
            .filter(|s| !self.busy.contains(*s))
            .cloned()
            .collect();
        for session in free {
            let Some(names) = self.deferred.get_mut(&session) else {
                continue;
            };
            if let Some(name) = names.pop_front() {
                self.deferred_names.remove(&name);
                queue.push_front((name, Hint::Ready));
            }
            if names.is_empty() {
                self.deferred.remove(&session);
            }
        }
    }

    /// A job for `session` goes to a worker.
    fn started(&mut self, session: String) {
        self.busy.insert(session);
        self.working += 1;
    }

    /// A worker is handed a step of a job already in hand (a prime).
    fn worker_taken(&mut self) {
        self.working += 1;
    }

    /// A worker is done with its step; the job may go on (its agent
    /// booting) without one.
    fn worker_freed(&mut self) {
        self.working = self.working.saturating_sub(1);
    }

    /// The job for `session` is finished: its agent is free.
    fn finished(&mut self, session: &str) {
        self.busy.remove(session);
    }

    /// Requests waiting in the inbox for an agent or a worker.
    pub(crate) fn deferred_count(&self) -> usize {
        self.deferred_names.len()
    }
}

pub(crate) struct Dispatcher {
    work: Option<Sender<Work>>,
    jobs: Arc<Mutex<Receiver<Work>>>,
    executor: Arc<Executor>,
    wake: SyncSender<Message>,
    workers: Vec<JoinHandle<()>>,
    reports: Arc<Mutex<Vec<Report>>>,
    /// Jobs whose agent boots, until their prime is due; no longer than
    /// `busy` (one per agent).
    booting: Vec<(Job, Booting)>,
    /// Once set, agents booting are not primed but filed as they are.
    stop: Arc<StopFlag>,
    pub(crate) slots: Slots,
}

impl Dispatcher {
    /// Starts `size` workers executing with `executor`; each finished job
    /// wakes the consumer through `wake`.
    pub(crate) fn start(
        size: usize,
        executor: Arc<Executor>,
        wake: SyncSender<Message>,
        stop: Arc<StopFlag>,
    ) -> std::io::Result<Self> {
        let (work, jobs) = channel::<Work>();
        Ok(Dispatcher {
            work: Some(work),
            jobs: Arc::new(Mutex::new(jobs)),
            executor,
            wake,
            workers: Vec::new(),
            reports: Arc::new(Mutex::new(Vec::new())),
            booting: Vec::new(),
            stop,
            slots: Slots::new(size),
        })
    }

    /// Starts another worker when every one is taken, up to `size`: an
    /// idle daemon keeps no executor threads.
    fn grow(&mut self) {
        if self.slots.working <= self.workers.len() || self.workers.len() >= self.slots.size {
            return;
        }
        let (jobs, reports, executor, wake) = (
            self.jobs.clone(),
            self.reports.clone(),
            self.executor.clone(),
            self.wake.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("executor-{}", self.workers.len()))
            .spawn(move || work_loop(&jobs, &reports, &executor, &wake));
        match spawned {
            Ok(worker) => self.workers.push(worker),
            // The jobs already started go on; this one waits for them.
            Err(e) => tracing::error!("cannot start an executor thread: {e}"),
        }
    }

    /// Hands `work` to a worker (already counted as taken).
    fn hand(&mut self, work: Work) {
        self.grow();
        if let Some(sender) = &self.work {
            // The workers outlive the sender; a send only fails once they
            // are gone, which `finish` alone causes.
            let _ = sender.send(work);
        }
    }

    /// Runs `job` now. Only ever called for a job whose agent is free
    /// ([`Slots::must_wait`], [`Slots::may_start`]): nothing claimed waits.
    pub(crate) fn submit(&mut self, job: Job) {
        let session = job.request.session();
        debug_assert!(!self.slots.busy.contains(&session), "{session} is busy");
        self.slots.started(session);
        self.hand(Work::Start(job));
    }

    /// When the next booting agent's prime is due, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.booting.iter().map(|(_, b)| b.due).min()
    }

    /// Hands every prime due by `now` to a worker. They go before any
    /// request started after them, and beyond `max_parallel` if need be
    /// (they wait for a worker then): an agent's prime is owed.
    pub(crate) fn prime_due(&mut self, now: Instant) {
        if self.booting.iter().all(|(_, b)| b.due > now) {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.booting)
            .into_iter()
            .partition(|(_, b)| b.due <= now);
        self.booting = later;
        for (job, booting) in due {
            self.slots.worker_taken();
            self.hand(Work::Prime(job, booting));
        }
    }

    /// The jobs finished since the last call; each frees its session.
    /// Once the daemon is stopping, agents still booting are finished too,
    /// unprimed, each with the reason that says so.
    pub(crate) fn take_done(&mut self) -> Vec<Done> {
        let reports = std::mem::take(&mut *self.reports.lock().unwrap_or_else(|p| p.into_inner()));
        let mut finished = Vec::with_capacity(reports.len());
        for report in reports {
            self.slots.worker_freed();
            match report {
                Report::Done(done) => finished.push(done),
                Report::Booting(job, booting) => self.booting.push((job, booting)),
            }
        }
        if self.stop.is_set() {
            for (job, booting) in std::mem::take(&mut self.booting) {
                let result = Err(self.executor.stopped(&booting));
                finished.push(Done { job, result });
            }
        }
        for done in &finished {
            self.slots.finished(&done.job.request.session());
        }
        finished
    }

    /// The sessions whose jobs are in hand now.
    pub(crate) fn running(&self) -> impl Iterator<Item = &String> {
        self.slots.busy.iter()
    }

    pub(crate) fn running_count(&self) -> usize {
        self.slots.busy.len()
    }

    /// Lets the workers finish their jobs and end.
    pub(crate) fn finish(mut self) {
        drop(self.work.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn work_loop(
    jobs: &Mutex<Receiver<Work>>,
    reports: &Mutex<Vec<Report>>,
    executor: &Executor,
    wake: &SyncSender<Message>,
) {
    loop {
        let work = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(work) => work,
            Err(_) => return,
        };
        let report = match work {
            Work::Start(job) => match executor.execute(&job.request, job.counted()) {
                Executed::Done(result) => Report::Done(Done { job, result }),
                Executed::Booting(booting) => Report::Booting(job, booting),
            },
            Work::Prime(job, booting) => {
                let result = executor.prime(booting);
                Report::Done(Done { job, result })
            }
        };
        reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(report);
        // A full channel wakes the consumer by itself.
        let _ = wake.try_send(Message::Done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_names(queue: &VecDeque<(OsString, Hint)>) -> Vec<&str> {
        queue.iter().map(|(n, _)| n.to_str().unwrap()).collect()
    }

    #[test]
    fn an_idle_pool_lets_everything_through_unlooked() {
        let slots = Slots::new(2);
        assert!(!slots.any_taken());
        assert!(!slots.must_wait("gt-mayor"));
        assert!(slots.may_start("gt-mayor"));
    }

    #[test]
    fn a_second_request_for_a_busy_agent_waits_and_keeps_its_order() {
        let mut slots = Slots::new(4);
        slots.begin_batch();
        slots.claimed("gt-mayor".into());
        assert!(slots.must_wait("gt-mayor"), "taken in this batch");
        assert!(!slots.must_wait("gt-deacon"));
        slots.defer("b.json".into(), "gt-mayor".into(), true);
        slots.defer("c.json".into(), "gt-mayor".into(), false);
        assert!(slots.is_deferred(OsStr::new("b.json")));
        assert!(!slots.may_start("gt-mayor"), "a request waits for it");
        // Submitted: busy now, and the batch is over.
        slots.started("gt-mayor".into());
        slots.end_batch();
        let mut queue = VecDeque::new();
        slots.release(&mut queue);
        assert!(queue.is_empty(), "its agent is still busy");
        slots.worker_freed();
        slots.finished("gt-mayor");
        slots.release(&mut queue);
        assert_eq!(queue_names(&queue), ["b.json"], "one at a time, in order");
        assert!(slots.is_deferred(OsStr::new("c.json")));
        assert_eq!(slots.deferred_count(), 1);
    }

    #[test]
    fn a_full_pool_defers_until_a_worker_is_free() {
        let mut slots = Slots::new(1);
        slots.begin_batch();
        slots.claimed("gt-mayor".into());
        assert!(slots.must_wait("gt-deacon"), "every worker is taken");
        slots.defer("d.json".into(), "gt-deacon".into(), true);
        assert!(!slots.may_start("gt-witness"));
        slots.started("gt-mayor".into());
        slots.end_batch();
        let mut queue = VecDeque::new();
        slots.release(&mut queue);
        assert!(queue.is_empty());
        slots.worker_freed();
        slots.finished("gt-mayor");
        slots.release(&mut queue);
        assert_eq!(queue_names(&queue), ["d.json"]);
        assert_eq!(slots.deferred_count(), 0);
    }

    #[test]
    fn a_finished_batch_never_holds_back_the_next_request_for_its_agent() {
        // One worker: a request for the mayor runs, the next one for the
        // mayor waits. When the first is done, the second is released at
        // once, not at the next rescan.
        let mut slots = Slots::new(1);
        slots.begin_batch();
        slots.claimed("gt-mayor".into());
        slots.defer("second.json".into(), "gt-mayor".into(), false);
        slots.started("gt-mayor".into());
        slots.end_batch();
        slots.worker_freed();
        slots.finished("gt-mayor");
        let mut queue = VecDeque::new();
        slots.release(&mut queue);
        assert_eq!(queue_names(&queue), ["second.json"]);
    }

    #[test]
    fn a_booting_agent_takes_no_worker_but_keeps_its_next_request_waiting() {
        let mut slots = Slots::new(1);
        slots.begin_batch();
        slots.claimed("gt-mayor".into());
        slots.defer("later.json".into(), "gt-mayor".into(), true);
        slots.started("gt-mayor".into());
        slots.end_batch();
        assert!(slots.must_wait("gt-deacon"), "the one worker is taken");
        // Its session runs and its agent boots: the worker is free.
        slots.worker_freed();
        assert!(!slots.must_wait("gt-deacon"));
        assert!(slots.may_start("gt-deacon"));
        assert!(slots.must_wait("gt-mayor"), "the mayor is still busy");
        let mut queue = VecDeque::new();
        slots.release(&mut queue);
        assert!(queue.is_empty(), "its agent is still booting");
        // Its prime takes a worker again, then it is done.
        slots.worker_taken();
        assert!(slots.must_wait("gt-deacon"));
        slots.worker_freed();
        slots.finished("gt-mayor");
        slots.release(&mut queue);
        assert_eq!(queue_names(&queue), ["later.json"]);
    }

    #[test]
    fn of_the_requests_waiting_for_a_worker_those_that_start_no_session_go_first() {
        let mut slots = Slots::new(1);
        slots.begin_batch();
        slots.claimed("gt-r0-witness".into());
        slots.defer("a-cycle.json".into(), "gt-r1-witness".into(), true);
        slots.defer("b-cycle.json".into(), "gt-r2-witness".into(), true);
        slots.defer("c-shutdown.json".into(), "gt-deacon".into(), false);
        slots.started("gt-r0-witness".into());
        slots.end_batch();
        slots.worker_freed();
        slots.finished("gt-r0-witness");
        let mut queue = VecDeque::new();
        slots.release(&mut queue);
        assert_eq!(queue_names(&queue), ["c-shutdown.json"]);
        assert_eq!(slots.deferred_count(), 2, "the cycles keep their order");
    }
}
