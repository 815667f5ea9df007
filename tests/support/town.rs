//! One test's town: a temporary directory, the default test config, its
//! own private tmux server and, once started, its own daemon. Dropping it
//! stops the daemon (SIGTERM, then SIGKILL after a deadline) and kills the
//! tmux server, whatever happened in the test.
//!
//! Paths come from the library's own table: `Town` dereferences to
//! `gt::town::Town` (`inbox()`, `processed()`, `state_file()`, ...).

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::command::{gt_command, parse_pid, run, with_hooks, Out};
use super::proc::{daemon_processes, lock_held, lock_holders};
use super::tmux::Tmux;
use super::{file_name, filed, ls, read_lines, wait_for, DEADLINE};

/// How long a daemon gets to stop on SIGTERM when a town is dropped
/// before it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct Town {
    // Dropped in this order (after `Drop::drop` stopped the daemon): the
    // tmux server before the directory its panes run in.
    pub tmux: Tmux,
    paths: gt::town::Town,
    _dir: tempfile::TempDir,
}

impl Deref for Town {
    type Target = gt::town::Town;
    fn deref(&self) -> &gt::town::Town {
        &self.paths
    }
}

impl Default for Town {
    fn default() -> Self {
        Self::new()
    }
}

/// The default test configuration: private tmux server, a harmless agent,
/// short delays, and no heartbeat during the test unless asked for.
fn default_config(sock: &str) -> Value {
    json!({
        "tmux_socket": sock,
        "agent_command": "sleep 600",
        "prime_delay": "100ms",
        "kill_grace": "500ms",
        "heartbeat_interval": "1h",
    })
}

