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
    quiet_on_broken_pipe_panics();
    let cli = gt::cli::Cli::parse();
    let town_note = cli.town_note();
    match gt::cli::dispatch(cli) {
        Ok(code) => code,
        // The reader went away (`gt daemon requests | head -1`): it has
        // what it wanted; nothing failed.
        Err(report) if broken_pipe(&report) => ExitCode::SUCCESS,
        Err(report) => {
            // Errors are for people: the message and its causes, no
            // backtrace (RUST_BACKTRACE is for panics).
            eprintln!("error: {report}");
            for cause in report.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if let Some(note) = town_note.filter(|_| !report.to_string().contains("GT_TOWN_ROOT")) {
                eprintln!("  note: {note}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Was the error a write to a pipe whose reader has gone?
fn broken_pipe(report: &color_eyre::Report) -> bool {
    report.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` panics when stdout's reader has gone: that is the end of the
/// output, not a crash, so exit quietly and successfully instead.
fn quiet_on_broken_pipe_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        previous(info);
    }));
}
