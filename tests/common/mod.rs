//! Shared harness for the daemon's integration tests.
//!
//! Every test gets its own [`Town`]: a temporary directory, its own private
//! tmux server (`tmux -L <unique socket>`) and, once started, its own daemon.
//! Everything runs for real: the `gt` binary built by cargo and real tmux.
//! The guard's `Drop` stops the daemon (SIGKILL if it must) and kills the
//! private tmux server with every process its panes started, even when the
//! test panicked.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Deadline for anything we wait for: generous, because CI runs on a loaded
/// 2-core machine. Waiting is always for a condition, never a fixed sleep.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Upper bound for a single `gt` command (except `start`, `stop` and
/// `send --wait`, which have their own timeouts, all well below this).
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// Path of the binary under test.
pub const GT: &str = env!("CARGO_BIN_EXE_gt");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A finished command: exit code (None when killed by a signal) and output.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout and stderr together, for "the message mentions X" checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the command exited 0.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(self.success(), "{what}: expected exit 0, got {self:#?}");
        self
    }
}

/// Runs `cmd` with stdin closed and both outputs captured, bounded by
/// [`COMMAND_DEADLINE`]. A grandchild that keeps our pipes open (a daemon
/// that did not detach its stdio) is reported instead of hanging the test.
pub fn run_command(cmd: Command) -> Out {
    try_run_command(cmd, COMMAND_DEADLINE).unwrap_or_else(|e| panic!("{e}"))
}

/// [`run_command`] that reports problems instead of panicking (for `Drop`).
pub fn try_run_command(mut cmd: Command, deadline: Duration) -> Result<Out, String> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot spawn {desc}: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout pipe")),
        Box::new(child.stderr.take().expect("stderr pipe")),
    ];
    for (i, mut pipe) in pipes.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    drop(tx);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for {desc}: {e}")),
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{desc} did not finish within {deadline:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut outs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok((i, buf)) => outs[i] = buf,
            Err(_) => {
                return Err(format!(
                    "{desc} exited ({status}) but its stdout/stderr stayed open: \
                     a process it started (the daemon?) inherited the pipes"
                ))
            }
        }
    }
    Ok(Out {
        code: status.code(),
        stdout: String::from_utf8_lossy(&outs[0]).into_owned(),
        stderr: String::from_utf8_lossy(&outs[1]).into_owned(),
    })
}

/// Polls `cond` every ~20 ms until it holds; on timeout panics with `what`
/// and whatever `snapshot` says about the situation.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    cond: impl FnMut() -> bool,
    snapshot: impl FnOnce() -> String,
) {
    wait_every(what, timeout, Duration::from_millis(20), cond, snapshot)
}

/// [`wait_for`] polling at `every` (scanning tens of thousands of names
/// every 20 ms would steal the CPU from the daemon under test).
pub fn wait_every(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
    snapshot: impl FnOnce() -> String,
) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n{}",
                snapshot()
            );
        }
        std::thread::sleep(every);
    }
}

/// Is `pid` a live process (not gone, not a zombie)?
/// Every PID in /proc right now.
pub fn all_pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself
        // hold spaces or parentheses.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
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

/// The parent PID of a process.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// All live descendants of `root` (not including it).
pub fn descendants(root: u32) -> BTreeSet<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            {
                if let Some(pp) = ppid(pid) {
                    parent_of.push((pid, pp));
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && found.insert(child) {
                frontier.push(child);
            }
        }
    }
    found
}

