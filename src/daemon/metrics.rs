//! The Prometheus series: what the daemon's threads count, and what is
//! read when scraped. docs/monitoring.md lists every series; [`super::http`]
//! serves them at `/metrics`.
//!
//! The daemon's threads record what happens through [`Metrics`]: atomic
//! counters and gauges, so a scrape never holds up a request and a request
//! never waits for a scrape. What is cheaper to read than to track (the
//! inbox's size, the requests in hand, tmux calls) is read at scrape time.
//! Label values come from fixed sets or from agents' session names (which
//! only valid agents have), never from file names or free text.
//!
//! With `metrics_listen` unset nothing is registered and nothing served;
//! only the [`Health`] record (a few atomics) is kept, for the notifier.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::health::{Health, Watching};
use crate::config::SharedConfig;
use crate::outcome::Outcome;
use crate::process::agent::{Leftover, Reason};
use crate::request::Action;
use crate::state::Activity;
use crate::town::Town;

/// Claim-to-filing durations, in seconds: a dry run files in well under a
/// millisecond, a restart takes `prime_delay` (2 s) and more.
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

const ACTIONS: [&str; 4] = ["cycle", "restart", "shutdown", "invalid"];

/// The `action` label of a filed request: its action when it is one, else
/// `invalid` (a typo is free text, and must not make a series).
pub(crate) fn action_label(action: Option<&str>) -> &'static str {
    action
        .and_then(|a| Action::parse(a).ok())
        .map_or("invalid", Action::as_str)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FiledLabels {
    outcome: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    session: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabels {
    session: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    event: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeftoverLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The daemon's record for monitoring: shared by every thread that has
/// something to count.
pub(crate) struct Metrics {
    health: Health,
    exported: Option<Exported>,
}

/// The series served at `/metrics`.
struct Exported {
    registry: Registry,
    filed: Family<FiledLabels, Counter>,
    duration: Histograms<ActionLabels>,
    heartbeats: Counter,
    last_heartbeat: Gauge<f64, AtomicU64>,
    unfiled: Gauge,
    agent_up: Family<SessionLabels, Gauge>,
    agent_quarantined: Family<SessionLabels, Gauge>,
    restarts: Family<RestartLabels, Counter>,
    supervision_paused: Gauge,
    notifications: Family<NotificationLabels, Counter>,
    leftovers: Family<LeftoverLabels, Gauge>,
    leftover_bytes: Family<LeftoverLabels, Gauge>,
    leftovers_ended: Counter,
    /// What the last look at the agents saw, read when scraped.
    agents: Arc<Mutex<Vec<AgentSeries>>>,
}

/// One watched agent as its series show it: published by the look at
/// the agents ([`super::liveness`]) after each look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentSeries {
    pub(crate) session: String,
    pub(crate) state: Activity,
    /// Since when its screen has been still.
    pub(crate) quiet_since: chrono::DateTime<chrono::Utc>,
    pub(crate) counts: PokeCounts,
}

/// What became of one agent's pokes since the daemon started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PokeCounts {
    pub(crate) delivered: u64,
    pub(crate) resubmitted: u64,
    pub(crate) unconfirmed: u64,
    pub(crate) answered: u64,
    pub(crate) unanswered: u64,
}

