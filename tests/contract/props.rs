//! Properties of the pure request parser (`gt::request`): it never panics on
//! any input, and whatever identity it accepts becomes a tmux session name
//! made only of `[A-Za-z0-9_-]` after `gt-`, exactly as the identity table
//! documents.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gt::request::{parse, Action, Agent};
use proptest::prelude::*;
use serde_json::json;

fn now() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

const MAX_AGE: Duration = Duration::from_secs(6 * 3600);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn is_rig_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// What the documented identity table says `from` maps to, computed
/// independently of the parser; `None` for anything the table does not list.
fn documented_session(from: &str) -> Option<String> {
    let rig_ok = |rig: &str| !rig.is_empty() && rig.chars().all(is_rig_char);
    match from {
        "mayor" | "mayor/" => return Some("gt-mayor".into()),
        "deacon" | "deacon/" => return Some("gt-deacon".into()),
        _ => {}
    }
    if let Some(rig) = from.strip_suffix("/witness").filter(|r| rig_ok(r)) {
        return Some(format!("gt-{rig}-witness"));
    }
    if let Some(rig) = from.strip_suffix("/refinery").filter(|r| rig_ok(r)) {
        return Some(format!("gt-{rig}-refinery"));
    }
    if let Some(rig) = from.strip_suffix("-witness").filter(|r| rig_ok(r)) {
        return Some(format!("gt-{rig}-witness"));
    }
    None
}

fn assert_safe_session(session: &str) -> Result<(), TestCaseError> {
    let rest = session.strip_prefix("gt-");
    prop_assert!(
        rest.is_some_and(|r| !r.is_empty() && r.chars().all(is_rig_char)),
        "session {:?} is not ^gt-[A-Za-z0-9_-]+$",
        session
    );
    prop_assert!(
        !session.contains(['.', ':', '/']) && !session.chars().any(char::is_whitespace),
        "session {:?} has tmux target syntax or whitespace",
        session
    );
    Ok(())
}

fn rig() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,24}"
}

/// Identity-shaped strings: valid forms, near misses and hostile pieces.
fn from_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[A-Za-z0-9_-]{0,8}",
        2 => prop::sample::select(vec!["mayor", "deacon", "witness", "refinery", "-witness", "/witness", "/refinery"])
            .prop_map(str::to_string),
        2 => "[./: \\\\$`;'\"\n\t\r\u{0}\u{7}\u{1b}\u{7f}\u{85}\u{a0}\u{e4}\u{2028}\u{ff0f}*?#%!{}()]",
        1 => ".{0,3}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|parts| parts.concat())
}

fn timestamp_like() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2026-11-23T10:00:00Z".to_string()),
        Just("2026-11-23T04:00:01+00:00".to_string()),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,12})?([Zz]|[+-][0-2][0-9]:[0-5][0-9])?",
        ".{0,30}",
    ]
}

fn action_like() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "cycle", "restart", "shutdown", "CYCLE", "Restart", "reboot", ""
        ])
        .prop_map(str::to_string),
        ".{0,12}",
    ]
}

