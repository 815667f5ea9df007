//! `gt daemon logs`: the tail of daemon.log, optionally followed.
//!
//! The tail is found by reading the file backwards in fixed-size blocks, so
//! a large log costs a few reads, never its size in memory. Following polls
//! the path: when the daemon rotates (renames `daemon.log` to
//! `daemon.log.1` and starts a new `daemon.log`) the rest of the old file is
//! read through the still-open handle before the new file is opened from its
//! start, so no line is lost or repeated.
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use thiserror::Error;

use crate::town::Town;

/// Size of the blocks read backwards when looking for the tail.
const BLOCK: usize = 64 * 1024;
/// How often `--follow` looks for new lines and for rotation.
const POLL: Duration = Duration::from_millis(150);

/// Print the daemon's log.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Print the last lines of <town>/daemon/daemon.log.\n\n\
                  When daemon.log was rotated recently and holds fewer than N lines, the \
                  missing ones are taken from the end of daemon.log.1.",
    after_help = "Examples:\n  \
                  gt daemon logs                 the last 50 lines\n  \
                  gt daemon logs -n 100\n  \
                  gt daemon logs -f              keeps following across log rotation (Ctrl-C ends it);\n  \
                                                 with no log yet, waits for the daemon to write one\n  \
                  gt daemon logs -n 0 -f         only lines written from now on"
)]
pub struct Args {
    /// Number of lines to print.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are written, across log rotation
    /// (waiting for the log when there is none yet).
    #[arg(short, long)]
    pub follow: bool,
    /// Show the times of text lines in local time ($TZ) instead of UTC.
    #[arg(long)]
    pub local: bool,
}

#[derive(Debug, Error)]
pub enum LogsError {
    #[error("no log at {path}: the daemon has not run in this town yet; start it with `gt daemon start`")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write to stdout: {0}")]
    Stdout(io::Error),
}

