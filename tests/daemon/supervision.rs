//! Supervision (opt-in): dead agents are restarted and recorded with their
//! pane's last lines; repeated deaths back off and quarantine; deliberate
//! stops, shutdown.lock and mass deaths are respected; extra panes are
//! never a death; without the `supervise` key nothing is restarted.
//! Real tmux on a private socket; every wait is for a condition.

use serde_json::{json, Value};

use crate::support::proc::{kill9, signal, Signal};
use crate::support::{count_requests, read_lines, request_json, request_names, Town, DEADLINE};

/// Supervised agents print a marker first, so their captured pane shows it.
fn supervised(t: &mut Town, agents: &[&str], extra: Value) {
    let mut config = json!({
        "supervise": agents,
        "supervise_interval": "200ms",
        "agent_command": ["sh", "-c", "echo agent-marker-K2; exec sleep 600"],
    });
    if let (Value::Object(base), Value::Object(more)) = (&mut config, extra) {
        base.extend(more);
    }
    t.config(config);
}

/// Records of supervised restarts (`from: "daemon"`) in `dir`.
fn daemon_records(t: &Town, dir: &std::path::Path) -> Vec<String> {
    request_names(dir)
        .into_iter()
        .filter(|n| n.contains("-daemon-"))
        .filter(|n| t.sidecar(dir, n)["from"] == "daemon")
        .collect()
}

fn pane_pid(t: &Town, session: &str) -> Option<u32> {
    let out = t.tmux.run(&[
        "display-message",
        "-p",
        "-t",
        &format!("={session}:0.0"),
        "#{pane_dead} #{pane_pid}",
    ]);
    let text = out.stdout.trim().to_string();
    let (dead, pid) = text.split_once(' ')?;
    (dead == "0").then(|| pid.parse().ok()).flatten()
}

/// Waits until supervision's first starts (`n` of them) are filed: an
/// agent killed while its start is still priming fails that start instead.
fn wait_started(t: &Town, n: usize) {
    t.wait_until(&format!("{n} supervised starts filed"), DEADLINE, || {
        daemon_records(t, &t.processed()).len() >= n
    });
}

fn wait_alive(t: &Town, session: &str) -> u32 {
    let mut pid = None;
    t.wait_until(&format!("{session} running"), DEADLINE, || {
        pid = pane_pid(t, session);
        pid.is_some()
    });
    pid.unwrap()
}

fn explain(t: &Town, agent: &str) -> String {
    let out = t.gt(&["daemon", "explain", agent]);
    out.assert_ok("explain");
    out.stdout
}

