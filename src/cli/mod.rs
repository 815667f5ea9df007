//! Command-line definitions and dispatch: one file per subcommand under
//! `commands/`, so each command's arguments, help and behaviour sit together.

pub mod commands;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::daemon::logging::{LogFormat, LogOptions};
use crate::town::Town;

const AFTER_HELP: &str = "\
Examples:
  gt --town ~/gt daemon start        start the daemon of the town at ~/gt
  gt daemon status                   inside a town: is its daemon up?
  gt daemon send cycle --from mayor  ask the daemon to cycle the Mayor
  gt daemon logs -f                  follow the daemon's log";

const DAEMON_HELP: &str = "\
Examples:
  gt daemon start                       start it in the background
  gt daemon status                      is it up? what has it done?
  gt daemon send restart --from mayor --wait
  gt daemon requests --failed           why did requests fail?
  gt daemon logs -f                     follow the log
  gt daemon stop";

/// Gas Town: the town daemon and its tools.
#[derive(Debug, Parser)]
#[command(name = "gt", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The town root (default: $GT_TOWN_ROOT, else the nearest ancestor
    /// holding mayor/town.json or daemon/).
    #[arg(long, global = true, value_name = "DIR")]
    pub town: Option<PathBuf>,

    /// Log filter for the daemon (error, warn, info, debug, trace, or a
    /// tracing directive); RUST_LOG is used when this is not given.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Format of the daemon's log lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: TopCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Run and talk to the town daemon.
    #[command(subcommand, after_help = DAEMON_HELP)]
    Daemon(DaemonCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  gt completions bash > ~/.local/share/bash-completion/completions/gt\n  gt completions zsh > ~/.zfunc/_gt\n  gt completions fish > ~/.config/fish/completions/gt.fish"
    )]
    Completions(commands::completions::Args),
    /// Print the man page (roff) on stdout.
    #[command(after_help = "Examples:\n  gt man > /usr/local/share/man/man1/gt.1")]
    Man,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    Start(commands::start::Args),
    Run(commands::run::Args),
    Stop(commands::stop::Args),
    Status(commands::status::Args),
    Logs(commands::logs::Args),
    Send(commands::send::Args),
    Requests(commands::requests::Args),
    Retry(commands::retry::Args),
    ClearBackoff(commands::clear_backoff::Args),
    Explain(commands::explain::Args),
    /// Tell supervision (config `supervise`) to go on.
    #[command(
        subcommand,
        after_help = "Examples:\n  gt daemon supervise resume                   after a pause\n  gt daemon supervise resume gastown/witness   after a shutdown request"
    )]
    Supervise(commands::supervise::Command),
    Install(commands::install::Args),
    Uninstall(commands::install::UninstallArgs),
}

/// Runs the parsed command line; the only place that turns library errors
/// into reports.
pub fn dispatch(cli: Cli) -> color_eyre::Result<ExitCode> {
    let log = cli_log_options(&cli);
    let town_arg = cli.town.clone();
    let town = || Town::discover(town_arg.as_deref());
    match cli.command {
        TopCommand::Completions(args) => commands::completions::run(args),
        TopCommand::Man => commands::completions::man(),
        TopCommand::Daemon(cmd) => match cmd {
            DaemonCommand::Start(args) => commands::start::run(&town()?, args, &log),
            DaemonCommand::Run(args) => commands::run::run(&town()?, args, &log),
            DaemonCommand::Stop(args) => commands::stop::run(&town()?, args),
            DaemonCommand::Status(args) => commands::status::run(&town()?, args),
            DaemonCommand::Logs(args) => commands::logs::run(&town()?, args),
            DaemonCommand::Send(args) => commands::send::run(&town()?, args),
            DaemonCommand::Requests(args) => commands::requests::run(&town()?, args),
            DaemonCommand::Retry(args) => commands::retry::run(&town()?, args),
            DaemonCommand::ClearBackoff(args) => commands::clear_backoff::run(&town()?, args),
            DaemonCommand::Explain(args) => commands::explain::run(&town()?, args),
            DaemonCommand::Supervise(cmd) => commands::supervise::run(&town()?, cmd),
            DaemonCommand::Install(args) => commands::install::run(&town()?, args),
            DaemonCommand::Uninstall(args) => commands::install::uninstall(&town()?, args),
        },
    }
}

/// The arguments that make `gt` run the daemon of `town` in the
/// foreground, as `start` spawns it: spelled here, beside the flags they
/// name, and parsed back in a test so they cannot drift apart.
pub fn run_args(town: &Town, dry_run: bool, log: &LogOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--town".into(), town.root().into()];
    if let Some(level) = &log.level {
        args.extend(["--log-level".into(), level.into()]);
    }
    if log.format == LogFormat::Json {
        args.extend(["--log-format".into(), "json".into()]);
    }
    args.extend(["daemon".into(), "run".into()]);
    if dry_run {
        args.push("--dry-run".into());
    }
    args
}

fn cli_log_options(cli: &Cli) -> LogOptions {
    LogOptions {
        level: cli.log_level.clone(),
        format: cli.log_format,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn spawned_run_args_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        for (dry_run, level, format) in [
            (false, None, LogFormat::Text),
            (true, Some("debug".to_string()), LogFormat::Json),
        ] {
            let log = LogOptions {
                level: level.clone(),
                format,
            };
            let mut argv = vec![OsString::from("gt")];
            argv.extend(run_args(&town, dry_run, &log));
            let cli = Cli::try_parse_from(&argv).unwrap();
            assert_eq!(cli.town.as_deref(), Some(town.root()));
            assert_eq!(cli.log_level, level);
            assert_eq!(cli.log_format, format);
            match cli.command {
                TopCommand::Daemon(DaemonCommand::Run(args)) => assert_eq!(args.dry_run, dry_run),
                other => panic!("not `daemon run`: {other:?}"),
            }
        }
    }
}
