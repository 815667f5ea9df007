//! Town-level guards: the crash-loop guard and `clear-backoff`,
//! `shutdown.lock` (no restarts, no pokes), `retry`, stale requests, and
//! request text that never reaches a shell.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{Duration as Age, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::support::catalogue::{case_bytes, cases, Case};
use crate::support::{request_at, request_json, Out, Town, DEADLINE};

fn timestamp_ago(age: Age) -> String {
    (Utc::now() - age).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn reason(sidecar: &Value) -> String {
    sidecar["error"].as_str().unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------
// Crash-loop guard

#[test]
fn crash_loop_guard_trips_clears_and_survives_a_daemon_restart() {
    let mut t = Town::new();
    t.config(json!({"max_restarts": 2, "restart_window": "1h"}));
    t.start_dry();

    // Two restarts of the Mayor within the window: both run (cycle and
    // restart count alike).
    t.publish("1-restart.json", request_json("mayor", "restart"));
    t.wait_processed("1-restart.json");
    t.publish("2-cycle.json", request_json("mayor", "cycle"));
    t.wait_processed("2-cycle.json");

    // The guard's memory survives a daemon restart.
    t.stop();
    t.start_dry();

    t.publish("3-restart.json", request_json("mayor", "restart"));
    let sc = t.wait_failed_with("3-restart.json", "crash-loop guard");
    assert_eq!(sc["session"], "gt-mayor", "{sc:#}");
    // The guard is per session: the Deacon may still restart.
    t.publish("3-deacon.json", request_json("deacon", "restart"));
    t.wait_processed("3-deacon.json");
    // shutdown is not a restart: never refused by the guard.
    t.publish("3-shutdown.json", request_json("mayor", "shutdown"));
    t.wait_processed("3-shutdown.json");

    let out = t.gt(&["daemon", "clear-backoff", "mayor"]);
    out.assert_ok("clear-backoff mayor");
    t.publish("4-restart.json", request_json("mayor", "restart"));
    t.wait_processed("4-restart.json");
    // Cleared, not disabled: the guard counts again from zero.
    t.publish("5-restart.json", request_json("mayor", "restart"));
    t.wait_processed("5-restart.json");
    t.publish("6-restart.json", request_json("mayor", "restart"));
    t.wait_failed_with("6-restart.json", "crash-loop guard");
}

// ---------------------------------------------------------------------------
// shutdown.lock

#[test]
fn shutdown_lock_refuses_cycle_and_restart_but_runs_shutdown() {
    let t = Town::new();
    t.start_dry();
    t.create_shutdown_lock();

    t.publish("cycle.json", request_json("mayor", "cycle"));
    t.wait_failed_with("cycle.json", "town is shutting down");
    t.publish("restart.json", request_json("gastown/witness", "restart"));
    t.wait_failed_with("restart.json", "town is shutting down");
    t.publish("shutdown.json", request_json("deacon", "shutdown"));
    t.wait_processed("shutdown.json");

    // Lifted: restarts run again.
    fs::remove_file(t.shutdown_lock()).unwrap();
    t.publish("after.json", request_json("mayor", "cycle"));
    t.wait_processed("after.json");
}

#[test]
fn shutdown_lock_stops_heartbeat_pokes_and_respawns_with_real_tmux() {
    let mut t = Town::new();
    t.config(json!({"heartbeat_interval": "1s"}));
    let lock = t.shutdown_lock();
    fs::write(&lock, b"").unwrap();
    // Agents that would be poked, and one to be shut down.
    t.tmux.new_session("gt-mayor", &["sleep", "600"]);
    t.tmux.new_session("gt-x-witness", &["sleep", "600"]);
    t.tmux.new_session("gt-y-refinery", &["sleep", "600"]);

    t.start();
    let first = t.state_u64("heartbeat_count");
    t.wait_until(
        "three heartbeats with shutdown.lock present",
        DEADLINE,
        || t.state_u64("heartbeat_count") >= first + 3,
    );
    for session in ["gt-mayor", "gt-x-witness"] {
        let pane = t.tmux.capture_pane(session);
        assert!(
            !pane.contains("HEARTBEAT"),
            "{session} was poked while shutdown.lock exists: {pane:?}\n{}",
            t.snapshot()
        );
    }

    // No agent is respawned; shutting one down still works.
    t.publish("respawn.json", request_json("deacon", "restart"));
    t.wait_failed_with("respawn.json", "town is shutting down");
    assert!(
        !t.tmux.has_session("gt-deacon"),
        "a session was created while the town shuts down"
    );
    t.publish("down.json", request_json("y/refinery", "shutdown"));
    t.wait_processed("down.json");
    assert!(!t.tmux.has_session("gt-y-refinery"));

    // Lock removed: the pokes resume.
    fs::remove_file(&lock).unwrap();
    t.wait_until(
        "the Mayor and the Witness are poked again",
        DEADLINE,
        || {
            t.tmux
                .capture_pane("gt-mayor")
                .contains("HEARTBEAT: check your rigs")
                && t.tmux
                    .capture_pane("gt-x-witness")
                    .contains("HEARTBEAT: check your workers")
        },
    );
}

// ---------------------------------------------------------------------------
// retry

fn retry(t: &Town, name: &str) -> Out {
    let out = t.gt(&["daemon", "retry", name]);
    out.assert_ok(&format!("retry {name}"));
    out
}

fn assert_retried_out_of_failed(t: &Town, name: &str) {
    assert!(
        !t.failed().join(name).exists(),
        "{name} still in failed/ after retry"
    );
    assert!(
        !t.failed().join(format!("{name}.result.json")).exists(),
        "{name}'s old sidecar still in failed/ after retry"
    );
}

#[test]
fn retry_puts_a_failed_request_back_and_it_is_consumed() {
    let t = Town::new();
    t.start_dry();
    let lock = t.shutdown_lock();
    fs::write(&lock, b"").unwrap();
    // Fresh, valid requests that fail only because of shutdown.lock.
    let a = request_json("mayor", "cycle");
    let b = request_json("deacon", "restart");
    t.publish("a.json", &a);
    t.publish("b.json", &b);
    t.wait_failed_with("a.json", "town is shutting down");
    t.wait_failed_with("b.json", "town is shutting down");
    fs::remove_file(&lock).unwrap();

    // While the daemon runs: back into the inbox, then consumed again.
    let out = retry(&t, "b.json");
    assert!(
        out.stdout.contains("inbox"),
        "retry prints where it put the request: {out:#?}"
    );
    assert_retried_out_of_failed(&t, "b.json");
    t.wait_processed("b.json");
    assert_eq!(fs::read_to_string(t.processed().join("b.json")).unwrap(), b);

    // While it is stopped: the request visibly waits in the inbox (bytes
    // unchanged) and is consumed at the next start.
    t.stop();
    retry(&t, "a.json");
    assert_retried_out_of_failed(&t, "a.json");
    assert_eq!(
        fs::read_to_string(t.inbox().join("a.json")).unwrap(),
        a,
        "retry moves the original bytes back into inbox/"
    );
    t.start_dry();
    t.wait_processed("a.json");
    assert_eq!(fs::read_to_string(t.processed().join("a.json")).unwrap(), a);

    // A name that is not in failed/: a clear error.
    let out = t.gt(&["daemon", "retry", "nope.json"]);
    assert!(
        !out.success(),
        "retry of a missing name must fail: {out:#?}"
    );
    assert!(out.stderr.contains("nope.json"), "{out:#?}");
}

// ---------------------------------------------------------------------------
// Stale requests

#[test]
fn requests_older_than_the_default_max_age_fail_as_stale() {
    let t = Town::new();
    t.start_dry();
    t.publish(
        "old.json",
        request_at("mayor", "shutdown", "2020-01-01T00:00:00Z"),
    );
    let sc = t.wait_failed_with("old.json", "request is stale");
    assert!(reason(&sc).contains("limit 6h"), "{sc:#}");
    // Two hours old is within the default 6 h.
    t.publish(
        "recent.json",
        request_at("mayor", "shutdown", &timestamp_ago(Age::hours(2))),
    );
    t.wait_processed("recent.json");
}

#[test]
fn max_request_age_from_config_is_honoured() {
    let mut t = Town::new();
    t.config(json!({"max_request_age": "1h"}));
    t.start_dry();
    t.publish(
        "two-hours.json",
        request_at("mayor", "shutdown", &timestamp_ago(Age::hours(2))),
    );
    let sc = t.wait_failed_with("two-hours.json", "request is stale");
    assert!(reason(&sc).contains("limit 1h"), "{sc:#}");
    t.publish(
        "half-hour.json",
        request_at("mayor", "shutdown", &timestamp_ago(Age::minutes(30))),
    );
    t.wait_processed("half-hour.json");
}

// ---------------------------------------------------------------------------
// No shell ever sees request text

/// Every file named `name` anywhere under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(files_named(&path, name));
        }
    }
    found
}

