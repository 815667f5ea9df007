//! Watching that cannot miss a file (issue 3): a flood far larger than the
//! kernel's inotify queue, both publishing styles (rename-into and direct
//! create while still being written), and `watch_mode: "poll"`.
//!
//! All in `--dry-run`: tmux plays no part in finding files.

mod common;
mod hardening_support;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;

use common::{request_json, wait_every, Town};
use hardening_support::*;

/// Requests in the flood: well past the kernel's default inotify queue
/// (max_queued_events = 16384 events) and the daemon's event channel.
const FLOOD: usize = 30_000;

/// The flood saturates the disk and both cores; the tests that time a
/// half-written file must not run beside it, so this binary's tests take
/// turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
    let inbox = t.inbox();
    let body = request_json("mayor", "shutdown");
    let names: Vec<String> = (0..FLOOD).map(|i| format!("flood-{i:05}.json")).collect();
    {
        signal(pid, rustix::process::Signal::STOP);
        let _resume = Resume(pid);
        for name in &names {
            publish_fast(&inbox, name, body.as_bytes());
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
        LONG,
        Duration::from_millis(50),
        || t.state_u64("requests_processed") + t.state_u64("requests_failed") >= FLOOD as u64,
        || t.snapshot(),
    );
    let state = t.state();
    assert_eq!(state["requests_processed"], FLOOD as u64, "{state:#}");
    assert_eq!(state["requests_failed"], 0, "{state:#}");
    assert!(common::process_alive(pid), "the daemon survived the flood");
}

/// Writes a request by creating it in place (no rename): first half, flush,
/// a pause while the file is still open and incomplete, second half, close.
fn publish_in_place_slowly(t: &Town, name: &str, body: &str) {
    let (head, tail) = body.split_at(body.len() / 2);
    let mut file = fs::File::create(t.inbox().join(name)).expect("create request in place");
    file.write_all(head.as_bytes()).unwrap();
    file.flush().unwrap();
    // Not an assertion: the window in which a careless daemon would take
    // the half-written file for invalid JSON.
    std::thread::sleep(Duration::from_millis(400));
    file.write_all(tail.as_bytes()).unwrap();
    file.flush().unwrap();
    drop(file);
}

fn both_publishing_styles_are_consumed(t: &Town) {
    // Style 1: write a dot-temp file, rename into the inbox.
    let renamed = request_json("mayor", "shutdown");
    t.publish("renamed-in.json", &renamed);
    t.wait_processed("renamed-in.json");
    assert_eq!(
        fs::read(t.processed().join("renamed-in.json")).unwrap(),
        renamed.as_bytes()
    );

    // Style 2: created in place, written in two parts with a pause.
    let direct = request_json("deacon", "shutdown");
    publish_in_place_slowly(t, "created-in-place.json", &direct);
    let (dir, sidecar) = t.wait_filed("created-in-place.json");
    assert_eq!(
        dir,
        t.processed(),
        "a file still being written must not be taken early: sidecar {sidecar:#}\n{}",
        t.snapshot()
    );
    assert_eq!(
        fs::read(t.processed().join("created-in-place.json")).unwrap(),
        direct.as_bytes(),
        "filed with all its bytes"
    );
    assert_eq!(sidecar["from"], "deacon");
    assert_eq!(request_names(&t.failed()), Vec::<String>::new());
}

#[test]
fn rename_into_and_direct_create_are_both_consumed_with_notify() {
    let _serial = serial();
    let mut t = Town::new();
    t.config(json!({"rescan_interval": "1h"}));
    t.start_dry();
    both_publishing_styles_are_consumed(&t);
}

#[test]
fn poll_mode_consumes_requests_end_to_end() {
    let _serial = serial();
    let mut t = Town::new();
    t.config(json!({"watch_mode": "poll", "poll_interval": "200ms", "rescan_interval": "1h"}));
    // A request waiting before the start, then more while it runs.
    t.publish("before-start.json", request_json("mayor", "shutdown"));
    let pid = t.start_dry();
    t.wait_processed("before-start.json");

    // Polling, not notify: the log says so and the daemon holds no inotify
    // instance at all.
    t.wait_until("log says the inbox is polled", LONG, || {
        all_logs(&t).contains("polling")
    });
    assert_eq!(
        inotify_fds(pid),
        0,
        "watch_mode poll must not use inotify\n{}",
        t.snapshot()
    );

    both_publishing_styles_are_consumed(&t);
    for i in 0..20 {
        t.publish(
            &format!("poll-{i:02}.json"),
            request_json("mayor", "shutdown"),
        );
    }
    for i in 0..20 {
        t.wait_processed(&format!("poll-{i:02}.json"));
    }
    t.wait_until("state.json counts all 23 requests", LONG, || {
        t.state_u64("requests_processed") == 23
    });
}
