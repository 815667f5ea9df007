//! Live views of requests: `requests --pending` (what is waiting or being
//! executed, not only what was filed) and `requests --follow` (outcomes as
//! they are filed, until interrupted or the reader goes away).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;

use serde_json::Value;

use crate::support::proc::{KillOnDrop, Lines};
use crate::support::{file_name, one_json, request_json, Town, DEADLINE};

#[test]
fn pending_lists_requests_in_progress_then_waiting_in_the_inbox() {
    // No daemon: what a running one would be doing is laid out by hand.
    let t = Town::new();
    t.ensure_dirs().unwrap();
    t.publish("b.json", request_json("gastown/witness", "restart"));
    t.publish("a.json", request_json("mayor", "cycle"));
    fs::write(t.inbox().join(".c.json.tmp"), b"half written").unwrap();
    fs::write(t.inbox().join("junk.json"), b"not json").unwrap();
    fs::write(
        t.processing().join("now.json"),
        request_json("deacon", "shutdown"),
    )
    .unwrap();
    // Journal entries of the daemon in processing/ are not requests.
    fs::write(t.processing().join(".now.json.result.json"), b"{}").unwrap();

    let out = t.gt(&["daemon", "requests", "--pending", "--json"]);
    out.assert_ok("requests --pending --json");
    let rows = one_json(&out, "requests --pending --json");
    let rows = rows.as_array().expect("an array");
    let got: Vec<(String, String, Value, Value)> = rows
        .iter()
        .map(|r| {
            (
                r["state"].as_str().unwrap().to_string(),
                r["file"].as_str().unwrap().to_string(),
                r["from"].clone(),
                r["action"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "in_progress".into(),
                "now.json".into(),
                "deacon".into(),
                "shutdown".into()
            ),
            (
                "pending".into(),
                "a.json".into(),
                "mayor".into(),
                "cycle".into()
            ),
            (
                "pending".into(),
                "b.json".into(),
                "gastown/witness".into(),
                "restart".into()
            ),
            (
                "pending".into(),
                "junk.json".into(),
                Value::Null,
                Value::Null
            ),
        ],
        "{rows:#?}"
    );
    assert!(rows.iter().all(|r| r["since"].is_string()), "{rows:#?}");

    let out = t.gt(&["daemon", "requests", "--pending", "-n", "2"]);
    out.assert_ok("requests --pending");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("STATE"), "{}", out.stdout);
    assert!(
        lines[1].starts_with("in progress") && lines[1].contains("deacon"),
        "{}",
        out.stdout
    );
    assert!(
        lines[2].starts_with("pending") && lines[2].contains("a.json"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("1 in progress, 3 pending; showing 2"),
        "{}",
        out.stdout
    );

    // Each time carries its zone, so the header names none: with --local
    // the times are not UTC.
    let out = t.gt(&["daemon", "requests", "--pending", "--local"]);
    out.assert_ok("requests --pending --local");
    let header = out.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("SINCE") && !header.contains("UTC"),
        "{}",
        out.stdout
    );

    // The town's path is shown escaped, as every other path is.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd\x1b[31mtown");
    fs::create_dir(&odd).unwrap();
    let mut cmd = crate::support::gt_command();
    cmd.arg("--town")
        .arg(&odd)
        .args(["daemon", "requests", "--pending"]);
    let out = crate::support::run(cmd);
    out.assert_ok("requests --pending");
    assert!(out.stdout.starts_with("Nothing pending"), "{}", out.stdout);
    assert!(out.stdout.contains("odd\\x1b[31mtown"), "{:?}", out.stdout);
    assert!(!crate::support::has_ansi(&out.stdout), "{:?}", out.stdout);
}

/// `gt daemon requests --follow EXTRA...`, its stdout read line by line.
fn follow(t: &Town, extra: &[&str]) -> (KillOnDrop, Lines) {
    let mut cmd = t.command(&["daemon", "requests", "--follow"]);
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop::spawn(cmd);
    let lines = Lines::new(child.child().stdout.take().unwrap());
    (child, lines)
}

#[test]
fn follow_prints_the_last_outcomes_then_each_new_one_as_it_is_filed() {
    let t = Town::new();
    t.start_dry();
    let old = file_name(&t.send_wait("shutdown", "mayor", &[]).sent_path());
    t.wait_processed(&old);

    let (mut child, mut lines) = follow(&t, &["-n", "1"]);
    let header = lines.next(DEADLINE).expect("a header");
    assert!(header.starts_with("TIME "), "{header}");
    let first = lines.next(DEADLINE).expect("the last outcome");
    assert!(
        first.contains(&old) && first.contains("processed"),
        "{first}"
    );

    // Filed while it follows: one line each, in the order they were filed.
    t.create_shutdown_lock();
    let refused = file_name(&t.send("cycle", "deacon"));
    t.wait_failed(&refused);
    let ok = file_name(&t.send("shutdown", "gastown/witness"));
    t.wait_processed(&ok);
    let line = lines.next(DEADLINE).expect("the refused request");
    assert!(
        line.contains(&refused)
            && line.contains("failed")
            && line.contains("town is shutting down"),
        "{line}"
    );
    let line = lines.next(DEADLINE).expect("the processed request");
    assert!(line.contains(&ok) && line.contains("processed"), "{line}");
    assert!(child.alive(), "it keeps following");

    // Ctrl-C ends it.
    crate::support::proc::signal(child.pid(), crate::support::proc::Signal::INT);
    assert!(child.wait_exit(DEADLINE).is_some(), "SIGINT ends --follow");
}

#[test]
fn follow_json_prints_one_object_per_line_and_ends_when_the_reader_goes_away() {
    let t = Town::new();
    t.start_dry();
    let mut cmd = t.command(&[
        "daemon", "requests", "--follow", "-n", "0", "--json", "--failed",
    ]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop::spawn(cmd);
    // A reader that takes one line and goes away, like `| head -1`.
    let stdout = child.child().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        drop(reader);
        let _ = tx.send(line);
    });

    let ok = file_name(&t.send("shutdown", "mayor"));
    t.wait_processed(&ok);
    t.create_shutdown_lock();
    let refused = file_name(&t.send("cycle", "mayor"));
    t.wait_failed(&refused);
    // --failed: the processed one (filed first) is not shown.
    let line = rx.recv_timeout(DEADLINE).expect("the failed request");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["file"], refused.as_str(), "{v:#}");
    assert_eq!(v["outcome"], "failed", "{v:#}");
    assert_eq!(v["from"], "mayor", "{v:#}");

    // The next outcome it prints meets the closed pipe: it ends cleanly.
    let mut stderr = child.child().stderr.take().unwrap();
    let again = file_name(&t.send("cycle", "deacon"));
    t.wait_failed(&again);
    let status = child
        .wait_exit(DEADLINE)
        .expect("--follow ends when its stdout is closed");
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(err, "", "no error for a closed stdout");
}
