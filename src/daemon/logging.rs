//! The daemon's log: `daemon.log`, rotated by size, text or JSON lines.
//!
//! Each line is one `write` to the file, made by the thread that logs it:
//! nothing buffered is lost when the daemon is killed, and no wake-up of a
//! writer thread per line (which cost more than the write, measured).
//!
//! A filter that would silence the daemon's own lines (`--log-level bogus`
//! is a filter for a target named "bogus", and nothing else) is refused.

use std::io::IsTerminal;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use thiserror::Error;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::Config;
use crate::town::Town;

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

/// Installs the global subscriber.
pub(crate) fn init(town: &Town, config: &Config, options: &LogOptions) -> Result<(), LoggingError> {
    let filter = filter(options)?;
    let rotating = FileRotate::new(
        town.log_file(),
        AppendCount::new(config.log_keep.max(1)),
        ContentLimit::BytesSurpassed(config.log_max_bytes as usize),
        Compression::None,
        None,
    );
    let writer = std::sync::Mutex::new(rotating);
    let file_layer = match options.format {
        LogFormat::Text => fmt::layer().with_ansi(false).with_writer(writer).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(writer)
            .boxed(),
    };
    // In a terminal (`gt daemon run` by hand) the lines show there too.
    let terminal = std::io::stderr()
        .is_terminal()
        .then(|| fmt::layer().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(terminal)
        .try_init()
        .map_err(|e| LoggingError::Init(e.to_string()))
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
}