impl Metrics {
    /// The record for a daemon with this config: series are registered
    /// only when `metrics_listen` is set.
    pub(crate) fn new(town: &Town, live: &SharedConfig) -> Arc<Metrics> {
        let config = live.get();
        let exported = config
            .metrics_listen
            .is_some()
            .then(|| Exported::new(town, live));
        Arc::new(Metrics {
            health: Health::new(live.clone()),
            exported,
        })
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// A request was filed, `took` after it was claimed (when this daemon
    /// claimed it).
    pub(crate) fn filed(&self, outcome: Outcome, action: Option<&str>, took: Option<Duration>) {
        let Some(e) = &self.exported else { return };
        let action = action_label(action);
        let outcome = match outcome {
            Outcome::Processed => "processed",
            Outcome::Failed => "failed",
        };
        e.filed
            .get_or_create(&FiledLabels { outcome, action })
            .inc();
        if let Some(took) = took {
            e.duration
                .get_or_create(&ActionLabels { action })
                .observe(took.as_secs_f64());
        }
    }

    /// A heartbeat ran (pokes sent, state.json rewritten).
    pub(crate) fn heartbeat(&self) {
        self.health.heartbeat();
        if let Some(e) = &self.exported {
            e.heartbeats.inc();
            e.last_heartbeat.set(unix_now());
        }
    }

    /// How many executed requests wait to be filed, and the last reason.
    pub(crate) fn unfiled(&self, count: u64, error: Option<&str>) {
        self.health.unfiled(count, error);
        if let Some(e) = &self.exported {
            e.unfiled.set(count as i64);
        }
    }

    /// The town lock is ours (until the daemon stops or is displaced).
    pub(crate) fn locked(&self, held: bool) {
        self.health.locked(held);
    }

    /// What `processing/` held at the start has been filed.
    pub(crate) fn recovered(&self) {
        self.health.recovered();
    }

    /// The inbox is watched, and how.
    pub(crate) fn watching(&self, how: Watching) {
        self.health.watching(how);
    }

    /// What became of a notification: `sent`, `failed`, `deduplicated` or
    /// `dropped`.
    pub(crate) fn notification(&self, event: &'static str, result: &'static str) {
        if let Some(e) = &self.exported {
            e.notifications
                .get_or_create(&NotificationLabels { event, result })
                .inc();
        }
    }

    /// Are the series registered (`metrics_listen` set)?
    pub(crate) fn exported(&self) -> bool {
        self.exported.is_some()
    }

    /// The Prometheus text exposition of every series.
    pub(crate) fn exposition(&self) -> String {
        let mut text = String::new();
        if let Some(e) = &self.exported {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &e.registry);
        }
        text
    }
}

/// The supervisor's series (config `supervise`): agents up or down,
/// quarantined, restarted, supervision paused.
impl Metrics {
    /// A supervised agent is up (its session there, its pane's process
    /// alive) or down. `session` must be a configured agent's: each one
    /// makes a series.
    pub(crate) fn agent_up(&self, session: &str, up: bool) {
        if let Some(e) = &self.exported {
            e.agent_up
                .get_or_create(&session_labels(session))
                .set(up.into());
        }
    }

    /// A supervised agent is quarantined (restarts given up until the
    /// quarantine expires), or no longer.
    pub(crate) fn agent_quarantined(&self, session: &str, quarantined: bool) {
        if let Some(e) = &self.exported {
            e.agent_quarantined
                .get_or_create(&session_labels(session))
                .set(quarantined.into());
        }
    }

    /// Supervision restarted an agent; `reason` is one of a fixed set
    /// (such as `session_missing`, `pane_exited`).
    pub(crate) fn agent_restarted(&self, session: &str, reason: &'static str) {
        if let Some(e) = &self.exported {
            e.restarts
                .get_or_create(&RestartLabels {
                    session: session.to_string(),
                    reason,
                })
                .inc();
        }
    }

    /// What the last look at the agents saw (each a session the daemon
    /// pokes or supervises, at most `MAX_WATCHED`): replaces the last.
    pub(crate) fn agents_seen(&self, agents: Vec<AgentSeries>) {
        if let Some(e) = &self.exported {
            *e.agents.lock().unwrap_or_else(|p| p.into_inner()) = agents;
        }
    }

    /// Supervision is paused (several agents died at once), or resumed.
    pub(crate) fn supervision_paused(&self, paused: bool) {
        if let Some(e) = &self.exported {
            e.supervision_paused.set(paused.into());
        }
    }
}