impl Town {
    /// A new town with `daemon/` and the default test config written.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gt-town-")
            .tempdir()
            .expect("temp dir");
        // Canonical, so paths the daemon reports compare equal.
        let root = fs::canonicalize(dir.path()).expect("canonical temp dir");
        let paths = gt::town::Town::at(&root).expect("town");
        fs::create_dir_all(paths.daemon_dir()).expect("create daemon/");
        let town = Town {
            tmux: Tmux::private(),
            paths,
            _dir: dir,
        };
        town.write_config(&default_config(&town.tmux.sock));
        town
    }

    /// Writes `daemon/config.json`: the defaults with `overrides`' keys on
    /// top (a key set to null is removed).
    pub fn config(&mut self, overrides: Value) {
        let mut merged = default_config(&self.tmux.sock);
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
        self.write_config(&merged);
    }

    fn write_config(&self, v: &Value) {
        fs::write(self.config_file(), serde_json::to_vec_pretty(v).unwrap())
            .expect("write config.json");
    }

    /// `daemon.log.N`, a rotated generation of the log.
    pub fn rotated_log(&self, n: u32) -> PathBuf {
        let mut name = self.log_file().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Creates `shutdown.lock`, as `gt down` would.
    pub fn create_shutdown_lock(&self) {
        fs::write(self.shutdown_lock(), b"").expect("write shutdown.lock");
    }

    // --- running gt ---

    /// `gt --town <root> ARGS...` with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = gt_command();
        cmd.arg("--town").arg(self.root()).args(args);
        cmd
    }

    /// Runs `gt --town <root> ARGS...`.
    pub fn gt(&self, args: &[&str]) -> Out {
        run(self.command(args))
    }

    /// Runs `gt --town <root> ARGS...` with extra environment variables.
    pub fn gt_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        run(cmd)
    }

    /// `gt [GLOBAL...] daemon start [EXTRA...]`, not yet run.
    pub fn start_command(&self, global: &[&str], extra: &[&str]) -> Command {
        let mut args = global.to_vec();
        args.extend_from_slice(&["daemon", "start"]);
        args.extend_from_slice(extra);
        self.command(&args)
    }

    /// Runs a start command, asserting success; returns the PID it reported.
    pub fn started(&self, cmd: Command) -> u32 {
        let desc = format!("{cmd:?}");
        let out = run(cmd);
        assert!(
            out.success(),
            "{desc} failed: {out:#?}\n{}",
            self.snapshot()
        );
        parse_pid(&out.stdout).unwrap_or_else(|| panic!("no \"(PID N)\" in start output: {out:#?}"))
    }

    /// `gt daemon start EXTRA...`, asserting success; returns the PID.
    pub fn start_with(&self, extra: &[&str]) -> u32 {
        self.started(self.start_command(&[], extra))
    }

    pub fn start(&self) -> u32 {
        self.start_with(&[])
    }

    /// `gt daemon start --dry-run`.
    pub fn start_dry(&self) -> u32 {
        self.start_with(&["--dry-run"])
    }

    /// `gt daemon start EXTRA...` with test hooks in the daemon's
    /// environment (it inherits them from `start`).
    pub fn start_hooked(&self, extra: &[&str], hooks: &[(&str, &str)]) -> u32 {
        let mut cmd = self.start_command(&[], extra);
        with_hooks(&mut cmd, hooks);
        self.started(cmd)
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

    /// [`Town::stop`], then waits until the daemon's last line ("daemon
    /// stopped") is in the log, so every line it wrote before is on disk.
    pub fn stop_and_flush(&self) {
        self.stop();
        self.wait_until("the \"daemon stopped\" log line", DEADLINE, || {
            read_lines(&self.log_file())
                .iter()
                .any(|l| l.contains("daemon stopped"))
        });
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
        let path = out.sent_path();
        assert_eq!(
            path.parent()
                .map(|p| fs::canonicalize(p).unwrap_or(p.to_path_buf())),
            Some(self.inbox()),
            "send must publish into the inbox: {out:#?}"
        );
        path
    }

    /// `gt daemon send ACTION --from FROM --wait [EXTRA...]`.
    pub fn send_wait(&self, action: &str, from: &str, extra: &[&str]) -> Out {
        let mut args = vec!["daemon", "send", action, "--from", from, "--wait"];
        args.extend_from_slice(extra);
        self.gt(&args)
    }

    /// One processed and one failed request, filed by a running dry-run
    /// daemon: `shutdown` from `gastown/witness` (processed), then `cycle`
    /// from `mayor` refused because `shutdown.lock` exists (failed, newer).
    /// Returns their file names (processed, failed). The lock stays.
    pub fn one_processed_one_failed(&self) -> (String, String) {
        let sent = |out: &Out| file_name(&out.sent_path());
        let ok = self.send_wait("shutdown", "gastown/witness", &["--timeout", "20s"]);
        assert_eq!(ok.code, Some(0), "send shutdown --wait: {ok:#?}");
        let processed = sent(&ok);
        self.wait_processed(&processed);

        self.create_shutdown_lock();
        let bad = self.send_wait("cycle", "mayor", &["--timeout", "20s"]);
        assert_eq!(
            bad.code,
            Some(1),
            "send cycle --wait under shutdown.lock: {bad:#?}"
        );
        let failed = sent(&bad);
        self.wait_failed_with(&failed, "town is shutting down");
        self.wait_counters(1, 1);
        (processed, failed)
    }

    // --- the daemon process ---

    /// The PID written in daemon.pid, if any.
    pub fn recorded_pid(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Is daemon.lock held by someone?
    pub fn lock_held(&self) -> bool {
        lock_held(&self.lock_file())
    }

    /// The PIDs holding or waiting for daemon.lock, from /proc/locks.
    pub fn lock_holders(&self) -> Vec<u32> {
        lock_holders(&self.lock_file())
    }

    /// Live `gt daemon run` processes of this town.
    pub fn daemon_processes(&self) -> Vec<u32> {
        daemon_processes(self.root())
    }

    /// Waits until the daemon `pid` has exited and no `gt daemon run` of
    /// this town is left. `stop` returns once the lock is free, and the
    /// daemon releases it just before its process exits.
    pub fn wait_daemon_gone(&self, pid: u32) {
        self.wait_until(&format!("the daemon (PID {pid}) to exit"), DEADLINE, || {
            !super::proc::alive(pid) && self.daemon_processes().is_empty()
        });
    }

    /// Every process that is, or is about to be, this town's daemon.
    fn daemons(&self) -> Vec<u32> {
        let mut pids = self.lock_holders();
        pids.extend(self.daemon_processes());
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|&p| p != std::process::id());
        pids
    }

    // --- state and files ---

    /// state.json, parsed (None when absent). A file that exists but does
    /// not parse is a contract violation (writes must be atomic): panic.
    pub fn try_state(&self) -> Option<Value> {
        let bytes = fs::read(self.state_file()).ok()?;
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

    /// The result sidecar `DIR/NAME.result.json`, parsed.
    pub fn sidecar(&self, dir: &Path, name: &str) -> Value {
        fs::read(dir.join(format!("{name}.result.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no readable sidecar for {name} in {}\n{}",
                    dir.display(),
                    self.snapshot()
                )
            })
    }

    /// Waits until request NAME is [`filed`]; returns the directory it
    /// landed in and its sidecar.
    pub fn wait_filed(&self, name: &str) -> (PathBuf, Value) {
        let mut found = None;
        self.wait_until(
            &format!("request {name} filed in processed/ or failed/ with its sidecar"),
            DEADLINE,
            || {
                found = filed(self, name);
                found.is_some()
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

    /// Waits until NAME is filed as failed and its reason contains `needle`.
    pub fn wait_failed_with(&self, name: &str, needle: &str) -> Value {
        let sc = self.wait_failed(name);
        let why = sc["error"].as_str().unwrap_or_default();
        assert!(
            why.contains(needle),
            "{name}: reason {why:?} should contain {needle:?}\n{}",
            self.snapshot()
        );
        sc
    }

    /// Waits until state.json's counters are exactly these (they are
    /// written in batches).
    pub fn wait_counters(&self, processed: u64, failed: u64) {
        self.wait_until(
            &format!("state.json counters processed={processed} failed={failed}"),
            DEADLINE,
            || {
                self.state_u64("requests_processed") == processed
                    && self.state_u64("requests_failed") == failed
            },
        );
    }

    /// Waits until the daemon has written its first heartbeat to state.json.
    pub fn wait_first_heartbeat(&self) {
        self.wait_until("the first heartbeat in state.json", DEADLINE, || {
            self.state_u64("heartbeat_count") >= 1
        });
    }

    /// Waits until a line of the daemon's log satisfies `pred`.
    pub fn wait_log_line(&self, what: &str, pred: impl Fn(&str) -> bool) {
        self.wait_until(what, DEADLINE, || {
            read_lines(&self.log_file()).iter().any(|l| pred(l))
        });
    }

    /// The text of every log file of the town (`daemon.log`, `.1`, ...).
    pub fn all_logs(&self) -> String {
        let mut text = String::new();
        for name in ls(self.daemon_dir()) {
            if name.starts_with("daemon.log") {
                text += &fs::read_to_string(self.daemon_dir().join(&name)).unwrap_or_default();
            }
        }
        text
    }

    /// Polls `cond` every ~20 ms; on timeout panics with `what` and a
    /// snapshot of the town.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        wait_for(what, timeout, cond, || self.snapshot());
    }

    /// What a person debugging a failed test wants to see: the daemon
    /// directories, state.json, tmux sessions and the log's tail.
    pub fn snapshot(&self) -> String {
        let mut s = format!(
            "--- town {} (tmux -L {})\n",
            self.root().display(),
            self.tmux.sock
        );
        for (label, dir) in [
            ("inbox", self.inbox()),
            ("processing", self.processing()),
            ("processed", self.processed()),
            ("failed", self.failed()),
        ] {
            let names = ls(&dir);
            let shown: Vec<&String> = names.iter().take(20).collect();
            s += &format!("{label}/ ({}): {shown:?}\n", names.len());
        }
        s += &format!("daemon/: {:?}\n", ls(self.daemon_dir()));
        s += &format!(
            "daemon.pid: {:?}, lock held: {}\n",
            self.recorded_pid(),
            self.lock_held()
        );
        s += &format!(
            "state.json: {}\n",
            fs::read_to_string(self.state_file()).unwrap_or_else(|e| e.to_string())
        );
        s += &format!("tmux sessions: {:?}\n", self.tmux.sessions());
        let log = read_lines(&self.log_file());
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
    /// Stops whatever daemon the test left running by signals, not through
    /// `gt daemon stop` (which is what some tests are testing): SIGTERM to
    /// the daemon, SIGKILL to whatever is left after a grace period.
    fn drop(&mut self) {
        let daemons = self.daemons();
        if !daemons.is_empty() {
            // A daemon a test froze with SIGSTOP must run to handle SIGTERM.
            for &pid in &daemons {
                super::proc::signal(pid, super::proc::Signal::CONT);
            }
            gt::process::terminate_tree(&daemons, STOP_GRACE);
        }
    }
}
