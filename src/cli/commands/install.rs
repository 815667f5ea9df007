//! `gt daemon install|uninstall`: a systemd unit or launchd plist that runs
//! `gt daemon run` for one town.
//!
//! File names carry a hash of the town's canonical path, so several towns
//! can be installed side by side and `uninstall` (and [`find_installed`],
//! which `start`/`stop` use) find the file again without any state.
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use thiserror::Error;

use crate::town::{Town, TOWN_ENV};

/// Overrides the directory the unit or plist is written to (and looked for
/// in). Meant for tests and packaging.
pub const INSTALL_DIR_ENV: &str = "GT_INSTALL_DIR";

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
#[command(after_help = UNINSTALL_AFTER_HELP)]
pub struct UninstallArgs {
    /// Remove the systemd unit (default on Linux).
    #[arg(long, conflicts_with = "launchd")]
    pub systemd: bool,
    /// Remove the launchd plist (default on macOS).
    #[arg(long)]
    pub launchd: bool,
    /// Remove the current user's unit instead of the system-wide one.
    #[arg(long)]
    pub user: bool,
}

/// Which service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Systemd,
    Launchd,
}

impl Flavour {
    fn pick(systemd: bool, launchd: bool) -> Flavour {
        match (systemd, launchd) {
            (true, _) => Flavour::Systemd,
            (_, true) => Flavour::Launchd,
            _ if cfg!(target_os = "macos") => Flavour::Launchd,
            _ => Flavour::Systemd,
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Flavour::Systemd => "--systemd",
            Flavour::Launchd => "--launchd",
        }
    }
}

/// The current user's service manager, or the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

impl Scope {
    fn pick(user: bool) -> Scope {
        if user {
            Scope::User
        } else {
            Scope::System
        }
    }
}

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("cannot find the path of the running gt binary: {0}")]
    CurrentExe(io::Error),
    #[error(
        "{what} {path:?} is not UTF-8 or contains control characters, which a {flavour} file cannot hold\n\
         hint: move the town (or gt) to a plainer path"
    )]
    Unrepresentable {
        what: &'static str,
        path: PathBuf,
        flavour: &'static str,
    },
    #[error("cannot tell where your home directory is: $HOME is not set")]
    NoHome,
    #[error("cannot create {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}{}", root_hint(source))]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot remove {path}: {source}{}", root_hint(source))]
    Remove { path: PathBuf, source: io::Error },
}

fn root_hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied {
        "\nhint: system-wide units need root (sudo gt ...); or use --user for your own service manager"
    } else {
        ""
    }
}

/// Where an installed unit or plist is, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub path: PathBuf,
    pub flavour: Flavour,
    pub scope: Scope,
    /// The systemd unit name or the launchd label.
    pub name: String,
}

impl Installed {
    /// Whether the service manager has it running (systemd: active;
    /// launchd: loaded).
    pub fn is_active(&self) -> bool {
        match self.flavour {
            Flavour::Systemd => {
                let mut cmd = Command::new("systemctl");
                if self.scope == Scope::User {
                    cmd.arg("--user");
                }
                cmd.args(["is-active", "--quiet", &self.name]);
                quiet_success(cmd)
            }
            Flavour::Launchd => {
                let mut cmd = Command::new("launchctl");
                cmd.args([
                    "print",
                    &format!("{}/{}", launchd_domain(self.scope), self.name),
                ]);
                quiet_success(cmd)
            }
        }
    }

    /// One sentence for `start`/`stop`: who manages the daemon and how to
    /// talk to it.
    pub fn hint(&self) -> String {
        match self.flavour {
            Flavour::Systemd => {
                let user = if self.scope == Scope::User {
                    "--user "
                } else {
                    ""
                };
                format!(
                    "this daemon is managed by the systemd unit {name} ({path}); use \
                     `systemctl {user}start|stop|restart|status {name}` (logs: `journalctl {user}-u {name}`)",
                    name = self.name,
                    path = self.path.display(),
                )
            }
            Flavour::Launchd => {
                let target = format!("{}/{}", launchd_domain(self.scope), self.name);
                format!(
                    "this daemon is managed by launchd as {name} ({path}); use \
                     `launchctl kickstart -k {target}` to restart it and \
                     `launchctl bootout {target}` to stop it",
                    name = self.name,
                    path = self.path.display(),
                )
            }
        }
    }
}

