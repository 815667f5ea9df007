//! The systemd unit: `Type=notify`, the town's PATH, and quoting that
//! survives systemd's own unescaping (checked with `systemd-analyze verify`).

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{canonical, plain, scope_mark, Scope, ServiceError, NOFILE};
use crate::config::EXIT_CONFIG;
use crate::town::{Town, TOWN_ENV};

pub(crate) fn wanted_by(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "default.target",
        Scope::System => "multi-user.target",
    }
}

pub(crate) fn systemctl(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "systemctl --user",
        Scope::System => "systemctl",
    }
}

/// One ExecStart= word: bare when harmless, else double-quoted with C
/// escapes. `%` (specifiers) is doubled everywhere; `$` (variable
/// expansion) in the arguments only, as systemd takes the program path
/// without expanding variables (checked with `systemd-analyze verify`).
fn exec_word(word: &str, program: bool) -> String {
    // Only the first word could be read as a prefix (`-`, `@`, `+`, `!`, `:`),
    // and it is an absolute path.
    let bare = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.,:+=@-".contains(c));
    if bare {
        return word.to_string();
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if !program => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `Environment=` assignment, quoted: specifiers doubled, quotes and
/// backslashes escaped (systemd does not expand `$` here).
fn env_assignment(key: &str, value: &str) -> String {
    let mut out = format!("\"{key}=");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Values that are taken literally apart from `%` specifiers
/// (`WorkingDirectory=`, `Description=`).
fn specifier_escape(value: &str) -> String {
    value.replace('%', "%%")
}

/// The systemd unit text for `town`, running `exe`.
pub(crate) fn unit(town: &Town, exe: &Path, scope: Scope) -> Result<String, ServiceError> {
    let town = &canonical(town);
    const F: &str = "systemd unit";
    let root = plain("town path", town.root(), F)?;
    let exe = plain("gt binary path", exe, F)?;
    let exec: Vec<String> = [exe, "--town", root, "daemon", "run"]
        .into_iter()
        .enumerate()
        .map(|(i, word)| exec_word(word, i == 0))
        .collect();
    let scope_flag = if scope == Scope::User { " --user" } else { "" };

    let mut u = String::new();
    let _ = writeln!(
        u,
        "# Written by `gt daemon install --systemd{scope_flag}` ({}).",
        scope_mark(scope)
    );
    let _ = writeln!(
        u,
        "# Remove it with `gt daemon uninstall --systemd{scope_flag}`."
    );
    u.push_str("[Unit]\n");
    let _ = writeln!(
        u,
        "Description=Gas Town daemon for {}",
        specifier_escape(root)
    );
    if scope == Scope::System {
        u.push_str("After=network.target\n");
    }
    u.push_str("\n[Service]\n");
    u.push_str("# `gt daemon run` reports READY=1 once it holds the town lock, and what\n");
    u.push_str("# it does in STATUS= (systemctl status shows it).\n");
    u.push_str("Type=notify\n");
    let _ = writeln!(u, "ExecStart={}", exec.join(" "));
    u.push_str("# SIGHUP reloads daemon/config.json; an invalid one is refused (see the\n");
    u.push_str("# journal) and the running config stays.\n");
    u.push_str("ExecReload=/bin/kill -HUP $MAINPID\n");
    let _ = writeln!(u, "WorkingDirectory={}", specifier_escape(root));
    let _ = writeln!(u, "Environment={}", env_assignment(TOWN_ENV, root));
    if let Some(path) = std::env::var_os("PATH").and_then(|p| p.into_string().ok()) {
        if !path.is_empty() && !path.chars().any(char::is_control) {
            u.push_str("# PATH when `gt daemon install` ran, so the daemon finds tmux and the\n");
            u.push_str("# agent command as you do; edit it if that changes.\n");
            let _ = writeln!(u, "Environment={}", env_assignment("PATH", &path));
        }
    }
    if scope == Scope::System {
        // A system daemon runs as the town's owner, so the agents' tmux
        // sessions are that user's (a root-owned town stays root).
        if let Ok(meta) = std::fs::metadata(town.root()) {
            if meta.uid() != 0 {
                u.push_str("# The owner of the town directory.\n");
                let _ = writeln!(u, "User={}", meta.uid());
                let _ = writeln!(u, "Group={}", meta.gid());
            }
        }
    }
    u.push_str("Restart=on-failure\n");
    u.push_str("RestartSec=5s\n");
    let _ = writeln!(
        u,
        "# Exit status {EXIT_CONFIG} (EX_CONFIG): the daemon refuses its configuration.\n\
         # Restarting cannot fix that: fix config.json (gt daemon check), then\n\
         # systemctl{scope_flag} restart {}.",
        super::unit_name(town)
    );
    let _ = writeln!(u, "RestartPreventExitStatus={EXIT_CONFIG}");
    u.push_str(
        "# The heartbeat thread says it is alive at least every second, and\n\
         # between the tmux calls of a beat (each bounded by tmux_timeout, at\n\
         # most 1m): a daemon silent for this long is hung, and is restarted.\n",
    );
    u.push_str("WatchdogSec=5min\n");
    u.push_str(
        "# The agents live in tmux sessions, not in the daemon. If the daemon\n\
         # happened to start the tmux server, that server (and every agent in it)\n\
         # sits in this unit's cgroup: control-group or mixed would kill them all\n\
         # on stop/restart. `process` signals only the daemon, which stops cleanly\n\
         # on SIGTERM; the agents outlive a daemon restart, as they should.\n",
    );
    u.push_str("KillMode=process\n");
    u.push_str("TimeoutStopSec=30\n");
    let _ = writeln!(
        u,
        "# Descriptors: the 1024 a service gets by default leave little room for\n\
         # requests, tmux calls, the ledger and the metrics endpoint's clients\n\
         # (it never holds more than a quarter of the limit).\n\
         LimitNOFILE={NOFILE}"
    );
    u.push_str("\n[Install]\n");
    let _ = writeln!(u, "WantedBy={}", wanted_by(scope));
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words() {
        assert_eq!(exec_word("/usr/bin/gt", true), "/usr/bin/gt");
        assert_eq!(exec_word("--town", false), "--town");
        assert_eq!(exec_word("/a b/c", false), "\"/a b/c\"");
        assert_eq!(exec_word("/a\"b\\c", false), "\"/a\\\"b\\\\c\"");
        assert_eq!(exec_word("/x/100%/$HOME", false), "\"/x/100%%/$$HOME\"");
        assert_eq!(exec_word("/x/100%/$HOME", true), "\"/x/100%%/$HOME\"");
        assert_eq!(exec_word("", false), "\"\"");
    }
}
