//! `daemon/config.json`: operator overrides, validated strictly at start-up
//! and again on every reload (SIGHUP).
//!
//! A typo in a key or a value must stop the daemon before it touches any
//! agent, with a message naming the key, so unknown keys are refused, and
//! values outside sane bounds too (a 1ms heartbeat is a poke storm, not a
//! setting). Every key's default, bounds and reload behaviour are in one
//! table, [`keys::KEYS`]; the reference made from it is
//! docs/configuration.md and `gt man` (CONFIGURATION). Here: reading the
//! file, the bounds and rules, what a reload keeps; in `parse` text
//! becomes a [`Config`]; in `values` the types beyond numbers and text.

pub mod keys;
mod parse;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::fs::{read_bounded, Links, NotRead};
use keys::{Reload, KEYS};
use values::duration;
pub use values::{
    prompt_pattern_problem, CommandLine, ListenAddr, StallAction, WatchMode, MAX_PROMPT_PATTERNS,
};

/// The most of config.json that is ever read: it is a few hundred bytes,
/// and a runaway or hostile file must not grow the daemon.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot read {path}: {reason}\nhint: config.json must be a regular file (or a symbolic link to one) of at most 1 MiB"
    )]
    Refused { path: PathBuf, reason: String },
    #[error(
        "bad config {path}: key `{key}`: {message}\nhint: every key, its default and bounds: `gt man` (CONFIGURATION)"
    )]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "bad config {path}: {message}\nhint: config.json is one JSON object, such as {{\"heartbeat_interval\": \"60s\"}}"
    )]
    Malformed { path: PathBuf, message: String },
}

/// What is wrong with config text: a key and what is wrong with its value,
/// or (`key: None`) the text as a whole (not JSON, not an object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: Option<String>,
    pub message: String,
}

impl Problem {
    fn key(key: &str, message: impl Into<String>) -> Self {
        Problem {
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        Problem {
            key: None,
            message: message.into(),
        }
    }
}

/// Every key; its type, default, bounds and meaning are its row in
/// [`keys::KEYS`] (a unit test holds the two to each other).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    pub mayor_poke_text: String,
    pub witness_poke_text: String,
    /// Keyed by an agent's name (`deacon`, `gastown/refinery`) or a role
    /// (`witness`, `refinery`): the text to poke it with.
    pub poke_texts: BTreeMap<String, String>,
    #[serde(with = "duration")]
    pub max_request_age: Duration,
    #[serde(with = "duration")]
    pub rescan_interval: Duration,
    #[serde(with = "duration")]
    pub prime_delay: Duration,
    #[serde(with = "duration")]
    pub kill_grace: Duration,
    pub end_leftovers: bool,
    #[serde(with = "duration")]
    pub restart_window: Duration,
    pub max_restarts: u32,
    pub agent_command: CommandLine,
    /// Keyed by role: `mayor`, `deacon`, `witness`, `refinery`.
    pub agent_commands: BTreeMap<String, CommandLine>,
    pub prime_text: String,
    pub tmux_socket: Option<String>,
    pub metrics_listen: Option<ListenAddr>,
    pub metrics_allow_remote: bool,
    pub notify_command: Option<CommandLine>,
    #[serde(with = "duration")]
    pub notify_timeout: Duration,
    #[serde(with = "duration")]
    pub notify_window: Duration,
    pub watch_mode: WatchMode,
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    pub dry_run: bool,
    pub log_max_bytes: u64,
    pub log_keep: usize,
    #[serde(with = "duration")]
    pub keep_processed: Duration,
    #[serde(with = "duration")]
    pub keep_failed: Duration,
    pub max_parallel: usize,
    #[serde(with = "duration")]
    pub tmux_timeout: Duration,
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Agents as in a request's `from`, or `"auto"`.
    pub supervise: Vec<String>,
    #[serde(with = "duration")]
    pub supervise_interval: Duration,
    #[serde(with = "duration")]
    pub supervise_backoff: Duration,
    #[serde(with = "duration")]
    pub supervise_backoff_max: Duration,
    #[serde(with = "duration")]
    pub quarantine: Duration,
    #[serde(with = "duration")]
    pub stable_after: Duration,
    pub not_a_crash: Vec<String>,
    pub mass_death: usize,
    #[serde(with = "duration")]
    pub mass_death_window: Duration,
    #[serde(with = "duration")]
    pub mass_death_pause: Duration,
    pub look_at_agents: bool,
    #[serde(with = "duration")]
    pub poke_confirm: Duration,
    #[serde(with = "duration")]
    pub answer_within: Duration,
    #[serde(with = "duration")]
    pub stall_after: Duration,
    pub stall_pokes: u32,
    pub stall_action: StallAction,
    /// Text, matched as written (as `not_a_crash` is).
    pub human_prompt_patterns: Vec<String>,
}

