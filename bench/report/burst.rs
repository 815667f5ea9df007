//! The burst's rows: gt against the filesystem's limit, and against the
//! inotifywait + jq baseline on a burst of the baseline's size.

use std::fmt::Write;

use super::units::{int, mib, rate, ratio, secs};
use super::{cell, cell2, heading, Report, Rows};
use crate::{DirResults, Held};

pub(super) fn rows(rows: &mut Rows<'_, DirResults>, report: &Report<'_>) {
    held(rows, report);
    against_limit(rows, report);
    against_baseline(rows, report);
}

/// The held runs that worked, ordered by their ratio to the loop; `None`
/// when none ran, the first failure when none worked.
fn held_runs(r: &DirResults) -> Option<Result<Vec<&Held>, String>> {
    if r.held.is_empty() {
        return None;
    }
    let mut ok: Vec<&Held> = r.held.iter().flatten().flatten().collect();
    if ok.is_empty() {
        let failed = r.held.iter().flatten().find_map(|h| h.as_ref().err());
        return Some(Err(failed.cloned().unwrap_or_default()));
    }
    ok.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    Some(Ok(ok))
}

/// A cell of the median held run (by ratio).
fn median_held(r: &DirResults, f: impl Fn(&Held) -> String) -> String {
    match held_runs(r) {
        None => "—".into(),
        Some(Err(_)) => "FAILED".into(),
        Some(Ok(runs)) => f(runs[runs.len() / 2]),
    }
}

/// The held burst against the loop run just before it, run by run.
fn held(rows: &mut Rows<'_, DirResults>, report: &Report<'_>) {
    let o = report.o;
    let nb = int(o.burst as u64);
    rows.add(
        &format!("Held burst, {nb} requests (median of {} runs)", o.repeat),
        "**gt daemon**: published while it is stopped (SIGSTOP), from SIGCONT to the last sidecar",
        |r| {
            median_held(r, |h| {
                format!("**{}** ({})", rate(h.burst.rate()), secs(h.burst.elapsed))
            })
        },
        "",
    );
    rows.add(
        "",
        "the limit loop, run just before it",
        |r| median_held(r, |h| rate(h.limit_rate)),
        "",
    );
    rows.add(
        "",
        "**held gt / limit**, the median run's",
        |r| median_held(r, |h| format!("**{:.2}**", h.ratio())),
        "≥ 0.6",
    );
    rows.add(
        "",
        "each run's held gt / limit, lowest to highest",
        |r| match held_runs(r) {
            None => "—".into(),
            Some(Err(_)) => "FAILED".into(),
            Some(Ok(runs)) => runs
                .iter()
                .map(|h| format!("{:.2}", h.ratio()))
                .collect::<Vec<_>>()
                .join(", "),
        },
        "",
    );
}

/// 1 + 5 + 6: the burst, against the limit.
fn against_limit(rows: &mut Rows<'_, DirResults>, report: &Report<'_>) {
    let o = report.o;
    let nb = int(o.burst as u64);
    let burst = if o.repeat > 1 {
        format!("Burst, {nb} requests (best of {})", o.repeat)
    } else {
        format!("Burst, {nb} requests")
    };
    rows.add(
        &burst,
        "**gt daemon**",
        |r| {
            cell(&r.burst, |b| {
                format!("**{}** ({})", rate(b.rate()), secs(b.elapsed))
            })
        },
        "",
    );
    rows.add(
        "",
        "physical limit (read, 2 renames, sidecar; no fsync)",
        |r| {
            cell(&r.limit, |l| {
                format!(
                    "{} ({})",
                    rate(l.n as f64 / l.elapsed.as_secs_f64()),
                    secs(l.elapsed)
                )
            })
        },
        "",
    );
    rows.add(
        "",
        "**gt / limit**",
        |r| {
            cell2(&r.burst, &r.limit, |b, l| {
                format!(
                    "**{:.0}%**",
                    100.0 * b.rate() / (l.n as f64 / l.elapsed.as_secs_f64())
                )
            })
        },
        "≥ 50%",
    );
    backlog_against_limit(rows, report);
    rows.add(
        "",
        "publishing alone (write .tmp + rename, 1 thread, no consumer)",
        |r| cell(&r.limit, |l| rate(l.n as f64 / l.published.as_secs_f64())),
        "",
    );
    rows.add(
        "",
        "limit + one syncfs at the end",
        |r| cell(&r.limit, |l| rate(l.n as f64 / l.with_syncfs.as_secs_f64())),
        "",
    );
    rows.add(
        "",
        "limit, durable: syncfs per 64 on a 2nd thread",
        |r| cell(&r.limit_durable, |l| rate(l.rate())),
        "",
    );
    rows.add(
        "",
        "gt / durable limit",
        |r| {
            cell2(&r.burst, &r.limit_durable, |b, l| {
                format!("{:.0}%", 100.0 * b.rate() / l.rate())
            })
        },
        "",
    );
    rows.add(
        "",
        "gt peak RSS (VmHWM)",
        |r| cell(&r.burst, |b| mib(b.hwm_kib)),
        "",
    );
}