/// Leftovers: processes carrying this town's agent marks in no live pane
/// (`super::leftovers`).
impl Metrics {
    /// What the last look found: how many, and their resident memory, by
    /// reason.
    pub(crate) fn leftovers(&self, found: &[Leftover]) {
        let Some(e) = &self.exported else { return };
        for reason in Reason::ALL {
            let of = found.iter().filter(|l| l.reason == reason);
            let labels = LeftoverLabels {
                reason: reason.as_str(),
            };
            e.leftovers
                .get_or_create(&labels)
                .set(of.clone().count() as i64);
            let bytes = of.map(|l| l.rss_bytes).sum::<u64>();
            e.leftover_bytes
                .get_or_create(&labels)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// `end_leftovers` ended this many processes.
    pub(crate) fn leftovers_ended(&self, count: usize) {
        if let Some(e) = &self.exported {
            e.leftovers_ended.inc_by(count as u64);
        }
    }
}

#[allow(dead_code)]
fn session_labels(session: &str) -> SessionLabels {
    SessionLabels {
        session: session.to_string(),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Exported {
    fn new(town: &Town, live: &SharedConfig) -> Exported {
        let mut registry = Registry::with_prefix("gt");
        let e = Exported {
            filed: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            heartbeats: Counter::default(),
            last_heartbeat: Gauge::default(),
            unfiled: Gauge::default(),
            agent_up: Family::default(),
            agent_quarantined: Family::default(),
            restarts: Family::default(),
            supervision_paused: Gauge::default(),
            notifications: Family::default(),
            leftovers: Family::default(),
            leftover_bytes: Family::default(),
            leftovers_ended: Counter::default(),
            agents: Arc::default(),
            registry: Registry::default(),
        };
        // Every outcome and action from the start, so that the first
        // request of a kind is an increase, not a new series.
        for outcome in ["processed", "failed"] {
            for action in ACTIONS {
                let _ = e.filed.get_or_create(&FiledLabels { outcome, action });
            }
        }
        for action in ACTIONS {
            let _ = e.duration.get_or_create(&ActionLabels { action });
        }
        for reason in Reason::ALL {
            let labels = LeftoverLabels {
                reason: reason.as_str(),
            };
            let _ = e.leftovers.get_or_create(&labels);
            let _ = e.leftover_bytes.get_or_create(&labels);
        }
        registry.register(
            "build",
            "The running daemon's version and the commit it was built from",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("GT_BUILD_COMMIT"),
            }),
        );
        registry.register(
            "requests_filed",
            "Requests filed, by outcome and action (invalid: not one of cycle, restart, shutdown)",
            e.filed.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from claiming a request to filing it",
            Unit::Seconds,
            e.duration.clone(),
        );
        registry.register(
            "outcomes_unfiled",
            "Executed requests whose outcome waits to be filed (filing is failing)",
            e.unfiled.clone(),
        );
        registry.register(
            "heartbeats",
            "Heartbeats run since the daemon started",
            e.heartbeats.clone(),
        );
        registry.register_with_unit(
            "last_heartbeat_timestamp",
            "When the last heartbeat ran, in seconds since the Unix epoch",
            Unit::Seconds,
            e.last_heartbeat.clone(),
        );
        registry.register_with_unit(
            "start_timestamp",
            "When the daemon started, in seconds since the Unix epoch",
            Unit::Seconds,
            ConstGauge::new(unix_now()),
        );
        registry.register(
            "agent_up",
            "1 while a supervised agent's session and pane process are alive, else 0",
            e.agent_up.clone(),
        );
        registry.register(
            "agent_quarantined",
            "1 while supervision has given up restarting an agent, else 0",
            e.agent_quarantined.clone(),
        );
        registry.register(
            "agent_restarts",
            "Agents restarted by supervision, by reason",
            e.restarts.clone(),
        );
        registry.register(
            "supervision_paused",
            "1 while supervision is paused because several agents died at once",
            e.supervision_paused.clone(),
        );
        registry.register(
            "notifications",
            "Events for notify_command, by what became of them",
            e.notifications.clone(),
        );
        registry.register(
            "leftover_processes",
            "Processes carrying this town's agent marks in no live pane, at the last look, by reason",
            e.leftovers.clone(),
        );
        registry.register_with_unit(
            "leftover_resident",
            "Resident memory of those processes, at the last look, by reason",
            Unit::Bytes,
            e.leftover_bytes.clone(),
        );
        registry.register(
            "leftover_processes_ended",
            "Leftover processes ended (config end_leftovers)",
            e.leftovers_ended.clone(),
        );
        registry.register_collector(Box::new(AgentsSeen(e.agents.clone())));
        registry.register_collector(Box::new(ReadAtScrape {
            inbox: town.inbox(),
            processing: town.processing(),
            config: live.clone(),
        }));
        Exported { registry, ..e }
    }
}

/// Series read when scraped rather than tracked.
#[derive(Debug)]
struct ReadAtScrape {
    inbox: PathBuf,
    processing: PathBuf,
    /// The config in force (a reload may change the heartbeat interval).
    config: SharedConfig,
}

impl Collector for ReadAtScrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            ("inbox_pending", "Requests waiting in inbox/.", &self.inbox),
            (
                "requests_in_progress",
                "Requests claimed into processing/ and not yet filed.",
                &self.processing,
            ),
        ];
        for (name, help, dir) in gauges {
            let value = ConstGauge::new(crate::inbox::pending_count(dir) as i64);
            value.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        let interval = ConstGauge::new(self.config.get().heartbeat_interval.as_secs_f64());
        interval.encode(encoder.encode_descriptor(
            "heartbeat_interval",
            "The heartbeat_interval in force.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?)?;
        let calls = &crate::tmux::CALLS;
        let total = ConstCounter::new(calls.calls.load(Ordering::Relaxed));
        total.encode(encoder.encode_descriptor(
            "tmux_calls",
            "tmux client processes run (commands chained in one client count once).",
            None,
            MetricType::Counter,
        )?)?;
        let mut failures = encoder.encode_descriptor(
            "tmux_call_failures",
            "tmux commands that failed (error) or were killed at tmux_timeout (timeout).",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in [("error", &calls.failed), ("timeout", &calls.timed_out)] {
            ConstCounter::new(count.load(Ordering::Relaxed))
                .encode(failures.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}

/// The agents' series, from what the last look saw.
#[derive(Debug)]
struct AgentsSeen(Arc<Mutex<Vec<AgentSeries>>>);

impl Collector for AgentsSeen {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let agents = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut state = encoder.encode_descriptor(
            "agent_state",
            "1 for the state an agent is in (working, idle, stalled, waiting_for_person, dead), 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for a in &agents {
            for s in Activity::ALL {
                ConstGauge::new(i64::from(a.state == s)).encode(
                    state
                        .encode_family(&[("session", a.session.as_str()), ("state", s.as_str())])?,
                )?;
            }
        }
        let now = chrono::Utc::now();
        let mut quiet = encoder.encode_descriptor(
            "agent_screen_quiet",
            "Seconds since an agent's screen last moved (other than by the daemon's typing), or since the daemon began watching its pane.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for a in &agents {
            let secs = now
                .signed_duration_since(a.quiet_since)
                .num_milliseconds()
                .max(0) as f64
                / 1e3;
            ConstGauge::new(secs)
                .encode(quiet.encode_family(&[("session", a.session.as_str())])?)?;
        }
        let mut pokes = encoder.encode_descriptor(
            "pokes",
            "Pokes typed, by what became of their text: delivered, resubmitted (Enter pressed once more), unconfirmed.",
            None,
            MetricType::Counter,
        )?;
        for a in &agents {
            let c = a.counts;
            for (result, n) in [
                ("delivered", c.delivered),
                ("resubmitted", c.resubmitted),
                ("unconfirmed", c.unconfirmed),
            ] {
                ConstCounter::new(n).encode(
                    pokes.encode_family(&[("session", a.session.as_str()), ("result", result)])?,
                )?;
            }
        }
        let mut answers = encoder.encode_descriptor(
            "poke_answers",
            "Pokes judged answered (the screen moved within answer_within) or unanswered.",
            None,
            MetricType::Counter,
        )?;
        for a in &agents {
            for (result, n) in [
                ("answered", a.counts.answered),
                ("unanswered", a.counts.unanswered),
            ] {
                ConstCounter::new(n).encode(
                    answers
                        .encode_family(&[("session", a.session.as_str()), ("result", result)])?,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn with_metrics() -> (tempfile::TempDir, Arc<Metrics>) {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        town.ensure_dirs().unwrap();
        let config =
            Config::parse(br#"{"metrics_listen": "127.0.0.1:9464", "heartbeat_interval": "30s"}"#)
                .unwrap();
        (dir, Metrics::new(&town, &SharedConfig::new(config)))
    }

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(action_label(Some("cycle")), "cycle");
        assert_eq!(action_label(Some("CYCLE")), "invalid");
        assert_eq!(action_label(Some("reboot\"\n{x=\"y\"}")), "invalid");
        assert_eq!(action_label(None), "invalid");
        let (_dir, m) = with_metrics();
        m.filed(Outcome::Failed, Some("evil\"} 1\nfake 2"), None);
        let text = m.exposition();
        assert!(!text.contains("evil"), "{text}");
        assert!(
            text.contains(r#"gt_requests_filed_total{outcome="failed",action="invalid"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn every_series_is_exposed() {
        let (_dir, m) = with_metrics();
        m.filed(
            Outcome::Processed,
            Some("restart"),
            Some(Duration::from_millis(3)),
        );
        m.heartbeat();
        m.agent_up("gt-mayor", true);
        m.agent_quarantined("gt-gastown-witness", true);
        m.agent_restarted("gt-mayor", "pane_exited");
        m.supervision_paused(true);
        m.notification("agent_quarantined", "sent");
        m.leftovers(&[Leftover {
            pid: 42,
            start: 1,
            role: "mayor".into(),
            session: "gt-mayor".into(),
            reason: Reason::NoLivePane,
            rss_bytes: 4096,
        }]);
        m.leftovers_ended(3);
        let text = m.exposition();
        for line in [
            r#"gt_requests_filed_total{outcome="processed",action="restart"} 1"#,
            r#"gt_request_duration_seconds_bucket{action="restart",le="0.005"} 1"#,
            r#"gt_request_duration_seconds_count{action="cycle"} 0"#,
            "gt_heartbeats_total 1",
            "gt_heartbeat_interval_seconds 30",
            "gt_inbox_pending 0",
            "gt_requests_in_progress 0",
            "gt_outcomes_unfiled 0",
            "gt_tmux_calls_total ",
            r#"gt_tmux_call_failures_total{reason="timeout"} "#,
            r#"gt_agent_up{session="gt-mayor"} 1"#,
            r#"gt_agent_quarantined{session="gt-gastown-witness"} 1"#,
            r#"gt_agent_restarts_total{session="gt-mayor",reason="pane_exited"} 1"#,
            "gt_supervision_paused 1",
            r#"gt_notifications_total{event="agent_quarantined",result="sent"} 1"#,
            r#"gt_build_info{version=""#,
            r#"gt_leftover_processes{reason="no_live_pane"} 1"#,
            r#"gt_leftover_processes{reason="outside_its_pane"} 0"#,
            r#"gt_leftover_resident_bytes{reason="no_live_pane"} 4096"#,
            "gt_leftover_processes_ended_total 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(
            text.contains("gt_last_heartbeat_timestamp_seconds "),
            "{text}"
        );
    }

    #[test]
    fn off_means_nothing_registered() {
        let dir = tempfile::tempdir().unwrap();
        let town = Town::at(dir.path()).unwrap();
        let m = Metrics::new(&town, &SharedConfig::new(Config::default()));
        m.filed(Outcome::Processed, Some("cycle"), None);
        m.heartbeat();
        assert_eq!(m.exposition(), "");
        assert!(!m.health().heartbeat_overdue());
    }
}
