//! Monitoring: `/metrics` read back through a real Prometheus server and
//! checked by `promtool`, `/healthz` and `/readyz` as a load balancer or
//! a person reads them, and `notify_command` run on the events a person
//! must act on.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::http::{free_port, get, get_accepting, get_unix, get_url, Reply};
use crate::support::proc::{KillOnDrop, Resume, Signal};
use crate::support::{file_name, read_lines, request_json, require_tool, Town, DEADLINE};

/// A town whose daemon serves metrics on a free loopback port.
pub(super) fn town_with_metrics(extra: Value) -> (Town, u16) {
    let port = free_port();
    let mut t = Town::new();
    let mut config = json!({"metrics_listen": format!("127.0.0.1:{port}")});
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
        c.extend(e);
    }
    t.config(config);
    (t, port)
}

/// Waits until GET `path` answers, and returns the answer.
pub(super) fn wait_reply(
    t: &Town,
    port: u16,
    path: &str,
    mut ok: impl FnMut(&Reply) -> bool,
) -> Reply {
    let mut last = None;
    t.wait_until(
        &format!("GET {path} on port {port} as expected"),
        DEADLINE,
        || {
            last = Some(get(port, path));
            matches!(&last, Some(Ok(r)) if ok(r))
        },
    );
    last.unwrap().unwrap()
}

