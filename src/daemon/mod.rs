//! The daemon's life: take the lock, recover, watch, serve, stop cleanly.
//!
//! Threads, each named as `ps -L` and a debugger show it:
//! - the consumer (the thread that called [`run`]): claims, validates,
//!   dispatches and files every request, and keeps the timers of agents
//!   booting after a restart ([`consumer`]);
//! - the notify watcher (notify's own thread): inbox events in ([`watch`];
//!   paused by the consumer while a drain has more names in hand than
//!   events could add);
//! - `executor-N`: up to `max_parallel` workers, started as requests need
//!   them, each executing one step at a time: a request, or the prime of
//!   an agent that has booted; none sleeps through a boot ([`dispatch`],
//!   [`execute`]);
//! - `ledger`: makes filed outcomes durable and counts them ([`ledger`]);
//! - `heartbeat`: pokes, state.json, retention, the ownership check
//!   ([`heartbeat`]);
//! - `leftovers`, with `end_leftovers`: briefly, to end processes of
//!   agents the heartbeat found outside any live pane ([`leftovers`]);
//! - `liveness`, with `look_at_agents` (on by default): looks at the
//!   agents the heartbeat pokes and supervision keeps, confirms pokes,
//!   tells each agent's state ([`liveness`]);
//! - `signals`: SIGTERM and SIGINT flip the stop switch, SIGHUP reloads
//!   config.json;
//! - `supervisor`, with `supervise`: keeps the listed agents alive
//!   ([`supervisor`]);
//! - `notifier`, with `notify_command`: runs it for what a person must act
//!   on ([`alert`]);
//! - `metrics`, with `metrics_listen`: serves the endpoint ([`http`]).
//!
//! The stages of a request, in the order it meets them: [`watch`] (a name
//! to look at) → [`consumer`] (reads its [`inlet`] and routes) → [`claim`]
//! (rename into processing/) → [`validate`] → [`dispatch`] (one at a time
//! per agent; those that must wait stay in the inbox) → [`execute`] →
//! [`filing`] → [`ledger`] (durable, counted). At start, [`recovery`]
//! files what a stopped daemon left in processing/. Beside them:
//! [`heartbeat`] (pokes, state.json, [`retention`], [`leftovers`]),
//! [`liveness`] (what the agents' panes show: working, idle, stalled,
//! waiting for a person, dead), [`supervisor`] (its policy, and its
//! restarts on the consumer's side; a stall is one more failure it may act
//! on), [`logging`], the [`stop`] switch, [`sdnotify`] (what systemd is
//! told), and for whoever watches the daemon ([`monitoring`]): the
//! [`health`] record, the [`metrics`] series, the [`http`] endpoint that
//! serves them (`/metrics`, `/healthz`, `/readyz`) and [`alert`]
//! (`notify_command`).

pub(crate) mod alert;
pub(crate) mod claim;
pub(crate) mod consumer;
pub(crate) mod dispatch;
pub(crate) mod execute;
pub(crate) mod filing;
pub(crate) mod health;
pub(crate) mod heartbeat;
pub(crate) mod http;
pub(crate) mod inlet;
pub(crate) mod ledger;
pub(crate) mod leftovers;
pub(crate) mod liveness;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod monitoring;
pub(crate) mod recovery;
pub(crate) mod retention;
pub(crate) mod sdnotify;
pub(crate) mod stop;
pub(crate) mod supervisor;
pub(crate) mod validate;
pub(crate) mod watch;

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use chrono::Utc;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use thiserror::Error;

use crate::config::{changed_keys, keys, Config, SharedConfig, WatchMode};
use crate::duration::human;
use crate::instance::{Displaced, Instance, InstanceError};
use crate::state::{State, StateStore};
use crate::testing::Hooks;
use crate::tmux::Tmux;
use crate::town::{Town, TownError};
use consumer::Consumer;
use execute::HeldSessions;
use health::Watching;
use heartbeat::Heartbeat;
use inlet::{Inlet, Message};
use liveness::Liveness;
use metrics::Metrics;
use monitoring::Monitoring;
use sdnotify::Manager;
use stop::StopFlag;

