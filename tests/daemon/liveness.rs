//! Looking at agents: alive is not working. Real tmux on a private
//! socket, small programs standing in for agents (tests/support/agents.rs),
//! short intervals; every wait is for a condition.
//!
//! An agent that answers its pokes is idle however long it idles; one
//! that never reads, or ignores its input in raw mode, is stalled, and
//! restarted only when `stall_action` asks; a TUI that takes a poke for a
//! paste gets Enter once more, never the text twice; a question for a
//! person is waited on, told once, never poked nor restarted; a cycle
//! starts the evidence afresh; and status, explain, state.json, /metrics
//! and notify_command say the same.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::agents::{self, ANSWERING, PASTE_TUI, RAW_AND_DEAF};
use crate::support::http::free_port;
use crate::support::proc::kill9;
use crate::support::{read_lines, request_names, require_tool, Town, DEADLINE};

/// Intervals short enough for tests: a poke every second, a look every
/// 200 ms, stalled after 2 s and two unanswered pokes. Nothing primed
/// (a prime's Enter would answer a question).
fn looking(t: &mut Town, extra: Value) {
    let mut config = json!({
        "heartbeat_interval": "1s",
        "supervise_interval": "200ms",
        "poke_confirm": "300ms",
        "answer_within": "1s",
        "stall_after": "2s",
        "prime_text": "",
    });
    if let (Value::Object(base), Value::Object(more)) = (&mut config, extra) {
        base.extend(more);
    }
    t.config(config);
}

fn tools() -> bool {
    require_tool("tmux") && require_tool("python3")
}

/// state.json's entry for `session` (null when there is none).
fn seen(t: &Town, session: &str) -> Value {
    t.try_state()
        .map(|s| s["liveness"][session].clone())
        .unwrap_or(Value::Null)
}

fn state_of(t: &Town, session: &str) -> String {
    seen(t, session)["state"].as_str().unwrap_or("").to_string()
}

fn wait_state(t: &Town, session: &str, state: &str) -> Value {
    t.wait_until(&format!("{session} {state}"), DEADLINE, || {
        state_of(t, session) == state
    });
    seen(t, session)
}

/// The pokes of `session` state.json keeps whose `field` is `value`.
fn pokes_with(t: &Town, session: &str, field: &str, value: &str) -> usize {
    seen(t, session)["pokes"]
        .as_array()
        .map_or(0, |p| p.iter().filter(|p| p[field] == value).count())
}

/// Records of supervised restarts (`from: "daemon"`) filed as processed,
/// with their bodies.
fn daemon_records(t: &Town) -> Vec<(String, Value)> {
    request_names(&t.processed())
        .into_iter()
        .filter(|n| n.contains("-daemon-"))
        .map(|n| {
            let body = std::fs::read(t.processed().join(&n)).unwrap_or_default();
            (n, serde_json::from_slice(&body).unwrap_or(Value::Null))
        })
        .collect()
}

