//! The request file format (docs/requests.md): parsing, validation and the mapping
//! from an agent identity to its tmux session.
//!
//! Everything here is pure: bytes and a clock in, a [`Request`] or a
//! [`Rejection`] with a reason a person can act on out (reading the file
//! is [`crate::inbox::read_request`]). Request text never reaches a shell
//! or a tmux target unless it passed [`Agent::parse`].

use std::fmt;
use std::io;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Largest request file accepted; anything bigger is rejected unread.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// Timestamps this far in the future are tolerated as clock skew.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Restart with handoff (`GT_HANDOFF=1`).
    Cycle,
    /// Fresh restart.
    Restart,
    /// End the session.
    Shutdown,
}

impl Action {
    pub fn parse(text: &str) -> Result<Action, Rejection> {
        match text {
            "cycle" => Ok(Action::Cycle),
            "restart" => Ok(Action::Restart),
            "shutdown" => Ok(Action::Shutdown),
            other
                if matches!(
                    other.to_ascii_lowercase().as_str(),
                    "cycle" | "restart" | "shutdown"
                ) =>
            {
                Err(Rejection(format!(
                    "unknown action {other:?} (actions are lowercase: cycle, restart, shutdown)"
                )))
            }
            other => Err(Rejection(format!(
                "unknown action {other:?}: expected cycle, restart or shutdown"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Cycle => "cycle",
            Action::Restart => "restart",
            Action::Shutdown => "shutdown",
        }
    }

    /// Whether the action starts a new session (and so counts against the
    /// crash-loop guard and is refused during town shutdown).
    pub fn starts_session(self) -> bool {
        !matches!(self, Action::Shutdown)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role of an agent, which picks its agent command and work directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Agent {
    Mayor,
    Deacon,
    Witness { rig: String },
    Refinery { rig: String },
}

impl Agent {
    /// Maps a `from` value to an agent, strictly (docs/requests.md, "Sending a request").
    ///
    /// ```
    /// use gt::request::Agent;
    /// assert_eq!(Agent::parse("gastown/witness").unwrap().session(), "gt-gastown-witness");
    /// assert_eq!(Agent::parse("mayor/").unwrap().session(), "gt-mayor");
    /// // tmux target syntax never reaches tmux:
    /// assert!(Agent::parse("gt-mayor:0.1").is_err());
    /// ```
    pub fn parse(from: &str) -> Result<Agent, Rejection> {
        let bad = |why: &str| Err(Rejection(format!("bad \"from\" {from:?}: {why}")));
        if from.is_empty() {
            return bad("it is empty");
        }
        if let Some(c) = from.chars().find(|c| c.is_control()) {
            return bad(&format!("it contains the control character {:?}", c));
        }
        if from.contains("..") {
            return bad("it contains \"..\"");
        }
        if from.chars().any(char::is_whitespace) {
            return bad("it contains a space");
        }
        if from.contains(':') {
            return bad("it contains ':', which tmux reads as target syntax");
        }
        if from.contains('.') {
            return bad("it contains '.', which tmux reads as target syntax");
        }
        match from {
            "mayor" | "mayor/" => return Ok(Agent::Mayor),
            "deacon" | "deacon/" => return Ok(Agent::Deacon),
            _ => {}
        }
        let (rig, role) = if let Some((rig, role)) = from.split_once('/') {
            (rig, role)
        } else if let Some(rig) = from.strip_suffix("-witness") {
            (rig, "witness")
        } else {
            return bad(NOT_AN_AGENT);
        };
        if rig.is_empty()
            || !rig
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return bad(&format!(
                "rig name {rig:?} must be letters, digits, '_' or '-' ({NOT_AN_AGENT})"
            ));
        }
        let rig = rig.to_string();
        match role {
            "witness" => Ok(Agent::Witness { rig }),
            "refinery" => Ok(Agent::Refinery { rig }),
            _ => bad(NOT_AN_AGENT),
        }
    }

    /// The tmux session name; only `[A-Za-z0-9_-]` ever appears in it.
    pub fn session(&self) -> String {
        match self {
            Agent::Mayor => "gt-mayor".into(),
            Agent::Deacon => "gt-deacon".into(),
            Agent::Witness { rig } => format!("gt-{rig}-witness"),
            Agent::Refinery { rig } => format!("gt-{rig}-refinery"),
        }
    }

    /// The agent whose tmux session is `session` (`gt-mayor` → the Mayor),
    /// if it is an agent's session at all.
    ///
    /// ```
    /// use gt::request::Agent;
    /// assert_eq!(Agent::from_session("gt-gastown-witness").unwrap().name(), "gastown/witness");
    /// assert!(Agent::from_session("gt-mayor:0").is_none());
    /// ```
    pub fn from_session(session: &str) -> Option<Agent> {
        let rest = session.strip_prefix("gt-")?;
        let rig_ok = |rig: &str| {
            !rig.is_empty()
                && rig
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        match rest {
            "mayor" => Some(Agent::Mayor),
            "deacon" => Some(Agent::Deacon),
            _ => {
                if let Some(rig) = rest.strip_suffix("-witness").filter(|r| rig_ok(r)) {
                    Some(Agent::Witness { rig: rig.into() })
                } else {
                    let rig = rest.strip_suffix("-refinery").filter(|r| rig_ok(r))?;
                    Some(Agent::Refinery { rig: rig.into() })
                }
            }
        }
    }

    /// The agent's name as a request's `from` spells it: `mayor`,
    /// `deacon`, `<rig>/witness`, `<rig>/refinery`.
    pub fn name(&self) -> String {
        match self {
            Agent::Mayor => "mayor".into(),
            Agent::Deacon => "deacon".into(),
            Agent::Witness { rig } => format!("{rig}/witness"),
            Agent::Refinery { rig } => format!("{rig}/refinery"),
        }
    }

    /// The role name used for per-role configuration.
    pub fn role(&self) -> &'static str {
        match self {
            Agent::Mayor => "mayor",
            Agent::Deacon => "deacon",
            Agent::Witness { .. } => "witness",
            Agent::Refinery { .. } => "refinery",
        }
    }

    /// Work directory candidates, most specific first, relative to the town.
    pub fn work_dirs(&self) -> Vec<String> {
        match self {
            Agent::Mayor => vec!["mayor".into()],
            Agent::Deacon => vec!["deacon".into()],
            Agent::Witness { rig } => vec![format!("{rig}/witness"), rig.clone()],
            Agent::Refinery { rig } => vec![format!("{rig}/refinery"), rig.clone()],
        }
    }
}

const NOT_AN_AGENT: &str = "expected mayor, deacon, <rig>/witness, <rig>-witness or <rig>/refinery";

/// Why a request was refused, worded for the person reading `failed/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(pub String);

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Rejection {}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub from: String,
    pub agent: Agent,
    pub action: Action,
    pub timestamp: DateTime<Utc>,
}

impl Request {
    pub fn session(&self) -> String {
        self.agent.session()
    }
}

/// What could be read of a request even when it is refused, so the sidecar
/// can still say who asked for what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub from: Option<String>,
    pub action: Option<String>,
    pub session: Option<String>,
}

impl Partial {
    /// Everything a valid request says about itself.
    pub fn of(request: &Request) -> Self {
        Partial {
            from: Some(request.from.clone()),
            action: Some(request.action.to_string()),
            session: Some(request.session()),
        }
    }
}

/// Wire format: every field optional so a missing one gets our own message;
/// strings so a wrong value gets a reason naming the value. Unknown fields
/// are ignored; duplicate fields are an error (serde's default).
#[derive(Deserialize)]
struct Wire {
    from: Option<String>,
    action: Option<String>,
    timestamp: Option<String>,
}

/// Parses and validates request bytes against `now`.
pub fn parse(
    bytes: &[u8],
    now: DateTime<Utc>,
    max_age: Duration,
) -> Result<Request, (Rejection, Partial)> {
    let no_partial = |r: Rejection| (r, Partial::default());
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(no_partial(Rejection(if bytes.is_empty() {
            "file is empty".into()
        } else {
            "file is empty (only whitespace)".into()
        })));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        no_partial(Rejection(format!(
            "file is not UTF-8 text: invalid byte at offset {}",
            e.valid_up_to()
        )))
    })?;
    // serde would read a struct from an array positionally; requests are
    // objects only.
    if text.trim_start().starts_with('[') {
        return Err(no_partial(Rejection(
            "request must be a JSON object, found an array".into(),
        )));
    }
    let wire: Wire =
        serde_json::from_str(text).map_err(|e| no_partial(json_rejection(&e, text)))?;
    let mut partial = Partial {
        from: wire.from.clone(),
        action: wire.action.clone(),
        session: None,
    };
    let result = (|| {
        let from = wire
            .from
            .ok_or_else(|| Rejection("missing field \"from\"".into()))?;
        let action = wire
            .action
            .ok_or_else(|| Rejection("missing field \"action\"".into()))?;
        let timestamp = wire
            .timestamp
            .ok_or_else(|| Rejection("missing field \"timestamp\"".into()))?;
        let agent = Agent::parse(&from)?;
        partial.session = Some(agent.session());
        let action = Action::parse(&action)?;
        let timestamp = parse_timestamp(&timestamp)?;
        check_age(timestamp, now, max_age)?;
        Ok(Request {
            from,
            agent,
            action,
            timestamp,
        })
    })();
    result.map_err(|r| (r, partial))
}

