//! Crash safety: `kill -9` while a burst is in flight loses no request and
//! runs none twice.
//!
//! Dry-run with the slow-consumer test hook, so the burst is still being
//! worked through when the daemon is killed; tmux plays no part.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::serial;
use crate::support::proc::{alive, kill9};
use crate::support::{count_entries, count_requests, request_names, Town, DEADLINE};

const BURST: usize = 500;

fn set(names: Vec<String>) -> BTreeSet<String> {
    names.into_iter().collect()
}

/// The sidecar of a filed request, which must be complete JSON.
fn readable_sidecar(t: &Town, dir: &Path, name: &str, was_in_hand: bool) -> Value {
    let path = dir.join(format!("{name}.result.json"));
    let bytes = fs::read(&path)
        .unwrap_or_else(|e| panic!("{name} is filed without its sidecar {path:?}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{name} is filed in {dir:?} with an unreadable sidecar ({e}): {:?}; \
             in hand at a kill -9: {was_in_hand}\n{}",
            String::from_utf8_lossy(&bytes),
            t.snapshot()
        )
    })
}

#[test]
fn kill_9_mid_burst_loses_nothing_and_runs_nothing_twice() {
    let _serial = serial();
    let t = Town::new();
    let slow = [(gt::testing::REQUEST_DELAY_MS, "5")];
    let pid1 = t.start_hooked(&["--dry-run"], &slow);

    // Distinct bytes per request, so a filed file can be checked unchanged.
    let now = chrono::Utc::now().to_rfc3339();
    let mut bodies = BTreeMap::new();
    for i in 0..BURST {
        let name = format!("burst-{i:03}.json");
        let body =
            json!({"from": "mayor", "action": "shutdown", "timestamp": now, "n": i}).to_string();
        t.publish(&name, &body);
        bodies.insert(name, body);
    }
    let sent: BTreeSet<String> = bodies.keys().cloned().collect();

    // Kill the daemon mid-way, start it again (still slow), kill again...
    // until a kill has caught a request in hand (in processing/): with a
    // 5 ms delay per request that is nearly always the first kill.
    let mut pid = pid1;
    let mut in_hand: BTreeSet<String> = BTreeSet::new();
    // In-hand requests whose sidecar was already complete at the kill (the
    // kill came between the sidecar and the move): name -> that directory.
    // A sidecar cut short by the kill proves nothing: that request is filed
    // as interrupted.
    let mut half_filed: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
    // Who filed each processed request, as seen right after each kill.
    let mut filed_by: BTreeMap<String, Value> = BTreeMap::new();
    let mut inbox_at_kill = BTreeSet::new();
    for round in 1..=10 {
        let target = count_requests(&t.processed()) + 40;
        t.wait_until(
            &format!("round {round}: the daemon has filed {target} of the burst"),
            DEADLINE,
            || count_requests(&t.processed()) >= target,
        );
        kill9(pid);
        t.wait_until(
            "the killed daemon is gone and its lock free",
            DEADLINE,
            || !alive(pid) && !t.lock_held(),
        );

        // Right after the kill: each request in exactly one place, and at
        // most the one in hand is in processing/.
        let inbox = set(request_names(&t.inbox()));
        let processing = set(request_names(&t.processing()));
        let processed = set(request_names(&t.processed()));
        let failed = set(request_names(&t.failed()));
        assert!(
            !inbox.is_empty(),
            "precondition: the daemon must be killed while requests still wait\n{}",
            t.snapshot()
        );
        assert!(
            processing.len() <= 1,
            "only the request in hand may be in processing/: {processing:?}"
        );
        let places = [&inbox, &processing, &processed, &failed];
        let total: usize = places.iter().map(|s| s.len()).sum();
        let union: BTreeSet<String> = places.iter().flat_map(|s| s.iter().cloned()).collect();
        assert_eq!(
            union,
            sent,
            "after kill -9 every request is in inbox/, processing/, processed/ or failed/\n{}",
            t.snapshot()
        );
        assert_eq!(total, BURST, "no request in two places at once");
        for name in &processed {
            filed_by.entry(name.clone()).or_insert_with(|| {
                readable_sidecar(&t, &t.processed(), name, false)["daemon_pid"].clone()
            });
        }
        inbox_at_kill = inbox;
        for name in &processing {
            for dir in [t.processed(), t.failed()] {
                let sidecar = dir.join(format!("{name}.result.json"));
                let complete =
                    fs::read(&sidecar).is_ok_and(|b| serde_json::from_slice::<Value>(&b).is_ok());
                if complete {
                    half_filed.insert(name.clone(), dir);
                }
            }
        }
        in_hand.extend(processing.iter().cloned());
        if !processing.is_empty() {
            break;
        }
        pid = t.start_hooked(&["--dry-run"], &slow);
    }
    assert!(
        !in_hand.is_empty(),
        "no kill caught a request in hand in 10 rounds\n{}",
        t.snapshot()
    );

    // Start again (without the slow hook): everything gets consumed.
    let pid2 = t.start_dry();
    assert_ne!(pid, pid2);
    t.wait_until("inbox/ and processing/ empty", DEADLINE, || {
        count_entries(&t.inbox()) == 0 && count_entries(&t.processing()) == 0
    });
    let processed = set(request_names(&t.processed()));
    let failed = set(request_names(&t.failed()));
    assert!(
        processed.is_disjoint(&failed),
        "a request filed twice: {:?}",
        processed.intersection(&failed).collect::<Vec<_>>()
    );
    let all: BTreeSet<String> = processed.union(&failed).cloned().collect();
    assert_eq!(
        all,
        sent,
        "every request filed exactly once (no loss, no suffixed duplicate)\n{}",
        t.snapshot()
    );
    assert_eq!(processed.len() + failed.len(), BURST);

    // Only requests in hand at a kill may have failed, as interrupted (not
    // run again: at most once).
    assert!(
        failed.is_subset(&in_hand),
        "failed {failed:?}, but only {in_hand:?} were in hand at a kill"
    );
    let sidecar_of = |dir: &Path, name: &str| -> Value {
        readable_sidecar(&t, dir, name, in_hand.contains(name))
    };
    // The request in hand at the kill may have run: it is never run again
    // but filed as interrupted (unless its filing had begun: then finished).
    for name in &in_hand {
        match half_filed.get(name) {
            None => assert!(
                failed.contains(name),
                "{name} was in hand at the kill -9: it must be filed as interrupted in failed/, \
                 not run again\n{}",
                t.snapshot()
            ),
            Some(dir) => assert!(
                dir.join(name).exists(),
                "{name} had its sidecar in {} at the kill: filing must finish there",
                dir.display()
            ),
        }
    }
    for name in &failed {
        let sc = sidecar_of(&t.failed(), name);
        assert_eq!(sc["outcome"], "failed", "{name}: {sc:#}");
        let reason = sc["error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("interrupted"),
            "{name}: reason {reason:?} should say interrupted"
        );
    }
    // Whatever a killed daemon filed stays filed by it: no later daemon
    // executed it again. What was waiting was executed by the last one.
    for name in &processed {
        let sc = sidecar_of(&t.processed(), name);
        assert_eq!(sc["outcome"], "processed", "{name}: {sc:#}");
        if let Some(by) = filed_by.get(name) {
            assert_eq!(
                &sc["daemon_pid"], by,
                "{name} was filed again after a kill: {sc:#}"
            );
        } else if inbox_at_kill.contains(name) {
            assert_eq!(sc["daemon_pid"], pid2, "{name}: {sc:#}");
        }
    }
    // Original bytes, wherever filed.
    for (name, body) in &bodies {
        let dir = if processed.contains(name) {
            t.processed()
        } else {
            t.failed()
        };
        assert_eq!(
            fs::read_to_string(dir.join(name)).unwrap(),
            *body,
            "{name} changed"
        );
    }
    // The last daemon counts exactly what it filed (its PID in the
    // sidecar): the requests it ran and the interrupted one(s).
    let by_second = processed
        .iter()
        .map(|n| sidecar_of(&t.processed(), n))
        .chain(failed.iter().map(|n| sidecar_of(&t.failed(), n)))
        .filter(|sc| sc["daemon_pid"] == pid2)
        .count() as u64;
    t.wait_until(
        &format!("state.json of the second daemon counts {by_second} requests"),
        Duration::from_secs(30),
        || t.state_u64("requests_processed") + t.state_u64("requests_failed") >= by_second,
    );
    let state = t.state();
    let failed_by_second = failed
        .iter()
        .filter(|n| sidecar_of(&t.failed(), n)["daemon_pid"] == pid2)
        .count() as u64;
    assert_eq!(state["requests_failed"], failed_by_second, "{state:#}");
    assert_eq!(
        state["requests_processed"].as_u64().unwrap_or(0) + failed_by_second,
        by_second,
        "{state:#}"
    );
}
