//! Helpers shared by the `hardening_*` tests, on top of `tests/common`.
//!
//! Each `hardening_*.rs` declares `mod common;` and `mod hardening_support;`
//! and this module reaches the harness through `crate::common`.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{self, parse_pid, run_command, Out, Town};

/// Generous deadline for one condition on a loaded 2-core CI machine.
pub const LONG: Duration = Duration::from_secs(30);

/// `gt daemon start ARGS` with extra environment variables (the daemon
/// inherits them from `start`): the harness's `start` clears the test hooks.
pub fn start_env_out(t: &Town, global: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Out {
    let mut args: Vec<&str> = global.to_vec();
    args.extend_from_slice(&["daemon", "start"]);
    args.extend_from_slice(extra);
    let mut cmd = t.command(&args);
    if !env.is_empty() {
        cmd.env(gt::testing::ENABLE, "1");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd)
}

/// [`start_env_out`], asserting success; returns the PID it reported.
pub fn start_env(t: &Town, extra: &[&str], env: &[(&str, &str)]) -> u32 {
    let out = start_env_out(t, &[], extra, env);
    assert!(
        out.success(),
        "gt daemon start {extra:?} with {env:?} failed: {out:#?}\n{}",
        t.snapshot()
    );
    parse_pid(&out.stdout).unwrap_or_else(|| panic!("no \"(PID N)\" in start output: {out:#?}"))
}

/// A request with an explicit timestamp (and optional extra fields).
pub fn request_at(from: &str, action: &str, timestamp: &str) -> String {
    json!({"from": from, "action": action, "timestamp": timestamp}).to_string()
}

/// Request file names in a directory: `*.json` that are not sidecars and
/// not dot-files.
pub fn request_names(dir: &Path) -> Vec<String> {
    common::ls(dir)
        .into_iter()
        .filter(|n| n.ends_with(".json") && !n.ends_with(".result.json") && !n.starts_with('.'))
        .collect()
}

/// How many request files a directory holds (cheaper than sorting names).
pub fn count_requests(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.ends_with(".json") && !n.ends_with(".result.json") && !n.starts_with('.')
                })
                .count()
        })
        .unwrap_or(0)
}

/// Entries of a directory whatever their name (dot-files included).
pub fn count_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Publishes `name` Maildir-style without the harness's `create_dir_all`
/// per file (for floods).
pub fn publish_fast(inbox: &Path, name: &str, bytes: &[u8]) {
    let tmp = inbox.join(format!(".{name}.tmp"));
    fs::write(&tmp, bytes).expect("write request");
    fs::rename(&tmp, inbox.join(name)).expect("publish request");
}

/// Live `gt ... daemon run` processes for this town (by /proc cmdline).
pub fn daemon_processes(t: &Town) -> Vec<u32> {
    let root = t.root().to_string_lossy().into_owned();
    let mut found: Vec<u32> = common::all_pids()
        .filter(|&pid| {
            let argv = common::cmdline(pid);
            let is_run = argv.windows(2).any(|w| w[0] == "daemon" && w[1] == "run");
            let is_town = argv.windows(2).any(|w| w[0] == "--town" && w[1] == root);
            is_run && is_town && common::process_alive(pid)
        })
        .collect();
    found.sort_unstable();
    found
}

/// How many inotify instances a process holds open.
pub fn inotify_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    fs::read_link(e.path())
                        .map(|l| l.to_string_lossy().contains("inotify"))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid > 0");
    rustix::process::kill_process(pid, sig).expect("send signal");
}

/// Resumes a SIGSTOPped process when dropped (even when the test panics).
pub struct Resume(pub u32);

impl Drop for Resume {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
        }
    }
}

/// A child process killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn spawn(program: &str, args: &[&str]) -> Self {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        KillOnDrop(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Still running (not exited, not a zombie we have yet to reap)?
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None)) && common::process_alive(self.0.id())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The PID of a process that has exited (and been reaped): nobody.
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait for true");
    pid
}

/// The text of every log file of the town (`daemon.log`, `.1`, `.2`, ...).
pub fn all_logs(t: &Town) -> String {
    let mut text = String::new();
    for name in common::ls(&t.daemon_dir()) {
        if name.starts_with("daemon.log") {
            text += &fs::read_to_string(t.daemon_dir().join(&name)).unwrap_or_default();
        }
    }
    text
}

pub fn path_in(t: &Town, name: &str) -> PathBuf {
    t.root().join(name)
}
