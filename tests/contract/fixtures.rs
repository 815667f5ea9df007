//! The request fixture catalogue (`fixtures/cases.json`) run two ways:
//!
//! * `parse_layer`: every case through the pure parser `gt::request::parse`
//!   (cases marked `"layer": "file"` are about the file itself, its size, and
//!   are skipped there);
//! * `daemon_*`: the real `gt` binary in `--dry-run`, fed through a town's
//!   inbox exactly as an agent would (`inbox/.NAME.tmp`, then rename), with
//!   the filed request and its result sidecar checked against the catalogue.

use std::fs;
use std::os::unix::fs::FileTypeExt;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::catalogue::{case_bytes, cases, fixtures_dir, now_text, Case};
use crate::support::{filed, ls, Town};

const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

// ---------------------------------------------------------------------------
// Layer (a): the pure parser
// ---------------------------------------------------------------------------

#[test]
fn catalogue_is_consistent() {
    let cases = cases();
    let dir = fixtures_dir();
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.inbox_name()),
            "{} listed twice",
            case.file
        );
        let folder = match case.outcome.as_str() {
            "processed" => "valid/",
            "failed" => "invalid/",
            other => panic!("{}: outcome {other:?}", case.file),
        };
        assert!(
            case.file.starts_with(folder),
            "{} is in the wrong folder",
            case.file
        );
        assert!(case.file.ends_with(".json"), "{}", case.file);
        if case.outcome == "failed" {
            let pieces = case.reason_contains.as_deref().unwrap_or_default();
            assert!(
                case.reason.is_some() != case.reason_contains.is_some()
                    && case.reason.as_deref() != Some("")
                    && pieces.iter().all(|p| !p.is_empty()),
                "{}: give the reason (or, for an age, reason_contains)",
                case.file
            );
        } else {
            assert!(
                case.session.is_some() && case.from.is_some() && case.action.is_some(),
                "{}",
                case.file
            );
        }
        match &case.generate {
            Some(_) => assert!(
                !dir.join(&case.file).exists(),
                "{} is generated, not committed",
                case.file
            ),
            None => assert!(dir.join(&case.file).is_file(), "{} is missing", case.file),
        }
    }
    // Every committed fixture is listed.
    for folder in ["valid", "invalid"] {
        for entry in fs::read_dir(dir.join(folder)).unwrap() {
            let name = format!("{folder}/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(
                cases.iter().any(|c| c.file == name),
                "{name} is not in cases.json"
            );
        }
    }
}

#[test]
fn parse_layer() {
    let now = Utc::now();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for case in cases().iter().filter(|c| c.parse_layer_applies()) {
        let bytes = case_bytes(case, now);
        let result = gt::request::parse(&bytes, now, MAX_AGE);
        if std::env::var_os("GT_FIXTURES_VERBOSE").is_some() {
            match &result {
                Ok(r) => eprintln!("{}: ok -> {}", case.file, r.session()),
                Err((rejection, _)) => eprintln!("{}: {rejection}", case.file),
            }
        }
        let problem = match (case.outcome.as_str(), result) {
            ("processed", Ok(request)) => {
                let got = (
                    Some(request.session()),
                    Some(request.from.clone()),
                    Some(request.action.to_string()),
                );
                let want = (case.session.clone(), case.from.clone(), case.action.clone());
                (got != want).then(|| format!("maps to {got:?}, expected {want:?}"))
            }
            ("processed", Err((rejection, _))) => Some(format!("rejected: {rejection}")),
            ("failed", Ok(request)) => Some(format!("accepted: {request:?}")),
            ("failed", Err((rejection, _))) => case.check_reason(&rejection.0).err(),
            (other, _) => Some(format!("outcome {other:?}")),
        };
        if let Some(problem) = problem {
            wrong.push(format!("{}: {problem}", case.file));
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} case(s) wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 50, "only {checked} cases checked");
}

// ---------------------------------------------------------------------------
// Layer (b): the real daemon
// ---------------------------------------------------------------------------

