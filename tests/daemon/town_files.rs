//! The daemon's own files in the town (state.json, supervise.json,
//! restart_state.json, daemon.pid, the lock files, sidecars) are where any
//! user who can write to the town can put something else: a FIFO (opening
//! it for reading blocks), a link to /dev/zero (endless), a directory, a
//! huge file. Whatever reads them neither blocks nor reads without end:
//! `status`, `explain` and `clear-backoff` say what is wrong, and the
//! daemon starts, serves and stops, replacing what it rewrites. Every
//! command has a deadline far shorter than a hang.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::command::try_run;
use crate::support::strange::{make_strange, STRANGE};
use crate::support::{request_names, Out, Town, DEADLINE};

/// Far longer than any of these commands takes; a command that blocks on
/// a FIFO or reads /dev/zero is stopped here and the test fails.
const SHORT: Duration = Duration::from_secs(15);

/// The words for each strange kind: the daemon's own files are never
/// links, so a link to /dev/zero is refused as a link, unopened.
fn words(kind: &str) -> &'static str {
    match kind {
        "dev-zero" => "a symbolic link (never followed)",
        _ => STRANGE.iter().find(|(k, _)| *k == kind).unwrap().1,
    }
}

fn gt_short(t: &Town, args: &[&str]) -> Out {
    try_run(t.command(args), SHORT)
        .unwrap_or_else(|e| panic!("`gt {}` must not hang: {e}", args.join(" ")))
}

/// The line of `text` that holds every one of `needles`.
fn line_with<'a>(text: &'a str, needles: &[&str]) -> Option<&'a str> {
    text.lines().find(|l| needles.iter().all(|n| l.contains(n)))
}

#[test]
fn status_explain_and_clear_backoff_say_what_is_wrong_with_each_file() {
    for (kind, _) in STRANGE {
        let mut t = Town::new();
        t.config(json!({"supervise": ["mayor"]}));
        for file in [t.state_file(), t.supervise_file(), t.restart_state_file()] {
            make_strange(&file, kind);
        }
        let words = words(kind);

        let status = gt_short(&t, &["daemon", "status"]);
        assert_eq!(status.code, Some(3), "{kind}: not running: {status:#?}");
        for (what, file) in [
            ("cannot read state.json", "state.json"),
            ("cannot read supervision's memory", "supervise.json"),
            (
                "cannot read the crash-loop guard's memory",
                "restart_state.json",
            ),
        ] {
            assert!(
                line_with(&status.stderr, &[what, file, words]).is_some(),
                "{kind}: no warning {what:?} naming {file} and {words:?}: {status:#?}"
            );
        }

        let explain = gt_short(&t, &["daemon", "explain", "mayor"]);
        assert_eq!(explain.code, Some(1), "{kind}: {explain:#?}");
        assert!(
            line_with(&explain.stderr, &["supervise.json", words]).is_some(),
            "{kind}: {explain:#?}"
        );

        let list = gt_short(&t, &["daemon", "clear-backoff", "--list"]);
        assert_eq!(list.code, Some(1), "{kind}: {list:#?}");
        assert!(
            line_with(&list.stderr, &["restart_state.json", words]).is_some(),
            "{kind}: {list:#?}"
        );
    }
}

/// The restart records supervision filed for the Mayor in `dir`.
fn mayor_records(dir: &Path) -> usize {
    request_names(dir)
        .iter()
        .filter(|n| n.ends_with("-daemon-gt-mayor.json"))
        .count()
}

/// `send restart --from mayor --wait`, with a deadline.
fn send_restart(t: &Town) -> Out {
    let args = ["daemon", "send", "restart", "--from", "mayor", "--wait"];
    gt_short(t, &[&args[..], &["--timeout", "10s"]].concat())
}

