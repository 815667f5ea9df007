//! Where a town lives on disk and how to find it.
//!
//! Every path the daemon touches is derived here, so the layout
//! (docs/town.md) is written down in code exactly once.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Environment variable naming the town root when `--town` is not given.
pub const TOWN_ENV: &str = "GT_TOWN_ROOT";

/// The file that makes a directory a Gas Town (written by Gas Town's own
/// `gt install`; the daemon only looks for it).
pub const TOWN_MARKER: &str = "mayor/town.json";

/// Files only the daemon creates in `daemon/`: a `daemon/` holding one of
/// them is a town's, even without [`TOWN_MARKER`].
const DAEMON_MARKERS: [&str; 2] = ["daemon.lock", "state.json"];

/// Where the town root came from, for messages that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--town`, or a path handed over in code.
    Flag,
    /// `$GT_TOWN_ROOT`.
    Env,
    /// Found from the working directory.
    Found,
}

impl Origin {
    /// " (from --town)" and the like, to follow a path in a message.
    pub fn note(self) -> &'static str {
        match self {
            Origin::Flag => " (from --town)",
            Origin::Env => " (from $GT_TOWN_ROOT)",
            Origin::Found => " (found from the working directory)",
        }
    }
}

#[derive(Debug, Error)]
pub enum TownError {
    #[error(
        "no Gas Town found from {cwd}: no ancestor holds {TOWN_MARKER}, or a daemon/ with the daemon's own files (daemon.lock, state.json){}\n\
         hint: pass --town DIR or set {TOWN_ENV}=DIR (either may name a new town), or create DIR/{TOWN_MARKER} (see `gt man`, FILES)",
        plain_daemon_dir_note(.plain_daemon_dir.as_deref())
    )]
    NotFound {
        cwd: PathBuf,
        /// The nearest `daemon/` that was passed over: not a town's.
        plain_daemon_dir: Option<PathBuf>,
    },
    #[error("town directory {path}{} does not exist\nhint: create it, or check {}", .origin.note(), origin_hint(*.origin))]
    Missing { path: PathBuf, origin: Origin },
    #[error("town {path}{} is not a directory\nhint: name the town's directory, not a file in it", .origin.note())]
    NotADirectory { path: PathBuf, origin: Origin },
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot read the current directory: {0}")]
    Cwd(io::Error),
}

fn origin_hint(origin: Origin) -> &'static str {
    match origin {
        Origin::Env => "$GT_TOWN_ROOT",
        _ => "--town",
    }
}

fn plain_daemon_dir_note(dir: Option<&Path>) -> String {
    dir.map(|d| {
        format!(
            "; {} holds none of them, so it is not a town's (a source package, say) and was left alone",
            d.display()
        )
    })
    .unwrap_or_default()
}

/// A resolved town root and the paths of its daemon directory.
#[derive(Debug, Clone)]
pub struct Town {
    root: PathBuf,
    daemon: PathBuf,
    origin: Origin,
}

impl Town {
    /// Uses `root` as given (made absolute), without checking for markers:
    /// an explicit `--town` is the operator's word, and may name a new town.
    pub fn at(root: impl AsRef<Path>) -> Result<Self, TownError> {
        Self::from(root.as_ref(), Origin::Flag)
    }

    fn from(root: &Path, origin: Origin) -> Result<Self, TownError> {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(TownError::NotADirectory {
                    path: root.to_path_buf(),
                    origin,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(TownError::NotADirectory {
                    path: root.to_path_buf(),
                    origin,
                })
            }
            Err(_) => {
                return Err(TownError::Missing {
                    path: root.to_path_buf(),
                    origin,
                })
            }
        }
        let root = std::path::absolute(root).map_err(TownError::Cwd)?;
        let daemon = root.join("daemon");
        Ok(Town {
            root,
            daemon,
            origin,
        })
    }

