//! Faults around the daemon: names too long to file, an outcome directory
//! that cannot take the outcome, directories removed while it runs, and a
//! slow writer creating a request in place. Each heals, or is reported
//! where the operator looks, and never strands or relabels a request.

use std::fs;
use std::io::Write;

use crate::support::{count_requests, file_name, request_json, Town, DEADLINE};

/// A valid restart request under a name of `len` bytes.
fn long_name(len: usize) -> String {
    let stem = "r".repeat(len - ".json".len());
    format!("{stem}.json")
}

#[test]
fn a_name_too_long_to_file_is_refused_before_it_runs_and_filed_shortened() {
    let t = Town::new();
    t.start();
    // 244 bytes: `NAME.result.json` would pass the 255-byte limit.
    let name = long_name(244);
    t.publish(&name, request_json("mayor", "restart"));
    t.wait_until("the long-named request filed", DEADLINE, || {
        count_requests(&t.failed()) == 1
    });
    let filed = crate::support::request_names(&t.failed());
    let short = &filed[0];
    assert!(short.len() <= gt::inbox::MAX_NAME_BYTES, "{short}");
    let sc = t.sidecar(&t.failed(), short);
    let why = sc["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("file name too long: 244 bytes"),
        "reason: {why:?}"
    );
    assert_eq!(sc["original_name"], name.as_str(), "sidecar: {sc:#}");
    // Refused before anything ran: no session was started.
    assert!(
        !t.tmux.has_session("gt-mayor"),
        "a refused request must not run\n{}",
        t.snapshot()
    );
    assert_eq!(count_requests(&t.processing()), 0);
    // The daemon still works, and a restart of it recovers cleanly.
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("a request after the long name");
    t.stop();
    t.start();
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("a request after restarting the daemon");
}

