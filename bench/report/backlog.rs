//! The backlog rows: requests waiting in the inbox when the daemon starts.

use std::fmt::Write;

use super::units::{int, mib, ms, rate, secs};
use super::{cell, Rows};
use crate::args::Opts;
use crate::DirResults;

pub(super) fn rows(rows: &mut Rows<'_, DirResults>, o: &Opts) {
    for (i, &size) in o.backlogs.iter().enumerate() {
        let title = format!("Backlog of {} at start", int(size as u64));
        let target = if i + 1 == o.backlogs.len() {
            "RSS < 64 MiB (100k)"
        } else {
            ""
        };
        rows.add(
            &title,
            "drain, from spawn (rate)",
            |r| {
                cell(&r.backlogs[i].1, |b| {
                    format!(
                        "{} ({})",
                        secs(b.drain),
                        rate(b.n as f64 / b.drain.as_secs_f64())
                    )
                })
            },
            "",
        );
        rows.add(
            "",
            "peak RSS (VmHWM)",
            |r| cell(&r.backlogs[i].1, |b| mib(b.hwm_kib)),
            target,
        );
        rows.add(
            "",
            "state.json running:true after",
            |r| cell(&r.backlogs[i].1, |b| secs(b.ready)),
            "",
        );
    }
    if o.backlogs.len() > 1 {
        let sizes: Vec<String> = o
            .backlogs
            .iter()
            .map(|s| format!("{}k", s / 1000))
            .collect();
        rows.add(
            "Backlog linearity",
            &format!("µs per request, {}", sizes.join(" / ")),
            |r| {
                r.backlogs
                    .iter()
                    .map(|(_, b)| {
                        cell(b, |b| {
                            format!("{:.1}", b.drain.as_secs_f64() * 1e6 / b.n as f64)
                        })
                    })
                    .collect::<Vec<_>>()
                    .join(" / ")
            },
            "flat",
        );
    }
}

pub(super) fn how(s: &mut String) {
    let _ = writeln!(s, "- Backlog: the requests are in the inbox before the daemon is spawned; drain is from spawn until the last sidecar exists (so it includes start-up).");
}

/// Backlogs whose end was seen late, on column `r`.
pub(super) fn seen(s: &mut String, r: &DirResults) {
    for (_, b) in &r.backlogs {
        if let Some(Ok(b)) = b {
            if b.uncertainty.as_secs_f64() > 0.01 * b.drain.as_secs_f64() {
                let _ = writeln!(s, "- On {}: the {} backlog's end was seen up to {} ms late (consumed out of name order).", r.dir.display(), int(b.n as u64), ms(b.uncertainty));
            }
        }
    }
}
