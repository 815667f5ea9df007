//! `gt man`: the manual pages, generated from the clap definitions (so they
//! never drift from the real command line), plus what only a page can
//! hold: the configuration keys with their defaults and bounds, the files,
//! the environment and the exit codes. Installed users have no README.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use color_eyre::eyre::{bail, WrapErr};

use crate::cli::Cli;

pub const AFTER_HELP: &str = "\
Examples:
  gt man | man -l -                       read gt(1)
  gt man daemon start                     the page of one command
  gt man --dir ~/.local/share/man/man1    install every page (then: man gt-daemon-status)";

/// Print a manual page, or write them all.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The command whose page to print, as typed after `gt` (e.g. `daemon
    /// start`); default gt(1).
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Write every page into DIR (gt.1, gt-daemon.1, gt-daemon-start.1, ...)
    /// and print their paths.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath, conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> color_eyre::Result<ExitCode> {
    let pages = pages().wrap_err("cannot render the manual pages")?;
    if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)
            .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
        let mut out = std::io::stdout().lock();
        for (name, page) in &pages {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, page)
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "{}", path.display())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wanted = std::iter::once("gt")
        .chain(args.command.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-");
    let Some((_, page)) = pages.iter().find(|(name, _)| *name == wanted) else {
        bail!(
            "no manual page {wanted}(1); pages: {}",
            pages
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    super::completions::emit(page)
}

/// Every page, named without its section: `gt`, `gt-daemon`,
/// `gt-daemon-start`, ...
pub fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages)?;
    Ok(pages)
}

fn collect(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    pages.push((name.clone(), page(cmd, &name)?));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, pages)?;
    }
    Ok(())
}

/// One page: clap_mangen's sections, the help's notes and examples, and
/// for gt(1) the reference sections.
fn page(cmd: &clap::Command, name: &str) -> std::io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::default();
    if let Some(notes) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        roff.control("SH", ["NOTES"]);
        verbatim(&mut roff, &notes.to_string());
    }
    if name == "gt" {
        configuration(&mut roff);
        files(&mut roff);
        environment(&mut roff);
    }
    exit_status(&mut roff, name);
    roff.control("SH", ["SEE ALSO"]);
    if name == "gt" {
        let mut pages = Vec::new();
        see_also(cmd, &mut pages);
        roff.text([roman(pages.join(", "))]);
    } else {
        roff.text([roman("gt(1)")]);
    }
    roff.to_writer(&mut out)?;
    Ok(out)
}

fn see_also(cmd: &clap::Command, pages: &mut Vec<String>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_display_name().unwrap_or_else(|| sub.get_name());
        pages.push(format!("{name}(1)"));
        see_also(sub, pages);
    }
}

/// Lines kept as they are (help text is laid out by hand).
fn verbatim(roff: &mut Roff, text: &str) {
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
}

/// A `.TP` entry: a bold term, then its description.
fn entry(roff: &mut Roff, term: &str, description: &str) {
    roff.control("TP", []);
    roff.text([bold(term)]);
    roff.text([roman(description)]);
}

/// A configuration key: its name, its default as written in config.json,
/// its bounds when it has any, and what it does.
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub bounds: Option<&'static str>,
    pub meaning: &'static str,
}