/// The systemd unit name for `town`: `gt-daemon-<dir name>-<hash>.service`.
pub fn unit_name(town: &Town) -> String {
    let key = town_key(town);
    format!(
        "gt-daemon-{}-{:08x}.service",
        sanitize(&key),
        path_hash(&key)
    )
}

/// The launchd label for `town`: `town.gastown.daemon.<hash>`.
pub fn launchd_label(town: &Town) -> String {
    format!("town.gastown.daemon.{:08x}", path_hash(&town_key(town)))
}

/// The file `install` writes for `town` with this flavour, in the directory
/// for this scope (or `$GT_INSTALL_DIR`).
pub fn unit_path(town: &Town, flavour: Flavour, scope: Scope) -> Result<PathBuf, InstallError> {
    Ok(install_dir(flavour, scope)?.join(file_name(town, flavour)))
}

/// The unit or plist installed for `town`, if any: looks in
/// `$GT_INSTALL_DIR` when it is set, else in the user and system locations
/// of systemd and launchd.
pub fn installed_unit(town: &Town) -> Option<PathBuf> {
    find_installed(town).map(|i| i.path)
}

/// Like [`installed_unit`], with what was found.
pub fn find_installed(town: &Town) -> Option<Installed> {
    for flavour in [Flavour::Systemd, Flavour::Launchd] {
        for scope in [Scope::User, Scope::System] {
            let Ok(dir) = install_dir(flavour, scope) else {
                continue;
            };
            let path = dir.join(file_name(town, flavour));
            if !path.is_file() {
                continue;
            }
            // Under $GT_INSTALL_DIR both scopes share a directory: the file
            // says which one it was written for.
            let scope = if override_dir().is_some() {
                written_scope(&path).unwrap_or(scope)
            } else {
                scope
            };
            return Some(Installed {
                name: service_name(town, flavour),
                path,
                flavour,
                scope,
            });
        }
    }
    None
}

/// The installed unit for `town` if its service manager has it running: the
/// daemon is then managed there, and `start`/`stop` should say so
/// ([`Installed::hint`]).
pub fn managed_by(town: &Town) -> Option<Installed> {
    find_installed(town).filter(Installed::is_active)
}

