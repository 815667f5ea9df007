//! Table tests of the policy: one agent (or three, for a mass death),
//! one look, what is decided and remembered.

use super::*;

const MAYOR: &str = "gt-mayor";

fn policy() -> Policy {
    Policy {
        max_restarts: 4,
        restart_window: Duration::from_secs(15 * 60),
        stable_after: Duration::from_secs(10 * 60),
        backoff: Duration::from_secs(30),
        backoff_max: Duration::from_secs(100),
        quarantine: Duration::from_secs(3600),
        not_a_crash: vec!["usage limit".into()],
        mass_death: 3,
        mass_death_window: Duration::from_secs(30),
        mass_death_pause: Duration::from_secs(600),
    }
}

fn t0() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn crashed() -> Seen {
    Seen::Dead {
        exit: Some(Exit::Status(1)),
        capture: Some("panic: oops".into()),
    }
}

fn missing() -> Seen {
    Seen::Dead {
        exit: None,
        capture: None,
    }
}

/// The mayor in `state`, restarted `after_crash` times after a crash
/// within the window (and no other way).
fn agent(state: AgentState, after_crash: usize) -> (Memory, Restarts) {
    let restarts = Restarts {
        all: after_crash,
        after_crash,
    };
    with(state, restarts)
}

fn with(state: AgentState, restarts: Restarts) -> (Memory, Restarts) {
    let mut memory = Memory::default();
    memory.agents.entry(MAYOR.into()).or_default().state = state;
    (memory, restarts)
}

fn running_since(ago: i64) -> AgentState {
    AgentState::Running {
        since: t0() - secs(ago),
    }
}

/// What the policy decides about the mayor, seen as `seen` at t0.
fn judge(
    (mut memory, restarts): (Memory, Restarts),
    seen: Seen,
    first: bool,
) -> (AgentState, Plan) {
    let mut round = Round {
        first,
        ..Round::default()
    };
    let looks = [Look {
        session: MAYOR.into(),
        seen,
    }];
    let counts = HashMap::from([(MAYOR.to_string(), restarts)]);
    let plan = decide(&policy(), &mut memory, &looks, &counts, t0(), &mut round);
    (memory.agents[MAYOR].state.clone(), plan)
}

fn fresh() -> (Memory, Restarts) {
    (Memory::default(), Restarts::default())
}

fn restarted(plan: &Plan) -> Option<&Planned> {
    assert!(plan.restarts.len() <= 1, "{plan:?}");
    plan.restarts.first()
}

#[test]
fn a_first_death_is_restarted_at_once() {
    let (state, plan) = judge(agent(running_since(60), 0), crashed(), false);
    let r = restarted(&plan).expect("a restart");
    assert_eq!(r.why, "agent exited with status 1");
    assert!(r.after_crash && !r.afresh, "a crash's restart counts");
    assert_eq!(r.cause, "pane_exited");
    assert_eq!(r.capture.as_deref(), Some("panic: oops"));
    assert_eq!(state, AgentState::Running { since: t0() });
    let (_, plan) = judge(agent(running_since(60), 0), missing(), false);
    assert_eq!(restarted(&plan).unwrap().cause, "session_missing");
}

#[test]
fn later_deaths_back_off_doubling_up_to_the_cap() {
    // Deaths 2, 3 within the window wait 30 s, 60 s; with a higher
    // max_restarts the next ones would wait 100 s (the cap).
    for (before, wait) in [(1, 30), (2, 60)] {
        let (state, plan) = judge(agent(running_since(60), before), crashed(), false);
        assert!(plan.restarts.is_empty(), "{plan:?}");
        assert_eq!(
            state,
            AgentState::Backoff {
                until: t0() + secs(wait)
            }
        );
        assert_eq!(plan.backoffs.len(), 1);
    }
    let p = policy();
    let waits: Vec<u64> = (1..=6).map(|n| p.backoff_for(n).as_secs()).collect();
    assert_eq!(waits, [0, 30, 60, 100, 100, 100]);
}

