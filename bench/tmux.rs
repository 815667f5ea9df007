//! A private tmux server for the storm scenario (`tmux -L NAME`), killed
//! with every process its panes started when dropped, or by the guard when
//! the bench is interrupted. Every tmux command the bench runs has a
//! deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use color_eyre::eyre::{bail, Result, WrapErr};
use rustix::process::{kill_process, Pid, Signal};

use crate::guard::{self, Entry, Registration};

/// The longest one tmux command may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// Why the storm cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    let missing: Vec<&str> = ["tmux", "sleep"]
        .into_iter()
        .filter(|tool| which::which(tool).is_err())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "STORM SKIPPED: {} not found; install tmux (Debian/Ubuntu: apt-get install tmux) \
             to run it",
            missing.join(", ")
        )
    })
}

/// Runs `tmux -L socket ARGS`; its stdout, or why it failed.
fn run(socket: &str, args: &[&str]) -> Result<String> {
    let mut child = Command::new("tmux")
        .arg("-L")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .wrap_err("cannot run tmux")?;
    let t0 = Instant::now();
    // The outputs asked for are a few lines, well under a pipe's buffer, so
    // waiting before reading cannot deadlock.
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if t0.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!("tmux {} took over {DEADLINE:?}: killed", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if !status.success() {
        bail!("tmux {} failed ({status}): {}", args.join(" "), err.trim());
    }
    Ok(out)
}

/// Where `tmux -L socket` puts its socket.
fn socket_path(socket: &str) -> PathBuf {
    let base = std::env::var_os("TMUX_TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join(format!("tmux-{}", rustix::process::getuid().as_raw()))
        .join(socket)
}

/// Live processes started in a pane of the server at `path`, found by the
/// `TMUX=<socket>,<server pid>,<session>` tmux puts in their environment
/// (so children of a pane and processes of killed sessions are found too).
fn processes_from_panes(path: &Path) -> BTreeSet<i32> {
    let needle = format!("TMUX={},", path.display()).into_bytes();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v.starts_with(&needle)))
        })
        .collect()
}

/// Kills the server `socket` and every process its panes started,
/// including any that ignore SIGHUP.
pub fn kill_server(socket: &str) {
    let path = socket_path(socket);
    let mut doomed = processes_from_panes(&path);
    if let Ok(out) = run(socket, &["list-panes", "-a", "-F", "#{pane_pid}"]) {
        doomed.extend(out.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    let _ = run(socket, &["kill-server"]);
    // tmux 3.3a leaves its socket file behind.
    let _ = std::fs::remove_file(&path);
    for pid in doomed {
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// A private tmux server, killed with its panes' processes when dropped.
pub struct Server {
    pub socket: String,
    _reg: Registration,
}

impl Server {
    /// A server name nothing else uses (no server runs until the first
    /// session is made).
    pub fn private() -> Server {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let socket = format!("gt-bench-{}-{n}", std::process::id());
        Server {
            _reg: guard::register(Entry::Tmux(socket.clone())),
            socket,
        }
    }

    /// Creates a detached session running `cmd` directly (no shell).
    pub fn new_session(&self, name: &str, cwd: &Path, cmd: &[&str]) -> Result<()> {
        let cwd = cwd.to_string_lossy();
        let mut args = vec!["new-session", "-d", "-s", name, "-c", &cwd, "--"];
        args.extend_from_slice(cmd);
        run(&self.socket, &args).map(|_| ())
    }

    /// Session name → the PID of its (first) pane's process.
    pub fn pane_pids(&self) -> Result<BTreeMap<String, i32>> {
        let out = run(
            &self.socket,
            &["list-panes", "-a", "-F", "#{session_name} #{pane_pid}"],
        )?;
        let mut panes = BTreeMap::new();
        for line in out.lines() {
            if let Some((session, pid)) = line.rsplit_once(' ') {
                if let Ok(pid) = pid.trim().parse() {
                    panes.entry(session.to_string()).or_insert(pid);
                }
            }
        }
        Ok(panes)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_server(&self.socket);
    }
}
