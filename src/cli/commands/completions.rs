//! `gt completions`: generated from the clap definitions, so it can never
//! drift from the real command line. Also the agent names that `--from`
//! completes to.
use std::ffi::OsStr;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};
use clap::CommandFactory;
use color_eyre::eyre::WrapErr;

use crate::cli::Cli;
use crate::request::Agent;
use crate::town::Town;

pub const AFTER_HELP: &str = "\
--from completes mayor, deacon and the Witnesses and Refineries of the town
the script was generated in (run it again after adding a rig).

Examples:
  gt completions bash > ~/.local/share/bash-completion/completions/gt
  gt completions zsh > ~/.zfunc/_gt          (with fpath+=~/.zfunc before compinit)
  gt completions fish > ~/.config/fish/completions/gt.fish";

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

pub fn run(args: Args) -> color_eyre::Result<ExitCode> {
    emit(&completion_script(args.shell))
}

/// Writes `bytes` to stdout. The generators are run into a buffer first
/// because they panic on write errors; a reader that went away (`| head`)
/// is not an error.
pub(crate) fn emit(bytes: &[u8]) -> color_eyre::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).wrap_err("cannot write to stdout"),
    }
}

/// An agent argument (`--from`, `clear-backoff`): any text (the command
/// checks it and says what is wrong), offering the known agent names to
/// shell completion.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentName;

impl TypedValueParser for AgentName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(agent_names().into_iter().map(PossibleValue::new)))
    }
}

/// `mayor`, `deacon`, and `<rig>/witness`, `<rig>/refinery` for each rig of
/// the town found from here (a directory holding `witness/` or
/// `refinery/`).
pub fn agent_names() -> Vec<String> {
    let mut names = vec!["mayor".to_string(), "deacon".to_string()];
    let Ok(town) = Town::discover(None) else {
        return names;
    };
    let mut rigs: Vec<String> = std::fs::read_dir(town.root())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|rig| {
            ["witness", "refinery"]
                .iter()
                .any(|role| town.root().join(rig).join(role).is_dir())
        })
        .collect();
    rigs.sort();
    for rig in rigs {
        for role in ["witness", "refinery"] {
            let name = format!("{rig}/{role}");
            if Agent::parse(&name).is_ok() {
                names.push(name);
            }
        }
    }
    names
}
