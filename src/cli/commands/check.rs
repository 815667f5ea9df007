//! `gt daemon check`: would the daemon run as configured? Validates
//! without starting anything: config.json, the log filter, the
//! directories, tmux and its server, the agent commands, the service unit.
//!
//! `start` and `restart` run the same checks first: a problem that keeps
//! the daemon from running at all refuses the start (before an old daemon
//! is stopped, for `restart`); one that would only fail requests (a missing
//! agent command, no tmux) is printed as a warning, because a daemon that
//! runs still files every request with its reason and serves `shutdown`.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use rustix::fs::Access;

use crate::cli::table::{width, Styled, Table};
use crate::config::{Config, ROLES};
use crate::daemon::logging::{self, LogOptions};
use crate::instance;
use crate::service::{self, Flavour};
use crate::text::escape_os;
use crate::tmux::{Tmux, TmuxError};
use crate::town::Town;

/// Check that the daemon would run as configured, without starting it.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks config.json (JSON syntax, keys, values and their bounds), the log
filter (--log-level or RUST_LOG), that the daemon's directories are
writable, that tmux is installed and its server (tmux_socket) answers,
that the agent commands are on PATH, and the service unit, if any.
Prints one line per check. Exits 0 when the daemon would run as
configured, 1 with the list of problems (and hints) otherwise. Notes (no
service unit, no tmux server yet) are not problems.

`gt daemon start` and `restart` run the same checks first.

Examples:
  gt daemon check
  gt daemon check --dry-run     tmux and the agent command are not needed")]
pub struct Args {
    /// Check for a dry run: tmux and the agent commands are not needed.
    #[arg(long)]
    pub dry_run: bool,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    /// Worth knowing, not wrong.
    Note,
    /// Requests would fail (an agent cannot be started, tmux is missing).
    Problem,
    /// The daemon could not run at all.
    Fatal,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    /// What was checked: "config.json", "tmux", ...
    pub subject: String,
    pub text: String,
    pub hint: Option<String>,
}

