//! The idle rows: what a daemon with nothing to do costs.

use std::fmt::Write;

use super::units::mib;
use super::{cell, Rows};
use crate::args::Opts;
use crate::DirResults;

pub(super) fn rows(rows: &mut Rows<'_, DirResults>, o: &Opts) {
    let idle = format!("Idle {} s, heartbeat 1 s", o.idle_secs);
    let per30 = |cpu: f64, s: f64| {
        if (s - 30.0).abs() > 1.0 {
            format!(" ({:.3} s per 30 s)", cpu * 30.0 / s)
        } else {
            String::new()
        }
    };
    rows.add(
        &idle,
        "**daemon CPU** (utime+stime)",
        |r| {
            cell(&r.idle, |i| {
                format!("**{:.2} s**{}", i.cpu, per30(i.cpu, i.secs))
            })
        },
        "< 0.05 s per 30 s",
    );
    rows.add(
        "",
        "children CPU (cutime+cstime)",
        |r| cell(&r.idle, |i| format!("{:.2} s", i.children_cpu)),
        "",
    );
    rows.add(
        "",
        "**RSS** (VmRSS; VmHWM)",
        |r| {
            cell(&r.idle, |i| {
                format!("**{}** ({})", mib(i.rss_kib), mib(i.hwm_kib))
            })
        },
        "< 16 MiB",
    );
    rows.add(
        "",
        "wake-ups (context switches, all threads)",
        |r| {
            cell(&r.idle, |i| {
                format!(
                    "{:.1}/s ({} threads)",
                    i.wakeups_per_sec,
                    i.threads.map_or("?".into(), |t| t.to_string())
                )
            })
        },
        "no busy polling",
    );
    rows.add(
        "",
        "heartbeats counted in state.json",
        |r| {
            cell(&r.idle, |i| {
                i.heartbeats.map_or("?".into(), |h| h.to_string())
            })
        },
        "",
    );
}

pub(super) fn how(s: &mut String) {
    let _ = writeln!(s, "- Idle: after start-up and one settling second; CPU from /proc/PID/stat fields 14–17 (clock ticks of 10 ms), wake-ups from the threads' context-switch counters.");
}
