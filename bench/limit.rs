//! The physical limit: the least filesystem work one request needs — list the
//! inbox, read the file, rename it inbox → processing → processed, write its
//! sidecar — in a tight loop with no watcher, no JSON and no fsync. Then one
//! `syncfs` to show what making all of it durable at once costs.
//!
//! The durable variant adds what batched durability costs: a second thread
//! runs `syncfs` whenever a batch of 64 has been filed since its last one
//! (back to back under load), and the run ends when the last batch is
//! durable.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, eyre, Result};

use crate::outcome;
use crate::settle::Settle;
use crate::town::{self, TempTown};

const BATCH: usize = 64;

pub struct Limit {
    pub n: usize,
    /// Time for the loop.
    pub elapsed: Duration,
    /// The loop plus one `syncfs` of the filesystem at the end.
    pub with_syncfs: Duration,
    /// Publishing the files beforehand (write `.tmp` + rename, one thread),
    /// with nothing consuming: the ceiling of the bench's burst publisher.
    pub published: Duration,
}

impl Limit {
    pub fn rate(&self) -> f64 {
        self.n as f64 / self.elapsed.as_secs_f64()
    }
}

/// `durable`: sync batches on a second thread while the loop runs.
pub fn run(base: &Path, n: usize, durable: bool, settle: &Settle) -> Result<Limit> {
    let town = TempTown::new(base)?;
    let body = town::request_body();
    settle.at(base)?;
    let p0 = Instant::now();
    for name in town::names("limit", n) {
        town.publish(&name, &body)?;
    }
    let published = p0.elapsed();
    let fs_handle = fs::File::open(town.daemon_dir())?;

    let (tx, rx) = mpsc::channel::<()>();
    let syncer = if durable {
        let handle = fs_handle.try_clone()?;
        Some(std::thread::spawn(move || -> std::io::Result<()> {
            while rx.recv().is_ok() {
                while rx.try_recv().is_ok() {}
                crate::settle::syncfs(&handle)?;
            }
            Ok(())
        }))
    } else {
        None
    };

    // What publishing left to write is not the loop's work.
    settle.at(base)?;
    let t0 = Instant::now();
    let done = consume(town.daemon_dir(), |done| {
        if durable && done % BATCH == 0 {
            let _ = tx.send(());
        }
    })?;
    if durable {
        let _ = tx.send(());
    }
    drop(tx);
    if let Some(syncer) = syncer {
        syncer
            .join()
            .map_err(|_| eyre!("the syncfs thread panicked"))??;
    }
    let elapsed = t0.elapsed();
    crate::settle::syncfs(&fs_handle)?;
    let with_syncfs = t0.elapsed();
    if done != n {
        bail!("the limit loop filed {done} of {n} requests");
    }
    town.remove();
    Ok(Limit {
        n,
        elapsed,
        with_syncfs,
        published,
    })
}

/// The loop itself, on the town whose daemon directory is `daemon_dir`:
/// every request in its inbox read, claimed, filed and given its sidecar.
/// `each` is told how many are done after each one. Returns how many.
pub fn consume(daemon_dir: &Path, mut each: impl FnMut(usize)) -> Result<usize> {
    let (inbox, processing, processed) = (
        daemon_dir.join("inbox"),
        daemon_dir.join("processing"),
        daemon_dir.join("processed"),
    );
    let sidecar = outcome::processed_body(town::FROM, town::ACTION, std::process::id());
    let mut done = 0;
    for entry in fs::read_dir(&inbox)? {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b".") || !bytes.ends_with(b".json") {
            continue;
        }
        let src = entry.path();
        // Read as the daemon must (to decide), though nothing is decided.
        let _body = fs::read(&src)?;
        let claimed = processing.join(&name);
        fs::rename(&src, &claimed)?;
        let filed = processed.join(&name);
        fs::rename(&claimed, &filed)?;
        fs::File::create_new(outcome::sidecar_of(&filed))?.write_all(&sidecar)?;
        done += 1;
        each(done);
    }
    Ok(done)
}
