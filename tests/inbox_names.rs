//! The daemon remembers no names: a name used again later is a new request.
//! (A "seen" set would both grow without bound and silently drop this one.)

mod common;

use common::{request_json, Town};

#[test]
fn a_name_published_again_after_filing_is_a_new_request() {
    let town = Town::new();
    town.start_dry();
    town.publish("again.json", request_json("mayor", "shutdown"));
    town.wait_processed("again.json");

    town.publish("again.json", request_json("deacon", "shutdown"));
    let second = town.wait_processed("again-1.json");
    assert_eq!(
        second["from"], "deacon",
        "the second file is its own request: {second:#}"
    );
    // The first outcome is untouched.
    let first = town.sidecar(&town.processed(), "again.json");
    assert_eq!(first["from"], "mayor", "{first:#}");
}

/// When the daemon's own event channel is full, the watcher drops events and
/// asks for a rescan: nothing waits for the periodic safety net.
#[test]
fn events_dropped_by_a_full_channel_cost_a_rescan_not_a_request() {
    let mut town = Town::new();
    // The periodic rescan would hide a lost event: push it out of reach.
    town.config(serde_json::json!({"rescan_interval": "1h"}));
    let mut cmd = town.command(&["daemon", "start", "--dry-run"]);
    cmd.env(gt::testing::ENABLE, "1")
        .env(gt::testing::CHANNEL_CAPACITY, "2")
        .env(gt::testing::REQUEST_DELAY_MS, "2");
    common::run_command(cmd).assert_ok("start with a two-slot channel");

    let names: Vec<String> = (0..300).map(|i| format!("r{i:03}.json")).collect();
    for name in &names {
        town.publish(name, request_json("mayor", "shutdown"));
    }
    town.wait_until("all 300 processed", common::DEADLINE, || {
        names.iter().all(|n| town.processed().join(n).exists())
    });
    assert!(common::ls(&town.inbox()).is_empty());
    assert_eq!(common::ls(&town.failed()), Vec::<String>::new());
}
