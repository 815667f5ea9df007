//! Helpers for the leaf-command tests (logs, install, completions).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Generous: CI machines stall; every wait ends as soon as its condition holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The real `gt` binary, isolated from the caller's environment.
pub fn gt() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gt"));
    cmd.env_remove("GT_TOWN_ROOT")
        .env_remove("GT_INSTALL_DIR")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .env("NO_COLOR", "1");
    cmd
}

/// `gt --town TOWN args…`, run to completion.
pub fn gt_in(town: &Path, args: &[&str]) -> Output {
    gt().arg("--town")
        .arg(town)
        .args(args)
        .output()
        .expect("run gt")
}

/// A fresh town with an empty `daemon/` directory.
pub fn town() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("gt-leaf-")
        .tempdir()
        .unwrap();
    std::fs::create_dir(dir.path().join("daemon")).unwrap();
    dir
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Kills (and reaps) the child when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    /// Waits for the child to exit on its own, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The lines a child writes, read on a thread so the test can wait for them
/// with a deadline.
pub struct Lines {
    rx: Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(from: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The next line, or None when the deadline passes or the stream ends.
    pub fn next(&mut self, limit: Duration) -> Option<String> {
        match self.rx.recv_timeout(limit) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Asserts that the next lines are exactly `want`, in order.
    pub fn expect(&mut self, want: &[&str]) {
        for w in want {
            match self.next(DEADLINE) {
                Some(line) => assert_eq!(&line, w, "lines so far: {:?}", self.seen),
                None => panic!(
                    "expected {w:?} within {DEADLINE:?}; lines so far: {:?}",
                    self.seen
                ),
            }
        }
    }
}
