//! The monitoring endpoint, when `metrics_listen` is set: `/metrics` (the
//! Prometheus text format), `/healthz` and `/readyz` (plain text, or JSON
//! with `?format=json` or `Accept: application/json`), over HTTP/1.0 and
//! 1.1 on a loopback TCP port or a unix socket.
//!
//! Whoever can reach the socket is outside the daemon, so what they can
//! make it spend is bounded, and nothing they do can starve the work that
//! matters (requests, tmux calls, the ledger, state.json):
//!
//! - One thread serves every connection from a `poll(2)` loop: a
//!   connection costs a descriptor and a small buffer, never a thread.
//! - At most [`MAX_CONNECTIONS`] are open at once, and never more than a
//!   quarter of the descriptor limit, so the rest is kept for the daemon's
//!   own work. Past the cap the oldest connection still waiting for its
//!   request is closed to make room: a client that sends its request at
//!   once (as Prometheus does) is answered, one that only holds a
//!   connection open loses it.
//! - A request head must arrive whole within [`HEAD_TIMEOUT`] and fit in
//!   [`MAX_HEAD`] bytes (`431` past that); the answer must be taken within
//!   [`WRITE_TIMEOUT`]. One request per connection (`Connection: close`).
//! - `accept` failing (out of descriptors: `EMFILE`) backs off and tries
//!   again; a panic restarts the loop. While the endpoint is not serving,
//!   the log and state.json say so, and `gt daemon status` reports the
//!   daemon degraded.
//!
//! A hand-written responder rather than an HTTP crate: three GET routes
//! need a request line and one header, and the crates that serve
//! synchronously either spend a thread per connection (tiny_http) or bring
//! an async runtime; here every bound is a constant in this file.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use thiserror::Error;

mod socket;
mod wire;

use super::health::{verdict, TEXT};
use super::metrics::Metrics;
use super::stop::StopFlag;
use crate::config::ListenAddr;
use crate::duration::human;
use crate::state::StateStore;
use socket::{Listener, Stream};
use wire::{head_end, response, too_large, Request, MAX_HEAD};

/// Connections open at once (fewer when the descriptor limit is low).
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// From accepting a connection to having its whole request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// For the client to take the whole answer.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After answering, what the client still sends is read and dropped for
/// this long (and this much), so that closing does not reset the
/// connection before the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);
const MAX_LINGER_BYTES: usize = 64 * 1024;
/// Connections taken from the listen queue per turn of the loop, so a
/// flood of new ones cannot keep those already open from being served.
const ACCEPT_BATCH: usize = 64;
/// Pause after `accept` failed for lack of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);
/// `accept` failing this long counts as not serving.
const FAILING_AFTER: Duration = Duration::from_secs(5);
/// Pauses before restarting after a panic: the first, and the longest.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(60);
/// Closing connections to stay within the cap is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub(crate) enum EndpointError {
    #[error("cannot serve metrics on {addr} (metrics_listen): {source}")]
    Listen { addr: ListenAddr, source: io::Error },
    #[error("cannot serve metrics on {addr} (metrics_listen): {why}")]
    Socket { addr: ListenAddr, why: String },
    #[error("cannot start the metrics thread: {0}")]
    Thread(io::Error),
}

/// What the endpoint answers from, and where it says it is not serving.
pub(crate) struct Context {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: Arc<StopFlag>,
    pub(crate) state: Arc<StateStore>,
    /// Test hook: a GET of `/panic` panics the loop, which restarts after
    /// this pause.
    pub(crate) panic_hook: Option<Duration>,
}

