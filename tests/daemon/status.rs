//! `status` as an operator reads it, against real daemons and a private
//! tmux server: agents, the crash-loop guard, requests in hand, settings,
//! crashed against stopped, degraded, and the exit codes; the heartbeat
//! texts from config; the dry run's own crash-loop memory.

use std::fs;

use serde_json::{json, Value};

use crate::support::proc::kill9;
use crate::support::{one_json, request_json, require_tool, Out, Town, DEADLINE};

fn status(t: &Town) -> (Out, Value) {
    let out = t.gt(&["daemon", "status", "--json"]);
    let v = one_json(&out, "status --json");
    (out, v)
}

fn status_text(t: &Town) -> Out {
    t.gt_env(&["daemon", "status"], &[("NO_COLOR", "1")])
}

fn agent<'a>(v: &'a Value, session: &str) -> &'a Value {
    v["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["session"] == session))
        .unwrap_or_else(|| panic!("no agent {session} in {v:#}"))
}

#[test]
fn agents_show_their_pane_uptime_last_poke_and_the_guard() {
    if !require_tool("tmux") {
        return;
    }
    let mut t = Town::new();
    t.config(json!({ "max_restarts": 1, "heartbeat_interval": "1s" }));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("the restart");
    let refused = t.send_wait("restart", "mayor", &["--timeout", "20s"]);
    assert_eq!(refused.code, Some(1), "{refused:#?}");
    t.wait_until("a heartbeat to poke gt-mayor", DEADLINE, || {
        !status(&t).1["last_pokes"]["gt-mayor"].is_null()
    });

    let (out, v) = status(&t);
    assert_eq!(out.code, Some(0), "{out:#?}");
    let mayor = agent(&v, "gt-mayor");
    assert_eq!(mayor["agent"], "mayor", "{mayor:#}");
    assert_eq!(mayor["alive"], true, "{mayor:#}");
    let pid = t.tmux.pane_pid("gt-mayor").expect("the mayor's pane");
    assert_eq!(mayor["pane_pid"], pid, "{mayor:#}");
    assert!(mayor["started_at"].is_string(), "{mayor:#}");
    assert!(mayor["last_poke"].is_string(), "{mayor:#}");
    assert_eq!(mayor["held"], true, "{mayor:#}");
    assert_eq!(mayor["restarts"], 1, "{mayor:#}");
    let until = mayor["held_until"].as_str().expect("held until a time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(until).is_ok(),
        "{mayor:#}"
    );
    assert_eq!(v["guard"][0]["session"], "gt-mayor", "{v:#}");
    assert_eq!(v["config"]["tmux_socket"], t.tmux.sock.as_str(), "{v:#}");
    assert_eq!(v["config"]["heartbeat_interval_secs"], 1, "{v:#}");

    let text = status_text(&t);
    let row = text
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("gt-mayor"))
        .unwrap_or_else(|| panic!("no gt-mayor row: {text:#?}"));
    assert!(row.contains(&pid.to_string()), "{row}");
    assert!(row.contains("held until "), "{row}");
    assert!(row.contains(" ago"), "the last poke: {row}");

    // Ended, it is still known (to the guard) and shown without a session.
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("shutdown");
    let (_, v) = status(&t);
    assert_eq!(agent(&v, "gt-mayor")["alive"], false, "{v:#}");
    assert!(status_text(&t).stdout.contains("no session"));
}

