//! The inbox as seen from anywhere: which names are requests, what is
//! pending, and how a request file (in the inbox, or claimed from it) is
//! read. Watching it is the daemon's business (`daemon::watch`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::SystemTime;

use crate::fs::{Links, NotRead};
use crate::request::{Read, Rejection, MAX_REQUEST_BYTES};

/// Requests are `*.json`; dot-names are writes in progress.
pub(crate) fn is_request_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.starts_with(b".") && bytes.ends_with(b".json") && bytes.len() > ".json".len()
}

/// The longest request name that can always be filed: a file system holds
/// names of at most 255 bytes, and filing adds a `-N` suffix on a
/// collision (up to 11 bytes), `.result.json` for the sidecar (12), and a
/// leading `.` for the journal entry (1).
pub const MAX_NAME_BYTES: usize = 255 - 11 - 12 - 1;

/// A name short enough to file, standing for a longer `name`: its first
/// bytes, a hash of the whole name (so two long names sharing a prefix
/// stay apart) and `.json`.
pub fn shortened(name: &OsStr) -> OsString {
    let bytes = name.as_bytes();
    // FNV-1a: stable, and enough to tell names with one prefix apart.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let tail = format!("~{hash:016x}.json");
    let keep = MAX_NAME_BYTES - tail.len();
    let mut out = bytes[..keep.min(bytes.len())].to_vec();
    out.extend_from_slice(tail.as_bytes());
    OsString::from_vec(out)
}

/// The request names in `inbox`, oldest-named first (names from
/// `gt daemon send` start with a timestamp, so this is arrival order).
pub(crate) fn scan(inbox: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = std::fs::read_dir(inbox)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| is_request_name(n))
        .collect();
    names.sort_unstable();
    Ok(names)
}

/// Counts pending requests: names only, no stat per file (the heartbeat
/// does this every interval, however big the inbox).
pub(crate) fn pending_count(inbox: &Path) -> u64 {
    std::fs::read_dir(inbox)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| is_request_name(&e.file_name()))
                .count() as u64
        })
        .unwrap_or(0)
}

/// Counts pending requests and finds the oldest one's modification time.
pub(crate) fn pending(inbox: &Path) -> (u64, Option<SystemTime>) {
    let Ok(entries) = std::fs::read_dir(inbox) else {
        return (0, None);
    };
    let mut count = 0;
    let mut oldest: Option<SystemTime> = None;
    for entry in entries.flatten() {
        if is_request_name(&entry.file_name()) {
            count += 1;
            if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                oldest = Some(oldest.map_or(modified, |o| o.min(modified)));
            }
        }
    }
    (count, oldest)
}

/// Reads a request file the way the daemon must, and the commands that
/// show requests do: regular files only (symlinks are never followed,
/// FIFOs and devices never opened), at most [`MAX_REQUEST_BYTES`]. The
/// reading is [`crate::fs::read_bounded`]'s, shared with config.json.
pub fn read_request(path: &Path) -> Read {
    let read = crate::fs::read_bounded(path, MAX_REQUEST_BYTES, Links::Refuse)?;
    Ok(read.map_err(|refused| match refused {
        NotRead::TooLarge { .. } => Rejection(format!(
            "{refused} (64 KiB); requests are a few hundred bytes"
        )),
        NotRead::NotRegular(_) => Rejection(refused.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_shorten_to_a_fileable_name() {
        let long = OsString::from("a".repeat(250) + ".json");
        let other = OsString::from("a".repeat(249) + "b.json");
        let (s1, s2) = (shortened(&long), shortened(&other));
        assert_eq!(s1.len(), MAX_NAME_BYTES);
        assert_ne!(s1, s2);
        assert!(is_request_name(&s1));
        assert!(s1.as_bytes().starts_with(b"aaaa"));
    }

    #[test]
    fn request_names() {
        assert!(is_request_name("a.json".as_ref()));
        assert!(!is_request_name(".a.json".as_ref()));
        assert!(!is_request_name(".a.tmp".as_ref()));
        assert!(!is_request_name("a.json.tmp".as_ref()));
        assert!(!is_request_name(".json".as_ref()));
    }

    #[test]
    fn strange_files_are_refused_unopened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.json");
        crate::fs::make_fifo(&fifo);
        let r = read_request(&fifo).unwrap().unwrap_err();
        assert!(r.0.contains("FIFO"), "{r}");
        let target = dir.path().join("target");
        std::fs::write(&target, b"{}").unwrap();
        let link = dir.path().join("l.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(read_request(&link)
            .unwrap()
            .unwrap_err()
            .0
            .contains("symbolic link"));
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b'['; 1 << 20]).unwrap();
        assert!(read_request(&big)
            .unwrap()
            .unwrap_err()
            .0
            .contains("too large"));
    }
}
