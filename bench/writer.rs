//! The durability scenario's concurrent writer: another process (this bench
//! binary, run with a hidden flag) writing one big file on the towns'
//! filesystem as fast as it can and never syncing it, like a build or a
//! copy. What it leaves dirty is what a whole-filesystem flush would have
//! to write out before it returns.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, Result, WrapErr};

use crate::guard::{self, Entry, Registration};

const MIB: u64 = 1 << 20;
/// Left free on the filesystem whatever the writer is asked to write: the
/// machine is shared.
const RESERVE: u64 = 2048 * MIB;
/// Below this a writer shows nothing; the scenario says so instead.
const SMALLEST: u64 = 64 * MIB;

/// In the writer process: writes `bytes` to `path`, without any sync.
pub fn child_main(path: &Path, bytes: u64) -> Result<()> {
    let mut f = fs::File::create(path).wrap_err_with(|| format!("create {}", path.display()))?;
    let mut chunk = vec![0u8; MIB as usize];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in chunk.chunks_mut(8) {
        // xorshift: incompressible bytes, so no layer below can shortcut them.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let mut written = 0;
    let mut n: u64 = 0;
    while written < bytes {
        // A different first word in every 4 KiB block: no two blocks alike.
        for page in chunk.chunks_mut(4096) {
            n += 1;
            page[..8].copy_from_slice(&n.to_le_bytes());
        }
        let len = (bytes - written).min(MIB) as usize;
        f.write_all(&chunk[..len])?;
        written += len as u64;
    }
    Ok(())
}

/// How much the writer may write under `dir`: `want`, or less (with the
/// reason) when the filesystem has not that much room beside a reserve.
pub fn size_for(dir: &Path, want: u64) -> Result<(u64, Option<String>)> {
    let st = rustix::fs::statvfs(dir).wrap_err_with(|| format!("statvfs {}", dir.display()))?;
    let avail = st.f_bavail * st.f_frsize;
    if avail >= want + RESERVE {
        return Ok((want, None));
    }
    let fits = avail.saturating_sub(RESERVE) / (64 * MIB) * (64 * MIB);
    if fits < SMALLEST {
        bail!(
            "{} has {} MiB free: not enough for a writer of even {} MiB beside a {} MiB reserve",
            dir.display(),
            avail / MIB,
            SMALLEST / MIB,
            RESERVE / MIB
        );
    }
    Ok((
        fits,
        Some(format!(
            "the writer was scaled down from {} to {} MiB: {} had {} MiB free, and {} MiB are left free",
            want / MIB,
            fits / MIB,
            dir.display(),
            avail / MIB,
            RESERVE / MIB
        )),
    ))
}

/// The running writer; killed, and its file removed, on drop.
pub struct Writer {
    child: Child,
    path: PathBuf,
    pub started: Instant,
    finished: Option<Duration>,
    _reg: Registration,
}

impl Writer {
    /// Starts writing `bytes` (a multiple of 1 MiB) to `path`.
    pub fn start(path: &Path, bytes: u64) -> Result<Writer> {
        let exe = std::env::current_exe().wrap_err("cannot find the bench's own binary")?;
        let started = Instant::now();
        let child = Command::new(exe)
            .arg("--internal-writer")
            .arg(path)
            .arg("--writer-mib")
            .arg((bytes / MIB).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .wrap_err("cannot start the writer process")?;
        Ok(Writer {
            _reg: guard::register(Entry::Process(child.id() as i32)),
            child,
            path: path.to_path_buf(),
            started,
            finished: None,
        })
    }

    /// How long it took, once it has written everything; fails if it
    /// failed.
    pub fn finished(&mut self) -> Result<Option<Duration>> {
        if self.finished.is_none() {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the writer process failed ({status})");
                }
                self.finished = Some(self.started.elapsed());
            }
        }
        Ok(self.finished)
    }

    /// Waits until it has written `bytes` (or everything).
    pub fn wait_written(&mut self, bytes: u64, timeout: Duration) -> Result<()> {
        loop {
            if self.finished()?.is_some()
                || fs::metadata(&self.path).is_ok_and(|m| m.len() >= bytes)
            {
                return Ok(());
            }
            if self.started.elapsed() > timeout {
                bail!("the writer had not written {bytes} bytes within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until it has written everything; how long that took.
    pub fn wait(&mut self, timeout: Duration) -> Result<Duration> {
        loop {
            if let Some(took) = self.finished()? {
                return Ok(took);
            }
            if self.started.elapsed() > timeout {
                bail!("the writer did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.finished.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Removing it also drops whatever of it is still unwritten.
        let _ = fs::remove_file(&self.path);
    }
}

/// Dirty and under-writeback page cache, in MiB (`/proc/meminfo`).
pub fn dirty_mib() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| -> Option<u64> {
        info.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    };
    Some((field("Dirty")? + field("Writeback")?) / 1024)
}