pub fn run(town: &Town, args: Args) -> color_eyre::Result<ExitCode> {
    let path = town.log_file();
    // Lines are shown escaped: a log written by an older daemon, or
    // anything else that wrote into it, must not reach the terminal raw.
    let mut stdout =
        crate::text::SafeLines::new(io::stdout().lock(), crate::text::Zone::local_if(args.local));
    let shown = show(&path, args.lines, args.follow, &mut stdout)
        .and_then(|()| stdout.finish().map_err(LogsError::Stdout));
    match shown {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The reader went away (`gt daemon logs -f | head`): a normal end.
        Err(LogsError::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

/// Prints the last `lines` lines of the log at `path` to `out`, then, with
/// `follow`, whatever is appended (never returns unless an error occurs).
/// Following a log that does not exist yet waits for it, then prints it
/// from its first line.
pub fn show(
    path: &Path,
    lines: usize,
    follow: bool,
    out: &mut impl Write,
) -> Result<(), LogsError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LogsError::Read { path, source }
    };
    let (mut file, fresh) = match open_log(path) {
        Ok(f) => (f, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound && follow => {
            eprintln!(
                "gt: no log at {} yet (the daemon has not run in this town); waiting for it",
                path.display()
            );
            (wait_for_file(path).map_err(read_err(path))?, true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(LogsError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(read_err(path)(e)),
    };
    let meta = file.metadata().map_err(read_err(path))?;
    // A log that appeared while we waited is new to the reader: all of it.
    let (start, found) = if fresh {
        (0, lines)
    } else {
        tail_start(&mut file, meta.len(), lines).map_err(read_err(path))?
    };

    // Just after a rotation daemon.log is short: complete the tail from the
    // newest rotated file.
    if found < lines {
        let older = rotated(path, 1);
        if let Ok(mut old) = open_log(&older) {
            let len = old.metadata().map_err(read_err(&older))?.len();
            let (old_start, old_found) =
                tail_start(&mut old, len, lines - found).map_err(read_err(&older))?;
            if old_found > 0 {
                old.seek(SeekFrom::Start(old_start))
                    .map_err(read_err(&older))?;
                let last = copy_range(&mut old, len - old_start, &older, out)?;
                if last != Some(b'\n') {
                    out.write_all(b"\n").map_err(LogsError::Stdout)?;
                }
            }
        }
    }

    file.seek(SeekFrom::Start(start)).map_err(read_err(path))?;
    let mut buf = vec![0; BLOCK];
    let mut pos = start + drain(&mut file, path, &mut buf, out)?;
    if !follow {
        return Ok(());
    }

    let mut id = file_id(&meta);
    loop {
        pos += drain(&mut file, path, &mut buf, out)?;
        match std::fs::metadata(path) {
            Ok(now) if file_id(&now) != id => {
                // Rotated: the writer has moved on to a new file. Finish the
                // old one through our handle, then start the new one.
                drain(&mut file, path, &mut buf, out)?;
                match open_log(path) {
                    Ok(new) => {
                        id = file_id(&new.metadata().map_err(read_err(path))?);
                        file = new;
                        pos = 0;
                        continue;
                    }
                    // Rotated again between the stat and the open: next round.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(read_err(path)(e)),
                }
            }
            Ok(now) if now.len() < pos => {
                eprintln!(
                    "gt: {} was truncated; following it from its start",
                    path.display()
                );
                file.seek(SeekFrom::Start(0)).map_err(read_err(path))?;
                pos = 0;
                continue;
            }
            Ok(_) => {}
            // Between the rename and the creation of the new file: keep
            // reading the old one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(read_err(path)(e)),
        }
        std::thread::sleep(POLL);
    }
}

/// Opens a log (daemon.log or a rotated one) for reading: a regular file
/// only, as every file someone else may have put in the town is opened
/// ([`crate::fs::open_regular`]), so a FIFO or a device in its place is
/// refused with its reason instead of hanging or never ending.
fn open_log(path: &Path) -> io::Result<File> {
    crate::fs::open_regular(path, crate::fs::Links::Follow)?.map_err(io::Error::from)
}

/// Opens `path` once it exists, polling.
fn wait_for_file(path: &Path) -> io::Result<File> {
    loop {
        match open_log(path) {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::thread::sleep(POLL),
            Err(e) => return Err(e),
        }
    }
}

/// `daemon.log` → `daemon.log.N`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Where the last `n` lines of `file` (of length `len`) start, and how many
/// lines there are from there (fewer than `n` when the file is shorter).
/// A final newline ends the last line; it does not start an empty one.
/// Reads backwards in blocks of [`BLOCK`] bytes.
pub fn tail_start(file: &mut (impl Read + Seek), len: u64, n: usize) -> io::Result<(u64, usize)> {
    if n == 0 || len == 0 {
        return Ok((len, 0));
    }
    let mut buf = vec![0; BLOCK];
    let mut end = len;
    let mut separators = 0;
    while end > 0 {
        let start = end.saturating_sub(BLOCK as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        let mut upto = chunk.len();
        while let Some(i) = chunk[..upto].iter().rposition(|&b| b == b'\n') {
            upto = i;
            let at = start + i as u64;
            if at == len - 1 {
                continue;
            }
            separators += 1;
            if separators == n {
                return Ok((at + 1, n));
            }
        }
        end = start;
    }
    Ok((0, separators + 1))
}

/// Copies everything up to the current end of `file` to `out`; returns the
/// number of bytes copied.
fn drain(
    file: &mut File,
    path: &Path,
    buf: &mut [u8],
    out: &mut impl Write,
) -> Result<u64, LogsError> {
    let mut total = 0;
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                out.write_all(&buf[..n]).map_err(LogsError::Stdout)?;
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(LogsError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    out.flush().map_err(LogsError::Stdout)?;
    Ok(total)
}

/// Copies at most `limit` bytes from `file` to `out`; returns the last byte
/// copied.
fn copy_range(
    file: &mut File,
    limit: u64,
    path: &Path,
    out: &mut impl Write,
) -> Result<Option<u8>, LogsError> {
    let mut buf = vec![0; BLOCK];
    let mut left = limit;
    let mut last = None;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => {
                out.write_all(&buf[..n]).map_err(LogsError::Stdout)?;
                last = Some(buf[n - 1]);
                left -= n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(LogsError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn tail(text: &str, n: usize) -> String {
        let mut c = Cursor::new(text.as_bytes().to_vec());
        let (start, _) = tail_start(&mut c, text.len() as u64, n).unwrap();
        text[start as usize..].to_string()
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("", 3), "");
        assert_eq!(tail("\n\n\n", 2), "\n\n");
    }

    #[test]
    fn counts_lines_found() {
        let text = "a\nb\n";
        let mut c = Cursor::new(text.as_bytes().to_vec());
        assert_eq!(tail_start(&mut c, 4, 5).unwrap(), (0, 2));
        assert_eq!(tail_start(&mut c, 4, 1).unwrap(), (2, 1));
    }

    #[test]
    fn across_blocks() {
        let long = "x".repeat(BLOCK * 2 + 17);
        let text: String = (0..300)
            .map(|i| {
                if i % 97 == 3 {
                    format!("{long}{i}\n")
                } else {
                    format!("line {i}\n")
                }
            })
            .collect();
        let all: Vec<&str> = text.split_inclusive('\n').collect();
        for n in [1, 2, 5, 50, 199, 300, 400] {
            let want: String = all[all.len().saturating_sub(n)..].concat();
            assert_eq!(tail(&text, n), want, "n = {n}");
        }
    }
}
