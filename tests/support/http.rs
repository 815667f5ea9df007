//! HTTP to the daemon's metrics endpoint and to a test Prometheus: on this
//! machine's loopback only, every call bounded by a deadline.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The longest one HTTP exchange may take.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// A response: status, Content-Type and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// GET `http://127.0.0.1:PORT/PATH`.
pub fn get(port: u16, path: &str) -> Result<Reply, String> {
    get_accepting(port, path, "*/*")
}

/// GET with an `Accept` header.
pub fn get_accepting(port: u16, path: &str, accept: &str) -> Result<Reply, String> {
    get_url(&format!("http://127.0.0.1:{port}{path}"), accept)
}

/// GET a full URL, which must name a loopback address.
pub fn get_url(url: &str, accept: &str) -> Result<Reply, String> {
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once(':'))
        .map(|(host, _port)| host.trim_matches(['[', ']']))
        .unwrap_or_default();
    assert!(
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        "tests talk to loopback addresses only, not {url}"
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(CALL_DEADLINE))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Accept", accept)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok(Reply {
        status: response.status().as_u16(),
        content_type,
        body,
    })
}

/// GET `path` over a unix socket (HTTP/1.0, so the server closes the
/// connection after its answer); only the status and body are read.
pub fn get_unix(socket: &Path, path: &str) -> Result<Reply, String> {
    let fail = |e: std::io::Error| format!("GET {path} on {}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(fail)?;
    stream.set_read_timeout(Some(CALL_DEADLINE)).map_err(fail)?;
    stream
        .set_write_timeout(Some(CALL_DEADLINE))
        .map_err(fail)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(fail)?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(fail)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok(Reply {
        status,
        content_type: String::new(),
        body: body.to_string(),
    })
}