#[test]
fn a_long_name_left_in_processing_does_not_stop_the_next_start() {
    let t = Town::new();
    t.ensure_dirs().unwrap();
    // What an older daemon, killed after claiming it, would leave behind.
    let name = long_name(244);
    fs::write(t.processing().join(&name), request_json("mayor", "restart")).unwrap();
    t.start();
    t.wait_until("the leftover filed", DEADLINE, || {
        count_requests(&t.failed()) == 1 && count_requests(&t.processing()) == 0
    });
    let short = &crate::support::request_names(&t.failed())[0];
    let sc = t.sidecar(&t.failed(), short);
    assert_eq!(sc["original_name"], name.as_str(), "sidecar: {sc:#}");
    assert!(
        sc["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("interrupted"),
        "sidecar: {sc:#}"
    );
}

/// Replaces `processed/` with a plain file, so filing there fails.
fn break_processed(t: &Town) {
    fs::remove_dir_all(t.processed()).unwrap();
    fs::write(t.processed(), b"not a directory").unwrap();
}

fn mend_processed(t: &Town) {
    fs::remove_file(t.processed()).unwrap();
    fs::create_dir(t.processed()).unwrap();
}

#[test]
fn an_outcome_that_cannot_be_filed_is_kept_shown_and_filed_when_it_can() {
    let t = Town::new();
    t.start_dry();
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("the daemon is serving");
    break_processed(&t);

    let path = t.send("shutdown", "deacon");
    let name = file_name(&path);
    // It ran; its outcome waits, and state.json says so with the reason.
    t.wait_until("state.json shows one outcome waiting", DEADLINE, || {
        t.state_u64("outcomes_unfiled") == 1
    });
    let state = t.state();
    let why = state["filing_error"].as_str().unwrap_or_default();
    assert!(!why.is_empty(), "filing_error in {state:#}");
    assert!(
        t.processing().join(&name).exists(),
        "the request waits in processing/\n{}",
        t.snapshot()
    );

    // The fault clears: filed with its real outcome, nothing left behind.
    mend_processed(&t);
    t.wait_processed(&name);
    t.wait_until("state.json shows nothing waiting", DEADLINE, || {
        t.state_u64("outcomes_unfiled") == 0
    });
    assert!(
        crate::support::ls(&t.processing()).is_empty(),
        "no request or journal entry left in processing/\n{}",
        t.snapshot()
    );
}

#[test]
fn an_unfiled_outcome_survives_a_restart_with_its_real_outcome() {
    let t = Town::new();
    t.start_dry();
    break_processed(&t);
    let path = t.send("shutdown", "deacon");
    let name = file_name(&path);
    t.wait_until("state.json shows one outcome waiting", DEADLINE, || {
        t.state_u64("outcomes_unfiled") == 1
    });
    t.stop();
    mend_processed(&t);
    t.start_dry();
    // Filed as what it was (processed), never as "interrupted", so nobody
    // is told to retry, and run twice, what already ran.
    let sc = t.wait_processed(&name);
    assert_eq!(sc["error"], serde_json::Value::Null, "sidecar: {sc:#}");
    assert!(crate::support::ls(&t.processing()).is_empty());
}

#[test]
fn a_full_disk_leaves_no_empty_sidecar_and_the_outcome_is_filed_later() {
    if !crate::support::require("root, to mount a small tmpfs", is_root()) {
        return;
    }
    let mut t = Town::new();
    // The whole daemon directory on a small tmpfs of its own, so that the
    // disk filling up is real (ENOSPC) and renames stay on one filesystem.
    let mount = crate::support::command::program_command("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(t.daemon_dir())
        .output()
        .expect("run mount");
    if !crate::support::require("a tmpfs mount", mount.status.success()) {
        return;
    }
    let _unmount = Unmount(t.daemon_dir().to_path_buf());
    t.config(serde_json::json!({})); // the mount hid the config written before
    t.start_dry();
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("the daemon is serving");

    // A bad request staged on the same filesystem, the disk filled, then
    // the request renamed in (a rename needs no free space).
    let staged = t.daemon_dir().join(".staged");
    fs::write(&staged, request_json("not a valid agent", "cycle")).unwrap();
    let filler = t.daemon_dir().join("filler");
    let mut fill = fs::File::create(&filler).unwrap();
    while fill.write_all(&[0u8; 4096]).is_ok() {}
    drop(fill);
    let name = "bad-agent.json";
    fs::rename(&staged, t.inbox().join(name)).unwrap();

    t.wait_log_line("the daemon says it cannot file the outcome", |l| {
        l.contains("cannot file the outcome") && l.contains("bad-agent.json")
    });
    let sidecars: Vec<String> = crate::support::ls(&t.failed())
        .into_iter()
        .filter(|n| n.ends_with(".result.json"))
        .collect();
    assert!(sidecars.is_empty(), "no empty sidecar left: {sidecars:?}");
    assert!(t.processing().join(name).exists(), "{}", t.snapshot());

    fs::remove_file(&filler).unwrap();
    let sc = t.wait_failed(name);
    assert!(
        sc["error"].as_str().unwrap_or_default().contains("from"),
        "{sc:#}"
    );
    t.stop();
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_removed_processing_directory_is_recreated_and_said_so() {
    let t = Town::new();
    t.start_dry();
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("the daemon is serving");
    fs::remove_dir_all(t.processing()).unwrap();
    let out = t.send_wait("shutdown", "mayor", &["--timeout", "20s"]);
    out.assert_ok("a request after processing/ was removed");
    assert!(t.processing().is_dir(), "processing/ is back");
    t.wait_log_line("the log says processing/ was recreated", |l| {
        l.contains("recreated a missing daemon directory") && l.contains("processing")
    });
}

#[test]
fn a_slow_writer_creating_a_file_in_place_is_waited_for() {
    let t = Town::new();
    let start = t.start_command(&["--log-level", "debug"], &["--dry-run"]);
    t.started(start);
    let path = t.inbox().join("slow.json");
    let body = request_json("mayor", "shutdown");
    let (head, tail) = body.split_at(body.len() / 2);
    let mut file = fs::File::create(&path).unwrap();
    file.write_all(head.as_bytes()).unwrap();
    file.flush().unwrap();
    // The writer pauses longer than the 1 s quiet period: wait until the
    // daemon has looked at the half-written file twice (a second apart).
    t.wait_until(
        "the daemon saw the file still being written, twice",
        DEADLINE,
        || {
            crate::support::read_lines(&t.log_file())
                .iter()
                .filter(|l| l.contains("still being written") && l.contains("slow.json"))
                .count()
                >= 2
        },
    );
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    let sc = t.wait_processed("slow.json");
    assert_eq!(sc["from"], "mayor", "{sc:#}");
}
