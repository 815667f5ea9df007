//! `gt daemon retry`: put a failed request back into the inbox.
use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use color_eyre::eyre::{bail, WrapErr};

use crate::config::Config;
use crate::duration::human;
use crate::fs::rename_unique;
use crate::outcome;
use crate::town::Town;

/// Move a failed request back into the inbox to be consumed again.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The request keeps its original bytes, timestamp included: one older than
max_request_age fails again as stale (retry warns you); send a fresh one then.

Examples:
  gt daemon requests --failed
  gt daemon retry 20261126T101500.123456Z-4242-0.json")]
pub struct Args {
    /// File name in failed/ (a path to it works too).
    pub name: String,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let name = Path::new(&args.name)
        .file_name()
        .unwrap_or(OsStr::new(&args.name))
        .to_os_string();
    let source = town.failed().join(&name);
    if !source.exists() {
        bail!(
            "no failed request named {:?} in {}\nhint: list them with `gt daemon requests --failed`",
            name,
            town.failed().display()
        );
    }
    if outcome::is_sidecar_name(&name) {
        bail!(
            "{:?} is a result sidecar; retry the request file beside it",
            name
        );
    }
    std::fs::create_dir_all(town.inbox())?;
    let target =
        rename_unique(&source, &town.inbox(), &name).wrap_err("cannot move the request back")?;
    let _ = std::fs::remove_file(outcome::sidecar_path(&source));
    println!("{}", target.display());
    if let Some(age) = stale_age(&target, town) {
        eprintln!("warning: this request is {} old, beyond max_request_age, and will fail again as stale; send a fresh one with `gt daemon send`", human(age));
    }
    Ok(ExitCode::SUCCESS)
}

fn stale_age(path: &Path, town: &Town) -> Option<Duration> {
    let max_age = Config::load(&town.config_file())
        .map(|c| c.max_request_age)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let ts = chrono::DateTime::parse_from_rfc3339(value.get("timestamp")?.as_str()?).ok()?;
    let age = Utc::now().signed_duration_since(ts).to_std().ok()?;
    (age > max_age).then_some(age)
}
