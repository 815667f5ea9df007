//! `schema/lifecycle-request.schema.json` checked against the fixture
//! catalogue and against the parser it documents.
//!
//! A JSON Schema judges a parsed JSON value, so some refusals are beyond it;
//! those cases are listed in [`BEYOND_SCHEMA`] (which must validate, so the
//! list stays honest) or skipped because the bytes are not a JSON value:
//!
//! * not JSON at all, which only the parser can report: empty or
//!   whitespace-only files, a lone BOM, invalid or truncated JSON, trailing
//!   garbage, raw NUL bytes, text that is not UTF-8 (Latin-1, UTF-16);
//! * file-level refusals: over 64 KiB (`too-large`, `brackets-1mb`), not a
//!   regular file (symlink, FIFO, socket, directory; these are not in the
//!   catalogue, `tests/fixtures.rs` makes them);
//! * generated fixtures (`"generate"` in cases.json) are not read here: they
//!   are size cases, plus one unclosed nesting (not JSON);
//! * a valid request whose unknown field nests deeper than serde_json's
//!   recursion limit of 128 cannot become a `serde_json::Value`; the daemon
//!   skips such a field unread, and the schema would accept it
//!   (`additionalProperties`), but it is not validated here;
//! * a leading UTF-8 BOM is not JSON either: it is stripped before
//!   validating, as the daemon does.

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::catalogue::{case_bytes, cases, Case};

/// Invalid cases the schema cannot express: they are refused for reasons
/// outside the JSON value.
const BEYOND_SCHEMA: &[(&str, &str)] = &[
    // Age is relative to the daemon's clock and its max_request_age.
    (
        "invalid/stale-timestamp.json",
        "too old: depends on the clock",
    ),
    ("invalid/stale-7h.json", "too old: depends on the clock"),
    (
        "invalid/far-future-timestamp.json",
        "too far ahead: depends on the clock",
    ),
    // A JSON value cannot hold a key twice: parsers keep one of them.
    (
        "invalid/duplicate-keys.json",
        "duplicate keys vanish when the text is parsed",
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema() -> Value {
    let text = fs::read_to_string(root().join("schema/lifecycle-request.schema.json")).unwrap();
    serde_json::from_str(&text).expect("the schema is not JSON")
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema())
            .expect("the schema does not compile")
    })
}

/// The fixture as a JSON value, placeholders filled and a BOM stripped
/// (as the daemon does), or why it is not one.
fn load(case: &Case, now: DateTime<Utc>) -> Result<Value, serde_json::Error> {
    let bytes = case_bytes(case, now);
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    serde_json::from_slice(bytes)
}

fn errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn schema_is_valid_draft_2020_12() {
    let schema = schema();
    assert!(
        jsonschema::draft202012::meta::is_valid(&schema),
        "{:?}",
        jsonschema::draft202012::meta::validate(&schema)
    );
    assert_eq!(
        schema["$schema"],
        json!("https://json-schema.org/draft/2020-12/schema")
    );
}

#[test]
fn every_valid_fixture_validates() {
    let validator = validator();
    let now = Utc::now();
    let mut checked = 0;
    for case in cases()
        .iter()
        .filter(|c| c.outcome == "processed" && c.generate.is_none())
    {
        match load(case, now) {
            Ok(value) => {
                let errors = errors(validator, &value);
                assert!(
                    errors.is_empty(),
                    "{} fails the schema: {errors:?}",
                    case.file
                );
                checked += 1;
            }
            // See the module comment: too deep for serde_json::Value.
            Err(e) if e.to_string().contains("recursion limit exceeded") => {
                assert!(case.file.contains("deeply-nested"), "{}: {e}", case.file)
            }
            Err(e) => panic!("{} is not JSON: {e}", case.file),
        }
    }
    assert!(checked >= 10, "only {checked} checked");
}

