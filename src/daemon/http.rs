//! The monitoring endpoint, when `metrics_listen` is set: `/metrics` (the
//! Prometheus text format), `/healthz` and `/readyz` (plain text, or JSON
//! with `?format=json` or `Accept: application/json`), on a loopback TCP
//! port or a unix socket.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;

use super::health::{verdict, TEXT};
use super::metrics::Metrics;
use super::stop::StopFlag;
use crate::config::ListenAddr;

#[derive(Debug, Error)]
pub(crate) enum EndpointError {
    #[error("cannot serve metrics on {addr} (metrics_listen): {source}")]
    Listen {
        addr: ListenAddr,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot serve metrics on {addr} (metrics_listen): {why}")]
    Socket { addr: ListenAddr, why: String },
    #[error("cannot start the metrics thread: {0}")]
    Thread(io::Error),
}

/// The HTTP endpoint: one thread answering requests in turn (tiny_http
/// reads them on its own threads). Closed when dropped.
pub(crate) struct Server {
    http: Arc<tiny_http::Server>,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

/// Starts serving `metrics` on `listen`.
pub(crate) fn serve(
    listen: &ListenAddr,
    metrics: Arc<Metrics>,
    stop: Arc<StopFlag>,
) -> Result<Server, EndpointError> {
    let listen_error = |source| EndpointError::Listen {
        addr: listen.clone(),
        source,
    };
    let (http, socket) = match listen {
        ListenAddr::Tcp(addr) => (tiny_http::Server::http(addr).map_err(listen_error)?, None),
        ListenAddr::Unix(path) => {
            clear_stale_socket(path).map_err(|why| EndpointError::Socket {
                addr: listen.clone(),
                why,
            })?;
            let http = tiny_http::Server::http_unix(path).map_err(listen_error)?;
            (http, Some(path.clone()))
        }
    };
    let http = Arc::new(http);
    let closing = Arc::new(AtomicBool::new(false));
    let thread = {
        let (http, closing) = (http.clone(), closing.clone());
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || answer(&http, &metrics, &stop, &closing))
            .map_err(EndpointError::Thread)?
    };
    let shown = match http.server_addr() {
        tiny_http::ListenAddr::IP(addr) => addr.to_string(),
        tiny_http::ListenAddr::Unix(_) => listen.to_string(),
    };
    tracing::info!(listen = %shown, "serving /metrics, /healthz and /readyz");
    Ok(Server {
        http,
        closing,
        thread: Some(thread),
        socket,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        self.http.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket left by a daemon that died is removed; a live one (another
/// town's daemon configured with the same path) or anything that is not a
/// socket is left alone, and the start fails.
fn clear_stale_socket(path: &std::path::Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(m) if !m.file_type().is_socket() => {
            Err("the path exists and is not a socket; remove it or choose another".into())
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            Err("another process is serving on this socket".into())
        }
        Ok(_) => {
            std::fs::remove_file(path).map_err(|e| format!("cannot remove a stale socket: {e}"))
        }
    }
}

fn answer(http: &tiny_http::Server, metrics: &Metrics, stop: &StopFlag, closing: &AtomicBool) {
    loop {
        match http.recv() {
            Ok(request) => respond(request, metrics, stop),
            Err(_) if closing.load(Ordering::Acquire) => return,
            Err(e) => {
                tracing::error!("the metrics endpoint stopped accepting connections: {e}");
                return;
            }
        }
    }
}

fn respond(request: tiny_http::Request, metrics: &Metrics, stop: &StopFlag) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let wants_json = query.split('&').any(|p| p == "format=json")
        || request
            .headers()
            .iter()
            .any(|h| h.field.equiv("Accept") && h.value.as_str().contains("application/json"));
    let get = matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    let (status, content_type, body) = if !get {
        (405, TEXT, "only GET and HEAD are served\n".to_string())
    } else {
        match path {
            "/metrics" if metrics.exported() => (
                200,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                metrics.exposition(),
            ),
            "/healthz" => verdict(&metrics.health().healthz(), wants_json),
            "/readyz" => verdict(&metrics.health().readyz(stop.is_set()), wants_json),
            "/" => (
                200,
                TEXT,
                "gt daemon: /metrics /healthz /readyz (?format=json)\n".into(),
            ),
            _ => (
                404,
                TEXT,
                "not found: try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    };
    let header = tiny_http::Header::from_bytes("Content-Type", content_type)
        .expect("a constant, valid header");
    let response = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header);
    if let Err(e) = request.respond(response) {
        tracing::debug!("metrics endpoint: cannot answer {path}: {e}");
    }
}
