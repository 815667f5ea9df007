//! One daemon per town: an exclusive `flock` on `daemon.lock`, held for the
//! daemon's whole life, decides who the daemon is.
//!
//! PID files go stale and PIDs get reused; the kernel drops a flock the
//! moment its holder dies. So "is a daemon running, and which process is
//! it?" is answered from the lock (via `/proc/locks`, which names the
//! holder without disturbing it), and `daemon.pid` is only a fallback.
//!
//! The kernel drops the lock only once the holder has fully exited. A
//! SIGKILLed daemon whose last thread is stuck in an uninterruptible call
//! (a `syncfs` on a busy disk) keeps it for a while after it is as good as
//! dead; such a holder is [`Holder::Releasing`], never "the running daemon",
//! and whoever wants the lock waits for it, bounded.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;
use thiserror::Error;

use crate::process;
use crate::town::Town;

/// How long a daemon waits for a dying predecessor to let go of the lock.
/// Seconds are what a `syncfs` on a busy disk takes; much more means the
/// lock is not coming free by itself.
pub(crate) const RELEASE_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub(crate) enum InstanceError {
    #[error("a daemon is already running for this town{}", pid_suffix(*pid))]
    AlreadyRunning { pid: Option<u32> },
    #[error(
        "daemon.lock is still held for PID {pid}, which has exited or is exiting, after {secs}s; \
         a process that inherited its descriptor may hold it: find it with `fuser {lock}`"
    )]
    NotReleased { pid: u32, secs: u64, lock: String },
    #[error("cannot use lock file {path}: {source}")]
    Lock { path: String, source: io::Error },
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
}

/// Proof that this process is the town's daemon; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Instance {
    _lock: File,
}

fn open_lock(town: &Town) -> Result<File, InstanceError> {
    let path = town.lock_file();
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| InstanceError::Lock {
            path: path.display().to_string(),
            source,
        })
}

impl Instance {
    /// Takes the town's lock or reports who holds it. A predecessor that is
    /// exiting is waited for, up to [`RELEASE_PATIENCE`].
    pub(crate) fn acquire(town: &Town) -> Result<Instance, InstanceError> {
        let file = open_lock(town)?;
        let lock_error = |source: io::Error| InstanceError::Lock {
            path: town.lock_file().display().to_string(),
            source,
        };
        let deadline = Instant::now() + RELEASE_PATIENCE;
        let mut busy = 0;
        let mut told = false;
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    let pid = std::process::id();
                    std::fs::write(town.pid_file(), format!("{pid}\n")).map_err(|source| {
                        InstanceError::Lock {
                            path: town.pid_file().display().to_string(),
                            source,
                        }
                    })?;
                    return Ok(Instance { _lock: file });
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {}
                Err(e) => return Err(lock_error(e.into())),
            }
            match holder_state(town) {
                Holder::Releasing(pid) => {
                    if Instant::now() > deadline {
                        return Err(InstanceError::NotReleased {
                            pid,
                            secs: RELEASE_PATIENCE.as_secs(),
                            lock: town.lock_file().display().to_string(),
                        });
                    }
                    if !told {
                        told = true;
                        tracing::info!(
                            pid,
                            "the previous daemon is exiting but still holds daemon.lock: waiting up to {}s",
                            RELEASE_PATIENCE.as_secs()
                        );
                    }
                }
                // A probe (status without /proc/locks, `stop` marking the
                // state, a test) may hold it for an instant; a daemon
                // holds it for good.
                Holder::Free | Holder::Running(_) => {
                    busy += 1;
                    if busy == 10 {
                        return Err(InstanceError::AlreadyRunning { pid: holder(town) });
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Instance {
    /// Takes the lock without claiming the PID file: for `stop`, to update
    /// state.json while no daemon can start. Fails if anyone holds it.
    pub(crate) fn acquire_quietly(town: &Town) -> Result<Instance, InstanceError> {
        if !town.lock_file().exists() {
            return Err(InstanceError::AlreadyRunning { pid: None });
        }
        let file = open_lock(town)?;
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| InstanceError::AlreadyRunning { pid: None })?;
        Ok(Instance { _lock: file })
    }
}

/// Who holds the town's lock, as far as can be told from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Nobody: a daemon may start.
    Free,
    /// A live process holds it: the running daemon (its PID when known).
    Running(Option<u32>),
    /// Held for a process that is exiting (a zombie, SIGKILL pending) or
    /// already gone: no daemon runs, but the lock is not free yet.
    Releasing(u32),
}

/// Asks the lock (through `/proc/locks`) who holds it, and whether that
/// process is alive.
pub(crate) fn holder_state(town: &Town) -> Holder {
    let path = town.lock_file();
    if !path.exists() {
        return Holder::Free;
    }
    match lock_holder_from_proc(&path) {
        Some(None) => Holder::Free,
        Some(Some(pid)) if !process::alive(pid) || process::sigkill_pending(pid) => {
            Holder::Releasing(pid)
        }
        Some(Some(pid)) => Holder::Running(Some(pid)),
        // No /proc/locks: test the lock by taking it shared for an instant.
        None => {
            let Ok(file) = File::open(&path) else {
                return Holder::Free;
            };
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
                Ok(()) => Holder::Free,
                Err(_) => Holder::Running(read_pid_file(town)),
            }
        }
    }
}

/// The running daemon's PID, or `None` when no daemon runs (nobody holds
/// the lock, or its holder is exiting). `Some(None)`: the lock is held but
/// no PID could be determined.
pub(crate) fn probe(town: &Town) -> Option<Option<u32>> {
    match holder_state(town) {
        Holder::Running(pid) => Some(pid),
        Holder::Free | Holder::Releasing(_) => None,
    }
}

/// Shorthand: the daemon's PID if it runs and is known.
pub(crate) fn holder(town: &Town) -> Option<u32> {
    probe(town).flatten()
}

pub(crate) fn read_pid_file(town: &Town) -> Option<u32> {
    std::fs::read_to_string(town.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Looks the lock file's inode up in `/proc/locks`.
/// `None`: /proc/locks is not available (not Linux); `Some(None)`: nobody
/// holds an exclusive flock on it; `Some(Some(pid))`: that process does.
fn lock_holder_from_proc(path: &Path) -> Option<Option<u32>> {
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Some(None),
    };
    let (major, minor) = (rustix::fs::major(meta.dev()), rustix::fs::minor(meta.dev()));
    let inode = meta.ino();
    Some(table.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"; waiters start "1: ->".
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[1] != "FLOCK" || fields[3] != "WRITE" {
            return None;
        }
        let mut id = fields[5].split(':');
        let (maj, min, ino) = (id.next()?, id.next()?, id.next()?);
        let matches = u32::from_str_radix(maj, 16).ok()? == major
            && u32::from_str_radix(min, 16).ok()? == minor
            && ino.parse::<u64>().ok()? == inode;
        matches.then(|| fields[4].parse().ok()).flatten()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        assert_eq!(probe(&town), None);
        let first = Instance::acquire(&town).unwrap();
        let me = std::process::id();
        assert_eq!(holder(&town), Some(me));
        match Instance::acquire(&town) {
            Err(InstanceError::AlreadyRunning { pid }) => assert_eq!(pid, Some(me)),
            other => panic!("second acquire: {other:?}"),
        }
        drop(first);
        assert_eq!(probe(&town), None);
    }
}
