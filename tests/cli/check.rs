//! `gt daemon check`, and the same checks run by `start`: a configuration
//! the daemon would refuse (or that would make it useless) is caught
//! before anything runs, with where and why; and a log filter that would
//! leave the daemon silent is refused.

use serde_json::json;

use crate::support::{require_tool, Out, Town};

/// Writes config.json as given (not merged with the test defaults).
fn raw_config(town: &Town, text: &str) {
    std::fs::write(town.config_file(), text).unwrap();
}

fn check(town: &Town, extra: &[&str]) -> Out {
    let mut args = vec!["daemon", "check"];
    args.extend_from_slice(extra);
    town.gt(&args)
}

/// The lines of `check`'s report marked PROBLEM, with their hints.
fn problems(out: &Out) -> String {
    let mut text = String::new();
    let mut in_problem = false;
    for line in out.stdout.lines() {
        if line.trim_start().starts_with("PROBLEM") {
            in_problem = true;
        } else if !line.trim_start().starts_with("hint:") {
            in_problem = false;
        }
        if in_problem {
            text += line;
            text += "\n";
        }
    }
    text
}

/// `start` refused, before spawning anything: no daemon, no log written.
fn assert_start_refused(town: &Town, words: &str) {
    let out = town.gt(&["daemon", "start", "--dry-run", "--timeout", "15s"]);
    assert_eq!(out.code, Some(1), "start must refuse: {out:#?}");
    assert!(out.stderr.contains("not starting"), "{out:#?}");
    assert!(
        out.stderr.contains(words),
        "start names the problem ({words}): {out:#?}"
    );
    assert!(!town.lock_held(), "no daemon may run\n{}", town.snapshot());
    assert!(
        !town.log_file().exists(),
        "refused before a daemon was spawned (it would have logged)\n{}",
        town.snapshot()
    );
}

