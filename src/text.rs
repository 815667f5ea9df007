//! Text for people: untrusted strings made safe to show, and the one way
//! times are shown.
//!
//! File names and request fields are written by whoever can write to the
//! inbox. Printed raw, a newline forges a log line, `ESC ] 2 ;` retitles the
//! operator's window, `ESC [ 2 J` clears it, and a bidi override makes a
//! name read backwards. So every such string goes through [`escape`] (or
//! [`escape_os`] for a file name) wherever it is displayed or logged; the
//! sidecars keep the raw value, as data.
//!
//! Escapes: `\n`, `\r`, `\t`, `\xNN` for the other ASCII controls and for
//! bytes that are not UTF-8, `\u{NNNN}` for the other characters that
//! steer a terminal (C1 controls, bidi controls, line and paragraph
//! separators). Everything else, backslashes included, is shown as it is.
//!
//! Times: `2026-11-26 12:41:05Z` (RFC 3339 with a space), the same in
//! `status`, `requests` and the log (which adds milliseconds); with
//! `--local`, the local offset instead of `Z`. Sizes of memory: `12.5 MiB`
//! ([`mebibytes`]).

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use chrono::{DateTime, Local, NaiveDateTime, Utc};

/// Characters that can move the cursor, rewrite the screen or the window
/// title, or reorder what is shown.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_ascii() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `text` with every character that could steer a terminal escaped.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_keeping(text, |_| false)
}

/// [`escape`], except for the characters `keep` says to leave alone.
fn escape_keeping(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_at = |c: char| is_unsafe(c) && !keep(c);
    if !text.chars().any(unsafe_at) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_at(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A file name (any bytes) as safe text: [`escape`], and `\xNN` for bytes
/// that are not UTF-8. [`unescape_os`] reverses it.
pub fn escape_os(name: &OsStr) -> Cow<'_, str> {
    escape_bytes(name.as_bytes(), |_| false)
}

fn escape_bytes(bytes: &[u8], keep: impl Fn(char) -> bool + Copy) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return escape_keeping(text, keep);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape_keeping(chunk.valid(), keep));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// The name that [`escape_os`] showed as `shown`, when `shown` holds
/// escapes; `None` when it holds none (or a malformed one).
pub fn unescape_os(shown: &OsStr) -> Option<OsString> {
    let bytes = shown.as_bytes();
    if !bytes.contains(&b'\\') {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let rest = &bytes[i + 1..];
        let simple = match rest.first()? {
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        match rest.first()? {
            b'x' => {
                let hex = std::str::from_utf8(rest.get(1..3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            b'u' => {
                let close = rest.iter().position(|&b| b == b'}')?;
                let hex = std::str::from_utf8(rest.get(2..close)?).ok()?;
                if rest.get(1) != Some(&b'{') {
                    return None;
                }
                let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += 1 + close + 1;
            }
            _ => return None,
        }
    }
    Some(OsString::from_vec(out))
}

/// Serialized JSON made safe to print: the characters serde_json leaves
/// raw inside strings (DEL, C1 controls, bidi controls, line separators)
/// written as `\uNNNN` escapes, so the data a parser reads is unchanged.
/// (serde_json already escapes the ASCII controls; outside strings only
/// whitespace occurs, which is left alone.)
pub fn json_safe(json: &str) -> Cow<'_, str> {
    let bad = |c: char| is_unsafe(c) && (c as u32) >= 0x20;
    if !json.chars().any(bad) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if bad(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Prints `value` as pretty JSON and a newline, safe for a terminal.
pub fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    out.write_all(json_safe(&text).as_bytes())?;
    out.write_all(b"\n")
}

/// Which clock times are shown in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Zone {
    #[default]
    Utc,
    Local,
}

impl Zone {
    /// From a `--local` flag.
    pub fn local_if(local: bool) -> Zone {
        if local {
            Zone::Local
        } else {
            Zone::Utc
        }
    }
}

/// A size of memory for people: `12.5 MiB`.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `2026-11-26 12:41:05Z`, or in local time `2026-11-26 13:41:05+01:00`.
pub fn time(t: DateTime<Utc>, zone: Zone) -> String {
    match zone {
        Zone::Utc => t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        Zone::Local => t
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S%:z")
            .to_string(),
    }
}

/// [`time`] with milliseconds, as log lines carry it.
pub fn log_time(t: DateTime<Utc>, zone: Zone) -> String {
    match zone {
        Zone::Utc => t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
        Zone::Local => t
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S%.3f%:z")
            .to_string(),
    }
}

/// The clock of the daemon's text log lines: [`log_time`] in UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogClock;

impl tracing_subscriber::fmt::time::FormatTime for LogClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&log_time(Utc::now(), Zone::Utc))
    }
}

