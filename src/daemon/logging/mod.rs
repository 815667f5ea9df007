//! The daemon's log: `daemon.log`, rotated by size, text or JSON lines;
//! and, when someone reads the daemon's stderr, there too.
//!
//! Each line is one `write` to the file, made by the thread that logs it:
//! nothing buffered is lost when the daemon is killed, and no wake-up of a
//! writer thread per line (which cost more than the write, measured).
//!
//! Where the lines go (docs/operations.md, "Logs"):
//! - always `daemon.log`;
//! - stderr too, when it is a terminal (with colour), journald's stream
//!   (`JOURNAL_STREAM` names it: one line per event with its syslog
//!   priority as a `<N>` prefix, no timestamp, no colour), or when the
//!   daemon runs under systemd (`INVOCATION_ID`) or with `--log-stderr`
//!   (plain lines) — but never when stderr is daemon.log itself, as under
//!   `gt daemon start` or launchd.
//!
//! A filter that would silence the daemon's own lines (`--log-level bogus`
//! is a filter for a target named "bogus", and nothing else) is refused.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use thiserror::Error;
use tracing::level_filters::LevelFilter;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::Config;
use crate::town::Town;
use rotate::Rotating;

mod rotate;

/// Format of the daemon's log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers (Vector, Loki, Filebeat).
    Json,
}

/// How the daemon logs: chosen on the command line, handed by `start` to
/// the `run` it spawns.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// A tracing filter (`info`, `gt=debug`); `RUST_LOG` when absent.
    pub level: Option<String>,
    pub format: LogFormat,
    /// Also log to stderr, whatever it is (`run --log-stderr`).
    pub stderr: bool,
}

/// The variable read for a filter when `--log-level` is not given.
pub(crate) const FILTER_ENV: &str = "RUST_LOG";

#[derive(Debug, Error)]
pub(crate) enum LoggingError {
    #[error("bad --log-level {text:?}: {why}")]
    Option { text: String, why: String },
    #[error("bad {FILTER_ENV}={text:?}: {why}\nhint: unset {FILTER_ENV}, or pass --log-level (e.g. --log-level info)")]
    Env { text: String, why: String },
    #[error("cannot set up logging: {0}")]
    Init(String),
}

/// Targets whose lines must stay on: where the daemon says it started,
/// stopped, or could not start.
const OWN_TARGETS: [&str; 2] = ["gt::daemon", "gt::cli::commands::run"];

/// Checks a filter: each directive is a level (`info`) or `TARGET=LEVEL`
/// (`gt::daemon::heartbeat=debug`), and the daemon's own errors stay on.
/// Returns why not, for a person.
pub(crate) fn check_filter(text: &str) -> Result<(), String> {
    const LEVELS: &str = "error, warn, info, debug, trace";
    let mut directives: Vec<(Option<&str>, LevelFilter)> = Vec::new();
    let mut dynamic = false;
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        let level: LevelFilter = level.parse().map_err(|_| match target {
            Some(_) => format!("{level:?} in {directive:?} is not a level ({LEVELS} or off)"),
            None => format!(
                "{directive:?} is not a level: use one of {LEVELS}, \
                 or TARGET=LEVEL for one part of the daemon (e.g. gt::daemon::heartbeat=debug)"
            ),
        })?;
        // Span and field filters (`target[span{field=value}]=level`)
        // depend on what runs: not judged here.
        dynamic |= target.is_some_and(|t| t.contains('['));
        directives.push((target, level));
    }
    if directives.is_empty() {
        return Err(format!("the filter is empty: use one of {LEVELS}"));
    }
    EnvFilter::builder()
        .parse(text)
        .map_err(|e| format!("not a log filter: {e}"))?;
    if dynamic {
        return Ok(());
    }
    // As tracing decides: the directive with the longest target that
    // prefixes the event's target wins; a bare level matches everything;
    // nothing matching means off.
    for own in OWN_TARGETS {
        let level = directives
            .iter()
            .filter(|(t, _)| t.is_none_or(|t| own.starts_with(t)))
            .max_by_key(|(t, _)| t.map_or(0, |t| t.len() + 1))
            .map_or(LevelFilter::OFF, |(_, l)| *l);
        if level == LevelFilter::OFF {
            return Err(format!(
                "it turns off the daemon's own lines (target {own}), so a daemon that fails \
                 would say nothing: give a level for everything first, e.g. \"warn,{text}\""
            ));
        }
    }
    Ok(())
}

