//! A private tmux server per test (`tmux -L <unique socket>`), killed with
//! every process its panes started when dropped.
//!
//! The benchmark's storm runs its agents on one of these too (bench/main.rs
//! includes this file), so this file uses only `super::command` and
//! `super::proc` of the harness.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::command::{try_run, Out, RunError, COMMAND_DEADLINE, DEADLINE};
use super::proc::{alive, all_pids, environ_has, kill9, tree};

/// tmux commands against one private server.
#[derive(Debug)]
pub struct Tmux {
    pub sock: String,
    /// Set once the test itself ran tmux (the daemon's use shows as the
    /// socket file), so a town that never touched tmux costs nothing.
    used: AtomicBool,
}

impl Tmux {
    /// A server name no other test (in this or another test binary) uses.
    pub fn private() -> Self {
        Tmux::private_named("gt-test")
    }

    /// A server named `PREFIX-<pid>-<n>`, which nothing else uses (no
    /// server runs until the first session is made).
    pub fn private_named(prefix: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Tmux {
            sock: format!("{prefix}-{}-{n}", std::process::id()),
            used: AtomicBool::new(false),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        command(&self.sock, args)
    }

    /// `tmux -L sock ARGS`, killed at `deadline`.
    pub fn try_run(&self, args: &[&str], deadline: Duration) -> Result<Out, RunError> {
        self.used.store(true, Ordering::SeqCst);
        try_run(self.command(args), deadline)
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.try_run(args, COMMAND_DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// What `tmux -L sock ARGS` printed, or why it failed (it could not
    /// run, or it exited non-zero: with its stderr).
    pub fn output(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .try_run(args, COMMAND_DEADLINE)
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!(
                "tmux {} failed ({}): {}",
                args.join(" "),
                out.code.map_or("killed".into(), |c| format!("exit {c}")),
                out.stderr.trim()
            ));
        }
        Ok(out.stdout)
    }

    /// The PID of the running tmux server.
    pub fn server_pid(&self) -> u32 {
        self.run(&["display-message", "-p", "#{pid}"])
            .stdout
            .trim()
            .parse()
            .expect("tmux server pid")
    }

    /// Does a session with exactly this name exist?
    pub fn has_session(&self, name: &str) -> bool {
        self.run(&["has-session", "-t", &format!("={name}")])
            .success()
    }

    /// Creates a detached session running `cmd` directly (no shell).
    pub fn new_session(&self, name: &str, cmd: &[&str]) {
        self.try_new_session(name, None, cmd)
            .unwrap_or_else(|e| panic!("tmux new-session {name}: {e}"));
    }

    /// [`Tmux::new_session`], in `cwd` when given; why not, if it failed.
    pub fn try_new_session(
        &self,
        name: &str,
        cwd: Option<&Path>,
        cmd: &[&str],
    ) -> Result<(), String> {
        let cwd = cwd.map(|c| c.to_string_lossy().into_owned());
        let mut args = vec!["new-session", "-d", "-s", name, "-x", "200", "-y", "50"];
        if let Some(cwd) = &cwd {
            args.extend(["-c", cwd]);
        }
        args.push("--");
        args.extend_from_slice(cmd);
        self.output(&args).map(drop)
    }

    /// The visible text of the session's active pane ("" if it is gone).
    pub fn capture_pane(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", &format!("={name}:")])
            .stdout
    }

    /// `tmux show-environment -t name`: one `KEY=value` (or `-KEY`) per line.
    pub fn show_environment(&self, name: &str) -> String {
        self.run(&["show-environment", "-t", &format!("={name}")])
            .stdout
    }

    /// The value of one session environment variable, if set.
    pub fn env_var(&self, name: &str, key: &str) -> Option<String> {
        self.show_environment(name)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
    }

    /// A `#{format}` of the session's active pane.
    pub fn display(&self, name: &str, format: &str) -> Option<String> {
        let out = self.run(&["display-message", "-p", "-t", &format!("={name}:"), format]);
        out.success()
            .then(|| out.stdout.trim_end_matches('\n').to_owned())
    }

    pub fn pane_pid(&self, name: &str) -> Option<u32> {
        self.display(name, "#{pane_pid}")?.trim().parse().ok()
    }

    pub fn pane_current_command(&self, name: &str) -> Option<String> {
        self.display(name, "#{pane_current_command}")
    }

    pub fn pane_current_path(&self, name: &str) -> Option<String> {
        self.display(name, "#{pane_current_path}")
    }

    /// Names of all sessions on this server (empty when no server runs).
    pub fn sessions(&self) -> Vec<String> {
        let out = self.run(&["list-sessions", "-F", "#{session_name}"]);
        if !out.success() {
            return Vec::new();
        }
        out.stdout.lines().map(str::to_owned).collect()
    }

    /// Session name → the PID of its (first) pane's process.
    pub fn pane_pids(&self) -> Result<BTreeMap<String, u32>, String> {
        let out = self.output(&["list-panes", "-a", "-F", "#{session_name} #{pane_pid}"])?;
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

    /// Where `tmux -L sock` puts its socket.
    pub fn socket_path(&self) -> PathBuf {
        socket_path(&self.sock)
    }

    /// Live processes started in a pane of this server (survivors of a
    /// killed session included).
    pub fn processes_from_panes(&self) -> BTreeSet<u32> {
        processes_from_panes(&self.sock)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if self.used.load(Ordering::SeqCst) || self.socket_path().exists() {
            kill_server(&self.sock);
        }
    }
}

fn command(sock: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("tmux");
    cmd.arg("-L").arg(sock).args(args);
    cmd
}

/// Where `tmux -L sock` puts its socket.
fn socket_path(sock: &str) -> PathBuf {
    let base = std::env::var_os("TMUX_TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join(format!("tmux-{}", rustix::process::getuid().as_raw()))
        .join(sock)
}

/// Live processes started in a pane of the server `sock`, found by the
/// `TMUX=<socket>,<server pid>,<session>` tmux puts in their environment
/// (so children of a pane and processes of killed sessions are found too).
fn processes_from_panes(sock: &str) -> BTreeSet<u32> {
    let prefix = format!("TMUX={},", socket_path(sock).display());
    all_pids()
        .filter(|&pid| environ_has(pid, &prefix) && alive(pid))
        .collect()
}

/// Kills the server `sock` and every process its panes started, including
/// ones that ignore SIGHUP/SIGTERM. By name, so that the benchmark's
/// signal handler can do it for a server it no longer holds.
pub fn kill_server(sock: &str) {
    let panes = try_run(
        command(sock, &["list-panes", "-a", "-F", "#{pane_pid}"]),
        DEADLINE,
    );
    let panes: Vec<u32> = panes
        .map(|o| o.stdout)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut doomed: BTreeSet<u32> = tree(&panes).into_iter().collect();
    doomed.extend(processes_from_panes(sock));
    let _ = try_run(command(sock, &["kill-server"]), DEADLINE);
    // tmux 3.3a leaves its socket file behind.
    let _ = fs::remove_file(socket_path(sock));
    for pid in doomed {
        kill9(pid);
    }
}
