//! `gt daemon status`: the text an operator reads at a glance and the
//! `--json` object scripts rely on, against a real (dry-run) daemon.

use std::fs;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::command::{copy_gt, program_command, run_fresh_copy};
use crate::support::proc::{signal, Resume, Signal};
use crate::support::{has_ansi, one_json, parse_pid, request_json, Out, Town, DEADLINE};

/// `status` exits 0 running, 3 not running, 4 degraded: anything else is
/// a failure to answer.
fn assert_answered(out: &Out, what: &str) {
    assert!(
        matches!(out.code, Some(0 | 3 | 4)),
        "{what}: expected exit 0, 3 or 4, got {out:#?}"
    );
}

fn status_text(town: &Town, env: &[(&str, &str)]) -> Out {
    let out = town.gt_env(&["daemon", "status"], env);
    assert_answered(&out, "gt daemon status");
    out
}

fn status_json(town: &Town) -> (Out, Value) {
    let out = town.gt(&["daemon", "status", "--json"]);
    assert_answered(&out, "gt daemon status --json");
    let v = one_json(&out, "status --json");
    assert!(v.is_object(), "status --json must print an object: {v:#}");
    (out, v)
}

#[test]
fn status_text_shows_state_pid_town_heartbeat_and_counters() {
    let town = Town::new();
    let pid = town.start_dry();
    town.wait_first_heartbeat();
    // Distinct counts (3 pending, 2 processed, 1 failed), so a count shown
    // in the wrong place cannot pass for the right one.
    town.publish("ok-1.json", request_json("mayor", "shutdown"));
    town.publish("ok-2.json", request_json("deacon", "shutdown"));
    town.publish("bad.json", "{");
    town.wait_counters(2, 1);
    // Frozen, the daemon leaves what arrives now in the inbox: pending.
    let _resume = Resume(pid);
    signal(pid, Signal::STOP);
    for i in 0..3 {
        town.publish(&format!("wait-{i}.json"), request_json("mayor", "shutdown"));
    }
    let heartbeats = town.state_u64("heartbeat_count");
    assert!(heartbeats >= 1, "{}", town.snapshot());

    let out = status_text(&town, &[("NO_COLOR", "1")]);
    let text = &out.stdout;
    let line = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in status:\n{text}"))
            .trim()
            .to_owned()
    };
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.ends_with(&format!("gt daemon: running (PID {pid}) [dry run]"))),
        "the state line:\n{text}"
    );
    assert_eq!(
        line("town"),
        format!("town       {}", town.root().display()),
        "{text}"
    );
    assert!(
        line("heartbeat").ends_with(&format!(", {heartbeats} so far")),
        "heartbeat count {heartbeats}:\n{text}"
    );
    assert!(
        line("inbox").starts_with("inbox      3 pending, oldest "),
        "3 requests wait:\n{text}"
    );
    assert_eq!(
        line("requests"),
        "requests   2 processed, 1 failed",
        "{text}"
    );
    assert_eq!(
        town.recorded_pid(),
        Some(pid),
        "daemon.pid holds start's PID"
    );
    // Nothing to warn about: pending requests of a running daemon are not.
    assert!(
        !out.stderr.contains("warning"),
        "unexpected warning: {out:#?}"
    );
}

#[test]
fn status_text_has_no_colour_when_piped_or_no_color_but_has_it_when_forced() {
    let town = Town::new();
    town.start_dry();
    town.wait_first_heartbeat();

    // The control: colour exists, so its absence below means something.
    let forced = status_text(&town, &[("CLICOLOR_FORCE", "1")]);
    assert!(
        has_ansi(&forced.stdout),
        "CLICOLOR_FORCE=1 should colour the state line: {forced:#?}"
    );

    // stdout is a pipe here: no escapes, with or without NO_COLOR.
    let piped = status_text(&town, &[]);
    assert!(
        !has_ansi(&piped.all()),
        "ANSI escapes in piped output: {piped:#?}"
    );
    let no_color = status_text(&town, &[("NO_COLOR", "1")]);
    assert!(
        !has_ansi(&no_color.all()),
        "ANSI escapes despite NO_COLOR=1: {no_color:#?}"
    );
    // NO_COLOR wins even over a forced colour.
    let both = status_text(&town, &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]);
    assert!(
        !has_ansi(&both.all()),
        "NO_COLOR=1 must beat CLICOLOR_FORCE=1: {both:#?}"
    );
    assert!(no_color.stdout.contains("running"), "{no_color:#?}");
}