/// The value of one sample line of an exposition (`NAME{LABELS} VALUE`).
pub(super) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A Prometheus server scraping one target every second, killed on drop.
struct Prometheus {
    port: u16,
    log: PathBuf,
    _server: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: gt\n    static_configs:\n\
                 \x20     - targets: ['127.0.0.1:{target_port}']\n        labels: {{town: test}}\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let out = fs::File::create(&log).expect("create prometheus.log");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out);
        Prometheus {
            port,
            log,
            _server: KillOnDrop::spawn(cmd),
            _dir: dir,
        }
    }

    /// An instant query through Prometheus's HTTP API: each series' labels
    /// and value.
    fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>, String> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            url_encode(promql)
        );
        let reply = get_url(&url, "application/json")?;
        let v: Value = serde_json::from_str(&reply.body)
            .map_err(|e| format!("{url}: not JSON ({e}): {}", reply.body))?;
        if v["status"] != "success" {
            return Err(format!("{url}: {v}"));
        }
        Ok(v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((r["metric"].clone(), value))
            })
            .collect())
    }

    /// Waits until `promql` gives exactly one series with value `want`;
    /// returns its labels.
    fn wait_for(&self, t: &Town, promql: &str, want: f64) -> Value {
        let last = std::cell::RefCell::new(Err(String::new()));
        crate::support::wait_every(
            &format!("Prometheus to answer {promql} = {want}"),
            Duration::from_secs(60),
            Duration::from_millis(250),
            || {
                let answer = self.query(promql);
                let found = matches!(&answer, Ok(s) if s.len() == 1 && s[0].1 == want);
                *last.borrow_mut() = answer;
                found
            },
            || {
                format!(
                    "last answer: {:?}\n--- prometheus log:\n{}\n{}",
                    last.borrow(),
                    read_lines(&self.log).join("\n"),
                    t.snapshot()
                )
            },
        );
        let answer = last.into_inner();
        answer.unwrap().remove(0).0
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_reads_back_what_the_daemon_counted() {
    if !require_tool("prometheus") {
        return;
    }
    let (t, port) = town_with_metrics(json!({}));
    t.start_dry();
    for _ in 0..2 {
        t.send_wait("cycle", "mayor", &["--timeout", "20s"])
            .assert_ok("cycle");
    }
    t.send_wait("shutdown", "gastown/witness", &["--timeout", "20s"])
        .assert_ok("shutdown");
    t.publish("typo.json", request_json("mayor", "reboot"));
    t.wait_failed_with("typo.json", "unknown action");

    let prometheus = Prometheus::scraping(port);
    let up = prometheus.wait_for(&t, r#"up{job="gt"}"#, 1.0);
    assert_eq!(up["town"], "test", "the scrape config's label: {up}");
    prometheus.wait_for(
        &t,
        r#"gt_requests_filed_total{outcome="processed",action="cycle"}"#,
        2.0,
    );
    prometheus.wait_for(
        &t,
        r#"gt_requests_filed_total{outcome="processed",action="shutdown"}"#,
        1.0,
    );
    // The typo's action is free text: it is counted as invalid, and makes
    // no series of its own.
    prometheus.wait_for(
        &t,
        r#"gt_requests_filed_total{outcome="failed",action="invalid"}"#,
        1.0,
    );
    prometheus.wait_for(
        &t,
        r#"count(gt_requests_filed_total{action="reboot"}) or vector(0)"#,
        0.0,
    );
    prometheus.wait_for(&t, r#"sum(gt_requests_filed_total)"#, 4.0);
    prometheus.wait_for(&t, r#"sum(gt_request_duration_seconds_count)"#, 4.0);
    prometheus.wait_for(&t, "gt_heartbeats_total >= bool 1", 1.0);
    prometheus.wait_for(&t, "gt_inbox_pending", 0.0);
    let build = prometheus.wait_for(&t, "gt_build_info", 1.0);
    assert_eq!(build["version"], env!("CARGO_PKG_VERSION"), "{build}");
    assert!(
        build["commit"].as_str().is_some_and(|c| !c.is_empty()),
        "{build}"
    );
    // The heartbeat-stale alert rule of docs/monitoring.md is quiet.
    prometheus.wait_for(
        &t,
        "count(time() - gt_last_heartbeat_timestamp_seconds > 2 * gt_heartbeat_interval_seconds + 10) or vector(0)",
        0.0,
    );
}

#[test]
fn the_exposition_passes_promtool() {
    if !require_tool("promtool") {
        return;
    }
    let (t, port) = town_with_metrics(json!({}));
    t.start_dry();
    t.send_wait("restart", "mayor", &["--timeout", "20s"])
        .assert_ok("restart");
    t.publish("bad.json", "{not json");
    t.wait_failed("bad.json");
    let reply = wait_reply(&t, port, "/metrics", |r| {
        sample(
            &r.body,
            r#"gt_requests_filed_total{outcome="failed",action="invalid"}"#,
        ) == Some(1.0)
    });
    assert_eq!(reply.status, 200);
    assert!(
        reply.content_type.starts_with("text/plain; version=0.0.4"),
        "the Prometheus text format: {reply:?}"
    );
    let mut check = Command::new("promtool");
    check
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = check.spawn().expect("run promtool");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), reply.body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !reply.body.contains("bad.json"),
        "file names are never labels:\n{}",
        reply.body
    );
}

#[test]
fn health_and_readiness_answer_plain_and_json() {
    let (t, port) = town_with_metrics(json!({}));
    t.start_dry();
    t.wait_first_heartbeat();
    let health = wait_reply(&t, port, "/healthz", |r| r.status == 200);
    assert!(health.body.starts_with("ok\n"), "{health:?}");
    assert!(health.content_type.starts_with("text/plain"), "{health:?}");

    let ready = get(port, "/readyz?format=json").expect("GET /readyz");
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.content_type, "application/json");
    let v: Value = serde_json::from_str(&ready.body).expect("JSON");
    assert_eq!(v["status"], "ok", "{v}");
    for check in ["lock", "recovery", "watch"] {
        assert_eq!(v["checks"][check]["ok"], true, "{check}: {v}");
    }
    let health = get_accepting(port, "/healthz", "application/json").expect("GET /healthz");
    let v: Value = serde_json::from_str(&health.body).expect("JSON");
    assert_eq!(v["checks"]["heartbeat"]["ok"], true, "{v}");
    assert_eq!(v["checks"]["filing"]["ok"], true, "{v}");

    assert_eq!(get(port, "/nothing").expect("GET").status, 404);
    t.stop();
    assert!(
        get(port, "/healthz").is_err(),
        "nothing answers once the daemon stopped"
    );
}

#[test]
fn filing_failing_fails_health_and_notifies_once() {
    let events = tempfile::tempdir().expect("temp dir");
    let log = events.path().join("events.jsonl");
    let (t, port) = town_with_metrics(json!({
        "notify_command": ["sh", "-c", format!("cat >> '{}'", log.display())],
    }));
    t.start_dry();
    // A file where processed/ should be: nothing can be filed there, and
    // the daemon does not "heal" it (only a missing directory).
    fs::remove_dir_all(t.processed()).expect("remove processed/");
    fs::write(t.processed(), b"in the way").expect("a file in the way");
    let first = file_name(&t.send("cycle", "mayor"));
    let health = wait_reply(&t, port, "/healthz?format=json", |r| r.status == 503);
    let v: Value = serde_json::from_str(&health.body).expect("JSON");
    assert_eq!(v["status"], "failing", "{v}");
    assert_eq!(v["checks"]["filing"]["ok"], false, "{v}");
    assert_eq!(v["checks"]["heartbeat"]["ok"], true, "{v}");

    t.wait_until("the filing_failing notification", DEADLINE, || {
        !read_lines(&log).is_empty()
    });
    let event: Value = serde_json::from_str(&read_lines(&log)[0]).expect("one JSON object a line");
    assert_eq!(event["event"], "filing_failing", "{event}");
    assert_eq!(event["unfiled"], 1, "{event}");
    assert_eq!(event["town"], t.root().display().to_string(), "{event}");
    assert!(
        event["summary"]
            .as_str()
            .is_some_and(|s| s.contains("cannot file")),
        "{event}"
    );

    // Still failing: the same event again is held back by notify_window.
    t.send("shutdown", "mayor");
    wait_reply(&t, port, "/metrics", |r| {
        sample(&r.body, "gt_outcomes_unfiled") == Some(2.0)
            && sample(
                &r.body,
                r#"gt_notifications_total{event="filing_failing",result="deduplicated"}"#,
            ) == Some(1.0)
    });
    assert_eq!(
        read_lines(&log).len(),
        1,
        "sent once: {:?}",
        read_lines(&log)
    );

    // Once outcomes can be filed again, health is back.
    fs::remove_file(t.processed()).expect("remove the file in the way");
    fs::create_dir(t.processed()).expect("processed/ again");
    t.wait_processed(&first);
    wait_reply(&t, port, "/healthz", |r| r.status == 200);
}

#[test]
fn a_hung_heartbeat_fails_health_and_notifies_degraded() {
    let events = tempfile::tempdir().expect("temp dir");
    let log = events.path().join("events.jsonl");
    let (t, port) = town_with_metrics(json!({
        "heartbeat_interval": "1s",
        // One poke may hang this long: longer than the overdue limit.
        "tmux_timeout": "60s",
        "notify_command": ["sh", "-c", format!("cat >> '{}'", log.display())],
    }));
    t.tmux.new_session("gt-mayor", &["sleep", "600"]);
    let server = t.tmux.server_pid();
    t.start();
    t.wait_first_heartbeat();
    wait_reply(&t, port, "/healthz", |r| r.status == 200);

    // A wedged tmux server: the next heartbeat's list-sessions hangs.
    let resume = Resume(server);
    gt::process::signal(server, Signal::STOP);
    let health = wait_reply(&t, port, "/healthz?format=json", |r| r.status == 503);
    let v: Value = serde_json::from_str(&health.body).expect("JSON");
    assert_eq!(v["checks"]["heartbeat"]["ok"], false, "{v}");
    t.wait_until("the degraded notification", DEADLINE, || {
        read_lines(&log)
            .iter()
            .any(|l| l.contains(r#""event":"degraded""#))
    });
    let event: Value = serde_json::from_str(&read_lines(&log)[0]).expect("JSON");
    assert!(
        event["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no heartbeat")),
        "{event}"
    );

    drop(resume); // SIGCONT: the heartbeat goes on.
    wait_reply(&t, port, "/healthz", |r| r.status == 200);
}

#[test]
fn a_unix_socket_serves_the_same_and_a_stale_one_is_replaced() {
    let mut t = Town::new();
    let socket = t.daemon_dir().join("metrics.sock");
    // A socket left by a daemon that died.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind a socket"));
    t.config(json!({"metrics_listen": socket.display().to_string()}));
    t.start_dry();
    let mut reply = None;
    t.wait_until("GET /metrics over the unix socket", DEADLINE, || {
        reply = get_unix(&socket, "/metrics").ok();
        reply.is_some()
    });
    let reply = reply.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("gt_build_info{"), "{reply:?}");
    t.stop();
    assert!(!socket.exists(), "the socket is removed at stop");
}

#[test]
fn a_remote_address_is_refused_unless_allowed_and_a_taken_port_stops_the_start() {
    let mut t = Town::new();
    t.config(json!({"metrics_listen": "0.0.0.0:9464"}));
    let out = t.gt(&["daemon", "start", "--dry-run"]);
    assert!(!out.success(), "{out:#?}");
    assert!(
        out.all().contains("metrics_listen") && out.all().contains("metrics_allow_remote"),
        "names the key and the way out: {out:#?}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port();
    t.config(json!({"metrics_listen": format!("127.0.0.1:{port}")}));
    let out = t.gt(&["daemon", "start", "--dry-run"]);
    assert!(!out.success(), "{out:#?}");
    assert!(
        out.all()
            .contains(&format!("cannot serve metrics on 127.0.0.1:{port}")),
        "says which address: {out:#?}"
    );
}

#[test]
fn off_by_default_no_endpoint_thread() {
    let t = Town::new();
    let pid = t.start_dry();
    t.wait_first_heartbeat();
    let threads = thread_names(pid);
    assert!(threads.iter().any(|n| n == "heartbeat"), "{threads:?}");
    assert!(
        !threads.iter().any(|n| n == "metrics" || n == "notifier"),
        "no endpoint or notifier unless configured: {threads:?}"
    );
}

fn thread_names(pid: u32) -> Vec<String> {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    fs::read_dir(tasks)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// Supervision of `agents` (their sessions), notifying into `log`.
fn supervised_town(
    agents: &[&str],
    agent_command: &[&str],
    log: &Path,
    extra: Value,
) -> (Town, u16) {
    let mut config = json!({
        "supervise": agents,
        "supervise_interval": "200ms",
        "agent_command": agent_command,
        "prime_text": "",
        "notify_command": ["sh", "-c", format!("cat >> '{}'", log.display())],
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
        c.extend(e);
    }
    town_with_metrics(config)
}

#[test]
fn a_quarantined_agent_is_in_the_metrics_and_notified() {
    let events = tempfile::tempdir().expect("temp dir");
    let log = events.path().join("events.jsonl");
    let (t, port) = supervised_town(
        &["mayor"],
        &["sh", "-c", "exit 1"],
        &log,
        json!({
            "max_restarts": 2,
            "supervise_backoff": "300ms",
            "supervise_backoff_max": "300ms",
            "quarantine": "1h",
        }),
    );
    t.start();
    let reply = wait_reply(&t, port, "/metrics", |r| {
        sample(&r.body, r#"gt_agent_quarantined{session="gt-mayor"}"#) == Some(1.0)
    });
    assert_eq!(
        sample(&reply.body, r#"gt_agent_up{session="gt-mayor"}"#),
        Some(0.0),
        "{}",
        reply.body
    );
    // Its failed starts leave no session: each death is a missing one.
    let restarts: f64 = ["session_missing", "pane_exited"]
        .iter()
        .filter_map(|reason| {
            sample(
                &reply.body,
                &format!(r#"gt_agent_restarts_total{{session="gt-mayor",reason="{reason}"}}"#),
            )
        })
        .sum();
    assert!(restarts >= 1.0, "{}", reply.body);
    assert_eq!(sample(&reply.body, "gt_supervision_paused"), Some(0.0));
    t.wait_until("the agent_quarantined notification", DEADLINE, || {
        read_lines(&log)
            .iter()
            .any(|l| l.contains("agent_quarantined"))
    });
    let lines = read_lines(&log);
    let event: Value = serde_json::from_str(&lines[0]).expect("JSON");
    assert_eq!(event["event"], "agent_quarantined", "{lines:?}");
    assert_eq!(event["session"], "gt-mayor", "{event}");
    assert!(
        event["detail"]
            .as_str()
            .is_some_and(|d| d.contains("quarantined")),
        "{event}"
    );
}

#[test]
fn agents_up_then_a_mass_death_pauses_supervision_in_the_metrics_and_notifies() {
    let events = tempfile::tempdir().expect("temp dir");
    let log = events.path().join("events.jsonl");
    let agents = ["mayor", "deacon", "gastown/witness"];
    let sessions = ["gt-mayor", "gt-deacon", "gt-gastown-witness"];
    let (t, port) = supervised_town(&agents, &["sleep", "600"], &log, json!({}));
    t.start();
    wait_reply(&t, port, "/metrics", |r| {
        sessions
            .iter()
            .all(|s| sample(&r.body, &format!(r#"gt_agent_up{{session="{s}"}}"#)) == Some(1.0))
    });
    // Supervision's first starts must be filed before the crash, or it
    // would find them still in hand.
    t.wait_until("the three starts filed", DEADLINE, || {
        crate::support::count_requests(&t.processed()) >= 3
    });
    // The tmux server crashes: every agent dies at the same moment.
    t.tmux.run(&["kill-server"]);
    let reply = wait_reply(&t, port, "/metrics", |r| {
        sample(&r.body, "gt_supervision_paused") == Some(1.0)
    });
    for s in sessions {
        assert_eq!(
            sample(&reply.body, &format!(r#"gt_agent_up{{session="{s}"}}"#)),
            Some(0.0),
            "{}",
            reply.body
        );
    }
    t.wait_until("the supervision_paused notification", DEADLINE, || {
        read_lines(&log)
            .iter()
            .any(|l| l.contains("supervision_paused"))
    });
    let event: Value = read_lines(&log)
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "supervision_paused")
        .expect("the event as JSON");
    assert_eq!(
        event["sessions"],
        json!(sessions
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()),
        "{event}"
    );
}

#[test]
fn the_documented_scrape_config_and_alert_rules_pass_promtool() {
    if !require_tool("promtool") {
        return;
    }
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/monitoring.md"))
            .expect("docs/monitoring.md");
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    let block = |start: &str| {
        *blocks
            .iter()
            .find(|b| b.starts_with(start))
            .unwrap_or_else(|| {
                panic!("docs/monitoring.md has no yaml block starting with {start:?}")
            })
    };
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("rules.yml"), block("groups:")).expect("write rules");
    let config = dir.path().join("prometheus.yml");
    fs::write(
        &config,
        format!("rule_files: [rules.yml]\n{}", block("scrape_configs:")),
    )
    .expect("write config");
    let mut cmd = Command::new("promtool");
    cmd.arg("check").arg("config").arg(&config);
    let out = crate::support::run(cmd);
    assert!(out.success(), "promtool check config: {out:#?}");
    assert!(
        out.all().contains("6 rules found"),
        "the six alert rules are read: {out:#?}"
    );
}
