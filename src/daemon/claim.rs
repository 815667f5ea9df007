//! Claiming: a request is taken out of `inbox/` by renaming it into
//! `processing/`, the one step that makes each file handled once (a
//! vanished source means another consumer got it). A name too long to file
//! is claimed under a shortened one. A claim that fails for another reason
//! is reported and tried again later, never skipped silently.

use std::ffi::{OsStr, OsString};
use std::io;

use super::filing;
use crate::fs::rename_unique;
use crate::inbox::{self, MAX_NAME_BYTES};
use crate::text::escape_os;
use crate::town::Town;

/// What a claim came to.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Now `processing/NAME`; `original` is the name it arrived under, when
    /// it had to be shortened.
    Claimed {
        name: OsString,
        original: Option<String>,
    },
    /// Gone from the inbox: already handled.
    Gone,
    /// Still in the inbox: the rename failed, even after the daemon's
    /// directories were recreated (said in the log).
    Failed,
}

/// Claims `inbox/NAME`.
pub(crate) fn claim(town: &Town, name: &OsStr) -> Claim {
    let source = town.inbox().join(name);
    let (target, original) = if name.len() > MAX_NAME_BYTES {
        let original = name.to_string_lossy().into_owned();
        (inbox::shortened(name), Some(original))
    } else {
        (name.to_os_string(), None)
    };
    let mut healed = false;
    loop {
        match rename_unique(&source, &town.processing(), &target) {
            Ok(path) => {
                let name = path.file_name().unwrap_or(&target).to_os_string();
                return Claim::Claimed { name, original };
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(&source).is_err() =>
            {
                return Claim::Gone
            }
            Err(_) if !healed && filing::heal_dirs(town) => healed = true,
            Err(e) => {
                tracing::error!(file = %escape_os(name), "cannot claim a request into processing/ ({e}); it stays in the inbox and is tried again");
                return Claim::Failed;
            }
        }
    }
}

/// Makes the claims (renames into `processing/`) durable. A request with
/// side effects runs only after this: power loss must not bring it back
/// to `inbox/`, to run twice.
pub(crate) fn make_durable(town: &Town) -> io::Result<()> {
    crate::fs::sync_dir(&town.processing())
}

/// Why a request claimed under a shortened name (its own, `original`, was
/// too long to file) is refused.
pub(crate) fn too_long(original: &str) -> String {
    format!(
        "file name too long: {} bytes, at most {MAX_NAME_BYTES} (so that it can be filed); \
         filed under a shortened name, the original is in this sidecar's original_name",
        original.len()
    )
}

/// Puts `processing/NAME`, claimed but never run, back into the inbox;
/// returns its name there (a suffix if the name was taken meanwhile).
pub(crate) fn unclaim(town: &Town, name: &OsStr) -> io::Result<OsString> {
    let back = rename_unique(&town.processing().join(name), &town.inbox(), name)?;
    Ok(back.file_name().unwrap_or(name).to_os_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn town() -> (tempfile::TempDir, Town) {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        (dir, town)
    }

    #[test]
    fn a_claim_moves_the_file_once() {
        let (_dir, town) = town();
        std::fs::write(town.inbox().join("a.json"), b"{}").unwrap();
        let Claim::Claimed { name, original } = claim(&town, OsStr::new("a.json")) else {
            panic!("not claimed")
        };
        assert_eq!((name.to_str(), original), (Some("a.json"), None));
        assert!(town.processing().join("a.json").exists());
        assert!(matches!(claim(&town, OsStr::new("a.json")), Claim::Gone));
        assert_eq!(unclaim(&town, &name).unwrap(), "a.json");
        assert!(town.inbox().join("a.json").exists());
    }

    #[test]
    fn a_name_too_long_to_file_is_claimed_shortened() {
        let (_dir, town) = town();
        let long = format!("{}.json", "x".repeat(240));
        std::fs::write(town.inbox().join(&long), b"{}").unwrap();
        let Claim::Claimed { name, original } = claim(&town, OsStr::new(&long)) else {
            panic!("not claimed")
        };
        assert_eq!(name, inbox::shortened(OsStr::new(&long)));
        assert_eq!(original.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn a_missing_processing_directory_is_recreated_and_a_blocked_one_reported() {
        let (_dir, town) = town();
        std::fs::write(town.inbox().join("a.json"), b"{}").unwrap();
        std::fs::remove_dir(town.processing()).unwrap();
        assert!(matches!(
            claim(&town, OsStr::new("a.json")),
            Claim::Claimed { .. }
        ));
        std::fs::write(town.inbox().join("b.json"), b"{}").unwrap();
        std::fs::remove_dir_all(town.processing()).unwrap();
        std::fs::write(town.processing(), b"in the way").unwrap();
        assert!(matches!(claim(&town, OsStr::new("b.json")), Claim::Failed));
        assert!(town.inbox().join("b.json").exists(), "left in the inbox");
    }
}
