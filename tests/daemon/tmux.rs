//! Execution against a real tmux server (private socket): restart, cycle,
//! shutdown, stubborn agents, missing agent programs, work directories and
//! heartbeat pokes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::proc::{alive, cmdline, ignored_signals, tree};
use crate::support::{request_json, Town, DEADLINE};

/// The pane's process runs the agent command itself (not a shell typing it).
fn assert_pane_runs_sleep_600(t: &Town, session: &str) -> u32 {
    let pid = t
        .tmux
        .pane_pid(session)
        .unwrap_or_else(|| panic!("no pane pid for {session}\n{}", t.snapshot()));
    assert_eq!(
        cmdline(pid),
        vec!["sleep", "600"],
        "pane process of {session} (pid {pid})"
    );
    assert_eq!(
        t.tmux.pane_current_command(session).as_deref(),
        Some("sleep")
    );
    pid
}

fn cwd_of(pid: u32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default()
}

#[test]
fn restart_creates_the_session_with_agent_role_and_prime_text() {
    let mut t = Town::new();
    t.config(json!({"prime_text": "echo primed-R7Q"}));
    t.start();

    let path = t.send("restart", "mayor");
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    let sc = t.wait_processed(&name);
    assert_eq!(sc["session"], "gt-mayor", "sidecar: {sc:#}");

    assert!(
        t.tmux.has_session("gt-mayor"),
        "restart must create gt-mayor\n{}",
        t.snapshot()
    );
    assert_pane_runs_sleep_600(&t, "gt-mayor");
    let env = t.tmux.show_environment("gt-mayor");
    assert_eq!(
        t.tmux.env_var("gt-mayor", "GT_ROLE").as_deref(),
        Some("mayor"),
        "show-environment:\n{env}"
    );
    assert_ne!(
        t.tmux.env_var("gt-mayor", "GT_HANDOFF").as_deref(),
        Some("1"),
        "restart is not a handoff:\n{env}"
    );

    // The prime text is typed after prime_delay; `sleep` does not read it,
    // but the terminal echoes it.
    t.wait_until("prime text on gt-mayor's screen", DEADLINE, || {
        t.tmux.capture_pane("gt-mayor").contains("echo primed-R7Q")
    });
}

#[test]
fn cycle_replaces_the_session_and_sets_handoff() {
    let t = Town::new();
    // An old Mayor session, started by hand.
    t.tmux.new_session("gt-mayor", &["sleep", "600"]);
    let old = t.tmux.pane_pid("gt-mayor").expect("old pane pid");
    t.start();

    t.publish("c.json", request_json("mayor", "cycle"));
    t.wait_processed("c.json");
    assert!(
        t.tmux.has_session("gt-mayor"),
        "cycle must leave a gt-mayor session\n{}",
        t.snapshot()
    );
    let new = assert_pane_runs_sleep_600(&t, "gt-mayor");
    assert_ne!(new, old, "cycle must start a new agent process");
    t.wait_until("the old agent process gone", DEADLINE, || !alive(old));
    let env = t.tmux.show_environment("gt-mayor");
    assert_eq!(
        t.tmux.env_var("gt-mayor", "GT_ROLE").as_deref(),
        Some("mayor"),
        "show-environment:\n{env}"
    );
    assert_eq!(
        t.tmux.env_var("gt-mayor", "GT_HANDOFF").as_deref(),
        Some("1"),
        "show-environment:\n{env}"
    );
    t.wait_until("prime text (default `gt prime`) typed", DEADLINE, || {
        t.tmux.capture_pane("gt-mayor").contains("gt prime")
    });
}

#[test]
fn shutdown_kills_the_session_and_its_agent() {
    let t = Town::new();
    t.tmux.new_session("gt-x-witness", &["sleep", "600"]);
    let pane = t.tmux.pane_pid("gt-x-witness").expect("pane pid");
    assert!(alive(pane));
    t.start();

    t.publish("s.json", request_json("x/witness", "shutdown"));
    let sc = t.wait_processed("s.json");
    assert_eq!(sc["session"], "gt-x-witness", "sidecar: {sc:#}");
    assert!(
        !t.tmux.has_session("gt-x-witness"),
        "shutdown must kill the session\n{}",
        t.snapshot()
    );
    t.wait_until("the agent process gone", DEADLINE, || !alive(pane));

    // Shutting down a session that does not exist is nothing to do.
    t.publish("s2.json", request_json("deacon", "shutdown"));
    t.wait_processed("s2.json");
    assert!(!t.tmux.has_session("gt-deacon"));
}

