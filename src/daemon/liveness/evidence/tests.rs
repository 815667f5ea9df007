//! Table tests of the evidence: a story of looks and pokes, and the state
//! it ends in.

use super::*;
use crate::tmux::PaneView;

fn t0() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

fn rules() -> Rules {
    Rules {
        stall_after: Duration::from_secs(600),
        stall_pokes: 2,
        answer_within: Duration::from_secs(30),
        working_for: Duration::from_secs(20),
    }
}

/// A screen showing `lines` from row 0.
fn shows(lines: &[&str]) -> Sight {
    let view = PaneView {
        id: "%1".into(),
        dead: false,
        rows: lines.iter().map(|l| l.to_string()).collect(),
        first_row: 0,
        screen_rows: lines.len(),
        history_size: 0,
        cursor_row: None,
        cursor_visible: true,
        width: 80,
    };
    Sight::Screen {
        screen: Screen::of(&view, &["HEARTBEAT"]),
        prompt: None,
    }
}

fn asks(line: &str) -> Sight {
    let Sight::Screen { screen, .. } = shows(&["x", line]) else {
        unreachable!()
    };
    Sight::Screen {
        screen,
        prompt: Some(Prompt {
            row: 1,
            text: line.into(),
            // Stands in for the line's hash: differs when the line does.
            whole: line.len() as u64,
        }),
    }
}

/// One step of a story.
#[derive(Clone)]
enum Then {
    /// A look at this second saw this.
    Look(i64, Sight),
    /// A poke typed at this second.
    Poke(i64),
}

use Then::{Look, Poke};

/// A poke at `t`, its text seen submitted.
fn delivered(e: &mut Evidence, t: DateTime<Utc>) {
    e.poked(t);
    assert!(e.confirmed(t, Delivery::Delivered));
}

fn play(steps: &[Then]) -> Evidence {
    let mut e = Evidence::new(None, t0());
    for step in steps {
        match step.clone() {
            Look(s, sight) => {
                e.saw(sight, at(s), &rules());
            }
            Poke(s) => delivered(&mut e, at(s)),
        }
    }
    e
}

/// An agent that answers every poke at once: each answer a line more.
fn answering(pokes: i64, every: i64) -> Vec<Then> {
    let mut steps = vec![Look(0, shows(&["ready"]))];
    let mut lines = vec!["ready".to_string()];
    for i in 1..=pokes {
        steps.push(Poke(i * every));
        lines.push("ack".into());
        let rows: Vec<&str> = lines.iter().map(String::as_str).collect();
        steps.push(Look(i * every + 5, shows(&rows)));
        steps.push(Look(i * every + 40, shows(&rows)));
    }
    steps
}

/// A program that never answers, poked every `every` seconds.
fn silent(pokes: i64, every: i64) -> Vec<Then> {
    let mut steps = vec![Look(0, shows(&["started"]))];
    for i in 1..=pokes {
        steps.push(Poke(i * every));
        steps.push(Look(i * every + 40, shows(&["started", "HEARTBEAT"])));
    }
    steps
}

