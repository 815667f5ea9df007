//! One daemon per town, start/stop that always work: concurrent
//! starts, stale or reused PIDs in `daemon.pid`, a daemon that ignores
//! SIGTERM, and a held lock with a missing or garbage PID file.
//!
//! Dry-run throughout: tmux plays no part in who the daemon is.

use std::fs;
use std::sync::Barrier;

use serde_json::json;

use crate::support::proc::{alive, dead_pid, KillOnDrop};
use crate::support::{parse_pid, run, Out, Town};

const STARTERS: usize = 8;

/// Runs `STARTERS` `gt daemon start --dry-run` at the same instant.
fn start_in_parallel(t: &Town) -> Vec<Out> {
    let barrier = Barrier::new(STARTERS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..STARTERS)
            .map(|_| {
                s.spawn(|| {
                    let cmd = t.command(&["daemon", "start", "--dry-run"]);
                    barrier.wait();
                    run(cmd)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn parallel_starts_converge_on_one_daemon() {
    let t = Town::new();
    // A few rounds on the same town: the first on a fresh one (no lock
    // file yet), the others after a clean stop.
    for round in 1..=3 {
        let outs = start_in_parallel(&t);
        for out in &outs {
            out.assert_ok(&format!("round {round}: parallel start"));
        }
        let pids: Vec<Option<u32>> = outs.iter().map(|o| parse_pid(&o.stdout)).collect();
        let pid = pids[0].unwrap_or_else(|| panic!("no PID reported: {outs:#?}"));
        assert!(
            pids.iter().all(|p| *p == Some(pid)),
            "round {round}: every start must report the same PID: {pids:?}\n{outs:#?}"
        );
        let started = outs
            .iter()
            .filter(|o| o.stdout.contains("Daemon started"))
            .count();
        assert_eq!(
            started, 1,
            "round {round}: exactly one start started a daemon, the others found it running: {outs:#?}"
        );

        // Exactly one daemon process, holding the lock, named everywhere.
        assert_eq!(
            t.daemon_processes(),
            vec![pid],
            "round {round}: `gt daemon run` processes of this town\n{}",
            t.snapshot()
        );
        assert_eq!(t.lock_holders(), vec![pid], "round {round}: /proc/locks");
        assert_eq!(t.recorded_pid(), Some(pid));
        let status = t.status_json();
        assert_eq!(status["running"], true, "{status:#}");
        assert_eq!(status["pid"], pid, "{status:#}");

        let out = t.stop();
        assert!(out.stdout.contains(&format!("(PID {pid})")), "{out:#?}");
        t.wait_daemon_gone(pid);
    }
}

/// What a dead daemon leaves behind: the lock file (free), a PID file and
/// a state.json that still say it runs as `pid`.
fn leave_stale_files(t: &Town, pid: u32) {
    fs::write(t.lock_file(), b"").unwrap();
    fs::write(t.pid_file(), format!("{pid}\n")).unwrap();
    let state = json!({
        "running": true, "pid": pid,
        "started_at": "2026-01-01T00:00:00Z", "heartbeat_count": 3,
        "town_root": t.root(), "version": "0.1.0",
        "requests_processed": 0, "requests_failed": 0,
    });
    fs::write(t.state_file(), state.to_string()).unwrap();
}

fn assert_not_running(t: &Town, why: &str) {
    let status = t.status_json();
    assert_eq!(status["running"], false, "{why}: status --json {status:#}");
    assert!(
        status["pid"].is_null(),
        "{why}: no PID while not running: {status:#}"
    );
    let out = t.gt(&["daemon", "status"]);
    assert!(
        out.all().contains("not running"),
        "{why}: status text: {out:#?}"
    );
    let out = t.gt(&["daemon", "stop", "--timeout", "2s"]);
    out.assert_ok(&format!("{why}: stop"));
    assert!(
        out.stdout.contains("not running"),
        "{why}: stop must say the daemon is not running: {out:#?}"
    );
}

#[test]
fn stale_pid_file_of_a_dead_process() {
    let t = Town::new();
    let dead = dead_pid();
    leave_stale_files(&t, dead);

    assert_not_running(&t, "stale daemon.pid of a dead process");
    // start works the first time.
    let out = t.gt(&["daemon", "start", "--dry-run"]);
    out.assert_ok("start over a stale daemon.pid");
    assert!(out.stdout.contains("Daemon started"), "{out:#?}");
    let pid = parse_pid(&out.stdout).unwrap();
    assert_ne!(pid, dead);
    assert!(alive(pid));
    assert_eq!(t.recorded_pid(), Some(pid));
    let status = t.status_json();
    assert_eq!(status["running"], true, "{status:#}");
    assert_eq!(status["pid"], pid, "{status:#}");
}

#[test]
fn pid_file_naming_an_unrelated_live_process_is_never_signalled() {
    let t = Town::new();
    let mut bystander = KillOnDrop::quiet("sleep", &["600"]);
    let other = bystander.pid();
    leave_stale_files(&t, other);

    assert_not_running(&t, "daemon.pid naming an unrelated live process");
    assert!(
        bystander.alive(),
        "status/stop signalled PID {other}, which is not the daemon"
    );

    // start works the first time and does not touch it either.
    let out = t.gt(&["daemon", "start", "--dry-run"]);
    out.assert_ok("start over a reused PID");
    assert!(out.stdout.contains("Daemon started"), "{out:#?}");
    let pid = parse_pid(&out.stdout).unwrap();
    assert_ne!(pid, other);
    assert_eq!(t.status_json()["pid"], pid);
    assert_eq!(t.recorded_pid(), Some(pid));

    // And stopping the real daemon stops that one, not the bystander.
    let out = t.stop();
    assert!(out.stdout.contains(&format!("(PID {pid})")), "{out:#?}");
    t.wait_daemon_gone(pid);
    assert!(bystander.alive(), "the bystander {other} was signalled");
}

#[test]
fn stop_kills_a_daemon_that_ignores_sigterm_and_says_so() {
    let t = Town::new();
    let pid = t.start_hooked(&["--dry-run"], &[(gt::testing::IGNORE_SIGTERM, "1")]);

    let out = t.gt(&["daemon", "stop", "--timeout", "1s"]);
    out.assert_ok("stop of a daemon that ignores SIGTERM");
    assert!(
        out.stdout.contains("SIGKILL") && out.stdout.contains(&pid.to_string()),
        "stop must say it had to kill PID {pid} with SIGKILL: {out:#?}"
    );
    t.wait_daemon_gone(pid);
    assert!(!t.lock_held(), "lock released\n{}", t.snapshot());
    assert_eq!(t.state()["running"], false, "{}", t.snapshot());
    let status = t.status_json();
    assert_eq!(status["running"], false, "{status:#}");
    // It really did ignore SIGTERM (the hook reached the daemon).
    assert!(
        t.all_logs().contains("SIGTERM"),
        "the log should show the ignored SIGTERM\n{}",
        t.snapshot()
    );

    // A plain start afterwards works (nothing half-stopped left behind).
    let pid2 = t.start_dry();
    assert_ne!(pid2, pid);
}

/// With the lock held, a missing or garbage daemon.pid does not hide the
/// daemon: the lock's holder (from /proc/locks) is the daemon.
fn status_and_stop_find_the_holder(t: &Town, pid: u32, what: &str) {
    let status = t.status_json();
    assert_eq!(status["running"], true, "{what}: {status:#}");
    assert_eq!(status["pid"], pid, "{what}: {status:#}");
    let out = t.gt(&["daemon", "status"]);
    assert!(
        out.stdout.contains(&pid.to_string()),
        "{what}: status text must show PID {pid}: {out:#?}"
    );

    let out = t.gt(&["daemon", "stop", "--timeout", "10s"]);
    out.assert_ok(&format!("{what}: stop"));
    assert!(
        out.stdout.contains(&format!("Daemon stopped (PID {pid})")),
        "{what}: {out:#?}"
    );
    t.wait_daemon_gone(pid);
    assert!(!t.lock_held(), "{what}: lock still held");
    assert_eq!(t.state()["running"], false, "{what}");
}

#[test]
fn lock_held_with_garbage_pid_file() {
    let t = Town::new();
    let pid = t.start_dry();
    fs::write(t.pid_file(), "garbage\n").unwrap();
    status_and_stop_find_the_holder(&t, pid, "garbage daemon.pid");
}

#[test]
fn lock_held_with_missing_pid_file() {
    let t = Town::new();
    let pid = t.start_dry();
    fs::remove_file(t.pid_file()).unwrap();
    status_and_stop_find_the_holder(&t, pid, "missing daemon.pid");
}

#[test]
fn lock_held_with_pid_file_naming_another_process() {
    let t = Town::new();
    let mut bystander = KillOnDrop::quiet("sleep", &["600"]);
    let pid = t.start_dry();
    fs::write(t.pid_file(), format!("{}\n", bystander.pid())).unwrap();
    status_and_stop_find_the_holder(&t, pid, "daemon.pid naming a bystander");
    assert!(bystander.alive(), "the bystander was signalled");
}
