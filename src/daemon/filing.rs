//! Filing a request's outcome: `processed/` or `failed/`, original bytes
//! untouched, plus the `X.json.result.json` sidecar (see [`crate::outcome`]).
//!
//! The sidecar is created first (with `O_EXCL`, which also claims the name),
//! then the request is renamed beside it with `RENAME_NOREPLACE`: nothing is
//! ever overwritten, and a crash between the two steps leaves a sidecar
//! that recovery uses to finish the move instead of calling the request
//! interrupted. Making it durable is the ledger's job, batched.
//!
//! When an executed request cannot be filed (disk full, an outcome
//! directory gone or read-only), its outcome is kept in a journal entry
//! beside it in `processing/` (`.NAME.result.json`), so that a restarted
//! daemon files it with its real outcome instead of calling it interrupted.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::fs::{rename_noreplace, variant};
use crate::outcome::{read_sidecar, sidecar_path, Outcome, Sidecar, SIDECAR_SUFFIX};
use crate::town::Town;

/// A request filed for good: where it is, and its sidecar (for the ledger
/// to make durable).
pub(crate) struct Filed {
    pub(crate) path: PathBuf,
    pub(crate) sidecar: PathBuf,
}

pub(crate) struct Filer {
    town: Town,
}

impl Filer {
    pub(crate) fn new(town: &Town) -> Self {
        Filer { town: town.clone() }
    }

    /// Moves `processing/NAME` to its outcome directory beside its sidecar
    /// (the name gets a suffix if it was taken).
    pub(crate) fn file(&self, name: &OsStr, sidecar: &Sidecar) -> io::Result<Filed> {
        file_into(
            &self.town.processing().join(name),
            &sidecar.outcome.dir(&self.town),
            name,
            sidecar,
        )
    }

    /// Makes claims (renames into processing/) durable before a request
    /// with side effects runs, so power loss cannot bring it back to inbox/.
    pub(crate) fn sync_claims(&self) -> io::Result<()> {
        crate::fs::sync_dir(&self.town.processing())
    }

    /// Remembers the outcome of the executed request `processing/NAME`
    /// until it can be filed.
    pub(crate) fn journal(&self, name: &OsStr, sidecar: &Sidecar) -> io::Result<()> {
        let body = sidecar_bytes(sidecar)?;
        crate::fs::write_atomic(&self.journal_path(name), &body, None)
    }

    /// The journalled outcome of `processing/NAME`, if any.
    pub(crate) fn journaled(&self, name: &OsStr) -> Option<Sidecar> {
        read_sidecar(&self.journal_path(name))
    }

    pub(crate) fn forget_journal(&self, name: &OsStr) {
        let _ = std::fs::remove_file(self.journal_path(name));
    }

    fn journal_path(&self, name: &OsStr) -> PathBuf {
        let mut journal = OsString::from(".");
        journal.push(name);
        journal.push(SIDECAR_SUFFIX);
        self.town.processing().join(journal)
    }
}

/// Is this entry of `processing/` a journal entry rather than a request?
pub(crate) fn is_journal_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

fn sidecar_bytes(sidecar: &Sidecar) -> io::Result<Vec<u8>> {
    let mut body = serde_json::to_vec(sidecar).map_err(io::Error::other)?;
    body.push(b'\n');
    Ok(body)
}

/// Files `source` into `dir` under `name` or the first free variant of it.
pub(crate) fn file_into(
    source: &std::path::Path,
    dir: &std::path::Path,
    name: &OsStr,
    sidecar: &Sidecar,
) -> io::Result<Filed> {
    let body = sidecar_bytes(sidecar)?;
    for attempt in 0u32.. {
        let target = dir.join(variant(name, attempt));
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
        if let Err(e) = file.write_all(&body) {
            // Never leave a sidecar that says nothing (a full disk).
            let _ = std::fs::remove_file(&sidecar_path);
            return Err(e);
        }
        match rename_noreplace(source, &target) {
            Ok(()) => {
                return Ok(Filed {
                    path: target,
                    sidecar: sidecar_path,
                })
            }
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

/// Whichever outcome directory already holds a complete sidecar for NAME
/// without the request beside it: a crash came between the two steps of
/// filing, and the move is to be finished. A sidecar cut short (the crash
/// came while it was being written) proves nothing and is removed, so the
/// request is filed afresh under that name.
pub(crate) fn half_filed(town: &Town, name: &OsStr) -> Option<PathBuf> {
    Outcome::ALL.into_iter().map(|o| o.dir(town)).find(|dir| {
        let sidecar = sidecar_path(&dir.join(name));
        if dir.join(name).exists() || !sidecar.exists() {
            return false;
        }
        if read_sidecar(&sidecar).is_some() {
            return true;
        }
        tracing::warn!(sidecar = %crate::text::escape_os(sidecar.as_os_str()), "removing a sidecar cut short by a crash");
        let _ = std::fs::remove_file(&sidecar);
        false
    })
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
            original_name: None,
            seq: None,
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
            .unwrap()
            .path;
            assert_eq!(path, dst.join(if i == 0 { "x.json" } else { "x-1.json" }));
            assert_eq!(std::fs::read(&path).unwrap(), *bytes);
            let side = read_sidecar(&sidecar_path(&path)).unwrap();
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
        .unwrap()
        .path;
        assert_eq!(path, dst.join("y-1.json"));
        assert_eq!(std::fs::read(dst.join("y.json")).unwrap(), b"other");
        assert!(!dst.join("y.json.result.json").exists());
    }

    #[test]
    fn journal_round_trips_beside_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        let filer = Filer::new(&town);
        let name = OsStr::new("a.json");
        assert!(filer.journaled(name).is_none());
        filer.journal(name, &sidecar(Outcome::Failed)).unwrap();
        let back = filer.journaled(name).unwrap();
        assert_eq!(back.outcome, Outcome::Failed);
        let names: Vec<_> = std::fs::read_dir(town.processing())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.iter().all(|n| is_journal_name(n)), "{names:?}");
        filer.forget_journal(name);
        assert!(filer.journaled(name).is_none());
    }
}
