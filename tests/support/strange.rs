//! Files a hostile local user can put where the daemon and `gt` expect
//! their own (config.json, state.json, supervise.json, a sidecar ...): a
//! FIFO (opening it for reading blocks), a symbolic link to `/dev/zero`
//! (endless), a directory, a huge file. The library must refuse each with
//! its reason, at once.

use std::path::Path;

/// Each kind of strange file, and the words `gt` names it with.
pub const STRANGE: [(&str, &str); 4] = [
    ("fifo", "a FIFO (never opened)"),
    ("dev-zero", "a device (never opened)"),
    ("directory", "a directory"),
    ("huge", "file is too large"),
];

/// Makes a FIFO at `path`. rustix wraps mkfifoat(2) only where the C
/// library has it (not macOS), where mkfifo(1) does the same.
pub fn mkfifo(path: &Path) {
    #[cfg(target_os = "linux")]
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_bits_truncate(0o644),
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
    #[cfg(not(target_os = "linux"))]
    assert!(
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success()),
        "mkfifo {}",
        path.display()
    );
}

/// How large a huge file is: past every limit of the files the town holds
/// (the largest, restart_state.json's, is 16 MiB). It is sparse, so it
/// costs no disk, only a reader that reads it whole.
pub const HUGE: u64 = 64 * 1024 * 1024;

/// Replaces whatever is at `path` with a strange file of `kind` (one of
/// [`STRANGE`]). A huge one starts with `{}`, then holds zeros up to
/// [`HUGE`] bytes: its size alone refuses it.
pub fn make_strange(path: &Path, kind: &str) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
    match kind {
        "fifo" => mkfifo(path),
        "dev-zero" => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
        "directory" => std::fs::create_dir(path).unwrap(),
        "huge" => {
            std::fs::write(path, b"{}").unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(HUGE))
                .unwrap();
        }
        _ => unreachable!("{kind}"),
    }
}
