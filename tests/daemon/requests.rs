//! Consumption of requests: send, backlog at start, names used again,
//! interrupted leftovers and a filing cut short by a crash.

use std::fs;

use serde_json::Value;

use crate::support::{count_entries, ls, request_json, request_names, Town, DEADLINE};

#[test]
fn send_in_dry_run_is_consumed_into_processed_with_a_sidecar() {
    let t = Town::new();
    let pid = t.start_dry();

    let path = t.send("cycle", "mayor");
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.ends_with(".json") && !name.starts_with('.'),
        "send must publish a visible *.json name: {name}"
    );

    let sc = t.wait_processed(&name);
    assert_eq!(sc["error"], Value::Null, "sidecar: {sc:#}");
    assert_eq!(sc["from"], "mayor", "sidecar: {sc:#}");
    assert_eq!(sc["action"], "cycle", "sidecar: {sc:#}");
    assert_eq!(sc["session"], "gt-mayor", "sidecar: {sc:#}");
    assert_eq!(sc["daemon_pid"], pid, "sidecar: {sc:#}");
    let finished = sc["finished_at"]
        .as_str()
        .unwrap_or_else(|| panic!("finished_at: {sc:#}"));
    chrono::DateTime::parse_from_rfc3339(finished)
        .unwrap_or_else(|e| panic!("finished_at {finished:?}: {e}"));

    // The filed request is the request `send` wrote, unchanged.
    let filed: Value = serde_json::from_slice(&fs::read(t.processed().join(&name)).unwrap())
        .expect("filed request is JSON");
    assert_eq!(filed["from"], "mayor");
    assert_eq!(filed["action"], "cycle");
    assert!(filed["timestamp"].is_string(), "{filed:#}");

    assert!(!path.exists(), "the request must have left the inbox");
    assert!(
        ls(&t.processing()).is_empty(),
        "processing/ must be empty: {:?}",
        ls(&t.processing())
    );
    // Dry run: tmux was not touched.
    assert!(
        !t.tmux.has_session("gt-mayor"),
        "dry run must not create a session\n{}",
        t.snapshot()
    );
}

#[test]
fn published_request_keeps_its_bytes_when_filed() {
    let t = Town::new();
    t.start_dry();
    let body = format!(
        "{}\n",
        request_json("gastown/witness", "restart").replace(",", ", ")
    );
    t.publish("w.json", &body);
    let sc = t.wait_processed("w.json");
    assert_eq!(sc["session"], "gt-gastown-witness", "sidecar: {sc:#}");
    assert_eq!(
        fs::read_to_string(t.processed().join("w.json")).unwrap(),
        body,
        "original bytes must be kept"
    );

    // A bad one is filed too, with a reason, bytes unchanged.
    t.publish("bad.json", "{not json");
    let sc = t.wait_failed("bad.json");
    let err = sc["error"].as_str().unwrap_or_default();
    assert!(err.contains("invalid JSON"), "sidecar: {sc:#}");
    assert_eq!(
        fs::read_to_string(t.failed().join("bad.json")).unwrap(),
        "{not json"
    );
}

#[test]
fn requests_dropped_while_the_daemon_is_down_are_consumed_at_start() {
    let t = Town::new();
    // The inbox exists before any daemon ran (agents create it if needed).
    let names: Vec<String> = (0..5).map(|i| format!("early-{i}.json")).collect();
    for (i, n) in names.iter().enumerate() {
        let from = ["mayor", "deacon", "x/witness", "x/refinery", "x-witness"][i];
        t.publish(n, request_json(from, "restart"));
    }
    // An in-progress write and a non-JSON name are never touched.
    fs::write(t.inbox().join(".half-written.json.tmp"), "{").unwrap();
    fs::write(t.inbox().join("notes.txt"), "hello").unwrap();

    t.start_dry();
    for n in &names {
        t.wait_processed(n);
    }
    t.wait_until("state.json counts the 5 requests", DEADLINE, || {
        t.state_u64("requests_processed") >= 5
    });
    let inbox = ls(&t.inbox());
    assert_eq!(
        inbox,
        vec![".half-written.json.tmp", "notes.txt"],
        "left alone in the inbox"
    );
    assert_eq!(t.state_u64("requests_failed"), 0, "{:#}", t.state());
}

