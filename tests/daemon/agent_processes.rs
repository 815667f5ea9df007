//! Every process of an agent ends with it: `shutdown`, `restart` and a
//! supervision restart leave nothing of the old agent behind, children that
//! ignore SIGTERM and SIGHUP and ones re-parented to init included, and
//! never touch another live agent's processes. What is found outside any
//! agent (after the daemon was killed) is reported by `status`, the
//! metrics and the log, and ended only with `end_leftovers`.
//!
//! The agent is a shell that ignores TERM and HUP, leaves a child behind
//! and becomes a `sleep` itself: what an agent program with a language
//! server or a build in the background looks like to the daemon. Its
//! processes are counted by what the daemon put in their environment
//! (`GT_TOWN_ROOT`, `GT_ROLE`), read here straight from `/proc`. Every
//! process a test starts is in a pane of the test's tmux server, so the
//! harness ends it on drop (by the `TMUX` variable), however the test ends.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::metrics::{sample, town_with_metrics, wait_reply};
use crate::support::proc::{agent_processes, alive, kill9, parent, signal, tree, Signal};
use crate::support::{read_lines, request_names, Town, DEADLINE};

/// Ignores TERM and HUP, leaves `sleep 1000` running, becomes `sleep 600`.
const STUBBORN: &str = "trap '' TERM HUP; sleep 1000 & exec sleep 600";

fn stubborn(extra: Value) -> Value {
    let mut config = json!({"agent_command": ["sh", "-c", STUBBORN]});
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
        c.extend(e);
    }
    config
}

/// The live pane process of `session` (None while it is missing or dead).
fn live_pane(t: &Town, session: &str) -> Option<u32> {
    let text = t.tmux.display(session, "#{pane_dead} #{pane_pid}")?;
    let (dead, pid) = text.trim().split_once(' ')?;
    (dead == "0").then(|| pid.parse().ok()).flatten()
}

/// Waits until the agent `role` runs as one pane process and its child
/// (the pane's tree, both carrying its marks); returns both.
fn wait_agent(t: &Town, role: &str, session: &str) -> (u32, u32) {
    let mut found = None;
    t.wait_until(
        &format!("{session}: its pane process and its child"),
        DEADLINE,
        || {
            let Some(pane) = live_pane(t, session) else {
                return false;
            };
            let marked = agent_processes(t.root(), role);
            let tree: BTreeSet<u32> = tree(&[pane]).into_iter().collect();
            found = (tree.len() == 2 && tree.is_subset(&marked))
                .then(|| (pane, *tree.iter().find(|&&p| p != pane).unwrap()));
            found.is_some()
        },
    );
    found.unwrap()
}

/// Kills the agent's pane process as a crash would, and waits until its
/// child (which ignores the SIGHUP) has been re-parented.
fn crash(t: &Town, pane: u32, child: u32) {
    kill9(pane);
    t.wait_until("the child re-parented, still running", DEADLINE, || {
        parent(child).is_some_and(|p| p != pane)
    });
    assert!(alive(child), "the child must outlive the crash");
}

#[test]
fn shutdown_ends_the_children_a_crashed_agent_left_behind() {
    let mut t = Town::new();
    t.config(stubborn(json!({})));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart");
    let (pane, child) = wait_agent(&t, "mayor", "gt-mayor");
    crash(&t, pane, child);
    t.wait_until("gt-mayor gone with its pane", DEADLINE, || {
        !t.tmux.has_session("gt-mayor")
    });
    assert_eq!(agent_processes(t.root(), "mayor"), BTreeSet::from([child]));

    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("shutdown");
    let left = agent_processes(t.root(), "mayor");
    assert!(
        left.is_empty(),
        "shutdown left processes of the agent: {left:?}\n{}",
        t.snapshot()
    );
}

