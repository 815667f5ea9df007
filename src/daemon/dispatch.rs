//! Dispatching validated requests to the executor's workers: requests for
//! one agent run one at a time, in the order they were claimed; requests
//! for different agents run at the same time, at most `max_parallel` at
//! once. A slow restart of one agent never holds another's request.
//!
//! The consumer thread owns the [`Dispatcher`] and does all the
//! bookkeeping; workers only execute and hand the result back, waking the
//! consumer through its channel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::sync::mpsc::{channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::execute::Executor;
use super::inlet::Message;
use crate::request::{Partial, Request};

/// A claimed, valid request waiting for or in execution.
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
}

/// A job a worker finished.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) job: Job,
    pub(crate) result: Result<(), String>,
}

pub(crate) struct Dispatcher {
    work: Option<Sender<Job>>,
    jobs: Arc<Mutex<Receiver<Job>>>,
    size: usize,
    executor: Arc<Executor>,
    wake: SyncSender<Message>,
    workers: Vec<JoinHandle<()>>,
    done: Arc<Mutex<Vec<Done>>>,
    /// Sessions with a job at a worker.
    busy: HashSet<String>,
    /// Jobs claimed behind a busy session's job, in claim order.
    waiting: HashMap<String, VecDeque<Job>>,
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
            size: size.max(1),
            executor,
            wake,
            workers: Vec::new(),
            done: Arc::new(Mutex::new(Vec::new())),
            busy: HashSet::new(),
            waiting: HashMap::new(),
        })
    }

    /// Starts another worker when every one is taken, up to `size`: an
    /// idle daemon keeps no executor threads.
    fn grow(&mut self) {
        if self.busy.len() <= self.workers.len() || self.workers.len() >= self.size {
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

    /// Runs `job` now, or after the jobs already claimed for its session.
    pub(crate) fn submit(&mut self, job: Job) {
        let session = job.request.session();
        if self.busy.contains(&session) {
            self.waiting.entry(session).or_default().push_back(job);
        } else {
            self.send(session, job);
        }
    }

    fn send(&mut self, session: String, job: Job) {
        self.busy.insert(session);
        self.grow();
        if let Some(work) = &self.work {
            // The workers outlive the sender; a send only fails once they
            // are gone, which `finish` alone causes.
            let _ = work.send(job);
        }
    }

    /// The jobs finished since the last call; each frees its session for
    /// the next job claimed for it.
    pub(crate) fn take_done(&mut self) -> Vec<Done> {
        let finished = std::mem::take(&mut *self.done.lock().unwrap_or_else(|p| p.into_inner()));
        for done in &finished {
            let session = done.job.request.session();
            self.busy.remove(&session);
            let next = self.waiting.get_mut(&session).and_then(VecDeque::pop_front);
            if self.waiting.get(&session).is_some_and(VecDeque::is_empty) {
                self.waiting.remove(&session);
            }
            if let Some(job) = next {
                self.send(session, job);
            }
        }
        finished
    }

    /// How many requests may execute at once (`max_parallel`).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn is_busy(&self, session: &str) -> bool {
        self.busy.contains(session)
    }

    /// The sessions whose jobs are at a worker now.
    pub(crate) fn running(&self) -> impl Iterator<Item = &String> {
        self.busy.iter()
    }

    pub(crate) fn running_count(&self) -> usize {
        self.busy.len()
    }

    /// Jobs claimed and not yet at a worker.
    pub(crate) fn waiting_count(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    /// Takes back the jobs that never started (on a stop: they go back to
    /// the inbox, never having run).
    pub(crate) fn take_waiting(&mut self) -> Vec<Job> {
        let sessions: HashSet<String> = self.waiting.keys().cloned().collect();
        let mut jobs = Vec::new();
        for session in sessions {
            jobs.extend(self.waiting.remove(&session).into_iter().flatten());
        }
        jobs
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
        let result = executor.execute(&job.request);
        done.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Done { job, result });
        // A full channel wakes the consumer by itself.
        let _ = wake.try_send(Message::Done);
    }
}