fn stalled_restarts(t: &Town) -> Vec<String> {
    daemon_records(t)
        .into_iter()
        .filter(|(_, body)| {
            body["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("stalled"))
        })
        .map(|(name, _)| name)
        .collect()
}

fn explain(t: &Town, agent: &str) -> String {
    let out = t.gt(&["daemon", "explain", agent]);
    out.assert_ok("explain");
    out.stdout
}

fn log_has(t: &Town, needle: &str) -> bool {
    read_lines(&t.log_file()).iter().any(|l| l.contains(needle))
}

fn events(path: &Path) -> Vec<Value> {
    read_lines(path)
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn notify_into(path: &Path) -> Value {
    json!(["sh", "-c", format!("cat >> '{}'", path.display())])
}

#[test]
fn an_agent_that_answers_its_pokes_is_idle_never_stalled_however_long_it_idles() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    let agent = agents::python(t.root(), "answering", ANSWERING, &[]);
    looking(
        &mut t,
        json!({
            "supervise": ["mayor"],
            "stall_action": "restart",
            "stall_after": "1s",
            "agent_command": agent,
        }),
    );
    t.start();
    // Eight pokes, a second apart, each answered: eight times
    // stall_after, quiet between them.
    t.wait_until("eight answered pokes", DEADLINE, || {
        pokes_with(&t, "gt-mayor", "answer", "answered") >= 8
    });
    let mayor = seen(&t, "gt-mayor");
    assert!(
        matches!(mayor["state"].as_str(), Some("idle" | "working")),
        "{mayor:#}"
    );
    assert_eq!(
        pokes_with(&t, "gt-mayor", "answer", "unanswered"),
        0,
        "{mayor:#}"
    );
    assert_eq!(
        pokes_with(&t, "gt-mayor", "delivery", "unconfirmed"),
        0,
        "{mayor:#}"
    );
    assert!(!log_has(&t, "agent stalled"), "{}", t.snapshot());
    assert!(stalled_restarts(&t).is_empty(), "{}", t.snapshot());
    assert_eq!(daemon_records(&t).len(), 1, "only its first start");
}

/// First run: never reads its terminal (`started-K7` on its screen, then
/// the echo of its pokes). Every later run answers its pokes.
fn deaf_then_answering(t: &Town) -> Value {
    let answering = agents::python(t.root(), "answering", ANSWERING, &[]).join(" ");
    let mark = t.root().join("ran-once");
    json!([
        "sh",
        "-c",
        format!(
        "if [ -e '{m}' ]; then exec {answering}; fi; touch '{m}'; echo started-K7; exec sleep 600",
        m = mark.display()
    )
    ])
}

#[test]
fn a_program_that_never_reads_is_stalled_and_with_restart_restarted_once_with_its_pane() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    let agent = deaf_then_answering(&t);
    looking(
        &mut t,
        json!({"supervise": ["mayor"], "stall_action": "restart", "agent_command": agent}),
    );
    t.start();
    t.wait_until("a restart of the stalled mayor", DEADLINE, || {
        !stalled_restarts(&t).is_empty()
    });
    let name = &stalled_restarts(&t)[0];
    let pane = std::fs::read_to_string(t.processed().join(format!("{name}.pane.txt")))
        .unwrap_or_else(|e| panic!("no captured pane beside {name}: {e}\n{}", t.snapshot()));
    assert!(pane.contains("started-K7"), "capture: {pane:?}");
    assert!(
        pane.contains("HEARTBEAT: check your rigs"),
        "its pokes echoed: {pane:?}"
    );
    // The new run answers: it is never taken for stalled again.
    t.wait_until("the new run answers three pokes", DEADLINE, || {
        pokes_with(&t, "gt-mayor", "answer", "answered") >= 3
    });
    assert_eq!(stalled_restarts(&t).len(), 1, "{}", t.snapshot());
    let why = explain(&t, "mayor");
    assert!(why.contains("stalled: its screen has not moved"), "{why}");
    assert!(why.contains("pane captured"), "{why}");
}

#[test]
fn a_program_that_never_reads_is_reported_stalled_and_left_alone_by_default() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    looking(
        &mut t,
        json!({"supervise": ["mayor"], "agent_command": agents::never_reads("started-K8")}),
    );
    t.start();
    let stalled = wait_state(&t, "gt-mayor", "stalled");
    assert!(
        stalled["unanswered_pokes"].as_u64() >= Some(2),
        "{stalled:#}"
    );
    assert!(
        pokes_with(&t, "gt-mayor", "delivery", "delivered") >= 2,
        "the echo is on the line above the cursor: delivered\n{stalled:#}"
    );
    let pid = t.tmux.pane_pid("gt-mayor");
    let beats = t.state_u64("heartbeat_count");
    t.wait_until("three more heartbeats", DEADLINE, || {
        t.state_u64("heartbeat_count") >= beats + 3
    });
    assert_eq!(state_of(&t, "gt-mayor"), "stalled");
    assert_eq!(t.tmux.pane_pid("gt-mayor"), pid, "left alone");
    assert!(stalled_restarts(&t).is_empty());
    assert!(log_has(&t, "agent stalled"));
}

