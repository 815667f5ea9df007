//! The one harness of the integration tests: each test binary declares
//! `mod support;` and gets everything from here.
//!
//! - [`command`]: the `gt` command line (a clean environment) and running
//!   any command with a deadline;
//! - [`proc`]: children killed on drop, signals, and what the tests read
//!   from `/proc` beyond `gt::process`;
//! - [`tmux`]: a private tmux server per test, killed on drop;
//! - [`http`]: GET on loopback (the metrics endpoint, a test Prometheus);
//! - [`town`]: a temporary town with its config, its daemon (killed on
//!   drop) and its tmux server;
//! - [`catalogue`]: the request fixtures under `fixtures/`;
//! - [`strange`]: a FIFO, a link to /dev/zero, a directory or a huge file
//!   where a file of the town should be;
//! - [`agents`]: small programs that stand in for agents (answering,
//!   deaf, raw, a paste-taking TUI, one asking a person).
//!
//! Waiting is always for a condition with a deadline, never a fixed sleep.
//!
//! `command`, `proc` and `tmux` are also the benchmarks' (bench/main.rs
//! includes them with `#[path]`), so that a tmux server and a clean
//! environment are made one way: they use only std, rustix, `gt` and each
//! other, never the rest of the harness.
#![allow(dead_code, unused_imports)]

pub mod agents;
pub mod catalogue;
pub mod command;
pub mod http;
pub mod proc;
pub mod strange;
pub mod tmux;
pub mod town;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use command::{gt_command, parse_pid, printed_path, run, started_pid, try_run, Out, DEADLINE};
pub use town::Town;

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

/// Is request `name` filed? The library's own answer (the request, of
/// whatever file type, beside a complete sidecar in `processed/` or
/// `failed/`); returns that directory and the sidecar as JSON.
pub fn filed(town: &gt::town::Town, name: &str) -> Option<(PathBuf, Value)> {
    let filed = gt::outcome::filed(town, name.as_ref())?;
    let dir = filed.path.parent()?.to_path_buf();
    Some((dir, serde_json::to_value(filed.sidecar).ok()?))
}

/// What the bash completion `script` offers for a command line: `setup`
/// sets COMP_WORDS, COMP_CWORD, COMP_LINE and COMP_POINT, then calls
/// `_gt` as bash would; the replies come back one per element.
pub fn bash_completions(script: &[u8], setup: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gt.bash");
    fs::write(&file, script).unwrap();
    let probe = format!("source \"$1\"\n{setup}\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"");
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", &probe, "probe"])
        .arg(&file);
    let out = run(cmd);
    out.assert_ok("the completion probe");
    out.stdout.lines().map(str::to_string).collect()
}

/// Set to `1` (CI does) to make a missing tool fail the tests that need it
/// instead of skipping them.
pub const REQUIRE_TOOLS: &str = "GT_REQUIRE_TOOLS";

/// Is `tool` on PATH? If not, says so loudly (past the test harness's
/// output capture, so a passing run shows it too) and returns false, or
/// panics when [`REQUIRE_TOOLS`] is `1`.
pub fn require_tool(tool: &str) -> bool {
    require(tool, on_path(tool))
}

/// [`require_tool`] for something found another way (a Python module, a
/// tool that must also run).
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    if std::env::var(REQUIRE_TOOLS).as_deref() == Ok("1") {
        panic!("{test}: {what} not found, and {REQUIRE_TOOLS}=1 says it must be there");
    }
    // Straight to fd 2: eprintln! would be captured and only shown if the
    // test failed, and a skip is worth seeing when everything passes.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {what} not found");
    false
}

/// Is `tool` an executable file in a directory of PATH?
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
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

/// Is this name a request (`*.json`, not a sidecar, not a dot-file)?
fn is_request_name(name: &str) -> bool {
    name.ends_with(".json") && !name.ends_with(".result.json") && !name.starts_with('.')
}

/// Request file names in a directory, sorted.
pub fn request_names(dir: &Path) -> Vec<String> {
    ls(dir).into_iter().filter(|n| is_request_name(n)).collect()
}

/// How many request files a directory holds (cheaper than sorting names).
pub fn count_requests(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| is_request_name(&e.file_name().to_string_lossy()))
                .count()
        })
        .unwrap_or(0)
}

/// Entries of a directory whatever their name (dot-files included).
pub fn count_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The lines of a text file, or empty if it cannot be read.
pub fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The file name of a path, as a String.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// A fresh lifecycle request as JSON text, timestamped now.
pub fn request_json(from: &str, action: &str) -> String {
    request_at(from, action, &chrono::Utc::now().to_rfc3339())
}

/// A lifecycle request with an explicit timestamp.
pub fn request_at(from: &str, action: &str, timestamp: &str) -> String {
    json!({"from": from, "action": action, "timestamp": timestamp}).to_string()
}

/// Parses stdout as exactly one JSON value (serde_json rejects anything
/// but whitespace after it).
pub fn one_json(out: &Out, what: &str) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not exactly one JSON value ({e}): {out:#?}"))
}

/// Does the text hold an ANSI escape sequence?
pub fn has_ansi(text: &str) -> bool {
    text.contains('\u{1b}')
}