/// Events buffered between the watcher and the consumer; past this the
/// watcher drops events and asks for one rescan instead.
const CHANNEL_CAPACITY: usize = 16 * 1024;

#[derive(Debug, Error)]
pub(crate) enum DaemonError {
    #[error(transparent)]
    Town(#[from] TownError),
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error("this daemon no longer owns its town, so it stops: {0}")]
    Displaced(Displaced),
    #[error(transparent)]
    Endpoint(#[from] http::EndpointError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io { what, source }
}

/// Runs the daemon until SIGTERM/SIGINT. `source` is config.json as
/// written, for telling which keys a reload changes.
pub(crate) fn run(
    town: &Town,
    config: Config,
    source: serde_json::Value,
    hooks: &Hooks,
) -> Result<(), DaemonError> {
    town.ensure_dirs()?;
    let instance = Instance::acquire(town)?;
    let pid = std::process::id();
    warn_of(hooks);
    let stop = Arc::new(StopFlag::default());
    let service = Arc::new(Manager::from_env());
    // What the heartbeat and the executor read at each operation; `config`
    // itself is what the daemon started with.
    let live = SharedConfig::new(config.clone());
    let (tx, rx) = sync_channel(hooks.channel_capacity.unwrap_or(CHANNEL_CAPACITY));
    let reloader = Reloader {
        path: town.config_file(),
        live: live.clone(),
        started_with: source.clone(),
        source,
        service: service.clone(),
    };
    spawn_signal_thread(stop.clone(), tx.clone(), hooks.ignore_sigterm, reloader)
        .map_err(io("cannot install signal handlers"))?;
    let metrics = Metrics::new(town, &live);
    metrics.locked(true);
    let state = Arc::new(StateStore::new(
        town.state_file(),
        initial_state(town, &config, pid),
    ));
    let watchers = start_monitoring(town, &config, hooks, &metrics, &stop, &state)?;
    if let Some(delay) = hooks.start_delay {
        stop.wait(delay);
    }

    let wake = tx.clone();
    let (watch, inlet) = start_inlet(town, &config, tx, rx, hooks, &metrics);
    let watching = watch.is_some();
    let held = Arc::new(HeldSessions::default());
    let mut consumer = Consumer::new(
        town,
        &live,
        state.clone(),
        inlet,
        stop.clone(),
        held.clone(),
        hooks,
        watchers.monitoring.clone(),
    )
    .map_err(io("cannot open the daemon directories"))?;
    if let Some(watch) = watch {
        consumer.keep_watch(watch);
    }
    recover(&mut consumer, &metrics)?;
    announce_start(town, &config, &state, &service, watching, pid)?;

    let leftovers = leftovers::Leftovers::new(town, &live, held.clone(), metrics.clone());
    let looking = start_liveness(town, &config, &live, &held, &state, &watchers, &stop)?;
    let liveness = looking.as_ref().map(|(liveness, _)| liveness.clone());
    let heartbeat = Heartbeat {
        town: town.clone(),
        config: live.clone(),
        tmux: Tmux::new(config.tmux_socket.clone(), config.tmux_timeout),
        dry_run: config.dry_run,
        service: service.clone(),
        quiet: Default::default(),
        state: state.clone(),
        stop: stop.clone(),
        held: held.clone(),
        ownership: instance.ownership(),
        wake: wake.clone(),
        metrics: metrics.clone(),
        leftovers,
        liveness: liveness.clone(),
        waiting: Default::default(),
    };
    let beating = std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || heartbeat.run())
        .map_err(io("cannot start the heartbeat thread"))?;
    let supervising = start_supervision(supervisor::Supervisor {
        town: town.clone(),
        tmux: Tmux::new(config.tmux_socket.clone(), config.tmux_timeout),
        config: live,
        stop: stop.clone(),
        held,
        tx: wake,
        monitoring: watchers.monitoring.clone(),
        liveness,
        state: state.clone(),
        said: Default::default(),
    })?;
    let running = Running {
        service,
        stop,
        metrics,
        watchers,
        supervising,
        looking,
        beating,
    };