#[test]
fn leftover_in_processing_becomes_an_interrupted_failure_and_is_not_executed() {
    let t = Town::new();
    fs::create_dir_all(t.processing()).unwrap();
    // A real restart of the Mayor, claimed by a daemon that then died.
    let body = request_json("mayor", "restart");
    fs::write(t.processing().join("left.json"), &body).unwrap();

    t.start(); // not a dry run: a re-execution would create gt-mayor
    let sc = t.wait_failed("left.json");
    let err = sc["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("interrupted: the daemon stopped while executing this request"),
        "reason must say interrupted: {sc:#}"
    );
    assert_eq!(
        fs::read_to_string(t.failed().join("left.json")).unwrap(),
        body,
        "original bytes must be kept"
    );
    assert!(
        ls(&t.processing()).is_empty(),
        "processing/ must be empty: {:?}",
        ls(&t.processing())
    );

    // Show that this daemon does execute real restarts, then that the
    // leftover's restart still has not happened.
    t.publish("after.json", request_json("deacon", "restart"));
    t.wait_processed("after.json");
    assert!(
        t.tmux.has_session("gt-deacon"),
        "a real restart must create gt-deacon\n{}",
        t.snapshot()
    );
    assert!(
        !t.tmux.has_session("gt-mayor"),
        "the interrupted restart of gt-mayor was executed\n{}",
        t.snapshot()
    );
    t.wait_until(
        "state.json counts the interrupted failure",
        DEADLINE,
        || t.state_u64("requests_failed") >= 1,
    );
}

/// The daemon remembers no names: a name used again later is a new request.
/// (A "seen" set would both grow without bound and silently drop this one.)
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

/// The moment of a kill -9 that the stress test's burst only hits by chance: the
/// daemon had executed the request and created its sidecar (`O_EXCL`) in
/// `processed/`, but died before writing the sidecar's content and moving
/// the request beside it. The next daemon must neither run the request
/// again nor leave it filed with an empty, unreadable sidecar.
#[test]
fn kill_between_sidecar_creation_and_write_is_recovered_with_a_readable_sidecar() {
    let t = Town::new();
    for dir in [t.processing(), t.processed(), t.failed(), t.inbox()] {
        fs::create_dir_all(dir).unwrap();
    }
    // Real tmux: were the shutdown run again, the session would go.
    t.tmux.new_session("gt-mayor", &["sleep", "600"]);
    let name = "half-filed.json";
    let body = request_json("mayor", "shutdown");
    fs::write(t.processing().join(name), &body).unwrap();
    fs::write(t.processed().join(format!("{name}.result.json")), b"").unwrap();

    t.start();
    t.wait_until("processing/ emptied by recovery", DEADLINE, || {
        count_entries(&t.processing()) == 0
    });
    let processed = request_names(&t.processed());
    let failed = request_names(&t.failed());
    let places: Vec<&str> = [("processed", &processed), ("failed", &failed)]
        .iter()
        .filter(|(_, names)| names.iter().any(|n| n == name))
        .map(|(dir, _)| *dir)
        .collect();
    assert_eq!(
        places.len(),
        1,
        "{name} must be filed exactly once, found in {places:?}\n{}",
        t.snapshot()
    );
    let dir = if places[0] == "processed" {
        t.processed()
    } else {
        t.failed()
    };
    let sc = t.sidecar(&dir, name);
    assert_eq!(sc["outcome"], places[0], "sidecar {sc:#}");
    assert_eq!(fs::read_to_string(dir.join(name)).unwrap(), body);
    assert!(
        t.tmux.has_session("gt-mayor"),
        "the request was executed a second time\n{}",
        t.snapshot()
    );
    assert_eq!(
        processed.len() + failed.len(),
        1,
        "no suffixed duplicate\n{}",
        t.snapshot()
    );
}