/// The signals a process ignores (bit n-1 set = signal n ignored).
pub fn ignored_signals(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

pub fn kill9(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Parses "... (PID 1234)" from `start`/`stop` output.
pub fn parse_pid(text: &str) -> Option<u32> {
    let i = text.find("(PID ")?;
    let rest = &text[i + 5..];
    rest[..rest.find(')')?].trim().parse().ok()
}

/// Finds the `*.json` path that `gt daemon send` printed.
pub fn printed_path(stdout: &str) -> Option<PathBuf> {
    stdout
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .find(|w| w.ends_with(".json"))
        .map(PathBuf::from)
}

/// The lines of a text file, or empty if it cannot be read.
pub fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Sorted names in a directory (empty when it does not exist).
pub fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A fresh lifecycle request as JSON text, timestamped now.
pub fn request_json(from: &str, action: &str) -> String {
    json!({
        "from": from,
        "action": action,
        "timestamp": chrono::Utc::now().to_rfc3339(),
    })
    .to_string()
}

/// The default test configuration: private tmux server, a harmless agent,
/// short delays, and no heartbeat during the test unless asked for.
pub fn default_config(sock: &str) -> Value {
    json!({
        "tmux_socket": sock,
        "agent_command": "sleep 600",
        "prime_delay": "100ms",
        "kill_grace": "500ms",
        "heartbeat_interval": "1h",
    })
}

// ---------------------------------------------------------------------------
// tmux on a private socket

/// tmux commands against one private server (`tmux -L sock`).
#[derive(Debug, Clone)]
pub struct Tmux {
    pub sock: String,
}

impl Tmux {
    pub fn new(sock: &str) -> Self {
        Tmux {
            sock: sock.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L").arg(&self.sock).args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Out {
        run_command(self.command(args))
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

    /// PIDs of every pane on this server.
    pub fn pane_pids(&self) -> Vec<u32> {
        let out = self.run(&["list-panes", "-a", "-F", "#{pane_pid}"]);
        out.stdout
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
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
    /// `TMUX=<socket>,<server pid>,<session>` tmux puts in their environment.
    pub fn processes_from_panes(&self) -> BTreeSet<u32> {
        let prefix = format!("TMUX={},", self.socket_path().display());
        all_pids()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|&b| b == 0)
                        .any(|var| var.starts_with(prefix.as_bytes()))
                })
            })
            .filter(|&pid| process_alive(pid))
            .collect()
    }

    /// Kills the server and every process its panes started, including
    /// ones that ignore SIGHUP/SIGTERM.
    pub fn kill_server(&self) {
        let mut doomed = BTreeSet::new();
        let panes = try_run_command(
            self.command(&["list-panes", "-a", "-F", "#{pane_pid}"]),
            DEADLINE,
        );
        for pid in panes
            .map(|o| o.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
        {
            doomed.insert(pid);
            doomed.extend(descendants(pid));
        }
        // Processes that left their pane (e.g. survivors of a killed
        // session) still carry TMUX=<this server's socket>,... in their
        // environment.
        doomed.extend(self.processes_from_panes());
        let _ = try_run_command(self.command(&["kill-server"]), DEADLINE);
        // tmux 3.3a leaves its socket file behind.
        let _ = fs::remove_file(self.socket_path());
        for pid in doomed {
            kill9(pid);
        }
    }
}

// ---------------------------------------------------------------------------
// A town

/// One test's town: temp dir, private tmux server, daemon config. Dropping
/// it stops the daemon and the tmux server, whatever happened in the test.
pub struct Town {
    dir: tempfile::TempDir,
    root: PathBuf,
    pub sock: String,
    pub tmux: Tmux,
    config: Value,
}

impl Default for Town {
    fn default() -> Self {
        Self::new()
    }
}

impl Town {
    /// A new town with `daemon/` and the default test config written.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gt-town-")
            .tempdir()
            .expect("temp dir");
        let root = fs::canonicalize(dir.path()).expect("canonical temp dir");
        fs::create_dir_all(root.join("daemon")).expect("create daemon/");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let sock = format!("gt-test-{}-{}", std::process::id(), n);
        let config = default_config(&sock);
        let town = Town {
            dir,
            root,
            tmux: Tmux::new(&sock),
            sock,
            config,
        };
        town.write_config_value(&town.config);
        town
    }

    /// Writes `daemon/config.json`: the defaults with `overrides`' keys on
    /// top (a key set to null is removed).
    pub fn config(&mut self, overrides: Value) {
        let mut merged = default_config(&self.sock);
        let (Value::Object(base), Value::Object(extra)) = (&mut merged, overrides) else {
            panic!("config overrides must be a JSON object");
        };
        for (k, v) in extra {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
        self.write_config_value(&merged);
        self.config = merged;
    }

    fn write_config_value(&self, v: &Value) {
        fs::write(
            self.daemon_dir().join("config.json"),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .expect("write config.json");
    }

    // --- paths ---

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn daemon_dir(&self) -> PathBuf {
        self.root.join("daemon")
    }
    pub fn inbox(&self) -> PathBuf {
        self.daemon_dir().join("inbox")
    }
    pub fn processing(&self) -> PathBuf {
        self.daemon_dir().join("processing")
    }
    pub fn processed(&self) -> PathBuf {
        self.daemon_dir().join("processed")
    }
    pub fn failed(&self) -> PathBuf {
        self.daemon_dir().join("failed")
    }
    pub fn state_path(&self) -> PathBuf {
        self.daemon_dir().join("state.json")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.daemon_dir().join("daemon.pid")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.daemon_dir().join("daemon.lock")
    }
    pub fn log_path(&self) -> PathBuf {
        self.daemon_dir().join("daemon.log")
    }

    // --- running gt ---

    /// A `gt` command with `--town` set and a clean town environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(GT);
        cmd.arg("--town").arg(&self.root).args(args);
        cmd.env_remove("GT_TOWN_ROOT");
        for var in gt::testing::NAMES {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `gt --town <root> ARGS...`.
    pub fn gt(&self, args: &[&str]) -> Out {
        run_command(self.command(args))
    }

    /// `gt daemon start` (with extra args), asserting success; returns the
    /// PID it reported.
    pub fn start_with(&self, extra: &[&str]) -> u32 {
        let mut args = vec!["daemon", "start"];
        args.extend_from_slice(extra);
        let out = self.gt(&args);
        assert!(
            out.success(),
            "gt daemon start failed: {out:#?}\n{}",
            self.snapshot()
        );
        parse_pid(&out.stdout).unwrap_or_else(|| panic!("no \"(PID N)\" in start output: {out:#?}"))
    }

    pub fn start(&self) -> u32 {
        self.start_with(&[])
    }

    /// `gt daemon start --dry-run`.
    pub fn start_dry(&self) -> u32 {
        self.start_with(&["--dry-run"])
    }

    /// `gt daemon stop --timeout 10s`, asserting success.
    pub fn stop(&self) -> Out {
        let out = self.gt(&["daemon", "stop", "--timeout", "10s"]);
        assert!(
            out.success(),
            "gt daemon stop failed: {out:#?}\n{}",
            self.snapshot()
        );
        out
    }

    /// `gt daemon status --json`, parsed.
    pub fn status_json(&self) -> Value {
        let out = self.gt(&["daemon", "status", "--json"]);
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("status --json is not one JSON object ({e}): {out:#?}"))
    }

    /// `gt daemon send ACTION --from FROM`; returns the path it printed.
    pub fn send(&self, action: &str, from: &str) -> PathBuf {
        let out = self.gt(&["daemon", "send", action, "--from", from]);
        assert!(
            out.success(),
            "gt daemon send {action} --from {from} failed: {out:#?}"
        );
        let path = printed_path(&out.stdout)
            .unwrap_or_else(|| panic!("send printed no .json path: {out:#?}"));
        assert_eq!(
            path.parent()
                .map(|p| fs::canonicalize(p).unwrap_or(p.to_path_buf())),
            Some(self.inbox()),
            "send must publish into the inbox: {out:#?}"
        );
        path
    }

    // --- the daemon process ---

    /// The PID in daemon.pid, if any.
    pub fn pid_file(&self) -> Option<u32> {
        fs::read_to_string(self.pid_path())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Is daemon.lock held by someone (we try to take it ourselves)?
    pub fn lock_held(&self) -> bool {
        let Ok(file) = fs::OpenOptions::new().read(true).open(self.lock_path()) else {
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

    /// The PIDs holding or waiting for a flock on daemon.lock, from
    /// /proc/locks (waiters included, marked by "->").
    pub fn lock_holders(&self) -> Vec<u32> {
        let Ok(meta) = fs::metadata(self.lock_path()) else {
            return Vec::new();
        };
        let dev = meta.dev();
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
        let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
        locks
            .lines()
            .filter(|l| l.contains("FLOCK"))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().filter(|f| *f != "->").collect();
                // "N:" FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END
                (fields.get(5) == Some(&want.as_str()))
                    .then(|| fields.get(4)?.parse().ok())
                    .flatten()
            })
            .collect()
    }

    // --- state and files ---

    /// state.json, parsed (None when absent). A file that exists but does
    /// not parse is a contract violation (writes must be atomic): panic.
    pub fn try_state(&self) -> Option<Value> {
        let bytes = fs::read(self.state_path()).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "state.json is not valid JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        }))
    }

    pub fn state(&self) -> Value {
        self.try_state()
            .unwrap_or_else(|| panic!("no state.json\n{}", self.snapshot()))
    }

    /// A numeric state.json field (0 when absent).
    pub fn state_u64(&self, key: &str) -> u64 {
        self.try_state()
            .and_then(|s| s.get(key).and_then(Value::as_u64))
            .unwrap_or(0)
    }

    /// Publishes a request Maildir-style: write `inbox/.NAME.tmp`, rename
    /// it to `inbox/NAME`.
    pub fn publish(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let inbox = self.inbox();
        fs::create_dir_all(&inbox).expect("create inbox");
        let tmp = inbox.join(format!(".{name}.tmp"));
        let dest = inbox.join(name);
        fs::write(&tmp, bytes).expect("write request");
        fs::rename(&tmp, &dest).expect("publish request");
        dest
    }

    /// The result sidecar `DIR/NAME.result.json`, parsed, if it is there
    /// and complete.
    pub fn try_sidecar(&self, dir: &Path, name: &str) -> Option<Value> {
        let bytes = fs::read(dir.join(format!("{name}.result.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn sidecar(&self, dir: &Path, name: &str) -> Value {
        self.try_sidecar(dir, name).unwrap_or_else(|| {
            panic!(
                "no readable sidecar for {name} in {}\n{}",
                dir.display(),
                self.snapshot()
            )
        })
    }

    /// Waits until request NAME is filed (file and sidecar) in `processed/`
    /// or `failed/`; returns the directory it landed in and its sidecar.
    pub fn wait_filed(&self, name: &str) -> (PathBuf, Value) {
        let mut found = None;
        self.wait_until(
            &format!("request {name} filed in processed/ or failed/ with its sidecar"),
            DEADLINE,
            || {
                for dir in [self.processed(), self.failed()] {
                    if dir.join(name).exists() {
                        if let Some(sc) = self.try_sidecar(&dir, name) {
                            found = Some((dir, sc));
                            return true;
                        }
                    }
                }
                false
            },
        );
        found.unwrap()
    }

    /// Waits until NAME is filed and asserts it landed in `processed/` with
    /// outcome "processed"; returns the sidecar.
    pub fn wait_processed(&self, name: &str) -> Value {
        let (dir, sc) = self.wait_filed(name);
        assert_eq!(
            dir,
            self.processed(),
            "{name} should be processed, sidecar: {sc:#}\n{}",
            self.snapshot()
        );
        assert_eq!(sc["outcome"], "processed", "sidecar of {name}: {sc:#}");
        sc
    }

    /// Waits until NAME is filed and asserts it landed in `failed/` with
    /// outcome "failed"; returns the sidecar.
    pub fn wait_failed(&self, name: &str) -> Value {
        let (dir, sc) = self.wait_filed(name);
        assert_eq!(
            dir,
            self.failed(),
            "{name} should have failed, sidecar: {sc:#}\n{}",
            self.snapshot()
        );
        assert_eq!(sc["outcome"], "failed", "sidecar of {name}: {sc:#}");
        sc
    }

    /// Polls `cond` every ~20 ms; on timeout panics with `what` and a
    /// snapshot of the town.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        wait_for(what, timeout, cond, || self.snapshot());
    }

    /// What a person debugging a failed test wants to see: the daemon
    /// directories, state.json, tmux sessions and the log's tail.
    pub fn snapshot(&self) -> String {
        let mut s = format!("--- town {} (tmux -L {})\n", self.root.display(), self.sock);
        for dir in ["inbox", "processing", "processed", "failed"] {
            let names = ls(&self.daemon_dir().join(dir));
            let shown: Vec<&String> = names.iter().take(20).collect();
            s += &format!("{dir}/ ({}): {shown:?}\n", names.len());
        }
        s += &format!("daemon/: {:?}\n", ls(&self.daemon_dir()));
        s += &format!(
            "daemon.pid: {:?}, lock held: {}\n",
            self.pid_file(),
            self.lock_held()
        );
        s += &format!(
            "state.json: {}\n",
            fs::read_to_string(self.state_path()).unwrap_or_else(|e| e.to_string())
        );
        s += &format!("tmux sessions: {:?}\n", self.tmux.sessions());
        let log = read_lines(&self.log_path());
        s += &format!(
            "--- last {} of {} log lines:\n",
            log.len().min(30),
            log.len()
        );
        for line in &log[log.len().saturating_sub(30)..] {
            s += line;
            s += "\n";
        }
        s
    }
}

impl Drop for Town {
    fn drop(&mut self) {
        // Best effort, whatever state the test left things in.
        if self.lock_path().exists() {
            let _ = try_run_command(
                self.command(&["daemon", "stop", "--timeout", "5s"]),
                DEADLINE,
            );
            if self.lock_held() {
                if let Some(pid) = self.pid_file() {
                    kill9(pid);
                }
                for pid in self.lock_holders() {
                    kill9(pid);
                }
            }
        }
        self.tmux.kill_server();
    }
}
