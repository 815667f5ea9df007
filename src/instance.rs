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
//!
//! A lock only decides while its file is the one at `daemon/daemon.lock`: a
//! daemon whose lock file was removed (or whose daemon or town directory
//! was removed, moved or replaced) would share the town with the next one
//! started. So the daemon remembers what it locked ([`Ownership`]) and
//! stops when that changes, and a new daemon waits for a predecessor still
//! holding a deleted lock file of this town.

use std::fs::File;
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
    #[error(
        "PID {pid}, a daemon whose lock file of this town was deleted, still runs after {secs}s; \
         it stops by itself once it notices, unless it hangs: then stop it (kill {pid})"
    )]
    DisplacedStillRuns { pid: u32, secs: u64 },
    #[error("cannot use lock file {path}: {source}")]
    Lock { path: String, source: io::Error },
}

/// What about a daemon's town is no longer what it locked.
#[derive(Debug, Error)]
#[error("{what} {path} {how} since this daemon started")]
pub(crate) struct Displaced {
    what: &'static str,
    path: String,
    how: &'static str,
}

/// A file by identity rather than by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// What `path` names now; `Ok(None)` when nothing does.
    fn at(path: &Path) -> io::Result<Option<FileId>> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(FileId::of(&meta))),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The town root, daemon directory and lock file a daemon locked, to check
/// later that the paths still name them.
#[derive(Debug, Clone)]
pub(crate) struct Ownership {
    town: Town,
    root: FileId,
    daemon_dir: FileId,
    lock: FileId,
}

impl Ownership {
    /// What `town`'s paths name now, `lock` being the open lock file.
    fn of(town: &Town, lock: &File) -> io::Result<Ownership> {
        Ok(Ownership {
            town: town.clone(),
            root: FileId::of(&std::fs::metadata(town.root())?),
            daemon_dir: FileId::of(&std::fs::metadata(town.daemon_dir())?),
            lock: FileId::of(&lock.metadata()?),
        })
    }

    /// `Err` when the town root, the daemon directory or the lock file was
    /// removed or replaced. A path that cannot be checked for another
    /// reason (an I/O error) is given the benefit of the doubt.
    pub(crate) fn verify(&self) -> Result<(), Displaced> {
        let town = &self.town;
        for (what, path, id) in [
            ("the town directory", town.root().to_path_buf(), self.root),
            (
                "the daemon directory",
                town.daemon_dir().to_path_buf(),
                self.daemon_dir,
            ),
            ("the lock file", town.lock_file(), self.lock),
        ] {
            let how = match FileId::at(&path) {
                Ok(Some(now)) if now == id => continue,
                Ok(Some(_)) => "was replaced",
                Ok(None) => "was removed or moved away",
                Err(_) => continue,
            };
            return Err(Displaced {
                what,
                path: path.display().to_string(),
                how,
            });
        }
        Ok(())
    }
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
}

/// Proof that this process is the town's daemon; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Instance {
    _lock: File,
    ownership: Ownership,
}

/// daemon.lock, opened as every lock file of the town is
/// ([`crate::fs::open_lock`]: a FIFO or a link in its place is refused,
/// never waited on).
fn open_lock(town: &Town) -> Result<File, InstanceError> {
    let path = town.lock_file();
    crate::fs::open_lock(&path).map_err(|source| InstanceError::Lock {
        path: path.display().to_string(),
        source,
    })
}

