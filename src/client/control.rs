//! What the command line does to a daemon from outside: spawn it detached
//! and wait until it is up, or stop it and wait until it is gone.
//!
//! "Up" and "gone" are decided by the lock (see [`crate::instance`]); a PID
//! is only ever signalled after the lock named it as the holder.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use thiserror::Error;

use crate::instance::{self, Holder};
use crate::process;
use crate::state::State;
use crate::town::Town;

#[derive(Debug, Error)]
pub(crate) enum ControlError {
    #[error("cannot start the daemon: {0}")]
    Spawn(io::Error),
    #[error("the daemon exited during start-up ({status})")]
    Exited {
        status: std::process::ExitStatus,
        log_from: u64,
    },
    #[error(
        "the daemon did not come up within {}; it was stopped (PID {pid}), so nothing runs behind this error",
        crate::duration::exact(*.limit)
    )]
    Timeout {
        limit: Duration,
        pid: u32,
        log_from: u64,
    },
    #[error(
        "the daemon lock is held but no process could be identified as its holder \
         (daemon.pid is missing or garbage and /proc/locks is unavailable)\n\
         hint: find it with `fuser {lock}` and stop it by hand"
    )]
    UnknownHolder { lock: String },
    #[error("PID {pid} still holds the lock after SIGKILL")]
    Unkillable { pid: u32 },
    #[error(
        "daemon.lock is still held for PID {pid}, which has exited or is exiting, after {secs}s; \
         a process that inherited its descriptor may hold it: find it with `fuser {lock}`"
    )]
    NotReleased { pid: u32, secs: u64, lock: String },
    #[error("cannot update state.json: {0}")]
    State(io::Error),
}

pub(crate) enum StartOutcome {
    Started(u32),
    AlreadyRunning(u32),
}

