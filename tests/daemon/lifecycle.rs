//! start / status / stop / single instance / crash recovery / logs / config /
//! town discovery, against the real binary.

use std::fs;
use std::path::Path;

use serde_json::json;

use crate::support::proc::{alive, kill9};
use crate::support::{gt_command, parse_pid, read_lines, request_json, run, Town, DEADLINE};

#[test]
fn start_status_stop_status() {
    let t = Town::new();

    let pid = t.start();
    assert!(
        alive(pid),
        "reported PID {pid} is not alive\n{}",
        t.snapshot()
    );
    assert_eq!(
        t.recorded_pid(),
        Some(pid),
        "daemon.pid must hold the reported PID"
    );
    assert!(
        t.lock_held(),
        "daemon.lock must be held while running\n{}",
        t.snapshot()
    );
    // `start` returns once the daemon is up: state.json already says so.
    let state = t.state();
    assert_eq!(state["running"], true, "state.json after start: {state:#}");
    assert_eq!(state["pid"], pid, "state.json after start: {state:#}");

    let out = t.gt(&["daemon", "status"]);
    out.assert_ok("status while running");
    let text = out.stdout.to_lowercase();
    assert!(
        text.contains("running") && !text.contains("not running"),
        "status text: {out:#?}"
    );
    assert!(
        out.stdout.contains(&pid.to_string()),
        "status must show the PID {pid}: {out:#?}"
    );

    let status = t.status_json();
    assert_eq!(status["running"], true, "status --json: {status:#}");
    assert_eq!(status["pid"], pid, "status --json: {status:#}");
    for key in [
        "started_at",
        "heartbeat_count",
        "requests_processed",
        "requests_failed",
        "town_root",
    ] {
        assert!(
            status.get(key).is_some(),
            "status --json lacks state field {key}: {status:#}"
        );
    }

    let out = t.stop();
    assert!(
        out.stdout.contains("Daemon stopped"),
        "stop output: {out:#?}"
    );
    assert!(
        out.stdout.contains(&pid.to_string()),
        "stop names the PID: {out:#?}"
    );
    assert!(
        !t.lock_held(),
        "lock still held after stop\n{}",
        t.snapshot()
    );
    t.wait_daemon_gone(pid);

    let out = t.gt(&["daemon", "status"]);
    assert!(
        out.all().to_lowercase().contains("not running"),
        "status after stop: {out:#?}"
    );
    let status = t.status_json();
    assert_eq!(
        status["running"], false,
        "status --json after stop: {status:#}"
    );
    assert_eq!(
        t.state()["running"],
        false,
        "state.json after a clean stop: {:#}",
        t.state()
    );

    // Stopping again is not an error.
    let out = t.stop();
    assert!(out.stdout.contains("not running"), "second stop: {out:#?}");
}

#[test]
fn second_start_starts_no_second_daemon() {
    let t = Town::new();
    let pid = t.start();

    let out = t.gt(&["daemon", "start"]);
    out.assert_ok("second start");
    assert!(
        out.stdout.to_lowercase().contains("already running"),
        "second start output: {out:#?}"
    );
    assert_eq!(
        parse_pid(&out.stdout),
        Some(pid),
        "second start must report the same PID: {out:#?}"
    );

    assert!(alive(pid), "first daemon died\n{}", t.snapshot());
    assert_eq!(
        t.recorded_pid(),
        Some(pid),
        "daemon.pid was overwritten\n{}",
        t.snapshot()
    );
    assert_eq!(t.status_json()["pid"], pid);
    // Exactly one process holds (or waits for) the lock: the first daemon.
    assert_eq!(
        t.lock_holders(),
        vec![pid],
        "flocks on daemon.lock (from /proc/locks)\n{}",
        t.snapshot()
    );
}

#[test]
fn kill_9_then_start_works_again() {
    let t = Town::new();
    let pid1 = t.start();
    kill9(pid1);
    t.wait_until("killed daemon gone", DEADLINE, || !alive(pid1));

    // The lock decides, not the stale PID file or state.json.
    t.wait_until("lock released by the dead daemon", DEADLINE, || {
        !t.lock_held()
    });
    let status = t.status_json();
    assert_eq!(
        status["running"], false,
        "status --json after kill -9: {status:#}"
    );

    let pid2 = t.start();
    assert_ne!(pid1, pid2, "a new daemon must have been started");
    assert!(alive(pid2));
    let status = t.status_json();
    assert_eq!(
        status["running"], true,
        "status --json after restart: {status:#}"
    );
    assert_eq!(
        status["pid"], pid2,
        "status --json after restart: {status:#}"
    );
    assert_eq!(t.state()["pid"], pid2);
}

