//! The latency rows: one request at a time, gt and the baseline.

use std::fmt::Write;
use std::time::Duration;

use super::units::{int, lat3, pct, ratio};
use super::{cell, cell2, Report, Rows};
use crate::scenarios::Latency;
use crate::DirResults;

/// The latency compared with the baseline: to the sidecar written, the end
/// point both share.
fn p50(l: &Latency) -> Duration {
    pct(&l.to_sidecar, 0.5)
}

pub(super) fn rows(rows: &mut Rows<'_, DirResults>, report: &Report<'_>) {
    let o = report.o;
    let lat = format!(
        "Latency, {} one at a time ({} ms apart)",
        int(o.latency as u64),
        o.gap.as_millis()
    );
    rows.add(
        &lat,
        "**gt**: rename → request filed in processed/, p50 / p99 / max",
        |r| cell(&r.latency, |l| format!("**{}**", lat3(&l.to_file))),
        "p50 < 1 ms, p99 < 5 ms",
    );
    rows.add(
        "",
        "gt: rename → sidecar written, p50 / p99 / max",
        |r| cell(&r.latency, |l| lat3(&l.to_sidecar)),
        "",
    );
    rows.add(
        "",
        "the publishing rename alone (bench side), p50 / p99 / max",
        |r| cell(&r.latency, |l| lat3(&l.rename)),
        "",
    );
    let samples = if o.baseline_latency == o.latency {
        String::new()
    } else {
        format!(
            " ({} samples, gt {})",
            int(o.baseline_latency as u64),
            int(o.latency as u64)
        )
    };
    rows.add(
        "",
        &format!("baseline: rename → sidecar written{samples}, p50 / p99 / max"),
        |r| report.baseline_cell(cell(&r.baseline_latency, |l| lat3(&l.to_sidecar))),
        "",
    );
    rows.add(
        "",
        "**baseline p50 / gt p50**, both to sidecar written",
        |r| {
            report.baseline_cell(cell2(&r.latency, &r.baseline_latency, |g, b| {
                format!("**{}**", ratio(p50(b).as_secs_f64() / p50(g).as_secs_f64()))
            }))
        },
        "",
    );
}

pub(super) fn how(s: &mut String) {
    let _ = writeln!(s, "- Latency: from the publishing `rename` until inotify on `processed/` reports the sidecar closed after writing (or renamed into place), and the request renamed in. gt writes the sidecar before it moves the request beside it, the baseline after, so \"sidecar written\" is the end point they are compared on. The first 20 (baseline: 5) are warm-up and not counted.");
}
