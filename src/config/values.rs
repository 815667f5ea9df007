//! The value types of config.json beyond plain numbers, text and lists:
//! durations, command lines, the metrics address and the watch mode, each
//! read with a message an operator understands and written back (for a
//! reload, which keeps some running values) so it reads the same.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::parse_duration;

/// How the inbox is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    Notify,
    Poll,
}

/// What supervision does with an agent found stalled (docs/agents.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StallAction {
    /// Say so (state, status, metrics, notify_command), nothing more.
    Report,
    /// Capture its pane and restart it, as a dead agent is (supervised
    /// agents only).
    Restart,
}

/// The most `human_prompt_patterns` a config may hold, and the longest
/// one, in characters: matching stays cheap whatever is written.
pub const MAX_PROMPT_PATTERNS: usize = 64;
pub(super) const MAX_PROMPT_PATTERN_CHARS: usize = 200;

/// Why `pattern` cannot be one of `human_prompt_patterns`, if it cannot.
pub fn prompt_pattern_problem(pattern: &str) -> Option<String> {
    if pattern.trim().is_empty() {
        return Some("an empty pattern would match every line".into());
    }
    let chars = pattern.chars().count();
    (chars > MAX_PROMPT_PATTERN_CHARS)
        .then(|| format!("at most {MAX_PROMPT_PATTERN_CHARS} characters, found {chars}"))
}

/// A command line: a string split like a shell would (no shell runs it), or
/// an explicit argv array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLine(pub Vec<String>);

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Line(String),
            Argv(Vec<String>),
        }
        let argv = match Raw::deserialize(d)? {
            Raw::Line(line) => shlex::split(&line).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "cannot split {line:?} into words (unbalanced quotes?)"
                ))
            })?,
            Raw::Argv(argv) => argv,
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(serde::de::Error::custom("command is empty"));
        }
        Ok(CommandLine(argv))
    }
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            &shlex::try_join(self.0.iter().map(String::as_str))
                .unwrap_or_else(|_| self.0.join(" ")),
        )
    }
}

/// Where the metrics endpoint listens: `IP:PORT`, or an absolute path for
/// a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.starts_with('/') {
            return Ok(ListenAddr::Unix(text.into()));
        }
        text.parse().map(ListenAddr::Tcp).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is neither IP:PORT (such as 127.0.0.1:9464) nor an absolute unix socket path"
            ))
        })
    }
}

/// As written in config.json.
impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ListenAddr::Tcp(addr) => s.collect_str(addr),
            ListenAddr::Unix(path) => s.collect_str(&path.display()),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `#[serde(with = "duration")]`: a duration as text such as `"60s"`, or a
/// number of seconds.
pub(crate) mod duration {
    use super::*;

    /// A negative duration is refused in plain words (serde's own message
    /// for it names an untagged enum, which means nothing to an operator).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"500ms\", \"60s\", \"15m\" or \"6h\"")
            }
            fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(secs))
            }
            fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<Duration, E> {
                u64::try_from(secs)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(negative(&secs.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, secs: f64) -> Result<Duration, E> {
                if secs < 0.0 {
                    return Err(E::custom(negative(&secs.to_string())));
                }
                Duration::try_from_secs_f64(secs)
                    .map_err(|_| E::custom(format!("{secs} seconds is not a usable duration")))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
                if text.trim_start().starts_with('-') {
                    return Err(E::custom(negative(text.trim())));
                }
                parse_duration(text).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }

    /// Whole seconds as a number, anything finer as `"Ss Nns"`: both read
    /// back to exactly the same duration.
    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        match d.subsec_nanos() {
            0 => s.serialize_u64(d.as_secs()),
            nanos => s.collect_str(&format_args!("{}s {nanos}ns", d.as_secs())),
        }
    }
}

pub(crate) fn negative(found: &str) -> String {
    format!("must not be negative (found {found})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_exactly() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_nanos(1_500_000_001),
            Duration::from_secs(7 * 24 * 3600),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            let json = duration::serialize(&d, serde_json::value::Serializer).unwrap();
            assert_eq!(duration::deserialize(json.clone()).unwrap(), d, "{json}");
        }
    }
}
