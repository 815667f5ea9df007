//! config.json is read the way request files are: a FIFO, a device behind
//! a symbolic link, a directory or a huge file is refused with its reason
//! by `start`, `check` and a reload (SIGHUP) alike, at once: nothing blocks
//! on it and nothing reads it whole, so `stop` works whatever it is.

use std::time::Duration;

use crate::support::command::try_run;
use crate::support::proc::{signal, Signal};
use crate::support::strange::{make_strange, STRANGE};
use crate::support::{Out, Town};

/// Far longer than any of these refusals takes; short enough that a `gt`
/// reading /dev/zero is stopped before it has eaten the machine.
const SHORT: Duration = Duration::from_secs(15);

fn run_short(town: &Town, args: &[&str], kind: &str) -> Out {
    try_run(town.command(args), SHORT).unwrap_or_else(|e| {
        panic!(
            "`gt {}` with a config.json that is {kind}: {e}",
            args.join(" ")
        )
    })
}

#[test]
fn start_and_check_refuse_a_config_that_is_no_small_regular_file() {
    for (kind, words) in STRANGE {
        let town = Town::new();
        make_strange(&town.config_file(), kind);

        let check = run_short(&town, &["daemon", "check", "--dry-run"], kind);
        assert_eq!(check.code, Some(1), "{kind}: {check:#?}");
        let line = check
            .stdout
            .lines()
            .find(|l| l.contains("PROBLEM") && l.contains("config.json"))
            .unwrap_or_else(|| panic!("{kind}: no config.json problem: {check:#?}"));
        assert!(line.contains(words), "{kind}: {words:?} missing: {line}");

        let start = run_short(
            &town,
            &["daemon", "start", "--dry-run", "--timeout", "10s"],
            kind,
        );
        assert_eq!(start.code, Some(1), "{kind}: {start:#?}");
        assert!(start.stderr.contains(words), "{kind}: {start:#?}");
        assert!(!town.lock_held(), "{kind}: no daemon may run");
    }
}

#[test]
fn a_reload_refuses_them_and_the_daemon_still_serves_and_stops() {
    let town = Town::new();
    let pid = town.start_dry();
    let config = town.config_file();
    for (kind, words) in STRANGE {
        make_strange(&config, kind);
        signal(pid, Signal::HUP);
        town.wait_log_line(&format!("the reload refusing {kind}"), |l| {
            l.contains("config reload refused") && l.contains(words)
        });
    }
    // The signal thread is free: the daemon still serves, and SIGTERM stops
    // it without SIGKILL.
    town.publish(
        "after.json",
        crate::support::request_json("mayor", "shutdown"),
    );
    town.wait_processed("after.json");
    let stop = try_run(town.command(&["daemon", "stop", "--timeout", "10s"]), SHORT)
        .expect("stop must not hang");
    assert_eq!(stop.code, Some(0), "{stop:#?}");
    assert!(
        !stop.all().contains("SIGKILL"),
        "SIGTERM alone must stop it: {stop:#?}"
    );
}

#[test]
fn a_refused_reload_logs_a_hostile_key_escaped_on_one_line() {
    let town = Town::new();
    let pid = town.start_dry();
    std::fs::write(
        town.config_file(),
        "{\"x\\n2026-12-07 00:00:00.000Z  INFO forged line\": 1}",
    )
    .unwrap();
    signal(pid, Signal::HUP);
    town.wait_log_line("the refusal", |l| l.contains("config reload refused"));
    let log = std::fs::read_to_string(town.log_file()).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.contains("INFO forged line") && !l.contains("refused")),
        "a forged line: {log}"
    );
}