    consumer.run();

    running.stop(town, &state, pid)
}

/// What runs beside the consumer, stopped in order once it returns.
struct Running {
    service: Arc<Manager>,
    stop: Arc<StopFlag>,
    metrics: Arc<Metrics>,
    watchers: Watchers,
    supervising: Option<JoinHandle<()>>,
    looking: Option<Looking>,
    beating: JoinHandle<Option<Displaced>>,
}

impl Running {
    /// Stops every thread, then says so in state.json and removes
    /// daemon.pid, unless this daemon no longer owns its town.
    fn stop(self, town: &Town, state: &StateStore, pid: u32) -> Result<(), DaemonError> {
        self.service.stopping();
        self.stop.set();
        self.metrics.locked(false);
        self.watchers.close();
        if let Some(supervising) = self.supervising {
            let _ = supervising.join();
        }
        if let Some((liveness, looking)) = self.looking {
            liveness.wake();
            let _ = looking.join();
        }
        if let Ok(Some(displaced)) = self.beating.join() {
            // state.json and daemon.pid, wherever they are now, may be a
            // successor's: leave them alone.
            return Err(DaemonError::Displaced(displaced));
        }
        state
            .update(|s| s.running = false)
            .map_err(io("cannot write state.json"))?;
        let _ = std::fs::remove_file(town.pid_file());
        tracing::info!(pid, "daemon stopped");
        Ok(())
    }
}

/// Test hooks are for the test suite: said loudly when in force.
fn warn_of(hooks: &Hooks) {
    for hook in hooks.active() {
        tracing::warn!(
            hook,
            "test hook in force ({}=1): not for production",
            crate::testing::ENABLE
        );
    }
}

/// The liveness stage, shared with the heartbeat and supervision, and its
/// thread.
type Looking = (Arc<Liveness>, JoinHandle<()>);

/// Looking at agents (`look_at_agents`, never in a dry run, which touches
/// no agent) on its own thread: the heartbeat hands it every poke, and
/// supervision reads what it finds.
fn start_liveness(
    town: &Town,
    config: &Config,
    live: &SharedConfig,
    held: &Arc<HeldSessions>,
    state: &Arc<StateStore>,
    watchers: &Watchers,
    stop: &Arc<StopFlag>,
) -> Result<Option<Looking>, DaemonError> {
    if !config.look_at_agents || config.dry_run {
        return Ok(None);
    }
    let liveness = Arc::new(Liveness::new(
        live,
        supervisor::sessions(town, config),
        held.clone(),
        state.clone(),
        watchers.monitoring.clone(),
        stop.clone(),
    ));
    let looker = liveness.clone();
    let looking = std::thread::Builder::new()
        .name("liveness".into())
        .spawn(move || looker.run())
        .map_err(io("cannot start the liveness thread"))?;
    Ok(Some((liveness, looking)))
}

/// Up: state.json says running, systemd is told ready, the log says so.
fn announce_start(
    town: &Town,
    config: &Config,
    state: &StateStore,
    service: &Manager,
    notify: bool,
    pid: u32,
) -> Result<(), DaemonError> {
    state
        .update(|s| {
            s.running = true;
            s.started_at = Some(Utc::now());
            s.watch_mode = Some(if notify { "notify" } else { "poll" }.into());
        })
        .map_err(io("cannot write state.json"))?;
    service.ready();
    tracing::info!(pid, town = %town.root().display(), dry_run = config.dry_run, "daemon started");
    Ok(())
}

