//! No agent waits for another: different agents' requests run at the same
//! time, one agent's in order; every tmux call has a deadline; a stop is
//! prompt; a new session is the daemon's until primed. Real tmux on a
//! private socket; the assertions are about order, never about speed.

use std::fs;

use serde_json::json;

use crate::support::proc::{Resume, Signal};
use crate::support::{file_name, read_lines, request_json, Town, DEADLINE};

/// Index of the first log line containing every needle.
fn log_index(t: &Town, needles: &[&str]) -> Option<usize> {
    read_lines(&t.log_file())
        .iter()
        .position(|l| needles.iter().all(|n| l.contains(n)))
}

#[test]
fn two_agents_restart_at_once_while_one_agents_requests_keep_their_order() {
    let mut t = Town::new();
    // Long enough that two restarts run one after the other could never
    // both have created their sessions before the first was filed.
    t.config(json!({"prime_delay": "2s"}));
    t.start();
    let mayor = file_name(&t.send("restart", "mayor"));
    let deacon = file_name(&t.send("restart", "deacon"));
    t.wait_processed(&mayor);
    t.wait_processed(&deacon);
    // Both sessions were created before either request was filed.
    let created_mayor = log_index(&t, &["session created", "gt-mayor"]).expect("mayor created");
    let created_deacon = log_index(&t, &["session created", "gt-deacon"]).expect("deacon created");
    let first_filed = log_index(&t, &["request processed"]).expect("a request processed");
    assert!(
        created_mayor < first_filed && created_deacon < first_filed,
        "the two restarts did not overlap\n{}",
        t.all_logs()
    );

    // One agent: a cycle then a shutdown run in that order, never together.
    let cycle = file_name(&t.send("cycle", "mayor"));
    let shutdown = file_name(&t.send("shutdown", "mayor"));
    let c = t.wait_processed(&cycle);
    let s = t.wait_processed(&shutdown);
    let at = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v["finished_at"].as_str().unwrap()).unwrap()
    };
    assert!(at(&c) <= at(&s), "cycle {c:#} then shutdown {s:#}");
    assert!(
        !t.tmux.has_session("gt-mayor"),
        "the shutdown ran last, so no mayor session is left\n{}",
        t.snapshot()
    );
    assert!(t.tmux.has_session("gt-deacon"));
}

#[test]
fn a_bad_request_is_filed_while_a_restart_is_still_running() {
    let mut t = Town::new();
    t.config(json!({"prime_delay": "30s"}));
    t.start();
    let restart = file_name(&t.send("restart", "mayor"));
    t.wait_until("the restart has started its session", DEADLINE, || {
        t.tmux.has_session("gt-mayor")
    });
    t.publish("bad.json", request_json("no such/agent/x", "cycle"));
    t.wait_failed("bad.json");
    assert!(
        t.processing().join(&restart).exists(),
        "the restart is still in hand while the bad request was filed\n{}",
        t.snapshot()
    );
}

#[test]
fn a_wedged_tmux_server_fails_the_request_within_the_deadline_and_others_go_on() {
    let mut t = Town::new();
    t.config(json!({"tmux_timeout": "1s"}));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart starts the private tmux server");
    let server = t.tmux.server_pid();
    let resume = Resume(server);
    gt::process::signal(server, Signal::STOP);
    let wedged = t.send_wait("shutdown", "mayor", &["--timeout", "20s"]);
    assert_eq!(wedged.code, Some(1), "failed, not timed out: {wedged:#?}");
    assert!(
        wedged.stdout.contains("tmux") && wedged.stdout.contains("1s"),
        "the reason names tmux and the limit: {wedged:#?}"
    );
    drop(resume); // SIGCONT
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("requests succeed again once tmux answers");
    assert!(!t.tmux.has_session("gt-mayor"));
}

