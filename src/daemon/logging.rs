//! The daemon's log: `daemon.log`, rotated by size, text or JSON lines.
//!
//! Each line is one `write` to the file, made by the thread that logs it:
//! nothing buffered is lost when the daemon is killed, and no wake-up of a
//! writer thread per line (which cost more than the write, measured).

use std::io::IsTerminal;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
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

/// Installs the global subscriber.
pub(crate) fn init(town: &Town, config: &Config, options: &LogOptions) -> Result<(), String> {
    let filter = match &options.level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| format!("bad --log-level {level:?}: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let rotating = FileRotate::new(
        town.log_file(),
        AppendCount::new(config.log_keep.max(1)),
        ContentLimit::BytesSurpassed(config.log_max_bytes as usize),
        Compression::None,
        None,
    );
    let writer = std::sync::Mutex::new(rotating);
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
    // In a terminal (`gt daemon run` by hand) the lines show there too.
    let terminal = std::io::stderr().is_terminal().then(|| {
        fmt::layer()
            .with_timer(crate::text::LogClock)
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(terminal)
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}