/// gt draining a backlog, against the limit. Like with like: the backlog
/// of the limit loop's size if there is one (on ext4 the cost per file
/// grows with the directory), else the largest.
fn backlog_against_limit(rows: &mut Rows<'_, DirResults>, report: &Report<'_>) {
    let o = report.o;
    let largest = if o.backlogs.contains(&o.burst) {
        o.burst
    } else {
        o.backlogs.iter().copied().max().unwrap_or(0)
    };
    rows.add(
        "",
        &format!(
            "gt draining a {} backlog / limit on {} (no publisher running)",
            int(largest as u64),
            int(o.burst as u64)
        ),
        |r| {
            let backlog = r
                .backlogs
                .iter()
                .find(|(size, _)| *size == largest)
                .map(|(_, b)| b);
            match backlog {
                Some(b) => cell2(b, &r.limit, |b, l| {
                    format!(
                        "{:.0}%",
                        100.0 * (b.n as f64 / b.drain.as_secs_f64()) / l.rate()
                    )
                }),
                None => "—".into(),
            }
        },
        "",
    );
}

/// The baseline is too slow for the big burst: gt runs one of its size.
fn against_baseline(rows: &mut Rows<'_, DirResults>, report: &Report<'_>) {
    let nbb = int(report.o.baseline_burst as u64);
    rows.add(
        &format!("Burst of {nbb}, the baseline's size (one run each)"),
        "inotifywait + jq baseline",
        |r| {
            report.baseline_cell(cell(&r.baseline_burst, |b| {
                format!("{} ({})", rate(b.rate()), secs(b.elapsed))
            }))
        },
        "",
    );
    rows.add(
        "",
        "gt daemon",
        |r| {
            report.baseline_cell(cell(&r.burst_at_baseline_size, |b| {
                format!("{} ({})", rate(b.rate()), secs(b.elapsed))
            }))
        },
        "",
    );
    rows.add(
        "",
        &format!("**gt / baseline**, both on {nbb}"),
        |r| {
            report.baseline_cell(cell2(
                &r.burst_at_baseline_size,
                &r.baseline_burst,
                |b, x| format!("**{}**", ratio(b.rate() / x.rate())),
            ))
        },
        "≥ 200×",
    );
}

pub(super) fn how(s: &mut String) {
    let _ = writeln!(s, "- Held burst: the daemon is started and ready, then stopped (SIGSTOP); the requests are published, the filesystem flushed, and the daemon let go (SIGCONT): from then until the last sidecar exists. Nothing else runs meanwhile, as for the limit loop, whose inbox is also filled first; each run's limit loop runs just before its held burst, and the median of the runs' ratios is the figure.");
    let _ = writeln!(s, "- Burst: from the first publish until the last sidecar exists (the bench publishes from one thread while the daemon consumes). Physical limit: the same number of files already in an inbox, consumed by a Rust loop doing only readdir, read, two renames and a sidecar write. The baseline is too slow for the big burst, so gt runs a burst of the same size right before it, and only those two are compared.");
    let _ = writeln!(s, "- The burst can go no faster than its one publisher thread (\"publishing alone\"), which competes with the daemon for the 2nd core and the inbox directory; the limit loop has its inbox filled beforehand. On 2 cores, gt / limit is therefore bounded by about publishing-rate / limit-rate.");
}

/// How much of the burst was publishing, on column `r`.
pub(super) fn seen(s: &mut String, r: &DirResults, several_gts: bool) {
    if let Some(Ok(b)) = &r.burst {
        let _ = writeln!(
            s,
            "- On {}: publishing the burst alone took {} of its {}.",
            heading(r, several_gts),
            secs(b.published),
            secs(b.elapsed)
        );
    }
}
