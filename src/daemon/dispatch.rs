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
//! The consumer thread owns the [`Dispatcher`] and does all the
//! bookkeeping ([`Slots`], kept apart from the threads so its decisions can
//! be tested alone); workers only execute and hand the result back, waking
//! the consumer through its channel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::sync::mpsc::{channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::execute::Executor;
use super::inlet::{Hint, Message};
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

/// A job a worker finished.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) job: Job,
    pub(crate) result: Result<(), String>,
}

/// Which agents are busy, how many workers are taken, and which requests
/// wait in the inbox for either.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// How many requests may execute at once (`max_parallel`).
    size: usize,
    /// Sessions with a job at a worker.
    busy: HashSet<String>,
    /// Sessions of the jobs claimed in the batch being handled, not yet
    /// submitted.
    batch: HashSet<String>,
    /// Requests left in the inbox until their agent is free, per session
    /// in the order they were seen, and the names of all waiting requests.
    deferred: HashMap<String, VecDeque<OsString>>,
    deferred_names: HashSet<OsString>,
    /// Requests left in the inbox until a worker is free.
    pool_waiting: VecDeque<OsString>,
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
        self.busy.len() + self.batch.len() >= self.size
    }

    /// Leaves a valid request unclaimed in the inbox until its agent, or
    /// else a worker, is free.
    pub(crate) fn defer(&mut self, name: OsString, session: String) {
        self.deferred_names.insert(name.clone());
        if self.session_taken(&session) {
            tracing::debug!(file = %escape_os(&name), session, "left in the inbox until the agent's earlier request is done");
            self.deferred.entry(session).or_default().push_back(name);
        } else {
            tracing::debug!(file = %escape_os(&name), session, "left in the inbox until a worker is free (max_parallel)");
            self.pool_waiting.push_back(name);
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
        let free = self.size.saturating_sub(self.busy.len());
        for _ in 0..free {
            let Some(name) = self.pool_waiting.pop_front() else {
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

    /// Requests waiting in the inbox for an agent or a worker.
    pub(crate) fn deferred_count(&self) -> usize {
        self.deferred_names.len()
    }
}

pub(crate) struct Dispatcher {
    work: Option<Sender<Job>>,
    jobs: Arc<Mutex<Receiver<Job>>>,
    executor: Arc<Executor>,
    wake: SyncSender<Message>,
    workers: Vec<JoinHandle<()>>,
    done: Arc<Mutex<Vec<Done>>>,
    pub(crate) slots: Slots,
}

impl Dispatcher {
    /// Starts `size` workers executing with `executor`; each finished job
    /// wakes the consumer through `wake`.
    pub(crate) fn start(
        size: usize,
        executor: Arc<Executor>,
        wake: SyncSender<Message>,
    ) -> std::io::Result<Self> {
        let (work, jobs) = channel::<Job>();
        Ok(Dispatcher {
            work: Some(work),
            jobs: Arc::new(Mutex::new(jobs)),
            executor,
            wake,
            workers: Vec::new(),
            done: Arc::new(Mutex::new(Vec::new())),
            slots: Slots::new(size),
        })
    }

    /// Starts another worker when every one is taken, up to `size`: an
    /// idle daemon keeps no executor threads.
    fn grow(&mut self) {
        if self.slots.busy.len() <= self.workers.len() || self.workers.len() >= self.slots.size {
            return;
        }
        let (jobs, done, executor, wake) = (
            self.jobs.clone(),
            self.done.clone(),
            self.executor.clone(),
            self.wake.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("executor-{}", self.workers.len()))
            .spawn(move || work_loop(&jobs, &done, &executor, &wake));
        match spawned {
            Ok(worker) => self.workers.push(worker),
            // The jobs already started go on; this one waits for them.
            Err(e) => tracing::error!("cannot start an executor thread: {e}"),
        }
    }

    /// Runs `job` now. Only ever called for a job whose agent is free
    /// ([`Slots::must_wait`], [`Slots::may_start`]): nothing claimed waits.
    pub(crate) fn submit(&mut self, job: Job) {
        let session = job.request.session();
        debug_assert!(!self.slots.busy.contains(&session), "{session} is busy");
        self.slots.busy.insert(session);
        self.grow();
        if let Some(work) = &self.work {
            // The workers outlive the sender; a send only fails once they
            // are gone, which `finish` alone causes.
            let _ = work.send(job);
        }
    }

    /// The jobs finished since the last call; each frees its session.
    pub(crate) fn take_done(&mut self) -> Vec<Done> {
        let finished = std::mem::take(&mut *self.done.lock().unwrap_or_else(|p| p.into_inner()));
        for done in &finished {
            self.slots.busy.remove(&done.job.request.session());
        }
        finished
    }

    /// The sessions whose jobs are at a worker now.
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
    jobs: &Mutex<Receiver<Job>>,
    done: &Mutex<Vec<Done>>,
    executor: &Executor,
    wake: &SyncSender<Message>,
) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let result = executor.execute(&job.request, job.counted());
        done.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Done { job, result });
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
        slots.defer("b.json".into(), "gt-mayor".into());
        slots.defer("c.json".into(), "gt-mayor".into());
        assert!(slots.is_deferred(OsStr::new("b.json")));
        assert!(!slots.may_start("gt-mayor"), "a request waits for it");
        // Submitted: busy now, and the batch is over.
        slots.busy.insert("gt-mayor".into());
        slots.end_batch();
        let mut queue = VecDeque::new();
        slots.release(&mut queue);
        assert!(queue.is_empty(), "its agent is still busy");
        slots.busy.remove("gt-mayor");
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
        slots.defer("d.json".into(), "gt-deacon".into());
        assert!(!slots.may_start("gt-witness"));
        slots.busy.insert("gt-mayor".into());
        slots.end_batch();
        let mut queue = VecDeque::new();
        slots.release(&mut queue);
        assert!(queue.is_empty());
        slots.busy.clear();
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
        slots.defer("second.json".into(), "gt-mayor".into());
        slots.busy.insert("gt-mayor".into());
        slots.end_batch();
        slots.busy.remove("gt-mayor");
        let mut queue = VecDeque::new();
        slots.release(&mut queue);
        assert_eq!(queue_names(&queue), ["second.json"]);
    }
}
