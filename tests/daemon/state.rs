//! state.json: fields, counters and heartbeat bookkeeping.

use serde_json::json;

use crate::support::{request_json, Town, DEADLINE};

#[test]
fn state_json_has_the_fields_and_counts_requests() {
    let t = Town::new();
    let pid = t.start_dry();

    let s = t.state();
    assert_eq!(s["running"], true, "{s:#}");
    assert_eq!(s["pid"], pid, "{s:#}");
    assert_eq!(
        s["town_root"].as_str().map(std::path::Path::new),
        Some(t.root()),
        "{s:#}"
    );
    assert!(s["version"].is_string(), "{s:#}");
    let started = s["started_at"]
        .as_str()
        .unwrap_or_else(|| panic!("started_at: {s:#}"));
    chrono::DateTime::parse_from_rfc3339(started)
        .unwrap_or_else(|e| panic!("started_at {started:?}: {e}"));
    for key in [
        "heartbeat_count",
        "requests_processed",
        "requests_failed",
        "inbox_pending",
    ] {
        assert!(s[key].is_u64(), "{key} must be a number: {s:#}");
    }
    assert!(
        s.get("last_heartbeat").is_some() && s.get("last_request_at").is_some(),
        "{s:#}"
    );
    let (p0, f0) = (
        t.state_u64("requests_processed"),
        t.state_u64("requests_failed"),
    );

    t.publish("ok1.json", request_json("mayor", "restart"));
    t.publish("ok2.json", request_json("deacon", "cycle"));
    t.publish("bad.json", "");
    t.wait_processed("ok1.json");
    t.wait_processed("ok2.json");
    let sc = t.wait_failed("bad.json");
    assert!(
        sc["error"]
            .as_str()
            .unwrap_or_default()
            .contains("file is empty"),
        "{sc:#}"
    );

    t.wait_until(
        "requests_processed grows by 2 and requests_failed by 1",
        DEADLINE,
        || t.state_u64("requests_processed") >= p0 + 2 && t.state_u64("requests_failed") > f0,
    );
    t.wait_until("last_request_at set", DEADLINE, || {
        t.try_state()
            .is_some_and(|s| s["last_request_at"].is_string())
    });
    let s = t.state();
    assert_eq!(
        s["requests_processed"],
        p0 + 2,
        "exactly two processed: {s:#}"
    );
    assert_eq!(s["requests_failed"], f0 + 1, "exactly one failed: {s:#}");
    t.wait_until("inbox_pending back to 0", DEADLINE, || {
        t.try_state().is_some_and(|s| s["inbox_pending"] == 0)
    });
}

#[test]
fn heartbeat_count_grows_and_last_heartbeat_moves() {
    let mut t = Town::new();
    t.config(json!({"heartbeat_interval": "1s"}));
    t.start_dry();

    // The first heartbeat happens at start-up.
    t.wait_until("first heartbeat recorded", DEADLINE, || {
        t.state_u64("heartbeat_count") >= 1
    });
    let first = t.state();
    let n = first["heartbeat_count"].as_u64().unwrap();
    let last = first["last_heartbeat"]
        .as_str()
        .unwrap_or_else(|| panic!("last_heartbeat: {first:#}"))
        .to_owned();
    chrono::DateTime::parse_from_rfc3339(&last)
        .unwrap_or_else(|e| panic!("last_heartbeat {last:?}: {e}"));

    t.wait_until("heartbeat_count grows by 2", DEADLINE, || {
        t.state_u64("heartbeat_count") >= n + 2
    });
    let later = t.state();
    assert_ne!(
        later["last_heartbeat"], first["last_heartbeat"],
        "last_heartbeat must move: {later:#}"
    );
    assert_eq!(later["running"], true);
}

#[test]
fn clean_stop_leaves_running_false_and_keeps_the_counters() {
    let t = Town::new();
    t.start_dry();
    t.publish("a.json", request_json("mayor", "shutdown"));
    t.wait_processed("a.json");
    t.wait_until("the request counted", DEADLINE, || {
        t.state_u64("requests_processed") >= 1
    });
    t.stop();
    let s = t.state();
    assert_eq!(s["running"], false, "{s:#}");
    assert_eq!(s["requests_processed"], 1, "{s:#}");
}
