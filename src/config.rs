//! `daemon/config.json`: operator overrides, validated strictly at start-up
//! and again on every reload (SIGHUP).
//!
//! A typo in a key or a value must stop the daemon before it touches any
//! agent, with a message naming the key, so unknown keys are refused, and
//! values outside sane bounds too (a 1ms heartbeat is a poke storm, not a
//! setting).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::duration::{human, parse_duration};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// A duration: text such as `"60s"`, or a number of seconds. A negative
/// one is refused in plain words (serde's own message for it names an
/// untagged enum, which means nothing to an operator).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
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

fn negative(found: &str) -> String {
    format!("must not be negative (found {found})")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(deserialize_with = "duration")]
    pub heartbeat_interval: Duration,
    /// Typed into `gt-mayor` at each heartbeat (empty: not poked).
    pub mayor_poke_text: String,
    /// Typed into every `gt-<rig>-witness` at each heartbeat (empty: not
    /// poked).
    pub witness_poke_text: String,
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
            mayor_poke_text: "HEARTBEAT: check your rigs".into(),
            witness_poke_text: "HEARTBEAT: check your workers".into(),
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
            max_parallel: 32,
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

/// The exit status of `gt daemon run` refusing its configuration
/// (config.json, `--log-level`, `RUST_LOG`): EX_CONFIG from sysexits.h.
/// The systemd unit lists it in `RestartPreventExitStatus=`, so a bad
/// config is not retried every few seconds forever.
pub const EXIT_CONFIG: u8 = 78;

/// Roles that may carry their own agent command.
pub const ROLES: [&str; 4] = ["mayor", "deacon", "witness", "refinery"];