#[test]
fn a_backoff_is_waited_out_then_restarted() {
    let waiting = AgentState::Backoff {
        until: t0() + secs(1),
    };
    let (state, plan) = judge(agent(waiting.clone(), 1), crashed(), false);
    assert_eq!((state, plan.restarts.len()), (waiting, 0));
    let over = AgentState::Backoff { until: t0() };
    let (_, plan) = judge(agent(over, 1), crashed(), false);
    let r = restarted(&plan).unwrap();
    assert_eq!(r.why, "its backoff is over");
    assert!(
        r.after_crash,
        "the restart after the death it waited for counts"
    );
}

#[test]
fn max_restarts_deaths_quarantine_until_it_is_over() {
    let (state, plan) = judge(agent(running_since(60), 3), crashed(), false);
    assert!(plan.restarts.is_empty());
    let AgentState::Quarantined { until, why } = state else {
        panic!("{state:?}")
    };
    assert_eq!(until, t0() + secs(3600));
    assert_eq!(plan.quarantined, [(MAYOR.to_string(), why)]);
    // Still quarantined: left alone. Over: tried again, afresh.
    let q = |until| AgentState::Quarantined {
        until,
        why: "x".into(),
    };
    let (state, plan) = judge(agent(q(t0() + secs(1)), 4), crashed(), false);
    assert!(plan.restarts.is_empty() && matches!(state, AgentState::Quarantined { .. }));
    let (state, plan) = judge(agent(q(t0()), 4), crashed(), false);
    let r = restarted(&plan).unwrap();
    assert_eq!(r.why, "its quarantine is over");
    assert!(r.afresh && !r.after_crash, "its count starts again, from 0");
    assert_eq!(state, AgentState::Running { since: t0() });
}

#[test]
fn a_stable_run_starts_the_count_afresh() {
    let stable = running_since(10 * 60);
    let (_, plan) = judge(agent(stable, 3), crashed(), false);
    let r = restarted(&plan).expect("restarted at once");
    assert!(r.afresh && r.after_crash, "{r:?}");
    let (state, _) = judge(agent(running_since(10 * 60 - 1), 3), crashed(), false);
    assert!(matches!(state, AgentState::Quarantined { .. }));
}

#[test]
fn an_exit_that_is_not_a_crash_is_restarted_uncounted() {
    let usage = Seen::Dead {
        exit: Some(Exit::Status(1)),
        capture: Some("usage limit reached".into()),
    };
    let clean = Seen::Dead {
        exit: Some(Exit::Status(0)),
        capture: None,
    };
    for seen in [usage, clean] {
        let (_, plan) = judge(agent(running_since(60), 3), seen, false);
        let r = restarted(&plan).expect("restarted, not quarantined");
        assert!(r.why.ends_with("(not a crash: not counted)"), "{}", r.why);
        assert!(!r.after_crash);
        assert!(plan.backoffs.is_empty() && plan.quarantined.is_empty());
    }
}

#[test]
fn a_restart_the_guard_would_refuse_is_never_asked_for() {
    // Four restarts within the window, by requests: the guard refuses
    // a fifth, even one that would not be recorded; the agent is
    // quarantined instead of being refused again at every check.
    let by_requests = |state| {
        with(
            state,
            Restarts {
                all: 4,
                after_crash: 0,
            },
        )
    };
    let usage = Seen::Dead {
        exit: Some(Exit::Status(1)),
        capture: Some("usage limit".into()),
    };
    let over = AgentState::Backoff { until: t0() };
    for (memory, seen, first) in [
        (by_requests(running_since(60)), usage, false),
        (by_requests(AgentState::Unknown), missing(), true),
        (by_requests(over), crashed(), false),
        (by_requests(running_since(60)), crashed(), false),
    ] {
        let (state, plan) = judge(memory, seen, first);
        assert!(plan.restarts.is_empty(), "{plan:?}");
        let AgentState::Quarantined { why, .. } = state else {
            panic!("{state:?}")
        };
        assert!(
            why.contains("the crash-loop guard holds it: 4 restarts within 15m"),
            "{why}"
        );
        assert_eq!(plan.quarantined.len(), 1);
    }
    // Requests' restarts are no deaths: with three of them, a crash is
    // the first death, restarted at once.
    let three = Restarts {
        all: 3,
        after_crash: 0,
    };
    let (_, plan) = judge(with(running_since(60), three), crashed(), false);
    let r = restarted(&plan).unwrap();
    assert_eq!(r.why, "agent exited with status 1");
    assert!(r.after_crash);
}