/// Checks an accepted request against everything the parser promises.
fn check_accepted(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse(bytes, now(), MAX_AGE) {
        Ok(request) => {
            assert_safe_session(&request.session())?;
            prop_assert_eq!(Some(request.session()), documented_session(&request.from));
            prop_assert_eq!(
                Agent::parse(&request.from).ok(),
                Some(request.agent.clone())
            );
            let age = now().signed_duration_since(request.timestamp);
            prop_assert!(
                age <= chrono::Duration::hours(6) && age >= -chrono::Duration::minutes(10)
            );
        }
        Err((rejection, partial)) => {
            prop_assert!(!rejection.0.is_empty());
            if let Some(session) = &partial.session {
                assert_safe_session(session)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_accepted(&bytes)?;
    }

    #[test]
    fn parse_never_panics_on_json_ish_bytes(
        parts in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "{", "}", "[", "]", ",", ":", "\"", "\\", "\"from\"", "\"action\"", "\"timestamp\"",
                    "\"mayor\"", "\"cycle\"", "\"2026-11-23T10:00:00Z\"", "null", "5", "-1e999", " ", "\n",
                    "\u{feff}", "\\u0000", "\\ud800",
                ]).prop_map(|s| s.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 0..3),
            ],
            0..40,
        )
    ) {
        check_accepted(&parts.concat())?;
    }

    #[test]
    fn agent_parse_never_panics_and_sessions_are_safe(from in prop_oneof![from_like(), any::<String>()]) {
        match Agent::parse(&from) {
            Ok(agent) => {
                assert_safe_session(&agent.session())?;
                prop_assert_eq!(Some(agent.session()), documented_session(&from), "from {:?}", from);
                for dir in agent.work_dirs() {
                    prop_assert!(!dir.starts_with('/') && !dir.split('/').any(|c| c.is_empty() || c == "." || c == ".."),
                        "work dir {:?} escapes the town", dir);
                }
            }
            Err(rejection) => {
                prop_assert!(rejection.0.starts_with("bad \"from\""), "{}", rejection);
                prop_assert_eq!(documented_session(&from), None, "documented identity {:?} refused: {}", from, rejection);
            }
        }
    }

    #[test]
    fn requests_built_from_arbitrary_fields(
        from in prop_oneof![from_like(), any::<String>()],
        action in action_like(),
        timestamp in timestamp_like(),
        extra in prop::option::of(any::<String>()),
        bom in any::<bool>(),
    ) {
        let mut value = json!({"from": from, "action": action, "timestamp": timestamp});
        if let Some(extra) = extra {
            value["note"] = json!(extra);
        }
        let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(value.to_string().as_bytes());
        check_accepted(&bytes)?;
        let result = parse(&bytes, now(), MAX_AGE);
        // Valid fields are accepted whatever else the object holds.
        let fields_ok = documented_session(&from).is_some()
            && Action::parse(&action).is_ok()
            && DateTime::parse_from_rfc3339(&timestamp).is_ok_and(|t| {
                let age = now().signed_duration_since(t);
                age <= chrono::Duration::hours(6) && age >= -chrono::Duration::minutes(10)
            });
        prop_assert_eq!(result.is_ok(), fields_ok, "{}", value);
        if let Ok(request) = result {
            prop_assert_eq!(&request.from, &from);
            prop_assert_eq!(request.action.as_str(), action.as_str());
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Every documented form round-trips to its documented session.
    #[test]
    fn documented_identities_map_to_documented_sessions(rig in rig(), form in 0..3usize) {
        let (from, session) = match form {
            0 => (format!("{rig}/witness"), format!("gt-{rig}-witness")),
            1 => (format!("{rig}-witness"), format!("gt-{rig}-witness")),
            _ => (format!("{rig}/refinery"), format!("gt-{rig}-refinery")),
        };
        let agent = Agent::parse(&from).map_err(|r| TestCaseError::fail(format!("{from:?}: {r}")))?;
        prop_assert_eq!(agent.session(), session);
        assert_safe_session(&agent.session())?;
        let request = json!({"from": from, "action": "cycle", "timestamp": "2026-11-23T09:00:00Z"});
        let parsed = parse(request.to_string().as_bytes(), now(), MAX_AGE)
            .map_err(|(r, _)| TestCaseError::fail(format!("{request}: {r}")))?;
        prop_assert_eq!(parsed.session(), agent.session());
    }

    /// Anything outside the charset, spliced into a valid identity, is refused.
    #[test]
    fn a_foreign_character_anywhere_in_the_rig_is_refused(
        rig in rig(),
        at in any::<prop::sample::Index>(),
        bad in any::<char>().prop_filter("outside the rig charset", |c| !is_rig_char(*c)),
        form in 0..3usize,
    ) {
        let mut chars: Vec<char> = rig.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad);
        let rig: String = chars.into_iter().collect();
        let from = match form {
            0 => format!("{rig}/witness"),
            1 => format!("{rig}-witness"),
            _ => format!("{rig}/refinery"),
        };
        prop_assert_eq!(documented_session(&from), None, "from {:?}", from);
        prop_assert!(Agent::parse(&from).is_err(), "from {:?} accepted", from);
    }
}
