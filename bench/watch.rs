//! An inotify watch on a directory (`processed/` for the latency runs, the
//! daemon directory for state.json): a thread blocks in `read` and stamps
//! each event with the instant it was read, so the bench neither spins nor
//! sleeps while it waits.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, Result};

const STOP: &str = ".bench-watch-stop";

// Only the inotify reader makes one (Linux).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub enum Seen {
    /// A name, when its event was read, and whether the event says the file
    /// is complete (closed after writing, or renamed into place).
    Name(String, Instant, bool),
    Overflow,
}

/// When a watched-for file counts as there.
#[derive(Clone, Copy)]
pub enum End {
    /// Any event for it, once it has content (a request renamed in).
    Appeared,
    /// Closed after writing, or renamed into place: a sidecar written.
    Written,
}

pub struct DirWatch {
    dir: PathBuf,
    rx: Receiver<Seen>,
    thread: Option<JoinHandle<()>>,
}

impl DirWatch {
    pub fn new(dir: &Path) -> Result<DirWatch> {
        let (tx, rx) = mpsc::channel();
        let thread = read_events(dir, tx)?;
        Ok(DirWatch {
            dir: dir.to_path_buf(),
            rx,
            thread: Some(thread),
        })
    }

    /// The next event: a name, when it was read, and whether it says the
    /// file is complete; `None` when nothing came within `timeout`.
    pub fn next(&self, timeout: Duration) -> Result<Option<(String, Instant, bool)>> {
        match self.rx.recv_timeout(timeout) {
            Ok(Seen::Name(name, at, complete)) => Ok(Some((name, at, complete))),
            Ok(Seen::Overflow) => bail!("the inotify queue overflowed while measuring"),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => bail!("the inotify thread ended"),
        }
    }

    /// Waits until every name in `wanted` was seen as its [`End`] asks;
    /// returns when each was.
    pub fn wait_for(&self, wanted: &[(&str, End)], timeout: Duration) -> Result<Vec<Instant>> {
        let deadline = Instant::now() + timeout;
        let mut seen: Vec<Option<Instant>> = vec![None; wanted.len()];
        while seen.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Seen::Name(name, at, complete)) => {
                    if let Some(i) = wanted.iter().position(|(w, _)| *w == name) {
                        let there = match wanted[i].1 {
                            // A file written in place is created empty: it
                            // has appeared when it has content.
                            End::Appeared => {
                                complete
                                    || std::fs::symlink_metadata(self.dir.join(&name))
                                        .is_ok_and(|m| m.len() > 0)
                            }
                            End::Written => complete,
                        };
                        if there {
                            seen[i].get_or_insert(at);
                        }
                    }
                }
                Ok(Seen::Overflow) => bail!("the inotify queue overflowed while measuring"),
                Err(RecvTimeoutError::Timeout) => {
                    let missing: Vec<&str> = wanted
                        .iter()
                        .zip(&seen)
                        .filter(|(_, s)| s.is_none())
                        .map(|((w, _), _)| *w)
                        .collect();
                    bail!("{missing:?} did not appear in processed/ within {timeout:?}");
                }
                Err(RecvTimeoutError::Disconnected) => bail!("the inotify thread ended"),
            }
        }
        Ok(seen.into_iter().flatten().collect())
    }
}

/// Watches `dir` with inotify on a thread of its own, sending what it
/// reads to `tx`.
#[cfg(target_os = "linux")]
fn read_events(dir: &Path, tx: mpsc::Sender<Seen>) -> Result<JoinHandle<()>> {
    use std::ffi::OsStr;
    use std::mem::MaybeUninit;
    use std::os::unix::ffi::OsStrExt;

    use color_eyre::eyre::WrapErr;
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::io::Errno;

    let fd = inotify::init(CreateFlags::CLOEXEC).wrap_err("inotify_init")?;
    inotify::add_watch(
        &fd,
        dir,
        WatchFlags::MOVED_TO | WatchFlags::CREATE | WatchFlags::CLOSE_WRITE,
    )
    .wrap_err_with(|| format!("inotify_add_watch {}", dir.display()))?;
    Ok(std::thread::Builder::new()
        .name("bench-watch".into())
        .spawn(move || {
            let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
            let mut reader = inotify::Reader::new(&fd, &mut buf);
            loop {
                match reader.next() {
                    Ok(event) => {
                        let now = Instant::now();
                        if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                            let _ = tx.send(Seen::Overflow);
                            continue;
                        }
                        let Some(name) = event.file_name() else {
                            continue;
                        };
                        let name = OsStr::from_bytes(name.to_bytes()).to_string_lossy();
                        if name == STOP {
                            return;
                        }
                        let complete = event
                            .events()
                            .intersects(ReadFlags::CLOSE_WRITE | ReadFlags::MOVED_TO);
                        if tx
                            .send(Seen::Name(name.into_owned(), now, complete))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(Errno::INTR) => continue,
                    Err(_) => return,
                }
            }
        })?)
}

/// inotify is Linux's: elsewhere the benchmark cannot run.
#[cfg(not(target_os = "linux"))]
fn read_events(_dir: &Path, _tx: mpsc::Sender<Seen>) -> Result<JoinHandle<()>> {
    bail!("the benchmark watches directories with inotify: Linux only")
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        // Wake the reader with an event it recognises, then join it.
        let stop = self.dir.join(STOP);
        if std::fs::write(&stop, b"").is_ok() {
            let _ = std::fs::remove_file(&stop);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}
