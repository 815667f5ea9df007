//! Helpers for the operator/agent experience tests (`tests/ux_*.rs`), on top
//! of the shared harness in `tests/common`.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{run_command, Out, Town, DEADLINE};

/// Environment variables that change what the CLI prints or logs; every
/// command here starts without them so the caller's shell cannot leak in.
const OUTPUT_ENV: [&str; 7] = [
    "NO_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "TERM",
];

/// `gt --town <root> ARGS...` with a neutral output environment plus `env`.
pub fn command_env(town: &Town, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = town.command(args);
    for var in OUTPUT_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs [`command_env`].
pub fn gt_env(town: &Town, args: &[&str], env: &[(&str, &str)]) -> Out {
    run_command(command_env(town, args, env))
}

/// `gt daemon start --dry-run` with extra global/`start` arguments and
/// environment, asserting success; returns the PID it printed.
pub fn start_dry_env(town: &Town, global: &[&str], env: &[(&str, &str)]) -> u32 {
    let mut args: Vec<&str> = global.to_vec();
    args.extend_from_slice(&["daemon", "start", "--dry-run"]);
    let out = gt_env(town, &args, env);
    assert!(
        out.success(),
        "gt {args:?} failed: {out:#?}\n{}",
        town.snapshot()
    );
    crate::common::parse_pid(&out.stdout)
        .unwrap_or_else(|| panic!("no \"(PID N)\" in start output: {out:#?}"))
}

/// `gt daemon stop`, then waits until the daemon's last line ("daemon
/// stopped") is in the log, so every line it wrote before is on disk.
pub fn stop_and_flush(town: &Town) {
    town.stop();
    town.wait_until("the \"daemon stopped\" log line", DEADLINE, || {
        crate::common::read_lines(&town.log_path())
            .iter()
            .any(|l| l.contains("daemon stopped"))
    });
}

/// Does the text hold an ANSI escape sequence?
pub fn has_ansi(text: &str) -> bool {
    text.contains('\u{1b}')
}

/// Waits until the daemon has written its first heartbeat to state.json.
pub fn wait_first_heartbeat(town: &Town) {
    town.wait_until("the first heartbeat in state.json", DEADLINE, || {
        town.state_u64("heartbeat_count") >= 1
    });
}

/// Waits until state.json's counters reach the given values (they are
/// written in batches).
pub fn wait_counters(town: &Town, processed: u64, failed: u64) {
    town.wait_until(
        &format!("state.json counters processed={processed} failed={failed}"),
        DEADLINE,
        || {
            town.state_u64("requests_processed") == processed
                && town.state_u64("requests_failed") == failed
        },
    );
}

/// `gt daemon send ACTION --from FROM --wait [extra...]`.
pub fn send_wait(town: &Town, action: &str, from: &str, extra: &[&str]) -> Out {
    let mut args = vec!["daemon", "send", action, "--from", from, "--wait"];
    args.extend_from_slice(extra);
    gt_env(town, &args, &[])
}

/// The request path `send` printed on its first stdout line.
pub fn sent_path(out: &Out) -> PathBuf {
    crate::common::printed_path(&out.stdout)
        .unwrap_or_else(|| panic!("send printed no .json path: {out:#?}"))
}

/// The file name of a path, as a String.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// Creates `shutdown.lock`, as `gt down` would.
pub fn create_shutdown_lock(town: &Town) {
    fs::write(town.daemon_dir().join("shutdown.lock"), b"").expect("write shutdown.lock");
}

/// One processed and one failed request, filed by a running dry-run daemon:
/// `shutdown` from `gastown/witness` (processed), then `cycle` from `mayor`
/// refused because `shutdown.lock` exists (failed, newer). Returns their
/// file names (processed, failed). The lock is left in place.
pub fn one_processed_one_failed(town: &Town) -> (String, String) {
    let ok = send_wait(town, "shutdown", "gastown/witness", &["--timeout", "20s"]);
    assert_eq!(ok.code, Some(0), "send shutdown --wait: {ok:#?}");
    let processed = file_name(&sent_path(&ok));
    town.wait_processed(&processed);

    create_shutdown_lock(town);
    let bad = send_wait(town, "cycle", "mayor", &["--timeout", "20s"]);
    assert_eq!(
        bad.code,
        Some(1),
        "send cycle --wait under shutdown.lock: {bad:#?}"
    );
    let failed = file_name(&sent_path(&bad));
    let sc = town.wait_failed(&failed);
    assert!(
        sc["error"]
            .as_str()
            .is_some_and(|e| e.contains("town is shutting down")),
        "sidecar of the refused cycle: {sc:#}"
    );
    wait_counters(town, 1, 1);
    (processed, failed)
}

/// Sets a file's modification time.
pub fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("cannot set the mtime of {}: {e}", path.display()));
}

/// `now - secs`.
pub fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Parses stdout as exactly one JSON value (serde_json rejects anything
/// but whitespace after it).
pub fn one_json(out: &Out, what: &str) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not exactly one JSON value ({e}): {out:#?}"))
}

/// Sends SIGCONT to a process when dropped, so a test that stopped the
/// daemon with SIGSTOP never leaves it frozen for the town's own cleanup.
pub struct ContinueOnDrop(pub u32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        signal(self.0, rustix::process::Signal::CONT);
    }
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// The data rows of `gt daemon requests`' table: columns are separated by
/// two or more spaces (the time column holds a single one).
pub fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    assert!(
        header.contains("AGENT") && header.contains("OUTCOME") && header.contains("REASON"),
        "the table has no header line: {stdout:?}"
    );
    lines
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}