/// Validates what [`crate::inbox::read_request`] returned: the request, or the reason it is
/// refused, with whatever identity could be read for the sidecar either
/// way.
pub fn validate(
    read: Read,
    now: DateTime<Utc>,
    max_age: Duration,
) -> (Result<Request, String>, Partial) {
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(rejection)) => return (Err(rejection.0), Partial::default()),
        Err(e) => {
            return (
                Err(format!("cannot read the request: {e}")),
                Partial::default(),
            )
        }
    };
    match parse(&bytes, now, max_age) {
        Ok(r) => {
            let partial = Partial::of(&r);
            (Ok(r), partial)
        }
        Err((rejection, partial)) => (Err(rejection.0), partial),
    }
}

/// What reading a request file gave: its bytes, a refusal (not a regular
/// file, too large), or the error that kept it from being read.
pub type Read = io::Result<Result<Vec<u8>, Rejection>>;
fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, Rejection> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Rejection(format!(
                "timestamp {text:?} is not an RFC 3339 timestamp ({e}); write e.g. \"2026-11-23T10:00:00Z\""
            ))
        })
}

fn check_age(
    timestamp: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Result<(), Rejection> {
    use crate::duration::{above, exact};
    let age = now.signed_duration_since(timestamp);
    match age.to_std() {
        // The age is shown just precisely enough to be seen to be over the
        // limit, and the limit exactly: never "1h old, limit 1h30m".
        Ok(age) if age > max_age => Err(Rejection(format!(
            "request is stale: {} old, limit {}",
            above(age, max_age),
            exact(max_age)
        ))),
        Ok(_) => Ok(()),
        Err(_) => {
            let ahead = (-age).to_std().unwrap_or_default();
            if ahead > MAX_CLOCK_SKEW {
                Err(Rejection(format!(
                    "timestamp is {} in the future (more than {} of clock skew); check the sender's clock",
                    above(ahead, MAX_CLOCK_SKEW),
                    exact(MAX_CLOCK_SKEW)
                )))
            } else {
                Ok(())
            }
        }
    }
}

fn json_rejection(e: &serde_json::Error, text: &str) -> Rejection {
    use serde_json::error::Category;
    let msg = e.to_string();
    let bare = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => &msg,
    };
    let at = format!("at line {} column {}", e.line(), e.column());
    Rejection(match e.classify() {
        Category::Data
            if bare.starts_with("invalid type") && bare.ends_with("expected struct Wire") =>
        {
            let found = bare
                .trim_start_matches("invalid type: ")
                .trim_end_matches(", expected struct Wire");
            format!(
                "request must be a JSON object, found {}",
                found.replace('`', "\"")
            )
        }
        Category::Data if bare.starts_with("duplicate field") => {
            format!("{} {at}", bare.replace('`', "\""))
        }
        Category::Data => format!("bad field {at}: {}", bare.replace('`', "\"")),
        Category::Eof if text.trim_start().starts_with(['{', '[']) => {
            format!("invalid JSON {at}: the file ends early (truncated, or still being written?)")
        }
        Category::Eof | Category::Syntax | Category::Io => format!("invalid JSON {at}: {bare}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn reason(bytes: &[u8]) -> String {
        parse(bytes, now(), Duration::from_secs(6 * 3600))
            .unwrap_err()
            .0
             .0
    }

    #[test]
    fn valid_request_maps_to_session() {
        let r = parse(
            br#"{"from":"gastown/witness","action":"cycle","timestamp":"2026-11-23T09:59:00Z","extra":1}"#,
            now(),
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(r.session(), "gt-gastown-witness");
        assert_eq!(r.action, Action::Cycle);
    }

    #[test]
    fn identity_table() {
        for (from, session) in [
            ("mayor", "gt-mayor"),
            ("mayor/", "gt-mayor"),
            ("deacon", "gt-deacon"),
            ("deacon/", "gt-deacon"),
            ("gastown/witness", "gt-gastown-witness"),
            ("gastown-witness", "gt-gastown-witness"),
            ("my_rig-2/refinery", "gt-my_rig-2-refinery"),
            ("gastown/refinery", "gt-gastown-refinery"),
            ("a-b_c/refinery", "gt-a-b_c-refinery"),
            ("--witness", "gt---witness"),
        ] {
            assert_eq!(Agent::parse(from).unwrap().session(), session, "{from}");
        }
        for from in [
            "",
            "mayor//",
            "/mayor",
            "Mayor",
            "deacon-witness/",
            "gastown/refinery/",
            "gastown-refinery",
            "gastown/witness/x",
            "-witness",
            "gastown/",
            "../witness",
            "..",
            "../../etc",
            "a/b/witness",
            "gt-mayor:0.1",
            "x y/witness",
            "rig/witness/",
            "rig/polecat",
            "mayor\n",
            "/witness",
            "witness",
            "$(touch /tmp/pwned)/witness",
        ] {
            assert!(Agent::parse(from).is_err(), "{from:?} accepted");
        }
    }

    #[test]
    fn reasons_are_specific() {
        assert_eq!(reason(b""), "file is empty");
        assert!(reason(b"{\"from\": }").starts_with("invalid JSON at line 1 column 10"));
        assert!(reason(b"\xff\xfe").contains("not UTF-8"));
        assert_eq!(
            reason(b"[1]"),
            "request must be a JSON object, found an array"
        );
        assert_eq!(
            reason(b"5"),
            "request must be a JSON object, found integer \"5\""
        );
        assert!(reason(br#"{"from":"mayor","from":"mayor"}"#).contains("duplicate field \"from\""));
        assert!(
            reason(br#"{"action":"cycle","timestamp":"2026-11-23T10:00:00Z"}"#)
                .contains("missing field \"from\"")
        );
        assert!(reason(
            br#"{"from":"mayor","action":"reboot","timestamp":"2026-11-23T10:00:00Z"}"#
        )
        .contains("unknown action \"reboot\""));
        assert!(
            reason(br#"{"from":"mayor","action":"CYCLE","timestamp":"2026-11-23T10:00:00Z"}"#)
                .contains("actions are lowercase")
        );
        assert!(
            reason(br#"{"from":"mayor","action":"cycle","timestamp":"yesterday"}"#)
                .contains("is not an RFC 3339 timestamp")
        );
        assert_eq!(
            reason(br#"{"from":"mayor","action":"cycle","timestamp":"2026-11-23T03:00:00Z"}"#),
            "request is stale: 7h old, limit 6h"
        );
        assert!(
            reason(br#"{"from":5,"action":"cycle","timestamp":"2026-11-23T10:00:00Z"}"#)
                .contains("bad field")
        );
        // Deep nesting in an ignored field neither overflows the stack nor
        // hides a truncated file.
        let deep = format!("{{\"x\":{}", "[".repeat(100_000));
        assert!(
            reason(deep.as_bytes()).contains("the file ends early"),
            "{}",
            reason(deep.as_bytes())
        );
        let deep = format!(
            r#"{{"from":"mayor","action":"cycle","timestamp":"2026-11-23T10:00:00Z","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse(deep.as_bytes(), now(), Duration::from_secs(60)).is_ok());
    }

    fn age_reason(age: chrono::Duration, max_age: Duration) -> Option<String> {
        let sent = now() - age;
        let bytes = format!(
            r#"{{"from":"mayor","action":"cycle","timestamp":"{}"}}"#,
            sent.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        );
        parse(bytes.as_bytes(), now(), max_age)
            .err()
            .map(|e| e.0 .0)
    }

    #[test]
    fn stale_wording_shows_durations_that_make_the_comparison_true() {
        let min = |m| chrono::Duration::minutes(m);
        let ms = chrono::Duration::milliseconds;
        assert_eq!(
            age_reason(min(100), Duration::from_secs(90 * 60)).as_deref(),
            Some("request is stale: 1h40m old, limit 1h30m")
        );
        assert_eq!(
            age_reason(ms(10_900), Duration::from_secs(10)).as_deref(),
            Some("request is stale: 10.9s old, limit 10s")
        );
        assert_eq!(
            age_reason(ms(10_001), Duration::from_secs(10)).as_deref(),
            Some("request is stale: 10.001s old, limit 10s")
        );
        // At the limit exactly: not stale.
        assert_eq!(age_reason(ms(10_000), Duration::from_secs(10)), None);
        assert_eq!(
            age_reason(
                chrono::Duration::hours(60_527) + min(36),
                Duration::from_secs(6 * 3600)
            )
            .as_deref(),
            Some("request is stale: 6y330d old, limit 6h")
        );
        assert_eq!(
            age_reason(chrono::Duration::seconds(-601), Duration::from_secs(60)).as_deref(),
            Some(
                "timestamp is 10m1s in the future (more than 10m of clock skew); check the sender's clock"
            )
        );
        assert_eq!(
            age_reason(chrono::Duration::seconds(-600), Duration::from_secs(60)),
            None
        );
    }

    #[test]
    fn bom_is_accepted() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(
            br#"{"from":"mayor","action":"shutdown","timestamp":"2026-11-23T10:00:00Z"}"#,
        );
        assert!(parse(&bytes, now(), Duration::from_secs(60)).is_ok());
    }
}