/// The filter the daemon will use: `--log-level`, else `RUST_LOG`, else
/// `info`; checked with [`check_filter`].
pub(crate) fn filter(options: &LogOptions) -> Result<EnvFilter, LoggingError> {
    let (text, from_env) = match &options.level {
        Some(level) => (level.clone(), false),
        None => match std::env::var(FILTER_ENV) {
            Ok(text) if !text.trim().is_empty() => (text, true),
            Err(std::env::VarError::NotUnicode(raw)) => {
                return Err(LoggingError::Env {
                    text: raw.to_string_lossy().into_owned(),
                    why: "not UTF-8".into(),
                })
            }
            _ => ("info".to_string(), false),
        },
    };
    let refuse = |why: String| match from_env {
        true => LoggingError::Env {
            text: text.clone(),
            why,
        },
        false => LoggingError::Option {
            text: text.clone(),
            why,
        },
    };
    check_filter(&text).map_err(refuse)?;
    EnvFilter::builder()
        .parse(&text)
        .map_err(|e| refuse(e.to_string()))
}

/// What the daemon's stderr is, for logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stderr {
    /// Nobody reads it as a log (a pipe or file of a program that started
    /// us, or daemon.log itself): nothing goes there.
    Quiet,
    /// A person: coloured lines unless NO_COLOR is set.
    Terminal,
    /// journald's stream: priority prefixes, no timestamps.
    Journal,
    /// A service manager's log or an explicit `--log-stderr`: plain lines.
    Plain,
}

impl Stderr {
    /// Decides from the environment and what fd 2 is.
    pub(crate) fn detect(town: &Town, explicit: bool) -> Stderr {
        let Some((dev, ino)) = stderr_id() else {
            return Stderr::Quiet; // closed
        };
        // Under `start` and launchd, stderr is the log file: once is enough.
        if stderr_is_log(town) {
            return Stderr::Quiet;
        }
        // systemd sets JOURNAL_STREAM to the device and inode of the stream
        // it connected; it is only ours if fd 2 still is that stream
        // (systemd.exec(5), "JOURNAL_STREAM").
        let journal = std::env::var("JOURNAL_STREAM").is_ok_and(|v| {
            v.split_once(':')
                .is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
        });
        if journal {
            Stderr::Journal
        } else if std::io::stderr().is_terminal() {
            Stderr::Terminal
        } else if explicit || std::env::var_os("INVOCATION_ID").is_some_and(|v| !v.is_empty()) {
            Stderr::Plain
        } else {
            Stderr::Quiet
        }
    }

    /// Whether a fatal error logged through tracing is seen on stderr.
    pub(crate) fn shows_log(self) -> bool {
        self != Stderr::Quiet
    }
}

/// Is stderr daemon.log itself (under `gt daemon start`, or launchd)?
pub(crate) fn stderr_is_log(town: &Town) -> bool {
    stderr_id().is_some_and(|id| {
        std::fs::metadata(town.log_file()).is_ok_and(|log| (log.dev(), log.ino()) == id)
    })
}

