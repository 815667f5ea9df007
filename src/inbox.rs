//! The inbox as seen from anywhere: which names are requests, what is
//! pending. Watching it is the daemon's business (`daemon::watch`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// Requests are `*.json`; dot-names are writes in progress.
pub(crate) fn is_request_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.starts_with(b".") && bytes.ends_with(b".json") && bytes.len() > ".json".len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names() {
        assert!(is_request_name("a.json".as_ref()));
        assert!(!is_request_name(".a.json".as_ref()));
        assert!(!is_request_name(".a.tmp".as_ref()));
        assert!(!is_request_name("a.json.tmp".as_ref()));
        assert!(!is_request_name(".json".as_ref()));
    }
}
