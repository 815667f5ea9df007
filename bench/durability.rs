//! Durability beside a large concurrent writer.
//!
//! Another process writes a big file on the town's filesystem without
//! syncing it (like a build or a copy). A daemon that made its outcomes
//! durable with `syncfs` would wait, batch after batch, for all of that
//! file to reach the disk; one that syncs only the town's own files waits
//! for those. Measured here, on a disk-backed filesystem:
//!
//! - request latency, one at a time, without and then with the writer:
//!   publish → sidecar written (what an agent waiting on the outcome sees)
//!   and publish → counted in state.json (the daemon counts an outcome only
//!   after the flush that made it durable);
//! - the time from SIGKILL of a daemon in the middle of a burst until its
//!   `daemon.lock` can be taken, without and with the writer's data dirty:
//!   a thread inside a flush cannot die until the flush returns, and the
//!   lock goes with the last thread.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, eyre, Result};

use crate::outcome::{self, Expected};
use crate::procfs;
use crate::scenarios::{self, STALL};
use crate::settle::Settle;
use crate::town::{self, TempTown};
use crate::watch::{DirWatch, End};
use crate::writer::{self, Writer};

/// Latency samples of the quiet phase not counted (start-up effects).
const WARMUP: usize = 20;
/// Pause between two latency samples.
const GAP: Duration = Duration::from_millis(10);
/// Requests in the burst a daemon is killed in.
pub const KILL_BURST: usize = 1000;
/// The daemon's thread that makes outcomes durable (its name, as `ps -L`
/// shows it): the kill comes when it is seen inside a flush.
const LEDGER: &str = "ledger";
/// The longest anything here may take (a flush of gigabytes on a slow,
/// shared disk can take minutes).
const LONG: Duration = Duration::from_secs(600);

pub struct Phase {
    /// Publishing rename → its sidecar written in processed/.
    pub sidecar: Vec<Duration>,
    /// Publishing rename → state.json counts it (after its flush).
    pub durable: Vec<Duration>,
}

pub struct Durability {
    pub writer_bytes: u64,
    /// Why the writer wrote less than asked, if it did.
    pub writer_note: Option<String>,
    pub quiet: Phase,
    pub busy: Phase,
    /// How long the writer took to write everything, during `busy`.
    pub writer_took: Duration,
    /// The most dirty + writeback page cache seen during `busy`, MiB.
    pub busy_dirty_mib: Option<u64>,
    /// SIGKILL mid-burst → daemon.lock free, nothing else writing.
    pub kill_quiet: Kill,
    /// The same with the writer's file written and not yet synced.
    pub kill_busy: Kill,
}

pub struct Kill {
    pub released: Duration,
    /// From the first publish of the burst to the kill.
    pub after: Duration,
    /// Whether the ledger thread was seen in a flush (uninterruptible
    /// sleep) at the kill; if not, it was killed when the burst was done.
    pub in_flush: bool,
    /// Dirty + writeback page cache at the kill, MiB.
    pub dirty_mib: Option<u64>,
    /// Requests the next daemon filed as interrupted.
    pub interrupted: usize,
}

/// The counts state.json showed, and when each was seen.
struct StateLog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
    seen: Arc<Mutex<Vec<(Instant, u64)>>>,
}

impl StateLog {
    /// Follows every rewrite of the town's state.json (written to a temp
    /// file and renamed into place) and records `requests_processed`.
    fn start(town: &TempTown) -> Result<StateLog> {
        let watch = DirWatch::new(town.daemon_dir())?;
        let file = town.state_file();
        let name = file
            .file_name()
            .ok_or_else(|| eyre!("state.json has no file name"))?
            .to_string_lossy()
            .into_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::Builder::new()
            .name("bench-state".into())
            .spawn(move || -> Result<()> {
                while !stop2.load(Ordering::Relaxed) {
                    let Some((n, at, complete)) = watch.next(Duration::from_millis(50))? else {
                        continue;
                    };
                    if n != name || !complete {
                        continue;
                    }
                    let count = std::fs::read(&file)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                        .and_then(|v| v["requests_processed"].as_u64());
                    if let Some(count) = count {
                        seen2
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((at, count));
                    }
                }
                Ok(())
            })?;
        Ok(StateLog {
            stop,
            thread: Some(thread),
            seen,
        })
    }

