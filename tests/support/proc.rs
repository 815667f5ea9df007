//! Processes: children killed on drop, signals, and what the tests read
//! from `/proc` beyond `gt::process::{tree, alive}`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub use gt::process::{alive, signal, tree};
pub use rustix::process::Signal;

use super::command::DEADLINE;

pub fn kill9(pid: u32) {
    signal(pid, Signal::KILL);
}

/// Waits up to `limit` for every PID in `pids` to be gone; true if they are.
pub fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends SIGCONT when dropped, so a test that froze a process with SIGSTOP
/// never leaves it frozen, even when it panics.
pub struct Resume(pub u32);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, Signal::CONT);
    }
}

/// A child process, killed and reaped when dropped however the test ends.
pub struct KillOnDrop(Child);

impl KillOnDrop {
    /// Spawns `cmd` as it is configured (stdin closed unless set).
    pub fn spawn(mut cmd: Command) -> Self {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        KillOnDrop(child)
    }

    /// Spawns `program args` with all stdio closed.
    pub fn quiet(program: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Self::spawn(cmd)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.0
    }

    /// Still running (not exited, not a zombie we have yet to reap)?
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None)) && alive(self.0.id())
    }

    /// Waits for the child to exit on its own, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a child writes, read on a thread so the test can wait for
/// them with a deadline.
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

    /// The next line, or None when `limit` passes or the stream ends.
    pub fn next(&mut self, limit: Duration) -> Option<String> {
        let line = self.rx.recv_timeout(limit).ok()?;
        self.seen.push(line.clone());
        Some(line)
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

/// The PID of a process that has exited (and been reaped): nobody.
pub fn dead_pid() -> u32 {
    let mut child = KillOnDrop::quiet("true", &[]);
    let pid = child.pid();
    child.wait_exit(DEADLINE).expect("`true` exits at once");
    pid
}

/// Every PID in /proc right now.
pub fn all_pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// The argv of a process, from /proc/PID/cmdline.
pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Does the process's environment hold a variable starting with `prefix`?
pub fn environ_has(pid: u32, prefix: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
        env.split(|&b| b == 0)
            .any(|var| var.starts_with(prefix.as_bytes()))
    })
}

/// The value of one variable of a process's environment (as it was at
/// exec), if it carries it.
pub fn environ_var(pid: u32, name: &str) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    env.split(|&b| b == 0).find_map(|var| {
        var.strip_prefix(prefix.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// Live processes carrying `GT_TOWN_ROOT=root` and `GT_ROLE=role`: what
/// the daemon gave an agent it started, inherited by all it runs.
pub fn agent_processes(root: &Path, role: &str) -> BTreeSet<u32> {
    let root = root.to_string_lossy();
    all_pids()
        .filter(|&pid| {
            environ_var(pid, "GT_TOWN_ROOT").as_deref() == Some(&*root)
                && environ_var(pid, "GT_ROLE").as_deref() == Some(role)
                && alive(pid)
        })
        .collect()
}

/// The parent of a process (None once it is gone).
pub fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The value of one line of /proc/PID/status (`VmRSS`, `Threads`,
/// `SigIgn`), without its key and the spaces around it.
pub fn status_line(pid: u32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// A number from /proc/PID/status: `VmRSS` and `VmHWM` (peak RSS) in kB,
/// `Threads`.
pub fn status_number(pid: u32, key: &str) -> Option<u64> {
    status_line(pid, key)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many threads a process has (entries of /proc/PID/task).
pub fn threads(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/task")).ok()?.count())
}

/// How many descriptors a process holds open (entries of /proc/PID/fd).
pub fn descriptors(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Starts `cmd` with its descriptor limit, soft and hard, at `nofile`.
pub fn limit_descriptors(cmd: &mut Command, nofile: u64) {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let limit = Rlimit {
        current: Some(nofile),
        maximum: Some(nofile),
    };
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            setrlimit(Resource::Nofile, limit)?;
            Ok(())
        });
    }
}

/// The signals a process ignores (bit n-1 set = signal n ignored).
pub fn ignored_signals(pid: u32) -> u64 {
    status_line(pid, "SigIgn")
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .unwrap_or(0)
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

/// Live `gt ... --town ROOT ... daemon run` processes, by their argv.
pub fn daemon_processes(root: &Path) -> Vec<u32> {
    let root = root.to_string_lossy();
    let mut found: Vec<u32> = all_pids()
        .filter(|&pid| {
            let argv = cmdline(pid);
            let is_run = argv.windows(2).any(|w| w[0] == "daemon" && w[1] == "run");
            let is_town = argv.windows(2).any(|w| w[0] == "--town" && w[1] == root);
            is_run && is_town && alive(pid)
        })
        .collect();
    found.sort_unstable();
    found
}

/// The PIDs holding or waiting for a flock on `path` (the library's
/// reading of /proc/locks, waiters included).
pub fn lock_holders(path: &Path) -> Vec<u32> {
    let Ok(meta) = fs::metadata(path) else {
        return Vec::new();
    };
    gt::process::flocks()
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.on(&meta))
        .map(|l| l.pid)
        .collect()
}

/// Is a flock on `path` held by someone (we try to take it ourselves)?
pub fn lock_held(path: &Path) -> bool {
    let Ok(file) = fs::OpenOptions::new().read(true).open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}
