//! `gt daemon install|uninstall`: a systemd unit or launchd plist.
use std::process::ExitCode;

use crate::town::Town;

/// Install a service-manager unit that runs `gt daemon run` for this town.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write a systemd unit (default on Linux).
    #[arg(long, conflicts_with = "launchd")]
    pub systemd: bool,
    /// Write a launchd plist (default on macOS).
    #[arg(long)]
    pub launchd: bool,
    /// Install for the current user instead of system-wide.
    #[arg(long)]
    pub user: bool,
}

/// Remove the unit written by `install`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[arg(long, conflicts_with = "launchd")]
    pub systemd: bool,
    #[arg(long)]
    pub launchd: bool,
    #[arg(long)]
    pub user: bool,
}

pub fn run(_town: &Town, _args: Args) -> color_eyre::Result<ExitCode> {
    todo!()
}

pub fn uninstall(_town: &Town, _args: UninstallArgs) -> color_eyre::Result<ExitCode> {
    todo!()
}
