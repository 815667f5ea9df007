//! Config text to a [`Config`]: one JSON object, its keys as written
//! laid over the defaults of [`KEYS`], each mistake named by its key in
//! an operator's words.

use serde::Deserialize;
use serde_json::Value;

use super::values::negative;
use super::{Config, Problem, KEYS};

/// The keys and values of a JSON object in the order they are written,
/// and the first key written twice, if any (which would be ambiguous).
struct Written {
    pairs: Vec<(String, Value)>,
    twice: Option<String>,
}

impl<'de> Deserialize<'de> for Written {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Written;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of keys and values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Written, A::Error> {
                let mut written = Written {
                    pairs: Vec::new(),
                    twice: None,
                };
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if written.twice.is_none() && written.pairs.iter().any(|(k, _)| *k == key) {
                        written.twice = Some(key.clone());
                    }
                    written.pairs.push((key, value));
                }
                Ok(written)
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl Config {
    /// Parses config text; the error names the offending key.
    pub fn parse(bytes: &[u8]) -> Result<Config, (String, String)> {
        Self::parse_text(bytes).map_err(|p| (p.key.unwrap_or_default(), p.message))
    }

    /// Parses config text: one JSON object, known keys, values in bounds.
    pub fn parse_text(bytes: &[u8]) -> Result<Config, Problem> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        top_level_problem(bytes).map_or(Ok(()), Err)?;
        let written: Written = serde_json::from_slice(bytes).map_err(|e| {
            Problem::whole(format!(
                "invalid JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            ))
        })?;
        if let Some(key) = written.twice {
            return Err(Problem::key(&key, "is written twice; keep one"));
        }
        let config = Self::from_written(written.pairs)?;
        config.check()?;
        Ok(config)
    }

    /// The config of the keys and values `written`, every other key at its
    /// default; types are checked, bounds are not.
    pub(super) fn from_written(written: Vec<(String, Value)>) -> Result<Config, Problem> {
        let defaults: Vec<(String, Value)> = KEYS
            .iter()
            .filter(|key| !written.iter().any(|(k, _)| k == key.name))
            .map(|key| {
                let value = serde_json::from_str(key.default)
                    .unwrap_or_else(|e| panic!("the default of {} is not JSON: {e}", key.name));
                (key.name.to_string(), value)
            })
            .collect();
        let all = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(
            written.into_iter().chain(defaults),
        );
        serde_path_to_error::deserialize(all).map_err(|e| {
            let key = e.path().to_string();
            // An unknown key is reported by serde at the parent path: name it.
            let msg = e.into_inner().to_string();
            let key = match msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
            {
                Some(unknown) => unknown.to_string(),
                None => key,
            };
            Problem::key(&key, plain_words(&strip_position(&msg)))
        })
    }
}

/// Why `bytes` is not one JSON object, when that can be told before
/// parsing: serde would read the struct from an array positionally
/// (`["2s", "1h"]` as heartbeat_interval and max_request_age).
fn top_level_problem(bytes: &[u8]) -> Option<Problem> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Some(Problem::whole(
            "the file is empty; write {} for all defaults, or remove it",
        )),
        Some(b'{') => None,
        Some(b'[') => Some(Problem::whole(
            "the top level is an array; it must be a JSON object of keys and values",
        )),
        Some(_) if serde_json::from_slice::<Value>(bytes).is_ok() => Some(Problem::whole(
            "the top level is not a JSON object; it must be an object of keys and values",
        )),
        Some(_) => None,
    }
}