    /// Resolves the town: `--town`, else `GT_TOWN_ROOT`, else the nearest
    /// ancestor of the working directory that is clearly a town: it holds
    /// `mayor/town.json`, or a `daemon/` with the daemon's own files. A
    /// plain `daemon/` (a Go package, say) is not a town, and is never
    /// filled with inbox/ and state.json.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, TownError> {
        if let Some(dir) = explicit {
            return Self::from(dir, Origin::Flag);
        }
        if let Some(dir) = std::env::var_os(TOWN_ENV).filter(|v| !v.is_empty()) {
            return Self::from(Path::new(&dir), Origin::Env);
        }
        let cwd = std::env::current_dir().map_err(TownError::Cwd)?;
        let mut plain_daemon_dir = None;
        for dir in cwd.ancestors() {
            if is_town(dir) {
                return Self::from(dir, Origin::Found);
            }
            let daemon = dir.join("daemon");
            if plain_daemon_dir.is_none() && daemon.is_dir() {
                plain_daemon_dir = Some(daemon);
            }
        }
        Err(TownError::NotFound {
            cwd,
            plain_daemon_dir,
        })
    }

    /// Where the root came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Creates the daemon directories that `start`/`run` need.
    pub fn ensure_dirs(&self) -> Result<(), TownError> {
        for dir in [
            self.daemon.clone(),
            self.inbox(),
            self.processing(),
            self.processed(),
            self.failed(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| TownError::Create { path: dir, source })?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn daemon_dir(&self) -> &Path {
        &self.daemon
    }
    pub fn inbox(&self) -> PathBuf {
        self.daemon.join("inbox")
    }
    pub fn processing(&self) -> PathBuf {
        self.daemon.join("processing")
    }
    pub fn processed(&self) -> PathBuf {
        self.daemon.join("processed")
    }
    pub fn failed(&self) -> PathBuf {
        self.daemon.join("failed")
    }
    pub fn state_file(&self) -> PathBuf {
        self.daemon.join("state.json")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.daemon.join("daemon.pid")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.daemon.join("daemon.lock")
    }
    pub fn log_file(&self) -> PathBuf {
        self.daemon.join("daemon.log")
    }
    pub fn config_file(&self) -> PathBuf {
        self.daemon.join("config.json")
    }
    pub fn restart_state_file(&self) -> PathBuf {
        self.daemon.join("restart_state.json")
    }
    /// Supervision's memory: agents' states and recent decisions.
    pub fn supervise_file(&self) -> PathBuf {
        self.daemon.join("supervise.json")
    }
    pub fn supervise_lock(&self) -> PathBuf {
        self.daemon.join("supervise.lock")
    }
    /// Serialises read-modify-write of `restart_state.json` between the
    /// daemon and `clear-backoff`.
    pub fn restart_state_lock(&self) -> PathBuf {
        self.daemon.join("restart_state.lock")
    }
    /// The crash-loop guard's memory of a dry-run daemon, kept apart so
    /// restarts that were only pretended never hold a real one back.
    pub fn dry_run_restart_state_file(&self) -> PathBuf {
        self.daemon.join("restart_state.dry-run.json")
    }
    /// Written by `gt down`; lives at the town root in Gas Town, but the spec
    /// places it in the daemon directory, which is where we look.
    pub fn shutdown_lock(&self) -> PathBuf {
        self.daemon.join("shutdown.lock")
    }
}

/// Is `dir` clearly a town: `mayor/town.json`, or a `daemon/` holding a
/// file only the daemon creates?
fn is_town(dir: &Path) -> bool {
    dir.join(TOWN_MARKER).is_file()
        || DAEMON_MARKERS
            .iter()
            .any(|name| dir.join("daemon").join(name).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clear_town_counts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("daemon")).unwrap();
        std::fs::write(root.join("daemon/daemon.go"), "package daemon").unwrap();
        assert!(!is_town(root), "a Go package named daemon");
        std::fs::write(root.join("daemon/state.json"), "{}").unwrap();
        assert!(is_town(root));
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("mayor")).unwrap();
        std::fs::write(other.path().join(TOWN_MARKER), "{}").unwrap();
        assert!(is_town(other.path()));
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = Town::at(&file).unwrap_err().to_string();
        assert!(
            e.contains("is not a directory") && e.contains("--town"),
            "{e}"
        );
        let e = Town::from(&dir.path().join("nope"), Origin::Env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not exist") && e.contains("GT_TOWN_ROOT"),
            "{e}"
        );
    }
}