/// The endpoint's thread; closed (and the socket file removed) when
/// dropped.
pub(crate) struct Server {
    /// Written to when closing, to wake the loop.
    wake: UnixStream,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

/// Starts serving on `listen`.
pub(crate) fn serve(listen: &ListenAddr, context: Context) -> Result<Server, EndpointError> {
    let listen_error = |source| EndpointError::Listen {
        addr: listen.clone(),
        source,
    };
    let (listener, shown, socket) = match listen {
        ListenAddr::Tcp(addr) => {
            let l = TcpListener::bind(addr).map_err(listen_error)?;
            let shown = l.local_addr().map_err(listen_error)?.to_string();
            (Listener::Tcp(l), shown, None)
        }
        ListenAddr::Unix(path) => {
            clear_stale_socket(path).map_err(|why| EndpointError::Socket {
                addr: listen.clone(),
                why,
            })?;
            let l = UnixListener::bind(path).map_err(listen_error)?;
            (Listener::Unix(l), listen.to_string(), Some(path.clone()))
        }
    };
    listener.set_nonblocking().map_err(listen_error)?;
    let (wake, woken) = UnixStream::pair().map_err(EndpointError::Thread)?;
    woken.set_nonblocking(true).map_err(EndpointError::Thread)?;
    let closing = Arc::new(AtomicBool::new(false));
    let endpoint = Endpoint {
        listener,
        woken,
        closing: closing.clone(),
        context,
        cap: connection_cap(),
    };
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || endpoint.run())
        .map_err(EndpointError::Thread)?;
    tracing::info!(listen = %shown, "serving /metrics, /healthz and /readyz");
    Ok(Server {
        wake,
        closing,
        thread: Some(thread),
        socket,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        let _ = (&self.wake).write(&[1]);
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
fn clear_stale_socket(path: &Path) -> Result<(), String> {
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

/// [`MAX_CONNECTIONS`], or a quarter of the descriptor limit if less.
fn connection_cap() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    (limit / 4).clamp(1, MAX_CONNECTIONS as u64) as usize
}

/// Where a connection is.
enum Phase {
    /// Reading the request head.
    Head(Vec<u8>),
    /// Writing the answer.
    Answer { bytes: Vec<u8>, sent: usize },
    /// Answered; reading and dropping what the client still sends.
    Linger { dropped: usize },
}

struct Connection {
    stream: Stream,
    phase: Phase,
    /// When the current phase must be over.
    deadline: Instant,
}

enum Step {
    Keep,
    Close,
}

struct Endpoint {
    listener: Listener,
    woken: UnixStream,
    closing: Arc<AtomicBool>,
    context: Context,
    cap: usize,
}

impl Endpoint {
    /// Serves until closed; a panic restarts the loop (the listener stays
    /// open, so clients only wait) after a pause that grows while it keeps
    /// failing.
    fn run(self) {
        let mut failures = 0u32;
        loop {
            let began = Instant::now();
            let served = catch_unwind(AssertUnwindSafe(|| self.serve()));
            let why = match served {
                Ok(()) => return,
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into()),
            };
            // A long stretch of serving well starts the count again.
            failures = if began.elapsed() > RESTART_MAX {
                1
            } else {
                failures.saturating_add(1)
            };
            let pause = self.context.panic_hook.unwrap_or_else(|| {
                RESTART_FIRST
                    .saturating_mul(1 << failures.min(7).saturating_sub(1))
                    .min(RESTART_MAX)
            });
            let said = format!("it failed ({why}); restarting it in {}", human(pause));
            tracing::error!("the metrics endpoint is not serving: {said}");
            self.report(Some(said));
            if self.wait_closing(Some(pause)) {
                return;
            }
            tracing::info!("the metrics endpoint serves again");
            self.report(None);
        }
    }

    /// Says in state.json (for `gt daemon status`) why the endpoint is not
    /// serving, or that it is again.
    fn report(&self, failing: Option<String>) {
        if let Err(e) = self
            .context
            .state
            .update(|s| s.metrics_endpoint_error = failing)
        {
            tracing::warn!("cannot write state.json: {e}");
        }
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Sleeps up to `pause` (for ever with None) unless closing; true when
    /// closing.
    fn wait_closing(&self, pause: Option<Duration>) -> bool {
        let deadline = pause.map(|p| Instant::now() + p);
        while !self.closing() {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                break;
            }
            let mut fds = [PollFd::new(&self.woken, PollFlags::IN)];
            let _ = poll(&mut fds, left.map(timespec).as_ref());
            self.drain_wake();
        }
        self.closing()
    }

    fn drain_wake(&self) {
        let mut sink = [0u8; 16];
        while matches!((&self.woken).read(&mut sink), Ok(n) if n > 0) {}
    }

    fn serve(&self) {
        let mut open: Vec<Connection> = Vec::with_capacity(self.cap);
        let mut accepts = Accepts::default();
        while !self.closing() {
            let now = Instant::now();
            open.retain(|c| c.deadline > now);
            if accepts.resume_at.is_some_and(|t| t <= now) {
                accepts.resume_at = None;
            }
            let Some(ready) = self.wait_ready(&open, accepts.resume_at, now) else {
                continue;
            };
            if ready.woke {
                self.drain_wake();
                continue;
            }
            let mut ready_iter = ready.connections.into_iter();
            open.retain_mut(|c| match ready_iter.next() {
                Some(true) => matches!(self.advance(c), Step::Keep),
                _ => true,
            });
            if ready.listener {
                self.accept_batch(&mut open, &mut accepts, now);
                self.tell(&mut accepts);
            }
        }
    }

    /// Waits until the wake pipe, the listener (unless accepting is paused
    /// until `resume_at`) or an open connection is ready, or the next
    /// deadline; `None` when interrupted by a signal.
    fn wait_ready(
        &self,
        open: &[Connection],
        resume_at: Option<Instant>,
        now: Instant,
    ) -> Option<Ready> {
        let accepting = resume_at.is_none();
        let next = open
            .iter()
            .map(|c| c.deadline)
            .chain(resume_at)
            .min()
            .map(|t| t.saturating_duration_since(now));
        let mut fds = Vec::with_capacity(open.len() + 2);
        fds.push(PollFd::new(&self.woken, PollFlags::IN));
        if accepting {
            fds.push(PollFd::from_borrowed_fd(
                self.listener.as_fd(),
                PollFlags::IN,
            ));
        }
        for c in open {
            let wanted = match c.phase {
                Phase::Answer { .. } => PollFlags::OUT,
                _ => PollFlags::IN,
            };
            fds.push(PollFd::from_borrowed_fd(c.stream.as_fd(), wanted));
        }
        match poll(&mut fds, next.map(timespec).as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return None,
            Err(e) => panic!("poll: {e}"),
        }
        let skip = if accepting { 2 } else { 1 };
        Some(Ready {
            woke: !fds[0].revents().is_empty(),
            listener: accepting && !fds[1].revents().is_empty(),
            connections: fds[skip..]
                .iter()
                .map(|f| !f.revents().is_empty())
                .collect(),
        })
    }

    /// Takes up to [`ACCEPT_BATCH`] new connections, closing the oldest
    /// idle one past the cap; when `accept` fails for want of descriptors
    /// or memory, pauses accepting and, once that lasts, reports it.
    fn accept_batch(&self, open: &mut Vec<Connection>, accepts: &mut Accepts, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok(stream) => {
                    accepts.failing_since = None;
                    if open.len() >= self.cap {
                        open.remove(oldest_waiting(open));
                        accepts.evicted += 1;
                    }
                    let mut c = Connection {
                        stream,
                        phase: Phase::Head(Vec::new()),
                        deadline: Instant::now() + HEAD_TIMEOUT,
                    };
                    // Most clients have sent their request by now.
                    if let Step::Keep = self.advance(&mut c) {
                        open.push(c);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    accepts.failing_since = None;
                    break;
                }
                Err(e) if transient(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory, or worse: try again
                    // later, and say so if it lasts.
                    let since = *accepts.failing_since.get_or_insert(now);
                    accepts.resume_at = Some(Instant::now() + ACCEPT_BACKOFF);
                    if !accepts.reported && now.duration_since(since) >= FAILING_AFTER {
                        let why = format!("cannot accept connections: {e}");
                        tracing::error!("the metrics endpoint is not serving: {why}");
                        self.report(Some(why));
                        accepts.reported = true;
                    }
                    break;
                }
            }
        }
    }

    /// Says that accepting works again, and (at most every [`LOG_EVERY`])
    /// how many idle connections were closed to stay within the cap.
    fn tell(&self, accepts: &mut Accepts) {
        if accepts.reported && accepts.failing_since.is_none() {
            tracing::info!("the metrics endpoint accepts connections again");
            self.report(None);
            accepts.reported = false;
        }
        if accepts.evicted > 0
            && accepts
                .last_eviction_log
                .is_none_or(|t| t.elapsed() >= LOG_EVERY)
        {
            tracing::warn!(
                "metrics endpoint: {} idle connection(s) closed to stay within {} open at once",
                accepts.evicted,
                self.cap
            );
            accepts.evicted = 0;
            accepts.last_eviction_log = Some(Instant::now());
        }
    }

    /// Moves a connection on as far as it can go without waiting.
    fn advance(&self, c: &mut Connection) -> Step {
        loop {
            match &mut c.phase {
                Phase::Head(head) => {
                    let mut chunk = [0u8; 4096];
                    let n = match c.stream.read(&mut chunk) {
                        Ok(0) => return Step::Close,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Step::Close,
                    };
                    let room = (MAX_HEAD + 1).saturating_sub(head.len());
                    head.extend_from_slice(&chunk[..n.min(room)]);
                    let answer = match head_end(head) {
                        Some(end) => self.answer(&head[..end]),
                        None if head.len() > MAX_HEAD => too_large(),
                        None => continue,
                    };
                    c.phase = Phase::Answer {
                        bytes: answer,
                        sent: 0,
                    };
                    c.deadline = Instant::now() + WRITE_TIMEOUT;
                }
                Phase::Answer { bytes, sent } => {
                    match c.stream.write(&bytes[*sent..]) {
                        Ok(0) => return Step::Close,
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Step::Close,
                    }
                    if *sent == bytes.len() {
                        c.stream.shutdown_write();
                        c.phase = Phase::Linger { dropped: 0 };
                        c.deadline = Instant::now() + LINGER;
                    }
                }
                Phase::Linger { dropped } => {
                    let mut sink = [0u8; 4096];
                    match c.stream.read(&mut sink) {
                        Ok(0) => return Step::Close,
                        Ok(n) => *dropped += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Step::Close,
                    }
                    if *dropped > MAX_LINGER_BYTES {
                        return Step::Close;
                    }
                }
            }
        }
    }

    /// The whole answer (status line, headers, body) to a request head.
    fn answer(&self, head: &[u8]) -> Vec<u8> {
        let request = match Request::parse(head) {
            Ok(r) => r,
            Err(status) => {
                return response(status, TEXT, "a malformed HTTP request\n", true, &[]);
            }
        };
        if request.method != "GET" && request.method != "HEAD" {
            return response(
                405,
                TEXT,
                "only GET and HEAD are served\n",
                true,
                &[("Allow", "GET, HEAD")],
            );
        }
        let with_body = request.method == "GET";
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((request.target, ""));
        let json = query.split('&').any(|p| p == "format=json")
            || request
                .accept
                .is_some_and(|a| a.contains("application/json"));
        let metrics = &self.context.metrics;
        let (status, content_type, body) = match path {
            "/metrics" if metrics.exported() => (
                200,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                metrics.exposition(),
            ),
            "/healthz" => verdict(&metrics.health().healthz(), json),
            "/readyz" => verdict(&metrics.health().readyz(self.context.stop.is_set()), json),
            "/" => (
                200,
                TEXT,
                "gt daemon: /metrics /healthz /readyz (?format=json)\n".into(),
            ),
            "/panic" if self.context.panic_hook.is_some() => {
                panic!("test hook: a GET of /panic")
            }
            _ => (
                404,
                TEXT,
                "not found: try /metrics, /healthz or /readyz\n".into(),
            ),
        };
        response(status, content_type, &body, with_body, &[])
    }
}

/// How accepting goes, across turns of the loop.
#[derive(Default)]
struct Accepts {
    /// While `accept` fails: since when, and no new try before when.
    failing_since: Option<Instant>,
    resume_at: Option<Instant>,
    /// The log and state.json say the endpoint is not serving.
    reported: bool,
    /// Idle connections closed to make room, since last said in the log.
    evicted: usize,
    last_eviction_log: Option<Instant>,
}

/// What one `poll` found ready.
struct Ready {
    /// The wake pipe: closing, or a restart.
    woke: bool,
    listener: bool,
    /// Each open connection, in order.
    connections: Vec<bool>,
}

/// The connection to close to make room: the oldest still waiting for its
/// request, else the oldest.
fn oldest_waiting(open: &[Connection]) -> usize {
    open.iter()
        .position(|c| matches!(c.phase, Phase::Head(_)))
        .unwrap_or(0)
}

/// `accept` errors about one connection, not the listener (accept(2)
/// lists the network errors to treat as "try again").
fn transient(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    ) || e.raw_os_error().is_some_and(|code| {
        [
            Errno::PROTO,
            Errno::PERM,
            Errno::NETDOWN,
            Errno::NOPROTOOPT,
            Errno::HOSTDOWN,
            Errno::HOSTUNREACH,
            Errno::OPNOTSUPP,
            Errno::NETUNREACH,
        ]
        .contains(&Errno::from_raw_os_error(code))
    })
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_most_descriptors_to_the_daemon() {
        let cap = connection_cap();
        assert!((1..=MAX_CONNECTIONS).contains(&cap), "{cap}");
    }
}
