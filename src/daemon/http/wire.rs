//! HTTP/1.x as the endpoint speaks it: a request head read into its
//! line and the one header that matters (`Accept`), and whole answers
//! that say their length and close the connection.

use crate::daemon::health::TEXT;

/// The largest request head (request line and headers) read.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// Where the head ends (after its blank line), if it has.
pub(super) fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(super) fn too_large() -> Vec<u8> {
    response(
        431,
        TEXT,
        &format!("the request head is over {MAX_HEAD} bytes\n"),
        true,
        &[],
    )
}

/// What is read of a request: its line and the one header that matters.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Request<'a> {
    pub(super) method: &'a str,
    pub(super) target: &'a str,
    pub(super) accept: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// Parses a head (the blank line included); the error is the status to
    /// answer with.
    pub(super) fn parse(head: &'a [u8]) -> Result<Request<'a>, u16> {
        let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let line = lines.next().ok_or(400u16)?;
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(400);
        };
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
        if !token(method) || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
            return Err(400);
        }
        if !target.starts_with('/') && method != "OPTIONS" {
            return Err(400);
        }
        let mut accept = None;
        for header in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = header.split_once(':').ok_or(400u16)?;
            if name.is_empty() || name.contains([' ', '\t']) {
                return Err(400);
            }
            if name.eq_ignore_ascii_case("accept") {
                accept = Some(value.trim());
            }
        }
        Ok(Request {
            method,
            target,
            accept,
        })
    }
}

pub(super) fn response(
    status: u16,
    content_type: &str,
    body: &str,
    with_body: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    let mut bytes = head.into_bytes();
    if with_body {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let r = Request::parse(
            b"GET /healthz?format=json HTTP/1.1\r\nHost: x\r\nACCEPT: application/json\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET",
                target: "/healthz?format=json",
                accept: Some("application/json"),
            }
        );
        let r = Request::parse(b"HEAD / HTTP/1.0\n\n").unwrap();
        assert_eq!((r.method, r.target, r.accept), ("HEAD", "/", None));
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"G3T / HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(
                Request::parse(bad),
                Err(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn answers_say_their_length_and_close() {
        let text = String::from_utf8(response(
            405,
            TEXT,
            "only GET\n",
            true,
            &[("Allow", "GET, HEAD")],
        ))
        .unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 9\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\nonly GET\n"
        );
        let head_only = response(200, TEXT, "ok\n", false, &[]);
        assert!(head_only.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }
}
