//! A thin, typed wrapper over the `tmux` command line.
//!
//! Arguments are passed as argv, never through a shell, and session names
//! reach here only after [`crate::request::Agent`] validated them. Targets
//! use tmux's `=name` form so `gt-mayor` can never prefix-match
//! `gt-mayor-2`.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum TmuxError {
    #[error("tmux is not installed (not found on PATH); install tmux")]
    NotInstalled,
    #[error("no tmux server is running{}", socket_note(.0))]
    NoServer(Option<String>),
    /// The target is not there: no such session, window or pane, or a
    /// server with no sessions at all. An answer, not a failure.
    #[error("tmux {args}: no such session ({stderr})")]
    NoSession { args: String, stderr: String },
    #[error("tmux {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error(
        "tmux {args} did not answer within {} (tmux_timeout); the tmux server may be \
         wedged (stopped, or blocked on a full disk): check it with `tmux{} list-sessions`",
        crate::duration::human(*.limit), socket_flag(.socket)
    )]
    TimedOut {
        args: String,
        limit: Duration,
        socket: Option<String>,
    },
    #[error("cannot run tmux: {0}")]
    Io(#[from] io::Error),
}

fn socket_flag(socket: &Option<String>) -> String {
    socket
        .as_ref()
        .map(|s| format!(" -L {s}"))
        .unwrap_or_default()
}

fn socket_note(socket: &Option<String>) -> String {
    socket
        .as_ref()
        .map(|s| format!(" on socket {s:?}"))
        .unwrap_or_default()
}

/// Every tmux call this process made, and the ones that failed or timed
/// out: the daemon's metrics read them (every `Tmux` here is the daemon's).
pub(crate) static CALLS: CallCounts = CallCounts {
    calls: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    timed_out: AtomicU64::new(0),
};

pub(crate) struct CallCounts {
    pub(crate) calls: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
}

/// One pane, as [`Tmux::panes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedPane {
    pub(crate) session: String,
    pub(crate) pid: Option<u32>,
    /// Unix time the session was created.
    pub(crate) created: Option<i64>,
    pub(crate) dead: bool,
}

impl ListedPane {
    /// The pane as [`crate::process::agent`] reads it (`None` while tmux
    /// gives it no process).
    pub(crate) fn process(&self) -> Option<crate::process::agent::Pane> {
        Some(crate::process::agent::Pane {
            session: self.session.clone(),
            pid: self.pid?,
            dead: self.dead,
        })
    }
}

/// The tmux server the daemon talks to (default, or `-L socket`); no call
/// takes longer than `timeout`.
#[derive(Debug, Clone)]
pub(crate) struct Tmux {
    socket: Option<String>,
    timeout: Duration,
}

impl Tmux {
    pub(crate) fn new(socket: Option<String>, timeout: Duration) -> Self {
        Tmux { socket, timeout }
    }

    fn run<I, S>(&self, args: I) -> Result<Output, TmuxError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let mut cmd = Command::new("tmux");
        // A tmux server we start outlives this call and must not inherit
        // systemd's notification socket (it would speak for the daemon).
        cmd.env_remove("NOTIFY_SOCKET");
        // Nor an agent's marks, when the daemon was started from an agent's
        // pane: every session it made would inherit them, and the server
        // itself would carry them (crate::process::agent).
        cmd.env_remove(crate::process::agent::ROLE_ENV)
            .env_remove("GT_HANDOFF");
        if let Some(socket) = &self.socket {
            cmd.arg("-L").arg(socket);
        }
        CALLS.calls.fetch_add(1, Ordering::Relaxed);
        let output = match crate::process::run_bounded(cmd.args(&args), b"", self.timeout) {
            Ok(Some(output)) => output,
            Ok(None) => {
                CALLS.timed_out.fetch_add(1, Ordering::Relaxed);
                return Err(TmuxError::TimedOut {
                    args: join(&args),
                    limit: self.timeout,
                    socket: self.socket.clone(),
                });
            }
            Err(e) => {
                CALLS.failed.fetch_add(1, Ordering::Relaxed);
                return Err(match e.kind() {
                    io::ErrorKind::NotFound => TmuxError::NotInstalled,
                    _ => TmuxError::Io(e),
                });
            }
        };
        if output.status.success() {
            return Ok(output);
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        // The server exits with its last session, so one that vanishes
        // under us (after we ended that session's processes) is no server.
        let gone = [
            "no server running",
            "error connecting to",
            "server exited unexpectedly",
            "lost server",
        ];
        if gone.iter().any(|g| stderr.contains(g)) {
            return Err(TmuxError::NoServer(self.socket.clone()));
        }
        // A session that is not there is an answer, not a failure.
        if names_no_session(&stderr) {
            return Err(TmuxError::NoSession {
                args: join(&args),
                stderr,
            });
        }
        CALLS.failed.fetch_add(1, Ordering::Relaxed);
        Err(TmuxError::Failed {
            args: join(&args),
            stderr,
        })
    }