impl Finding {
    fn new(severity: Severity, subject: &str, text: impl Into<String>) -> Self {
        Finding {
            severity,
            subject: subject.to_string(),
            text: text.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An error whose message carries its own "\nhint: …" line.
    fn from_error(severity: Severity, subject: &str, message: &str) -> Self {
        match message.split_once("\nhint: ") {
            Some((text, hint)) => Finding::new(severity, subject, text).hint(hint),
            None => Finding::new(severity, subject, message),
        }
    }

    fn is_problem(&self) -> bool {
        self.severity >= Severity::Problem
    }
}

/// What to check.
pub struct Scope<'a> {
    pub dry_run: bool,
    pub log: &'a LogOptions,
    /// Also look at the service unit and at a running daemon (`check`
    /// itself; `start` has its own ways of saying those).
    pub service: bool,
}

/// Every check, in the order they are printed.
pub fn findings(town: &Town, scope: &Scope) -> Vec<Finding> {
    let mut found = Vec::new();
    let config = check_config(town, &mut found);
    check_log_filter(scope.log, &mut found);
    check_dirs(town, &mut found);
    let dry_run = scope.dry_run || config.as_ref().is_some_and(|c| c.dry_run);
    if let Some(config) = &config {
        check_tmux(config, dry_run, &mut found);
        check_agents(town, config, dry_run, &mut found);
    }
    if scope.service {
        check_daemon(town, &mut found);
        check_unit(town, &mut found);
    }
    found
}

fn check_config(town: &Town, found: &mut Vec<Finding>) -> Option<Config> {
    const S: &str = "config.json";
    let path = town.config_file();
    match Config::load_with_source(&path) {
        Ok((config, source)) => {
            let keys = source.as_object().map_or(0, |o| o.len());
            let text = if !path.exists() {
                "absent: every setting is its default".to_string()
            } else if keys == 0 {
                "valid, no keys set: every setting is its default".to_string()
            } else {
                format!("valid ({keys} key{} set)", if keys == 1 { "" } else { "s" })
            };
            found.push(Finding::new(Severity::Ok, S, text));
            Some(config)
        }
        Err(e) => {
            found.push(Finding::from_error(Severity::Fatal, S, &e.to_string()));
            None
        }
    }
}

fn check_log_filter(log: &LogOptions, found: &mut Vec<Finding>) {
    const S: &str = "log filter";
    match logging::filter(log) {
        Ok(filter) => found.push(Finding::new(Severity::Ok, S, filter.to_string())),
        Err(e) => found.push(Finding::from_error(Severity::Fatal, S, &e.to_string())),
    }
}

/// The daemon needs to create and rename files in each of its directories;
/// a missing one is created by `start` when its parent allows it.
fn check_dirs(town: &Town, found: &mut Vec<Finding>) {
    const S: &str = "directories";
    let dirs: [PathBuf; 5] = [
        town.daemon_dir().to_path_buf(),
        town.inbox(),
        town.processing(),
        town.processed(),
        town.failed(),
    ];
    let mut bad = Vec::new();
    for dir in &dirs {
        if let Some(why) = not_writable(dir) {
            bad.push(why);
        }
    }
    // The files it rewrites or appends to, when they exist.
    for file in [town.log_file(), town.state_file()] {
        if std::fs::symlink_metadata(&file).is_ok() {
            if let Err(e) = rustix::fs::access(&file, Access::WRITE_OK) {
                bad.push(format!(
                    "{} is not writable ({})",
                    file.display(),
                    std::io::Error::from(e)
                ));
            }
        }
    }
    if bad.is_empty() {
        found.push(Finding::new(
            Severity::Ok,
            S,
            format!(
                "{} and its inbox, processing, processed and failed are writable",
                town.daemon_dir().display()
            ),
        ));
    }
    for why in bad {
        found.push(
            Finding::new(Severity::Fatal, S, why).hint(
                "the daemon runs as the user who starts it; fix the owner or the permissions",
            ),
        );
    }
}

/// Why the daemon could not create files in `dir` (or create `dir`).
fn not_writable(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Some(format!("{} is not a directory", dir.display())),
        Ok(_) => rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK)
            .err()
            .map(|e| {
                format!(
                    "{} is not writable ({})",
                    dir.display(),
                    std::io::Error::from(e)
                )
            }),
        Err(_) => {
            let parent = dir.parent()?;
            not_writable(parent).map(|why| format!("cannot create {}: {why}", dir.display()))
        }
    }
}

