//! `daemon/config.json`: operator overrides, validated strictly at start-up.
//!
//! A typo in a key or a value must stop the daemon before it touches any
//! agent, with a message naming the key, so unknown keys are refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::duration::parse_duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "bad config {path}: key `{key}`: {message}\nhint: see the configuration keys in README.md"
    )]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// How the inbox is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    Notify,
    Poll,
}

/// A command line: a string split like a shell would (no shell runs it), or
/// an explicit argv array.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(deserialize_with = "duration")]
    pub heartbeat_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub max_request_age: Duration,
    #[serde(deserialize_with = "duration")]
    pub rescan_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub prime_delay: Duration,
    #[serde(deserialize_with = "duration")]
    pub kill_grace: Duration,
    #[serde(deserialize_with = "duration")]
    pub restart_window: Duration,
    pub max_restarts: u32,
    pub agent_command: CommandLine,
    /// Per-role overrides, keyed by `mayor`, `deacon`, `witness`, `refinery`.
    pub agent_commands: BTreeMap<String, CommandLine>,
    pub prime_text: String,
    pub tmux_socket: Option<String>,
    /// Serve `/metrics`, `/healthz` and `/readyz` here (README "Monitoring").
    pub metrics_listen: Option<ListenAddr>,
    /// Allow a `metrics_listen` address beyond this machine (it has no
    /// authentication).
    pub metrics_allow_remote: bool,
    /// Run on events a person must act on, the event as JSON on stdin.
    pub notify_command: Option<CommandLine>,
    #[serde(deserialize_with = "duration")]
    pub notify_timeout: Duration,
    /// The same event is sent at most once within this window.
    #[serde(deserialize_with = "duration")]
    pub notify_window: Duration,
    pub watch_mode: WatchMode,
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    pub dry_run: bool,
    pub log_max_bytes: u64,
    pub log_keep: usize,
    #[serde(deserialize_with = "duration")]
    pub keep_processed: Duration,
    #[serde(deserialize_with = "duration")]
    pub keep_failed: Duration,
    /// Requests for different agents executed at the same time, at most.
    pub max_parallel: usize,
    /// The longest any one tmux command may take.
    #[serde(deserialize_with = "duration")]
    pub tmux_timeout: Duration,
    /// How long a file created directly in the inbox may take to be
    /// written (its close-write event, or content that parses, ends it).
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
    /// Agents to keep alive (as in a request's `from`), or `"auto"` for
    /// every agent whose work directory exists; empty: no supervision.
    pub supervise: Vec<String>,
    /// How often supervised agents are checked.
    #[serde(deserialize_with = "duration")]
    pub supervise_interval: Duration,
    /// The wait before restarting an agent that died again, doubling with
    /// each death up to `supervise_backoff_max`.
    #[serde(deserialize_with = "duration")]
    pub supervise_backoff: Duration,
    #[serde(deserialize_with = "duration")]
    pub supervise_backoff_max: Duration,
    /// How long an agent that died `max_restarts` times within
    /// `restart_window` is left alone before it is tried again.
    #[serde(deserialize_with = "duration")]
    pub quarantine: Duration,
    /// A run this long counts as stable: its death starts the count afresh.
    #[serde(deserialize_with = "duration")]
    pub stable_after: Duration,
    /// Text in a dead pane that marks an exit as not a crash (a usage
    /// limit, say): it does not count toward quarantine.
    pub not_a_crash: Vec<String>,
    /// This many supervised agents dying within `mass_death_window` pause
    /// supervision (a tmux server crash, the machine out of memory).
    pub mass_death: usize,
    #[serde(deserialize_with = "duration")]
    pub mass_death_window: Duration,
    /// How long such a pause lasts unless `gt daemon supervise resume`.
    #[serde(deserialize_with = "duration")]
    pub mass_death_pause: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_interval: Duration::from_secs(60),
            max_request_age: Duration::from_secs(6 * 3600),
            rescan_interval: Duration::from_secs(30),
            prime_delay: Duration::from_secs(2),
            kill_grace: Duration::from_secs(2),
            restart_window: Duration::from_secs(15 * 60),
            max_restarts: 5,
            agent_command: CommandLine(vec![
                "claude".into(),
                "--dangerously-skip-permissions".into(),
            ]),
            agent_commands: BTreeMap::new(),
            prime_text: "gt prime".into(),
            tmux_socket: None,
            metrics_listen: None,
            metrics_allow_remote: false,
            notify_command: None,
            notify_timeout: Duration::from_secs(10),
            notify_window: Duration::from_secs(3600),
            watch_mode: WatchMode::Notify,
            poll_interval: Duration::from_secs(1),
            dry_run: false,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 5,
            keep_processed: Duration::from_secs(7 * 24 * 3600),
            keep_failed: Duration::from_secs(30 * 24 * 3600),
            max_parallel: 8,
            tmux_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(60),
            supervise: Vec::new(),
            supervise_interval: Duration::from_secs(10),
            supervise_backoff: Duration::from_secs(30),
            supervise_backoff_max: Duration::from_secs(600),
            quarantine: Duration::from_secs(3600),
            stable_after: Duration::from_secs(600),
            not_a_crash: vec!["usage limit".into()],
            mass_death: 3,
            mass_death_window: Duration::from_secs(30),
            mass_death_pause: Duration::from_secs(600),
        }
    }
}

/// Roles that may carry their own agent command.
pub const ROLES: [&str; 4] = ["mayor", "deacon", "witness", "refinery"];

impl Config {
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        Self::parse(&bytes).map_err(|(key, message)| ConfigError::Invalid {
            path: path.into(),
            key,
            message,
        })
    }

    /// Parses config text; the error names the offending key.
    pub fn parse(bytes: &[u8]) -> Result<Config, (String, String)> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // An unknown key is reported by serde at the parent path: name it.
            let msg = inner.to_string();
            let key = match msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
            {
                Some(unknown) => unknown.to_string(),
                None => key,
            };
            (key, strip_position(&msg))
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, msg: &str| Err((key.to_string(), msg.to_string()));
        for (key, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("rescan_interval", self.rescan_interval),
            ("poll_interval", self.poll_interval),
            ("max_request_age", self.max_request_age),
            ("restart_window", self.restart_window),
        ] {
            if value.is_zero() {
                return bad(key, "must be greater than zero");
            }
        }
        for (i, agent) in self.supervise.iter().enumerate() {
            if agent != "auto" {
                if let Err(e) = crate::request::Agent::parse(agent) {
                    return bad(&format!("supervise[{i}]"), &e.0);
                }
            }
        }
        if self.mass_death < 2 {
            return bad("mass_death", "must be at least 2");
        }
        if self.supervise_interval < Duration::from_millis(100) {
            return bad("supervise_interval", "must be at least 100ms");
        }
        if !(1..=256).contains(&self.max_parallel) {
            return bad("max_parallel", "must be between 1 and 256");
        }
        for (key, value) in [
            ("tmux_timeout", self.tmux_timeout),
            ("write_timeout", self.write_timeout),
            ("notify_timeout", self.notify_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return bad(key, "must be at least 100ms");
            }
        }
        if let Some(problem) = self.metrics_listen_problem() {
            return bad("metrics_listen", &problem);
        }
        if self.log_max_bytes < 1024 {
            return bad("log_max_bytes", "must be at least 1024");
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

    /// The agent command for a role, falling back to `agent_command`.
    pub fn agent_command_for(&self, role: &str) -> &CommandLine {
        self.agent_commands.get(role).unwrap_or(&self.agent_command)
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
}
