//! `gt completions` and `gt man`: generated from the clap definitions, so
//! they can never drift from the real command line.
use std::io::{self, Write};
use std::process::ExitCode;

use clap::CommandFactory;
use color_eyre::eyre::WrapErr;

use crate::cli::Cli;

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to print the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The completion script for `shell`, as bytes.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "gt", &mut out);
    out
}

/// The man page of `gt` (roff).
pub fn man_page() -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

pub fn run(args: Args) -> color_eyre::Result<ExitCode> {
    emit(&completion_script(args.shell))
}

pub fn man() -> color_eyre::Result<ExitCode> {
    let page = man_page().wrap_err("cannot render the man page")?;
    emit(&page)
}

/// Writes `bytes` to stdout. The generators are run into a buffer first
/// because they panic on write errors; a reader that went away (`| head`)
/// is not an error.
fn emit(bytes: &[u8]) -> color_eyre::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).wrap_err("cannot write to stdout"),
    }
}
