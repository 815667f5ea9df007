//! Messages that are exact: stale wording, town errors, empty listings,
//! what `start`, `retry` and `clear-backoff` say and do, broken pipes, and
//! the one time format.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{ExitStatus, Stdio};

use serde_json::json;

use crate::support::proc::{KillOnDrop, Lines};
use crate::support::{gt_command, one_json, read_lines, request_at, request_json, Town, DEADLINE};

fn ago(minutes: i64, seconds: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes) - chrono::Duration::seconds(seconds))
        .to_rfc3339()
}

#[test]
fn stale_and_future_reasons_show_durations_that_make_the_comparison_true() {
    let mut town = Town::new();
    town.config(json!({ "max_request_age": "1h30m" }));
    town.start_dry();
    town.publish("old.json", request_at("mayor", "shutdown", &ago(100, 0)));
    let sc = town.wait_failed("old.json");
    assert_eq!(
        sc["error"], "request is stale: 1h40m old, limit 1h30m",
        "{sc:#}"
    );
    // 602 s ahead, so still more than 601 s when the daemon looks.
    let ahead = (chrono::Utc::now() + chrono::Duration::seconds(602)).to_rfc3339();
    town.publish("ahead.json", request_at("mayor", "shutdown", &ahead));
    let sc = town.wait_failed("ahead.json");
    assert_eq!(
        sc["error"],
        "timestamp is 10m1s in the future (more than 10m of clock skew); check the sender's clock",
        "{sc:#}"
    );
    // Just inside the limit: taken.
    town.publish("fresh.json", request_at("mayor", "shutdown", &ago(80, 0)));
    town.wait_processed("fresh.json");
}

#[test]
fn a_file_given_as_the_town_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("town.txt");
    std::fs::write(&file, "").unwrap();
    let mut cmd = gt_command();
    cmd.arg("--town").arg(&file).args(["daemon", "status"]);
    let out = crate::support::run(cmd);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("is not a directory"), "{out:#?}");
    assert!(out.stderr.contains("--town"), "{out:#?}");
    assert!(!out.stderr.contains("does not exist"), "{out:#?}");
}

#[test]
fn a_town_from_the_environment_says_so_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let mut cmd = gt_command();
    cmd.env("GT_TOWN_ROOT", &missing).args(["daemon", "status"]);
    let out = crate::support::run(cmd);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains("does not exist") && out.stderr.contains("$GT_TOWN_ROOT"),
        "{out:#?}"
    );

    // A town that exists, and a command that fails in it for another
    // reason: the note says where the town came from.
    let town = Town::new();
    let mut cmd = gt_command();
    cmd.env("GT_TOWN_ROOT", town.root())
        .args(["daemon", "logs"]);
    let out = crate::support::run(cmd);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("no log at"), "{out:#?}");
    assert!(
        out.stderr.contains(&format!(
            "note: the town is {} from $GT_TOWN_ROOT",
            town.root().display()
        )),
        "{out:#?}"
    );
}

#[test]
fn empty_listings_say_what_is_empty() {
    let town = Town::new();
    town.start_dry();
    town.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("send");
    let out = town.gt(&["daemon", "requests", "-n", "0"]);
    out.assert_ok("requests -n 0");
    assert_eq!(out.stdout, "", "nothing asked, nothing shown: {out:#?}");

    let out = town.gt(&["daemon", "requests", "--failed"]);
    out.assert_ok("requests --failed");
    assert!(out.stdout.starts_with("No failed requests"), "{out:#?}");
    assert!(!out.stdout.contains("filed yet"), "one was filed: {out:#?}");
    let out = town.gt(&["daemon", "requests", "--processed"]);
    assert!(out.stdout.contains("shutdown"), "{out:#?}");
}

#[test]
fn start_names_the_town_and_the_log() {
    let town = Town::new();
    let out = town.gt(&["daemon", "start", "--dry-run"]);
    out.assert_ok("start");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("Daemon started (PID ") && lines[0].ends_with("[dry run]"),
        "{out:#?}"
    );
    assert!(
        lines.contains(&format!("  town  {}", town.root().display()).as_str()),
        "{out:#?}"
    );
    assert!(
        lines.contains(&format!("  log   {}", town.log_file().display()).as_str()),
        "{out:#?}"
    );
    assert_eq!(out.stderr, "", "{out:#?}");
}