#[test]
fn a_raw_mode_program_that_ignores_all_input_is_stalled() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    looking(&mut t, json!({}));
    let argv = agents::python(t.root(), "raw", RAW_AND_DEAF, &[]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    t.tmux.new_session("gt-x-witness", &argv);
    t.wait_until("the program in raw mode", DEADLINE, || {
        t.tmux.capture_pane("gt-x-witness").contains("raw and deaf")
    });
    t.start();
    let stalled = wait_state(&t, "gt-x-witness", "stalled");
    assert_eq!(stalled["screen_moved_at"], Value::Null, "{stalled:#}");
    assert!(!t.tmux.capture_pane("gt-x-witness").contains("HEARTBEAT"));
}

#[test]
fn a_tui_that_takes_a_poke_for_a_paste_gets_enter_again_and_each_poke_once() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    // Its paste window is 0.8 s: the second Enter comes after it, and the
    // look after that before the next poke.
    looking(
        &mut t,
        json!({"heartbeat_interval": "4s", "poke_confirm": "1200ms", "answer_within": "2s"}),
    );
    let log = t.root().join("tui.log");
    let argv = agents::python(t.root(), "tui", PASTE_TUI, &[&log.display().to_string()]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    t.tmux.new_session("gt-x-witness", &argv);
    // In raw mode before the first poke (going raw flushes what waits).
    t.wait_until("the TUI ready", DEADLINE, || {
        t.tmux
            .capture_pane("gt-x-witness")
            .contains("paste tui ready")
    });
    t.start();
    t.wait_until("two pokes resubmitted", DEADLINE, || {
        pokes_with(&t, "gt-x-witness", "delivery", "resubmitted") >= 2
    });
    let text = "HEARTBEAT: check your workers";
    let entry = seen(&t, "gt-x-witness");
    let lines = read_lines(&log);
    let reads: Vec<&String> = lines.iter().filter(|l| l.contains(text)).collect();
    let submits: Vec<&String> = lines.iter().filter(|l| l.starts_with("SUBMIT")).collect();
    for line in reads.iter().chain(&submits) {
        assert_eq!(line.matches(text).count(), 1, "typed twice: {lines:#?}");
    }
    let pokes = entry["pokes"].as_array().unwrap().len();
    let typed = reads.iter().filter(|l| l.starts_with("READ")).count();
    assert!(
        typed == pokes || typed == pokes + 1,
        "{pokes} pokes: {lines:#?}"
    );
    assert!(submits.len() >= 2, "{lines:#?}");
    assert_eq!(
        pokes_with(&t, "gt-x-witness", "delivery", "delivered"),
        0,
        "{entry:#}"
    );
    assert_eq!(
        pokes_with(&t, "gt-x-witness", "delivery", "unconfirmed"),
        0,
        "{entry:#}"
    );
    assert!(
        pokes_with(&t, "gt-x-witness", "answer", "answered") >= 1,
        "its answer is the submission: {entry:#}"
    );
}

#[test]
fn a_question_for_a_person_is_waited_on_told_once_never_poked_nor_restarted() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    let events_file = t.root().join("events.jsonl");
    looking(
        &mut t,
        json!({
            "supervise": ["mayor"],
            "stall_action": "restart",
            "agent_command": agents::asks_a_person(),
            "notify_command": notify_into(&events_file),
        }),
    );
    t.start();
    let waiting = wait_state(&t, "gt-mayor", "waiting_for_person");
    assert_eq!(waiting["prompt"], "Continue? [y/N]", "{waiting:#}");
    t.wait_until("the notification", DEADLINE, || {
        !events(&events_file).is_empty()
    });
    // Long past stall_after, through heartbeats and looks.
    let beats = t.state_u64("heartbeat_count");
    t.wait_until("four more heartbeats", DEADLINE, || {
        t.state_u64("heartbeat_count") >= beats + 4
    });
    assert_eq!(state_of(&t, "gt-mayor"), "waiting_for_person");
    let told = events(&events_file);
    assert_eq!(told.len(), 1, "{told:#?}");
    assert_eq!(told[0]["event"], "agent_waiting_for_person");
    assert_eq!(told[0]["session"], "gt-mayor");
    assert_eq!(told[0]["line"], "Continue? [y/N]");
    assert!(told[0]["summary"]
        .as_str()
        .unwrap()
        .contains("Continue? [y/N]"));
    let pane = t.tmux.capture_pane("gt-mayor");
    assert!(
        !pane.contains("answered:") && !pane.contains("HEARTBEAT"),
        "poked: {pane}"
    );
    assert!(t.state()["last_pokes"]["gt-mayor"].is_null());
    assert_eq!(daemon_records(&t).len(), 1, "only its first start");
    assert!(explain(&t, "mayor").contains("it asks a person: Continue? [y/N]"));
    // A person answers: the question stays on the screen, answered, and
    // asks nobody any more.
    t.tmux
        .run(&["send-keys", "-t", "=gt-mayor:0.0", "y", "Enter"])
        .assert_ok("send-keys");
    t.wait_until("the answer on the screen", DEADLINE, || {
        t.tmux.capture_pane("gt-mayor").contains("answered: y")
    });
    t.wait_until("no longer waiting", DEADLINE, || {
        state_of(&t, "gt-mayor") != "waiting_for_person"
    });
    assert!(t
        .tmux
        .capture_pane("gt-mayor")
        .contains("Continue? [y/N] y"));
}

