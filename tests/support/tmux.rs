//! A private tmux server per test (`tmux -L <unique socket>`), killed with
//! every process its panes started when dropped.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::command::{run, try_run, Out};
use super::proc::{alive, all_pids, environ_has, kill9, tree};
use super::DEADLINE;

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
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Tmux {
            sock: format!("gt-test-{}-{n}", std::process::id()),
            used: AtomicBool::new(false),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L").arg(&self.sock).args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.used.store(true, Ordering::SeqCst);
        run(self.command(args))
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
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "200",
            "-y",
            "50",
            "--",
        ];
        args.extend_from_slice(cmd);
        self.run(&args)
            .assert_ok(&format!("tmux new-session {name}"));
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

    /// Where `tmux -L sock` puts its socket.
    pub fn socket_path(&self) -> PathBuf {
        let base = std::env::var_os("TMUX_TMPDIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        base.join(format!("tmux-{}", rustix::process::getuid().as_raw()))
            .join(&self.sock)
    }

    /// Live processes started in a pane of this server, found by the
    /// `TMUX=<socket>,<server pid>,<session>` tmux puts in their environment
    /// (survivors of a killed session included).
    pub fn processes_from_panes(&self) -> BTreeSet<u32> {
        let prefix = format!("TMUX={},", self.socket_path().display());
        all_pids()
            .filter(|&pid| environ_has(pid, &prefix) && alive(pid))
            .collect()
    }

    /// Kills the server and every process its panes started, including
    /// ones that ignore SIGHUP/SIGTERM.
    fn kill_server(&self) {
        let panes = try_run(
            self.command(&["list-panes", "-a", "-F", "#{pane_pid}"]),
            DEADLINE,
        );
        let panes: Vec<u32> = panes
            .map(|o| o.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let mut doomed: BTreeSet<u32> = tree(&panes).into_iter().collect();
        doomed.extend(self.processes_from_panes());
        let _ = try_run(self.command(&["kill-server"]), DEADLINE);
        // tmux 3.3a leaves its socket file behind.
        let _ = fs::remove_file(self.socket_path());
        for pid in doomed {
            kill9(pid);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if self.used.load(Ordering::SeqCst) || self.socket_path().exists() {
            self.kill_server();
        }
    }
}