#[test]
fn start_warns_when_the_running_daemon_is_not_what_was_asked() {
    let town = Town::new();
    town.start_dry();
    let out = town.gt(&["daemon", "start"]);
    out.assert_ok("start over a dry run");
    assert!(out.stdout.contains("already running"), "{out:#?}");
    assert!(
        out.stderr
            .contains("warning: the running daemon is a dry run"),
        "asked for a real daemon, a dry run runs: {out:#?}"
    );
    // The control: asking for what runs is no news.
    let out = town.gt(&["daemon", "start", "--dry-run"]);
    out.assert_ok("start --dry-run over a dry run");
    assert_eq!(out.stderr, "", "{out:#?}");
}

#[test]
fn a_start_that_times_out_leaves_no_daemon_running() {
    let town = Town::new();
    let mut cmd = town.start_command(&[], &["--dry-run", "--timeout", "1s"]);
    crate::support::command::with_hooks(&mut cmd, &[(gt::testing::START_DELAY_MS, "20000")]);
    let out = crate::support::run(cmd);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("did not come up within 1s"), "{out:#?}");
    assert!(out.stderr.contains("it was stopped"), "{out:#?}");
    town.wait_until("no daemon left behind the error", DEADLINE, || {
        town.daemon_processes().is_empty() && !town.lock_held()
    });
    let v = town.status_json();
    assert_eq!(v["running"], false, "{v:#}");
}

#[test]
fn retry_warns_about_a_stale_request_even_when_a_daemon_takes_it_at_once() {
    let mut town = Town::new();
    town.config(json!({ "max_request_age": "1h" }));
    town.start_dry();
    town.publish("old.json", request_at("mayor", "shutdown", &ago(120, 0)));
    town.wait_failed_with("old.json", "request is stale");
    let out = town.gt(&["daemon", "retry", "old.json"]);
    out.assert_ok("retry");
    assert!(
        out.stderr
            .contains("warning: this request is 2h old, beyond max_request_age (1h)"),
        "{out:#?}"
    );
    town.wait_until("the retried request to be filed again", DEADLINE, || {
        crate::support::filed(&town, "old.json").is_some()
    });
}