#[test]
fn a_stalled_agent_cycled_by_a_request_is_not_stalled_until_new_evidence_says_so() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    looking(
        &mut t,
        json!({"agent_command": agents::never_reads("started-K9")}),
    );
    t.start();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("the first start");
    let before = wait_state(&t, "gt-mayor", "stalled");
    let cycled_at = chrono::Utc::now();
    t.send_wait("cycle", "mayor", &["--timeout", "20s"])
        .assert_ok("the cycle");
    // (Its pane may have the same id: the tmux server exited with its
    // last session, and a new one numbers panes afresh.)
    t.wait_until("the new pane looked at", DEADLINE, || {
        let now = seen(&t, "gt-mayor");
        now["watched_since"] != before["watched_since"] && now["state"] != Value::Null
    });
    let after = seen(&t, "gt-mayor");
    assert_ne!(after["state"], "stalled", "{after:#}");
    let time = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .unwrap_or_else(|| panic!("not a time: {v}"))
    };
    let since = |v: &Value, key: &str| time(&v[key]);
    let start = since(&after, "watched_since");
    assert!(start >= cycled_at, "{after:#}");
    // No poke of the pane before counts: its evidence is its own.
    for poke in after["pokes"].as_array().unwrap() {
        assert!(time(&poke["at"]) >= start, "{after:#}");
    }
    // Stalled again only on its own evidence: quiet for stall_after since
    // its own start, two of its own pokes unanswered.
    let mut checked = 0;
    t.wait_until("stalled again", DEADLINE, || {
        let now = seen(&t, "gt-mayor");
        if now["state"] != "stalled" {
            return false;
        }
        checked += 1;
        assert_eq!(now["pane"], after["pane"], "{now:#}");
        let quiet = since(&now, "since") - since(&now, "watched_since");
        assert!(quiet >= chrono::Duration::seconds(2), "{now:#}");
        assert!(now["unanswered_pokes"].as_u64() >= Some(2), "{now:#}");
        true
    });
    assert_eq!(checked, 1);
}