#[test]
fn restart_leaves_exactly_one_agent_process_tree() {
    let mut t = Town::new();
    t.config(stubborn(json!({})));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("first restart");
    let (pane, child) = wait_agent(&t, "mayor", "gt-mayor");
    // A restart of a live agent, then of one that crashed.
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart of a live agent");
    let (pane2, child2) = wait_agent(&t, "mayor", "gt-mayor");
    assert!(!alive(pane) && !alive(child), "{}", t.snapshot());
    crash(&t, pane2, child2);
    t.wait_until("gt-mayor gone with its pane", DEADLINE, || {
        !t.tmux.has_session("gt-mayor")
    });
    t.send_wait("cycle", "mayor", &["--timeout", "20s"])
        .assert_ok("cycle of a crashed agent");
    let new = live_pane(&t, "gt-mayor").expect("a new pane");
    let marked = agent_processes(t.root(), "mayor");
    let one_tree: BTreeSet<u32> = tree(&[new]).into_iter().collect();
    assert!(
        !alive(child2),
        "the crashed agent's child outlived the cycle: marked {marked:?}, new tree {one_tree:?}"
    );
    // Its child may still be starting: the tree is the pane, then both.
    t.wait_until(
        "the new agent's own two processes, nothing else",
        DEADLINE,
        || {
            let marked = agent_processes(t.root(), "mayor");
            marked.len() == 2 && marked == tree(&[new]).into_iter().collect()
        },
    );
}

#[test]
fn a_supervision_restart_after_the_pane_died_leaves_none_of_the_old_agent() {
    let mut t = Town::new();
    t.config(stubborn(json!({
        "supervise": ["mayor"],
        "supervise_interval": "200ms",
    })));
    t.start();
    let (pane, child) = wait_agent(&t, "mayor", "gt-mayor");
    // Its start filed first: an agent killed while it is being primed
    // fails its start instead.
    t.wait_until("the supervised start filed", DEADLINE, || {
        request_names(&t.processed()).len() == 1
    });
    // Supervised sessions keep the dead pane: its PID is gone, so only its
    // session id and the agent's marks lead to the child.
    crash(&t, pane, child);
    t.wait_until("a new agent, started by supervision", DEADLINE, || {
        live_pane(&t, "gt-mayor").is_some_and(|p| p != pane)
    });
    let (new, _) = wait_agent(&t, "mayor", "gt-mayor");
    assert_ne!(new, pane);
    assert!(
        !alive(child),
        "the dead pane's child outlived the restart: {:?}\n{}",
        agent_processes(t.root(), "mayor"),
        t.snapshot()
    );
}

#[test]
fn another_live_agents_processes_are_never_touched() {
    let mut t = Town::new();
    // The Witness runs a child that carries the Mayor's role, in the
    // Witness's own session, and one in a session of its own.
    let witness = "GT_ROLE=mayor sleep 1002 & GT_ROLE=mayor setsid sleep 1003 & exec sleep 600";
    t.config(stubborn(json!({
        "agent_commands": {"witness": ["sh", "-c", witness]},
    })));
    t.start();
    t.send_wait("restart", "gastown/witness", &["--timeout", "20s"])
        .assert_ok("witness");
    let mut others = BTreeSet::new();
    t.wait_until("the Witness and its two children", DEADLINE, || {
        let Some(pane) = live_pane(&t, "gt-gastown-witness") else {
            return false;
        };
        others = tree(&[pane]).into_iter().collect();
        others.len() == 3
    });
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("mayor");
    let (pane, child) = wait_agent(&t, "mayor", "gt-mayor");
    let mayors = agent_processes(t.root(), "mayor");
    assert_eq!(mayors.len(), 4, "two of the Mayor's, two in the Witness");
    crash(&t, pane, child);

    t.send_wait("shutdown", "mayor", &["--timeout", "20s"])
        .assert_ok("shutdown");
    assert!(!alive(child), "the Mayor's own child must be ended");
    let gone: Vec<u32> = others.iter().copied().filter(|&p| !alive(p)).collect();
    assert!(
        gone.is_empty(),
        "the Witness lost {gone:?} of {others:?}\n{}",
        t.snapshot()
    );
    assert!(t.tmux.has_session("gt-gastown-witness"));
}

/// The `leftovers` object of `status --json`.
fn leftovers(t: &Town) -> Value {
    t.status_json()["leftovers"].clone()
}

