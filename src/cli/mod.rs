//! Command-line definitions and dispatch: one file per subcommand under
//! `commands/`, so each command's arguments, help and behaviour sit together.

pub mod commands;
pub mod table;

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
  gt daemon check                       would it run as configured?
  gt daemon restart                     stop, then start (keeps --dry-run)
  gt daemon stop";

/// Heading of the options that go before (or, for `--town`, anywhere
/// after) the subcommand.
pub const GLOBAL: &str = "Global options";

/// Gas Town: the town daemon and its tools.
#[derive(Debug, Parser)]
#[command(name = "gt", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The town root (default: $GT_TOWN_ROOT, else the nearest ancestor
    /// holding mayor/town.json, or a daemon/ with the daemon's own files).
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath, help_heading = GLOBAL)]
    pub town: Option<PathBuf>,

    /// For `daemon start` and `daemon run`: their --log-level.
    #[arg(long, value_name = "LEVEL", help_heading = GLOBAL, value_parser = parse_log_level)]
    pub log_level: Option<String>,

    /// For `daemon start` and `daemon run`: their --log-format.
    #[arg(long, value_enum, value_name = "FORMAT", help_heading = GLOBAL)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: TopCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Run and talk to the town daemon.
    #[command(after_help = DAEMON_HELP)]
    Daemon(DaemonCli),
    /// Print a shell completion script.
    #[command(after_help = commands::completions::AFTER_HELP)]
    Completions(commands::completions::Args),
    /// Print the manual pages (roff), configuration keys included.
    #[command(after_help = commands::man::AFTER_HELP)]
    Man(commands::man::Args),
}

/// `gt daemon`: its subcommands, and `--town` accepted after any of them.
#[derive(Debug, clap::Args)]
pub struct DaemonCli {
    /// The town root (default: $GT_TOWN_ROOT, else found from the working
    /// directory).
    #[arg(
        long = "town",
        id = "daemon_town",
        global = true,
        value_name = "DIR",
        value_hint = clap::ValueHint::DirPath,
        help_heading = GLOBAL
    )]
    pub town: Option<PathBuf>,

    #[command(subcommand)]
    pub command: DaemonCommand,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    Start(commands::start::Args),
    Run(commands::run::Args),
    Stop(commands::stop::Args),
    Restart(commands::restart::Args),
    Check(commands::check::Args),
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

/// `--log-level` and `--log-format`: options of `start` and `run`, the
/// commands that run a daemon.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log filter for the daemon (error, warn, info, debug, trace, or
    /// TARGET=LEVEL directives such as warn,gt::daemon::heartbeat=debug);
    /// RUST_LOG is used when this is not given.
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,

    /// Format of the daemon's log lines [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl Cli {
    /// Where the town comes from, when no `--town` names it and the
    /// environment does: worth saying beside any error, since nothing on
    /// the command line shows it.
    pub fn town_note(&self) -> Option<String> {
        let TopCommand::Daemon(daemon) = &self.command else {
            return None;
        };
        if self.town.is_some() || daemon.town.is_some() {
            return None;
        }
        let dir = std::env::var_os(crate::town::TOWN_ENV).filter(|v| !v.is_empty())?;
        Some(format!(
            "the town is {} from ${}",
            crate::text::escape_os(&dir),
            crate::town::TOWN_ENV
        ))
    }
}

/// Runs the parsed command line; the only place that turns library errors
/// into reports.
pub fn dispatch(cli: Cli) -> color_eyre::Result<ExitCode> {
    let global_log = LogArgs {
        log_level: cli.log_level.clone(),
        log_format: cli.log_format,
    };
    match cli.command {
        TopCommand::Completions(args) => commands::completions::run(args),
        TopCommand::Man(args) => commands::man::run(args),
        TopCommand::Daemon(daemon) => {
            let town_arg = daemon.town.or(cli.town);
            let town = || Town::discover(town_arg.as_deref());
            match daemon.command {
                DaemonCommand::Start(args) => {
                    let log = log_options(&args.log, &global_log);
                    commands::start::run(&town()?, args, &log)
                }
                DaemonCommand::Run(args) => {
                    let log = log_options(&args.log, &global_log);
                    commands::run::run(&town()?, args, &log)
                }
                DaemonCommand::Stop(args) => commands::stop::run(&town()?, args),
                DaemonCommand::Restart(args) => {
                    let log = log_options(&LogArgs::default(), &global_log);
                    commands::restart::run(&town()?, args, &log)
                }
                DaemonCommand::Check(args) => {
                    let log = log_options(&LogArgs::default(), &global_log);
                    commands::check::run(&town()?, args, &log)
                }
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
            }
        }
    }
}

/// The arguments that make `gt` run the daemon of `town` in the
/// foreground, as `start` spawns it: spelled here, beside the flags they
/// name, and parsed back in a test so they cannot drift apart.
pub fn run_args(town: &Town, dry_run: bool, log: &LogOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--town".into(),
        town.root().into(),
        "daemon".into(),
        "run".into(),
    ];
    if let Some(level) = &log.level {
        args.extend(["--log-level".into(), level.into()]);
    }
    if log.format == LogFormat::Json {
        args.extend(["--log-format".into(), "json".into()]);
    }
    if dry_run {
        args.push("--dry-run".into());
    }
    args
}

/// The subcommand's own options win over the ones given before it.
fn log_options(own: &LogArgs, global: &LogArgs) -> LogOptions {
    LogOptions {
        level: own.log_level.clone().or_else(|| global.log_level.clone()),
        format: own.log_format.or(global.log_format).unwrap_or_default(),
        stderr: false,
    }
}

/// `--log-level`: refused at once (a usage error) when it is not a filter
/// the daemon would log with.
fn parse_log_level(text: &str) -> Result<String, String> {
    crate::daemon::logging::check_filter(text).map(|()| text.to_string())
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
                stderr: false,
            };
            let mut argv = vec![OsString::from("gt")];
            argv.extend(run_args(&town, dry_run, &log));
            let cli = Cli::try_parse_from(&argv).unwrap();
            assert_eq!(cli.town.as_deref(), Some(town.root()));
            match cli.command {
                TopCommand::Daemon(DaemonCli {
                    command: DaemonCommand::Run(args),
                    ..
                }) => {
                    assert_eq!(args.dry_run, dry_run);
                    let parsed = log_options(&args.log, &LogArgs::default());
                    assert_eq!(parsed.level, level);
                    assert_eq!(parsed.format, format);
                }
                other => panic!("not `daemon run`: {other:?}"),
            }
        }
    }
}