fn check_tmux(config: &Config, dry_run: bool, found: &mut Vec<Finding>) {
    const S: &str = "tmux";
    let missing = if dry_run {
        Severity::Note
    } else {
        Severity::Problem
    };
    match which::which("tmux") {
        Ok(path) => found.push(Finding::new(
            Severity::Ok,
            S,
            format!("installed ({})", path.display()),
        )),
        Err(_) => {
            let text = if dry_run {
                "not found on PATH (a dry run does not need it)"
            } else {
                "not found on PATH: no agent can be started, restarted or poked"
            };
            found.push(
                Finding::new(missing, S, text).hint("install tmux (e.g. apt-get install tmux)"),
            );
            return;
        }
    }
    if dry_run {
        return;
    }
    const SERVER: &str = "tmux server";
    let name = match &config.tmux_socket {
        Some(socket) => format!("on socket {socket:?} (tmux -L {socket})"),
        None => "on the default socket".to_string(),
    };
    let flag = config
        .tmux_socket
        .as_ref()
        .map(|s| format!(" -L {s}"))
        .unwrap_or_default();
    let tmux = Tmux::new(config.tmux_socket.clone(), config.tmux_timeout);
    match tmux.list_sessions() {
        Ok(sessions) => {
            let agents = sessions.iter().filter(|s| s.starts_with("gt-")).count();
            found.push(Finding::new(
                Severity::Ok,
                SERVER,
                format!(
                    "{name} answers: {} session{}, {agents} of them agents (gt-*)",
                    sessions.len(),
                    if sessions.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        Err(TmuxError::NoServer(_)) => found.push(Finding::new(
            Severity::Note,
            SERVER,
            format!("none running {name} yet; the first agent the daemon starts starts it"),
        )),
        Err(e @ TmuxError::TimedOut { .. }) => found.push(
            Finding::new(Severity::Problem, SERVER, format!("{name}: {e}")).hint(format!(
                "a wedged server blocks every request: look at `tmux{flag} list-sessions`, \
                 and `tmux{flag} kill-server` as a last resort (it ends every agent)"
            )),
        ),
        Err(e) => found.push(
            Finding::new(Severity::Problem, SERVER, format!("{name}: {e}")).hint(format!(
                "the daemon talks to the server as `tmux{flag}` run by its own user"
            )),
        ),
    }
}

/// Every agent command in the config, found the way the executor finds it
/// (on PATH, relative to the town, where the daemon runs).
fn check_agents(town: &Town, config: &Config, dry_run: bool, found: &mut Vec<Finding>) {
    if config.stall_action == crate::config::StallAction::Restart && config.supervise.is_empty() {
        found.push(Finding::new(
            Severity::Note,
            "stall_action",
            "\"restart\" restarts supervised agents only, and supervise names none: \
             a stalled agent is only reported"
                .to_string(),
        ));
    }
    const S: &str = "agent command";
    let path = std::env::var_os("PATH");
    let mut seen: Vec<&str> = Vec::new();
    let commands = std::iter::once(("every role", &config.agent_command)).chain(
        ROLES
            .iter()
            .filter_map(|role| Some((*role, config.agent_commands.get(*role)?))),
    );
    for (role, command) in commands {
        let program = command.0[0].as_str();
        if seen.contains(&program) {
            continue;
        }
        seen.push(program);
        let who = if role == "every role" {
            "agent_command".to_string()
        } else {
            format!("agent_commands.{role}")
        };
        match which::which_in(program, path.as_ref(), town.root()) {
            Ok(at) => found.push(Finding::new(
                Severity::Ok,
                S,
                format!("{who}: {program:?} is {}", at.display()),
            )),
            Err(_) if dry_run => found.push(Finding::new(
                Severity::Note,
                S,
                format!("{who}: {program:?} is not on PATH (a dry run does not need it)"),
            )),
            Err(_) => found.push(
                Finding::new(
                    Severity::Problem,
                    S,
                    format!(
                        "{who}: {program:?} is not on PATH: every cycle and restart would fail"
                    ),
                )
                .hint(
                    "install it, or set agent_command in daemon/config.json; a service unit \
                     runs the daemon with the PATH that `gt daemon install` saw",
                ),
            ),
        }
    }
}

fn check_daemon(town: &Town, found: &mut Vec<Finding>) {
    const S: &str = "daemon";
    let text = match instance::probe(town) {
        None => "not running".to_string(),
        Some(Some(pid)) => format!("running (PID {pid})"),
        Some(None) => "the lock is held, by a process that could not be identified".to_string(),
    };
    found.push(Finding::new(Severity::Note, S, text));
}

fn check_unit(town: &Town, found: &mut Vec<Finding>) {
    const S: &str = "service unit";
    let Some(unit) = service::find_installed(town) else {
        found.push(Finding::new(
            Severity::Note,
            S,
            "none installed (fine without a service manager; `gt daemon install` writes one)",
        ));
        return;
    };
    let active = unit.is_active();
    found.push(Finding::new(
        if active { Severity::Ok } else { Severity::Note },
        S,
        format!(
            "{} ({}), {}",
            unit.name,
            unit.path.display(),
            if active { "active" } else { "not active" }
        ),
    ));
    if unit.flavour != Flavour::Systemd {
        return;
    }
    let Some(text) = service::read_unit(&unit.path).and_then(|b| String::from_utf8(b).ok()) else {
        return;
    };
    if let Some(program) = exec_program(&text) {
        if !Path::new(&program).is_file() {
            found.push(
                Finding::new(
                    Severity::Problem,
                    S,
                    format!("its ExecStart= runs {program}, which does not exist"),
                )
                .hint("reinstall it with this gt: gt daemon install (same flags as before)"),
            );
        }
    }
    let missing: Vec<&str> = ["ExecReload=", "WatchdogSec=", "RestartPreventExitStatus="]
        .into_iter()
        .filter(|key| !text.lines().any(|l| l.trim_start().starts_with(key)))
        .collect();
    if !missing.is_empty() {
        found.push(
            Finding::new(
                Severity::Note,
                S,
                format!(
                    "written by an older gt: it lacks {}",
                    missing.join(", ").replace('=', "")
                ),
            )
            .hint("reinstall it: gt daemon install (same flags as before), then systemctl daemon-reload"),
        );
    }
}

/// The program of a unit's `ExecStart=`, its quoting undone.
fn exec_program(unit: &str) -> Option<String> {
    let line = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))?;
    let line = line.trim_start_matches(['-', '@', '+', '!', ':']);
    let word = match line.strip_prefix('"') {
        Some(rest) => {
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => break,
                    c => out.push(c),
                }
            }
            out
        }
        None => line.split_whitespace().next()?.to_string(),
    };
    Some(word.replace("%%", "%"))
}

