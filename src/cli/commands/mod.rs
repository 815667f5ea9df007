//! One module per subcommand: its arguments, help text and behaviour.

pub mod check;
pub mod clear_backoff;
pub mod completions;
pub mod explain;
pub mod install;
pub mod logs;
pub mod man;
pub mod requests;
pub mod restart;
pub mod retry;
pub mod run;
pub mod send;
pub mod start;
pub mod status;
pub mod stop;
pub mod supervise;

/// clap value parser for `--timeout 10s` style arguments.
pub fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse_duration(text)
}

/// A service manager restarts what we stop and fights what we start: say so
/// rather than fight it.
pub fn warn_if_service_managed(town: &crate::town::Town, verb: &str) {
    if let Some(unit) = crate::service::managed_by(town) {
        eprintln!(
            "warning: `gt daemon {verb}` bypasses the service manager: {}",
            unit.hint()
        );
    }
}
