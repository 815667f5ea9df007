//! Logs that do not fill the disk (issue 3): size-based rotation of the
//! daemon's own log with `log_max_bytes` and `log_keep`.
//!
//! (Following the log across a rotation with `logs -f` is tested in
//! `cli_logs.rs`.)

mod common;
mod hardening_support;

use std::fs;

use serde_json::json;

use common::{request_json, Town, DEADLINE};
use hardening_support::*;

const MAX_BYTES: u64 = 2048;

/// The numbered generations present: `daemon.log.N` -> N.
fn generations(t: &Town) -> Vec<u32> {
    let mut found: Vec<u32> = common::ls(&t.daemon_dir())
        .iter()
        .filter_map(|n| n.strip_prefix("daemon.log.")?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

#[test]
fn log_rotates_by_size_and_keeps_log_keep_generations() {
    let mut t = Town::new();
    t.config(json!({"log_max_bytes": MAX_BYTES, "log_keep": 2}));
    let out = start_env_out(&t, &["--log-level", "debug"], &["--dry-run"], &[]);
    out.assert_ok("start --log-level debug --dry-run");

    // Each request logs at least one line of well over 100 bytes: 60 of them
    // are several times log_max_bytes. After each one, at rest, at most
    // log_keep old generations exist. (During a rotation the library renames
    // .2 to .3 before deleting it: a daemon.log.3 may flicker for an instant,
    // which is why this is checked at rest, not at every instant.)
    let mut rotated = false;
    for i in 0..60 {
        let name = format!("rot-{i:02}.json");
        t.publish(&name, request_json("mayor", "shutdown"));
        t.wait_processed(&name);
        t.wait_until(
            &format!("after {name}: no daemon.log.N beyond log_keep 2"),
            DEADLINE,
            || {
                let g = generations(&t);
                rotated |= g.contains(&2);
                g.iter().all(|&n| n <= 2)
            },
        );
    }
    assert!(rotated, "rotated at least twice");
    t.wait_until("daemon.log.1 and daemon.log.2 exist", DEADLINE, || {
        generations(&t) == vec![1, 2]
    });

    // Every generation is bounded: the limit plus at most one line.
    for name in ["daemon.log", "daemon.log.1", "daemon.log.2"] {
        let len = fs::metadata(t.daemon_dir().join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(
            len <= MAX_BYTES + 1024,
            "{name} is {len} bytes, limit {MAX_BYTES}\n{}",
            t.snapshot()
        );
        if name != "daemon.log" {
            assert!(len > 0, "{name} is empty");
        }
    }

    // The daemon keeps writing to daemon.log itself after the rotations.
    t.publish("after-rotation.json", request_json("deacon", "shutdown"));
    t.wait_processed("after-rotation.json");
    t.wait_until(
        "the outcome of after-rotation.json logged in daemon.log",
        DEADLINE,
        || {
            fs::read_to_string(t.log_path())
                .unwrap_or_default()
                .contains("after-rotation.json")
        },
    );
    assert_eq!(generations(&t), vec![1, 2], "still exactly log_keep files");
}