#[test]
fn invalid_fixtures_fail_the_schema_unless_beyond_it() {
    let validator = validator();
    let now = Utc::now();
    let cases = cases();
    for (file, _) in BEYOND_SCHEMA {
        assert!(
            cases.iter().any(|c| c.file == *file),
            "{file} is not in cases.json"
        );
    }
    let (mut rejected, mut wrong) = (0, Vec::new());
    for case in cases
        .iter()
        .filter(|c| c.outcome == "failed" && c.generate.is_none())
    {
        let Ok(value) = load(case, now) else {
            continue; // not JSON: see the module comment
        };
        let errors = errors(validator, &value);
        let beyond = BEYOND_SCHEMA.iter().any(|(file, _)| *file == case.file);
        match (beyond, errors.is_empty()) {
            (false, true) => wrong.push(format!("{} passes the schema", case.file)),
            (true, false) => wrong.push(format!(
                "{} is listed as beyond the schema but fails it: {errors:?}",
                case.file
            )),
            (false, false) => rejected += 1,
            (true, true) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(rejected >= 40, "only {rejected} rejected by the schema");
}

/// Timestamps the parser and the schema's `date-time` format agree on.
#[test]
fn timestamp_format_agrees_with_the_parser() {
    let validator = validator();
    let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
    for (timestamp, ok) in [
        ("2026-11-23T10:00:00Z", true),
        ("2026-11-23T10:00:00z", true),
        ("2026-11-23t10:00:00Z", true),
        ("2026-11-23T09:30:00.123456Z", true),
        ("2026-11-23T11:00:00+01:00", true),
        ("2026-11-23T05:00:00-05:00", true),
        ("2026-11-23T10:00:00", false),
        ("2026-11-23", false),
        ("10:00:00Z", false),
        ("2026-11-23T25:00:00Z", false),
        ("2026-02-30T10:00:00Z", false),
        ("2026-11-23T10:00Z", false),
        ("2026-11-23T10:00:00+0100", false),
        ("yesterday", false),
        ("", false),
    ] {
        let request = json!({"from": "mayor", "action": "cycle", "timestamp": timestamp});
        let by_schema = validator.is_valid(&request);
        let by_parser = gt::request::parse(
            request.to_string().as_bytes(),
            now,
            Duration::from_secs(3600),
        )
        .is_ok();
        assert_eq!(
            (by_schema, by_parser),
            (ok, ok),
            "{timestamp:?}: (schema, parser)"
        );
    }
}

fn request_with_from(from: &str) -> Value {
    json!({"from": from, "action": "shutdown", "timestamp": "2026-11-23T10:00:00Z"})
}

/// Strings shaped like identities, near-misses included.
fn from_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[A-Za-z0-9_-]{0,6}",
        Just("mayor".to_string()),
        Just("deacon".to_string()),
        Just("witness".to_string()),
        Just("refinery".to_string()),
        Just("-witness".to_string()),
        "[./: \\\\$`;\n\t\u{0}\u{7}\u{e4}\u{ff0f}*]",
    ];
    prop::collection::vec(prop_oneof![piece, Just("/".to_string())], 0..5)
        .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// The schema's `from` pattern accepts exactly what the daemon maps.
    #[test]
    fn from_pattern_agrees_with_agent_parse(from in prop_oneof![from_like(), any::<String>()]) {
        let validator = validator();
        let by_schema = validator.is_valid(&request_with_from(&from));
        let by_parser = gt::request::Agent::parse(&from).is_ok();
        prop_assert_eq!(by_schema, by_parser, "from {:?}", from);
    }

    /// The schema's `action` enum is exactly the parser's actions.
    #[test]
    fn action_enum_agrees_with_the_parser(action in prop_oneof![
        "(cycle|restart|shutdown|CYCLE|Restart|reboot|)",
        "[a-zA-Z ]{0,9}",
    ]) {
        let validator = validator();
        let request = json!({"from": "mayor", "action": action, "timestamp": "2026-11-23T10:00:00Z"});
        prop_assert_eq!(validator.is_valid(&request), gt::request::Action::parse(&action).is_ok(), "action {:?}", action);
    }
}
