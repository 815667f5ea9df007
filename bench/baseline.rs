//! The baseline: `bench/baseline-inotifywait.sh` (inotifywait + jq) run in
//! its own process group, so that the whole pipeline can be stopped at once.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, Result, WrapErr};
use rustix::process::{kill_process_group, Pid, Signal};

use crate::guard::{self, Entry, Registration};
use crate::town::TempTown;

/// The script, embedded so the bench runs from any directory.
pub const SCRIPT: &str = include_str!("baseline-inotifywait.sh");

/// Why the baseline cannot run here, if it cannot.
pub fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = ["inotifywait", "jq", "bash"]
        .into_iter()
        .filter(|tool| which::which(tool).is_err())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "BASELINE SKIPPED: {} not found; install inotify-tools and jq \
             (Debian/Ubuntu: apt-get install inotify-tools jq) to compare with it",
            missing.join(", ")
        )
    })
}

pub struct Baseline {
    child: Child,
    pgid: i32,
    stderr: mpsc::Receiver<String>,
    exited: bool,
    killed: bool,
    _reg: Registration,
}

impl Baseline {
    /// Starts the script on `town` and waits until inotifywait's watch is set.
    pub fn spawn(town: &TempTown) -> Result<Baseline> {
        let script = town.root().join("baseline-inotifywait.sh");
        std::fs::write(&script, SCRIPT)?;
        let mut child = Command::new("bash")
            .arg(&script)
            .arg(town.daemon_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .wrap_err("cannot run bash")?;
        let pgid = child.id() as i32;
        let reg = guard::register(Entry::Group(pgid));
        let pipe = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut baseline = Baseline {
            child,
            pgid,
            stderr: rx,
            exited: false,
            killed: false,
            _reg: reg,
        };
        baseline.wait_ready(Duration::from_secs(10))?;
        Ok(baseline)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut said = Vec::new();
        loop {
            match self.stderr.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.contains("Watches established") => return Ok(()),
                Ok(line) => said.push(line),
                Err(_) => {}
            }
            self.check_alive()
                .wrap_err_with(|| format!("it said: {}", said.join(" | ")))?;
            if Instant::now() > deadline {
                bail!(
                    "the baseline script did not set up its watch within {timeout:?}: {}",
                    said.join(" | ")
                );
            }
        }
    }

    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.exited = true;
            let said: Vec<String> = self.stderr.try_iter().collect();
            bail!(
                "the baseline script exited ({status}): {}",
                said.join(" | ")
            );
        }
        Ok(())
    }

    /// TERM to the whole pipeline, a short wait, then KILL to what is left
    /// (inotifywait or a jq may outlive bash). Idempotent.
    fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        if let Some(pgid) = Pid::from_raw(self.pgid) {
            if !self.exited {
                let _ = kill_process_group(pgid, Signal::TERM);
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let _ = kill_process_group(pgid, Signal::KILL);
        }
        let _ = self.child.wait();
        self.exited = true;
    }

    pub fn stop(mut self) {
        self.kill();
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        self.kill();
    }
}