#[test]
fn status_explain_state_json_metrics_and_notify_all_agree() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    let events_file = t.root().join("events.jsonl");
    let port = free_port();
    looking(
        &mut t,
        json!({
            "supervise": ["deacon"],
            "agent_commands": {"deacon": "sleep 600"},
            "metrics_listen": format!("127.0.0.1:{port}"),
            "notify_command": notify_into(&events_file),
        }),
    );
    let deaf = agents::never_reads("started-A1");
    let asks = agents::asks_a_person();
    t.tmux.new_session(
        "gt-a-witness",
        &deaf.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    t.tmux.new_session(
        "gt-b-witness",
        &asks.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    t.start();
    let expected = [
        ("gt-a-witness", "stalled", "a/witness", "is stalled"),
        (
            "gt-b-witness",
            "waiting_for_person",
            "b/witness",
            "is waiting for a person",
        ),
        ("gt-deacon", "idle", "deacon", "is idle"),
    ];
    for (session, state, _, _) in expected {
        wait_state(&t, session, state);
    }
    t.wait_until("both notifications", DEADLINE, || {
        events(&events_file).len() >= 2
    });
    // One moment's facts, read from each place: they agree (read again if
    // a look fell between two reads).
    t.wait_until(
        "status, explain, state.json and /metrics agree",
        DEADLINE,
        || {
            let state = t.state();
            let status = t.status_json();
            let text = t.gt(&["daemon", "status"]).stdout;
            let metrics = crate::support::http::get(port, "/metrics")
                .map(|r| r.body)
                .unwrap_or_default();
            expected.iter().all(|(session, word, agent, says)| {
                let entry = &state["liveness"][session];
                let row = status["agents"]
                    .as_array()
                    .and_then(|a| a.iter().find(|a| a["session"] == *session))
                    .cloned()
                    .unwrap_or(Value::Null);
                let shown = text
                    .lines()
                    .find(|l| l.trim_start().starts_with(session))
                    .unwrap_or_default()
                    .to_string();
                let sample = format!("gt_agent_state{{session=\"{session}\",state=\"{word}\"}} 1");
                let unanswered = entry["unanswered_pokes"].as_u64().unwrap_or(0);
                let counted = format!(
                "gt_poke_answers_total{{session=\"{session}\",result=\"unanswered\"}} {unanswered}"
            );
                entry["state"] == *word
                    && row["state"] == *word
                    && row["state_since"] == entry["since"]
                    && status["liveness"][session] == *entry
                    && shown.contains(&word.replace('_', " ").replace("for person", "for a person"))
                    && explain(&t, agent).contains(says)
                    && metrics.contains(&sample)
                    && (*session == "gt-deacon" || metrics.contains(&counted))
            })
        },
    );
    let told = events(&events_file);
    let kinds: Vec<(&str, &str)> = told
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["session"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("agent_waiting_for_person", "gt-b-witness"),
            ("agent_stalled", "gt-a-witness")
        ],
        "{told:#?}"
    );
    assert_eq!(told[0]["line"], seen(&t, "gt-b-witness")["prompt"]);
    let why = explain(&t, "a/witness");
    let quiet_since = t.state()["liveness"]["gt-a-witness"]["watched_since"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        told[1]["detail"].as_str().unwrap().contains("unanswered"),
        "{told:#?}"
    );
    assert!(why.contains("its screen has not moved since then"), "{why}");
    assert!(!quiet_since.is_empty());
}

/// `new-session -d` for every name, each running `argv`, a few dozen per
/// tmux call (a call takes at most 16 KiB of arguments).
fn sessions(t: &Town, names: &[String], size: (&str, &str), argv: &[&str]) {
    for group in names.chunks(50) {
        let mut args: Vec<&str> = Vec::new();
        for name in group {
            if !args.is_empty() {
                args.push(";");
            }
            args.extend(["new-session", "-d", "-s", name, "-x", size.0, "-y", size.1]);
            args.extend(argv);
        }
        t.tmux.run(&args).assert_ok("tmux new-session ...");
    }
}

#[test]
fn more_agents_than_are_looked_at_are_cut_at_the_bound_and_said_once() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    // One beat at the start: the looks are what is measured.
    looking(&mut t, json!({"heartbeat_interval": "1h"}));
    let names: Vec<String> = (0..300).map(|i| format!("gt-rig{i:03}-witness")).collect();
    sessions(&t, &names, ("80", "24"), &["sleep", "600"]);
    t.started(t.start_command(&["--log-level", "debug"], &[]));
    t.wait_until("the agents looked at", DEADLINE, || {
        t.try_state()
            .is_some_and(|s| s["liveness"].as_object().is_some_and(|m| m.len() >= 256))
    });
    let count = |needle: &str| {
        read_lines(&t.log_file())
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    // Many looks later, still the bound, and said once.
    let looked = count("looked at the agents");
    t.wait_until("five more looks", DEADLINE, || {
        count("looked at the agents") >= looked + 5
    });
    let state = t.state();
    let seen = state["liveness"].as_object().unwrap();
    assert_eq!(seen.len(), 256, "{:?}", seen.keys().next_back());
    assert!(seen.contains_key("gt-rig255-witness") && !seen.contains_key("gt-rig256-witness"));
    assert_eq!(count("more agents than are looked at"), 1);
}

