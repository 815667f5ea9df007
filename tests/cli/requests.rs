//! What agents and operators see of requests: `send --wait` answers,
//! the `requests` table and its `--json`, and retention of old outcomes.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::support::{
    file_name, filed, has_ansi, ls, one_json, read_lines, request_json, Out, Town, DEADLINE,
};

/// Sets a file's modification time.
fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("cannot set the mtime of {}: {e}", path.display()));
}

/// `now - secs`.
fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// The data rows of `gt daemon requests`' table: columns are separated by
/// two or more spaces (the time column holds a single one).
fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    assert!(
        header.contains("AGENT") && header.contains("OUTCOME") && header.contains("REASON"),
        "the table has no header line: {stdout:?}"
    );
    lines
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// send --wait

#[test]
fn send_wait_processed_exits_0_and_says_processed() {
    let town = Town::new();
    town.start_dry();
    let out = town.send_wait("shutdown", "mayor", &["--timeout", "20s"]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    let name = file_name(&out.sent_path());
    assert!(
        out.stdout.lines().any(|l| l.trim() == "processed"),
        "stdout should say processed: {out:#?}"
    );
    // It only answers once the request really is filed.
    assert_eq!(
        filed(&town, &name).map(|(dir, _)| dir),
        Some(town.processed()),
        "{}",
        town.snapshot()
    );
    assert!(!town.inbox().join(&name).exists());
}

#[test]
fn send_wait_failed_exits_1_and_prints_the_reason() {
    let town = Town::new();
    town.start_dry();
    town.create_shutdown_lock();
    let out = town.send_wait("cycle", "mayor", &["--timeout", "20s"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("failed:"))
        .unwrap_or_else(|| panic!("no \"failed:\" line: {out:#?}"));
    assert!(line.contains("town is shutting down"), "{out:#?}");
    let name = file_name(&out.sent_path());
    assert_eq!(
        filed(&town, &name).map(|(dir, _)| dir),
        Some(town.failed()),
        "{}",
        town.snapshot()
    );
}

#[test]
fn send_wait_times_out_with_124_and_the_request_stays_queued() {
    let town = Town::new();
    let out = town.send_wait("shutdown", "mayor", &["--timeout", "1s"]);
    assert_eq!(out.code, Some(124), "{out:#?}");
    assert!(
        out.stderr.contains("timed out"),
        "stderr should say it timed out: {out:#?}"
    );
    let path = out.sent_path();
    let name = file_name(&path);
    assert!(
        town.inbox().join(&name).exists(),
        "the request stays in inbox/: {}",
        town.snapshot()
    );
    assert!(!out.stdout.contains("processed"), "{out:#?}");

    // "It stays queued; the daemon will still handle it."
    town.start_dry();
    town.wait_processed(&name);
}

// ---------------------------------------------------------------------------
// requests

fn requests(town: &Town, extra: &[&str]) -> Out {
    let mut args = vec!["daemon", "requests"];
    args.extend_from_slice(extra);
    let out = town.gt_env(&args, &[("NO_COLOR", "1")]);
    out.assert_ok(&format!("gt daemon requests {extra:?}"));
    out
}

/// Checks one table row: time, agent, action, outcome, file and reason columns.
fn assert_row(row: &[String], agent: &str, action: &str, outcome: &str, reason: Option<&str>) {
    assert!(row.len() >= 5, "short row {row:?}");
    assert!(
        chrono::NaiveDateTime::parse_from_str(&row[0], "%Y-%m-%d %H:%M:%SZ").is_ok(),
        "first column is the time, in UTC: {row:?}"
    );
    assert_eq!(row[1], agent, "agent column: {row:?}");
    assert_eq!(row[2], action, "action column: {row:?}");
    assert_eq!(row[3], outcome, "outcome column: {row:?}");
    match reason {
        Some(r) => assert!(
            row.get(5).is_some_and(|c| c.contains(r)),
            "reason column should hold {r:?}: {row:?}"
        ),
        None => assert_eq!(row.len(), 5, "a processed row has no reason: {row:?}"),
    }
}

#[test]
fn requests_table_lists_outcomes_newest_first_and_filters() {
    let town = Town::new();
    town.start_dry();
    let (processed, failed) = town.one_processed_one_failed();

    let all = requests(&town, &[]);
    assert!(!has_ansi(&all.stdout), "{all:#?}");
    let rows = table_rows(&all.stdout);
    assert_eq!(rows.len(), 2, "two outcomes: {all:#?}");
    // The failed cycle was filed last: it comes first.
    assert_row(
        &rows[0],
        "mayor",
        "cycle",
        "failed",
        Some("town is shutting down"),
    );
    assert_row(&rows[1], "gastown/witness", "shutdown", "processed", None);

    let only_failed = table_rows(&requests(&town, &["--failed"]).stdout);
    assert_eq!(only_failed.len(), 1, "{only_failed:?}");
    assert_row(
        &only_failed[0],
        "mayor",
        "cycle",
        "failed",
        Some("town is shutting down"),
    );

    let only_processed = table_rows(&requests(&town, &["--processed"]).stdout);
    assert_eq!(only_processed.len(), 1, "{only_processed:?}");
    assert_row(
        &only_processed[0],
        "gastown/witness",
        "shutdown",
        "processed",
        None,
    );

    let newest = table_rows(&requests(&town, &["-n", "1"]).stdout);
    assert_eq!(newest.len(), 1, "-n 1: {newest:?}");
    assert_row(
        &newest[0],
        "mayor",
        "cycle",
        "failed",
        Some("town is shutting down"),
    );

    // --json: an array of sidecars with their file names, newest first.
    let out = requests(&town, &["--json"]);
    let v = one_json(&out, "requests --json");
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v:#}"));
    assert_eq!(arr.len(), 2, "{v:#}");
    for obj in arr {
        for key in [
            "file",
            "outcome",
            "error",
            "from",
            "action",
            "session",
            "finished_at",
            "daemon_pid",
        ] {
            assert!(obj.get(key).is_some(), "{key:?} missing in {obj:#}");
        }
        assert_eq!(
            obj["daemon_pid"].as_u64(),
            town.recorded_pid().map(u64::from)
        );
    }
    assert_eq!(arr[0]["file"], failed.as_str(), "{v:#}");
    assert_eq!(arr[0]["outcome"], "failed");
    assert_eq!(arr[0]["from"], "mayor");
    assert_eq!(arr[0]["action"], "cycle");
    assert_eq!(arr[0]["session"], "gt-mayor");
    assert!(arr[0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("town is shutting down")));
    assert_eq!(arr[1]["file"], processed.as_str(), "{v:#}");
    assert_eq!(arr[1]["outcome"], "processed");
    assert!(arr[1]["error"].is_null(), "{v:#}");
    assert_eq!(arr[1]["from"], "gastown/witness");
    assert_eq!(arr[1]["session"], "gt-gastown-witness");

    let one = one_json(&requests(&town, &["--json", "--failed", "-n", "1"]), "json");
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one:#}");
    assert_eq!(one[0]["file"], failed.as_str(), "{one:#}");
}

#[test]
fn requests_shows_reasons_of_rejected_files_with_unknown_fields_as_dashes() {
    let town = Town::new();
    town.start_dry();
    town.publish("garbage.json", "this is not json");
    let sc = town.wait_failed("garbage.json");
    assert!(sc["from"].is_null(), "{sc:#}");

    let rows = table_rows(&requests(&town, &[]).stdout);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1], "-", "unknown agent: {rows:?}");
    assert_eq!(rows[0][2], "-", "unknown action: {rows:?}");
    assert_eq!(rows[0][3], "failed", "{rows:?}");
    assert_eq!(
        rows[0][4], "garbage.json",
        "the file column names what to retry: {rows:?}"
    );
    assert!(
        rows[0].get(5).is_some_and(|r| r.contains("invalid JSON")),
        "{rows:?}"
    );
}