#[test]
fn status_text_lists_recent_failures_with_their_reason() {
    let town = Town::new();
    town.start_dry();
    let (_, failed) = town.one_processed_one_failed();

    let out = status_text(&town, &[("NO_COLOR", "1")]);
    let text = &out.stdout;
    assert!(
        text.contains("recent failures"),
        "no failures section:\n{text}"
    );
    let section = &text[text.find("recent failures").unwrap()..];
    assert!(
        section.contains("town is shutting down"),
        "the failure's reason is missing:\n{text}"
    );
    assert!(
        section.contains("mayor") && section.contains("cycle"),
        "the failure's agent and action are missing:\n{text}"
    );
    assert!(
        text.contains("1 processed") && text.contains("1 failed"),
        "counters:\n{text}"
    );
    // The processed request is not a failure.
    assert!(
        !section.contains("gastown/witness"),
        "a processed request listed as a failure:\n{text}"
    );
    assert!(town.failed().join(&failed).exists());
}

#[test]
fn status_text_after_stop_says_not_running() {
    let town = Town::new();
    town.start_dry();
    let running = status_text(&town, &[("NO_COLOR", "1")]);
    assert!(!running.stdout.contains("not running"), "{running:#?}");
    town.stop();

    let out = status_text(&town, &[("NO_COLOR", "1")]);
    assert!(
        out.stdout.contains("not running"),
        "status of a stopped daemon: {out:#?}"
    );
    assert!(
        out.stdout.contains(&town.root().display().to_string()),
        "the town is still named: {out:#?}"
    );
}

#[test]
fn status_text_in_a_town_that_never_ran_says_not_running() {
    let town = Town::new();
    let out = status_text(&town, &[("NO_COLOR", "1")]);
    assert!(out.stdout.contains("not running"), "{out:#?}");
}

const STATE_FIELDS: [&str; 11] = [
    "running",
    "pid",
    "started_at",
    "last_heartbeat",
    "heartbeat_count",
    "town_root",
    "version",
    "requests_processed",
    "requests_failed",
    "inbox_pending",
    "last_request_at",
];

const LIVE_FIELDS: [&str; 8] = [
    "shutting_down",
    "uptime_secs",
    "heartbeat_age_secs",
    "heartbeat_overdue",
    "oldest_pending_secs",
    "binary_newer",
    "recent_failures",
    "warnings",
];

#[test]
fn status_json_is_one_object_with_state_and_live_fields() {
    let town = Town::new();
    let pid = town.start_dry();
    let (_, failed) = town.one_processed_one_failed();

    let (out, v) = status_json(&town);
    for key in STATE_FIELDS.iter().chain(LIVE_FIELDS.iter()) {
        assert!(v.get(key).is_some(), "status --json lacks {key:?}: {v:#}");
    }
    assert_eq!(v["running"], true, "{v:#}");
    assert_eq!(
        v["pid"].as_u64(),
        town.recorded_pid().map(u64::from),
        "pid must be daemon.pid's content: {v:#}"
    );
    assert_eq!(v["pid"].as_u64(), Some(pid.into()), "{v:#}");
    assert_eq!(v["town_root"], town.root().display().to_string(), "{v:#}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v:#}");
    assert_eq!(v["requests_processed"], 1, "{v:#}");
    assert_eq!(v["requests_failed"], 1, "{v:#}");
    assert_eq!(v["inbox_pending"], 0, "{v:#}");
    assert!(v["heartbeat_count"].as_u64() >= Some(1), "{v:#}");
    for key in ["started_at", "last_heartbeat", "last_request_at"] {
        let ts = v[key].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "{key} must be an RFC 3339 time: {v:#}"
        );
    }
    assert!(v["uptime_secs"].is_u64(), "{v:#}");
    assert!(v["heartbeat_age_secs"].is_u64(), "{v:#}");
    assert_eq!(v["heartbeat_overdue"], false, "{v:#}");
    assert_eq!(v["binary_newer"], false, "{v:#}");
    assert!(v["oldest_pending_secs"].is_null(), "inbox is empty: {v:#}");
    // The failure came from shutdown.lock, which is still there: status
    // says so, in the field and as the only warning.
    assert_eq!(v["shutting_down"], true, "{v:#}");
    let warnings = v["warnings"].as_array().expect("an array");
    assert_eq!(warnings.len(), 1, "{v:#}");
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.contains("shutting down")),
        "{v:#}"
    );
    std::fs::remove_file(town.shutdown_lock()).expect("remove shutdown.lock");
    let (_, v) = status_json(&town);
    assert_eq!(v["shutting_down"], false, "{v:#}");
    assert_eq!(v["warnings"], serde_json::json!([]), "{v:#}");

    let failures = v["recent_failures"].as_array().expect("an array");
    assert_eq!(failures.len(), 1, "{v:#}");
    assert_eq!(failures[0]["file"], failed.as_str(), "{v:#}");
    assert_eq!(failures[0]["outcome"], "failed", "{v:#}");
    assert!(
        failures[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("town is shutting down")),
        "{v:#}"
    );
    assert!(
        !has_ansi(&out.stdout),
        "JSON for scripts has no colour: {out:#?}"
    );
}