/// state.json as a starting daemon first writes it: not running yet.
fn initial_state(town: &Town, config: &Config, pid: u32) -> State {
    State {
        running: false,
        pid,
        town_root: town.root().to_path_buf(),
        version: env!("CARGO_PKG_VERSION").into(),
        dry_run: config.dry_run,
        heartbeat_interval_secs: Some(config.heartbeat_interval.as_secs()),
        tmux_socket: config.tmux_socket.clone(),
        ..State::default()
    }
}

/// What serves whoever watches the daemon: the endpoint and the notifier
/// (each only when configured), and the bundle the stages report to.
struct Watchers {
    server: Option<http::Server>,
    notifier: Option<alert::Notifier>,
    monitoring: Monitoring,
}

impl Watchers {
    /// Closes the endpoint, and lets the notifier finish what it runs.
    fn close(self) {
        drop(self.server);
        if let Some(notifier) = self.notifier {
            notifier.join();
        }
    }
}

/// Starts the endpoint (from here on, so /readyz can say what start-up is
/// waiting for) and the notifier.
fn start_monitoring(
    town: &Town,
    config: &Config,
    hooks: &Hooks,
    metrics: &Arc<Metrics>,
    stop: &Arc<StopFlag>,
    state: &Arc<StateStore>,
) -> Result<Watchers, DaemonError> {
    let server = match &config.metrics_listen {
        Some(listen) => Some(http::serve(
            listen,
            http::Context {
                metrics: metrics.clone(),
                stop: stop.clone(),
                state: state.clone(),
                panic_hook: hooks.endpoint_panic,
            },
        )?),
        None => None,
    };
    let (alerts, notifier) = alert::start(town, config, metrics.clone(), stop.clone())
        .map_err(io("cannot start the notifier thread"))?;
    Ok(Watchers {
        server,
        notifier,
        monitoring: Monitoring {
            metrics: metrics.clone(),
            alerts,
        },
    })
}

/// The consumer's inlet: the watcher's events (when notify works) and the
/// rescans that stand in for them.
fn start_inlet(
    town: &Town,
    config: &Config,
    tx: SyncSender<Message>,
    rx: std::sync::mpsc::Receiver<Message>,
    hooks: &Hooks,
    metrics: &Metrics,
) -> (Option<watch::Watch>, Inlet) {
    let overflow = Arc::new(AtomicBool::new(false));
    let wake = tx.clone();
    let (watch, rescan_every) = start_watching(town, config, tx, overflow.clone(), hooks);
    metrics.watching(match (&watch, config.watch_mode) {
        (Some(_), _) => Watching::Notify,
        (None, WatchMode::Poll) => Watching::Poll,
        (None, WatchMode::Notify) => Watching::PollFallback,
    });
    let inlet = Inlet {
        rx,
        wake,
        overflow,
        rescan_every,
    };
    (watch, inlet)
}

/// Files what a stopped daemon left in processing/ before anything new is
/// taken.
fn recover(consumer: &mut Consumer, metrics: &Metrics) -> Result<(), DaemonError> {
    let interrupted = consumer
        .recover()
        .map_err(io("cannot recover processing/"))?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "requests left in processing/ by a stopped daemon were filed as failed"
        );
    }
    metrics.recovered();
    Ok(())
}

/// Supervision runs only when `supervise` names agents, and never in a dry
/// run (which starts nothing): without it the daemon restarts nothing that
/// was not requested.
fn start_supervision(
    supervisor: supervisor::Supervisor,
) -> Result<Option<JoinHandle<()>>, DaemonError> {
    let config = supervisor.config.get();
    if config.supervise.is_empty() {
        return Ok(None);
    }
    if config.dry_run {
        tracing::info!("supervision is off in a dry run: nothing is started");
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || supervisor.run())
        .map(Some)
        .map_err(io("cannot start the supervision thread"))
}