/// The time a text log line starts with (this format, or RFC 3339 with a
/// `T` as older logs have it), and the rest of the line.
fn leading_log_time(line: &str) -> Option<(DateTime<Utc>, &str)> {
    ["%Y-%m-%d %H:%M:%S%.fZ", "%Y-%m-%dT%H:%M:%S%.fZ"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_and_remainder(line, format).ok())
        .map(|(t, rest)| (t.and_utc(), rest))
}

/// A writer that shows a log safely: line by line, each [`escape`]d (tabs
/// kept), and in local time when asked. A line is written once its newline
/// arrives; [`SafeLines::finish`] writes a last one that has none.
pub struct SafeLines<W: Write> {
    inner: W,
    zone: Zone,
    pending: Vec<u8>,
}

impl<W: Write> SafeLines<W> {
    pub fn new(inner: W, zone: Zone) -> Self {
        SafeLines {
            inner,
            zone,
            pending: Vec::new(),
        }
    }

    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        let shown = escape_bytes(line, |c| c == '\t');
        if self.zone == Zone::Local {
            if let Some((t, rest)) = leading_log_time(&shown) {
                let local = log_time(t, Zone::Local);
                return self.inner.write_all(format!("{local}{rest}").as_bytes());
            }
        }
        self.inner.write_all(shown.as_bytes())
    }

    /// Writes what is left of an unfinished last line, and flushes.
    pub fn finish(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.line(&last)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Write for SafeLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let mut start = 0;
        let pending = std::mem::take(&mut self.pending);
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + end;
            if let Err(e) = self
                .line(&pending[start..end])
                .and_then(|()| self.inner.write_all(b"\n"))
            {
                self.pending = pending[end + 1..].to_vec();
                return Err(e);
            }
            start = end + 1;
        }
        self.pending = pending[start..].to_vec();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_steers_a_terminal_and_nothing_else() {
        assert!(matches!(escape("plain name.json"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\x1b]2;pwned\x07"), "\\x1b]2;pwned\\x07");
        assert_eq!(escape("\x1b[2J"), "\\x1b[2J");
        assert_eq!(escape("x\u{202e}gnp.exe"), "x\\u{202e}gnp.exe");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("a\u{2028}b\x7f"), "a\\u{2028}b\\x7f");
        assert_eq!(escape("tab\there\r"), "tab\\there\\r");
        // Text that is merely unusual stays as it is.
        assert_eq!(escape("rig-ü/witness \\ ok"), "rig-ü/witness \\ ok");
    }

    #[test]
    fn names_of_any_bytes_round_trip() {
        for name in [
            b"nb\xff.json".as_slice(),
            b"a\nb\x1b[2J.json",
            "x\u{202e}y.json".as_bytes(),
            b"\xc3.json",
        ] {
            let shown = escape_os(OsStr::from_bytes(name));
            assert!(!shown.chars().any(is_unsafe), "{shown}");
            assert_eq!(
                unescape_os(OsStr::new(shown.as_ref())).unwrap().as_bytes(),
                name,
                "{shown}"
            );
        }
        assert_eq!(escape_os(OsStr::from_bytes(b"nb\xff.json")), "nb\\xff.json");
        assert_eq!(unescape_os(OsStr::new("plain.json")), None);
        assert_eq!(unescape_os(OsStr::new("bad\\q")), None);
    }

    #[test]
    fn json_stays_the_same_data_without_raw_controls() {
        let value = serde_json::json!({"from": "a\u{202e}b\u{9b}c\x7f\n\x1b"});
        let mut out = Vec::new();
        write_json(&mut out, &value).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.trim_end().chars().any(|c| is_unsafe(c) && c != '\n'),
            "{text:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn one_time_format() {
        let t: DateTime<Utc> = "2026-11-26T12:41:05.672139Z".parse().unwrap();
        assert_eq!(time(t, Zone::Utc), "2026-11-26 12:41:05Z");
        assert_eq!(log_time(t, Zone::Utc), "2026-11-26 12:41:05.672Z");
        let (back, rest) = leading_log_time("2026-11-26 12:41:05.672Z  INFO x").unwrap();
        assert_eq!(back.timestamp_millis(), t.timestamp_millis());
        assert_eq!(rest, "  INFO x");
        assert!(leading_log_time("2026-11-26T12:41:05.672139Z  INFO x").is_some());
        assert!(leading_log_time("{\"timestamp\":1}").is_none());
    }

    #[test]
    fn log_lines_are_escaped_whole_across_writes() {
        let mut out = SafeLines::new(Vec::new(), Zone::Utc);
        out.write_all(b"one\x1b[2J\tx\n\xe2\x80").unwrap();
        out.write_all(b"\xaeback\nlast").unwrap();
        out.finish().unwrap();
        assert_eq!(
            String::from_utf8(out.inner).unwrap(),
            "one\\x1b[2J\tx\n\\u{202e}back\nlast"
        );
    }
}
