//! Making filed outcomes durable, then counting them in state.json.
//!
//! Runs on its own thread so the consumer never waits for the disk: while
//! one `syncfs` is in flight, further outcomes pile up and are covered by
//! the next one, so the flush rate adapts to the load by itself. An
//! outcome is counted only after the flush that made it durable (its
//! sidecar included).

use std::fs::File;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use chrono::Utc;

use crate::state::StateStore;

/// A batch of outcomes the consumer has filed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub processed: u64,
    pub failed: u64,
    /// What the consumer still had queued when it sent this.
    pub pending: u64,
}

pub struct Ledger {
    tx: Sender<Tally>,
    thread: JoinHandle<()>,
}

impl Ledger {
    /// `fs_handle`: any open directory on the town's filesystem.
    pub fn start(fs_handle: File, state: Arc<StateStore>) -> std::io::Result<Ledger> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || run(rx, fs_handle, state))?;
        Ok(Ledger { tx, thread })
    }

    pub fn record(&self, tally: Tally) {
        // The ledger thread only ends when this sender is dropped.
        let _ = self.tx.send(tally);
    }

    /// Flushes and counts everything recorded so far, then ends the thread.
    pub fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

fn run(rx: Receiver<Tally>, fs_handle: File, state: Arc<StateStore>) {
    while let Ok(first) = rx.recv() {
        let mut total = first;
        for more in rx.try_iter() {
            total.processed += more.processed;
            total.failed += more.failed;
            total.pending = more.pending;
        }
        if let Err(e) = rustix::fs::syncfs(&fs_handle) {
            tracing::error!("cannot flush filed requests to disk: {e}");
        }
        let now = Utc::now();
        let result = state.update(|s| {
            s.requests_processed += total.processed;
            s.requests_failed += total.failed;
            s.inbox_pending = total.pending;
            if total.processed + total.failed > 0 {
                s.last_request_at = Some(now);
            }
        });
        if let Err(e) = result {
            tracing::error!("cannot write state.json: {e}");
        }
    }
}