fn leftover_pids(report: &Value) -> BTreeSet<u32> {
    report["processes"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["pid"].as_u64().map(|p| p as u32))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn leftovers_after_a_killed_daemon_are_reported_and_ended_only_when_asked() {
    let (mut t, port) = town_with_metrics(stubborn(json!({"heartbeat_interval": "1s"})));
    let daemon = t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart");
    let (pane, child) = wait_agent(&t, "mayor", "gt-mayor");
    // The daemon dies, then the tmux server: the agent ignores the SIGHUP
    // and runs on with no session at all.
    kill9(daemon);
    t.wait_daemon_gone(daemon);
    let server = t.tmux.server_pid();
    t.tmux.run(&["kill-server"]);
    t.wait_until("the agent's pane re-parented", DEADLINE, || {
        parent(pane).is_some_and(|p| p != server)
    });
    let agent = BTreeSet::from([pane, child]);
    assert_eq!(agent_processes(t.root(), "mayor"), agent);

    // status finds them with no daemon running.
    let report = leftovers(&t);
    assert_eq!(report["count"], 2, "{report:#}");
    assert_eq!(leftover_pids(&report), agent, "{report:#}");
    assert!(report["resident_bytes"].as_u64() > Some(0), "{report:#}");
    assert_eq!(report["processes"][0]["agent"], "mayor", "{report:#}");
    assert_eq!(
        report["processes"][0]["reason"], "no_live_pane",
        "{report:#}"
    );
    let text = t.gt(&["daemon", "status"]);
    assert!(
        text.stdout.contains("leftover processes") && text.stderr.contains("end_leftovers"),
        "{text:#?}"
    );

    // The next daemon reports them, once in the log, and leaves them be.
    t.start();
    let metrics = wait_reply(&t, port, "/metrics", |r| {
        sample(&r.body, r#"gt_leftover_processes{reason="no_live_pane"}"#) == Some(2.0)
    });
    let rss = sample(
        &metrics.body,
        r#"gt_leftover_resident_bytes{reason="no_live_pane"}"#,
    );
    assert!(rss > Some(0.0), "{}", metrics.body);
    let beats = t.state_u64("heartbeat_count");
    t.wait_until("three more heartbeats", DEADLINE, || {
        t.state_u64("heartbeat_count") >= beats + 3
    });
    assert!(
        agent.iter().all(|&p| alive(p)),
        "ended without end_leftovers"
    );
    let found: Vec<String> = read_lines(&t.log_file())
        .into_iter()
        .filter(|l| l.contains("leftover processes found"))
        .collect();
    assert_eq!(found.len(), 1, "said once, not every look: {found:#?}");

    // Asked to, it ends them.
    t.config(stubborn(json!({
        "heartbeat_interval": "1s",
        "metrics_listen": format!("127.0.0.1:{port}"),
        "end_leftovers": true,
    })));
    let daemon = t.recorded_pid().expect("daemon.pid");
    signal(daemon, Signal::HUP);
    t.wait_until("the leftovers ended", DEADLINE, || {
        agent.iter().all(|&p| !alive(p))
    });
    // Ended on a thread of their own, counted once they are gone.
    wait_reply(&t, port, "/metrics", |r| {
        sample(&r.body, r#"gt_leftover_processes{reason="no_live_pane"}"#) == Some(0.0)
            && sample(&r.body, "gt_leftover_processes_ended_total") == Some(2.0)
    });
    assert_eq!(leftovers(&t)["count"], 0);
    t.wait_log_line("the ending logged", |l| {
        l.contains("leftover processes ended")
    });
}

#[test]
fn leftovers_are_found_on_a_tmux_server_with_no_sessions() {
    let mut t = Town::new();
    t.config(stubborn(json!({})));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart");
    let (pane, child) = wait_agent(&t, "mayor", "gt-mayor");
    // The server outlives its last session, and answers "no current
    // target" to a list of every pane.
    t.tmux.run(&["set-option", "-g", "exit-empty", "off"]);
    crash(&t, pane, child);
    t.wait_until("gt-mayor gone, the server still up", DEADLINE, || {
        !t.tmux.has_session("gt-mayor") && t.tmux.socket_path().exists()
    });
    let report = leftovers(&t);
    assert_eq!(
        leftover_pids(&report),
        BTreeSet::from([child]),
        "{report:#}"
    );
}

#[test]
fn a_daemon_started_from_an_agents_shell_is_not_its_own_leftover() {
    let t = Town::new();
    // As if typed in the Mayor's pane: the daemon carries its marks.
    let mut start = t.start_command(&[], &["--dry-run"]);
    start.env("GT_ROLE", "mayor").env("GT_TOWN_ROOT", t.root());
    let daemon = t.started(start);
    // A tmux server, so that status looks for leftovers at all.
    t.tmux
        .run(&["new-session", "-d", "-s", "other", "sleep", "600"]);
    let report = leftovers(&t);
    assert!(report["count"].is_u64(), "looked for leftovers: {report:#}");
    assert!(
        !leftover_pids(&report).contains(&daemon),
        "the daemon listed as a leftover: {report:#}"
    );
}
