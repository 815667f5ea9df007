//! Publishing a request the Maildir way, for `gt daemon send` and `retry`.
//!
//! Write `inbox/.NAME.tmp`, fsync, rename to `inbox/NAME.json`, fsync the
//! directory: the daemon sees a complete file or none, and once we return
//! the request survives a crash.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{SecondsFormat, Utc};

use crate::request::Action;
use crate::town::Town;

/// Publishes `{from, action, timestamp: now}`; returns the request's path.
pub(crate) fn publish(town: &Town, from: &str, action: Action) -> io::Result<PathBuf> {
    let now = Utc::now();
    let body = serde_json::json!({
        "from": from,
        "action": action.as_str(),
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    let inbox = town.inbox();
    std::fs::create_dir_all(&inbox)?;
    // Sortable by time (the daemon scans in name order), unique per process.
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{}-{}-{}.json",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = inbox.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let result = (|| {
        serde_json::to_writer(&mut file, &body)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        let path = inbox.join(&name);
        std::fs::rename(&tmp, &path)?;
        crate::fs::sync_dir(&inbox)?;
        Ok(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