#[test]
fn panes_too_large_for_one_capture_are_each_looked_at() {
    if !tools() {
        return;
    }
    let mut t = Town::new();
    looking(&mut t, json!({"heartbeat_interval": "1h"}));
    // Three panes of 250 rows by 4000 columns, full: a capture of each is
    // about 1 MB, the most one tmux call's output is read to.
    let fill = "import sys, time\nsys.stdout.write(('x' * 4000) * 249 + 'x' * 3999)\nsys.stdout.flush()\ntime.sleep(600)\n";
    let script = agents::python(t.root(), "fill", fill, &[]);
    let argv: Vec<&str> = script.iter().map(String::as_str).collect();
    let big: Vec<String> = (1..=3).map(|i| format!("gt-big{i}-witness")).collect();
    sessions(&t, &big, ("4000", "250"), &argv);
    t.tmux.new_session("gt-small-witness", &["sleep", "600"]);
    t.wait_until("the panes full", DEADLINE, || {
        t.tmux
            .output(&["capture-pane", "-p", "-t", "=gt-big3-witness:"])
            .is_ok_and(|s| s.len() > 900_000)
    });
    t.start();
    t.wait_until("every pane looked at", DEADLINE, || {
        let state = t.try_state().unwrap_or(Value::Null);
        big.iter()
            .chain(["gt-small-witness".to_string()].iter())
            .all(|s| !state["liveness"][s]["pane"].is_null())
    });
}

/// A town whose Witness (started by a request, nobody supervising it)
/// answers its pokes, once one was answered; its session.
fn answering_witness() -> (Town, &'static str) {
    let mut t = Town::new();
    let agent = agents::python(t.root(), "answering", ANSWERING, &[]);
    looking(&mut t, json!({"agent_command": agent}));
    t.start();
    t.send_wait("restart", "gastown/witness", &[])
        .assert_ok("restart");
    let session = "gt-gastown-witness";
    t.wait_until("a poke answered", DEADLINE, || {
        pokes_with(&t, session, "answer", "answered") >= 1
    });
    (t, session)
}

#[test]
fn a_persons_pane_is_never_taken_for_the_agent_once_its_own_pane_closed() {
    if !tools() {
        return;
    }
    let (t, session) = answering_witness();
    let pane = seen(&t, session)["pane"].as_str().unwrap().to_string();
    // A person splits the window: whatever is typed into their pane ends
    // up in a file.
    let typed = t.root().join("typed-into-the-persons-pane.txt");
    t.tmux
        .run(&[
            "split-window",
            "-d",
            "-t",
            &format!("={session}:0"),
            "sh",
            "-c",
            &format!("exec cat > '{}'", typed.display()),
        ])
        .assert_ok("split-window");
    // The agent's own pane closes (nobody supervises it: no
    // remain-on-exit); the person's pane keeps the session.
    let out = t
        .tmux
        .run(&["display-message", "-p", "-t", &pane, "#{pane_pid}"]);
    out.assert_ok("the agent's pid");
    kill9(out.stdout.trim().parse().unwrap());
    let dead = wait_state(&t, session, "dead");
    assert!(
        t.tmux
            .run(&["has-session", "-t", &format!("={session}")])
            .code
            == Some(0),
        "the person's pane keeps the session\n{dead:#}"
    );
    // Heartbeats go on; none pokes the person's pane.
    let beats = t.state_u64("heartbeat_count");
    t.wait_until("two more heartbeats", DEADLINE, || {
        t.state_u64("heartbeat_count") >= beats + 2
    });
    assert_eq!(state_of(&t, session), "dead", "{}", t.snapshot());
    let got = std::fs::read_to_string(&typed).unwrap_or_default();
    assert!(got.is_empty(), "typed into a person's pane: {got:?}");
    // status shows the agent's pane, not the person's.
    let row = t.status_json()["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["session"] == session))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(row["pane_dead"], true, "{row:#}");
    assert_eq!(row["pane_pid"], Value::Null, "{row:#}");
}

#[test]
fn a_poked_agent_whose_session_ends_is_dead_not_forgotten() {
    if !tools() {
        return;
    }
    let (t, session) = answering_witness();
    // Nobody supervises it: its session ends with its process.
    t.tmux
        .run(&["kill-session", "-t", &format!("={session}")])
        .assert_ok("kill-session");
    let dead = wait_state(&t, session, "dead");
    assert_eq!(dead["pane"], Value::Null, "{dead:#}");
}
