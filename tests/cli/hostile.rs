//! Hostile text: request file names and `from` values are written by any
//! agent. Through the log (text and JSON), `logs`, `requests` and `status`
//! (text and `--json`) they must reach neither the log as a forged line
//! nor the terminal as a control sequence, while the sidecars keep them
//! raw.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde_json::Value;

use crate::support::{one_json, read_lines, request_json, Out, Town};

/// A name whose newline would forge a "daemon stopped" line in the log.
const FORGER: &str =
    "forge\n2026-11-27 00:00:00.000Z  INFO gt::daemon: daemon stopped pid=1\n.json";
/// OSC 2 (set the window title) and ESC [ 2 J (clear the screen).
const TITLE: &str = "title\u{1b}]2;pwned\u{7}clear\u{1b}[2J.json";
/// A bidi override that would show the name reversed.
const BIDI: &str = "bidi\u{202e}nosj.exe.json";
/// A rejected `from`: the same sequences, a C1 CSI and a bidi override.
const BAD_FROM: &str = "\u{1b}]2;owned\u{7}\u{9b}2J\u{202e}mayor";
/// A name that is not UTF-8, with a C1 CSI byte.
const NOT_UTF8: &[u8] = b"nb\xff\x9b.json";

/// Characters that must never reach a terminal raw (a newline only ends a
/// line).
fn unsafe_chars(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
        })
        .collect()
}

fn assert_safe(out: &Out, what: &str) {
    let bad = unsafe_chars(&out.stdout);
    assert!(
        bad.is_empty(),
        "{what}: raw {bad:?} on stdout:\n{:?}",
        out.stdout
    );
    let bad = unsafe_chars(&out.stderr);
    assert!(
        bad.is_empty(),
        "{what}: raw {bad:?} on stderr:\n{:?}",
        out.stderr
    );
}

/// A town holding the hostile fixtures, filed by a dry-run daemon started
/// with `global` options (the log format).
fn hostile_town(global: &[&str]) -> Town {
    let town = Town::new();
    town.started(town.start_command(global, &["--dry-run"]));
    town.publish(FORGER, request_json("mayor", "shutdown"));
    town.publish(TITLE, serde_json::json!({"from": BAD_FROM, "action": "cycle", "timestamp": chrono::Utc::now().to_rfc3339()}).to_string());
    town.publish(BIDI, "{ not json");
    let inbox = town.inbox();
    std::fs::write(
        inbox.join(".tmp-not-utf8"),
        request_json("deacon", "shutdown"),
    )
    .unwrap();
    std::fs::rename(
        inbox.join(".tmp-not-utf8"),
        inbox.join(OsStr::from_bytes(NOT_UTF8)),
    )
    .unwrap();
    town.wait_processed(FORGER);
    town.wait_failed(TITLE);
    town.wait_failed(BIDI);
    town.wait_until(
        "the name that is not UTF-8 to be filed",
        crate::support::DEADLINE,
        || gt::outcome::filed(&town, OsStr::from_bytes(NOT_UTF8)).is_some(),
    );
    town.wait_counters(2, 2);
    town
}

#[test]
fn sidecars_keep_the_raw_values() {
    let town = hostile_town(&[]);
    let sc = town.sidecar(&town.failed(), TITLE);
    assert_eq!(sc["from"], BAD_FROM, "the sidecar keeps the data: {sc:#}");
}

#[test]
fn the_text_log_has_one_line_per_event_and_no_raw_controls() {
    let town = hostile_town(&[]);
    town.stop_and_flush();
    let log = std::fs::read_to_string(town.log_file()).unwrap();
    let bad = unsafe_chars(&log);
    assert!(bad.is_empty(), "raw {bad:?} in daemon.log:\n{log}");
    let stamp = regex_like_timestamp;
    for line in log.lines() {
        assert!(
            stamp(line),
            "a line that is not an event (forged?): {line:?}\n{log}"
        );
    }
    let stops: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("daemon stopped"))
        .collect();
    assert_eq!(
        stops.len(),
        2,
        "the real stop line, and the name that holds the forged one: {stops:#?}"
    );
    assert!(
        stops.iter().any(|l| l.contains("file=forge\\n2026-11-27")),
        "the forging name is logged escaped, on its own line: {stops:#?}"
    );
    assert!(log.contains("nb\\xff\\x9b.json"), "{log}");
    // `logs` shows it just as safely.
    let out = town.gt(&["daemon", "logs", "-n", "200"]);
    out.assert_ok("gt daemon logs");
    assert_safe(&out, "logs");
    assert_eq!(out.stdout.lines().count(), log.lines().count(), "{out:#?}");
}

