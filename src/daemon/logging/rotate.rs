//! `daemon.log`, rotated by size: once a write takes it past `max_bytes`
//! it becomes `daemon.log.1`, `.1` becomes `.2`, and so on up to `keep`
//! (the oldest is replaced). This is what the `file-rotate` crate did, but
//! it asserts that every rotated file it expects is there (a person who
//! deletes `daemon.log.2`, or logrotate leaving a `daemon.log.1`, made the
//! daemon panic in its logger) and reopens the log by path without
//! looking at what is there now. Here a missing or stuck rotated file is
//! skipped, the log is reopened only through [`crate::fs::open_append`]
//! (a FIFO or device put in its place is refused, never written to), and
//! a log that cannot be opened loses lines until it can, never the daemon.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) struct Rotating {
    path: PathBuf,
    keep: usize,
    max_bytes: u64,
    /// `None` while the log cannot be opened (tried again at each line).
    file: Option<File>,
    written: u64,
}

impl Rotating {
    /// `path` was opened once already (by the start's check).
    pub(crate) fn new(path: &Path, keep: usize, max_bytes: u64) -> Rotating {
        let mut log = Rotating {
            path: path.to_path_buf(),
            keep: keep.max(1),
            max_bytes,
            file: None,
            written: 0,
        };
        log.open();
        log
    }

    fn open(&mut self) {
        self.file = crate::fs::open_append(&self.path).ok();
        self.written = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
    }

    fn generation(&self, n: usize) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts each generation up one (whatever is missing is skipped; a
    /// rename that fails leaves that file where it was), then the log
    /// becomes `.1` and a new one is opened.
    fn rotate(&mut self) {
        self.file = None;
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(self.generation(n), self.generation(n + 1));
        }
        let _ = std::fs::rename(&self.path, self.generation(1));
        self.open();
    }
}

impl Write for Rotating {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.file.is_none() {
            self.open();
        }
        // A log that cannot be opened takes the line and drops it: the
        // daemon's work goes on, and the state and status say the rest.
        let Some(file) = self.file.as_mut() else {
            return Ok(buf.len());
        };
        file.write_all(buf)?;
        self.written += buf.len() as u64;
        if self.written > self.max_bytes {
            self.rotate();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(log: &mut Rotating, n: usize) {
        for i in 0..n {
            writeln!(log, "line {i:04} of some length").unwrap();
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_keep_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        std::fs::write(&path, b"").unwrap();
        let mut log = Rotating::new(&path, 3, 100);
        lines(&mut log, 40);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["daemon.log", "daemon.log.1", "daemon.log.2", "daemon.log.3"]
        );
    }

    #[test]
    fn a_generation_deleted_or_in_the_way_never_stops_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        // What logrotate or a person may leave: a stray .1, no .2, and a
        // directory where .3 would go.
        std::fs::write(&path, b"").unwrap();
        std::fs::write(dir.path().join("daemon.log.1"), b"stray\n").unwrap();
        std::fs::create_dir(dir.path().join("daemon.log.3")).unwrap();
        let mut log = Rotating::new(&path, 3, 100);
        lines(&mut log, 20);
        std::fs::remove_file(dir.path().join("daemon.log.2")).unwrap();
        lines(&mut log, 20);
        writeln!(log, "still here").unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(now.ends_with("still here\n"), "{now:?}");
        assert!(dir.path().join("daemon.log.3").is_dir());
    }

    #[test]
    fn a_fifo_in_the_logs_place_is_never_opened_and_lines_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        crate::fs::make_fifo(&path);
        let mut log = Rotating::new(&path, 2, 100);
        assert!(log.file.is_none());
        // Never blocks, never fails the caller.
        writeln!(log, "dropped").unwrap();
        assert!(log.file.is_none());
        // Once it is a file again, lines go there.
        std::fs::remove_file(&path).unwrap();
        writeln!(log, "kept").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept\n");
    }
}