#[test]
fn shutdown_kills_an_agent_that_ignores_term_and_hup() {
    let mut t = Town::new();
    t.config(json!({"agent_command": ["sh", "-c", "trap '' TERM HUP; sleep 600; echo done"]}));
    t.start();

    t.publish("r.json", request_json("mayor", "restart"));
    t.wait_processed("r.json");
    let pane = t
        .tmux
        .pane_pid("gt-mayor")
        .unwrap_or_else(|| panic!("no gt-mayor pane\n{}", t.snapshot()));
    // Wait for the shell's child `sleep`, and check the agent really ignores
    // the signals tmux would send (so this test means something).
    let mut agent = BTreeSet::new();
    t.wait_until("the agent's sleep child", DEADLINE, || {
        agent = tree(&[pane]).into_iter().collect();
        agent
            .iter()
            .any(|&p| cmdline(p).first().map(String::as_str) == Some("sleep"))
    });
    const HUP: u64 = 1 << 0;
    const TERM: u64 = 1 << 14;
    for &p in &agent {
        let ign = ignored_signals(p);
        assert_eq!(
            ign & (HUP | TERM),
            HUP | TERM,
            "pid {p} ({:?}) must ignore HUP and TERM: SigIgn {ign:x}",
            cmdline(p)
        );
    }

    t.publish("s.json", request_json("mayor", "shutdown"));
    t.wait_processed("s.json");
    assert!(
        !t.tmux.has_session("gt-mayor"),
        "shutdown must kill the session\n{}",
        t.snapshot()
    );
    t.wait_until(
        &format!("every process of the stubborn agent gone: {agent:?}"),
        DEADLINE,
        || agent.iter().all(|&p| !alive(p)),
    );
}

#[test]
fn agent_program_not_on_path_fails_and_leaves_no_session() {
    let mut t = Town::new();
    t.config(json!({"agent_command": "gt-test-no-such-agent-9f3 --flag"}));
    t.start();

    t.publish("r.json", request_json("mayor", "restart"));
    let sc = t.wait_failed("r.json");
    let err = sc["error"].as_str().unwrap_or_default();
    assert!(err.contains("not found on PATH"), "reason: {sc:#}");
    assert!(
        err.contains("gt-test-no-such-agent-9f3"),
        "reason should name the program: {sc:#}"
    );
    assert!(
        !t.tmux.has_session("gt-mayor"),
        "no session may be left\n{}",
        t.snapshot()
    );
}

#[test]
fn agents_start_in_their_work_directories() {
    let t = Town::new();
    let root = t.root().to_path_buf();
    fs::create_dir_all(root.join("mayor")).unwrap();
    fs::create_dir_all(root.join("x/witness")).unwrap();
    fs::create_dir_all(root.join("y")).unwrap();
    t.start();

    let cases: [(&str, &str, PathBuf); 4] = [
        ("mayor", "gt-mayor", root.join("mayor")),
        ("x/witness", "gt-x-witness", root.join("x/witness")),
        ("y/refinery", "gt-y-refinery", root.join("y")),
        ("deacon", "gt-deacon", root.clone()),
    ];
    for (i, (from, _, _)) in cases.iter().enumerate() {
        t.publish(&format!("r{i}.json"), request_json(from, "restart"));
    }
    for (i, (from, session, dir)) in cases.iter().enumerate() {
        t.wait_processed(&format!("r{i}.json"));
        let pid = t
            .tmux
            .pane_pid(session)
            .unwrap_or_else(|| panic!("no session {session}\n{}", t.snapshot()));
        assert_eq!(cwd_of(pid), *dir, "work directory of {from}");
        let shown = t.tmux.pane_current_path(session).unwrap_or_default();
        assert_eq!(
            Path::new(&shown),
            dir.as_path(),
            "pane_current_path of {session}"
        );
    }
}

#[test]
fn heartbeat_pokes_the_mayor_and_the_witnesses() {
    let mut t = Town::new();
    t.config(json!({"heartbeat_interval": "1s"}));
    t.tmux.new_session("gt-mayor", &["sleep", "600"]);
    t.tmux.new_session("gt-x-witness", &["sleep", "600"]);
    t.tmux.new_session("gt-x-refinery", &["sleep", "600"]);
    t.start();

    t.wait_until("HEARTBEAT on gt-mayor", DEADLINE, || {
        t.tmux
            .capture_pane("gt-mayor")
            .contains("HEARTBEAT: check your rigs")
    });
    t.wait_until("HEARTBEAT on gt-x-witness", DEADLINE, || {
        t.tmux
            .capture_pane("gt-x-witness")
            .contains("HEARTBEAT: check your workers")
    });
    // Pokes keep coming, one per interval: wait for a second one on each.
    t.wait_until("a second heartbeat on both", DEADLINE, || {
        t.tmux
            .capture_pane("gt-mayor")
            .matches("HEARTBEAT: check your rigs")
            .count()
            >= 2
            && t.tmux
                .capture_pane("gt-x-witness")
                .matches("HEARTBEAT: check your workers")
                .count()
                >= 2
    });
    assert!(
        !t.tmux.capture_pane("gt-mayor").contains("workers"),
        "the Mayor gets the Mayor's text"
    );
    assert!(
        !t.tmux.capture_pane("gt-x-refinery").contains("HEARTBEAT"),
        "refineries are not poked:\n{}",
        t.tmux.capture_pane("gt-x-refinery")
    );
    t.wait_until("heartbeat_count counts the pokes", DEADLINE, || {
        t.state_u64("heartbeat_count") >= 2
    });
}

