//! Service-manager units that run `gt daemon run` for one town: a systemd
//! unit ([`systemd`]) or a launchd plist ([`launchd`]).
//!
//! File names carry a hash of the town's canonical path, so several towns
//! can be installed side by side and `uninstall` (and [`find_installed`],
//! which `start`/`stop` use) find the file again without any state.

pub(crate) mod launchd;
pub(crate) mod systemd;

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::town::Town;

/// Overrides the directory the unit or plist is written to (and looked for
/// in). Meant for tests and packaging.
pub(crate) const INSTALL_DIR_ENV: &str = "GT_INSTALL_DIR";

/// The descriptor limit units ask for: well above the 1024 (systemd) or
/// 256 (launchd) a service gets by default, well below the hard limits
/// either allows an unprivileged user.
pub(crate) const NOFILE: u32 = 8192;

/// Which service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Systemd,
    Launchd,
}

impl Flavour {
    pub(crate) fn pick(systemd: bool, launchd: bool) -> Flavour {
        match (systemd, launchd) {
            (true, _) => Flavour::Systemd,
            (_, true) => Flavour::Launchd,
            _ if cfg!(target_os = "macos") => Flavour::Launchd,
            _ => Flavour::Systemd,
        }
    }

    pub(crate) fn flag(self) -> &'static str {
        match self {
            Flavour::Systemd => "--systemd",
            Flavour::Launchd => "--launchd",
        }
    }
}

/// The current user's service manager, or the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    User,
    System,
}

impl Scope {
    pub(crate) fn pick(user: bool) -> Scope {
        if user {
            Scope::User
        } else {
            Scope::System
        }
    }
}

#[derive(Debug, Error)]
pub(crate) enum ServiceError {
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
pub(crate) struct Installed {
    pub path: PathBuf,
    pub flavour: Flavour,
    pub scope: Scope,
    /// The systemd unit name or the launchd label.
    pub name: String,
}

impl Installed {
    /// Whether the service manager has it running (systemd: active;
    /// launchd: loaded).
    pub(crate) fn is_active(&self) -> bool {
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
                    &format!("{}/{}", launchd::domain(self.scope), self.name),
                ]);
                quiet_success(cmd)
            }
        }
    }

    /// One sentence for `start`/`stop`: who manages the daemon and how to
    /// talk to it.
    pub(crate) fn hint(&self) -> String {
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
                let target = format!("{}/{}", launchd::domain(self.scope), self.name);
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
pub(crate) fn unit_name(town: &Town) -> String {
    let key = town_key(town);
    format!(
        "gt-daemon-{}-{:08x}.service",
        sanitize(&key),
        path_hash(&key)
    )
}

/// The launchd label for `town`: `town.gastown.daemon.<hash>`.
pub(crate) fn launchd_label(town: &Town) -> String {
    format!("town.gastown.daemon.{:08x}", path_hash(&town_key(town)))
}

/// The file `install` writes for `town` with this flavour, in the directory
/// for this scope (or `$GT_INSTALL_DIR`).
pub(crate) fn unit_path(
    town: &Town,
    flavour: Flavour,
    scope: Scope,
) -> Result<PathBuf, ServiceError> {
    Ok(install_dir(flavour, scope)?.join(file_name(town, flavour)))
}

/// The unit or plist installed for `town`, if any: looks in
/// `$GT_INSTALL_DIR` when it is set, else in the user and system locations
/// of systemd and launchd.
pub(crate) fn find_installed(town: &Town) -> Option<Installed> {
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
pub(crate) fn managed_by(town: &Town) -> Option<Installed> {
    find_installed(town).filter(Installed::is_active)
}

/// The text of the unit or plist for `town`, running `exe`.
pub(crate) fn render(
    town: &Town,
    exe: &Path,
    flavour: Flavour,
    scope: Scope,
) -> Result<String, ServiceError> {
    match flavour {
        Flavour::Systemd => systemd::unit(town, exe, scope),
        Flavour::Launchd => launchd::plist(town, exe, scope),
    }
}

/// Writes `text` to `path` whole (never half a unit), readable by the
/// service manager, which may run as another user.
pub(crate) fn write(path: &Path, text: &str) -> Result<(), ServiceError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| ServiceError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    crate::fs::write_atomic(path, text.as_bytes(), Some(0o644)).map_err(|source| {
        ServiceError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
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
pub(crate) fn canonical(town: &Town) -> Town {
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

pub(crate) fn service_name(town: &Town, flavour: Flavour) -> String {
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

fn home() -> Result<PathBuf, ServiceError> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or(ServiceError::NoHome)
}

fn install_dir(flavour: Flavour, scope: Scope) -> Result<PathBuf, ServiceError> {
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

/// The most of a unit file that is read: ours are about a kilobyte.
const MAX_UNIT_BYTES: u64 = 1024 * 1024;

/// An installed unit's text (a link to it is followed, as systemd does);
/// `None` when it is missing, is no regular file, or is over
/// [`MAX_UNIT_BYTES`].
pub(crate) fn read_unit(path: &Path) -> Option<Vec<u8>> {
    crate::fs::read_bounded(path, MAX_UNIT_BYTES, crate::fs::Links::Follow)
        .ok()?
        .ok()
}

/// Reads back the scope from the header `install` writes.
fn written_scope(path: &Path) -> Option<Scope> {
    let text = String::from_utf8(read_unit(path)?).ok()?;
    let head = text.lines().take(5).collect::<Vec<_>>().join("\n");
    if head.contains(USER_MARK) {
        Some(Scope::User)
    } else if head.contains(SYSTEM_MARK) {
        Some(Scope::System)
    } else {
        None
    }
}

pub(crate) const USER_MARK: &str = "for the current user";
const SYSTEM_MARK: &str = "system-wide";

pub(crate) fn scope_mark(scope: Scope) -> &'static str {
    match scope {
        Scope::User => USER_MARK,
        Scope::System => SYSTEM_MARK,
    }
}

pub(crate) fn quiet_success(mut cmd: Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `path` as text a service file can hold: UTF-8 without control characters.
pub(crate) fn plain<'a>(
    what: &'static str,
    path: &'a Path,
    flavour: &'static str,
) -> Result<&'a str, ServiceError> {
    path.to_str()
        .filter(|s| !s.chars().any(char::is_control))
        .ok_or_else(|| ServiceError::Unrepresentable {
            what,
            path: path.to_path_buf(),
            flavour,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
