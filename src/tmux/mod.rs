//! A thin, typed wrapper over the `tmux` command line: sessions made,
//! ended and looked at here; many agents' panes viewed at once in
//! [`view`].
//!
//! Arguments are passed as argv, never through a shell, and session names
//! reach here only after [`crate::request::Agent`] validated them. Targets
//! use tmux's `=name` form so `gt-mayor` can never prefix-match
//! `gt-mayor-2`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;

mod view;

use view::{first_panes, AGENT_PANES_FORMAT, AGENT_PANE_OPTION};
pub(crate) use view::{AgentPane, PaneView};

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
    timed_out_in_a_row: AtomicU64::new(0),
};

pub(crate) struct CallCounts {
    pub(crate) calls: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    /// Calls that timed out since the last one tmux answered.
    timed_out_in_a_row: AtomicU64,
}

/// This many calls in a row past `tmux_timeout`, none answered between
/// them, and the server is taken for wedged.
const WEDGED_AFTER: u64 = 3;

/// Why this process's tmux server looks wedged (stopped, swapping,
/// deadlocked): its last calls all timed out. `None` once one is answered.
pub(crate) fn wedged() -> Option<String> {
    let n = CALLS.timed_out_in_a_row.load(Ordering::Relaxed);
    (n >= WEDGED_AFTER).then(|| {
        format!("the tmux server answered none of the last {n} calls within tmux_timeout: it looks wedged (stopped, or starved); requests for agents fail until it answers")
    })
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

    /// One tmux command in a client of its own.
    fn run<I, S>(&self, args: I) -> Result<Output, TmuxError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec(&Chain::new().then(args))
    }

    /// Runs `chain` in one tmux client and returns what its commands
    /// printed, as text. The error is that of the first command that
    /// failed (tmux runs none after it).
    pub(crate) fn chain(&self, chain: &Chain) -> Result<String, TmuxError> {
        let out = self.exec(chain)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every tmux client this process runs goes through here: one deadline
    /// (`tmux_timeout`), one classification of what went wrong, one count.
    fn exec(&self, chain: &Chain) -> Result<Output, TmuxError> {
        let args = &chain.argv;
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
        let output = match crate::process::run_bounded(cmd.args(args), b"", self.timeout) {
            Ok(Some(output)) => output,
            Ok(None) => {
                CALLS.timed_out.fetch_add(1, Ordering::Relaxed);
                CALLS.timed_out_in_a_row.fetch_add(1, Ordering::Relaxed);
                return Err(TmuxError::TimedOut {
                    args: join(args),
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
        CALLS.timed_out_in_a_row.store(0, Ordering::Relaxed);
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
                args: join(args),
                stderr,
            });
        }
        CALLS.failed.fetch_add(1, Ordering::Relaxed);
        Err(TmuxError::Failed {
            args: join(args),
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

    /// Kills the session and, in the same client, asks whether it is
    /// gone: true when tmux says so (or there was nothing to kill), false
    /// when it still lists the session.
    pub(crate) fn kill_session(&self, name: &str) -> Result<bool, TmuxError> {
        let target = exact(name);
        let chain =
            Chain::new()
                .then(["kill-session", "-t", &target])
                .then(["has-session", "-t", &target]);
        match self.exec(&chain) {
            Ok(_) => Ok(false),
            Err(TmuxError::NoServer(_) | TmuxError::NoSession { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Creates the detached session `new` describes, whose pane runs its
    /// command directly, in place of the `old` session of that name:
    /// one that may still be there is killed in the same client (tmux
    /// refuses a second session of one name, so a creation that succeeds
    /// proves the old one gone).
    /// Returns the new pane's id (`%N`), the agent's own pane, which no
    /// other pane of this server will ever have: the target to prime.
    pub(crate) fn new_session(&self, new: &NewSession<'_>, old: Old) -> Result<String, TmuxError> {
        let create = new.chain();
        let kill_then_create = Chain::new()
            .then(["kill-session", "-t", &exact(new.name)])
            .append(&create);
        match old {
            Old::None => self.exec(&create),
            // Its dead pane keeps the session: kill it. If it is gone after
            // all, tmux ran nothing after the kill: create it alone.
            Old::Kept => match self.exec(&kill_then_create) {
                Err(TmuxError::NoServer(_) | TmuxError::NoSession { .. }) => self.exec(&create),
                done => done,
            },
            // Usually ended with its agent; if tmux still has it, kill it.
            Old::Ending => match self.exec(&create) {
                Err(TmuxError::Failed { stderr, .. }) if stderr.contains("duplicate session") => {
                    self.exec(&kill_then_create)
                }
                done => done,
            },
        }
        .map(|out| {
            // tmux prints it; should it not, the session's first window
            // is where the agent's pane is, as it was just made.
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find(|line| line.starts_with('%'))
                .map_or_else(|| format!("{}:", exact(new.name)), str::to_string)
        })
    }

    /// The agent's own pane of session `name`: the first pane of its
    /// first window, the one `new-session` created (panes and windows a
    /// person added later are never taken for the agent); `None`: no such
    /// session. With `typed`, then `text` typed literally (no key-name
    /// lookup) into `pane` (`%id`: the agent's own, never the active pane
    /// of a window a person split), in the same client. Typing into a pane
    /// whose process has exited does nothing, and the look says it has.
    pub(crate) fn look_and_type(
        &self,
        name: &str,
        typed: Option<(&str, &str)>,
    ) -> Result<Option<AgentPane>, TmuxError> {
        let mut chain = Chain::new().then([
            "list-panes",
            "-s",
            "-t",
            &exact(name),
            "-F",
            AGENT_PANES_FORMAT,
        ]);
        if let Some((pane, text)) = typed.filter(|(_, text)| !text.is_empty()) {
            chain = chain.then(["send-keys", "-t", pane, "-l", "--", text]);
        }
        match self.chain(&chain) {
            Ok(text) => Ok(first_panes(&text).into_iter().next()),
            Err(TmuxError::NoServer(_) | TmuxError::NoSession { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The last `lines` lines of a pane (`%id`), as text.
    pub(crate) fn capture(&self, pane: &str, lines: u32) -> Result<String, TmuxError> {
        let start = format!("-{lines}");
        let out = self.run(["capture-pane", "-p", "-t", pane, "-S", &start])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

fn join(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Several tmux commands for one client: `tmux CMD ARGS ; CMD ARGS …`.
/// The server runs them in order, in one pass of its command queue
/// (nothing else it does comes between them), stops at the first that
/// fails, and the client then exits 1 with that command's error (see
/// "COMMAND PARSING AND EXECUTION" in tmux(1)). One client process
/// instead of one per command is what keeps a restart cheap.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chain {
    argv: Vec<OsString>,
}

impl Chain {
    pub(crate) fn new() -> Chain {
        Chain::default()
    }

    /// Appends one command: its name, then its arguments.
    pub(crate) fn then<I, S>(mut self, command: I) -> Chain
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        if !self.argv.is_empty() {
            self.argv.push(";".into());
        }
        self.argv
            .extend(command.into_iter().map(|a| escape_arg(a.as_ref())));
        self
    }

    /// Appends every command of `other`.
    pub(crate) fn append(mut self, other: &Chain) -> Chain {
        if !self.argv.is_empty() && !other.argv.is_empty() {
            self.argv.push(";".into());
        }
        self.argv.extend(other.argv.iter().cloned());
        self
    }
}

/// tmux ends a command at any argument that ends in `;` (and drops that
/// `;`), not only at a lone `;`: an agent's argument `;` (what `find
/// -exec … \;` passes) or a prime text ending in `;` would be cut, and
/// what follows run as a command of its own. So such an argument gets a
/// `\` before its last `;`, which tmux reads as a `;` to keep.
fn escape_arg(arg: &OsStr) -> OsString {
    let bytes = arg.as_bytes();
    match bytes.strip_suffix(b";") {
        Some(head) => {
            let mut escaped = head.to_vec();
            escaped.extend_from_slice(b"\\;");
            OsString::from_vec(escaped)
        }
        None => arg.to_os_string(),
    }
}

/// What may be left of a session of the same name when a new one is
/// created: decides which of its chains tmux is given first (both lead to
/// the same end; the right guess saves a client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Old {
    /// There was none.
    None,
    /// Its agent was ended; its window keeps dead panes, so the session
    /// is still there.
    Kept,
    /// Its agent was ended, and tmux ends the session with it (soon, if
    /// not already).
    Ending,
}

/// A session to create: its name, work directory, environment and the
/// command its pane runs.
#[derive(Debug)]
pub(crate) struct NewSession<'a> {
    pub(crate) name: &'a str,
    pub(crate) dir: &'a Path,
    pub(crate) env: &'a [(&'a str, &'a str)],
    pub(crate) argv: &'a [String],
    /// Keep the window when the agent exits, so a dead agent leaves its
    /// exit status and last output to be read. Set in the same pass of
    /// tmux's command queue as the creation, so even an agent that exits
    /// at once leaves its pane.
    pub(crate) keep_dead: bool,
}

impl NewSession<'_> {
    fn chain(&self) -> Chain {
        let mut args: Vec<OsString> = vec![
            "new-session".into(),
            "-d".into(),
            // Print the new pane's id: the agent's own, to prime.
            "-P".into(),
            "-F".into(),
            "#{pane_id}".into(),
            "-s".into(),
            self.name.into(),
            "-c".into(),
            self.dir.as_os_str().into(),
        ];
        for (key, value) in self.env {
            args.push("-e".into());
            args.push(format!("{key}={value}").into());
        }
        args.push("--".into());
        args.extend(self.argv.iter().map(Into::into));
        let window = format!("{}:", exact(self.name));
        // The session names its agent's pane (the new session's only one,
        // in the same pass of the queue): a pane a person opens later is
        // never taken for the agent, even once the agent's has closed.
        let chain = Chain::new().then(args).then([
            "set-option",
            "-F",
            "-t",
            &window,
            AGENT_PANE_OPTION,
            "#{pane_id}",
        ]);
        if !self.keep_dead {
            return chain;
        }
        chain.then(["set-option", "-w", "-t", &window, "remain-on-exit", "on"])
    }
}

/// How a pane's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this status.
    Status(i32),
    /// A signal killed it (which one, where tmux says).
    Signal(Option<i32>),
    /// Its pane is gone (closed, no status kept) while its session stays,
    /// held by panes a person opened.
    Closed,
}

impl Exit {
    /// From tmux's `pane_dead_status` and `pane_dead_signal` of a dead
    /// pane: a process a signal killed has no status, and tmux before 3.4
    /// names no signal (both expand to nothing).
    pub(crate) fn of(status: &str, signal: &str) -> Exit {
        match status.parse() {
            Ok(status) => Exit::Status(status),
            Err(_) => Exit::Signal(signal.parse().ok()),
        }
    }

    /// Exited with status 0.
    pub(crate) fn clean(self) -> bool {
        self == Exit::Status(0)
    }
}

impl std::fmt::Display for Exit {
    /// Follows "the agent": "exited with status 1", "was killed by signal 9".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Status(status) => write!(f, "exited with status {status}"),
            Exit::Signal(Some(signal)) => write!(f, "was killed by signal {signal}"),
            Exit::Signal(None) => f.write_str("was killed by a signal"),
            Exit::Closed => f.write_str("is gone: its pane was closed"),
        }
    }
}

/// `=name` makes tmux match the session name exactly.
fn exact(name: &str) -> String {
    format!("={name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(chain: &Chain) -> Vec<&str> {
        chain.argv.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn commands_are_chained_with_a_lone_semicolon_and_arguments_ending_in_one_escaped() {
        let chain = Chain::new()
            .then(["kill-session", "-t", "=gt-mayor"])
            .append(&Chain::new().then(["new-session", "--", "find", "-exec", "rm", "{}", ";"]))
            .then(["send-keys", "-l", "--", "a\\;", "b;c"]);
        assert_eq!(
            argv(&chain),
            [
                "kill-session",
                "-t",
                "=gt-mayor",
                ";",
                "new-session",
                "--",
                "find",
                "-exec",
                "rm",
                "{}",
                "\\;",
                ";",
                "send-keys",
                "-l",
                "--",
                "a\\\\;",
                "b;c"
            ]
        );
        assert!(Chain::new().append(&Chain::new()).argv.is_empty());
    }
}