/// Whether the systemd unit `unit` is active in the user's or the system's
/// service manager. False when systemd is not there.
pub fn systemd_active(unit: &str) -> bool {
    [Some("--user"), None].into_iter().any(|scope| {
        let mut cmd = Command::new("systemctl");
        cmd.args(scope).args(["is-active", "--quiet", unit]);
        quiet_success(cmd)
    })
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let flavour = Flavour::pick(args.systemd, args.launchd);
    let scope = Scope::pick(args.user);
    let exe = std::env::current_exe().map_err(InstallError::CurrentExe)?;
    let path = unit_path(town, flavour, scope)?;
    let name = service_name(town, flavour);
    let text = match flavour {
        Flavour::Systemd => systemd_unit(town, &exe, scope)?,
        Flavour::Launchd => launchd_plist(town, &exe, scope)?,
    };

    let previous = std::fs::read(&path).ok();
    if previous.as_deref() == Some(text.as_bytes()) {
        println!(
            "{} is already installed and up to date: {}",
            name,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    write_atomically(&path, text.as_bytes())?;
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
            let ctl = systemctl(scope);
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
            let (sudo, domain) = launchd_command_parts(scope);
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
    let flavour = Flavour::pick(args.systemd, args.launchd);
    let scope = Scope::pick(args.user);
    let path = unit_path(town, flavour, scope)?;
    let name = service_name(town, flavour);
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
            if let Some(other) = find_installed(town) {
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
        Err(source) => return Err(InstallError::Remove { path, source }.into()),
    }

    match flavour {
        Flavour::Systemd => {
            // What `systemctl disable` would remove; left behind it would
            // point at nothing.
            if let Some(dir) = path.parent() {
                let link = dir.join(format!("{}.wants", wanted_by(scope))).join(&name);
                if link
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    std::fs::remove_file(&link).map_err(|source| InstallError::Remove {
                        path: link.clone(),
                        source,
                    })?;
                    println!("Removed {}", link.display());
                }
            }
            let ctl = systemctl(scope);
            println!("Stop the running service and let systemd forget it with:\n  {ctl} stop {name}; {ctl} daemon-reload");
        }
        Flavour::Launchd => {
            let (sudo, domain) = launchd_command_parts(scope);
            println!("Stop and unload it with:\n  {sudo}launchctl bootout {domain}/{name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------
// Names and places

/// The town's path as the key for names: canonical, so `--town` through a
/// symlink names the same unit.
fn town_key(town: &Town) -> PathBuf {
    std::fs::canonicalize(town.root()).unwrap_or_else(|_| town.root().to_path_buf())
}

/// The town at its canonical path: the unit is the same whichever way the
/// town was named when installing.
fn canonical(town: &Town) -> Town {
    Town::at(town_key(town)).unwrap_or_else(|_| town.clone())
}

/// FNV-1a, folded to 32 bits: stable across Rust releases, unlike std's
/// hasher, so a unit written by one gt is found by the next.
fn path_hash(path: &Path) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in path.as_os_str().as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

/// The town directory's name reduced to `[A-Za-z0-9_-]`, at most 32 chars.
fn sanitize(path: &Path) -> String {
    let raw = path
        .file_name()
        .map(OsStr::to_string_lossy)
        .unwrap_or_default();
    let mut out = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
        if out.len() >= 32 {
            break;
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "town".into()
    } else {
        out.into()
    }
}

fn service_name(town: &Town, flavour: Flavour) -> String {
    match flavour {
        Flavour::Systemd => unit_name(town),
        Flavour::Launchd => launchd_label(town),
    }
}

fn file_name(town: &Town, flavour: Flavour) -> String {
    match flavour {
        Flavour::Systemd => unit_name(town),
        Flavour::Launchd => format!("{}.plist", launchd_label(town)),
    }
}

fn override_dir() -> Option<PathBuf> {
    std::env::var_os(INSTALL_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> Result<PathBuf, InstallError> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or(InstallError::NoHome)
}

fn install_dir(flavour: Flavour, scope: Scope) -> Result<PathBuf, InstallError> {
    if let Some(dir) = override_dir() {
        return Ok(dir);
    }
    Ok(match (flavour, scope) {
        (Flavour::Systemd, Scope::User) => {
            // XDG: a relative $XDG_CONFIG_HOME is invalid and ignored.
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map_or_else(|| home().map(|h| h.join(".config")), Ok)?;
            config.join("systemd/user")
        }
        (Flavour::Systemd, Scope::System) => PathBuf::from("/etc/systemd/system"),
        (Flavour::Launchd, Scope::User) => home()?.join("Library/LaunchAgents"),
        (Flavour::Launchd, Scope::System) => PathBuf::from("/Library/LaunchDaemons"),
    })
}

/// Reads back the scope from the header `install` writes.
fn written_scope(path: &Path) -> Option<Scope> {
    let text = std::fs::read_to_string(path).ok()?;
    let head = text.lines().take(5).collect::<Vec<_>>().join("\n");
    if head.contains(USER_MARK) {
        Some(Scope::User)
    } else if head.contains(SYSTEM_MARK) {
        Some(Scope::System)
    } else {
        None
    }
}

const USER_MARK: &str = "for the current user";
const SYSTEM_MARK: &str = "system-wide";

fn scope_mark(scope: Scope) -> &'static str {
    match scope {
        Scope::User => USER_MARK,
        Scope::System => SYSTEM_MARK,
    }
}

fn wanted_by(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "default.target",
        Scope::System => "multi-user.target",
    }
}

fn systemctl(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "systemctl --user",
        Scope::System => "systemctl",
    }
}

fn launchd_domain(scope: Scope) -> String {
    match scope {
        Scope::User => format!("gui/{}", rustix::process::getuid().as_raw()),
        Scope::System => "system".into(),
    }
}

/// (`sudo ` when needed, launchctl domain).
fn launchd_command_parts(scope: Scope) -> (&'static str, String) {
    let sudo = if scope == Scope::System && !rustix::process::geteuid().is_root() {
        "sudo "
    } else {
        ""
    };
    (sudo, launchd_domain(scope))
}

fn quiet_success(mut cmd: Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| InstallError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let write_err = |source| InstallError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".gt-install-")
        .tempfile_in(dir)
        .map_err(write_err)?;
    tmp.write_all(bytes).map_err(write_err)?;
    // Unit files are read by the service manager, possibly as another user.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// systemd

/// `path` as text a service file can hold: UTF-8 without control characters.
fn plain<'a>(
    what: &'static str,
    path: &'a Path,
    flavour: &'static str,
) -> Result<&'a str, InstallError> {
    path.to_str()
        .filter(|s| !s.chars().any(char::is_control))
        .ok_or_else(|| InstallError::Unrepresentable {
            what,
            path: path.to_path_buf(),
            flavour,
        })
}

/// One ExecStart= word: bare when harmless, else double-quoted with C
/// escapes. `%` (specifiers) is doubled everywhere; `$` (variable
/// expansion) in the arguments only, as systemd takes the program path
/// without expanding variables (checked with `systemd-analyze verify`).
fn exec_word(word: &str, program: bool) -> String {
    // Only the first word could be read as a prefix (`-`, `@`, `+`, `!`, `:`),
    // and it is an absolute path.
    let bare = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.,:+=@-".contains(c));
    if bare {
        return word.to_string();
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if !program => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `Environment=` assignment, quoted: specifiers doubled, quotes and
/// backslashes escaped (systemd does not expand `$` here).
fn env_assignment(key: &str, value: &str) -> String {
    let mut out = format!("\"{key}=");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Values that are taken literally apart from `%` specifiers
/// (`WorkingDirectory=`, `Description=`).
fn specifier_escape(value: &str) -> String {
    value.replace('%', "%%")
}

/// The systemd unit text for `town`, running `exe`.
pub fn systemd_unit(town: &Town, exe: &Path, scope: Scope) -> Result<String, InstallError> {
    let town = &canonical(town);
    const F: &str = "systemd unit";
    let root = plain("town path", town.root(), F)?;
    let exe = plain("gt binary path", exe, F)?;
    let exec: Vec<String> = [exe, "--town", root, "daemon", "run"]
        .into_iter()
        .enumerate()
        .map(|(i, word)| exec_word(word, i == 0))
        .collect();
    let scope_flag = if scope == Scope::User { " --user" } else { "" };

    let mut u = String::new();
    let _ = writeln!(
        u,
        "# Written by `gt daemon install --systemd{scope_flag}` ({}).",
        scope_mark(scope)
    );
    let _ = writeln!(
        u,
        "# Remove it with `gt daemon uninstall --systemd{scope_flag}`."
    );
    u.push_str("[Unit]\n");
    let _ = writeln!(
        u,
        "Description=Gas Town daemon for {}",
        specifier_escape(root)
    );
    if scope == Scope::System {
        u.push_str("After=network.target\n");
    }
    u.push_str("\n[Service]\n");
    u.push_str("# `gt daemon run` reports READY=1 once it holds the town lock.\n");
    u.push_str("Type=notify\n");
    let _ = writeln!(u, "ExecStart={}", exec.join(" "));
    let _ = writeln!(u, "WorkingDirectory={}", specifier_escape(root));
    let _ = writeln!(u, "Environment={}", env_assignment(TOWN_ENV, root));
    if let Some(path) = std::env::var_os("PATH").and_then(|p| p.into_string().ok()) {
        if !path.is_empty() && !path.chars().any(char::is_control) {
            u.push_str("# PATH when `gt daemon install` ran, so the daemon finds tmux and the\n");
            u.push_str("# agent command as you do; edit it if that changes.\n");
            let _ = writeln!(u, "Environment={}", env_assignment("PATH", &path));
        }
    }
    if scope == Scope::System {
        // A system daemon runs as the town's owner, so the agents' tmux
        // sessions are that user's (a root-owned town stays root).
        if let Ok(meta) = std::fs::metadata(town.root()) {
            if meta.uid() != 0 {
                u.push_str("# The owner of the town directory.\n");
                let _ = writeln!(u, "User={}", meta.uid());
                let _ = writeln!(u, "Group={}", meta.gid());
            }
        }
    }
    u.push_str("Restart=on-failure\n");
    u.push_str("RestartSec=5s\n");
    u.push_str(
        "# The agents live in tmux sessions, not in the daemon. If the daemon\n\
         # happened to start the tmux server, that server (and every agent in it)\n\
         # sits in this unit's cgroup: control-group or mixed would kill them all\n\
         # on stop/restart. `process` signals only the daemon, which stops cleanly\n\
         # on SIGTERM; the agents outlive a daemon restart, as they should.\n",
    );
    u.push_str("KillMode=process\n");
    u.push_str("TimeoutStopSec=30\n");
    u.push_str("\n[Install]\n");
    let _ = writeln!(u, "WantedBy={}", wanted_by(scope));
    Ok(u)
}

// ---------------------------------------------------------------------------
// launchd

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The launchd plist text for `town`, running `exe`.
pub fn launchd_plist(town: &Town, exe: &Path, scope: Scope) -> Result<String, InstallError> {
    let town = &canonical(town);
    const F: &str = "launchd plist";
    let root = plain("town path", town.root(), F)?;
    let exe = plain("gt binary path", exe, F)?;
    let log = town.log_file();
    let log = plain("log path", &log, F)?;
    let s = |v: &str| format!("<string>{}</string>", xml_escape(v));

    let mut p = String::new();
    p.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    p.push_str(
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
         \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n",
    );
    // (No "--" may appear inside an XML comment.)
    let _ = writeln!(
        p,
        "<!-- Written by gt daemon install ({}); remove it with gt daemon uninstall. -->",
        scope_mark(scope)
    );
    p.push_str("<plist version=\"1.0\">\n<dict>\n");
    let _ = writeln!(p, "\t<key>Label</key>\n\t{}", s(&launchd_label(town)));
    p.push_str("\t<key>ProgramArguments</key>\n\t<array>\n");
    for arg in [exe, "--town", root, "daemon", "run"] {
        let _ = writeln!(p, "\t\t{}", s(arg));
    }
    p.push_str("\t</array>\n");
    let _ = writeln!(p, "\t<key>WorkingDirectory</key>\n\t{}", s(root));
    p.push_str("\t<key>EnvironmentVariables</key>\n\t<dict>\n");
    let _ = writeln!(p, "\t\t<key>{TOWN_ENV}</key>\n\t\t{}", s(root));
    if let Some(path) = std::env::var_os("PATH").and_then(|p| p.into_string().ok()) {
        if !path.is_empty() && !path.chars().any(char::is_control) {
            let _ = writeln!(p, "\t\t<key>PATH</key>\n\t\t{}", s(&path));
        }
    }
    p.push_str("\t</dict>\n");
    if scope == Scope::System {
        if let Some(user) = std::fs::metadata(town.root())
            .ok()
            .and_then(|m| owner_name(m.uid()))
        {
            let _ = writeln!(p, "\t<key>UserName</key>\n\t{}", s(&user));
        }
    }
    p.push_str("\t<key>RunAtLoad</key>\n\t<true/>\n");
    p.push_str("\t<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n");
    p.push_str("\t<key>ThrottleInterval</key>\n\t<integer>5</integer>\n");
    p.push_str("\t<key>ExitTimeOut</key>\n\t<integer>30</integer>\n");
    let _ = writeln!(p, "\t<key>StandardOutPath</key>\n\t{}", s(log));
    let _ = writeln!(p, "\t<key>StandardErrorPath</key>\n\t{}", s(log));
    p.push_str("</dict>\n</plist>\n");
    Ok(p)
}

/// The login name of a non-root `uid`, via `id -nu`.
fn owner_name(uid: u32) -> Option<String> {
    if uid == 0 {
        return None;
    }
    let out = Command::new("id")
        .args(["-nu", &uid.to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words() {
        assert_eq!(exec_word("/usr/bin/gt", true), "/usr/bin/gt");
        assert_eq!(exec_word("--town", false), "--town");
        assert_eq!(exec_word("/a b/c", false), "\"/a b/c\"");
        assert_eq!(exec_word("/a\"b\\c", false), "\"/a\\\"b\\\\c\"");
        assert_eq!(exec_word("/x/100%/$HOME", false), "\"/x/100%%/$$HOME\"");
        assert_eq!(exec_word("/x/100%/$HOME", true), "\"/x/100%%/$HOME\"");
        assert_eq!(exec_word("", false), "\"\"");
    }

    #[test]
    fn sanitized_names() {
        assert_eq!(sanitize(Path::new("/home/me/gt")), "gt");
        assert_eq!(sanitize(Path::new("/srv/My Town!")), "My-Town");
        assert_eq!(sanitize(Path::new("/srv/..weird..name")), "weird-name");
        assert_eq!(sanitize(Path::new("/")), "town");
        assert_eq!(sanitize(Path::new("/srv/ééé")), "town");
        assert!(sanitize(Path::new(&"a".repeat(100))).len() <= 32);
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: a different hash would orphan every installed unit.
        assert_eq!(path_hash(Path::new("/home/me/gt")), 0x3019_f09f);
        assert_ne!(
            path_hash(Path::new("/home/me/gt")),
            path_hash(Path::new("/home/me/gt2"))
        );
    }
}