pub fn run(town: &Town, args: Args, log: &LogOptions) -> color_eyre::Result<ExitCode> {
    let found = findings(
        town,
        &Scope {
            dry_run: args.dry_run,
            log,
            service: true,
        },
    );
    let mut out = anstream::stdout().lock();
    writeln!(
        out,
        "Checking the town at {}",
        escape_os(town.root().as_os_str())
    )?;
    // Severity, what was checked, what was found; a hint on a line of its
    // own under what was found.
    let rows: Vec<[&str; 3]> = found
        .iter()
        .map(|f| [label(f.severity).1, f.subject.as_str(), f.text.as_str()])
        .collect();
    let table = Table::new(&["", "", ""])
        .indent(2)
        .at_least(0, width("PROBLEM"))
        .fitting(&rows);
    for f in &found {
        let (style, label) = label(f.severity);
        let cells = [
            Styled(label, style),
            f.subject.as_str().into(),
            f.text.as_str().into(),
        ];
        writeln!(out, "{}", table.styled_line(&cells))?;
        if let Some(hint) = &f.hint {
            writeln!(out, "{}", table.line(&["", "", &format!("hint: {hint}")]))?;
        }
    }
    let problems = found.iter().filter(|f| f.is_problem()).count();
    if problems == 0 {
        writeln!(out, "No problems: the daemon would run as configured.")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{problems} problem{}: the daemon would not run as configured.",
        if problems == 1 { "" } else { "s" }
    )?;
    Ok(ExitCode::FAILURE)
}

fn label(severity: Severity) -> (Style, &'static str) {
    let colour = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
    match severity {
        Severity::Ok => (colour(AnsiColor::Green), "ok"),
        Severity::Note => (colour(AnsiColor::Cyan), "note"),
        Severity::Problem | Severity::Fatal => (colour(AnsiColor::Red).bold(), "PROBLEM"),
    }
}

/// The checks `start` and `restart` run first. Problems that keep the
/// daemon from running are returned (the caller refuses to go on); the
/// others are printed as warnings on stderr.
pub fn preflight(town: &Town, dry_run: bool, log: &LogOptions) -> Vec<Finding> {
    let found = findings(
        town,
        &Scope {
            dry_run,
            log,
            service: false,
        },
    );
    let mut fatal = Vec::new();
    for f in found {
        match f.severity {
            Severity::Fatal => fatal.push(f),
            Severity::Problem => {
                eprintln!("warning: {}: {}", f.subject, f.text);
                if let Some(hint) = &f.hint {
                    eprintln!("  hint: {hint}");
                }
            }
            Severity::Ok | Severity::Note => {}
        }
    }
    fatal
}

/// Prints what [`preflight`] refused, for a person.
pub fn print_refusal(fatal: &[Finding], what: &str) {
    eprintln!("error: {what}: the daemon would not run as configured:");
    for f in fatal {
        eprintln!("  {}: {}", f.subject, f.text);
        if let Some(hint) = &f.hint {
            eprintln!("    hint: {hint}");
        }
    }
    eprintln!("(`gt daemon check` lists every check)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_program_undoes_quoting() {
        assert_eq!(
            exec_program("[Service]\nExecStart=/usr/bin/gt --town /x daemon run\n").as_deref(),
            Some("/usr/bin/gt")
        );
        assert_eq!(
            exec_program("ExecStart=\"/my bin/100%%/g\\\"t\" --town x\n").as_deref(),
            Some("/my bin/100%/g\"t")
        );
        assert_eq!(exec_program("[Service]\n"), None);
    }
}