/// Where `needle` starts in `line`, in terminal columns.
fn display_column(line: &str, needle: &str) -> usize {
    let at = line
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {line:?}"));
    unicode_width::UnicodeWidthStr::width(&line[..at])
}

#[test]
fn requests_table_lines_up_wide_characters_by_display_width() {
    let town = Town::new();
    town.start_dry();
    // Both are two columns wide per character in a terminal: counted as
    // characters, the agent (17) and the file name (11) would seem to fit
    // narrower columns than they take.
    let (wide_agent, wide_file) = ("ラボラトリー日本語/witness", "作業-日本語.json");
    town.publish(wide_file, request_json(wide_agent, "cycle"));
    let sidecar = town.wait_failed(wide_file);
    assert_eq!(sidecar["from"], wide_agent, "{sidecar:#}");
    town.publish("plain.json", request_json("mayor", "shutdown"));
    town.wait_processed("plain.json");

    let out = requests(&town, &[]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {}", out.stdout);
    let (header, plain, wide) = (lines[0], lines[1], lines[2]);
    assert!(
        wide.contains(wide_agent) && plain.contains("plain.json"),
        "{}",
        out.stdout
    );
    let action = display_column(header, "ACTION");
    assert_eq!(display_column(wide, "cycle"), action, "{}", out.stdout);
    assert_eq!(display_column(plain, "shutdown"), action, "{}", out.stdout);
    let reason = display_column(header, "REASON");
    assert_eq!(
        display_column(wide, "bad \"from\""),
        reason,
        "{}",
        out.stdout
    );
    let file = display_column(header, "FILE");
    assert_eq!(display_column(plain, "plain.json"), file, "{}", out.stdout);
    assert_eq!(display_column(wide, wide_file), file, "{}", out.stdout);
}

#[test]
fn requests_with_nothing_filed_says_so() {
    let town = Town::new();
    let out = requests(&town, &[]);
    assert!(out.stdout.contains("No requests"), "{out:#?}");
    let v = one_json(&requests(&town, &["--json"]), "requests --json");
    assert_eq!(v, json!([]));
}

// ---------------------------------------------------------------------------
// retention

/// A filed request and its sidecar, both last modified `secs_ago` seconds ago.
fn file_by_hand(dir: &Path, name: &str, outcome: &str, secs_ago: u64) {
    fs::create_dir_all(dir).unwrap();
    let request = dir.join(name);
    fs::write(&request, request_json("mayor", "shutdown")).unwrap();
    let sidecar = dir.join(format!("{name}.result.json"));
    let error: Value = if outcome == "failed" {
        "unknown action \"reboot\"".into()
    } else {
        Value::Null
    };
    let finished = chrono::Utc::now() - chrono::Duration::seconds(secs_ago as i64);
    fs::write(
        &sidecar,
        json!({
            "outcome": outcome, "error": error, "from": "mayor", "action": "shutdown",
            "session": "gt-mayor", "finished_at": finished.to_rfc3339(), "daemon_pid": 1,
        })
        .to_string(),
    )
    .unwrap();
    set_mtime(&request, ago(secs_ago));
    set_mtime(&sidecar, ago(secs_ago));
}

#[test]
fn retention_prunes_old_outcomes_at_start_keeping_failed_ones_longer() {
    let mut town = Town::new();
    town.config(json!({ "keep_processed": "1h", "keep_failed": "2h" }));
    let (processed, failed) = (town.processed(), town.failed());
    file_by_hand(&processed, "old-processed.json", "processed", 90 * 60);
    file_by_hand(&processed, "fresh-processed.json", "processed", 0);
    file_by_hand(&failed, "recent-failed.json", "failed", 90 * 60);
    file_by_hand(&failed, "ancient-failed.json", "failed", 3 * 3600);
    // Put there by hand, without a sidecar: never pruned.
    fs::write(processed.join("by-hand.json"), "{}").unwrap();
    set_mtime(&processed.join("by-hand.json"), ago(3 * 3600));

    town.start_dry();
    let gone = |dir: &Path, name: &str| {
        !dir.join(name).exists() && !dir.join(format!("{name}.result.json")).exists()
    };
    town.wait_until(
        "old-processed (90 min > 1h) and ancient-failed (3h > 2h) pruned",
        DEADLINE,
        || gone(&processed, "old-processed.json") && gone(&failed, "ancient-failed.json"),
    );
    assert_eq!(
        ls(&processed),
        [
            "by-hand.json",
            "fresh-processed.json",
            "fresh-processed.json.result.json"
        ],
        "{}",
        town.snapshot()
    );
    assert_eq!(
        ls(&failed),
        ["recent-failed.json", "recent-failed.json.result.json"],
        "a 90-minute-old failure is kept: keep_failed is 2h\n{}",
        town.snapshot()
    );
    town.wait_until("the log to mention the pruning", DEADLINE, || {
        read_lines(&town.log_file())
            .iter()
            .any(|l| l.contains("pruned"))
    });
    let log = read_lines(&town.log_file());
    let pruned: Vec<&String> = log.iter().filter(|l| l.contains("pruned")).collect();
    assert!(
        pruned.iter().any(|l| l.contains("keep_processed")),
        "{pruned:?}"
    );
    assert!(
        pruned.iter().any(|l| l.contains("keep_failed")),
        "{pruned:?}"
    );
}