/// serde_json appends " at line L column C"; for config keys the key is the
/// useful locator.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde's words for a wrong number (`invalid value: integer \`-1\`,
/// expected u32`) in an operator's words.
fn plain_words(msg: &str) -> String {
    let found = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|r| r.split('`').next())
            .map(str::to_string)
    };
    let unsigned = msg.ends_with("expected u32")
        || msg.ends_with("expected u64")
        || msg.ends_with("expected usize");
    if unsigned {
        if let Some(n) = found("invalid value: integer `-") {
            return negative(&format!("-{n}"));
        }
        if let Some(n) = found("invalid type: floating point `") {
            return format!("must be a whole number (found {n})");
        }
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let (key, msg) = Config::parse(br#"{"heartbeat_intervall": "1s"}"#).unwrap_err();
        assert_eq!(key, "heartbeat_intervall");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn bad_duration_is_named() {
        let (key, msg) = Config::parse(br#"{"prime_delay": "soon"}"#).unwrap_err();
        assert_eq!(key, "prime_delay");
        assert!(msg.contains("not a duration"), "{msg}");
    }

    fn problem(text: &str) -> Problem {
        Config::parse_text(text.as_bytes()).expect_err(text)
    }

    #[test]
    fn a_top_level_array_is_refused_not_read_positionally() {
        let p = problem(r#"["2s", "1h"]"#);
        assert_eq!(p.key, None);
        assert!(p.message.contains("array"), "{p:?}");
        for text in ["42", "\"60s\"", "null", "", "  \n"] {
            assert_eq!(problem(text).key, None, "{text:?}");
        }
    }

    #[test]
    fn json_syntax_errors_give_line_and_column() {
        let p = problem("{\n  \"prime_delay\": \"2s\"\n  \"kill_grace\": \"1s\"\n}");
        assert_eq!(p.key, None);
        assert!(
            p.message.starts_with("invalid JSON at line 3 column 3"),
            "{p:?}"
        );
    }

    #[test]
    fn negative_numbers_get_a_plain_message() {
        for (text, key) in [
            (r#"{"heartbeat_interval": -5}"#, "heartbeat_interval"),
            (r#"{"prime_delay": -0.5}"#, "prime_delay"),
            (r#"{"kill_grace": "-2s"}"#, "kill_grace"),
            (r#"{"max_restarts": -1}"#, "max_restarts"),
            (r#"{"log_keep": -3}"#, "log_keep"),
        ] {
            let p = problem(text);
            assert_eq!(p.key.as_deref(), Some(key), "{text}");
            assert!(
                p.message.starts_with("must not be negative (found -"),
                "{text}: {p:?}"
            );
        }
        let p = problem(r#"{"max_restarts": 1.5}"#);
        assert_eq!(p.message, "must be a whole number (found 1.5)");
    }

    #[test]
    fn a_key_written_twice_is_refused() {
        let p = problem(r#"{"prime_delay": "2s", "kill_grace": "1s", "prime_delay": "3s"}"#);
        assert_eq!(p.key.as_deref(), Some("prime_delay"));
        assert!(p.message.contains("twice"), "{p:?}");
    }

    #[test]
    fn looking_at_agents_is_refused_what_it_cannot_do() {
        let many: Vec<String> = (0..=super::super::MAX_PROMPT_PATTERNS)
            .map(|i| format!("p{i}"))
            .collect();
        let many = serde_json::json!({ "human_prompt_patterns": many }).to_string();
        let long = serde_json::json!({ "human_prompt_patterns": ["x".repeat(201)] }).to_string();
        for (text, key, words) in [
            (
                r#"{"poke_texts": {"nobody": "x"}}"#,
                "poke_texts.nobody",
                "not an agent",
            ),
            (
                r#"{"poke_texts": {"gt-mayor:0": "x"}}"#,
                "poke_texts.gt-mayor:0",
                "not an agent",
            ),
            (
                r#"{"human_prompt_patterns": ["ok", "   "]}"#,
                "human_prompt_patterns[1]",
                "every line",
            ),
            (
                r#"{"human_prompt_patterns": [""]}"#,
                "human_prompt_patterns[0]",
                "every line",
            ),
            (many.as_str(), "human_prompt_patterns", "at most 64"),
            (
                long.as_str(),
                "human_prompt_patterns[0]",
                "at most 200 characters",
            ),
            (
                r#"{"stall_action": "restart", "look_at_agents": false}"#,
                "stall_action",
                "needs look_at_agents",
            ),
            (
                r#"{"stall_action": "reboot"}"#,
                "stall_action",
                "unknown variant",
            ),
            (r#"{"stall_pokes": 0}"#, "stall_pokes", "at least 1"),
        ] {
            let p = problem(text);
            assert_eq!(p.key.as_deref(), Some(key), "{text}: {p:?}");
            assert!(p.message.contains(words), "{text}: {p:?}");
        }
    }

    #[test]
    fn each_agent_is_poked_with_its_own_text_else_its_roles_else_as_before() {
        use crate::request::Agent;
        let c = Config::parse(
            br#"{"poke_texts": {"deacon": "patrol", "refinery": "merge", "gastown/refinery": "",
                 "witness": "workers!", "other/witness": "mine"}, "mayor_poke_text": ""}"#,
        )
        .unwrap();
        let text = |name: &str| c.poke_text_for(&Agent::parse(name).unwrap());
        assert_eq!(text("mayor"), None, "an empty text pokes nobody");
        assert_eq!(text("deacon"), Some("patrol"));
        assert_eq!(text("x/refinery"), Some("merge"));
        assert_eq!(text("gastown/refinery"), None);
        assert_eq!(text("x/witness"), Some("workers!"));
        assert_eq!(text("other/witness"), Some("mine"));
        let d = Config::default();
        let text = |name: &str| d.poke_text_for(&Agent::parse(name).unwrap());
        assert_eq!(text("mayor"), Some("HEARTBEAT: check your rigs"));
        assert_eq!(text("x/witness"), Some("HEARTBEAT: check your workers"));
        assert_eq!((text("deacon"), text("x/refinery")), (None, None));
    }

    #[test]
    fn the_first_mistake_as_written_is_the_one_named() {
        let p = problem(r#"{"tmux_timeout": "soon", "heartbeat_interval": "later"}"#);
        assert_eq!(p.key.as_deref(), Some("tmux_timeout"));
    }
}