#[test]
fn stop_during_a_long_prime_delay_is_prompt_and_files_the_truth() {
    let mut t = Town::new();
    t.config(json!({"prime_delay": "10m"}));
    t.start();
    let name = file_name(&t.send("restart", "mayor"));
    t.wait_until("the restart has started its session", DEADLINE, || {
        t.tmux.has_session("gt-mayor")
    });
    let out = t.gt(&["daemon", "stop", "--timeout", "10s"]);
    out.assert_ok("stop");
    assert!(
        out.stdout.contains("Daemon stopped") && !out.stdout.contains("SIGKILL"),
        "stopped on SIGTERM, within its timeout: {out:#?}"
    );
    let sc = t.wait_failed(&name);
    let why = sc["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("stopped") && why.contains("before priming"),
        "filed as what happened, not as interrupted: {why:?}"
    );
}

#[test]
fn an_agent_that_exits_at_once_fails_the_request_even_without_prime_text() {
    let mut t = Town::new();
    t.config(json!({"agent_command": "true", "prime_text": ""}));
    t.start();
    let out = t.send_wait("restart", "mayor", &["--timeout", "20s"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stdout.contains("exited"), "reason: {out:#?}");
}

#[test]
fn the_heartbeat_never_types_into_a_pane_before_its_prime_text() {
    let mut t = Town::new();
    let typed = t.root().join("typed.txt");
    t.config(json!({
        "agent_command": ["sh", "-c", format!("exec cat > {}", typed.display())],
        "prime_text": "PRIME-7Q",
        // Beats fall inside the prime delay (the shortest interval is 1s).
        "prime_delay": "3s",
        "heartbeat_interval": "1s",
    }));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "30s"])
        .assert_ok("restart");
    t.wait_until("a heartbeat typed after the prime text", DEADLINE, || {
        fs::read_to_string(&typed).is_ok_and(|s| s.contains("HEARTBEAT"))
    });
    let text = fs::read_to_string(&typed).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("PRIME-7Q"),
        "the prime text comes first: {text:?}"
    );
}

#[test]
fn nothing_is_claimed_to_wait_for_a_worker() {
    let mut t = Town::new();
    t.config(json!({"max_parallel": 1, "tmux_timeout": "1m", "prime_delay": "1s"}));
    t.tmux.new_session("gt-other", &["sleep", "600"]);
    t.start();
    // The one worker is held by a request whose tmux call hangs: the
    // server is stopped (an agent's boot would not hold it).
    let server = t.tmux.server_pid();
    let resume = Resume(server);
    gt::process::signal(server, Signal::STOP);
    let first = file_name(&t.send("restart", "mayor"));
    t.wait_until("the first restart is in hand", DEADLINE, || {
        t.processing().join(&first).exists()
    });
    let second = file_name(&t.send("restart", "deacon"));
    // The daemon has looked at it (a bad request behind it is filed)...
    t.publish("zz-bad.json", request_json("no such/agent/x", "cycle"));
    t.wait_failed("zz-bad.json");
    // ...and left it unclaimed: a stop or a crash now cannot call it
    // interrupted, nor run it.
    assert!(t.inbox().join(&second).exists(), "{}", t.snapshot());
    drop(resume); // SIGCONT
    t.wait_processed(&first);
    t.wait_processed(&second);
    assert!(t.tmux.has_session("gt-deacon"));
}

#[test]
fn with_one_worker_an_agents_next_request_runs_as_soon_as_its_first_is_done() {
    let mut t = Town::new();
    // No rescan to fall back on: only the end of the first request can
    // release the second.
    t.config(json!({"prime_delay": "1s", "max_parallel": 1, "rescan_interval": "1h"}));
    // Both found by the start-up scan, so both are looked at in one batch:
    // the second waits behind the first, claimed in that batch.
    t.publish("a-restart.json", request_json("mayor", "restart"));
    t.publish("b-shutdown.json", request_json("mayor", "shutdown"));
    t.start();
    t.wait_processed("a-restart.json");
    t.wait_processed("b-shutdown.json");
    assert!(!t.tmux.has_session("gt-mayor"), "{}", t.snapshot());
}