    /// Names of all sessions; no server means none.
    pub(crate) fn list_sessions(&self) -> Result<Vec<String>, TmuxError> {
        let out = self.run(["list-sessions", "-F", "#{session_name}"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    pub(crate) fn has_session(&self, name: &str) -> Result<bool, TmuxError> {
        match self.run(["has-session", "-t", &exact(name)]) {
            Ok(_) => Ok(true),
            Err(TmuxError::NoServer(_) | TmuxError::NoSession { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every pane of every session: its session, the PID of its process,
    /// when the session was created, and whether the process has exited.
    /// No server: none.
    pub(crate) fn panes(&self) -> Result<Vec<ListedPane>, TmuxError> {
        let format = "#{session_name}\t#{pane_pid}\t#{session_created}\t#{pane_dead}";
        let out = match self.run(["list-panes", "-a", "-F", format]) {
            Ok(out) => out,
            Err(TmuxError::NoServer(_) | TmuxError::NoSession { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                Some(ListedPane {
                    session: fields.next()?.to_string(),
                    pid: fields.next()?.trim().parse().ok(),
                    created: fields.next()?.trim().parse().ok(),
                    dead: fields.next()? == "1",
                })
            })
            .collect())
    }

    /// Kills the session; already gone is fine.
    pub(crate) fn kill_session(&self, name: &str) -> Result<(), TmuxError> {
        match self.run(["kill-session", "-t", &exact(name)]) {
            Ok(_) | Err(TmuxError::NoServer(_) | TmuxError::NoSession { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates a detached session whose pane runs `argv` directly.
    pub(crate) fn new_session(
        &self,
        name: &str,
        dir: &Path,
        env: &[(&str, &str)],
        argv: &[String],
    ) -> Result<(), TmuxError> {
        let mut args: Vec<std::ffi::OsString> =
            vec!["new-session".into(), "-d".into(), "-s".into(), name.into()];
        args.push("-c".into());
        args.push(dir.as_os_str().into());
        for (key, value) in env {
            args.push("-e".into());
            args.push(format!("{key}={value}").into());
        }
        args.push("--".into());
        args.extend(argv.iter().map(Into::into));
        self.run(args).map(drop)
    }

    /// The agent's own pane: the first pane of the session's first window,
    /// the one `new-session` created (panes and windows a person added
    /// later are never taken for the agent). `None`: no such session.
    pub(crate) fn agent_pane(&self, name: &str) -> Result<Option<Pane>, TmuxError> {
        let out = match self.run([
            "list-panes",
            "-s",
            "-t",
            &exact(name),
            "-F",
            "#{window_index} #{pane_index} #{pane_id} #{pane_dead} #{pane_dead_status}",
        ]) {
            Ok(out) => out,
            Err(TmuxError::NoServer(_) | TmuxError::NoSession { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (w, p) = (
                    f.first()?.parse::<u32>().ok()?,
                    f.get(1)?.parse::<u32>().ok()?,
                );
                Some(((w, p), f))
            })
            .min_by_key(|(order, _)| *order);
        Ok(first.map(|(_, f)| Pane {
            id: f.get(2).unwrap_or(&"").to_string(),
            exit: (f.get(3) == Some(&"1"))
                .then(|| f.get(4).and_then(|s| s.parse().ok()).unwrap_or(-1)),
        }))
    }

    /// The last `lines` lines of a pane (`%id`), as text.
    pub(crate) fn capture(&self, pane: &str, lines: u32) -> Result<String, TmuxError> {
        let start = format!("-{lines}");
        let out = self.run(["capture-pane", "-p", "-t", pane, "-S", &start])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Keeps the session's window when its process exits, so a dead agent
    /// leaves its exit status and last output to be read.
    pub(crate) fn keep_dead_panes(&self, name: &str) -> Result<(), TmuxError> {
        let target = format!("{}:", exact(name));
        self.run(["set-option", "-w", "-t", &target, "remain-on-exit", "on"])
            .map(drop)
    }

    /// Types `text` literally (no key-name lookup), then presses Enter.
    pub(crate) fn send_line(&self, name: &str, text: &str) -> Result<(), TmuxError> {
        let target = format!("{}:", exact(name));
        self.run(["send-keys", "-t", &target, "-l", "--", text])?;
        self.run(["send-keys", "-t", &target, "Enter"]).map(drop)
    }
}

/// Does tmux's `stderr` say the target is not there? "can't find session"
/// (or window, or pane: a session that went between two calls), and "no
/// current target", which a server with no sessions at all answers
/// (`exit-empty off`, or a server in the middle of exiting).
fn names_no_session(stderr: &str) -> bool {
    [
        "can't find session",
        "can't find window",
        "can't find pane",
        "no current target",
    ]
    .iter()
    .any(|words| stderr.contains(words))
}

fn join(args: &[std::ffi::OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An agent's pane: its id and, once its process has exited, the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pane {
    pub(crate) id: String,
    pub(crate) exit: Option<i32>,
}

/// `=name` makes tmux match the session name exactly.
fn exact(name: &str) -> String {
    format!("={name}")
}