/// The keys of `daemon/config.json`; a unit test holds this table to the
/// real parser and its defaults.
pub const KEYS: &[Key] = &[
    Key {
        name: "heartbeat_interval",
        default: r#""60s""#,
        bounds: Some("1s to 24h"),
        meaning: "how often to poke the Mayor and the Witnesses and rewrite state.json",
    },
    Key {
        name: "mayor_poke_text",
        default: r#""HEARTBEAT: check your rigs""#,
        bounds: None,
        meaning: "the text typed (then Enter) into gt-mayor at each heartbeat; empty: the Mayor is not poked",
    },
    Key {
        name: "witness_poke_text",
        default: r#""HEARTBEAT: check your workers""#,
        bounds: None,
        meaning: "the text typed (then Enter) into every gt-<rig>-witness at each heartbeat; empty: Witnesses are not poked",
    },
    Key {
        name: "max_request_age",
        default: r#""6h""#,
        bounds: Some("at least 1s"),
        meaning: "older requests fail as stale",
    },
    Key {
        name: "rescan_interval",
        default: r#""30s""#,
        bounds: Some("1s to 24h"),
        meaning: "a full inbox scan, the safety net under notify",
    },
    Key {
        name: "prime_delay",
        default: r#""2s""#,
        bounds: Some("at most 10m"),
        meaning: "wait after creating a session before typing the prime text",
    },
    Key {
        name: "kill_grace",
        default: r#""2s""#,
        bounds: Some("at most 10m"),
        meaning: "SIGTERM to SIGKILL grace when ending a session",
    },
    Key {
        name: "restart_window",
        default: r#""15m""#,
        bounds: Some("at least 1s"),
        meaning: "the crash-loop guard's window",
    },
    Key {
        name: "max_restarts",
        default: "5",
        bounds: Some("0 or more"),
        meaning: "cycle/restart of one session allowed within restart_window",
    },
    Key {
        name: "agent_command",
        default: r#""claude --dangerously-skip-permissions""#,
        bounds: Some("not empty"),
        meaning: "the agent program: a string split as a shell would (no shell runs it), or an argv array",
    },
    Key {
        name: "agent_commands",
        default: "{}",
        bounds: Some("roles: mayor, deacon, witness, refinery"),
        meaning: "per-role agent commands, as agent_command",
    },
    Key {
        name: "prime_text",
        default: r#""gt prime""#,
        bounds: None,
        meaning: "typed into a new session after prime_delay (empty: nothing)",
    },
    Key {
        name: "tmux_socket",
        default: "null",
        bounds: Some("a plain name, no /"),
        meaning: "a private tmux server (tmux -L NAME)",
    },
    Key {
        name: "watch_mode",
        default: r#""notify""#,
        bounds: Some("notify or poll"),
        meaning: "how the inbox is watched; the daemon polls by itself when notify cannot be set up",
    },
    Key {
        name: "poll_interval",
        default: r#""1s""#,
        bounds: Some("100ms to 1h"),
        meaning: "the scan interval when polling",
    },
    Key {
        name: "dry_run",
        default: "false",
        bounds: None,
        meaning: "as --dry-run: validate and file requests, never touch tmux",
    },
    Key {
        name: "log_max_bytes",
        default: "10485760",
        bounds: Some("at least 1024"),
        meaning: "daemon.log is rotated past this size",
    },
    Key {
        name: "log_keep",
        default: "5",
        bounds: None,
        meaning: "rotated logs kept (daemon.log.1 ...)",
    },
    Key {
        name: "keep_processed",
        default: r#""7d""#,
        bounds: Some("at least 1m"),
        meaning: "processed requests (with their sidecars) older than this are pruned",
    },
    Key {
        name: "keep_failed",
        default: r#""30d""#,
        bounds: Some("at least 1m"),
        meaning: "failed requests older than this are pruned",
    },
    Key {
        name: "max_parallel",
        default: "32",
        bounds: Some("1 to 256"),
        meaning: "requests for different agents executed at once; one agent's requests always run one at a time, in order",
    },
    Key {
        name: "tmux_timeout",
        default: r#""10s""#,
        bounds: Some("100ms to 1m"),
        meaning: "the longest one tmux command may take",
    },
    Key {
        name: "write_timeout",
        default: r#""60s""#,
        bounds: Some("100ms to 24h"),
        meaning: "how long a file created directly in the inbox may take to be written",
    },
    Key {
        name: "supervise",
        default: "[]",
        bounds: Some("agent names as in a request's from, or \"auto\""),
        meaning: "agents to keep alive (\"auto\": every agent whose work directory exists); empty: nothing is restarted unless requested",
    },
    Key {
        name: "supervise_interval",
        default: r#""10s""#,
        bounds: Some("at least 100ms"),
        meaning: "how often supervised agents are looked at",
    },
    Key {
        name: "supervise_backoff",
        default: r#""30s""#,
        bounds: None,
        meaning: "the wait before restarting an agent that died again, doubling with each death",
    },
    Key {
        name: "supervise_backoff_max",
        default: r#""10m""#,
        bounds: None,
        meaning: "the longest that wait grows",
    },
    Key {
        name: "quarantine",
        default: r#""1h""#,
        bounds: None,
        meaning: "how long an agent that died max_restarts times within restart_window is left alone",
    },
    Key {
        name: "stable_after",
        default: r#""10m""#,
        bounds: None,
        meaning: "a run this long counts as stable: its death starts the count afresh",
    },
    Key {
        name: "not_a_crash",
        default: r#"["usage limit"]"#,
        bounds: None,
        meaning: "text in a dead pane that marks an exit as not a crash: it does not count toward quarantine",
    },
    Key {
        name: "mass_death",
        default: "3",
        bounds: Some("at least 2"),
        meaning: "this many supervised agents dying within mass_death_window pause supervision",
    },
    Key {
        name: "mass_death_window",
        default: r#""30s""#,
        bounds: None,
        meaning: "the window of mass_death",
    },
    Key {
        name: "mass_death_pause",
        default: r#""10m""#,
        bounds: None,
        meaning: "how long such a pause lasts, unless gt daemon supervise resume",
    },
    Key {
        name: "metrics_listen",
        default: "null",
        bounds: Some("IP:PORT on loopback, or an absolute unix socket path"),
        meaning: "serve /metrics (Prometheus), /healthz and /readyz there; null: off",
    },
    Key {
        name: "metrics_allow_remote",
        default: "false",
        bounds: None,
        meaning: "allow a metrics_listen address that is not loopback (the endpoints have no authentication)",
    },
    Key {
        name: "notify_command",
        default: "null",
        bounds: None,
        meaning: "run on events a person must act on (agent_quarantined, supervision_paused, filing_failing, degraded), the event as JSON on stdin",
    },
    Key {
        name: "notify_timeout",
        default: r#""10s""#,
        bounds: Some("100ms to 10m"),
        meaning: "then notify_command's process group is killed",
    },
    Key {
        name: "notify_window",
        default: r#""1h""#,
        bounds: None,
        meaning: "the same event is sent at most once within it",
    },
];

