//! `gt`: parse the command line, hand it to [`gt::cli::dispatch`], report.
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let plain = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
        || !std::io::stderr().is_terminal();
    let mut hook = color_eyre::config::HookBuilder::default().display_env_section(false);
    if plain {
        hook = hook.theme(color_eyre::config::Theme::new());
    }
    if let Err(e) = hook.install() {
        eprintln!("warning: cannot install the error reporter: {e}");
    }
    match gt::cli::dispatch(gt::cli::Cli::parse()) {
        Ok(code) => code,
        Err(report) => {
            // Errors are for people: the message and its causes, no
            // backtrace (RUST_BACKTRACE is for panics).
            eprintln!("error: {report}");
            for cause in report.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