/// Every default, from [`keys::KEYS`].
impl Default for Config {
    fn default() -> Self {
        Config::from_written(Vec::new()).expect(
            "the defaults in config::keys::KEYS make a valid config (a unit test holds them)",
        )
    }
}

/// The exit status of `gt daemon run` refusing its configuration
/// (config.json, `--log-level`, `RUST_LOG`): EX_CONFIG from sysexits.h.
/// The systemd unit lists it in `RestartPreventExitStatus=`, so a bad
/// config is not retried every few seconds forever.
pub const EXIT_CONFIG: u8 = 78;

/// Roles that may carry their own agent command.
pub const ROLES: [&str; 4] = ["mayor", "deacon", "witness", "refinery"];

/// A `poke_texts` key: an agent's name or a role.
fn poke_target(key: &str) -> bool {
    ROLES.contains(&key) || crate::request::Agent::parse(key).is_ok()
}

/// The configuration of a running daemon, replaced whole when it reloads
/// `config.json`. Readers take [`SharedConfig::get`] at the start of an
/// operation and use that one snapshot throughout it.
#[derive(Debug, Clone)]
pub(crate) struct SharedConfig(Arc<RwLock<Arc<Config>>>);

impl SharedConfig {
    pub(crate) fn new(config: Config) -> Self {
        SharedConfig(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// The configuration in force now.
    pub(crate) fn get(&self) -> Arc<Config> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn replace(&self, config: Config) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }
}

/// The keys whose values differ between two config texts (absent and
/// present count as different), in name order.
pub fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (old, new) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

impl Config {
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_source(path).map(|(config, _)| config)
    }

