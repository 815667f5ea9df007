//! Making filed outcomes durable, then counting them in state.json.
//!
//! Runs on its own thread so the consumer never waits for the disk: while
//! one `syncfs` is in flight, further outcomes pile up and are covered by
//! the next one, so the flush rate adapts to the load by itself. An
//! outcome is counted only after the flush that made it durable (its
//! sidecar included).

use std::fs::File;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::state::StateStore;

/// A batch of outcomes the consumer has filed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub processed: u64,
    pub failed: u64,
    /// What the consumer still had queued when it sent this.
    pub pending: u64,
}

pub(crate) struct Ledger {
    tx: Sender<Tally>,
    thread: JoinHandle<()>,
}

impl Ledger {
    /// `fs_handle`: any open directory on the town's filesystem.
    pub(crate) fn start(fs_handle: File, state: Arc<StateStore>) -> std::io::Result<Ledger> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || run(rx, fs_handle, state))?;
        Ok(Ledger { tx, thread })
    }

    pub(crate) fn record(&self, tally: Tally) {
        // The ledger thread only ends when this sender is dropped.
        let _ = self.tx.send(tally);
    }

    /// Flushes and counts everything recorded so far, then ends the thread.
    pub(crate) fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// state.json is rewritten (with its own fsync) at most this often while
/// requests trickle in; a flush per request is the ledger's job, not the
/// state file's.
const STATE_EVERY: Duration = Duration::from_millis(100);

fn run(rx: Receiver<Tally>, fs_handle: File, state: Arc<StateStore>) {
    let mut unwritten = Tally::default();
    let mut last_write = Instant::now()
        .checked_sub(STATE_EVERY)
        .unwrap_or_else(Instant::now);
    loop {
        // With counts to write, wake up in time to write them.
        let first = if unwritten.processed + unwritten.failed > 0 {
            match rx.recv_timeout(STATE_EVERY.saturating_sub(last_write.elapsed())) {
                Ok(t) => Some(t),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(t) => Some(t),
                Err(_) => break,
            }
        };
        if let Some(first) = first {
            let mut batch = first;
            for more in rx.try_iter() {
                batch.processed += more.processed;
                batch.failed += more.failed;
                batch.pending = more.pending;
            }
            if let Err(e) = rustix::fs::syncfs(&fs_handle) {
                tracing::error!("cannot flush filed requests to disk: {e}");
            }
            unwritten.processed += batch.processed;
            unwritten.failed += batch.failed;
            unwritten.pending = batch.pending;
        }
        if last_write.elapsed() >= STATE_EVERY {
            write(&state, &mut unwritten);
            last_write = Instant::now();
        }
    }
    write(&state, &mut unwritten);
}

fn write(state: &StateStore, unwritten: &mut Tally) {
    if unwritten.processed + unwritten.failed == 0 {
        return;
    }
    let now = Utc::now();
    let t = std::mem::take(unwritten);
    let result = state.update(|s| {
        s.requests_processed += t.processed;
        s.requests_failed += t.failed;
        s.inbox_pending = t.pending;
        s.last_request_at = Some(now);
    });
    if let Err(e) = result {
        tracing::error!("cannot write state.json: {e}");
    }
}
