//! One daemon per town: an exclusive `flock` on `daemon.lock`, held for the
//! daemon's whole life, decides who the daemon is.
//!
//! PID files go stale and PIDs get reused; the kernel drops a flock the
//! moment its holder dies. So "is a daemon running, and which process is
//! it?" is answered from the lock (via `/proc/locks`, which names the
//! holder without disturbing it), and `daemon.pid` is only a fallback.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::FlockOperation;
use thiserror::Error;

use crate::town::Town;

#[derive(Debug, Error)]
pub(crate) enum InstanceError {
    #[error("a daemon is already running for this town{}", pid_suffix(*pid))]
    AlreadyRunning { pid: Option<u32> },
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
    /// Takes the town's lock or reports who holds it.
    pub(crate) fn acquire(town: &Town) -> Result<Instance, InstanceError> {
        let file = open_lock(town)?;
        for attempt in 0..10 {
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
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    // A probe (status without /proc/locks, a test) may hold
                    // it for an instant; a daemon holds it for good.
                    if attempt == 9 {
                        return Err(InstanceError::AlreadyRunning { pid: holder(town) });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(InstanceError::Lock {
                        path: town.lock_file().display().to_string(),
                        source: e.into(),
                    })
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
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

/// The running daemon's PID, or `None` when no daemon holds the lock.
/// `Some(None)`: the lock is held but no PID could be determined.
pub(crate) fn probe(town: &Town) -> Option<Option<u32>> {
    let path = town.lock_file();
    if !path.exists() {
        return None;
    }
    if let Some(found) = lock_holder_from_proc(&path) {
        return found.map(Some);
    }
    // No /proc/locks: test the lock by taking it shared for an instant.
    let file = File::open(&path).ok()?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => None,
        Err(_) => Some(read_pid_file(town)),
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
