//! Logs that do not fill the disk: size-based rotation of the daemon's own
//! log with `log_max_bytes` and `log_keep`.
//!
//! (Following the log across a rotation with `logs -f` is tested in the
//! cli tests' `logs` module.)

use std::fs;

use serde_json::json;

use crate::support::{ls, request_json, Town, DEADLINE};

const MAX_BYTES: u64 = 2048;

/// The numbered generations present: `daemon.log.N` -> N.
fn generations(t: &Town) -> Vec<u32> {
    let mut found: Vec<u32> = ls(t.daemon_dir())
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
    t.started(t.start_command(&["--log-level", "debug"], &["--dry-run"]));

    // Each request logs at least one line of well over 100 bytes: 60 of them
    // are several times log_max_bytes. After each one, at rest, at most
    // log_keep old generations exist (checked at rest, between requests).
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
    for (path, rotated) in [
        (t.log_file(), false),
        (t.rotated_log(1), true),
        (t.rotated_log(2), true),
    ] {
        let name = path.display();
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            len <= MAX_BYTES + 1024,
            "{name} is {len} bytes, limit {MAX_BYTES}\n{}",
            t.snapshot()
        );
        if rotated {
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
            fs::read_to_string(t.log_file())
                .unwrap_or_default()
                .contains("after-rotation.json")
        },
    );
    assert_eq!(generations(&t), vec![1, 2], "still exactly log_keep files");
}

#[test]
fn a_rotated_log_deleted_or_left_by_logrotate_never_stops_the_daemon() {
    let mut t = Town::new();
    t.config(json!({"log_max_bytes": 1024, "log_keep": 3}));
    // What logrotate may leave: a daemon.log.1 of its own.
    fs::write(t.rotated_log(1), b"left by logrotate\n").unwrap();
    t.started(t.start_command(&["--log-level", "debug"], &["--dry-run"]));
    let publish = |t: &Town, i: usize| {
        let name = format!("rot-{i:03}.json");
        t.publish(&name, request_json("mayor", "shutdown"));
        t.wait_processed(&name);
    };
    let mut i = 0;
    while generations(&t) != vec![1, 2, 3] {
        i += 1;
        assert!(i < 200, "no rotation\n{}", t.snapshot());
        publish(&t, i);
    }
    // A person deletes an old log.
    fs::remove_file(t.rotated_log(2)).unwrap();
    for _ in 0..20 {
        i += 1;
        publish(&t, i);
    }
    assert!(t.lock_held(), "the daemon runs\n{}", t.snapshot());
    let log = fs::read_to_string(t.log_file()).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
