//! Flushing the filesystem before each timed part of a scenario.
//!
//! Removing a town of tens of thousands of files returns long before the
//! filesystem has written that out; neither has publishing a backlog. Left
//! alone, that work lands in whatever is timed next: on ext4 the daemon's
//! first batched `syncfs` would flush the previous scenario's deletions and
//! be charged for them. So before each timer starts, the bench flushes the
//! filesystem the towns are on until a flush finds (almost) nothing left,
//! then pauses so that the kernel threads that did it are done too.

use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use color_eyre::eyre::{Result, WrapErr};

/// A flush this short means nothing was left to write.
const IDLE_FLUSH: Duration = Duration::from_millis(20);
/// Give up waiting for an idle flush after this long (something else keeps
/// writing to the filesystem); the report says so.
const GIVE_UP: Duration = Duration::from_secs(20);

pub struct Settle {
    /// The pause after the last flush.
    pub quiet: Duration,
    notes: RefCell<Vec<String>>,
}

impl Settle {
    pub fn new(quiet: Duration) -> Settle {
        Settle {
            quiet,
            notes: RefCell::new(Vec::new()),
        }
    }

    /// Flushes the filesystem holding `dir` until a flush is idle (or
    /// [`GIVE_UP`] passes), then waits [`Settle::quiet`].
    pub fn at(&self, dir: &Path) -> Result<()> {
        let fd = std::fs::File::open(dir)
            .wrap_err_with(|| format!("cannot open {} to flush it", dir.display()))?;
        let t0 = Instant::now();
        let mut flushes = 0;
        loop {
            let f0 = Instant::now();
            syncfs(&fd).wrap_err("syncfs")?;
            let took = f0.elapsed();
            flushes += 1;
            if took < IDLE_FLUSH {
                break;
            }
            if t0.elapsed() > GIVE_UP {
                self.notes.borrow_mut().push(format!(
                    "the filesystem of {} did not settle: after {flushes} flushes in {:.1?} \
                     a flush still took {took:.1?} (something else is writing to it)",
                    dir.display(),
                    t0.elapsed()
                ));
                break;
            }
            std::thread::sleep(self.quiet.min(Duration::from_millis(100)));
        }
        if t0.elapsed() > Duration::from_secs(1) {
            crate::progress(&format!(
                "  flushing {} took {:.1?} ({flushes} syncfs)",
                dir.display(),
                t0.elapsed()
            ));
        }
        std::thread::sleep(self.quiet);
        Ok(())
    }

    /// What went wrong while settling, for the report.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.borrow_mut())
    }
}

/// Flushes the filesystem holding `fd`: syncfs(2) on Linux; elsewhere
/// (no syncfs) every filesystem, with sync(2).
pub fn syncfs(fd: &std::fs::File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::fs::syncfs(fd)?;
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        rustix::fs::sync();
    }
    Ok(())
}