#[test]
fn status_json_when_not_running_has_running_false_and_pid_null() {
    let town = Town::new();
    let (_, v) = status_json(&town);
    assert_eq!(v["running"], false, "never started: {v:#}");
    assert!(v["pid"].is_null(), "never started: {v:#}");

    town.start_dry();
    let (_, up) = status_json(&town);
    assert_eq!(up["running"], true, "{up:#}");
    town.stop();

    let (_, v) = status_json(&town);
    assert_eq!(v["running"], false, "after stop: {v:#}");
    assert!(v["pid"].is_null(), "after stop: {v:#}");
    assert!(v["uptime_secs"].is_null(), "no uptime when stopped: {v:#}");
    // The last run's state is still reported.
    assert_eq!(v["town_root"], town.root().display().to_string(), "{v:#}");
    assert!(v["started_at"].is_string(), "{v:#}");
}

/// A request waiting while no daemon runs is worth a warning: on stderr in
/// text mode (stdout stays clean), inside the object with `--json`.
#[test]
fn warnings_go_to_stderr_in_text_mode_and_into_the_object_with_json() {
    let town = Town::new();
    let name = "waiting.json";
    town.publish(name, request_json("mayor", "shutdown"));

    let text = status_text(&town, &[("NO_COLOR", "1")]);
    assert!(
        text.stderr.contains("warning") && text.stderr.contains("gt daemon start"),
        "expected a warning on stderr: {text:#?}"
    );
    assert!(
        !text.stdout.contains("warning"),
        "warnings must not go to stdout: {text:#?}"
    );
    assert!(text.stdout.contains("1 pending"), "{text:#?}");

    let (out, v) = status_json(&town);
    assert_eq!(v["inbox_pending"], 1, "{v:#}");
    assert!(v["oldest_pending_secs"].is_u64(), "{v:#}");
    let warnings = v["warnings"].as_array().expect("warnings array");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("gt daemon start"))),
        "{v:#}"
    );
    assert!(
        !out.stderr.contains("warning"),
        "with --json the warning is in the object, stderr stays quiet: {out:#?}"
    );
}