impl Instance {
    /// Takes the town's lock or reports who holds it. A predecessor that is
    /// exiting, or that still runs on a deleted lock file of this town, is
    /// waited for, up to [`RELEASE_PATIENCE`].
    pub(crate) fn acquire(town: &Town) -> Result<Instance, InstanceError> {
        let lock_error = |source: io::Error| InstanceError::Lock {
            path: town.lock_file().display().to_string(),
            source,
        };
        let mut file = open_lock(town)?;
        let deadline = Instant::now() + RELEASE_PATIENCE;
        let mut busy = 0;
        let mut replaced = 0;
        let mut told = false;
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {
                    let ownership = Ownership::of(town, &file).map_err(lock_error)?;
                    if ownership.verify().is_err() {
                        // Removed or replaced between our open and our
                        // flock: the file now at the path is the one that
                        // decides.
                        replaced += 1;
                        if replaced == 100 {
                            return Err(lock_error(io::Error::other(
                                "it keeps being removed or replaced",
                            )));
                        }
                        file = open_lock(town)?;
                        continue;
                    }
                    wait_displaced(town, deadline)?;
                    let pid = std::process::id();
                    // Replaced, never opened: a FIFO or a link put there
                    // is neither waited on nor written through.
                    let bytes = format!("{pid}\n");
                    crate::fs::write_atomic(&town.pid_file(), bytes.as_bytes(), Some(0o644))
                        .map_err(|source| InstanceError::Lock {
                            path: town.pid_file().display().to_string(),
                            source,
                        })?;
                    return Ok(Instance {
                        _lock: file,
                        ownership,
                    });
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

    /// What this daemon locked, for [`Ownership::verify`].
    pub(crate) fn ownership(&self) -> Ownership {
        self.ownership.clone()
    }
}

/// Waits while a daemon whose lock file of this town was deleted still
/// runs: it serves this town's paths until it notices, which it does
/// within a second or so, after the request in hand.
fn wait_displaced(town: &Town, deadline: Instant) -> Result<(), InstanceError> {
    let mut told = false;
    loop {
        let Some(&pid) = displaced_holders(town).first() else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(InstanceError::DisplacedStillRuns {
                pid,
                secs: RELEASE_PATIENCE.as_secs(),
            });
        }
        if !told {
            told = true;
            tracing::info!(
                pid,
                "a daemon whose lock file of this town was deleted still runs: waiting for it to stop"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live processes other than this one holding an exclusive flock on a
/// deleted file that was this town's `daemon.lock`: displaced daemons.
fn displaced_holders(town: &Town) -> Vec<u32> {
    let Some(locks) = process::flocks() else {
        return Vec::new();
    };
    let deleted = format!("{} (deleted)", town.lock_file().display());
    let me = std::process::id();
    let mut pids: Vec<u32> = locks
        .into_iter()
        .filter(|l| l.exclusive && !l.waiting && l.pid != me)
        .map(|l| l.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|&pid| {
        process::alive(pid)
            && std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|to| to.as_os_str() == deleted.as_str())
                })
            })
    });
    pids
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
        let ownership = Ownership::of(town, &file).map_err(|source| InstanceError::Lock {
            path: town.lock_file().display().to_string(),
            source,
        })?;
        Ok(Instance {
            _lock: file,
            ownership,
        })
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
            let Ok(Ok(file)) = crate::fs::open_regular(&path, crate::fs::Links::Refuse) else {
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

/// The PID daemon.pid names (one decimal line, read at most
/// [`MAX_PID_FILE_BYTES`] of it, never blocking).
pub(crate) fn read_pid_file(town: &Town) -> Option<u32> {
    let bytes = crate::fs::read_own(&town.pid_file(), MAX_PID_FILE_BYTES).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

/// A PID and a newline take a dozen bytes.
const MAX_PID_FILE_BYTES: u64 = 64;

/// Looks the lock file's inode up in `/proc/locks`.
/// `None`: /proc/locks is not available (not Linux); `Some(None)`: nobody
/// holds an exclusive flock on it; `Some(Some(pid))`: that process does.
fn lock_holder_from_proc(path: &Path) -> Option<Option<u32>> {
    let locks = process::flocks()?;
    let Ok(meta) = std::fs::metadata(path) else {
        return Some(None);
    };
    Some(
        locks
            .into_iter()
            .find(|l| l.exclusive && !l.waiting && l.on(&meta))
            .map(|l| l.pid),
    )
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