/// Spawns the daemon detached (own session, stdio to the log) and waits
/// until it is up. `run_args`: the arguments that make this executable run
/// the daemon of `town` in the foreground (the command line decides their
/// spelling). Concurrent starts converge on one daemon: a loser's child
/// exits at the lock and its starter reports the winner. A predecessor that
/// is exiting (killed, but not yet gone) is waited for up to `timeout`;
/// `on_wait` hears its PID once, when the wait begins.
pub(crate) fn start(
    town: &Town,
    run_args: &[OsString],
    timeout: Duration,
    on_wait: impl FnOnce(u32),
) -> Result<StartOutcome, ControlError> {
    if let Some(pid) = wait_known_holder(town, timeout) {
        return Ok(StartOutcome::AlreadyRunning(pid));
    }
    wait_predecessor(town, timeout, on_wait)?;
    town.ensure_dirs()
        .map_err(|e| ControlError::Spawn(io::Error::other(e)))?;
    let log_path = town.log_file();
    let log_from = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let mut child = spawn_run(town, run_args, &log_path).map_err(ControlError::Spawn)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Lost the race for the lock? Then the winner is the daemon.
            if let Some(pid) =
                wait_known_holder(town, deadline.saturating_duration_since(Instant::now()))
            {
                if ready(town, pid) || wait_ready(town, pid, deadline) {
                    return Ok(StartOutcome::AlreadyRunning(pid));
                }
            }
            return Err(ControlError::Exited { status, log_from });
        }
        if ready(town, child.id()) {
            return Ok(StartOutcome::Started(child.id()));
        }
        if Instant::now() > deadline {
            abandon(town, &mut child);
            return Err(ControlError::Timeout {
                limit: timeout,
                pid: child.id(),
                log_from,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops a daemon we spawned and gave up on: one that comes up after its
/// starter reported failure would run unseen. SIGTERM first (it may be
/// recovering processing/), SIGKILL after a grace.
fn abandon(town: &Town, child: &mut Child) {
    const GRACE: Duration = Duration::from_secs(5);
    process::signal(child.id(), Signal::TERM);
    let end = Instant::now() + GRACE;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            let _ = mark_stopped(town);
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = mark_stopped(town);
}

fn spawn_run(town: &Town, run_args: &[OsString], log_path: &Path) -> io::Result<Child> {
    let out = crate::fs::open_append(log_path)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(run_args)
        .current_dir(town.root())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our
    // terminal and process group so a closing shell does not take it along.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
    cmd.spawn()
}

/// The holder's PID, waiting briefly for a daemon that holds the lock but
/// has not yet written its PID file. `None`: no daemon runs (the lock may
/// still be held for one that is exiting).
fn wait_known_holder(town: &Town, patience: Duration) -> Option<u32> {
    let deadline = Instant::now() + patience.min(Duration::from_secs(2));
    loop {
        match instance::probe(town) {
            None => return None,
            Some(Some(pid)) => return Some(pid),
            Some(None) if Instant::now() > deadline => return None,
            Some(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Waits until the lock is no longer held for an exiting process, so the
/// daemon we spawn is not turned away by a predecessor that is as good as
/// dead.
fn wait_predecessor(
    town: &Town,
    patience: Duration,
    on_wait: impl FnOnce(u32),
) -> Result<(), ControlError> {
    let deadline = Instant::now() + patience;
    let mut on_wait = Some(on_wait);
    while let Holder::Releasing(pid) = instance::holder_state(town) {
        if let Some(tell) = on_wait.take() {
            tell(pid);
        }
        if Instant::now() > deadline {
            return Err(ControlError::NotReleased {
                pid,
                secs: patience.as_secs(),
                lock: town.lock_file().display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Up: holds the lock and has announced itself in state.json.
pub(crate) fn ready(town: &Town, pid: u32) -> bool {
    instance::holder(town) == Some(pid)
        && State::load(&town.state_file()).is_ok_and(|s| s.running && s.pid == pid)
}

fn wait_ready(town: &Town, pid: u32, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if ready(town, pid) {
            return true;
        }
        if instance::holder(town) != Some(pid) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

pub(crate) enum StopOutcome {
    NotRunning,
    Stopped(u32),
    /// It ignored SIGTERM for the whole timeout.
    Killed(u32),
}

/// SIGTERM, wait for the lock to be released, SIGKILL after `timeout`.
pub(crate) fn stop(town: &Town, timeout: Duration) -> Result<StopOutcome, ControlError> {
    let pid = match instance::probe(town) {
        None => {
            mark_stopped(town)?;
            return Ok(StopOutcome::NotRunning);
        }
        Some(Some(pid)) => pid,
        Some(None) => {
            return Err(ControlError::UnknownHolder {
                lock: town.lock_file().display().to_string(),
            })
        }
    };
    process::signal(pid, Signal::TERM);
    if wait_released(town, pid, timeout) {
        mark_stopped(town)?;
        return Ok(StopOutcome::Stopped(pid));
    }
    process::signal(pid, Signal::KILL);
    if !wait_released(town, pid, instance::RELEASE_PATIENCE) {
        return Err(ControlError::Unkillable { pid });
    }
    mark_stopped(town)?;
    Ok(StopOutcome::Killed(pid))
}

/// Until the lock is really free of `pid`: a daemon that is exiting still
/// holds it, and state.json can only be marked once it is gone.
fn wait_released(town: &Town, pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let holder = instance::holder_state(town);
        if holder != Holder::Running(Some(pid)) && holder != Holder::Releasing(pid) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A killed daemon could not say so itself: record `running: false`, while
/// holding the lock so no new daemon's state is overwritten.
fn mark_stopped(town: &Town) -> Result<(), ControlError> {
    let Ok(_lock) = instance::Instance::acquire_quietly(town) else {
        return Ok(()); // a new daemon took over meanwhile: its state stands
    };
    let mut state = State::load(&town.state_file()).unwrap_or_default();
    if state.running {
        state.running = false;
        state
            .save(&town.state_file())
            .map_err(ControlError::State)?;
    }
    let _ = std::fs::remove_file(town.pid_file());
    Ok(())
}
