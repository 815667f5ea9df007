//! `gt daemon retry`: put a failed request back into the inbox.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use color_eyre::eyre::{bail, WrapErr};

use crate::config::Config;
use crate::duration::{above, exact};
use crate::fs::rename_unique;
use crate::outcome;
use crate::text::{escape_os, unescape_os};
use crate::town::Town;

/// Move a failed request back into the inbox to be consumed again.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The request keeps its original bytes, timestamp included: one older than
max_request_age fails again as stale (retry warns you); send a fresh one then.
NAME may be any bytes, or the name as `requests` shows it (with \\xNN escapes
for bytes that are not UTF-8). When the inbox already holds that name, the
request is moved in as NAME-1.json (and so on), keeping the name's bytes.

Examples:
  gt daemon requests --failed
  gt daemon retry 20261126T101500.123456Z-4242-0.json")]
pub struct Args {
    /// File name in failed/ (a path to it works too).
    #[arg(value_name = "NAME")]
    pub name: PathBuf,
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let given = args
        .name
        .file_name()
        .unwrap_or(args.name.as_os_str())
        .to_os_string();
    // The name as given, else as `requests` shows one that is not UTF-8.
    let Some(name) = std::iter::once(given.clone())
        .chain(unescape_os(&given))
        .find(|n| std::fs::symlink_metadata(town.failed().join(n)).is_ok())
    else {
        bail!(
            "no failed request named {} in {}\nhint: list them with `gt daemon requests --failed`",
            escape_os(&given),
            escape_os(town.failed().as_os_str())
        );
    };
    if outcome::is_sidecar_name(&name) {
        bail!(
            "{} is a result sidecar; retry the request file beside it",
            escape_os(&name)
        );
    }
    let source = town.failed().join(&name);
    // Read before moving: a running daemon may take it the moment it lands.
    let stale = stale_age(&source, town);
    std::fs::create_dir_all(town.inbox())?;
    // The old sidecar goes first (aside, under a name nothing reads): a
    // daemon that takes the request at once files it under its own name,
    // which the old sidecar would still hold.
    let sidecar = outcome::sidecar_path(&source);
    let mut aside_name = std::ffi::OsString::from(".");
    aside_name.push(sidecar.file_name().unwrap_or_default());
    aside_name.push(".retrying");
    let aside = sidecar.with_file_name(aside_name);
    let set_aside = std::fs::rename(&sidecar, &aside).is_ok();
    let target = match rename_unique(&source, &town.inbox(), &name) {
        Ok(target) => target,
        Err(e) => {
            if set_aside {
                let _ = std::fs::rename(&aside, &sidecar);
            }
            return Err(e).wrap_err("cannot move the request back");
        }
    };
    if set_aside {
        let _ = std::fs::remove_file(&aside);
    }
    writeln!(
        std::io::stdout().lock(),
        "{}",
        escape_os(target.as_os_str())
    )?;
    if let Some((age, limit)) = stale {
        eprintln!(
            "warning: this request is {} old, beyond max_request_age ({}), and will fail again as stale; \
             send a fresh one with `gt daemon send`",
            above(age, limit),
            exact(limit)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The request's age and the limit it is beyond, when it is stale.
fn stale_age(path: &Path, town: &Town) -> Option<(Duration, Duration)> {
    let max_age = Config::load(&town.config_file())
        .map(|c| c.max_request_age)
        .ok()?;
    // Read as the daemon reads requests: failed/ holds FIFOs and huge
    // files it refused, too.
    let bytes = crate::inbox::read_request(path).ok()?.ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let ts = chrono::DateTime::parse_from_rfc3339(value.get("timestamp")?.as_str()?).ok()?;
    let age = Utc::now().signed_duration_since(ts).to_std().ok()?;
    (age > max_age).then_some((age, max_age))
}
