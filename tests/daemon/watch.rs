//! Watching that cannot miss a file: both publishing styles (rename-into
//! and direct create while still being written), `watch_mode: "poll"`, the
//! fallback to polling when the watch is refused, and events dropped by a
//! full channel. (The flood beyond the kernel's queue is a stress test.)
//!
//! All in `--dry-run`: tmux plays no part in finding files.

use std::fs;
use std::io::Write;

use serde_json::json;

use crate::support::command::with_hooks;
use crate::support::proc::inotify_fds;
use crate::support::{filed, ls, request_json, request_names, Town, DEADLINE};

/// Writes a request by creating it in place (no rename), as a writer that
/// is slow to finish would: the first part (up to the first comma, where
/// JSON allows blanks), then a blank at every poll, keeping the file open,
/// incomplete and freshly modified, until the daemon has taken it out of
/// the inbox; only then the rest. Returns every byte written.
fn publish_in_place_slowly(t: &Town, name: &str, body: &str) -> Vec<u8> {
    let cut = body.find(',').expect("a comma in the request") + 1;
    let (head, tail) = body.split_at(cut);
    let path = t.inbox().join(name);
    let mut file = fs::File::create(&path).expect("create request in place");
    let mut written = head.as_bytes().to_vec();
    file.write_all(head.as_bytes()).unwrap();
    t.wait_until(
        &format!("the daemon to take the half-written {name} out of the inbox"),
        DEADLINE,
        || {
            if !path.exists() {
                return true;
            }
            file.write_all(b" ").unwrap();
            written.push(b' ');
            false
        },
    );
    // Seen, claimed and (if the daemon is right) set aside as still being
    // written: the rest arrives through the same open file.
    file.write_all(tail.as_bytes()).unwrap();
    written.extend_from_slice(tail.as_bytes());
    drop(file);
    written
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

    // Style 2: created in place, still being written when the daemon
    // first looks at it.
    let direct = publish_in_place_slowly(
        t,
        "created-in-place.json",
        &request_json("deacon", "shutdown"),
    );
    let (dir, sidecar) = t.wait_filed("created-in-place.json");
    assert_eq!(
        dir,
        t.processed(),
        "a file still being written must not be taken early: sidecar {sidecar:#}\n{}",
        t.snapshot()
    );
    assert_eq!(
        fs::read(t.processed().join("created-in-place.json")).unwrap(),
        direct,
        "filed with all its bytes"
    );
    assert_eq!(sidecar["from"], "deacon");
    assert_eq!(request_names(&t.failed()), Vec::<String>::new());
}

#[test]
fn rename_into_and_direct_create_are_both_consumed_with_notify() {
    let mut t = Town::new();
    t.config(json!({"rescan_interval": "1h"}));
    t.start_dry();
    both_publishing_styles_are_consumed(&t);
}

#[test]
fn poll_mode_consumes_requests_end_to_end() {
    let mut t = Town::new();
    t.config(json!({"watch_mode": "poll", "poll_interval": "200ms", "rescan_interval": "1h"}));
    // A request waiting before the start, then more while it runs.
    t.publish("before-start.json", request_json("mayor", "shutdown"));
    let pid = t.start_dry();
    t.wait_processed("before-start.json");

    // Polling, not notify: the log says so and the daemon holds no inotify
    // instance at all.
    t.wait_until("log says the inbox is polled", DEADLINE, || {
        t.all_logs().contains("polling")
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
    t.wait_until("state.json counts all 23 requests", DEADLINE, || {
        t.state_u64("requests_processed") == 23
    });
}

/// When the watcher cannot be set up (watch limits, NFS), the daemon says
/// so in its log and polls the inbox instead of going deaf.
#[test]
fn refused_watch_falls_back_to_polling_and_still_consumes() {
    let mut town = Town::new();
    town.config(json!({"poll_interval": "200ms"}));
    town.start_hooked(&["--dry-run"], &[(gt::testing::NOTIFY_FAIL, "1")]);

    town.wait_until("the log reports the fallback", DEADLINE, || {
        fs::read_to_string(town.log_file()).is_ok_and(|log| log.contains("falling back to polling"))
    });
    town.publish("polled.json", request_json("mayor", "shutdown"));
    let sidecar = town.wait_processed("polled.json");
    assert_eq!(sidecar["session"], "gt-mayor");
}

/// When the daemon's own event channel is full, the watcher drops events and
/// asks for a rescan: nothing waits for the periodic safety net. The
/// daemon's debug log shows that events were dropped and what the rescan
/// found (`why="event channel full"`): without the tiny channel the same
/// flood never fills it, and this test fails waiting for that line.
#[test]
fn events_dropped_by_a_full_channel_cost_a_rescan_not_a_request() {
    let mut town = Town::new();
    // The periodic rescan would hide a lost event: push it out of reach.
    town.config(json!({"rescan_interval": "1h"}));
    // At debug level the consumer logs why it scanned the inbox.
    let mut start = town.start_command(&["--log-level", "debug"], &["--dry-run"]);
    with_hooks(
        &mut start,
        &[
            (gt::testing::CHANNEL_CAPACITY, "2"),
            (gt::testing::REQUEST_DELAY_MS, "2"),
        ],
    );
    town.started(start);
    // The start-up scan is behind us once a first request is handled: from
    // here only events, or a rescan they asked for, can find a file.
    town.publish("first.json", request_json("mayor", "shutdown"));
    town.wait_processed("first.json");

    let names: Vec<String> = (0..300).map(|i| format!("r{i:03}.json")).collect();
    for name in &names {
        town.publish(name, request_json("mayor", "shutdown"));
    }
    town.wait_until("all 300 filed", DEADLINE, || {
        names.iter().all(|n| filed(&town, n).is_some())
    });
    for name in &names {
        town.wait_processed(name);
    }
    assert!(ls(&town.inbox()).is_empty());
    assert_eq!(ls(&town.failed()), Vec::<String>::new());
    town.wait_log_line(
        "the debug line of a rescan that the full channel asked for",
        |l| l.contains("inbox scan found requests") && l.contains(r#"why="event channel full""#),
    );
}

/// While a drain has more names in hand than a batch, the watch is paused
/// (its events would add nothing and cost a wake-up per claim); once the
/// drain is done it is resumed with a rescan, which finds what was
/// published meanwhile, unannounced.
#[test]
fn a_request_published_while_a_drain_has_the_watch_paused_is_found_after_it() {
    let mut town = Town::new();
    // No periodic rescan to find it instead.
    town.config(json!({"rescan_interval": "1h"}));
    let backlog: Vec<String> = (0..100).map(|i| format!("b{i:03}.json")).collect();
    for name in &backlog {
        town.publish(name, request_json("mayor", "shutdown"));
    }
    let mut start = town.start_command(&[], &["--dry-run"]);
    // 100 found by the start-up scan, 20 ms each: a drain of 2 s.
    with_hooks(&mut start, &[(gt::testing::REQUEST_DELAY_MS, "20")]);
    town.started(start);
    town.wait_processed("b000.json");
    town.publish("late.json", request_json("mayor", "shutdown"));
    assert!(
        filed(&town, "b099.json").is_none(),
        "published during the drain\n{}",
        town.snapshot()
    );
    town.wait_processed("late.json");
    // And the watch is back: a request after the drain is announced.
    town.publish("after.json", request_json("mayor", "shutdown"));
    town.wait_processed("after.json");
}
