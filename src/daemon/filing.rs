//! Filing a request's outcome: `processed/` or `failed/`, original bytes
//! untouched, plus the `X.json.result.json` sidecar (see [`crate::outcome`]).
//!
//! The sidecar is created first (with `O_EXCL`, which also claims the name),
//! then the request is renamed beside it with `RENAME_NOREPLACE`: nothing is
//! ever overwritten, and a crash between the two steps leaves a sidecar
//! that recovery uses to finish the move instead of calling the request
//! interrupted. Durability is batched: one `syncfs` after a batch.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::fs::{rename_noreplace, variant};
use crate::outcome::{sidecar_path, Outcome, Sidecar};
use crate::town::Town;

pub(crate) struct Filer {
    processing: PathBuf,
    processed: PathBuf,
    failed: PathBuf,
    /// Any directory of the town's filesystem, for `syncfs`.
    fs_handle: File,
}

impl Filer {
    pub(crate) fn new(town: &Town) -> io::Result<Self> {
        Ok(Filer {
            processing: town.processing(),
            processed: town.processed(),
            failed: town.failed(),
            fs_handle: File::open(town.daemon_dir())?,
        })
    }

    pub(crate) fn dir_for(&self, outcome: Outcome) -> &Path {
        match outcome {
            Outcome::Processed => &self.processed,
            Outcome::Failed => &self.failed,
        }
    }

    /// Moves `processing/NAME` to its outcome directory beside its sidecar;
    /// returns the final path (the name gets a suffix if it was taken).
    pub(crate) fn file(&self, name: &OsStr, sidecar: &Sidecar) -> io::Result<PathBuf> {
        file_into(
            &self.processing.join(name),
            self.dir_for(sidecar.outcome),
            name,
            sidecar,
        )
    }

    /// Makes everything filed so far survive power loss: one flush for the
    /// whole batch instead of an fsync per file and directory.
    pub(crate) fn sync(&self) -> io::Result<()> {
        rustix::fs::syncfs(&self.fs_handle).map_err(Into::into)
    }

    /// Makes claims (renames into processing/) durable before a request
    /// with side effects runs, so power loss cannot bring it back to inbox/.
    pub(crate) fn sync_claims(&self) -> io::Result<()> {
        crate::fs::sync_dir(&self.processing)
    }
}

/// Files `source` into `dir` under `name` or the first free variant of it.
pub(crate) fn file_into(
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
        match rename_noreplace(source, &target) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A request without a sidecar holds the name: leave it be.
                std::fs::remove_file(&sidecar_path)?;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&sidecar_path);
                return Err(e);
            }
        }
    }
    unreachable!("u32 attempts exhausted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

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