#[test]
fn states_follow_from_the_evidence_alone() {
    let long = 3 * 3600;
    // (what, story, state at its end)
    let table: Vec<(&str, Vec<Then>, Activity)> = vec![
        (
            "quiet for hours, nobody pokes it: idle, never stalled",
            vec![Look(0, shows(&["a"])), Look(long, shows(&["a"]))],
            Activity::Idle,
        ),
        (
            "quiet for hours between pokes it answers: idle",
            answering(180, 60),
            Activity::Idle,
        ),
        (
            "pokes unanswered, but not quiet long enough",
            silent(5, 60),
            Activity::Idle,
        ),
        (
            "quiet for stall_after, its pokes unanswered: stalled",
            silent(11, 60),
            Activity::Stalled,
        ),
        (
            "quiet for hours, one poke unanswered (stall_pokes 2): idle",
            {
                let mut s = vec![Look(0, shows(&["a"])), Poke(10)];
                s.push(Look(long, shows(&["a"])));
                s
            },
            Activity::Idle,
        ),
        (
            "stalled, then its screen moves: working",
            {
                let mut s = silent(11, 60);
                s.push(Look(700, shows(&["started", "at last"])));
                s
            },
            Activity::Working,
        ),
        (
            "working, then quiet past two looks: idle",
            vec![
                Look(0, shows(&["a"])),
                Look(10, shows(&["a", "b"])),
                Look(40, shows(&["a", "b"])),
            ],
            Activity::Idle,
        ),
        (
            "a question for a person, pokes unanswered for long: waiting",
            {
                let mut s = silent(11, 60);
                s.push(Look(700, asks("Proceed? (y/n)")));
                s
            },
            Activity::WaitingForPerson,
        ),
        (
            "a question answered (the answer typed onto its line): no longer waiting",
            vec![
                Look(0, asks("Proceed? (y/n)")),
                Look(10, asks("Proceed? (y/n) y")),
                Look(20, asks("Proceed? (y/n) y")),
            ],
            Activity::Working,
        ),
        (
            "answered, then a new question on another row: waiting again",
            vec![
                Look(0, asks("Proceed? (y/n)")),
                Look(10, asks("Proceed? (y/n) y")),
                Look(20, {
                    let Sight::Screen { screen, .. } = shows(&["x", "y", "Again? (y/n)"]) else {
                        unreachable!()
                    };
                    Sight::Screen {
                        screen,
                        prompt: Some(Prompt {
                            row: 2,
                            text: "Again? (y/n)".into(),
                            whole: 2,
                        }),
                    }
                }),
            ],
            Activity::WaitingForPerson,
        ),
        (
            "dead, whatever else",
            vec![Look(0, asks("Proceed? (y/n)")), Look(10, Sight::Dead)],
            Activity::Dead,
        ),
    ];
    for (what, story, state) in table {
        let e = play(&story);
        assert_eq!(e.state, state, "{what}: {:#?}", e.published());
    }
}

#[test]
fn each_poke_is_judged_once_answered_or_not() {
    let e = play(&[
        Look(0, shows(&["a"])),
        Poke(10),
        Look(20, shows(&["a"])),
        Look(45, shows(&["a"])), // 35 s after the poke: unanswered
        Poke(50),
        Look(55, shows(&["a", "b"])), // answered
        Poke(60),
        Look(70, shows(&["a", "b"])),
    ]);
    let p = e.published();
    let answers: Vec<Answer> = p.pokes.iter().map(|p| p.answer).collect();
    assert_eq!(
        answers,
        [Answer::Unanswered, Answer::Answered, Answer::Pending]
    );
    assert_eq!(p.pokes[1].answered_at, Some(at(55)));
    assert_eq!(p.unanswered_pokes, 0, "an answer ends the run");
    assert_eq!(p.screen_moved_at, Some(at(55)));
}

#[test]
fn a_poke_is_not_judged_before_its_text_is_known_to_be_in() {
    let mut e = Evidence::new(None, t0());
    e.saw(shows(&["a"]), t0(), &rules());
    e.poked(at(1));
    e.saw(shows(&["a"]), at(100), &rules());
    assert_eq!(e.published().pokes[0].answer, Answer::Pending);
    // Resubmitted late, and answered: the answer counts.
    e.confirmed(at(1), Delivery::Resubmitted);
    e.saw(shows(&["a", "got it"]), at(101), &rules());
    assert_eq!(e.published().pokes[0].answer, Answer::Answered);
    // Never submitted: judged as any other, once known.
    e.poked(at(200));
    e.confirmed(at(200), Delivery::Unconfirmed);
    e.saw(shows(&["a", "got it"]), at(300), &rules());
    assert_eq!(e.published().pokes[1].answer, Answer::Unanswered);
}