#[test]
fn a_shutdown_behind_a_pool_full_of_booting_agents_is_filed_before_any_of_them() {
    let mut t = Town::new();
    // Two workers, four cycles: every worker is taken by a cycle, and
    // would stay taken for the whole prime_delay if booting held one.
    t.config(json!({"prime_delay": "10m", "max_parallel": 2}));
    t.start();
    let rigs = ["r0", "r1", "r2", "r3"];
    let cycles: Vec<String> = rigs
        .iter()
        .map(|rig| file_name(&t.send("cycle", &format!("{rig}/witness"))))
        .collect();
    let shutdown = file_name(&t.send("shutdown", "deacon"));
    t.wait_processed(&shutdown);
    for cycle in &cycles {
        assert!(
            gt::outcome::filed(&t, cycle.as_ref()).is_none(),
            "{cycle} is still booting, so not filed\n{}",
            t.snapshot()
        );
    }
    t.wait_until("every cycle's session started", DEADLINE, || {
        rigs.iter()
            .all(|rig| t.tmux.has_session(&format!("gt-{rig}-witness")))
    });
    // A stop ends the boots at once (well within `stop`'s 10 s), each
    // filed as what it was.
    let out = t.stop();
    assert!(
        !out.stdout.contains("SIGKILL"),
        "stopped on SIGTERM: {out:#?}"
    );
    for cycle in &cycles {
        t.wait_failed_with(cycle, "before priming");
    }
}

#[test]
fn an_agents_next_request_waits_in_the_inbox_until_its_prime_is_typed() {
    let mut t = Town::new();
    let typed = t.root().join("typed.txt");
    t.config(json!({
        "agent_command": ["sh", "-c", format!("exec cat > {}", typed.display())],
        "prime_text": "PRIME-7Q",
        "prime_delay": "3s",
    }));
    t.start();
    let cycle = file_name(&t.send("cycle", "mayor"));
    let shutdown = file_name(&t.send("shutdown", "mayor"));
    t.wait_until("the cycle's session started", DEADLINE, || {
        t.tmux.has_session("gt-mayor")
    });
    if gt::outcome::filed(&t, cycle.as_ref()).is_none() {
        // Still booting: the shutdown waits, unclaimed.
        assert!(t.inbox().join(&shutdown).exists(), "{}", t.snapshot());
    }
    let c = t.wait_processed(&cycle);
    let s = t.wait_processed(&shutdown);
    let at = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v["finished_at"].as_str().unwrap()).unwrap()
    };
    assert!(at(&c) <= at(&s), "cycle {c:#} then shutdown {s:#}");
    assert_eq!(
        fs::read_to_string(&typed)
            .unwrap_or_default()
            .lines()
            .next(),
        Some("PRIME-7Q"),
        "the prime was typed before the shutdown ended the agent"
    );
    assert!(!t.tmux.has_session("gt-mayor"), "{}", t.snapshot());
}

#[test]
fn a_wedged_tmux_server_makes_the_daemon_degraded_until_it_answers() {
    let mut t = Town::new();
    t.config(json!({"tmux_timeout": "1s", "heartbeat_interval": "1s"}));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart starts the private tmux server");
    assert_eq!(t.status_json()["status"], "running");
    let server = t.tmux.server_pid();
    let resume = Resume(server);
    gt::process::signal(server, Signal::STOP);
    for from in ["mayor", "deacon", "gastown/witness"] {
        let wedged = t.send_wait("shutdown", from, &["--timeout", "20s"]);
        assert_eq!(wedged.code, Some(1), "failed: {wedged:#?}");
    }
    t.wait_until("status says degraded: tmux", DEADLINE, || {
        let s = t.status_json();
        s["status"] == "degraded"
            && s["degraded"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d == "tmux not answering"))
    });
    drop(resume); // SIGCONT
    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("requests succeed again once tmux answers");
    t.wait_until("status running again", DEADLINE, || {
        t.status_json()["status"] == "running"
    });
}