/// A fresh town with a dry-run daemon; returns it and the daemon's PID.
fn dry_town() -> (Town, u32) {
    let town = Town::new();
    let pid = town.start_dry();
    (town, pid)
}

/// Waits until `name` has been filed; returns (outcome folder, sidecar).
fn wait_filed(town: &Town, name: &str) -> (&'static str, Value) {
    let (dir, sidecar) = town.wait_filed(name);
    let folder = if dir == town.processed() {
        "processed"
    } else {
        "failed"
    };
    (folder, sidecar)
}

fn assert_still_running(town: &Town, pid: u32) {
    let status = town.status_json();
    assert_eq!(
        status["running"],
        Value::Bool(true),
        "daemon died: {status}\n{}",
        town.snapshot()
    );
    assert_eq!(
        status["pid"],
        Value::from(pid),
        "daemon was replaced: {status}"
    );
}

/// What a sidecar should say.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// What the catalogue says for this case.
    Case(&'a Case),
    /// Processed, no reason.
    Processed,
    /// Failed with exactly this reason.
    Failed(&'a str),
}

/// Checks the sidecar's shape and the reason.
fn check_sidecar(pid: u32, name: &str, folder: &str, sidecar: &Value, want: Want) {
    assert_eq!(sidecar["outcome"], folder, "{name}: sidecar {sidecar}");
    assert_eq!(
        sidecar["daemon_pid"],
        Value::from(pid),
        "{name}: sidecar {sidecar}"
    );
    let finished = sidecar["finished_at"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: sidecar {sidecar}"));
    DateTime::parse_from_rfc3339(finished)
        .unwrap_or_else(|e| panic!("{name}: finished_at {finished:?}: {e}"));
    for key in ["from", "action", "session"] {
        let v = &sidecar[key];
        assert!(
            v.is_null() || v.is_string(),
            "{name}: {key} in sidecar {sidecar}"
        );
    }
    let error = || {
        sidecar["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error in {sidecar}"))
    };
    match want {
        Want::Processed => assert_eq!(sidecar["error"], Value::Null, "{name}: sidecar {sidecar}"),
        Want::Failed(reason) => assert_eq!(error(), reason, "{name}: sidecar {sidecar}"),
        Want::Case(case) if case.outcome == "failed" => {
            if let Err(problem) = case.check_reason(error()) {
                panic!("{name}: {problem}");
            }
        }
        Want::Case(_) => assert_eq!(sidecar["error"], Value::Null, "{name}: sidecar {sidecar}"),
    }
    if let Want::Case(case) = want {
        if case.outcome != "processed" {
            return;
        }
        assert_eq!(
            sidecar["session"].as_str(),
            case.session.as_deref(),
            "{name}: sidecar {sidecar}"
        );
        assert_eq!(
            sidecar["from"].as_str(),
            case.from.as_deref(),
            "{name}: sidecar {sidecar}"
        );
        assert_eq!(
            sidecar["action"].as_str(),
            case.action.as_deref(),
            "{name}: sidecar {sidecar}"
        );
    }
}

#[test]
fn daemon_files_every_fixture_as_catalogued() {
    let (town, pid) = dry_town();
    let cases = cases();
    let now = Utc::now();

    let mut sent = Vec::new();
    for case in &cases {
        let bytes = case_bytes(case, now);
        let name = case.inbox_name();
        town.publish(&name, &bytes);
        sent.push((case, name, bytes));
    }

    let (mut processed, mut failed) = (0u64, 0u64);
    for (case, name, bytes) in &sent {
        let (folder, sidecar) = wait_filed(&town, name);
        assert_eq!(
            folder, case.outcome,
            "{}: filed under {folder}/: sidecar {sidecar}",
            case.file
        );
        let (dir, _) = filed(&town, name).expect("filed");
        let path = dir.join(name);
        assert_eq!(
            &fs::read(&path).unwrap_or_else(|e| panic!(
                "{}: {e}\n{}",
                path.display(),
                town.snapshot()
            )),
            bytes,
            "{}: filed bytes differ from the original",
            case.file
        );
        let other = if folder == "processed" {
            town.failed()
        } else {
            town.processed()
        };
        assert!(!other.join(name).exists(), "{name} filed twice");
        assert!(!town.inbox().join(name).exists(), "{name} still in inbox");
        assert!(
            !town.processing().join(name).exists(),
            "{name} still in processing"
        );
        check_sidecar(pid, name, folder, &sidecar, Want::Case(case));
        if folder == "processed" {
            processed += 1;
        } else {
            failed += 1;
        }
    }

    assert!(ls(&town.processing()).is_empty());
    assert_still_running(&town, pid);
    // Counters are written in batches: wait for them to catch up.
    town.wait_counters(processed, failed);
}

#[test]
fn daemon_refuses_non_regular_files_without_blocking() {
    let (town, pid) = dry_town();
    let inbox = town.inbox();
    let now = now_text(Utc::now());
    let valid =
        |from: &str| format!(r#"{{"from":"{from}","action":"shutdown","timestamp":"{now}"}}"#);

    // A symlink to a valid request outside the town: never followed.
    let outside = TempDir::new().unwrap();
    let target = outside.path().join("target.json");
    fs::write(&target, valid("mayor")).unwrap();
    std::os::unix::fs::symlink(&target, inbox.join("link.json")).unwrap();
    // A FIFO: opening it for reading would block until a writer comes.
    crate::support::strange::mkfifo(&inbox.join("x.json"));
    // A unix socket.
    let listener = std::os::unix::net::UnixListener::bind(inbox.join("s.json")).unwrap();
    // A directory.
    fs::create_dir(inbox.join("d.json")).unwrap();
    // A symlink to a directory and a dangling one.
    std::os::unix::fs::symlink(outside.path(), inbox.join("dirlink.json")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("nothing-here"),
        inbox.join("dangling.json"),
    )
    .unwrap();

    // Published after all of them: must still be handled.
    town.publish("after.json", valid("deacon"));
    let (folder, sidecar) = wait_filed(&town, "after.json");
    assert_eq!(folder, "processed", "sidecar {sidecar}");
    check_sidecar(pid, "after.json", folder, &sidecar, Want::Processed);

    let symlink = "not a regular file: a symbolic link (never followed)";
    for (name, is_kind, reason) in [
        (
            "link.json",
            (|t: fs::FileType| t.is_symlink()) as fn(fs::FileType) -> bool,
            symlink,
        ),
        (
            "x.json",
            |t: fs::FileType| t.is_fifo(),
            "not a regular file: a FIFO (never opened)",
        ),
        (
            "s.json",
            |t: fs::FileType| t.is_socket(),
            "not a regular file: a socket",
        ),
        (
            "d.json",
            |t: fs::FileType| t.is_dir(),
            "not a regular file: a directory",
        ),
        ("dirlink.json", |t: fs::FileType| t.is_symlink(), symlink),
        ("dangling.json", |t: fs::FileType| t.is_symlink(), symlink),
    ] {
        let (folder, sidecar) = wait_filed(&town, name);
        assert_eq!(folder, "failed", "{name}: sidecar {sidecar}");
        check_sidecar(pid, name, folder, &sidecar, Want::Failed(reason));
        assert!(!inbox.join(name).exists(), "{name} still in inbox");
        // Filed as it was: moved, not copied, followed or replaced.
        let meta = fs::symlink_metadata(town.failed().join(name))
            .unwrap_or_else(|e| panic!("failed/{name}: {e}"));
        assert!(
            is_kind(meta.file_type()),
            "failed/{name} changed kind: {:?}",
            meta.file_type()
        );
    }
    // The symlink's target is where it was, unchanged, and was not executed.
    assert_eq!(fs::read_to_string(&target).unwrap(), valid("mayor"));
    assert_eq!(ls(outside.path()), vec!["target.json".to_string()]);
    assert_eq!(
        ls(&town.processed()),
        vec![
            "after.json".to_string(),
            "after.json.result.json".to_string()
        ]
    );
    drop(listener);
    assert_still_running(&town, pid);
}
