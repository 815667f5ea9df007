//! Where a town lives on disk and how to find it.
//!
//! Every path the daemon touches is derived here, so the layout (README,
//! "Files") is written down exactly once.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Environment variable naming the town root when `--town` is not given.
pub const TOWN_ENV: &str = "GT_TOWN_ROOT";

#[derive(Debug, Error)]
pub enum TownError {
    #[error(
        "no Gas Town found from {cwd}: no ancestor holds mayor/town.json or daemon/\n\
         hint: pass --town DIR, set {TOWN_ENV}=DIR, or run inside a town"
    )]
    NotFound { cwd: PathBuf },
    #[error("town directory {path} does not exist\nhint: check --town / {TOWN_ENV}")]
    Missing { path: PathBuf },
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot read the current directory: {0}")]
    Cwd(io::Error),
}

/// A resolved town root and the paths of its daemon directory.
#[derive(Debug, Clone)]
pub struct Town {
    root: PathBuf,
    daemon: PathBuf,
}

impl Town {
    /// Uses `root` as given (made absolute), without checking for markers:
    /// an explicit `--town` is the operator's word.
    pub fn at(root: impl AsRef<Path>) -> Result<Self, TownError> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(TownError::Missing {
                path: root.to_path_buf(),
            });
        }
        let root = std::path::absolute(root).map_err(TownError::Cwd)?;
        let daemon = root.join("daemon");
        Ok(Town { root, daemon })
    }

    /// Resolves the town: `--town`, else `GT_TOWN_ROOT`, else the nearest
    /// ancestor of the working directory holding `mayor/town.json` or `daemon/`.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, TownError> {
        if let Some(dir) = explicit {
            return Self::at(dir);
        }
        if let Some(dir) = std::env::var_os(TOWN_ENV).filter(|v| !v.is_empty()) {
            return Self::at(PathBuf::from(dir));
        }
        let cwd = std::env::current_dir().map_err(TownError::Cwd)?;
        cwd.ancestors()
            .find(|dir| dir.join("mayor/town.json").is_file() || dir.join("daemon").is_dir())
            .map(Self::at)
            .unwrap_or(Err(TownError::NotFound { cwd }))
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
    /// Written by `gt down`; lives at the town root in Gas Town, but the spec
    /// places it in the daemon directory, which is where we look.
    pub fn shutdown_lock(&self) -> PathBuf {
        self.daemon.join("shutdown.lock")
    }
}