#[test]
fn retry_takes_any_byte_name_and_keeps_its_bytes_on_a_collision() {
    let town = Town::new();
    for dir in [town.failed(), town.inbox()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let name = OsStr::from_bytes(b"nb\xff.json");
    std::fs::write(town.failed().join(name), request_json("mayor", "shutdown")).unwrap();
    std::fs::write(
        town.failed()
            .join(OsStr::from_bytes(b"nb\xff.json.result.json")),
        "{}",
    )
    .unwrap();
    std::fs::write(town.inbox().join(name), "taken").unwrap();
    let mut cmd = town.command(&["daemon", "retry"]);
    cmd.arg(name);
    let out = crate::support::run(cmd);
    out.assert_ok("retry of a name that is not UTF-8");
    assert!(
        town.inbox()
            .join(OsStr::from_bytes(b"nb\xff-1.json"))
            .exists(),
        "the name keeps its bytes: {}",
        town.snapshot()
    );
    assert!(
        out.stdout.contains("nb\\xff-1.json"),
        "printed escaped: {out:#?}"
    );

    // The name as `requests` shows it works too.
    std::fs::write(town.failed().join(OsStr::from_bytes(b"x\xfe.json")), "{}").unwrap();
    let out = town.gt(&["daemon", "retry", "x\\xfe.json"]);
    out.assert_ok("retry by the escaped name");
    assert!(town.inbox().join(OsStr::from_bytes(b"x\xfe.json")).exists());
}

#[test]
fn clear_backoff_takes_the_session_name_the_guard_prints_and_lists_who_is_held() {
    let mut town = Town::new();
    town.config(json!({ "max_restarts": 1 }));
    town.start_dry();
    town.send_wait("restart", "gastown/witness", &["--timeout", "20s"])
        .assert_ok("the first restart");
    let out = town.send_wait("restart", "gastown/witness", &["--timeout", "20s"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stdout.contains("crash-loop guard: gt-gastown-witness"),
        "{out:#?}"
    );

    let list = town.gt(&["daemon", "clear-backoff", "--list"]);
    list.assert_ok("clear-backoff --list");
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("gt-gastown-witness"))
        .unwrap_or_else(|| panic!("the held session is listed: {list:#?}"));
    assert!(row.contains("held until "), "{list:#?}");

    let out = town.gt(&["daemon", "clear-backoff", "gt-gastown-witness"]);
    out.assert_ok("clear-backoff by session name");
    assert!(
        out.stdout
            .contains("Cleared the crash-loop guard of gt-gastown-witness"),
        "{out:#?}"
    );
    town.send_wait("restart", "gastown/witness", &["--timeout", "20s"])
        .assert_ok("admitted again after clear-backoff");
}

/// `gt ARGS` in `town` with stdout going to a pipe whose reader has
/// already gone (`| head` that finished), or to `/dev/full`.
fn into(town: &Town, args: &[&str], stdout: impl Into<Stdio>) -> (ExitStatus, String) {
    let mut cmd = town.command(args);
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    let mut child = KillOnDrop::spawn(cmd);
    let mut stderr = Lines::new(child.child().stderr.take().expect("stderr pipe"));
    let status = child.wait_exit(DEADLINE).expect("gt exits");
    while stderr.next(DEADLINE).is_some() {}
    (status, stderr.seen.join("\n"))
}

#[test]
fn a_reader_that_went_away_is_not_an_error() {
    let town = Town::new();
    town.start_dry();
    town.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("send");
    for args in [
        &["daemon", "requests"][..],
        &["daemon", "requests", "--json"],
        &["daemon", "status"],
        &["daemon", "status", "--json"],
        &["daemon", "logs"],
        &["daemon", "clear-backoff", "--list"],
        &["man"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let (status, stderr) = into(&town, args, writer);
        assert!(
            status.success(),
            "gt {args:?} | head: {status:?}, stderr {stderr:?}"
        );
        assert_eq!(
            stderr, "",
            "gt {args:?}: nothing to say about a reader that left"
        );

        // The control: another write error is reported.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (status, stderr) = into(&town, args, full);
        assert!(
            !status.success() && stderr.contains("error"),
            "gt {args:?} > /dev/full: {status:?} {stderr:?}"
        );
    }
}

/// `2026-11-27 10:00:00` followed by `Z` (UTC) or an offset.
fn stamped_with(text: &str, zone: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| {
            chrono::NaiveDate::parse_from_str(w[0], "%Y-%m-%d").is_ok()
                && w[1].len() >= 8 + zone.len()
                && w[1].ends_with(zone)
                && chrono::NaiveTime::parse_from_str(
                    &w[1][..w[1].len() - zone.len()],
                    "%H:%M:%S%.f",
                )
                .is_ok()
        })
}

#[test]
fn one_time_format_in_status_requests_and_logs_with_local_time_on_request() {
    let town = Town::new();
    town.start_dry();
    town.wait_first_heartbeat();
    town.create_shutdown_lock();
    let failed = town.send_wait("cycle", "mayor", &["--timeout", "20s"]);
    assert_eq!(failed.code, Some(1), "{failed:#?}");
    for (args, what) in [
        (&["daemon", "status"][..], "status"),
        (&["daemon", "requests"], "requests"),
        (&["daemon", "logs"], "logs"),
    ] {
        let out = town.gt(args);
        assert!(stamped_with(&out.stdout, "Z"), "{what} in UTC: {out:#?}");
        let mut local = args.to_vec();
        local.push("--local");
        let out = town.gt_env(&local, &[("TZ", "XYZ-05:30")]);
        assert!(
            stamped_with(&out.stdout, "+05:30"),
            "{what} --local: {out:#?}"
        );
        assert!(!stamped_with(&out.stdout, "Z"), "{what} --local: {out:#?}");
    }
    // The log file itself carries the same format.
    let log = read_lines(&town.log_file());
    assert!(log.iter().all(|l| stamped_with(l, "Z")), "{log:#?}");
}

#[test]
fn counters_include_a_request_as_soon_as_send_wait_returns() {
    let town = Town::new();
    town.start_dry();
    town.create_shutdown_lock();
    for i in 1..=5u64 {
        let out = town.send_wait("cycle", "mayor", &["--timeout", "20s"]);
        assert_eq!(out.code, Some(1), "{out:#?}");
        let v = one_json(&town.gt(&["daemon", "status", "--json"]), "status --json");
        assert_eq!(
            v["requests_failed"], i,
            "right after send --wait number {i}: {v:#}"
        );
    }
}