/// Keys a running daemon reads only when it starts (the watcher, the pool,
/// the tmux server, the log file, whether anything is executed at all); a
/// reload that changes them says they take effect at the next start. Kept
/// by [`Config::keep_restart_only`].
pub const RESTART_ONLY: [&str; 24] = [
    "supervise",
    "supervise_interval",
    "supervise_backoff",
    "supervise_backoff_max",
    "quarantine",
    "stable_after",
    "not_a_crash",
    "mass_death",
    "mass_death_window",
    "mass_death_pause",
    "watch_mode",
    "poll_interval",
    "rescan_interval",
    "max_parallel",
    "tmux_socket",
    "tmux_timeout",
    "dry_run",
    "log_max_bytes",
    "log_keep",
    "metrics_listen",
    "metrics_allow_remote",
    "notify_command",
    "notify_timeout",
    "notify_window",
];

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
pub fn changed_keys(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
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
    pub fn load_with_source(path: &Path) -> Result<(Config, serde_json::Value), ConfigError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
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

    /// Parses config text; the error names the offending key.
    pub fn parse(bytes: &[u8]) -> Result<Config, (String, String)> {
        Self::parse_text(bytes).map_err(|p| (p.key.unwrap_or_default(), p.message))
    }

    /// Parses config text: one JSON object, known keys, values in bounds.
    pub fn parse_text(bytes: &[u8]) -> Result<Config, Problem> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        // serde would read the struct from an array positionally
        // (`["2s", "1h"]` as heartbeat_interval and max_request_age).
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => {
                return Err(Problem::whole(
                    "the file is empty; write {} for all defaults, or remove it",
                ))
            }
            Some(b'{') => {}
            Some(b'[') => {
                return Err(Problem::whole(
                    "the top level is an array; it must be a JSON object of keys and values",
                ))
            }
            Some(_) if serde_json::from_slice::<serde_json::Value>(bytes).is_ok() => {
                return Err(Problem::whole(
                    "the top level is not a JSON object; it must be an object of keys and values",
                ))
            }
            Some(_) => {}
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            if matches!(
                inner.classify(),
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof
            ) {
                return Problem::whole(format!(
                    "invalid JSON at line {} column {}: {}",
                    inner.line(),
                    inner.column(),
                    strip_position(&inner.to_string())
                ));
            }
            // An unknown key is reported by serde at the parent path: name it.
            let msg = inner.to_string();
            let key = match msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
            {
                Some(unknown) => unknown.to_string(),
                None => key,
            };
            Problem::key(&key, plain_words(&strip_position(&msg)))
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), Problem> {
        let bad = |key: &str, msg: &str| Err(Problem::key(key, msg));
        let (ms, s, m, h) = (
            Duration::from_millis,
            Duration::from_secs,
            |n: u64| Duration::from_secs(60 * n),
            |n: u64| Duration::from_secs(3600 * n),
        );
        // (key, value, at least, at most, why the bound)
        let bounds: [(&str, Duration, Duration, Duration, &str); 12] = [
            (
                "heartbeat_interval",
                self.heartbeat_interval,
                s(1),
                h(24),
                "every beat pokes every agent",
            ),
            (
                "rescan_interval",
                self.rescan_interval,
                s(1),
                h(24),
                "every rescan lists the whole inbox",
            ),
            (
                "poll_interval",
                self.poll_interval,
                ms(100),
                h(1),
                "every poll lists the whole inbox",
            ),
            (
                "prime_delay",
                self.prime_delay,
                s(0),
                m(10),
                "a restart holds its agent's next request this long",
            ),
            (
                "kill_grace",
                self.kill_grace,
                s(0),
                m(10),
                "ending an agent waits this long",
            ),
            (
                "max_request_age",
                self.max_request_age,
                s(1),
                Duration::MAX,
                "",
            ),
            (
                "restart_window",
                self.restart_window,
                s(1),
                Duration::MAX,
                "",
            ),
            (
                "keep_processed",
                self.keep_processed,
                m(1),
                Duration::MAX,
                "`send --wait` and `requests` read outcomes back",
            ),
            (
                "keep_failed",
                self.keep_failed,
                m(1),
                Duration::MAX,
                "`send --wait` and `requests` read outcomes back",
            ),
            (
                "tmux_timeout",
                self.tmux_timeout,
                ms(100),
                m(1),
                "the service manager's watchdog outlasts any one tmux call",
            ),
            ("write_timeout", self.write_timeout, ms(100), h(24), ""),
            ("notify_timeout", self.notify_timeout, ms(100), m(10), ""),
        ];
        for (key, value, min, max, why) in bounds {
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            if value < min {
                return bad(
                    key,
                    &format!(
                        "must be at least {}, found {}{why}",
                        human(min),
                        human(value)
                    ),
                );
            }
            if value > max {
                return bad(
                    key,
                    &format!(
                        "must be at most {}, found {}{why}",
                        human(max),
                        human(value)
                    ),
                );
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

    /// Keeps the running daemon's values of the keys in [`RESTART_ONLY`]:
    /// a reloaded config changes only what a running daemon can change.
    pub(crate) fn keep_restart_only(&mut self, running: &Config) {
        self.watch_mode = running.watch_mode;
        self.poll_interval = running.poll_interval;
        self.rescan_interval = running.rescan_interval;
        self.max_parallel = running.max_parallel;
        self.tmux_socket.clone_from(&running.tmux_socket);
        self.tmux_timeout = running.tmux_timeout;
        self.dry_run = running.dry_run;
        self.log_max_bytes = running.log_max_bytes;
        self.log_keep = running.log_keep;
        // Supervision is set up once, at the start.
        self.supervise.clone_from(&running.supervise);
        self.supervise_interval = running.supervise_interval;
        self.supervise_backoff = running.supervise_backoff;
        self.supervise_backoff_max = running.supervise_backoff_max;
        self.quarantine = running.quarantine;
        self.stable_after = running.stable_after;
        self.not_a_crash.clone_from(&running.not_a_crash);
        self.mass_death = running.mass_death;
        self.mass_death_window = running.mass_death_window;
        self.mass_death_pause = running.mass_death_pause;
        // The endpoint is bound and the notifier started once, at the start.
        self.metrics_listen.clone_from(&running.metrics_listen);
        self.metrics_allow_remote = running.metrics_allow_remote;
        self.notify_command.clone_from(&running.notify_command);
        self.notify_timeout = running.notify_timeout;
        self.notify_window = running.notify_window;
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
            let p = problem(text);
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
        let mut new = Config::parse_text(
            br#"{"watch_mode": "poll", "max_parallel": 2, "dry_run": true, "prime_delay": "5s"}"#,
        )
        .unwrap();
        new.keep_restart_only(&running);
        assert_eq!(new.watch_mode, running.watch_mode);
        assert_eq!(new.max_parallel, running.max_parallel);
        assert!(!new.dry_run);
        assert_eq!(new.prime_delay, Duration::from_secs(5));
    }
}