#[test]
fn an_answer_seen_before_its_poke_was_handed_over_counts() {
    let mut e = Evidence::new(None, t0());
    e.saw(shows(&["a"]), t0(), &rules());
    // Typed at 10; a look at 11 saw the answer; handed over after it.
    e.saw(shows(&["a", "ack"]), at(11), &rules());
    delivered(&mut e, at(10));
    assert_eq!(e.published().pokes[0].answered_at, Some(at(11)));
    // An earlier move is no answer.
    delivered(&mut e, at(12));
    e.saw(shows(&["a", "ack"]), at(100), &rules());
    assert_eq!(e.published().pokes[1].answer, Answer::Unanswered);
}

#[test]
fn folding_says_what_was_judged_and_what_changed() {
    let mut e = Evidence::new(None, t0());
    let r = rules();
    assert_eq!(e.saw(shows(&["a"]), t0(), &r), Folded::default());
    delivered(&mut e, at(1));
    delivered(&mut e, at(2));
    let f = e.saw(shows(&["a"]), at(700), &r);
    assert_eq!(f.unanswered, 2);
    assert_eq!(f.change, Some((Activity::Idle, Activity::Stalled)));
    assert_eq!(e.published().since, at(700));
    let f = e.saw(shows(&["a", "b"]), at(710), &r);
    assert_eq!(f.change, Some((Activity::Stalled, Activity::Working)));
    let f = e.saw(shows(&["a", "b"]), at(715), &r);
    assert_eq!(f.change, None, "no change, no word");
}

#[test]
fn pokes_kept_are_bounded_and_confirmed_by_their_time() {
    let mut e = Evidence::new(None, t0());
    for s in 0..(POKES_KEPT as i64 + 5) {
        e.poked(at(s));
    }
    let p = e.published();
    assert_eq!(p.pokes.len(), POKES_KEPT);
    assert_eq!(p.pokes[0].at, at(5), "the oldest go first");
    assert!(e.confirmed(at(7), Delivery::Resubmitted));
    assert!(!e.confirmed(at(1), Delivery::Delivered), "forgotten");
    assert!(!e.confirmed(at(999), Delivery::Delivered), "never poked");
    let p = e.published();
    assert_eq!(p.pokes[2].delivery, Delivery::Resubmitted);
    assert_eq!(p.pokes[3].delivery, Delivery::Pending);
}

#[test]
fn fresh_evidence_owes_nothing_to_the_pane_before() {
    let old = PaneKey {
        id: "%1".into(),
        pid: Some(10),
        created: Some(1),
    };
    let mut e = Evidence::new(Some(old), t0());
    for s in [0, 60, 120] {
        delivered(&mut e, at(s));
    }
    e.saw(shows(&["a"]), at(700), &rules());
    assert_eq!(e.state, Activity::Stalled);
    // What the look does when the pane's key changes: a new record.
    let new = Evidence::new(
        Some(PaneKey {
            id: "%2".into(),
            pid: Some(11),
            created: Some(2),
        }),
        at(701),
    );
    let p = new.published();
    assert_eq!(p.state, Activity::Idle);
    assert!(p.pokes.is_empty() && p.unanswered_pokes == 0);
    assert_eq!(p.pane.as_deref(), Some("%2"));
    assert_eq!(p.watched_since, at(701));
    // Quiet as long as stall_after, counted from its own start only.
    assert_eq!(new.classify(at(701 + 599), &rules()), Activity::Idle);
}

#[test]
fn confirming_a_poke_presses_enter_at_most_once_and_never_retypes() {
    // (step, text still on the input line, verdict)
    let table = [
        (Step::First, false, Verdict::Done(Delivery::Delivered)),
        (Step::First, true, Verdict::PressEnter),
        (
            Step::AfterEnter,
            false,
            Verdict::Done(Delivery::Resubmitted),
        ),
        (Step::AfterEnter, true, Verdict::Done(Delivery::Unconfirmed)),
    ];
    for (step, on_line, expected) in table {
        assert_eq!(verdict(step, on_line), expected, "{step:?} {on_line}");
    }
}