#[test]
fn shell_metacharacters_never_reach_a_shell_with_real_tmux() {
    let mut t = Town::new();
    // The agent is a real shell: whatever is typed into its pane runs, in
    // its work directory (the town: no mayor/ or rig directories exist).
    // Each shell appends a line to `primed` when it runs the prime text,
    // which is typed after prime_delay.
    t.config(json!({"agent_command": ["sh"], "prime_text": "echo primed >> primed"}));
    t.start();
    let now = Utc::now();

    // The catalogue's shell-injection identities; each would create
    // `gt-pwned` in its shell's working directory if it ever ran there.
    let hostile: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.file.starts_with("invalid/from-shell-"))
        .collect();
    assert_eq!(hostile.len(), 4, "the shell cases in fixtures/cases.json");
    for case in &hostile {
        t.publish(&case.inbox_name(), case_bytes(case, now));
    }
    // A valid restart whose other fields hold the same kind of shell text:
    // it runs for real, against a shell.
    let name = "valid-with-shell-text.json";
    t.publish(
        name,
        json!({
            "from": "mayor", "action": "restart",
            "timestamp": now.to_rfc3339(),
            "note": "$(id>gt-pwned)", "cmd": ";id>gt-pwned;", "x": "`id>gt-pwned`",
        })
        .to_string(),
    );
    let mut names: Vec<String> = hostile.iter().map(Case::inbox_name).collect();
    names.push(name.to_owned());
    // Each request processed here is a restart or cycle the daemon primed.
    let primed_shells = names
        .iter()
        .filter(|n| t.wait_filed(n).0 == t.processed())
        .count();
    assert!(t.tmux.has_session("gt-mayor"), "the restart ran for real");
    // Every shell the daemon primed has run the prime text, so nothing typed
    // into it before is still waiting to run.
    let primed = t.root().join("primed");
    t.wait_until(
        &format!("{primed_shells} agent shell(s) ran the prime text (a line each in primed)"),
        DEADLINE,
        || {
            fs::read_to_string(&primed)
                .unwrap_or_default()
                .lines()
                .count()
                >= primed_shells
        },
    );

    let pwned = files_named(t.root(), "gt-pwned");
    assert!(
        pwned.is_empty(),
        "request text reached a shell: {pwned:?}\n{}",
        t.snapshot()
    );
    for case in &hostile {
        let sc = t.wait_failed(&case.inbox_name());
        if let Err(problem) = case.check_reason(sc["error"].as_str().unwrap_or_default()) {
            panic!("{}: {problem}", case.file);
        }
    }
    assert_eq!(
        t.tmux.sessions(),
        vec!["gt-mayor".to_owned()],
        "no session for a hostile identity"
    );
}
