//! The `gt` command line with a clean environment, and running any command
//! with a deadline.
//!
//! Shared with the benchmarks (bench/main.rs and bench/fleet.rs include
//! this file), so it uses nothing of the harness: only std and `gt`.

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Deadline for any one condition a test waits for: generous, because CI
/// runs on a loaded 2-core machine; every wait ends as soon as it holds.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Path of the binary under test.
pub const GT: &str = env!("CARGO_BIN_EXE_gt");

/// Upper bound for any single command a test runs (`start`, `stop` and
/// `send --wait` have their own timeouts, all well below it).
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// Variables that change where `gt` looks or what it prints; every `gt`
/// the harness (or the benchmark) starts goes without them and without the
/// test hooks, so the caller's shell (or a service manager running the
/// tests) cannot leak in. A test sets what it means to.
const CLEARED_ENV: [&str; 14] = [
    gt::town::TOWN_ENV,
    "GT_INSTALL_DIR",
    "NO_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "TERM",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// `gt` (the binary under test) with a clean environment: no town, no
/// install dir, no output switches, no test hooks.
pub fn gt_command() -> Command {
    program_command(GT)
}

/// [`gt_command`] for another copy of the binary.
pub fn program_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in CLEARED_ENV.iter().chain(gt::testing::NAMES) {
        cmd.env_remove(var);
    }
    cmd
}

/// Sets test hooks on `cmd` (with the switch that makes them count).
pub fn with_hooks<'a>(cmd: &'a mut Command, hooks: &[(&str, &str)]) -> &'a mut Command {
    if !hooks.is_empty() {
        cmd.env(gt::testing::ENABLE, "1");
    }
    for (k, v) in hooks {
        cmd.env(k, v);
    }
    cmd
}

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

    /// The request path `gt daemon send` printed; panics without one.
    pub fn sent_path(&self) -> PathBuf {
        printed_path(&self.stdout)
            .unwrap_or_else(|| panic!("send printed no .json path: {self:#?}"))
    }

    /// Panics with the whole output unless the command exited 0.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(self.success(), "{what}: expected exit 0, got {self:#?}");
        self
    }
}

/// Why [`try_run`] has no [`Out`].
#[derive(Debug)]
pub enum RunError {
    Spawn(String, io::Error),
    Other(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spawn(desc, e) => write!(f, "cannot spawn {desc}: {e}"),
            RunError::Other(msg) => f.write_str(msg),
        }
    }
}

/// Runs `cmd` with stdin closed and both outputs captured, bounded by
/// [`COMMAND_DEADLINE`]; panics on a problem.
pub fn run(cmd: Command) -> Out {
    try_run(cmd, COMMAND_DEADLINE).unwrap_or_else(|e| panic!("{e}"))
}

/// [`run`] that reports problems instead of panicking (for `Drop`). A
/// command still running at `deadline` is killed; a grandchild that keeps
/// our pipes open (a daemon that did not detach its stdio) is reported
/// instead of hanging the test.
pub fn try_run(mut cmd: Command, deadline: Duration) -> Result<Out, RunError> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| RunError::Spawn(desc.clone(), e))?;
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
            Err(e) => return Err(RunError::Other(format!("cannot wait for {desc}: {e}"))),
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Other(format!(
                "{desc} did not finish within {deadline:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut outs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok((i, buf)) => outs[i] = buf,
            Err(_) => {
                return Err(RunError::Other(format!(
                    "{desc} exited ({status}) but its stdout/stderr stayed open: \
                     a process it started (the daemon?) inherited the pipes"
                )))
            }
        }
    }
    Ok(Out {
        code: status.code(),
        stdout: String::from_utf8_lossy(&outs[0]).into_owned(),
        stderr: String::from_utf8_lossy(&outs[1]).into_owned(),
    })
}

/// Runs a freshly copied executable. Another test thread that forked while
/// the copy was open for writing holds a write handle in its child until
/// that child execs, so exec fails with ETXTBSY for a moment: retry until
/// it clears.
pub fn run_fresh_copy(mut make: impl FnMut() -> Command) -> Out {
    let end = Instant::now() + DEADLINE;
    loop {
        match try_run(make(), COMMAND_DEADLINE) {
            Ok(out) => return out,
            Err(RunError::Spawn(_, e))
                if e.kind() == io::ErrorKind::ExecutableFileBusy && Instant::now() < end =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Copies the binary under test to `path` (for tests that need it under
/// another name, or with an mtime of their own).
pub fn copy_gt(path: &std::path::Path) {
    std::fs::copy(GT, path).unwrap_or_else(|e| panic!("copy gt to {}: {e}", path.display()));
}

/// Parses "... (PID 1234)" from `start`/`stop` output.
pub fn parse_pid(text: &str) -> Option<u32> {
    let i = text.find("(PID ")?;
    let rest = &text[i + 5..];
    rest[..rest.find(')')?].trim().parse().ok()
}

/// The PID of the daemon a `start` (or `restart`) reports in its
/// "Daemon started (PID N)" line; panics with the output when there is none.
pub fn started_pid(output: &str) -> u32 {
    output
        .lines()
        .find(|l| l.contains("Daemon started"))
        .and_then(parse_pid)
        .unwrap_or_else(|| panic!("no \"Daemon started (PID N)\" in: {output}"))
}

/// Finds the `*.json` path that `gt daemon send` printed.
pub fn printed_path(stdout: &str) -> Option<PathBuf> {
    stdout
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .find(|w| w.ends_with(".json"))
        .map(PathBuf::from)
}
