//! `gt daemon restart`: stop, then start, in dry run when the old daemon
//! was; nothing is stopped when the new daemon could not run.

use serde_json::json;

use crate::support::proc::cmdline;
use crate::support::{started_pid, Town, DEADLINE};

fn daemon_pid(town: &Town) -> u32 {
    town.status_json()["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no daemon running\n{}", town.snapshot())) as u32
}

#[test]
fn restart_keeps_dry_run_and_leaves_the_daemon_alone_when_the_new_one_could_not_run() {
    let mut t = Town::new();
    let first = t.start_dry();
    let out = t.gt(&["daemon", "restart"]);
    out.assert_ok("restart");
    assert!(
        out.stdout
            .contains(&format!("Daemon stopped (PID {first})")),
        "{out:#?}"
    );
    let second = started_pid(&out.stdout);
    assert_ne!(second, first);
    t.wait_until("the first daemon gone", DEADLINE, || {
        !crate::support::proc::alive(first)
    });
    assert_eq!(t.status_json()["pid"], second);
    assert_eq!(t.state()["dry_run"], true, "the dry run is kept");
    assert!(
        cmdline(second).contains(&"--dry-run".to_string()),
        "{:?}",
        cmdline(second)
    );

    // A config the new daemon would refuse: nothing is stopped.
    t.config(json!({"heartbeat_interval": "1ms"}));
    let out = t.gt(&["daemon", "restart"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("heartbeat_interval"), "{out:#?}");
    assert!(out.stderr.contains("left alone"), "{out:#?}");
    assert_eq!(daemon_pid(&t), second, "the running daemon stays");

    // Not running: restart starts one; a daemon started without
    // --dry-run is restarted without it.
    t.config(json!({}));
    t.stop();
    let out = t.gt(&["daemon", "restart"]);
    out.assert_ok("restart of a stopped daemon");
    assert!(out.stdout.contains("Daemon was not running"), "{out:#?}");
    let third = started_pid(&out.stdout);
    assert_eq!(t.state()["dry_run"], false);
    let out = t.gt(&["daemon", "restart"]);
    out.assert_ok("restart");
    let fourth = started_pid(&out.stdout);
    assert_ne!(fourth, third);
    assert_eq!(t.state()["dry_run"], false);
}
