//! The consumer end to end in a dry run (no tmux): files in the inbox,
//! each filed once with the outcome and reason it deserves.

use super::*;
use crate::config::Config;
use crate::daemon::filing::tests::{quiet_monitoring, town_and_filer};
use crate::outcome::Outcome;
use crate::state::State;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::sync_channel;

#[test]
fn each_file_comes_to_one_outcome_with_its_own_reason() {
    let (_dir, town, _) = town_and_filer();
    let now = Utc::now().to_rfc3339();
    let valid = format!(r#"{{"from":"mayor","action":"shutdown","timestamp":"{now}"}}"#);
    let long = format!("{}.json", "n".repeat(240));
    for (name, body) in [
        ("ok.json", valid.as_str()),
        ("bad.json", "{"),
        (&long, &valid),
    ] {
        std::fs::write(town.inbox().join(name), body).unwrap();
    }
    std::fs::create_dir(town.inbox().join("dir.json")).unwrap();
    // A dry run executes here, on the consumer's thread: no tmux.
    let live = SharedConfig::new(Config {
        dry_run: true,
        ..Config::default()
    });
    let (tx, rx) = sync_channel(16);
    let inlet = Inlet {
        rx,
        wake: tx.clone(),
        overflow: Arc::new(AtomicBool::new(false)),
        rescan_every: Duration::from_secs(3600),
    };
    let state = Arc::new(StateStore::new(town.state_file(), State::default()));
    let stop = Arc::new(StopFlag::default());
    let consumer = Consumer::new(
        &town,
        &live,
        state,
        inlet,
        stop.clone(),
        Arc::default(),
        &Hooks::default(),
        quiet_monitoring(&town),
    )
    .unwrap();
    let running = std::thread::spawn(move || consumer.run());
    let short = inbox::shortened(OsStr::new(&long));
    let names = [
        OsStr::new("ok.json"),
        "bad.json".as_ref(),
        "dir.json".as_ref(),
        &short,
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names
        .iter()
        .all(|n| crate::outcome::filed(&town, n).is_some())
    {
        assert!(Instant::now() < deadline, "not all filed");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.set();
    tx.send(Message::Stop).unwrap();
    running.join().unwrap();
    let outcome = |n: &OsStr| crate::outcome::filed(&town, n).unwrap().sidecar;
    assert_eq!(outcome(names[0]).outcome, Outcome::Processed);
    assert!(outcome(names[1]).error.unwrap().contains("invalid JSON"));
    assert!(outcome(names[2]).error.unwrap().contains("a directory"));
    let cut = outcome(&short);
    assert!(cut.error.unwrap().starts_with("file name too long"));
    assert_eq!(cut.original_name.as_deref(), Some(long.as_str()));
    assert_eq!(std::fs::read_dir(town.inbox()).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(town.processing()).unwrap().count(), 0);
}
