//! A flood far larger than the kernel's inotify queue: every request is
//! consumed exactly once.
//!
//! In `--dry-run`: tmux plays no part in finding files.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use serde_json::json;

use super::serial;
use crate::support::proc::{alive, inotify_fds, signal, Resume, Signal};
use crate::support::{count_entries, request_json, request_names, wait_every, Town, DEADLINE};

/// Requests in the flood: well past the kernel's default inotify queue
/// (max_queued_events = 16384 events) and the daemon's event channel.
const FLOOD: usize = 30_000;

#[test]
fn flood_beyond_the_inotify_queue_is_consumed_exactly_once() {
    let _serial = serial();
    let mut t = Town::new();
    // No periodic safety net during the test: only the rescan on overflow
    // can find the files whose events the kernel dropped.
    t.config(json!({"rescan_interval": "1h"}));
    // Each publish queues at least two inotify events (the temp file's
    // creation, the rename into the inbox), so the flood overflows the
    // kernel's queue whatever its configured size up to 2 * FLOOD.
    let queue: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    assert!(
        2 * FLOOD > queue,
        "the flood ({FLOOD}) must exceed the inotify queue ({queue} events)"
    );
    let pid = t.start_dry();
    assert_eq!(inotify_fds(pid), 1, "notify mode watches with inotify");

    // Stall the whole daemon (watcher thread included) so the kernel's
    // event queue overflows for certain, publish the flood, then resume.
    let body = request_json("mayor", "shutdown");
    let names: Vec<String> = (0..FLOOD).map(|i| format!("flood-{i:05}.json")).collect();
    {
        signal(pid, Signal::STOP);
        let _resume = Resume(pid);
        for name in &names {
            t.publish(name, &body);
        }
    } // SIGCONT

    wait_every(
        &format!("all {FLOOD} flood requests filed (inbox and processing empty)"),
        Duration::from_secs(90),
        Duration::from_millis(250),
        || count_entries(&t.inbox()) == 0 && count_entries(&t.processing()) == 0,
        || t.snapshot(),
    );

    // Every name exactly once in processed/, nothing else there, no
    // duplicates under a suffixed name, nothing in failed/.
    let processed = request_names(&t.processed());
    let sent: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let got: BTreeSet<&str> = processed.iter().map(String::as_str).collect();
    let missing: Vec<&&str> = sent.difference(&got).take(10).collect();
    let extra: Vec<&&str> = got.difference(&sent).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && processed.len() == FLOOD,
        "processed/ holds {} requests; missing (first 10): {missing:?}; \
         unexpected, e.g. duplicates (first 10): {extra:?}\n{}",
        processed.len(),
        t.snapshot()
    );
    assert_eq!(request_names(&t.failed()), Vec::<String>::new());
    // Each with its sidecar.
    let sidecars = fs::read_dir(t.processed())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".result.json"))
        .count();
    assert_eq!(sidecars, FLOOD, "one sidecar per processed request");

    // The counters reach state.json in batches: wait for the sum.
    wait_every(
        &format!("state.json requests_processed + requests_failed == {FLOOD}"),
        DEADLINE,
        Duration::from_millis(50),
        || t.state_u64("requests_processed") + t.state_u64("requests_failed") >= FLOOD as u64,
        || t.snapshot(),
    );
    let state = t.state();
    assert_eq!(state["requests_processed"], FLOOD as u64, "{state:#}");
    assert_eq!(state["requests_failed"], 0, "{state:#}");
    assert!(alive(pid), "the daemon survived the flood");
}