/// notify when it works; polling (a rescan every `poll_interval`) when asked
/// for or when the watcher cannot be set up (watch limits, NFS, FUSE).
fn start_watching(
    town: &Town,
    config: &Config,
    tx: SyncSender<Message>,
    overflow: Arc<AtomicBool>,
    hooks: &Hooks,
) -> (Option<watch::Watch>, std::time::Duration) {
    if config.watch_mode == WatchMode::Poll {
        tracing::info!(every = %human(config.poll_interval), "watching the inbox by polling (watch_mode: poll)");
        return (None, config.poll_interval);
    }
    let watched = if hooks.notify_fail {
        Err(notify::Error::generic("refused by a test hook"))
    } else {
        watch::watch(&town.inbox(), tx, overflow)
    };
    match watched {
        Ok(watch) => (Some(watch), config.rescan_interval),
        Err(e) => {
            tracing::warn!(
                every = %human(config.poll_interval),
                "cannot watch the inbox with notify ({e}); falling back to polling"
            );
            (None, config.poll_interval)
        }
    }
}

/// SIGHUP's work: config.json read again and, when valid, put in force.
struct Reloader {
    path: std::path::PathBuf,
    live: SharedConfig,
    /// config.json as the daemon started with it, and as last applied.
    started_with: serde_json::Value,
    source: serde_json::Value,
    service: Arc<Manager>,
}

impl Reloader {
    /// A valid config replaces the running one, but for the keys only a
    /// start reads ([`keys::Reload::AtStart`]: said so in the log); an
    /// invalid one is refused with its reason, and the running config
    /// stays. config.json is read without blocking and within a bound
    /// ([`Config::load_with_source`]), so this never holds up the signal
    /// thread, and with it `stop`.
    fn reload(&mut self) {
        self.service.reloading();
        let loaded = Config::load_with_source(&self.path).and_then(|(config, source)| {
            let kept = config.keeping_start_values(&self.live.get());
            kept.map(|config| (config, source))
                .map_err(|p| crate::config::ConfigError::Invalid {
                    path: self.path.clone(),
                    key: p.key.unwrap_or_default(),
                    message: p.message,
                })
        });
        match loaded {
            // Its reason quotes config.json (a key's name, a value): text
            // anyone who can write the file chose, so escaped, one line.
            Err(e) => tracing::error!(
                "config reload refused; the running config stays: {}",
                crate::text::escape(&e.to_string())
            ),
            Ok((config, source)) => {
                let changed: Vec<String> = changed_keys(&self.source, &source)
                    .into_iter()
                    .filter(|k| !keys::at_start(k))
                    .collect();
                let later: Vec<String> = changed_keys(&self.started_with, &source)
                    .into_iter()
                    .filter(|k| keys::at_start(k))
                    .collect();
                self.live.replace(config);
                self.source = source;
                if changed.is_empty() {
                    tracing::info!("config reloaded: nothing this daemon can change has changed");
                } else {
                    tracing::info!(changed = %changed.join(", "), "config reloaded");
                }
                if !later.is_empty() {
                    tracing::warn!(
                        keys = %later.join(", "),
                        "config.json changes keys that take effect at the next start \
                         (gt daemon restart); until then the daemon keeps the values it started with"
                    );
                }
            }
        }
        self.service.ready();
    }
}

fn spawn_signal_thread(
    stop: Arc<StopFlag>,
    tx: SyncSender<Message>,
    ignore_term: bool,
    mut reloader: Reloader,
) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGTERM && ignore_term {
                    tracing::warn!("ignoring SIGTERM (test hook)");
                    continue;
                }
                if signal == SIGHUP {
                    tracing::info!("SIGHUP: reloading {}", reloader.path.display());
                    reloader.reload();
                    continue;
                }
                tracing::info!(signal, "stop requested");
                stop.set();
                let _ = tx.try_send(Message::Stop);
            }
        })?;
    Ok(())
}