#[test]
fn a_killed_daemon_is_crashed_and_a_stopped_one_is_not() {
    let t = Town::new();
    let pid = t.start_dry();
    let (out, v) = status(&t);
    assert_eq!(out.code, Some(0), "running: {out:#?}");
    assert_eq!(v["status"], "running", "{v:#}");

    kill9(pid);
    t.wait_daemon_gone(pid);
    let (out, v) = status(&t);
    assert_eq!(out.code, Some(3), "not running: {out:#?}");
    assert_eq!(v["status"], "crashed", "{v:#}");
    assert_eq!(v["crashed"], true, "{v:#}");
    assert_eq!(v["last_pid"], pid, "{v:#}");
    assert!(v["pid"].is_null(), "{v:#}");
    assert!(v["last_alive_at"].is_string(), "{v:#}");
    let text = status_text(&t);
    assert_eq!(text.code, Some(3));
    assert!(
        text.stdout
            .lines()
            .next()
            .is_some_and(|l| l.contains("crashed")
                && l.contains(&format!("PID {pid}"))
                && l.contains("last alive")),
        "{text:#?}"
    );

    // Started and stopped cleanly: stopped, not crashed.
    t.start_dry();
    t.stop();
    let (out, v) = status(&t);
    assert_eq!(out.code, Some(3), "{out:#?}");
    assert_eq!(v["status"], "stopped", "{v:#}");
    assert_eq!(v["crashed"], false, "{v:#}");
    assert!(!status_text(&t).stdout.contains("crashed"));
}

#[test]
fn requests_in_hand_are_shown_with_who_asked_and_when() {
    let t = Town::new();
    t.start_hooked(&["--dry-run"], &[(gt::testing::REQUEST_DELAY_MS, "4000")]);
    t.publish("slow.json", request_json("gastown/witness", "cycle"));
    t.wait_until("the request claimed into processing/", DEADLINE, || {
        t.processing().join("slow.json").exists()
    });
    let (_, v) = status(&t);
    let hand = v["in_progress"].as_array().expect("an array");
    assert_eq!(hand.len(), 1, "{v:#}");
    assert_eq!(hand[0]["file"], "slow.json", "{v:#}");
    assert_eq!(hand[0]["from"], "gastown/witness", "{v:#}");
    assert_eq!(hand[0]["action"], "cycle", "{v:#}");
    assert!(hand[0]["claimed_at"].is_string(), "{v:#}");
    let text = status_text(&t);
    assert!(text.stdout.contains("in progress:"), "{text:#?}");
    assert!(
        text.stdout
            .contains("gastown/witness cycle (slow.json, claimed "),
        "{text:#?}"
    );
    t.wait_processed("slow.json");
    let (_, v) = status(&t);
    assert_eq!(v["in_progress"], json!([]), "{v:#}");
}

#[test]
fn outcomes_that_cannot_be_filed_make_it_degraded() {
    let t = Town::new();
    t.start_dry();
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("serving");
    fs::remove_dir_all(t.processed()).unwrap();
    fs::write(t.processed(), b"not a directory").unwrap();
    t.send("shutdown", "deacon");
    t.wait_until("an outcome waiting to be filed", DEADLINE, || {
        t.state_u64("outcomes_unfiled") == 1
    });
    let (out, v) = status(&t);
    assert_eq!(out.code, Some(4), "degraded: {out:#?}");
    assert_eq!(v["status"], "degraded", "{v:#}");
    assert_eq!(v["degraded"], json!(["outcomes cannot be filed"]), "{v:#}");
    let text = status_text(&t);
    assert_eq!(text.code, Some(4));
    assert!(
        text.stdout
            .lines()
            .next()
            .is_some_and(|l| l.contains("degraded")),
        "{text:#?}"
    );
    assert!(text.stderr.contains("cannot be filed"), "{text:#?}");

    fs::remove_file(t.processed()).unwrap();
    fs::create_dir(t.processed()).unwrap();
    t.wait_until("filed after all", DEADLINE, || {
        t.state_u64("outcomes_unfiled") == 0
    });
    assert_eq!(status(&t).0.code, Some(0));
}

