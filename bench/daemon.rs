//! The real daemon as a child: `gt --town T daemon run --dry-run` (or, for
//! the storm, without `--dry-run`, against a private tmux server).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, eyre, Result, WrapErr};
use rustix::process::{kill_process, Pid, Signal};

use crate::guard::{self, Entry, Registration};
use crate::town::TempTown;

/// A running daemon; SIGKILLed on drop unless [`Daemon::stop`] ran.
pub struct Daemon {
    child: Child,
    pub pid: i32,
    pub started: Instant,
    town: gt::town::Town,
    out: PathBuf,
    exited: bool,
    _reg: Registration,
}

impl Daemon {
    /// `gt daemon run --dry-run`: validates and files, never touches tmux.
    pub fn spawn(gt: &Path, town: &TempTown) -> Result<Daemon> {
        Daemon::spawn_with(gt, town, true)
    }

    pub fn spawn_with(gt: &Path, town: &TempTown, dry_run: bool) -> Result<Daemon> {
        // Appended to, so a second daemon on the same town (after a kill)
        // keeps the first one's output.
        let out = town.root().join("bench-daemon.out");
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)?;
        // The environment the tests give `gt`: nothing that changes where it
        // looks or what it logs, no test hooks.
        let mut cmd = crate::command::program_command(gt);
        cmd.arg("--town")
            .arg(town.root())
            .args(["daemon", "run"])
            .args(dry_run.then_some("--dry-run"))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .wrap_err_with(|| format!("cannot run {}", gt.display()))?;
        let pid = child.id() as i32;
        Ok(Daemon {
            _reg: guard::register(Entry::Process(pid)),
            child,
            pid,
            started,
            town: gt::town::Town::clone(town),
            out,
            exited: false,
        })
    }

    /// Fails (with the daemon's output) if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.exited = true;
            bail!("the daemon exited early ({status}){}", self.diagnostics());
        }
        Ok(())
    }

    pub fn state(&self) -> Option<serde_json::Value> {
        let bytes = fs::read(self.town.state_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether state.json says running with our PID.
    pub fn is_ready(&self) -> bool {
        self.state()
            .is_some_and(|s| s["running"] == true && s["pid"] == self.pid)
    }

    /// Waits until state.json says running with our PID; returns how long
    /// after spawning that was.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        loop {
            self.check_alive()?;
            if self.is_ready() {
                return Ok(self.started.elapsed());
            }
            if self.started.elapsed() > timeout {
                bail!(
                    "the daemon did not report running:true with pid {} in state.json within {timeout:?}{}",
                    self.pid,
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGTERM, then wait (SIGKILL after 15 s). Returns warnings about an
    /// unclean stop.
    pub fn stop(mut self) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let pid = Pid::from_raw(self.pid).ok_or_else(|| eyre!("bad pid"))?;
        let t0 = Instant::now();
        let _ = kill_process(pid, Signal::TERM);
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if t0.elapsed() > Duration::from_secs(15) {
                let _ = kill_process(pid, Signal::KILL);
                warnings.push("the daemon did not exit within 15 s of SIGTERM: killed".into());
                break self.child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.exited = true;
        let took = t0.elapsed();
        if !status.success() && warnings.is_empty() {
            warnings.push(format!(
                "the daemon exited with {status} after SIGTERM{}",
                self.diagnostics()
            ));
        }
        if took > Duration::from_secs(2) {
            warnings.push(format!("the daemon took {took:.1?} to stop after SIGTERM"));
        }
        match self.state() {
            Some(state) if state["running"] == false => {}
            other => warnings.push(format!(
                "after a clean stop state.json should say running:false; it is {}",
                other.map_or("unreadable".to_string(), |v| v.to_string())
            )),
        }
        Ok(warnings)
    }

    /// SIGKILL, then how long until `daemon.lock` could be taken: the
    /// kernel releases the lock only when the last thread has left the
    /// kernel, so a thread inside a long flush holds it for that long.
    pub fn kill_timed(mut self, timeout: Duration) -> Result<Duration> {
        use rustix::fs::{flock, FlockOperation};
        let pid = Pid::from_raw(self.pid).ok_or_else(|| eyre!("bad pid"))?;
        // Opened beforehand, so the open is not timed.
        let lock = fs::File::open(self.town.lock_file())
            .wrap_err_with(|| format!("open {}", self.town.lock_file().display()))?;
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            bail!("daemon.lock was not held by the daemon before the kill");
        }
        let t0 = Instant::now();
        kill_process(pid, Signal::KILL)?;
        let released = loop {
            if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
                break t0.elapsed();
            }
            if t0.elapsed() > timeout {
                bail!("daemon.lock was still held {timeout:?} after SIGKILL");
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let _ = flock(&lock, FlockOperation::Unlock);
        self.child.wait()?;
        self.exited = true;
        Ok(released)
    }

    /// The tail of the daemon's stdout/stderr and log, for error messages.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        for (what, path) in [
            ("stdout/stderr", self.out.clone()),
            ("daemon.log", self.town.log_file()),
        ] {
            if let Ok(text) = fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                if !tail.is_empty() {
                    s.push_str(&format!("\n--- daemon {what} (last lines) ---\n"));
                    s.push_str(&tail.join("\n"));
                }
            }
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.exited {
            if let Some(pid) = Pid::from_raw(self.pid) {
                let _ = kill_process(pid, Signal::KILL);
            }
            let _ = self.child.wait();
        }
    }
}