/// `2026-11-27 10:00:00.123Z` at the start of a line.
fn regex_like_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 24
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
}

#[test]
fn the_json_log_has_one_object_per_line_and_no_raw_controls() {
    let town = hostile_town(&["--log-format", "json"]);
    town.stop_and_flush();
    let lines = read_lines(&town.log_file());
    let mut files = Vec::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}"));
        if let Some(file) = v["fields"]["file"].as_str() {
            files.push(file.to_owned());
        }
        let bad = unsafe_chars(line);
        assert!(bad.is_empty(), "raw {bad:?} in {line:?}");
    }
    for file in &files {
        let bad = unsafe_chars(file);
        assert!(
            bad.is_empty(),
            "the file field carries raw {bad:?}: {file:?}"
        );
    }
    assert!(
        files.iter().any(|f| f.starts_with("forge\\n")),
        "{files:#?}"
    );
    let out = town.gt(&["daemon", "logs", "-n", "200"]);
    assert_safe(&out, "logs of a JSON log");
}

#[test]
fn requests_text_keeps_one_row_per_request_and_no_raw_controls() {
    let town = hostile_town(&[]);
    let out = town.gt_env(&["daemon", "requests"], &[("NO_COLOR", "1")]);
    out.assert_ok("gt daemon requests");
    assert_safe(&out, "requests");
    assert_eq!(
        out.stdout.lines().count(),
        1 + 4,
        "a header and four rows: {out:#?}"
    );
    assert!(
        out.stdout
            .contains("title\\x1b]2;pwned\\x07clear\\x1b[2J.json"),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("bidi\\u{202e}nosj.exe.json"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("nb\\xff\\x9b.json"), "{out:#?}");
}

#[test]
fn requests_json_prints_no_raw_controls_and_parses_to_the_raw_values() {
    let town = hostile_town(&[]);
    let out = town.gt(&["daemon", "requests", "--json"]);
    out.assert_ok("gt daemon requests --json");
    assert_safe(&out, "requests --json");
    let v = one_json(&out, "requests --json");
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), 4, "{v:#}");
    let title = rows
        .iter()
        .find(|r| r["file"] == TITLE)
        .expect("the title row");
    assert_eq!(title["from"], BAD_FROM, "the data is unchanged: {title:#}");
    assert!(rows.iter().any(|r| r["file"] == FORGER), "{v:#}");
    // Not UTF-8: shown as requests shows it, which retry takes.
    assert!(
        rows.iter().any(|r| r["file"] == "nb\\xff\\x9b.json"),
        "{v:#}"
    );
}

#[test]
fn status_text_and_json_print_no_raw_controls() {
    let town = hostile_town(&[]);
    let out = town.gt_env(&["daemon", "status"], &[("NO_COLOR", "1")]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert_safe(&out, "status");
    let failures = &out.stdout[out.stdout.find("recent failures").expect("failures listed")..];
    assert!(failures.contains("\\x1b]2;owned\\x07"), "{out:#?}");
    assert!(failures.contains("title\\x1b]2;pwned"), "{out:#?}");

    let out = town.gt(&["daemon", "status", "--json"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert_safe(&out, "status --json");
    let v = one_json(&out, "status --json");
    let failures = v["recent_failures"].as_array().expect("an array");
    assert!(failures.iter().any(|f| f["from"] == BAD_FROM), "{v:#}");
}

#[test]
fn a_long_rig_name_keeps_the_columns() {
    let town = Town::new();
    town.start_dry();
    let rig = "r".repeat(40);
    let long = format!("{rig}/witness");
    town.send_wait("shutdown", &long, &["--timeout", "20s"])
        .assert_ok("send");
    town.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("send");
    let out = town.gt_env(&["daemon", "requests"], &[("NO_COLOR", "1")]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:#?}");
    // Every column starts at the same place on every line.
    let starts = |line: &str, word: &str| {
        line.find(word)
            .unwrap_or_else(|| panic!("{word:?} in {line:?}"))
    };
    let action_at = starts(lines[0], "ACTION");
    assert_eq!(starts(lines[1], "shutdown"), action_at, "{out:#?}");
    assert_eq!(starts(lines[2], "shutdown"), action_at, "{out:#?}");
    assert!(
        lines.iter().any(|l| l.contains(&long)),
        "the name is shown whole: {out:#?}"
    );
}