#[test]
fn settings_are_the_ones_in_force() {
    let mut t = Town::new();
    t.config(json!({ "heartbeat_interval": "90s" }));
    // notify is asked for (the default) but cannot be set up: it polls.
    t.start_hooked(&["--dry-run"], &[(gt::testing::NOTIFY_FAIL, "1")]);
    let (_, v) = status(&t);
    assert_eq!(v["config"]["watch_mode"], "poll", "{v:#}");
    assert_eq!(v["config"]["heartbeat_interval_secs"], 90, "{v:#}");
    assert_eq!(v["config"]["dry_run"], true, "{v:#}");
    let text = status_text(&t);
    assert!(
        text.stdout.contains(&format!(
            "settings   inbox watched by poll, tmux socket {}, dry run",
            t.tmux.sock
        )),
        "{text:#?}"
    );
    assert!(text.stdout.contains("every 1m30s"), "{text:#?}");
}

#[test]
fn heartbeat_texts_come_from_the_config() {
    if !require_tool("tmux") {
        return;
    }
    let mut t = Town::new();
    t.config(json!({
        "heartbeat_interval": "1s",
        "mayor_poke_text": "PING the mayor",
        "witness_poke_text": "",
    }));
    t.tmux.new_session("gt-mayor", &["sleep", "600"]);
    t.tmux.new_session("gt-x-witness", &["sleep", "600"]);
    t.start();
    t.wait_until("two pokes of the configured text", DEADLINE, || {
        t.tmux
            .capture_pane("gt-mayor")
            .matches("PING the mayor")
            .count()
            >= 2
    });
    assert!(!t.tmux.capture_pane("gt-mayor").contains("HEARTBEAT"));
    assert!(
        t.tmux.capture_pane("gt-x-witness").trim().is_empty(),
        "an empty text pokes nobody:\n{}",
        t.tmux.capture_pane("gt-x-witness")
    );
    let (_, v) = status(&t);
    assert!(v["last_pokes"]["gt-mayor"].is_string(), "{v:#}");
    assert!(v["last_pokes"]["gt-x-witness"].is_null(), "{v:#}");
}

#[test]
fn a_dry_runs_restarts_do_not_hold_a_real_daemon_back() {
    if !require_tool("tmux") {
        return;
    }
    let mut t = Town::new();
    t.config(json!({ "max_restarts": 1 }));
    t.start_dry();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("the dry run's restart");
    let refused = t.send_wait("restart", "mayor", &["--timeout", "20s"]);
    assert_eq!(
        refused.code,
        Some(1),
        "the dry run's own guard holds: {refused:#?}"
    );
    assert!(refused.stdout.contains("crash-loop guard"), "{refused:#?}");
    t.stop();

    t.start();
    let real = t.send_wait("restart", "mayor", &["--timeout", "20s"]);
    assert_eq!(
        real.code,
        Some(0),
        "pretended restarts do not count: {real:#?}"
    );
    assert!(t.tmux.has_session("gt-mayor"));
}

#[test]
fn an_installed_unit_is_named() {
    let t = Town::new();
    let dir = tempfile::tempdir().unwrap();
    let install = |args: &[&str]| {
        let mut cmd = t.command(&["daemon"]);
        cmd.args(args).env("GT_INSTALL_DIR", dir.path());
        crate::support::run(cmd)
    };
    install(&["install", "--systemd", "--user"]).assert_ok("install");
    let unit = crate::support::ls(dir.path())
        .into_iter()
        .find(|n| n.ends_with(".service"))
        .expect("a unit written");
    let mut cmd = t.command(&["daemon", "status", "--json"]);
    cmd.env("GT_INSTALL_DIR", dir.path());
    let v = one_json(&crate::support::run(cmd), "status --json");
    assert_eq!(v["unit"]["name"], unit.as_str(), "{v:#}");
    assert_eq!(v["unit"]["manager"], "systemd", "{v:#}");
    let mut cmd = t.command(&["daemon", "status"]);
    cmd.env("GT_INSTALL_DIR", dir.path());
    let text = crate::support::run(cmd);
    assert!(
        text.stdout
            .contains(&format!("unit       {unit} (systemd, ")),
        "{text:#?}"
    );
}