/// A tmux server with no sessions at all (`exit-empty off`, or one in the
/// middle of exiting) answers "no current target" where a missing session
/// is meant: that is no session, so shutdown, restart and supervision work
/// on it as on a server that has other sessions.
#[test]
fn an_empty_tmux_server_means_no_session() {
    let mut t = Town::new();
    t.config(json!({
        "supervise": ["mayor"],
        "supervise_interval": "200ms",
    }));
    t.tmux.run(&[
        "-f",
        "/dev/null",
        "start-server",
        ";",
        "set-option",
        "-g",
        "exit-empty",
        "off",
    ]);
    assert!(t.tmux.sessions().is_empty(), "the server starts empty");
    t.start();

    // Supervision's first look starts the Mayor on the empty server.
    t.wait_until("supervision starts gt-mayor", DEADLINE, || {
        t.tmux.has_session("gt-mayor")
    });
    t.publish("s1.json", request_json("mayor", "shutdown"));
    t.wait_processed("s1.json");
    t.wait_until("gt-mayor gone, the server empty again", DEADLINE, || {
        t.tmux.sessions().is_empty()
    });

    // On the empty server: nothing to end is success, and a restart runs.
    t.publish("s2.json", request_json("deacon", "shutdown"));
    t.wait_processed("s2.json");
    t.publish("r.json", request_json("mayor", "restart"));
    t.wait_processed("r.json");
    assert!(t.tmux.has_session("gt-mayor"), "{}", t.snapshot());
}

#[test]
fn arguments_and_prime_text_ending_in_a_semicolon_reach_the_agent_whole() {
    // tmux ends a command at any argument that ends in `;`: unescaped, the
    // agent would get `x` for `x;` (and a prime text `PRIME;` be typed as
    // `PRIME`).
    let mut t = Town::new();
    let (args, typed) = (t.root().join("args.txt"), t.root().join("typed.txt"));
    let script = format!(
        "printf '%s\\n' \"$0\" \"$1\" > {}; exec cat > {}",
        args.display(),
        typed.display()
    );
    t.config(json!({
        "agent_command": ["sh", "-c", script, "x;", ";"],
        "prime_text": "PRIME;",
        "prime_delay": "1s",
    }));
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart");
    assert_eq!(fs::read_to_string(&args).unwrap(), "x;\n;\n");
    t.wait_until("the prime text typed", DEADLINE, || {
        fs::read_to_string(&typed).is_ok_and(|s| s.contains('\n'))
    });
    assert_eq!(fs::read_to_string(&typed).unwrap(), "PRIME;\n");
}

/// A person who splits the agent's window while it boots makes their own
/// pane the active one: the prime still goes to the agent's pane, the one
/// the restart created, and never to theirs.
#[test]
fn the_prime_goes_to_the_agents_own_pane_not_a_pane_a_person_split_off() {
    let mut t = Town::new();
    t.config(json!({"prime_text": "echo primed-P4X", "prime_delay": "3s"}));
    t.start();

    t.publish("r.json", request_json("mayor", "restart"));
    t.wait_until("gt-mayor created", DEADLINE, || {
        t.tmux.has_session("gt-mayor")
    });
    let agent = t
        .tmux
        .display("gt-mayor", "#{pane_id}")
        .expect("the agent's pane");
    // The person's pane: split off, and active from then on.
    let theirs = t
        .tmux
        .output(&[
            "split-window",
            "-d",
            "-P",
            "-F",
            "#{pane_id}",
            "-t",
            "=gt-mayor:",
            "--",
            "sleep",
            "600",
        ])
        .expect("split-window")
        .trim()
        .to_string();
    t.tmux.run(&["select-pane", "-t", &theirs]);
    t.wait_processed("r.json");

    let screen = |pane: &str| {
        t.tmux
            .output(&["capture-pane", "-p", "-t", pane])
            .unwrap_or_default()
    };
    t.wait_until("the prime on the agent's pane", DEADLINE, || {
        screen(&agent).contains("echo primed-P4X")
    });
    assert!(
        !screen(&theirs).contains("primed-P4X"),
        "the prime reached the person's pane:\n{}",
        screen(&theirs)
    );
}
