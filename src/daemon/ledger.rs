//! Making filed outcomes durable, then counting them in state.json.
//!
//! Runs on its own thread so the consumer never waits for the disk: while
//! one flush is in flight, further outcomes pile up and are covered by the
//! next one, so the flush rate adapts to the load by itself. A flush syncs
//! only the town's own files: each new sidecar, then the claim and outcome
//! directories whose entries changed (never the whole file system, which
//! would make every batch wait for whatever else the machine is writing).
//! An outcome is counted only after the flush that made it durable.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::state::StateStore;
use crate::town::Town;

/// A batch of outcomes the consumer has filed.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) processed: u64,
    pub(crate) failed: u64,
    /// What the consumer still had queued when it sent this.
    pub(crate) pending: u64,
    /// The new sidecars, to sync (paths, not open files: a backlog of
    /// thousands must not hold thousands of descriptors).
    pub(crate) sidecars: Vec<PathBuf>,
}

impl Tally {
    pub(crate) fn is_empty(&self) -> bool {
        self.processed + self.failed == 0
    }

    fn absorb(&mut self, more: Tally) {
        self.processed += more.processed;
        self.failed += more.failed;
        self.pending = more.pending;
        self.sidecars.extend(more.sidecars);
    }
}

pub(crate) struct Ledger {
    tx: Sender<Tally>,
    thread: JoinHandle<()>,
}

impl Ledger {
    pub(crate) fn start(town: &Town, state: Arc<StateStore>) -> std::io::Result<Ledger> {
        let (tx, rx) = channel();
        let dirs = vec![town.processing(), town.processed(), town.failed()];
        let thread = std::thread::Builder::new()
            .name("ledger".into())
            .spawn(move || run(rx, &dirs, state))?;
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

/// How many sidecars one flush keeps open at once (a bound on the
/// descriptors it holds; a bigger batch is flushed in parts).
const OPEN_AT_ONCE: usize = 256;

/// Makes `sidecars` and the entries of `dirs` durable.
///
/// One fdatasync after another would cost a journal commit each (a 64-file
/// batch took ~170 ms on ext4 when this was written, against ~10 ms for
/// one syncfs): so writeback of every file is started first, the
/// directories are synced (one commit carrying them all), and only then is
/// each file fdatasynced, which finds little or nothing left to do (~8 ms).
/// Each file is opened once for both (at most [`OPEN_AT_ONCE`] at a time).
/// What it does to latency beside a busy disk: BENCHMARKS.md, "Durability
/// beside a large concurrent writer".
pub(crate) fn flush(sidecars: &[PathBuf], dirs: &[PathBuf]) -> std::io::Result<()> {
    if sidecars.is_empty() {
        return dirs.iter().try_for_each(|dir| crate::fs::sync_dir(dir));
    }
    for part in sidecars.chunks(OPEN_AT_ONCE) {
        // A sidecar replaced by a FIFO meanwhile is refused, never waited on.
        let files = part
            .iter()
            .map(|path| crate::fs::open_own(path))
            .collect::<std::io::Result<Vec<File>>>()?;
        for file in &files {
            start_writeback(file);
        }
        for dir in dirs {
            crate::fs::sync_dir(dir)?;
        }
        for file in &files {
            file.sync_data()?;
        }
    }
    Ok(())
}

/// Asks the kernel to start writing `file`'s dirty pages, without waiting.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only schedules writeback
    // of its pages and touches no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File) {}

fn run(rx: Receiver<Tally>, dirs: &[PathBuf], state: Arc<StateStore>) {
    let mut unwritten = Tally::default();
    let mut last_write = Instant::now()
        .checked_sub(STATE_EVERY)
        .unwrap_or_else(Instant::now);
    loop {
        // With counts to write, wake up in time to write them.
        let first = if !unwritten.is_empty() {
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
                batch.absorb(more);
            }
            if let Err(e) = flush(&batch.sidecars, dirs) {
                tracing::error!("cannot flush filed requests to disk: {e}");
            }
            batch.sidecars.clear();
            unwritten.absorb(batch);
        }
        if last_write.elapsed() >= STATE_EVERY {
            write(&state, &mut unwritten);
            last_write = Instant::now();
        }
    }
    write(&state, &mut unwritten);
}

fn write(state: &StateStore, unwritten: &mut Tally) {
    if unwritten.is_empty() {
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
