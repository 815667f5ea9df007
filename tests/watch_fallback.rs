//! When the watcher cannot be set up (watch limits, NFS), the daemon says
//! so in its log and polls the inbox instead of going deaf.

mod common;

use common::{request_json, run_command, Town, DEADLINE};
use serde_json::json;

#[test]
fn refused_watch_falls_back_to_polling_and_still_consumes() {
    let mut town = Town::new();
    town.config(json!({"poll_interval": "200ms"}));
    let mut cmd = town.command(&["daemon", "start", "--dry-run"]);
    cmd.env(gt::testing::ENABLE, "1")
        .env(gt::testing::NOTIFY_FAIL, "1");
    run_command(cmd).assert_ok("start with a refused watch");

    town.wait_until("the log reports the fallback", DEADLINE, || {
        std::fs::read_to_string(town.log_path())
            .is_ok_and(|log| log.contains("falling back to polling"))
    });
    town.publish("polled.json", request_json("mayor", "shutdown"));
    let sidecar = town.wait_processed("polled.json");
    assert_eq!(sidecar["session"], "gt-mayor");
}