/// The device and inode of what fd 2 is open on.
fn stderr_id() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Installs the global subscriber; returns where stderr logging went.
pub(crate) fn init(
    town: &Town,
    config: &Config,
    options: &LogOptions,
) -> Result<Stderr, LoggingError> {
    let filter = filter(options)?;
    // A log that cannot be opened at start is refused (it is where the
    // operator looks); later, lines wait for it (see rotate.rs).
    crate::fs::open_append(&town.log_file()).map_err(|e| LoggingError::Init(e.to_string()))?;
    let rotating = Rotating::new(&town.log_file(), config.log_keep, config.log_max_bytes);
    let writer = Mutex::new(rotating);
    let file_layer = match options.format {
        // Text lines carry the time as `status` and `requests` show it;
        // JSON keeps RFC 3339 for the machines that read it.
        LogFormat::Text => fmt::layer()
            .with_ansi(false)
            .with_timer(crate::text::LogClock)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(writer)
            .boxed(),
    };
    let stderr = Stderr::detect(town, options.stderr);
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let stderr_layer = match (stderr, options.format) {
        (Stderr::Quiet, _) => None,
        (Stderr::Terminal, LogFormat::Text) => Some(
            fmt::layer()
                .with_timer(crate::text::LogClock)
                .with_ansi(colour)
                .with_writer(std::io::stderr)
                .boxed(),
        ),
        (Stderr::Journal, LogFormat::Text) => Some(
            fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(Journal)
                .boxed(),
        ),
        (Stderr::Journal, LogFormat::Json) => Some(
            fmt::layer()
                .json()
                .with_current_span(false)
                .with_writer(Journal)
                .boxed(),
        ),
        (_, LogFormat::Text) => Some(
            fmt::layer()
                .with_timer(crate::text::LogClock)
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .boxed(),
        ),
        (_, LogFormat::Json) => Some(
            fmt::layer()
                .json()
                .with_current_span(false)
                .with_writer(std::io::stderr)
                .boxed(),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .map_err(|e| LoggingError::Init(e.to_string()))?;
    Ok(stderr)
}

/// Writes log lines to stderr for journald: each line prefixed with its
/// event's syslog priority (`<3>` error … `<7>` debug; sd-daemon(3)), which
/// journald strips and records as the entry's priority.
struct Journal;

struct JournalLine {
    priority: u8,
}

impl<'a> MakeWriter<'a> for Journal {
    type Writer = JournalLine;

    fn make_writer(&'a self) -> JournalLine {
        JournalLine { priority: 6 }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> JournalLine {
        let priority = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        JournalLine { priority }
    }
}

impl Write for JournalLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // One event is one write of its whole text: prefix every line of
        // it, so a message spanning lines keeps its priority, and write it
        // at once so lines of threads do not interleave.
        let mut out = Vec::with_capacity(buf.len() + 8);
        for line in buf.split_inclusive(|&b| b == b'\n') {
            let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
            out.extend_from_slice(format!("<{}>", self.priority).as_bytes());
            out.extend_from_slice(&line[start..]);
        }
        std::io::stderr().lock().write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A condition that a periodic check finds again and again ("no tmux
/// server is running"): logged when it begins and when it ends, not every
/// time it is found, so a quiet town does not fill its log with one line.
#[derive(Debug, Default)]
pub(crate) struct Repeats(Mutex<Option<String>>);

impl Repeats {
    /// `condition` holds now. True when it is new (log it at its level);
    /// false when it was already reported (debug at most).
    pub(crate) fn began(&self, condition: &str) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() == Some(condition) {
            return false;
        }
        *last = Some(condition.to_string());
        true
    }

    /// No condition holds now: the one that ended, if any (log its end).
    pub(crate) fn ended(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_directives_pass() {
        for ok in [
            "info",
            "DEBUG",
            "warn,gt::daemon::heartbeat=debug",
            "gt=debug",
            "info,notify=off",
            "error",
            "gt::daemon=info,gt::cli=info",
        ] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn bogus_levels_and_dark_filters_are_refused() {
        for (bad, words) in [
            ("bogus", "is not a level"),
            ("nonsense", "is not a level"),
            ("gt=loud", "is not a level"),
            ("", "empty"),
            (" , ", "empty"),
            ("off", "turns off the daemon's own lines"),
            ("notify=debug", "turns off"),
            ("info,gt=off", "turns off"),
            ("gt::daemon::consumer=debug", "turns off"),
        ] {
            let why = check_filter(bad).expect_err(bad);
            assert!(why.contains(words), "{bad:?}: {why}");
        }
    }

    #[test]
    fn repeats_are_reported_once_and_their_end_once() {
        let r = Repeats::default();
        assert!(r.began("no server"));
        assert!(!r.began("no server"));
        assert!(r.began("cannot list"));
        assert_eq!(r.ended().as_deref(), Some("cannot list"));
        assert_eq!(r.ended(), None);
        assert!(r.began("no server"));
    }
}