    /// [`Config::load`], and the file's JSON as written (an empty object
    /// when there is no file), to tell later which keys a reload changed.
    ///
    /// The file is read as request files are ([`read_bounded`]): a FIFO,
    /// a device or a directory is refused without being opened or read,
    /// so neither `start`, `check` nor a reload can hang on one, and at
    /// most [`MAX_CONFIG_BYTES`] are read. A symbolic link is followed
    /// (configuration managers link config files into place), to a
    /// regular file only.
    pub fn load_with_source(path: &Path) -> Result<(Config, Value), ConfigError> {
        let bytes = match read_bounded(path, MAX_CONFIG_BYTES, Links::Follow) {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(refused)) => {
                let reason = match refused {
                    NotRead::TooLarge { .. } => {
                        format!("{refused} (1 MiB); config.json is a few hundred bytes")
                    }
                    NotRead::NotRegular(_) => refused.to_string(),
                };
                return Err(ConfigError::Refused {
                    path: path.into(),
                    reason,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Config::default(), serde_json::json!({})))
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let config = Self::parse_text(&bytes).map_err(|p| match p.key {
            Some(key) => ConfigError::Invalid {
                path: path.into(),
                key,
                message: p.message,
            },
            None => ConfigError::Malformed {
                path: path.into(),
                message: p.message,
            },
        })?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let source = serde_json::from_slice(bytes).unwrap_or_else(|_| serde_json::json!({}));
        Ok((config, source))
    }

    /// The config as config.json would hold it: every key, in [`KEYS`]'s
    /// words, so the table's bounds and reload rules apply by name.
    fn to_json(&self) -> serde_json::Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            other => unreachable!("a config serializes to an object: {other:?}"),
        }
    }

    /// The bounds of [`KEYS`], then the rules no bound can say.
    fn check(&self) -> Result<(), Problem> {
        let values = self.to_json();
        for key in KEYS {
            if let Some(refusal) = values.get(key.name).and_then(|v| key.bounds.refusal(v)) {
                return Err(Problem::key(key.name, refusal));
            }
        }
        self.check_rules()
    }

    /// The rules written as [`keys::Bounds::Rule`] in [`KEYS`].
    fn check_rules(&self) -> Result<(), Problem> {
        let bad = |key: &str, msg: &str| Err(Problem::key(key, msg));
        for (i, agent) in self.supervise.iter().enumerate() {
            if agent != "auto" {
                if let Err(e) = crate::request::Agent::parse(agent) {
                    return bad(&format!("supervise[{i}]"), &e.0);
                }
            }
        }
        if let Some(problem) = self.metrics_listen_problem() {
            return bad("metrics_listen", &problem);
        }
        if let Some(role) = self
            .agent_commands
            .keys()
            .find(|r| !ROLES.contains(&r.as_str()))
        {
            return bad(
                &format!("agent_commands.{role}"),
                "unknown role; roles are mayor, deacon, witness, refinery",
            );
        }
        if let Some(key) = self.poke_texts.keys().find(|k| !poke_target(k)) {
            return bad(
                &format!("poke_texts.{key}"),
                "not an agent (mayor, deacon, <rig>/witness, <rig>/refinery) nor a role (witness, refinery)",
            );
        }
        if self.human_prompt_patterns.len() > MAX_PROMPT_PATTERNS {
            return bad(
                "human_prompt_patterns",
                &format!("at most {MAX_PROMPT_PATTERNS} patterns"),
            );
        }
        for (i, pattern) in self.human_prompt_patterns.iter().enumerate() {
            if let Some(problem) = prompt_pattern_problem(pattern) {
                return bad(&format!("human_prompt_patterns[{i}]"), &problem);
            }
        }
        if self.stall_action == StallAction::Restart && !self.look_at_agents {
            return bad(
                "stall_action",
                "\"restart\" needs look_at_agents: true (a stall is seen by looking)",
            );
        }
        if let Some(socket) = &self.tmux_socket {
            if socket.is_empty() || socket.contains('/') {
                return bad(
                    "tmux_socket",
                    "must be a plain socket name (as for `tmux -L NAME`)",
                );
            }
        }
        Ok(())
    }

    /// Loopback only unless `metrics_allow_remote`: the endpoints answer
    /// anyone who can connect.
    fn metrics_listen_problem(&self) -> Option<String> {
        match self.metrics_listen.as_ref()? {
            ListenAddr::Tcp(addr) if !addr.ip().is_loopback() && !self.metrics_allow_remote => Some(format!(
                "{addr} is not a loopback address and the metrics endpoints have no authentication; \
                 use 127.0.0.1 or [::1] (behind a proxy), or set metrics_allow_remote: true"
            )),
            // sun_path holds 108 bytes with its terminating NUL.
            ListenAddr::Unix(path) if path.as_os_str().len() > 107 => Some(format!(
                "unix socket path is {} bytes long, at most 107",
                path.as_os_str().len()
            )),
            _ => None,
        }
    }

    /// This config with the running daemon's values of the keys only a
    /// start reads ([`Reload::AtStart`] in [`KEYS`]): what a reload puts
    /// in force.
    pub(crate) fn keeping_start_values(self, running: &Config) -> Result<Config, Problem> {
        let (mut new, running) = (self.to_json(), running.to_json());
        for key in KEYS.iter().filter(|k| k.reload == Reload::AtStart) {
            if let Some(value) = running.get(key.name) {
                new.insert(key.name.to_string(), value.clone());
            }
        }
        Config::from_written(new.into_iter().collect())
    }

    /// The text the heartbeat pokes `agent` with, if it pokes it: the
    /// agent's own entry in `poke_texts`, else its role's, else (the keys
    /// that came first) `mayor_poke_text` for the Mayor and
    /// `witness_poke_text` for every Witness. An empty text pokes nobody.
    pub fn poke_text_for(&self, agent: &crate::request::Agent) -> Option<&str> {
        let text = self
            .poke_texts
            .get(&agent.name())
            .or_else(|| self.poke_texts.get(agent.role()))
            .map(String::as_str)
            .or(match agent {
                crate::request::Agent::Mayor => Some(self.mayor_poke_text.as_str()),
                crate::request::Agent::Witness { .. } => Some(self.witness_poke_text.as_str()),
                _ => None,
            })?;
        (!text.is_empty()).then_some(text)
    }

    /// The agent command for a role, falling back to `agent_command`.
    pub fn agent_command_for(&self, role: &str) -> &CommandLine {
        self.agent_commands.get(role).unwrap_or(&self.agent_command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty_object() {
        let c = Config::parse(b"{}").unwrap();
        assert_eq!(c.heartbeat_interval, Duration::from_secs(60));
        assert_eq!(c.agent_command.0[0], "claude");
    }

    #[test]
    fn metrics_listen_is_loopback_unless_allowed() {
        let c = Config::parse(br#"{"metrics_listen": "127.0.0.1:9464"}"#).unwrap();
        assert_eq!(
            c.metrics_listen,
            Some(ListenAddr::Tcp(([127, 0, 0, 1], 9464).into()))
        );
        let c = Config::parse(br#"{"metrics_listen": "/run/gt/metrics.sock"}"#).unwrap();
        assert_eq!(
            c.metrics_listen,
            Some(ListenAddr::Unix("/run/gt/metrics.sock".into()))
        );
        let (key, msg) = Config::parse(br#"{"metrics_listen": "0.0.0.0:9464"}"#).unwrap_err();
        assert_eq!(key, "metrics_listen");
        assert!(msg.contains("metrics_allow_remote"), "{msg}");
        Config::parse(br#"{"metrics_listen": "0.0.0.0:9464", "metrics_allow_remote": true}"#)
            .unwrap();
        let (key, msg) = Config::parse(br#"{"metrics_listen": "localhost"}"#).unwrap_err();
        assert_eq!(key, "metrics_listen");
        assert!(msg.contains("IP:PORT"), "{msg}");
    }

    #[test]
    fn agent_command_string_and_array() {
        let c = Config::parse(
            br#"{"agent_command": "sleep 600", "agent_commands": {"mayor": ["sleep", "5"]}}"#,
        )
        .unwrap();
        assert_eq!(c.agent_command.0, ["sleep", "600"]);
        assert_eq!(c.agent_command_for("mayor").0, ["sleep", "5"]);
        assert_eq!(c.agent_command_for("witness").0, ["sleep", "600"]);
    }

    #[test]
    fn values_out_of_bounds_are_refused() {
        for (text, key, words) in [
            (
                r#"{"heartbeat_interval": "1ms"}"#,
                "heartbeat_interval",
                "at least 1s, found 1ms",
            ),
            (
                r#"{"heartbeat_interval": 0}"#,
                "heartbeat_interval",
                "at least 1s, found 0s",
            ),
            (
                r#"{"prime_delay": "1h"}"#,
                "prime_delay",
                "at most 10m, found 1h",
            ),
            (
                r#"{"poll_interval": "1ms"}"#,
                "poll_interval",
                "at least 100ms",
            ),
            (r#"{"tmux_timeout": "5m"}"#, "tmux_timeout", "at most 1m"),
            (r#"{"keep_failed": "1s"}"#, "keep_failed", "at least 1m"),
        ] {
            let p = Config::parse_text(text.as_bytes()).expect_err(text);
            assert_eq!(p.key.as_deref(), Some(key), "{text}");
            assert!(p.message.contains(words), "{text}: {p:?}");
        }
        Config::parse_text(br#"{"heartbeat_interval": "1s", "prime_delay": "10m"}"#).unwrap();
    }

    #[test]
    fn changed_keys_compare_what_was_written() {
        let old = serde_json::json!({"prime_delay": "2s", "tmux_socket": "a"});
        let new = serde_json::json!({"prime_delay": "3s", "tmux_socket": "a", "dry_run": true});
        assert_eq!(changed_keys(&old, &new), ["dry_run", "prime_delay"]);
        assert!(changed_keys(&new, &new).is_empty());
    }

    #[test]
    fn a_reload_keeps_what_only_a_start_can_change() {
        let running = Config::default();
        let new = Config::parse_text(
            br#"{"watch_mode": "poll", "max_parallel": 2, "dry_run": true, "prime_delay": "5s"}"#,
        )
        .unwrap();
        let new = new.keeping_start_values(&running).unwrap();
        assert_eq!(new.watch_mode, running.watch_mode);
        assert_eq!(new.max_parallel, running.max_parallel);
        assert!(!new.dry_run);
        assert_eq!(new.prime_delay, Duration::from_secs(5));
    }

    /// A valid value of `key` other than its default.
    fn other_value(key: &keys::Key) -> Value {
        let default: Value = serde_json::from_str(key.default).unwrap();
        let candidates: Vec<Value> = match key.kind {
            keys::Kind::Duration => vec!["1h".into(), "5s".into()],
            keys::Kind::Integer => vec![2.into(), 3.into(), 4096.into()],
            keys::Kind::Boolean => vec![true.into(), false.into()],
            keys::Kind::Text => vec!["other".into()],
            keys::Kind::Texts => vec![serde_json::json!(["mayor"])],
            keys::Kind::Command => vec!["sleep 1".into()],
            keys::Kind::Optional => vec!["127.0.0.1:9464".into()],
            keys::Kind::Roles => vec![serde_json::json!({"mayor": "sleep 1"})],
            keys::Kind::TextMap => vec![serde_json::json!({"deacon": "poke"})],
            keys::Kind::Choice(words) => words.iter().map(|w| (*w).into()).collect(),
        };
        candidates
            .into_iter()
            .find(|v| {
                *v != default
                    && Config::parse_text(format!(r#"{{"{}": {v}}}"#, key.name).as_bytes()).is_ok()
            })
            .unwrap_or_else(|| panic!("no other valid value for {}", key.name))
    }

    #[test]
    fn the_table_of_keys_is_the_struct() {
        let defaults = Config::default();
        let json = defaults.to_json();
        let mut fields: Vec<&str> = json.keys().map(String::as_str).collect();
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        fields.sort();
        names.sort();
        assert_eq!(
            fields, names,
            "every field of Config has one row in keys::KEYS"
        );
        defaults
            .check()
            .expect("the defaults are within their bounds");
        for key in KEYS {
            // The default as the table writes it reads back as the default.
            let text = format!(r#"{{"{}": {}}}"#, key.name, key.default);
            assert_eq!(
                Config::parse_text(text.as_bytes()),
                Ok(defaults.clone()),
                "{}",
                key.name
            );
            // The type column says what the field takes.
            let value = &json[key.name];
            let fits = match key.kind {
                keys::Kind::Duration => duration::deserialize(value).is_ok(),
                keys::Kind::Integer => value.is_u64(),
                keys::Kind::Boolean => value.is_boolean(),
                keys::Kind::Text => value.is_string(),
                keys::Kind::Texts => value
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string)),
                keys::Kind::Command => value.is_array() || value.is_null(),
                keys::Kind::Optional => value.is_string() || value.is_null(),
                keys::Kind::Roles => value.is_object(),
                keys::Kind::TextMap => value
                    .as_object()
                    .is_some_and(|m| m.values().all(Value::is_string)),
                keys::Kind::Choice(words) => words.iter().any(|w| value == *w),
            };
            assert!(fits, "{}: {value} is not a {:?}", key.name, key.kind);
        }
    }

    #[test]
    fn a_reload_keeps_exactly_the_keys_marked_at_start() {
        let running = Config::default();
        for key in KEYS {
            let value = other_value(key);
            let text = format!(r#"{{"{}": {value}}}"#, key.name);
            let new = Config::parse_text(text.as_bytes()).unwrap();
            assert_ne!(new, running, "{text}");
            let kept = new.clone().keeping_start_values(&running).unwrap();
            match key.reload {
                Reload::AtStart => assert_eq!(kept, running, "{} is read at start only", key.name),
                Reload::Live => assert_eq!(kept, new, "{} changes on a reload", key.name),
            }
        }
    }

    #[test]
    fn every_bound_in_the_table_is_enforced_at_its_edges() {
        use keys::Bounds;
        let parse = |key: &str, value: Value| {
            Config::parse_text(format!(r#"{{"{key}": {value}}}"#).as_bytes())
        };
        let nanos = |d: Duration| Value::from(format!("{}ns", d.as_nanos()));
        for key in KEYS {
            let (inside, outside): (Vec<Value>, Vec<Value>) = match key.bounds {
                Bounds::Duration { min, max, .. } => (
                    [Some(min), (max != Duration::MAX).then_some(max)]
                        .into_iter()
                        .flatten()
                        .map(nanos)
                        .collect(),
                    [
                        min.checked_sub(Duration::from_nanos(1)),
                        max.checked_add(Duration::from_nanos(1)),
                    ]
                    .into_iter()
                    .flatten()
                    .filter(|d| *d < Duration::from_secs(u64::MAX / 2_000_000_000))
                    .map(nanos)
                    .collect(),
                ),
                Bounds::Integer { min, max } => (
                    vec![min.into(), max.min(u64::from(u32::MAX)).into()],
                    [min.checked_sub(1), (max != u64::MAX).then(|| max + 1)]
                        .into_iter()
                        .flatten()
                        .map(Value::from)
                        .collect(),
                ),
                Bounds::None | Bounds::Rule(_) => continue,
            };
            for value in inside {
                assert!(
                    parse(key.name, value.clone()).is_ok(),
                    "{} {value}",
                    key.name
                );
            }
            for value in outside {
                let p = parse(key.name, value.clone()).expect_err(key.name);
                assert_eq!(p.key.as_deref(), Some(key.name), "{value}");
                assert!(p.message.starts_with("must be at "), "{p:?}");
            }
        }
    }

    #[test]
    fn config_json_is_read_as_request_files_are_but_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        std::fs::write(&real, br#"{"prime_delay": "5s"}"#).unwrap();
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            Config::load(&link).unwrap().prime_delay,
            Duration::from_secs(5)
        );
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = Config::load(&link).unwrap_err().to_string();
        assert!(
            e.contains("not a regular file: a device (never opened)"),
            "{e}"
        );
        assert!(e.contains("\nhint: "), "{e}");
        std::fs::remove_file(&link).unwrap();
        let mut huge = vec![b' '; MAX_CONFIG_BYTES as usize + 1];
        huge[..2].copy_from_slice(b"{}");
        std::fs::write(&link, huge).unwrap();
        let e = Config::load(&link).unwrap_err().to_string();
        assert!(
            e.contains("file is too large") && e.contains("(1 MiB)"),
            "{e}"
        );
        std::fs::remove_file(&link).unwrap();
        assert_eq!(Config::load(&link).unwrap(), Config::default());
    }
}