#[test]
fn a_shutdown_request_is_respected() {
    let stopped = AgentState::StoppedOnRequest { since: t0() };
    for seen in [crashed(), missing(), Seen::Alive] {
        let (state, plan) = judge(agent(stopped.clone(), 0), seen, false);
        assert_eq!(state, stopped);
        assert_eq!(plan, Plan::default());
    }
}

#[test]
fn an_agent_missing_at_the_first_look_is_started_not_counted() {
    let (_, plan) = judge(fresh(), missing(), true);
    let r = restarted(&plan).unwrap();
    assert_eq!(r.why, "not running when supervision began");
    assert!(!r.after_crash);
    assert!(plan.backoffs.is_empty());
    // Not the first look, or a pane that died: a death.
    let (_, plan) = judge(fresh(), missing(), false);
    assert_eq!(restarted(&plan).unwrap().why, "session missing");
    let (_, plan) = judge(fresh(), crashed(), true);
    assert_eq!(restarted(&plan).unwrap().why, "agent exited with status 1");
}

#[test]
fn an_agent_seen_alive_is_remembered_running_once() {
    let (state, plan) = judge(fresh(), Seen::Alive, false);
    assert_eq!(state, AgentState::Running { since: t0() });
    assert!(plan.changed && plan.restarts.is_empty());
    let (_, plan) = judge(agent(running_since(5), 0), Seen::Alive, false);
    assert!(!plan.changed, "nothing new to write");
}

#[test]
fn several_agents_dying_together_pause_supervision() {
    let sessions = ["gt-mayor", "gt-deacon", "gt-rig-witness"];
    let none = HashMap::new();
    let mut memory = Memory::default();
    let mut round = Round::default();
    let looks: Vec<Look> = sessions
        .iter()
        .map(|s| Look {
            session: s.to_string(),
            seen: crashed(),
        })
        .collect();
    // Two die: restarted. A third within the window: all paused.
    let plan = decide(&policy(), &mut memory, &looks[..2], &none, t0(), &mut round);
    assert_eq!(plan.restarts.len(), 2);
    let later = t0() + secs(10);
    let plan = decide(
        &policy(),
        &mut memory,
        &looks[2..],
        &none,
        later,
        &mut round,
    );
    assert!(plan.restarts.is_empty(), "{plan:?}");
    let (died, why) = plan.paused.expect("paused");
    assert_eq!(died, ["gt-deacon", "gt-mayor", "gt-rig-witness"]);
    assert!(why.contains("3 supervised agents died within 30s"), "{why}");
    let paused = memory.paused.unwrap();
    assert_eq!(paused.until, later + secs(600));
    assert_eq!(
        memory.agents["gt-rig-witness"].state,
        AgentState::Backoff { until: later }
    );
    // Two deaths and a stall are not a mass death.
    let mut memory = Memory::default();
    let mut round = Round::default();
    let mut mixed = looks.clone();
    mixed[2].seen = Seen::Stalled {
        why: "stalled: quiet".into(),
        capture: None,
    };
    let plan = decide(&policy(), &mut memory, &mixed, &none, t0(), &mut round);
    assert!(plan.paused.is_none(), "{plan:?}");
    assert_eq!(plan.restarts.len(), 3);
    // One agent dying three times is not a mass death.
    let mut memory = Memory::default();
    let mut round = Round::default();
    for i in 0..3 {
        let plan = decide(
            &policy(),
            &mut memory,
            &looks[..1],
            &none,
            t0() + secs(i),
            &mut round,
        );
        assert!(plan.paused.is_none());
    }
}

#[test]
fn a_restart_cut_short_is_done_again_alive_or_not() {
    let cut_short = AgentState::Interrupted {
        since: t0() - secs(5),
    };
    for (seen, cause) in [(Seen::Alive, "interrupted"), (missing(), "session_missing")] {
        let (state, plan) = judge(agent(cut_short.clone(), 1), seen, false);
        let r = restarted(&plan).expect("restarted");
        assert!(r.why.contains("cut short by a daemon stop"), "{}", r.why);
        assert_eq!(r.cause, cause);
        assert!(!r.after_crash, "not a crash: not counted");
        assert_eq!(state, AgentState::Running { since: t0() });
        assert!(plan.paused.is_none() && plan.backoffs.is_empty());
    }
}
