//! The markdown report: machine, the main table, the durability and storm
//! tables, notes.

use std::fmt::Write;
use std::time::Duration;

use crate::args::Opts;
use crate::durability::{self, Durability, Kill};
use crate::scenarios::Latency;
use crate::storm::{self, Storm, StormResult};
use crate::{DirResults, Outcome};

struct Row {
    scenario: String,
    measure: String,
    cells: Vec<String>,
    target: String,
}

fn cell<T>(o: &Outcome<T>, f: impl Fn(&T) -> String) -> String {
    match o {
        None => "—".into(),
        Some(Err(_)) => "FAILED".into(),
        Some(Ok(v)) => f(v),
    }
}

fn cell2<A, B>(a: &Outcome<A>, b: &Outcome<B>, f: impl Fn(&A, &B) -> String) -> String {
    match (a, b) {
        (Some(Ok(a)), Some(Ok(b))) => f(a, b),
        (Some(Err(_)), _) | (_, Some(Err(_))) => "FAILED".into(),
        _ => "—".into(),
    }
}

/// 20000 → "20,000".
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{} req/s", int(r.round() as u64))
    } else {
        format!("{r:.1} req/s")
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 1000.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn ratio(x: f64) -> String {
    if x >= 10.0 {
        format!("{}×", int(x.round() as u64))
    } else {
        format!("{x:.2}×")
    }
}

/// Nearest-rank percentile of a sample.
fn pct(samples: &[Duration], q: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn lat3(l: &[Duration]) -> String {
    format!(
        "{} / {} / {} ms",
        ms(pct(l, 0.50)),
        ms(pct(l, 0.99)),
        ms(pct(l, 1.0))
    )
}

/// The latency compared with the baseline: to the sidecar written, the end
/// point both share.
fn lat_p50(l: &Latency) -> Duration {
    pct(&l.to_sidecar, 0.5)
}

/// A column's heading: the directory, and the `gt` when there are several.
fn heading(r: &DirResults, several_gts: bool) -> String {
    if several_gts {
        format!("{} ({}), {}", r.dir.display(), r.fs, r.gt)
    } else {
        format!("{} ({})", r.dir.display(), r.fs)
    }
}

#[allow(clippy::too_many_arguments)]
pub fn render(
    o: &Opts,
    machine: &[String],
    command: &str,
    results: &[DirResults],
    baseline_missing: Option<&str>,
    storm_missing: Option<&str>,
    notes: &[String],
    errors: &[String],
) -> String {
    let several_gts = results.iter().any(|r| r.gt != results[0].gt);
    let mut rows: Vec<Row> = Vec::new();
    let mut row =
        |scenario: &str, measure: &str, f: &dyn Fn(&DirResults) -> String, target: &str| {
            rows.push(Row {
                scenario: scenario.into(),
                measure: measure.into(),
                cells: results.iter().map(f).collect(),
                target: target.into(),
            });
        };
    let nb = int(o.burst as u64);
    let base_na = |c: String| match baseline_missing {
        Some(_) if c == "—" && o.skip_baseline => "skipped".to_string(),
        Some(_) if c == "—" => "**SKIPPED**: no inotify-tools/jq".to_string(),
        _ => c,
    };

    // 1 + 5 + 6: burst, against the limit and the baseline.
    let burst = if o.repeat > 1 {
        format!("Burst, {nb} requests (best of {})", o.repeat)
    } else {
        format!("Burst, {nb} requests")
    };
    row(
        &burst,
        "**gt daemon**",
        &|r| {
            cell(&r.burst, |b| {
                format!("**{}** ({})", rate(b.rate()), secs(b.elapsed))
            })
        },
        "",
    );
    row(
        "",
        "physical limit (read, 2 renames, sidecar; no fsync)",
        &|r| {
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
    row(
        "",
        "**gt / limit**",
        &|r| {
            cell2(&r.burst, &r.limit, |b, l| {
                format!(
                    "**{:.0}%**",
                    100.0 * b.rate() / (l.n as f64 / l.elapsed.as_secs_f64())
                )
            })
        },
        "≥ 50%",
    );
    // Compare like with like: the backlog of the limit loop's size if there
    // is one (on ext4 the cost per file grows with the directory), else the
    // largest.
    let largest = if o.backlogs.contains(&o.burst) {
        o.burst
    } else {
        o.backlogs.iter().copied().max().unwrap_or(0)
    };
    row(
        "",
        &format!(
            "gt draining a {} backlog / limit on {} (no publisher running)",
            int(largest as u64),
            int(o.burst as u64)
        ),
        &|r| {
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
    row(
        "",
        "publishing alone (write .tmp + rename, 1 thread, no consumer)",
        &|r| cell(&r.limit, |l| rate(l.n as f64 / l.published.as_secs_f64())),
        "",
    );
    row(
        "",
        "limit + one syncfs at the end",
        &|r| cell(&r.limit, |l| rate(l.n as f64 / l.with_syncfs.as_secs_f64())),
        "",
    );
    row(
        "",
        "limit, durable: syncfs per 64 on a 2nd thread",
        &|r| cell(&r.limit_durable, |l| rate(l.rate())),
        "",
    );
    row(
        "",
        "gt / durable limit",
        &|r| {
            cell2(&r.burst, &r.limit_durable, |b, l| {
                format!("{:.0}%", 100.0 * b.rate() / l.rate())
            })
        },
        "",
    );
    row(
        "",
        "gt peak RSS (VmHWM)",
        &|r| cell(&r.burst, |b| mib(b.hwm_kib)),
        "",
    );

    // The baseline is too slow for the big burst: gt runs one of its size.
    let nbb = int(o.baseline_burst as u64);
    row(
        &format!("Burst of {nbb}, the baseline's size (one run each)"),
        "inotifywait + jq baseline",
        &|r| {
            base_na(cell(&r.baseline_burst, |b| {
                format!("{} ({})", rate(b.rate()), secs(b.elapsed))
            }))
        },
        "",
    );
    row(
        "",
        "gt daemon",
        &|r| {
            base_na(cell(&r.burst_at_baseline_size, |b| {
                format!("{} ({})", rate(b.rate()), secs(b.elapsed))
            }))
        },
        "",
    );
    row(
        "",
        &format!("**gt / baseline**, both on {nbb}"),
        &|r| {
            base_na(cell2(
                &r.burst_at_baseline_size,
                &r.baseline_burst,
                |b, x| format!("**{}**", ratio(b.rate() / x.rate())),
            ))
        },
        "≥ 200×",
    );

    // 2: latency.
    let lat = format!(
        "Latency, {} one at a time ({} ms apart)",
        int(o.latency as u64),
        o.gap.as_millis()
    );
    row(
        &lat,
        "**gt**: rename → request filed in processed/, p50 / p99 / max",
        &|r| cell(&r.latency, |l| format!("**{}**", lat3(&l.to_file))),
        "p50 < 1 ms, p99 < 5 ms",
    );
    row(
        "",
        "gt: rename → sidecar written, p50 / p99 / max",
        &|r| cell(&r.latency, |l| lat3(&l.to_sidecar)),
        "",
    );
    row(
        "",
        "the publishing rename alone (bench side), p50 / p99 / max",
        &|r| cell(&r.latency, |l| lat3(&l.rename)),
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
    row(
        "",
        &format!("baseline: rename → sidecar written{samples}, p50 / p99 / max"),
        &|r| base_na(cell(&r.baseline_latency, |l| lat3(&l.to_sidecar))),
        "",
    );
    row(
        "",
        "**baseline p50 / gt p50**, both to sidecar written",
        &|r| {
            base_na(cell2(&r.latency, &r.baseline_latency, |g, b| {
                format!(
                    "**{}**",
                    ratio(lat_p50(b).as_secs_f64() / lat_p50(g).as_secs_f64())
                )
            }))
        },
        "",
    );

    // 3: backlog at start.
    for (i, &size) in o.backlogs.iter().enumerate() {
        let title = format!("Backlog of {} at start", int(size as u64));
        let target = if i + 1 == o.backlogs.len() {
            "RSS < 64 MiB (100k)"
        } else {
            ""
        };
        row(
            &title,
            "drain, from spawn (rate)",
            &|r| {
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
        row(
            "",
            "peak RSS (VmHWM)",
            &|r| cell(&r.backlogs[i].1, |b| mib(b.hwm_kib)),
            target,
        );
        row(
            "",
            "state.json running:true after",
            &|r| cell(&r.backlogs[i].1, |b| secs(b.ready)),
            "",
        );
    }
    if o.backlogs.len() > 1 {
        let sizes: Vec<String> = o
            .backlogs
            .iter()
            .map(|s| format!("{}k", s / 1000))
            .collect();
        row(
            "Backlog linearity",
            &format!("µs per request, {}", sizes.join(" / ")),
            &|r| {
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

    // 4: idle.
    let idle = format!("Idle {} s, heartbeat 1 s", o.idle_secs);
    let per30 = |cpu: f64, s: f64| {
        if (s - 30.0).abs() > 1.0 {
            format!(" ({:.3} s per 30 s)", cpu * 30.0 / s)
        } else {
            String::new()
        }
    };
    row(
        &idle,
        "**daemon CPU** (utime+stime)",
        &|r| {
            cell(&r.idle, |i| {
                format!("**{:.2} s**{}", i.cpu, per30(i.cpu, i.secs))
            })
        },
        "< 0.05 s per 30 s",
    );
    row(
        "",
        "children CPU (cutime+cstime)",
        &|r| cell(&r.idle, |i| format!("{:.2} s", i.children_cpu)),
        "",
    );
    row(
        "",
        "**RSS** (VmRSS; VmHWM)",
        &|r| {
            cell(&r.idle, |i| {
                format!("**{}** ({})", mib(i.rss_kib), mib(i.hwm_kib))
            })
        },
        "< 16 MiB",
    );
    row(
        "",
        "wake-ups (context switches, all threads)",
        &|r| {
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
    row(
        "",
        "heartbeats counted in state.json",
        &|r| {
            cell(&r.idle, |i| {
                i.heartbeats.map_or("?".into(), |h| h.to_string())
            })
        },
        "",
    );

    // Rows of scenarios that did not run (--only) are left out; a group's
    // title moves down to its first row that stays.
    let mut kept: Vec<Row> = Vec::new();
    let mut title: Option<String> = None;
    for mut r in rows {
        if r.cells
            .iter()
            .all(|c| c.split(" / ").all(|part| part == "—"))
        {
            if !r.scenario.is_empty() {
                title = Some(r.scenario);
            }
            continue;
        }
        if r.scenario.is_empty() {
            if let Some(t) = title.take() {
                r.scenario = t;
            }
        } else {
            title = None;
        }
        kept.push(r);
    }
    let rows = kept;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "### `gt daemon` benchmark{}\n",
        if o.quick { " (quick smoke run)" } else { "" }
    );
    let _ = writeln!(s, "Command: `{command}`\n");
    for line in machine {
        let _ = writeln!(s, "{line}");
    }
    let mut places: Vec<String> = Vec::new();
    for r in results {
        let place = format!("`{}` ({})", r.dir.display(), r.fs);
        if !places.contains(&place) {
            places.push(place);
        }
    }
    let _ = writeln!(s, "- towns under: {}\n", places.join(", "));

    if !rows.is_empty() {
        let headings: Vec<String> = results.iter().map(|r| heading(r, several_gts)).collect();
        table(&mut s, &headings, &rows);
        main_notes(&mut s, o, results, baseline_missing);
    }
    render_durability(&mut s, o, results, several_gts);
    render_storm(&mut s, o, results, storm_missing);
    if !notes.is_empty() {
        let _ = writeln!(s, "\nWarnings (behaviour the bench did not expect):");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(s, "\nFailed scenarios:");
        for e in errors {
            let first = e.lines().next().unwrap_or("");
            let _ = writeln!(s, "- {first}");
        }
    }
    s
}

/// A markdown table: Scenario, Measure, one column per heading, Target.
fn table(s: &mut String, headings: &[String], rows: &[Row]) {
    let _ = write!(s, "| Scenario | Measure |");
    for h in headings {
        let _ = write!(s, " {h} |");
    }
    let _ = writeln!(s, " Target |");
    let _ = write!(s, "|---|---|");
    for _ in headings {
        let _ = write!(s, "--:|");
    }
    let _ = writeln!(s, "---|");
    for r in rows {
        let _ = write!(s, "| {} | {} |", r.scenario, r.measure);
        for c in &r.cells {
            let _ = write!(s, " {c} |");
        }
        let _ = writeln!(s, " {} |", r.target);
    }
}

/// How the main table is measured.
fn main_notes(s: &mut String, o: &Opts, results: &[DirResults], baseline_missing: Option<&str>) {
    let _ = writeln!(s, "\nHow it is measured:");
    let _ = writeln!(s, "- Every scenario gets a fresh town and its own `gt --town T daemon run --dry-run` (config `{}`), stopped with SIGTERM afterwards; requests are valid `shutdown` requests from `mayor`, published as agents do (write `inbox/.NAME.tmp`, rename to `inbox/NAME.json`), and every run is checked afterwards, request by request: filed in `processed/` with a sidecar saying `processed`, from `{}`, action `{}` (and, for gt, the daemon's PID); nothing else in `processed/`, nothing left in `inbox/`, `processing/` or `failed/`. A scenario that fails the check fails the run.", crate::town::CONFIG, crate::town::FROM, crate::town::ACTION);
    let _ = writeln!(s, "- Before each timer starts, the towns' filesystem is flushed (`syncfs`) until a flush finds nothing to write, then left alone for {} ms, so that what earlier scenarios left to write (removing a town, publishing a backlog) is not charged to the next measurement.", o.settle.as_millis());
    let _ = writeln!(s, "- Burst: from the first publish until the last sidecar exists (the bench publishes from one thread while the daemon consumes). Physical limit: the same number of files already in an inbox, consumed by a Rust loop doing only readdir, read, two renames and a sidecar write. The baseline is too slow for the big burst, so gt runs a burst of the same size right before it, and only those two are compared.");
    let _ = writeln!(s, "- The burst can go no faster than its one publisher thread (\"publishing alone\"), which competes with the daemon for the 2nd core and the inbox directory; the limit loop has its inbox filled beforehand. On 2 cores, gt / limit is therefore bounded by about publishing-rate / limit-rate.");
    let _ = writeln!(s, "- Latency: from the publishing `rename` until inotify on `processed/` reports the sidecar closed after writing (or renamed into place), and the request renamed in. gt writes the sidecar before it moves the request beside it, the baseline after, so \"sidecar written\" is the end point they are compared on. The first 20 (baseline: 5) are warm-up and not counted.");
    let _ = writeln!(s, "- Backlog: the requests are in the inbox before the daemon is spawned; drain is from spawn until the last sidecar exists (so it includes start-up).");
    let _ = writeln!(s, "- Idle: after start-up and one settling second; CPU from /proc/PID/stat fields 14–17 (clock ticks of 10 ms), wake-ups from the threads' context-switch counters.");
    let _ = writeln!(
        s,
        "- Ratios are what count; absolute times move with the machine."
    );
    let several_gts = results.iter().any(|r| r.gt != results[0].gt);
    for r in results {
        if let Some(Ok(b)) = &r.burst {
            let _ = writeln!(
                s,
                "- On {}: publishing the burst alone took {} of its {}.",
                heading(r, several_gts),
                secs(b.published),
                secs(b.elapsed)
            );
        }
        for (_, b) in &r.backlogs {
            if let Some(Ok(b)) = b {
                if b.uncertainty.as_secs_f64() > 0.01 * b.drain.as_secs_f64() {
                    let _ = writeln!(s, "- On {}: the {} backlog's end was seen up to {} ms late (consumed out of name order).", r.dir.display(), int(b.n as u64), ms(b.uncertainty));
                }
            }
        }
    }
    if let Some(why) = baseline_missing {
        let _ = writeln!(s, "- {why}");
    }
}

/// A duration in the unit that reads best: ms below a second, else s.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", ms(d))
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn lat_human(l: &[Duration], max: bool) -> String {
    let mut parts = vec![human(pct(l, 0.50)), human(pct(l, 0.99))];
    if max {
        parts.push(human(pct(l, 1.0)));
    }
    parts.join(" / ")
}

/// Rows whose every cell is "—" are dropped, their title moving down.
fn keep(rows: Vec<Row>) -> Vec<Row> {
    let mut kept: Vec<Row> = Vec::new();
    let mut title: Option<String> = None;
    for mut r in rows {
        if r.cells.iter().all(|c| c == "—") {
            if !r.scenario.is_empty() {
                title = Some(r.scenario);
            }
            continue;
        }
        if r.scenario.is_empty() {
            if let Some(t) = title.take() {
                r.scenario = t;
            }
        } else {
            title = None;
        }
        kept.push(r);
    }
    kept
}

fn render_durability(s: &mut String, o: &Opts, results: &[DirResults], several_gts: bool) {
    let cols: Vec<&DirResults> = results.iter().filter(|r| r.durability.is_some()).collect();
    if cols.is_empty() {
        return;
    }
    let several_dirs = cols.iter().any(|r| r.dir != cols[0].dir);
    let headings: Vec<String> = cols
        .iter()
        .map(|r| match (several_gts, several_dirs) {
            (true, false) => r.gt.clone(),
            (g, _) => heading(r, g),
        })
        .collect();
    let mib = |m: Option<u64>| m.map_or("?".into(), |m| format!("{} MiB", int(m)));
    let mut rows: Vec<Row> = Vec::new();
    let mut row =
        |scenario: &str, measure: &str, f: &dyn Fn(&Durability) -> String, target: &str| {
            rows.push(Row {
                scenario: scenario.into(),
                measure: measure.into(),
                cells: cols.iter().map(|r| cell(&r.durability, f)).collect(),
                target: target.into(),
            });
        };
    let n = int(o.durable_samples as u64);
    row(
        &format!("Latency, {n} requests one at a time, nothing else writing"),
        "rename → sidecar written, p50 / p99",
        &|d| lat_human(&d.quiet.sidecar, false),
        "",
    );
    row(
        "",
        "rename → counted in state.json (durable), p50 / p99",
        &|d| lat_human(&d.quiet.durable, false),
        "",
    );
    row(
        &format!("The same, {n} or more, while another process writes a big file without fsync"),
        "the writer: written, in; most dirty + writeback page cache seen",
        &|d| {
            format!(
                "{}{} in {}; {}",
                mib(Some(d.writer_bytes >> 20)),
                if d.writer_note.is_some() {
                    " (scaled down, see below)"
                } else {
                    ""
                },
                human(d.writer_took),
                mib(d.busy_dirty_mib)
            )
        },
        "",
    );
    row(
        "",
        "rename → sidecar written, p50 / p99",
        &|d| lat_human(&d.busy.sidecar, false),
        "",
    );
    row(
        "",
        "**rename → counted in state.json (durable)**, p50 / p99 / max",
        &|d| format!("**{}**", lat_human(&d.busy.durable, true)),
        "not the writer's data",
    );
    let kill = |k: &Kill| {
        format!(
            "{} (killed {} in{}; dirty {})",
            human(k.released),
            human(k.after),
            if k.in_flush { "" } else { ", NOT in a flush" },
            mib(k.dirty_mib)
        )
    };
    row(
        &format!(
            "SIGKILL while filing a burst of {}, the ledger inside a flush",
            int(durability::KILL_BURST as u64),
        ),
        "→ daemon.lock free, nothing else writing",
        &|d| kill(&d.kill_quiet),
        "",
    );
    row(
        "",
        "**→ daemon.lock free, the writer's file written just before, not synced**",
        &|d| format!("**{}**", kill(&d.kill_busy)),
        "not the writer's data",
    );
    row(
        "",
        "filed as interrupted by the next daemon (quiet / busy)",
        &|d| format!("{} / {}", d.kill_quiet.interrupted, d.kill_busy.interrupted),
        "",
    );
    let rows = keep(rows);
    let _ = writeln!(s, "\n### Durability beside a large concurrent writer\n");
    table(s, &headings, &rows);
    let _ = writeln!(s, "\nHow it is measured:");
    let _ = writeln!(s, "- Only on disk-backed filesystems (on tmpfs there is no disk for a flush to wait for). A fresh town and `gt daemon run --dry-run` (config `{}`) per part; requests as in the main table.", crate::town::CONFIG);
    let _ = writeln!(s, "- Latency: one request at a time, the next {} ms after the previous one's sidecar; the first 20 of the quiet part are warm-up. \"Counted in state.json\": the first rewrite of state.json (seen by inotify) whose `requests_processed` includes it; the daemon counts an outcome only after the flush that made it durable, and rewrites state.json at most every 100 ms, so that is the floor.", 10);
    let _ = writeln!(s, "- The writer is another process writing one file of incompressible bytes beside the town, as fast as it can, never syncing. The second part starts sampling when the writer has written half its file and goes on until it has written everything and at least {n} samples were taken; whatever of its file is dirty at a flush is what a `syncfs` has to write first.");
    let _ = writeln!(s, "- SIGKILL: a fresh daemon is sent a burst (published from a second thread) and killed the moment its `ledger` thread (the one that makes outcomes durable) is seen in uninterruptible sleep (`D` in `/proc/PID/task/TID/stat`, polled every 0.1 ms), i.e. inside a flush; then the bench tries a non-blocking `flock` on `daemon.lock` every 0.2 ms until it gets it. The kernel releases the lock when the last thread has left the kernel, so that is how long the flush in hand kept a dead daemon's town locked. The busy variant runs the writer to the end first (its data dirty; with `dirty_background_ratio` above its size, the kernel does not start writing it back for `dirty_expire_centisecs`). Afterwards a second daemon files the rest and every request is checked: processed, or failed as interrupted, once.");
    for r in &cols {
        if let Some(Ok(d)) = &r.durability {
            if let Some(note) = &d.writer_note {
                let _ = writeln!(s, "- {}: {note}", heading(r, several_gts));
            }
        }
    }
}

fn render_storm(s: &mut String, o: &Opts, results: &[DirResults], storm_missing: Option<&str>) {
    let cols: Vec<&DirResults> = results.iter().filter(|r| !r.storms.is_empty()).collect();
    if cols.is_empty() {
        if let Some(why) = storm_missing {
            let _ = writeln!(s, "\n### Storm of agents cycling at once\n\n**{why}**");
        }
        return;
    }
    let headings: Vec<String> = cols.iter().map(|r| r.gt.clone()).collect();
    let default = storm::default_pool();
    let mut rows: Vec<Row> = Vec::new();
    for (i, case) in storm::cases(&o.storms).iter().enumerate() {
        let cells = |first: bool, f: &dyn Fn(&Storm) -> String| -> Vec<String> {
            cols.iter()
                .map(|r| match r.storms.get(i).map(|(_, o)| o) {
                    None | Some(None) => "—".into(),
                    Some(Some(Err(_))) => "FAILED".into(),
                    Some(Some(Ok(StormResult::Unsupported(why)))) if first => {
                        format!("n/a: {why}")
                    }
                    Some(Some(Ok(StormResult::Unsupported(_)))) => "n/a".into(),
                    Some(Some(Ok(StormResult::Ran(st)))) => f(st),
                })
                .collect()
        };
        let pool = match case.pool {
            None => format!("`max_parallel` not set (this build's default: {default})"),
            Some(p) => format!("`max_parallel` {p}"),
        };
        let within_pool = case.n <= case.pool.unwrap_or(default);
        let mut add = |scenario: String, measure: String, cells: Vec<String>, target: &str| {
            rows.push(Row {
                scenario,
                measure,
                cells,
                target: target.into(),
            })
        };
        add(
            format!("Storm: {} agents cycling at once, {pool}", case.n),
            "one cycle alone, before (publish → sidecar)".into(),
            cells(true, &|st| human(st.one_cycle)),
            "",
        );
        add(
            String::new(),
            format!(
                "**all {} cycles filed**, from the first publish (÷ one cycle)",
                case.n
            ),
            cells(false, &|st| {
                format!(
                    "**{}** ({:.1}×)",
                    human(st.all_filed),
                    st.all_filed.as_secs_f64() / st.one_cycle.as_secs_f64()
                )
            }),
            if within_pool {
                "≤ 1.5× one cycle"
            } else {
                "(N > pool: several rounds)"
            },
        );
        add(
            String::new(),
            "a shutdown (no session) published right after: publish → sidecar".into(),
            cells(false, &|st| human(st.shutdown_behind)),
            "",
        );
        add(
            String::new(),
            "the same shutdown alone, before (median of 3)".into(),
            cells(false, &|st| human(st.shutdown_alone)),
            "",
        );
        add(
            String::new(),
            "**the shutdown's wait behind the storm** (behind − alone)".into(),
            cells(false, &|st| {
                format!(
                    "**{}**",
                    human(st.shutdown_behind.saturating_sub(st.shutdown_alone))
                )
            }),
            "≤ 100 ms",
        );
        add(
            String::new(),
            "cycles filed before the shutdown".into(),
            cells(false, &|st| {
                format!("{} of {}", st.cycles_before_shutdown, case.n)
            }),
            "",
        );
    }
    let rows = keep(rows);
    let _ = writeln!(s, "\n### Storm of agents cycling at once\n");
    table(s, &headings, &rows);
    let _ = writeln!(s, "\nHow it is measured:");
    let _ = writeln!(s, "- Each case on a fresh town and its own private tmux server (`tmux -L`), with the real `gt daemon run` (no `--dry-run`) and config `{}` (plus `max_parallel` when the case says so). The agents are `sleep 600`, one session each (`gt-r00-witness` …), made before any request; each cycle kills one and starts a new one, and types the prime text after `prime_delay`.", storm::config("NAME", None));
    let _ = writeln!(s, "- The storm's requests (`cycle` from `r00/witness` …) are written to the inbox first and published with one rename each, back to back; the shutdown from `deacon` (which has no session: nothing to end, so near-instant alone) is published right after. Times end at inotify on `processed/` reporting each sidecar written.");
    let _ = writeln!(s, "- Checked afterwards: every request processed with the right from and action by this daemon, nothing in `failed/`, and every agent's session has a new pane process. The server and every process of its panes are killed at the end, also on failure.");
}
