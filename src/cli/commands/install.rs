//! `gt daemon install|uninstall`: write or remove the service-manager unit
//! that runs `gt daemon run` for this town (see [`crate::service`]).
use std::io;
use std::process::ExitCode;

use crate::service::{self, launchd, systemd, Flavour, Scope, ServiceError};
use crate::town::Town;

const INSTALL_AFTER_HELP: &str = "\
Without --systemd/--launchd: systemd on Linux, launchd on macOS.

systemd: writes gt-daemon-<town>-<hash>.service into ~/.config/systemd/user
($XDG_CONFIG_HOME/systemd/user) with --user, else /etc/systemd/system
(needs root; the daemon then runs as the owner of the town directory).
launchd: writes town.gastown.daemon.<hash>.plist into ~/Library/LaunchAgents
with --user, else /Library/LaunchDaemons.
The <hash> comes from the town's path, so several towns can be installed.
The unit runs this gt binary with --town <town> daemon run, and keeps the
PATH you have now so the daemon finds tmux and the agent command.
Nothing is enabled or started: the commands to do that are printed.

Environment:
  GT_INSTALL_DIR=DIR   write into DIR instead (for tests and packaging)

Examples:
  gt daemon install --user             then run the systemctl commands it prints
  sudo gt --town /srv/gt daemon install
  gt daemon install --launchd --user";

const UNINSTALL_AFTER_HELP: &str = "\
Use the same --systemd/--launchd/--user flags as for install. Removes the
file (and the systemd enable link, if any) and prints the commands that
stop the running service. A missing file is not an error.

Environment:
  GT_INSTALL_DIR=DIR   look in DIR instead

Examples:
  gt daemon uninstall --user";

/// Install a service-manager unit that runs `gt daemon run` for this town.
#[derive(Debug, clap::Args)]
#[command(after_help = INSTALL_AFTER_HELP)]
pub struct Args {
    #[command(flatten)]
    pub unit: UnitArgs,
}

/// Remove the unit written by `install`.
#[derive(Debug, clap::Args)]
#[command(after_help = UNINSTALL_AFTER_HELP)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub unit: UnitArgs,
}

/// Which unit: the same flags for install and uninstall.
#[derive(Debug, clap::Args)]
pub struct UnitArgs {
    /// A systemd unit (default on Linux).
    #[arg(long, conflicts_with = "launchd")]
    pub systemd: bool,
    /// A launchd plist (default on macOS).
    #[arg(long)]
    pub launchd: bool,
    /// The current user's service manager instead of the system's.
    #[arg(long)]
    pub user: bool,
}

impl UnitArgs {
    fn pick(&self) -> (Flavour, Scope) {
        (
            Flavour::pick(self.systemd, self.launchd),
            Scope::pick(self.user),
        )
    }
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let (flavour, scope) = args.unit.pick();
    let exe = std::env::current_exe().map_err(ServiceError::CurrentExe)?;
    let path = service::unit_path(town, flavour, scope)?;
    let name = service::service_name(town, flavour);
    let text = service::render(town, &exe, flavour, scope)?;

    let previous = service::read_unit(&path);
    if previous.as_deref() == Some(text.as_bytes()) {
        println!(
            "{} is already installed and up to date: {}",
            name,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    service::write(&path, &text)?;
    let verb = if previous.is_some() {
        "Updated"
    } else {
        "Wrote"
    };
    println!("{verb} {}", path.display());

    let exe_text = exe.to_string_lossy();
    if exe_text.contains("/target/debug/") || exe_text.contains("/target/release/") {
        eprintln!(
            "note: the unit runs {}, a build directory; install gt somewhere stable \
             (e.g. `cargo install --path .`) and rerun this if that binary may move",
            exe.display()
        );
    }

    let p = path.display();
    match (flavour, previous.is_some()) {
        (Flavour::Systemd, updated) => {
            let ctl = systemd::systemctl(scope);
            if updated {
                println!("Reload systemd and restart the daemon with:\n  {ctl} daemon-reload && {ctl} restart {name}");
            } else {
                println!(
                    "Enable and start it with:\n  {ctl} daemon-reload && {ctl} enable --now {name}"
                );
                if scope == Scope::User {
                    println!(
                        "To keep it running while you are logged out:\n  loginctl enable-linger {}",
                        std::env::var("USER").unwrap_or_else(|_| "$USER".into())
                    );
                }
            }
        }
        (Flavour::Launchd, updated) => {
            let (sudo, domain) = launchd::command_parts(scope);
            if updated {
                println!(
                    "Reload it with:\n  {sudo}launchctl bootout {domain}/{name}; {sudo}launchctl bootstrap {domain} {p}"
                );
            } else {
                println!("Load and start it with:\n  {sudo}launchctl bootstrap {domain} {p}");
            }
        }
    }
    println!(
        "If you started this town's daemon by hand, stop it first (gt --town {} daemon stop): \
         a town runs one daemon.",
        shlex::try_quote(&town.root().to_string_lossy()).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(town: &Town, args: UninstallArgs) -> color_eyre::Result<ExitCode> {
    let (flavour, scope) = args.unit.pick();
    let path = service::unit_path(town, flavour, scope)?;
    let name = service::service_name(town, flavour);
    let kind = match flavour {
        Flavour::Systemd => "systemd unit",
        Flavour::Launchd => "launchd plist",
    };

    match std::fs::remove_file(&path) {
        Ok(()) => println!("Removed {}", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            println!(
                "No {kind} for this town at {}; nothing to remove.",
                path.display()
            );
            if let Some(other) = service::find_installed(town) {
                let user = if other.scope == Scope::User {
                    " --user"
                } else {
                    ""
                };
                println!(
                    "There is one at {}: remove it with `gt daemon uninstall {}{user}`.",
                    other.path.display(),
                    other.flavour.flag()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(source) => return Err(ServiceError::Remove { path, source }.into()),
    }

    match flavour {
        Flavour::Systemd => {
            // What `systemctl disable` would remove; left behind it would
            // point at nothing.
            if let Some(dir) = path.parent() {
                let link = dir
                    .join(format!("{}.wants", systemd::wanted_by(scope)))
                    .join(&name);
                if link
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    std::fs::remove_file(&link).map_err(|source| ServiceError::Remove {
                        path: link.clone(),
                        source,
                    })?;
                    println!("Removed {}", link.display());
                }
            }
            let ctl = systemd::systemctl(scope);
            println!("Stop the running service and let systemd forget it with:\n  {ctl} stop {name}; {ctl} daemon-reload");
        }
        Flavour::Launchd => {
            let (sudo, domain) = launchd::command_parts(scope);
            println!("Stop and unload it with:\n  {sudo}launchctl bootout {domain}/{name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