/// A hung daemon: stopped with SIGSTOP, its heartbeat goes stale. With
/// `heartbeat_interval` 1s, "overdue" is an age above 2*1s+10s, so this test
/// waits about 13 seconds for the condition (no fixed sleep).
#[test]
fn a_frozen_daemon_is_reported_with_an_overdue_heartbeat() {
    let mut town = Town::new();
    town.config(serde_json::json!({ "heartbeat_interval": "1s" }));
    let pid = town.start_dry();
    town.wait_first_heartbeat();
    let (_, v) = status_json(&town);
    assert_eq!(v["heartbeat_overdue"], false, "a fresh daemon: {v:#}");

    let _cont = Resume(pid);
    signal(pid, Signal::STOP);
    // Wait cheaply (reading state.json, not spawning gt every 20 ms) until
    // the frozen daemon's last heartbeat is clearly older than 12 s...
    town.wait_until(
        "state.json's last heartbeat to be 14 s old",
        Duration::from_secs(60),
        || {
            town.try_state()
                .and_then(|s| s["last_heartbeat"].as_str().map(str::to_owned))
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .is_some_and(|t| (chrono::Utc::now() - t.to_utc()).num_seconds() >= 14)
        },
    );
    // ...then status must call it overdue.
    let mut last = Value::Null;
    town.wait_until(
        "status --json to report heartbeat_overdue while the daemon is stopped",
        DEADLINE,
        || {
            last = status_json(&town).1;
            last["heartbeat_overdue"] == true
        },
    );
    assert_eq!(
        last["running"], true,
        "a hung daemon still holds its lock: {last:#}"
    );
    assert!(
        last["heartbeat_age_secs"].as_u64() > Some(12),
        "overdue means older than 2*interval+10s: {last:#}"
    );
    assert!(
        last["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("hung")))),
        "{last:#}"
    );
    let text = status_text(&town, &[("NO_COLOR", "1")]);
    assert!(
        text.stderr.contains("warning") && text.stderr.contains("hung"),
        "the overdue warning belongs on stderr: {text:#?}"
    );
    assert!(!text.stdout.contains("hung"), "{text:#?}");

    // Thawed, it beats again and the warning goes away.
    signal(pid, Signal::CONT);
    town.wait_until(
        "the heartbeat to be fresh again after SIGCONT",
        DEADLINE,
        || status_json(&town).1["heartbeat_overdue"] == false,
    );
    town.stop();
}

/// A daemon started from a binary that was replaced afterwards (an
/// upgrade) is flagged so the operator restarts it. The daemon runs from a
/// private copy of `gt` whose mtime the test can move.
#[test]
fn status_warns_when_the_binary_on_disk_is_newer_than_the_daemon() {
    let town = Town::new();
    let bin_dir = tempfile::tempdir().expect("temp dir");
    let exe = bin_dir.path().join("gt");
    copy_gt(&exe);
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&exe)
        .and_then(|f| f.set_modified(old))
        .expect("age the copy");

    let out = run_fresh_copy(|| {
        let mut cmd = program_command(&exe);
        cmd.arg("--town")
            .arg(town.root())
            .args(["daemon", "start", "--dry-run"]);
        cmd
    });
    out.assert_ok("start from the copied binary");
    let started = parse_pid(&out.stdout);
    let pid = started.expect("start printed a PID");
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/exe")).ok(),
        fs::canonicalize(&exe).ok(),
        "the daemon runs from the copy"
    );

    let (_, before) = status_json(&town);
    assert_eq!(before["binary_newer"], false, "{before:#}");

    // "Upgrade" the binary: its mtime moves past the daemon's start. A
    // running executable cannot be opened for writing; a read handle can
    // still set the time (we own the file).
    fs::File::open(&exe)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .expect("touch the copy");
    let (_, after) = status_json(&town);
    assert_eq!(after["binary_newer"], true, "{after:#}");
    assert!(
        after["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("newer")))),
        "{after:#}"
    );
    let text = status_text(&town, &[("NO_COLOR", "1")]);
    assert!(
        text.stderr.contains("newer"),
        "the warning belongs on stderr: {text:#?}"
    );
    town.stop();
    // Stopped: nothing runs, so nothing is outdated.
    let (_, stopped) = status_json(&town);
    assert_eq!(stopped["binary_newer"], false, "{stopped:#}");
}

#[test]
fn a_thousand_remembered_sessions_do_not_flood_the_text() {
    let town = Town::new();
    let now = chrono::Utc::now().to_rfc3339();
    let restarts: serde_json::Map<String, Value> = (0..120)
        .map(|i| (format!("gt-rig{i:03}-witness"), serde_json::json!([now])))
        .collect();
    fs::write(
        town.restart_state_file(),
        serde_json::json!({ "restarts": restarts }).to_string(),
    )
    .unwrap();
    let out = status_text(&town, &[]);
    let rows = out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("gt-rig"))
        .count();
    assert_eq!(rows, 50, "{}", out.stdout);
    assert!(out.stdout.contains("… and 70 more"), "{}", out.stdout);
    let (_, json) = status_json(&town);
    assert_eq!(json["agents"].as_array().map(Vec::len), Some(120));
}
