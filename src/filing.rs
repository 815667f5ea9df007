//! Filing a request's outcome: `processed/` or `failed/`, original bytes
//! untouched, plus the `X.json.result.json` sidecar (SPEC §4 step 4).
//!
//! The sidecar is created first (with `O_EXCL`, which also claims the name),
//! then the request is renamed beside it with `RENAME_NOREPLACE`: nothing is
//! ever overwritten, and a crash between the two steps leaves a sidecar
//! that recovery uses to finish the move instead of calling the request
//! interrupted. Durability is batched: one `syncfs` after a batch.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rustix::fs::{RenameFlags, CWD};
use serde::{Deserialize, Serialize};

use crate::town::Town;

pub const SIDECAR_SUFFIX: &str = ".result.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Processed,
    Failed,
}

/// The `.result.json` sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub outcome: Outcome,
    pub error: Option<String>,
    pub from: Option<String>,
    pub action: Option<String>,
    pub session: Option<String>,
    pub finished_at: DateTime<Utc>,
    pub daemon_pid: u32,
}

pub struct Filer {
    processing: PathBuf,
    processed: PathBuf,
    failed: PathBuf,
    /// Any directory of the town's filesystem, for `syncfs`.
    fs_handle: File,
}

impl Filer {
    pub fn new(town: &Town) -> io::Result<Self> {
        Ok(Filer {
            processing: town.processing(),
            processed: town.processed(),
            failed: town.failed(),
            fs_handle: File::open(town.daemon_dir())?,
        })
    }

    pub fn dir_for(&self, outcome: Outcome) -> &Path {
        match outcome {
            Outcome::Processed => &self.processed,
            Outcome::Failed => &self.failed,
        }
    }

    /// Moves `processing/NAME` to its outcome directory beside its sidecar;
    /// returns the final path (the name gets a suffix if it was taken).
    pub fn file(&self, name: &OsStr, sidecar: &Sidecar) -> io::Result<PathBuf> {
        file_into(
            &self.processing.join(name),
            self.dir_for(sidecar.outcome),
            name,
            sidecar,
        )
    }

    /// Makes everything filed so far survive power loss: one flush for the
    /// whole batch instead of an fsync per file and directory.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::syncfs(&self.fs_handle).map_err(Into::into)
    }

    /// Makes claims (renames into processing/) durable before a request
    /// with side effects runs, so power loss cannot bring it back to inbox/.
    pub fn sync_claims(&self) -> io::Result<()> {
        File::open(&self.processing)?.sync_all()
    }
}

/// Files `source` into `dir` under `name` or the first free variant of it.
pub fn file_into(
    source: &Path,
    dir: &Path,
    name: &OsStr,
    sidecar: &Sidecar,
) -> io::Result<PathBuf> {
    let mut body = serde_json::to_vec(sidecar).map_err(io::Error::other)?;
    body.push(b'\n');
    for attempt in 0u32.. {
        let candidate = variant(name, attempt);
        let target = dir.join(&candidate);
        let sidecar_path = sidecar_path(&target);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&sidecar_path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&body)?;
        drop(file);
        match rustix::fs::renameat_with(CWD, source, CWD, &target, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(target),
            Err(rustix::io::Errno::EXIST) => {
                // A request without a sidecar holds the name: leave it be.
                std::fs::remove_file(&sidecar_path)?;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&sidecar_path);
                return Err(e.into());
            }
        }
    }
    unreachable!("u32 attempts exhausted")
}

pub fn sidecar_path(request: &Path) -> PathBuf {
    let mut name = request.file_name().unwrap_or_default().to_os_string();
    name.push(SIDECAR_SUFFIX);
    request.with_file_name(name)
}

/// `x.json`, then `x-1.json`, `x-2.json`, …
pub fn variant(name: &OsStr, attempt: u32) -> OsString {
    if attempt == 0 {
        return name.to_os_string();
    }
    let text = name.to_string_lossy();
    match text.strip_suffix(".json") {
        Some(stem) => format!("{stem}-{attempt}.json").into(),
        None => format!("{text}-{attempt}").into(),
    }
}

/// Renames without ever replacing an existing name; the target gets the
/// first free variant. Used to claim (inbox → processing) and to retry.
pub fn rename_unique(source: &Path, dir: &Path, name: &OsStr) -> io::Result<PathBuf> {
    for attempt in 0u32.. {
        let target = dir.join(variant(name, attempt));
        match rustix::fs::renameat_with(CWD, source, CWD, &target, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(target),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("u32 attempts exhausted")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(outcome: Outcome) -> Sidecar {
        Sidecar {
            outcome,
            error: None,
            from: Some("mayor".into()),
            action: Some("cycle".into()),
            session: Some("gt-mayor".into()),
            finished_at: Utc::now(),
            daemon_pid: 1,
        }
    }

    #[test]
    fn never_overwrites_and_keeps_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        for (i, bytes) in [b"first".as_slice(), b"second".as_slice()]
            .iter()
            .enumerate()
        {
            std::fs::write(src.join("x.json"), bytes).unwrap();
            let path = file_into(
                &src.join("x.json"),
                &dst,
                OsStr::new("x.json"),
                &sidecar(Outcome::Processed),
            )
            .unwrap();
            assert_eq!(path, dst.join(if i == 0 { "x.json" } else { "x-1.json" }));
            assert_eq!(std::fs::read(&path).unwrap(), *bytes);
            let side: Sidecar =
                serde_json::from_slice(&std::fs::read(sidecar_path(&path)).unwrap()).unwrap();
            assert_eq!(side.outcome, Outcome::Processed);
        }
        // A name taken by a request without sidecar is skipped too.
        std::fs::write(dst.join("y.json"), b"other").unwrap();
        std::fs::write(src.join("y.json"), b"mine").unwrap();
        let path = file_into(
            &src.join("y.json"),
            &dst,
            OsStr::new("y.json"),
            &sidecar(Outcome::Failed),
        )
        .unwrap();
        assert_eq!(path, dst.join("y-1.json"));
        assert_eq!(std::fs::read(dst.join("y.json")).unwrap(), b"other");
        assert!(!dst.join("y.json.result.json").exists());
    }
}