    /// When state.json first counted at least `count`.
    fn counted_at(&self, count: u64) -> Option<Instant> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().find(|(_, c)| *c >= count).map(|(at, _)| *at)
    }

    fn wait_count(&self, count: u64, alive: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let t0 = Instant::now();
        while self.counted_at(count).is_none() {
            alive()?;
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                bail!("the state.json watch ended");
            }
            if t0.elapsed() > LONG {
                bail!("state.json did not count {count} requests within {LONG:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the state.json watch panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for StateLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One published request: when, its sidecar latency, and its position in
/// the daemon's count.
struct Sample {
    t0: Instant,
    sidecar: Duration,
    count: u64,
}

/// Publishes `prefix-N` requests one at a time, each after the previous one
/// was filed, until `n` were and `more` (asked before each) says stop.
fn sample(
    town: &TempTown,
    watch: &DirWatch,
    prefix: &str,
    n: usize,
    names: &mut Vec<String>,
    more: &mut dyn FnMut() -> Result<bool>,
    alive: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<Sample>> {
    let body = town::request_body();
    let mut samples = Vec::with_capacity(n);
    let mut i = 0;
    loop {
        // Asked every time, so it can also watch what goes on meanwhile.
        let go_on = more()?;
        if i >= n && !go_on {
            break;
        }
        let name = format!("{prefix}-{i:06}");
        let (tmp, dest) = town.stage(&name, &body)?;
        let file = town::request_file(&name);
        let sidecar = outcome::sidecar_name(&file);
        let t0 = Instant::now();
        std::fs::rename(&tmp, &dest)?;
        let seen = watch.wait_for(&[(&sidecar, End::Written)], LONG)?;
        names.push(name);
        samples.push(Sample {
            t0,
            sidecar: seen[0].saturating_duration_since(t0),
            count: names.len() as u64,
        });
        alive()?;
        std::thread::sleep(GAP);
        i += 1;
    }
    Ok(samples)
}

fn phase(samples: &[Sample], log: &StateLog) -> Result<Phase> {
    let mut p = Phase {
        sidecar: Vec::with_capacity(samples.len()),
        durable: Vec::with_capacity(samples.len()),
    };
    for s in samples {
        let at = log
            .counted_at(s.count)
            .ok_or_else(|| eyre!("state.json never counted request {}", s.count))?;
        p.sidecar.push(s.sidecar);
        p.durable.push(at.saturating_duration_since(s.t0));
    }
    Ok(p)
}

/// Where the writer writes: beside the town's `daemon/`, so on its
/// filesystem, and removed with the town.
fn writer_path(town: &TempTown) -> std::path::PathBuf {
    town.root().join("bench-writer.bin")
}

pub fn run(
    gt: &Path,
    base: &Path,
    bytes: u64,
    samples: usize,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<Durability> {
    let (bytes, writer_note) = writer::size_for(base, bytes)?;
    let (quiet, busy, writer_took, busy_dirty_mib) =
        latency(gt, base, bytes, samples, settle, notes)?;
    crate::progress("  SIGKILL mid-burst, nothing else writing");
    let kill_quiet = kill_mid_burst(gt, base, None, settle, notes)?;
    crate::progress(&format!(
        "  SIGKILL mid-burst, {} MiB written beside it",
        bytes >> 20
    ));
    let kill_busy = kill_mid_burst(gt, base, Some(bytes), settle, notes)?;
    Ok(Durability {
        writer_bytes: bytes,
        writer_note,
        quiet,
        busy,
        writer_took,
        busy_dirty_mib,
        kill_quiet,
        kill_busy,
    })
}

/// Latency without, then with, the writer, on one daemon.
fn latency(
    gt: &Path,
    base: &Path,
    bytes: u64,
    n: usize,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<(Phase, Phase, Duration, Option<u64>)> {
    let town = TempTown::new(base)?;
    let mut d = scenarios::start(gt, &town)?;
    let log = StateLog::start(&town)?;
    let watch = DirWatch::new(&town.processed())?;
    let mut names = Vec::new();
    settle.at(base)?;
    let quiet = sample(
        &town,
        &watch,
        "quiet",
        WARMUP + n,
        &mut names,
        &mut || Ok(false),
        &mut || d.check_alive(),
    )?;
    let quiet = &quiet[WARMUP..];

    // The writer starts; sampling starts when it has written half its
    // file (a pile nobody has synced yet, as a build or a copy leaves) and
    // goes on while it writes the rest, until it has finished and at least
    // `n` samples were taken.
    let mut w = Writer::start(&writer_path(&town), bytes)?;
    w.wait_written(bytes / 2, LONG)?;
    let mut dirty = writer::dirty_mib();
    let busy = {
        let mut more = || -> Result<bool> {
            dirty = dirty.max(writer::dirty_mib());
            Ok(w.finished()?.is_none())
        };
        sample(&town, &watch, "busy", n, &mut names, &mut more, &mut || {
            d.check_alive()
        })?
    };
    let took = w.wait(LONG)?;
    log.wait_count(names.len() as u64, &mut || d.check_alive())?;
    let (quiet, busy) = (phase(quiet, &log)?, phase(&busy, &log)?);
    drop(w);
    log.finish()?;
    drop(watch);
    let pid = d.pid;
    notes.extend(d.stop()?);
    town.verify(&names, &scenarios::expected(Some(pid)))?;
    town.remove();
    Ok((quiet, busy, took, dirty))
}

/// Kills a daemon with SIGKILL while it files a burst (after the writer,
/// when given, has written its file) the moment its ledger thread is seen
/// inside a flush, times the lock's release, then lets a second daemon file
/// what is left and checks every request.
fn kill_mid_burst(
    gt: &Path,
    base: &Path,
    writer: Option<u64>,
    settle: &Settle,
    notes: &mut Vec<String>,
) -> Result<Kill> {
    let town = TempTown::new(base)?;
    let mut d = scenarios::start(gt, &town)?;
    let ledger = procfs::thread_named(d.pid, LEDGER)
        .ok_or_else(|| eyre!("the daemon has no thread named {LEDGER:?}"))?;
    settle.at(base)?;
    let w = match writer {
        Some(bytes) => {
            let mut w = Writer::start(&writer_path(&town), bytes)?;
            w.wait(LONG)?;
            Some(w)
        }
        None => None,
    };
    let names = town::names("kill", KILL_BURST);
    let t0 = Instant::now();
    // Published from a second thread while this one watches the ledger.
    let (after, in_flush, dirty_mib, released) = std::thread::scope(|scope| -> Result<_> {
        let publisher = scope.spawn(|| scenarios::publish_all(&town, &names));
        let mut polls: u64 = 0;
        let in_flush = loop {
            if procfs::thread_state(d.pid, ledger) == Some('D') {
                break true;
            }
            polls += 1;
            if polls.is_multiple_of(256) {
                d.check_alive()?;
                let last = outcome::sidecar_of(
                    &town
                        .processed()
                        .join(town::request_file(&names[KILL_BURST - 1])),
                );
                if t0.elapsed() > STALL || last.exists() {
                    break false;
                }
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let dirty = writer::dirty_mib();
        let after = t0.elapsed();
        let released = d.kill_timed(LONG)?;
        publisher
            .join()
            .map_err(|_| eyre!("the publishing thread panicked"))??;
        Ok((after, in_flush, dirty, released))
    })?;
    drop(w);

    let mut next = scenarios::start(gt, &town)?;
    let t0 = Instant::now();
    loop {
        let c = town.counts();
        if c.inbox + c.processing == 0 && c.processed + c.failed >= KILL_BURST {
            break;
        }
        next.check_alive()?;
        if t0.elapsed() > STALL {
            bail!("the daemon after the kill had not filed everything in {STALL:?}: {c}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    notes.extend(next.stop()?);
    let interrupted = verify_after_kill(&town, &names)?;
    town.remove();
    Ok(Kill {
        released,
        after,
        in_flush,
        dirty_mib,
        interrupted,
    })
}

/// Every request filed exactly once: in processed/ with a sidecar as
/// expected, or in failed/ as interrupted by the kill; nothing left
/// anywhere else. Returns how many were interrupted.
fn verify_after_kill(town: &TempTown, names: &[String]) -> Result<usize> {
    let want = Expected {
        from: town::FROM,
        action: town::ACTION,
        daemon_pid: None,
    };
    let mut problems = Vec::new();
    let mut interrupted = 0;
    for name in names {
        let file = town::request_file(name);
        let processed = town.processed().join(&file);
        let failed = town.failed().join(&file);
        match (processed.exists(), failed.exists()) {
            (true, false) => {
                if let Some(what) = outcome::check(&outcome::sidecar_of(&processed), &want) {
                    problems.push(format!("{file}: {what}"));
                }
            }
            (false, true) => match outcome::error_of(&outcome::sidecar_of(&failed)) {
                Some(e) if e.contains("interrupted") => interrupted += 1,
                other => problems.push(format!("{file}: failed: {other:?}")),
            },
            (true, true) => problems.push(format!("{file}: in both processed/ and failed/")),
            (false, false) => problems.push(format!("{file}: not filed")),
        }
    }
    let c = town.counts();
    if c.processed + c.failed != names.len() || c.inbox + c.processing > 0 {
        problems.push(format!("expected {} filed requests: {c}", names.len()));
    }
    if problems.is_empty() {
        return Ok(interrupted);
    }
    let more = problems.len().saturating_sub(5);
    problems.truncate(5);
    bail!(
        "after the kill: {}{}",
        problems.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}