fn configuration(roff: &mut Roff) {
    roff.control("SH", ["CONFIGURATION"]);
    roff.text([roman(
        "<town>/daemon/config.json holds one JSON object; every key is optional. Durations are \
         strings such as \"500ms\", \"60s\", \"15m\", \"6h\", \"7d\" (a bare number means \
         seconds). An unknown key or a bad value stops the daemon from starting, with a \
         message naming the key. Each key, its default, its bounds:",
    )]);
    for key in KEYS {
        let bounds = key.bounds.map(|b| format!("; {b}")).unwrap_or_default();
        roff.control("TP", []);
        roff.text([
            bold(key.name),
            roman(format!(" (default {}{bounds})", key.default)),
        ]);
        roff.text([roman(key.meaning)]);
    }
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    roff.text([roman(
        "A town is a directory. It is found as --town DIR, else $GT_TOWN_ROOT (either may \
         name a new town), else the nearest ancestor of the working directory that holds \
         mayor/town.json or a daemon/ with the daemon's own files (daemon.lock, state.json); \
         a plain daemon/ directory, such as a source package, is not a town. Gas Town's own \
         installer writes mayor/town.json ({\"type\": \"town\", \"version\": 2, \"name\": ..., \
         \"created_at\": ...}); the daemon only checks that it exists.",
    )]);
    for (path, what) in [
        ("<town>/mayor/town.json", "marks the directory as a town"),
        ("<town>/daemon/inbox/", "pending requests *.json, written by agents; names starting with . are writes in progress"),
        ("<town>/daemon/processing/", "the requests being executed (claimed by rename)"),
        ("<town>/daemon/processed/, failed/", "outcomes: each request's original bytes beside NAME.result.json"),
        ("<town>/daemon/state.json", "the daemon's state, replaced atomically"),
        ("<town>/daemon/daemon.pid, daemon.lock", "the PID; the lock held for the daemon's whole life"),
        ("<town>/daemon/daemon.log, daemon.log.1 ...", "the log, rotated by size"),
        ("<town>/daemon/config.json", "settings (CONFIGURATION)"),
        ("<town>/daemon/restart_state.json", "the crash-loop guard's memory (restart_state.dry-run.json for a dry run)"),
        ("<town>/daemon/supervise.json", "supervision's memory: each agent's state and recent decisions (gt daemon explain)"),
        ("<town>/daemon/shutdown.lock", "written by gt down: no pokes, cycle and restart refused"),
    ] {
        entry(roff, path, what);
    }
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, what) in [
        ("GT_TOWN_ROOT", "the town, when --town is not given"),
        (
            "RUST_LOG",
            "the daemon's log filter, when --log-level is not given",
        ),
        ("NO_COLOR", "set and not empty: no colour"),
        (
            "CLICOLOR_FORCE",
            "set to 1: colour even when not writing to a terminal",
        ),
        ("TZ", "the time zone of --local times"),
        (
            "GT_INSTALL_DIR",
            "where daemon install and uninstall write and look (tests, packaging)",
        ),
        (
            "GT_TESTING",
            "test hooks, for the test suite only; never set it in production",
        ),
    ] {
        entry(roff, name, what);
    }
}