/// Waits until the daemon's debug log shows `n` more supervision checks.
fn wait_checks(t: &Town, needle: &str, n: usize) {
    let count = || {
        read_lines(&t.log_file())
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    let target = count() + n;
    t.wait_until(
        &format!("{n} more \"{needle}\" log lines"),
        DEADLINE,
        || count() >= target,
    );
}

fn start_debug(t: &Town) {
    t.started(t.start_command(&["--log-level", "debug"], &[]));
}

#[test]
fn without_the_supervise_key_nothing_is_restarted() {
    let mut t = Town::new();
    t.config(json!({"heartbeat_interval": "1s"}));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart");
    let pid = wait_alive(&t, "gt-mayor");
    kill9(pid);
    t.wait_until("gt-mayor gone", DEADLINE, || {
        !t.tmux.has_session("gt-mayor")
    });
    // Several heartbeats later, still nobody restarted it.
    let beats = t.state_u64("heartbeat_count");
    t.wait_until("three more heartbeats", DEADLINE, || {
        t.state_u64("heartbeat_count") >= beats + 3
    });
    assert!(!t.tmux.has_session("gt-mayor"), "{}", t.snapshot());
    assert!(daemon_records(&t, &t.processed()).is_empty());
    assert!(
        !t.supervise_file().exists(),
        "no supervision memory written"
    );
}

#[test]
fn a_killed_agent_is_restarted_within_a_check_and_recorded_with_its_pane() {
    let mut t = Town::new();
    supervised(&mut t, &["mayor"], json!({}));
    t.start();
    // Missing when supervision began: started, recorded, not a death.
    let first = wait_alive(&t, "gt-mayor");
    wait_started(&t, 1);
    kill9(first);
    let mut second = None;
    t.wait_until("a new agent process", DEADLINE, || {
        second = pane_pid(&t, "gt-mayor").filter(|&p| p != first);
        second.is_some()
    });
    t.wait_until("the restart is recorded", DEADLINE, || {
        daemon_records(&t, &t.processed()).len() == 2
    });
    let records = daemon_records(&t, &t.processed());
    let newest = records.iter().max().unwrap();
    let sc = t.sidecar(&t.processed(), newest);
    assert_eq!(sc["session"], "gt-mayor", "{sc:#}");
    // The capture is in place before the record is filed: no wait.
    let pane = t.processed().join(format!("{newest}.pane.txt"));
    let pane = std::fs::read_to_string(&pane)
        .unwrap_or_else(|e| panic!("no capture beside the filed {newest}: {e}"));
    assert!(pane.contains("agent-marker-K2"), "capture: {pane:?}");
    let why = explain(&t, "mayor");
    // SIGKILL leaves no exit status: said as a signal, not a status -1
    // (tmux 3.4 and later also name the signal).
    assert!(why.contains("agent was killed by"), "{why}");
    assert!(!why.contains("status"), "{why}");
    assert!(why.contains("pane captured"), "{why}");
}

#[test]
fn a_reloaded_max_restarts_is_the_one_supervision_quarantines_by() {
    let mut t = Town::new();
    let crashing = |max: u32| {
        json!({
            "agent_command": ["sh", "-c", "echo crashing; exit 1"],
            "max_restarts": max,
            "supervise_backoff": "300ms",
            "supervise_backoff_max": "300ms",
            "quarantine": "10m",
        })
    };
    supervised(&mut t, &["mayor"], crashing(50));
    let pid = t.start();
    t.wait_until("a death in backoff", DEADLINE, || {
        explain(&t, "mayor").contains("backoff")
    });
    // The crash-loop guard of requests follows a reload: so does
    // supervision, which shares its counts.
    supervised(&mut t, &["mayor"], crashing(2));
    signal(pid, Signal::HUP);
    t.wait_log_line("the reload line", |l| {
        l.contains("config reloaded") && l.contains("max_restarts")
    });
    t.wait_until("a quarantine", DEADLINE, || {
        explain(&t, "mayor").contains("quarantined until")
    });
    let why = explain(&t, "mayor");
    assert!(why.contains("(max_restarts 2)"), "{why}");
}

#[test]
fn an_agent_that_keeps_dying_backs_off_is_quarantined_and_tried_again_later() {
    let mut t = Town::new();
    supervised(
        &mut t,
        &["mayor"],
        json!({
            "agent_command": ["sh", "-c", "echo crashing; exit 1"],
            "max_restarts": 3,
            "supervise_backoff": "300ms",
            "supervise_backoff_max": "300ms",
            "quarantine": "2s",
        }),
    );
    t.start();
    t.wait_until("a backoff, then a quarantine", DEADLINE, || {
        let why = explain(&t, "mayor");
        why.contains("backoff") && why.contains("quarantined until")
    });
    t.wait_until("a retry once the quarantine is over", DEADLINE, || {
        explain(&t, "mayor").contains("its quarantine is over")
    });
    let why = explain(&t, "mayor");
    let order: Vec<usize> = ["backoff", "quarantine", "its quarantine is over"]
        .iter()
        .map(|w| why.find(w).unwrap_or(usize::MAX))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{why}");
    // Each failed start was recorded like a request.
    assert!(
        !daemon_records(&t, &t.failed()).is_empty(),
        "{}",
        t.snapshot()
    );
}

#[test]
fn a_shutdown_request_is_not_undone_by_supervision() {
    let mut t = Town::new();
    supervised(&mut t, &["mayor", "deacon"], json!({}));
    t.start();
    wait_alive(&t, "gt-mayor");
    let deacon = wait_alive(&t, "gt-deacon");
    wait_started(&t, 2);
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("shutdown");
    // Proof that supervision looked again after the shutdown: it restarts
    // the deacon, killed after it.
    kill9(deacon);
    t.wait_until("the deacon restarted", DEADLINE, || {
        pane_pid(&t, "gt-deacon").is_some_and(|p| p != deacon)
    });
    assert!(!t.tmux.has_session("gt-mayor"), "{}", t.snapshot());
    assert!(explain(&t, "mayor").contains("stopped on request"));
    let status = t.status_json();
    assert_eq!(
        status["supervision"]["agents"]["gt-mayor"]["state"], "stopped_on_request",
        "{status:#}"
    );
    assert_eq!(
        status["supervision"]["agents"]["gt-deacon"]["state"],
        "running"
    );
    let text = t.gt(&["daemon", "status"]).stdout;
    assert!(text.contains("gt-mayor: stopped on request"), "{text}");
    // A restart request puts it back under supervision.
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart");
    let again = wait_alive(&t, "gt-mayor");
    kill9(again);
    t.wait_until("the mayor restarted by supervision", DEADLINE, || {
        pane_pid(&t, "gt-mayor").is_some_and(|p| p != again)
    });
}

#[test]
fn shutdown_lock_stops_all_restarts() {
    let mut t = Town::new();
    supervised(&mut t, &["mayor"], json!({}));
    start_debug(&t);
    let pid = wait_alive(&t, "gt-mayor");
    wait_started(&t, 1);
    t.create_shutdown_lock();
    t.wait_log_line("supervision says it is paused", |l| {
        l.contains("supervision paused") && l.contains("shutdown.lock")
    });
    kill9(pid);
    wait_checks(&t, "supervision check skipped: shutdown.lock", 3);
    assert_eq!(pane_pid(&t, "gt-mayor"), None, "{}", t.snapshot());
    assert_eq!(
        daemon_records(&t, &t.processed()).len(),
        1,
        "only the first start"
    );
}

#[test]
fn three_agents_dying_together_pause_supervision_until_resumed() {
    let mut t = Town::new();
    supervised(&mut t, &["mayor", "deacon", "gastown/witness"], json!({}));
    t.start();
    let sessions = ["gt-mayor", "gt-deacon", "gt-gastown-witness"];
    for s in sessions {
        wait_alive(&t, s);
    }
    wait_started(&t, 3);
    // The tmux server crashes: every agent dies at the same moment.
    t.tmux.run(&["kill-server"]);
    t.wait_until("supervision paused", DEADLINE, || {
        serde_json::from_slice::<Value>(&std::fs::read(t.supervise_file()).unwrap_or_default())
            .is_ok_and(|v| v["paused"].is_object())
    });
    for s in sessions {
        assert_eq!(
            pane_pid(&t, s),
            None,
            "{s} was not restarted\n{}",
            t.snapshot()
        );
    }
    t.gt(&["daemon", "supervise", "resume"])
        .assert_ok("supervise resume");
    for s in sessions {
        wait_alive(&t, s);
    }
}

#[test]
fn a_second_pane_or_window_is_never_taken_for_a_death() {
    let mut t = Town::new();
    supervised(&mut t, &["mayor"], json!({}));
    start_debug(&t);
    let agent = wait_alive(&t, "gt-mayor");
    wait_started(&t, 1);
    // A person splits the agent's window and opens a window; both exit.
    t.tmux
        .run(&["split-window", "-t", "=gt-mayor:0", "sh", "-c", "exit 3"])
        .assert_ok("split-window");
    t.tmux
        .run(&["new-window", "-t", "=gt-mayor:", "sh", "-c", "exit 4"])
        .assert_ok("new-window");
    wait_checks(&t, "supervision check", 3);
    assert_eq!(pane_pid(&t, "gt-mayor"), Some(agent), "{}", t.snapshot());
    assert_eq!(
        daemon_records(&t, &t.processed()).len(),
        1,
        "only the first start"
    );
}

#[test]
fn an_exit_that_is_not_a_crash_does_not_count_toward_quarantine() {
    let mut t = Town::new();
    supervised(
        &mut t,
        &["mayor"],
        json!({
            "agent_command": ["sh", "-c", "echo usage limit reached; sleep 0.3; exit 1"],
            "max_restarts": 2,
            "restart_window": "1h",
        }),
    );
    // Keeps the private server up between the agent's lives.
    t.tmux.new_session("keepalive", &["sleep", "600"]);
    t.start();
    t.wait_until("three restarts after not-a-crash exits", DEADLINE, || {
        explain(&t, "mayor").matches("not a crash").count() >= 3
    });
    let why = explain(&t, "mayor");
    assert!(!why.contains("quarantine"), "{why}");
    assert!(!why.contains("backoff"), "{why}");
}

#[test]
fn an_agent_whose_restart_is_on_its_way_is_not_taken_for_dead_again() {
    let mut t = Town::new();
    supervised(&mut t, &["mayor"], json!({}));
    // The consumer takes its time over two bad requests (a test hook), so
    // supervision's start of the mayor waits behind them while supervision
    // looks again every 200 ms and finds no session yet.
    t.publish("a-bad.json", "not json");
    t.publish("b-bad.json", "not json");
    t.start_hooked(&[], &[(gt::testing::REQUEST_DELAY_MS, "1500")]);
    t.wait_failed("b-bad.json");
    wait_alive(&t, "gt-mayor");
    wait_started(&t, 1);
    let why = explain(&t, "mayor");
    assert!(why.contains("not running when supervision began"), "{why}");
    assert!(
        !why.contains("session missing") && !why.contains("backoff"),
        "a start on its way was taken for a death: {why}"
    );
    assert_eq!(
        daemon_records(&t, &t.processed()).len(),
        1,
        "{}",
        t.snapshot()
    );
}

#[test]
fn requests_for_agents_nobody_supervises_leave_supervision_memory_alone() {
    let mut t = Town::new();
    supervised(&mut t, &["mayor"], json!({}));
    // What an older daemon left: a record of an agent nobody supervises.
    std::fs::create_dir_all(t.supervise_file().parent().unwrap()).unwrap();
    let since = chrono::Utc::now().to_rfc3339();
    let old =
        json!({"agents": {"gt-old-witness": {"state": "stopped_on_request", "since": since}}});
    std::fs::write(t.supervise_file(), old.to_string()).unwrap();
    t.start();
    wait_alive(&t, "gt-mayor");
    wait_started(&t, 1);
    // Shutdowns for the witnesses of 300 rigs: processed (no session to
    // end), none of them supervised.
    for i in 0..300 {
        let from = format!("rig{i}/witness");
        t.publish(&format!("r{i:03}.json"), request_json(&from, "shutdown"));
    }
    t.wait_until("the 300 shutdowns filed", DEADLINE, || {
        count_requests(&t.processed()) >= 301
    });
    let memory: Value =
        serde_json::from_slice(&std::fs::read(t.supervise_file()).unwrap()).unwrap();
    let sessions: Vec<&String> = memory["agents"].as_object().unwrap().keys().collect();
    assert_eq!(sessions, ["gt-mayor"], "{memory:#}");
    let status = t.gt(&["daemon", "status"]);
    assert!(
        !status.stdout.contains("gt-rig") && !status.stdout.contains("gt-old"),
        "{}",
        status.stdout
    );
}

/// Supervision starts the mayor with a long prime_delay; `cut_short` ends
/// the daemon within it, leaving the agent running unprimed. The next
/// daemon must file that restart as failed and prime the agent.
fn restart_cut_short_then_primed(cut_short: impl FnOnce(&Town, u32)) -> (Town, Value) {
    let mut t = Town::new();
    let typed = t.root().join("typed.txt");
    // The agent keeps what is typed into it: being primed shows there.
    let agent = json!(["sh", "-c", format!("exec cat > {}", typed.display())]);
    let config = |prime_delay: &str| json!({"agent_command": agent, "prime_text": "PRIME-9Z", "prime_delay": prime_delay});
    supervised(&mut t, &["mayor"], config("10m"));
    let pid = t.start();
    t.wait_until("supervision has started the mayor", DEADLINE, || {
        t.tmux.has_session("gt-mayor")
    });
    cut_short(&t, pid);
    supervised(&mut t, &["mayor"], config("200ms"));
    t.start();
    t.wait_until("the cut-short restart filed", DEADLINE, || {
        !daemon_records(&t, &t.failed()).is_empty()
    });
    let records = daemon_records(&t, &t.failed());
    let sc = t.sidecar(&t.failed(), &records[0]);
    assert_eq!(sc["session"], "gt-mayor", "{sc:#}");
    t.wait_until("the mayor primed", DEADLINE, || {
        std::fs::read_to_string(&typed).is_ok_and(|s| s.contains("PRIME-9Z"))
    });
    (t, sc)
}

#[test]
fn a_restart_cut_short_by_kill_9_is_filed_and_the_agent_primed_by_the_next_daemon() {
    let (t, sc) = restart_cut_short_then_primed(|_, pid| {
        kill9(pid);
        assert!(crate::support::proc::wait_gone(&[pid], DEADLINE));
    });
    let why = sc["error"].as_str().unwrap_or_default();
    assert!(why.starts_with("interrupted"), "{sc:#}");
    assert!(explain(&t, "mayor").contains("interrupted"));
}

#[test]
fn a_restart_cut_short_by_a_stop_leaves_no_unprimed_agent_behind() {
    let (_t, sc) = restart_cut_short_then_primed(|t, _| {
        t.stop();
    });
    let why = sc["error"].as_str().unwrap_or_default();
    assert!(why.contains("before priming"), "{sc:#}");
}

#[test]
fn supervision_that_cannot_write_its_memory_makes_the_daemon_degraded() {
    let mut t = Town::new();
    supervised(&mut t, &["mayor"], json!({}));
    t.start();
    let first = wait_alive(&t, "gt-mayor");
    wait_started(&t, 1);
    // Its lock file made a directory: supervise.json cannot be written.
    let lock = t.daemon_dir().join("supervise.lock");
    let _ = std::fs::remove_file(&lock);
    std::fs::create_dir(&lock).unwrap();
    kill9(first);
    t.wait_until("status says degraded: supervision", DEADLINE, || {
        let s = t.status_json();
        s["status"] == "degraded"
            && s["degraded"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d == "supervision cannot act"))
    });
    std::fs::remove_dir(&lock).unwrap();
    let second = wait_alive(&t, "gt-mayor");
    assert_ne!(second, first);
    t.wait_until("status running again", DEADLINE, || {
        t.status_json()["status"] == "running"
    });
}
