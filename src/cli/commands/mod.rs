//! One module per subcommand: its arguments, help text and behaviour.

pub mod clear_backoff;
pub mod completions;
pub mod install;
pub mod logs;
pub mod requests;
pub mod retry;
pub mod run;
pub mod send;
pub mod start;
pub mod status;
pub mod stop;

/// clap value parser for `--timeout 10s` style arguments.
pub fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
}