#[test]
fn unknown_config_key_refuses_to_start() {
    let mut t = Town::new();
    t.config(json!({"heartbeat_intervall": "1s"}));
    let out = t.gt(&["daemon", "start", "--timeout", "15s"]);
    assert!(
        !out.success(),
        "start with an unknown config key must fail: {out:#?}"
    );
    assert!(
        out.all().contains("heartbeat_intervall"),
        "the error must name the key: {out:#?}"
    );
    assert!(
        !t.lock_held(),
        "no daemon may be left running\n{}",
        t.snapshot()
    );
    assert_eq!(t.status_json()["running"], false);
}

#[test]
fn bad_config_value_refuses_to_start() {
    let mut t = Town::new();
    t.config(json!({"kill_grace": "soon"}));
    let out = t.gt(&["daemon", "start", "--timeout", "15s"]);
    assert!(
        !out.success(),
        "start with a bad config value must fail: {out:#?}"
    );
    assert!(
        out.all().contains("kill_grace"),
        "the error must name the key: {out:#?}"
    );
    assert!(
        !t.lock_held(),
        "no daemon may be left running\n{}",
        t.snapshot()
    );
}

#[test]
fn logs_n_prints_the_last_lines() {
    let t = Town::new();
    t.start_dry();
    for i in 0..3 {
        t.publish(&format!("r{i}.json"), request_json("mayor", "cycle"));
    }
    for i in 0..3 {
        t.wait_processed(&format!("r{i}.json"));
    }
    t.stop();
    // The daemon is stopped, so the log no longer changes under us.
    let lines = read_lines(&t.log_file());
    assert!(
        lines.len() > 5,
        "expected more than 5 log lines after start, 3 requests and stop:\n{lines:#?}"
    );

    let out = t.gt(&["daemon", "logs", "-n", "5"]);
    out.assert_ok("logs -n 5");
    let printed: Vec<&str> = out.stdout.lines().collect();
    let expected: Vec<&str> = lines[lines.len() - 5..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        printed, expected,
        "logs -n 5 must print exactly the last 5 lines of daemon.log"
    );

    // One log line per request outcome, naming the file.
    let log = lines.join("\n");
    for i in 0..3 {
        assert!(
            log.contains(&format!("r{i}.json")),
            "the log must name request r{i}.json:\n{log}"
        );
    }
}

#[test]
fn town_is_discovered_from_a_subdirectory_and_from_gt_town_root() {
    let t = Town::new();
    let pid = t.start();
    let sub = t.root().join("mayor").join("deep").join("er");
    fs::create_dir_all(&sub).unwrap();

    let mut cmd = gt_command();
    cmd.args(["daemon", "status", "--json"]).current_dir(&sub);
    let out = run(cmd);
    out.assert_ok("status from a subdirectory of the town");
    let status: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("status --json");
    assert_eq!(
        status["running"],
        true,
        "status from {}: {status:#}",
        sub.display()
    );
    assert_eq!(
        status["pid"],
        pid,
        "status from {} found another town: {status:#}",
        sub.display()
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let mut cmd = gt_command();
    cmd.args(["daemon", "status", "--json"])
        .current_dir(elsewhere.path())
        .env(gt::town::TOWN_ENV, t.root());
    let out = run(cmd);
    out.assert_ok("status with GT_TOWN_ROOT");
    let status: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("status --json");
    assert_eq!(status["pid"], pid, "status with GT_TOWN_ROOT: {status:#}");
}

fn town_at(dir: &Path) -> gt::town::Town {
    gt::town::Town::at(dir).expect("an existing directory")
}

fn assert_outside_any_town(dir: &Path) {
    for a in dir.ancestors() {
        assert!(
            !town_at(a).daemon_dir().is_dir() && !a.join("mayor/town.json").is_file(),
            "test precondition: {} must not be inside a town, but {} looks like one",
            dir.display(),
            a.display()
        );
    }
}

#[test]
fn no_town_found_says_how_to_name_one() {
    let outside = tempfile::tempdir().unwrap();
    assert_outside_any_town(outside.path());
    for town_env in [None, Some("")] {
        let mut cmd = gt_command();
        cmd.args(["daemon", "status"]).current_dir(outside.path());
        if let Some(v) = town_env {
            cmd.env(gt::town::TOWN_ENV, v);
        }
        let out = run(cmd);
        assert!(
            !out.success(),
            "status outside any town (GT_TOWN_ROOT={town_env:?}) must fail: {out:#?}"
        );
        assert_ne!(out.code, None, "killed by a signal: {out:#?}");
        let all = out.all();
        assert!(
            all.contains("--town") && all.contains("GT_TOWN_ROOT"),
            "the error must say how to name a town: {out:#?}"
        );
        assert!(
            !town_at(outside.path()).daemon_dir().exists(),
            "status must not create a town"
        );
    }
}