#[test]
fn a_town_that_would_run_passes() {
    if !require_tool("tmux") {
        return;
    }
    let town = Town::new();
    let out = check(&town, &[]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    let text = &out.stdout;
    for (label, subject) in [
        ("ok", "config.json"),
        ("ok", "log filter"),
        ("ok", "directories"),
        ("ok", "tmux"),
        ("ok", "agent command"),
        ("note", "service unit"),
    ] {
        assert!(
            text.lines().any(|l| {
                let mut words = l.split_whitespace();
                words.next() == Some(label) && l.contains(subject)
            }),
            "no `{label} {subject}` line: {text}"
        );
    }
    // No unit installed is a note, not a problem.
    assert!(text.contains("none installed"), "{text}");
    assert!(text.contains("No problems"), "{text}");
    assert_eq!(problems(&out), "");
}

#[test]
fn config_mistakes_are_problems_with_where_and_why_and_start_refuses_them() {
    // (config.json, what check and start must say)
    let cases = [
        // serde used to read an array positionally: heartbeat_interval 2s,
        // max_request_age 1h.
        (r#"["2s", "1h"]"#, "the top level is an array"),
        (
            "{\n  \"prime_delay\": \"2s\"\n  \"kill_grace\": \"1s\"\n}",
            "invalid JSON at line 3 column 3",
        ),
        (
            r#"{"heartbeat_interval": -5}"#,
            "key `heartbeat_interval`: must not be negative (found -5)",
        ),
        (
            r#"{"max_restarts": -1}"#,
            "key `max_restarts`: must not be negative (found -1)",
        ),
        // 600 pokes a second, once accepted.
        (
            r#"{"heartbeat_interval": "1ms"}"#,
            "key `heartbeat_interval`: must be at least 1s, found 1ms",
        ),
        (
            r#"{"prime_delay": "2h"}"#,
            "key `prime_delay`: must be at most 10m, found 2h",
        ),
        (r#"{"heartbeat_intervall": "1s"}"#, "heartbeat_intervall"),
    ];
    for (text, words) in cases {
        let town = Town::new();
        raw_config(&town, text);
        let out = check(&town, &["--dry-run"]);
        assert_eq!(out.code, Some(1), "{text}: {out:#?}");
        let found = problems(&out);
        assert!(found.contains("config.json"), "{text}: {out:#?}");
        assert!(found.contains(words), "{text}: want {words:?} in {found}");
        assert!(found.contains("hint:"), "{text}: a hint: {found}");
        assert!(out.stdout.contains("1 problem"), "{text}: {out:#?}");
        assert_start_refused(&town, words);
    }
}

#[test]
fn a_missing_agent_command_is_a_problem_start_warns_about_and_a_dry_run_does_not_need() {
    let mut town = Town::new();
    town.config(json!({
        "agent_command": "gt-test-no-such-agent-7c1",
        "agent_commands": {"witness": "sleep 600"},
    }));
    let out = check(&town, &[]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    let found = problems(&out);
    assert!(
        found.contains("agent_command: \"gt-test-no-such-agent-7c1\" is not on PATH"),
        "{out:#?}"
    );
    assert!(
        !found.contains("agent_commands.witness"),
        "sleep is on PATH: {found}"
    );

    let dry = check(&town, &["--dry-run"]);
    assert_eq!(dry.code, Some(0), "a dry run needs no agent: {dry:#?}");
    assert!(
        dry.stdout.contains("a dry run does not need it"),
        "{dry:#?}"
    );

    // The daemon itself would run: start warns and starts (a missing agent
    // fails each restart with its reason; shutdown requests still work).
    let out = town.gt(&["daemon", "start", "--timeout", "15s"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(
        out.stderr.contains("warning: agent command")
            && out.stderr.contains("gt-test-no-such-agent-7c1"),
        "{out:#?}"
    );
}

#[test]
fn a_directory_the_daemon_cannot_use_is_a_problem() {
    let town = Town::new();
    // Where processed/ should be, a file: the daemon could not file
    // anything (writability by permissions cannot be tested as root).
    std::fs::write(town.processed(), b"").unwrap();
    let out = check(&town, &["--dry-run"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    let found = problems(&out);
    assert!(
        found.contains(&format!(
            "{} is not a directory",
            town.processed().display()
        )),
        "{found}"
    );
    assert_start_refused(&town, "is not a directory");
}

#[test]
fn log_filters_that_would_silence_the_daemon_are_refused() {
    // `--log-level bogus` was taken as a filter for a target named
    // "bogus": the daemon then logged nothing at all.
    let town = Town::new();
    for level in ["bogus", "gt=loud", "off", "notify=debug"] {
        let out = town.gt(&["--log-level", level, "daemon", "start", "--dry-run"]);
        assert_eq!(
            out.code,
            Some(2),
            "--log-level {level} is a usage error: {out:#?}"
        );
        assert!(out.stderr.contains("--log-level"), "{out:#?}");
        assert!(!town.lock_held(), "no daemon for --log-level {level}");
    }

    let rust_log = |args: &[&str]| town.gt_env(args, &[("RUST_LOG", "nonsense")]);
    let out = rust_log(&["daemon", "check", "--dry-run"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(problems(&out).contains("RUST_LOG=\"nonsense\""), "{out:#?}");
    let out = rust_log(&["daemon", "start", "--dry-run"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("RUST_LOG"), "{out:#?}");
    assert!(!town.lock_held());
    // `run` (what a service manager runs) refuses it as a configuration
    // error.
    let out = rust_log(&["daemon", "run", "--dry-run"]);
    assert_eq!(out.code, Some(78), "{out:#?}");
    assert!(out.stderr.contains("RUST_LOG"), "{out:#?}");

    // Other commands do not log: RUST_LOG is none of their business.
    rust_log(&["daemon", "requests"]).assert_ok("requests under RUST_LOG=nonsense");

    // The controls: real filters are taken.
    let out = town.gt_env(
        &[
            "--log-level",
            "warn,gt::daemon::heartbeat=debug",
            "daemon",
            "check",
            "--dry-run",
        ],
        &[("RUST_LOG", "nonsense")],
    );
    assert_eq!(
        out.code,
        Some(0),
        "--log-level wins over RUST_LOG: {out:#?}"
    );
    let out = town.gt_env(
        &["daemon", "start", "--dry-run"],
        &[("RUST_LOG", "gt=debug")],
    );
    out.assert_ok("start under RUST_LOG=gt=debug");
}

#[test]
fn an_installed_unit_is_checked_and_none_is_only_a_note() {
    let town = Town::new();
    let units = tempfile::tempdir().unwrap();
    let dir = units.path().to_str().unwrap();
    let env = [("GT_INSTALL_DIR", dir)];
    let out = town.gt_env(&["daemon", "check", "--dry-run"], &env);
    assert_eq!(out.code, Some(0), "no unit is not a problem: {out:#?}");
    assert!(out.stdout.contains("none installed"), "{out:#?}");

    town.gt_env(&["daemon", "install", "--systemd", "--user"], &env)
        .assert_ok("install");
    let out = town.gt_env(&["daemon", "check", "--dry-run"], &env);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(
        out.stdout.contains("gt-daemon-"),
        "the unit is named: {out:#?}"
    );
    assert!(!out.stdout.contains("older gt"), "{out:#?}");

    // A unit from an older gt, whose binary has gone since.
    let unit = std::fs::read_dir(units.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&unit).unwrap();
    let old: String = text
        .lines()
        .filter(|l| !l.starts_with("WatchdogSec=") && !l.starts_with("ExecReload="))
        .map(|l| match l.strip_prefix("ExecStart=") {
            Some(rest) => format!(
                "ExecStart=/nonexistent/gt {}\n",
                rest.split_once(' ').unwrap().1
            ),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&unit, old).unwrap();
    let out = town.gt_env(&["daemon", "check", "--dry-run"], &env);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        problems(&out).contains("runs /nonexistent/gt, which does not exist"),
        "{out:#?}"
    );
    assert!(
        out.stdout
            .contains("written by an older gt: it lacks ExecReload, WatchdogSec"),
        "{out:#?}"
    );
}

#[test]
fn run_exits_78_when_it_refuses_its_configuration() {
    for config in [
        json!({"heartbeat_intervall": "1s"}),
        json!({"prime_delay": "1h"}),
    ] {
        let mut t = Town::new();
        t.config(config.clone());
        let out = t.gt(&["daemon", "run", "--dry-run"]);
        assert_eq!(out.code, Some(78), "{config}: {out:#?}");
        let key = config.as_object().unwrap().keys().next().unwrap().clone();
        assert!(out.stderr.contains(&key), "stderr names {key}: {out:#?}");
        assert!(!t.lock_held());
    }
}

#[test]
fn a_stall_restart_with_nobody_supervised_is_a_note() {
    let mut town = Town::new();
    town.config(json!({"stall_action": "restart"}));
    let out = check(&town, &["--dry-run"]);
    assert!(
        out.stdout
            .contains("restarts supervised agents only, and supervise names none"),
        "{out:#?}"
    );
    town.config(json!({"stall_action": "restart", "supervise": ["mayor"]}));
    let out = check(&town, &["--dry-run"]);
    assert!(!out.stdout.contains("supervise names none"), "{out:#?}");
}