fn exit_status(roff: &mut Roff, name: &str) {
    roff.control("SH", ["EXIT STATUS"]);
    let mut codes = vec![
        ("0", "success"),
        ("1", "failure (the message says why)"),
        ("2", "usage error"),
    ];
    match name {
        "gt" | "gt-daemon" => codes.extend([
            ("3", "daemon status: not running (stopped or crashed)"),
            ("4", "daemon status: running but degraded (heartbeat overdue, outcomes cannot be filed, or the metrics endpoint is not serving)"),
            ("124", "daemon send --wait: timed out; the request stays queued"),
        ]),
        "gt-daemon-status" => {
            codes = vec![
                ("0", "running"),
                ("1", "status could not be determined (the message says why)"),
                ("2", "usage error"),
                ("3", "not running (stopped or crashed)"),
                ("4", "running but degraded: the heartbeat is overdue, outcomes cannot be filed, or the metrics endpoint is not serving"),
            ]
        }
        "gt-daemon-send" => codes = vec![
            ("0", "published (with --wait: processed)"),
            ("1", "failed (with --wait: the request failed; its reason is printed)"),
            ("2", "usage error"),
            ("124", "--wait timed out; the request stays queued"),
        ],
        _ => {}
    }
    for (code, what) in codes {
        entry(roff, code, what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The field names in a `Config { a: .., b: .. }` debug rendering.
    fn field_names(debug: &str) -> Vec<String> {
        let body = &debug[debug.find('{').unwrap() + 1..debug.rfind('}').unwrap()];
        let (mut depth, mut quoted, mut escaped) = (0, false, false);
        let mut names = Vec::new();
        let mut current = String::new();
        let mut at_name = true;
        for c in body.chars() {
            if quoted {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => quoted = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => quoted = true,
                '{' | '[' | '(' => depth += 1,
                '}' | ']' | ')' => depth -= 1,
                ',' if depth == 0 => at_name = true,
                ':' if depth == 0 && at_name => {
                    names.push(current.trim().to_string());
                    current.clear();
                    at_name = false;
                }
                c if at_name => current.push(c),
                _ => {}
            }
        }
        names
    }

    #[test]
    fn every_key_is_documented_with_its_real_default() {
        let defaults = format!("{:?}", Config::default());
        let mut fields = field_names(&defaults);
        let mut documented: Vec<String> = KEYS.iter().map(|k| k.name.to_string()).collect();
        fields.sort();
        documented.sort();
        assert_eq!(documented, fields, "KEYS must list every config key");
        for key in KEYS {
            let json = format!("{{\"{}\": {}}}", key.name, key.default);
            let parsed = Config::parse(json.as_bytes())
                .unwrap_or_else(|e| panic!("{}'s documented default is refused: {e:?}", key.name));
            assert_eq!(
                format!("{parsed:?}"),
                defaults,
                "{}'s documented default is not its real one",
                key.name
            );
        }
    }

    #[test]
    fn a_page_per_command() {
        let pages = pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "gt",
            "gt-daemon",
            "gt-daemon-start",
            "gt-daemon-status",
            "gt-man",
        ] {
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
        let root = String::from_utf8(pages[0].1.clone()).unwrap();
        for section in ["CONFIGURATION", "FILES", "ENVIRONMENT", "EXIT STATUS"] {
            assert!(
                root.contains(&format!(".SH \"{section}\""))
                    || root.contains(&format!(".SH {section}")),
                "{section} missing"
            );
        }
    }
}