#[test]
fn the_daemon_starts_serves_and_stops_whatever_its_files_were_made() {
    let mut t = Town::new();
    t.config(json!({
        "supervise": ["mayor"],
        // The first look is at the start; none other comes during the
        // test, so only a request rewrites supervise.json.
        "supervise_interval": "1h",
        "agent_command": ["sleep", "600"],
        "prime_delay": "0s",
    }));
    make_strange(&t.state_file(), "fifo");
    make_strange(&t.pid_file(), "fifo");
    make_strange(&t.supervise_file(), "dev-zero");
    make_strange(&t.restart_state_file(), "fifo");

    let start = gt_short(&t, &["daemon", "start", "--timeout", "10s"]);
    assert_eq!(start.code, Some(0), "{start:#?}\n{}", t.snapshot());
    // Supervision starts the Mayor: supervise.json and restart_state.json,
    // which could not be read, were replaced by fresh ones (said in the
    // log), and so were state.json and daemon.pid.
    t.wait_until("the Mayor started by supervision", DEADLINE, || {
        mayor_records(&t.processed()) >= 1
    });
    for file in [
        t.state_file(),
        t.pid_file(),
        t.supervise_file(),
        t.restart_state_file(),
    ] {
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert!(meta.is_file(), "{} was replaced", file.display());
    }
    t.wait_log_line("supervise.json said unusable", |l| {
        l.contains("supervise.json") && l.contains("unusable")
    });
    assert_eq!(gt_short(&t, &["daemon", "status"]).code, Some(0));

    // While it runs: supervise.json a link to /dev/zero again, a sidecar a
    // FIFO. status, explain and requests answer at once and say so; the
    // daemon serves requests.
    make_strange(&t.supervise_file(), "dev-zero");
    let status = gt_short(&t, &["daemon", "status"]);
    assert_eq!(status.code, Some(0), "{status:#?}");
    assert!(
        line_with(&status.stderr, &["supervise.json", "symbolic link"]).is_some(),
        "{status:#?}"
    );
    let explain = gt_short(&t, &["daemon", "explain", "mayor"]);
    assert_eq!(explain.code, Some(1), "{explain:#?}");
    let sent = send_restart(&t);
    assert_eq!(sent.code, Some(0), "{sent:#?}\n{}", t.snapshot());
    let name = crate::support::file_name(&sent.sent_path());
    let sidecar = t.processed().join(format!("{name}.result.json"));
    make_strange(&sidecar, "fifo");
    let requests = gt_short(&t, &["daemon", "requests"]);
    assert_eq!(requests.code, Some(0), "{requests:#?}");
    assert!(!requests.stdout.contains(&name), "{requests:#?}");

    // A lock file that is a FIFO fails the restart that needs it, at once,
    // naming it: the daemon never waits on it.
    make_strange(&t.restart_state_lock(), "fifo");
    let refused = send_restart(&t);
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    assert!(
        line_with(&refused.stdout, &["restart_state.lock", "a FIFO"]).is_some(),
        "{refused:#?}"
    );

    let stop = gt_short(&t, &["daemon", "stop", "--timeout", "10s"]);
    assert_eq!(stop.code, Some(0), "{stop:#?}");
    assert!(!stop.all().contains("SIGKILL"), "{stop:#?}");
}

#[test]
fn a_log_that_is_no_regular_file_is_refused_by_start_run_and_logs() {
    for kind in ["fifo", "dev-zero"] {
        let t = Town::new();
        make_strange(&t.log_file(), kind);
        // A link is followed for the log, and what it leads to refused.
        let words = match kind {
            "fifo" => "a FIFO (never opened)",
            _ => "a device (never opened)",
        };
        for (args, code) in [
            (&["daemon", "start", "--dry-run", "--timeout", "10s"][..], 1),
            (&["daemon", "run", "--dry-run"][..], 78),
            (&["daemon", "logs", "-n", "5"][..], 1),
        ] {
            let out = gt_short(&t, args);
            assert_eq!(out.code, Some(code), "{kind} {args:?}: {out:#?}");
            assert!(
                line_with(&out.stderr, &["daemon.log", words]).is_some(),
                "{kind} {args:?}: {out:#?}"
            );
        }
        assert!(!t.lock_held(), "{kind}: no daemon may run");
    }
}

#[test]
fn a_running_daemon_whose_state_json_cannot_be_read_is_degraded() {
    let t = Town::new();
    t.start_dry();
    assert_eq!(t.status_json()["status"], "running");
    let state = t.state_file();
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    let report = t.status_json();
    assert_eq!(report["status"], "degraded", "{report:#}");
    assert!(
        report["degraded"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d == "state.json unreadable")),
        "{report:#}"
    );
    std::fs::remove_dir(&state).unwrap();
}
