//! The markdown report: machine, one table, notes.

use std::fmt::Write;
use std::time::Duration;

use crate::args::Opts;
use crate::scenarios::Latency;
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

pub fn render(
    o: &Opts,
    machine: &[String],
    command: &str,
    results: &[DirResults],
    baseline_missing: Option<&str>,
    notes: &[String],
    errors: &[String],
) -> String {
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
    let places: Vec<String> = results
        .iter()
        .map(|r| format!("`{}` ({})", r.dir.display(), r.fs))
        .collect();
    let _ = writeln!(s, "- towns under: {}\n", places.join(", "));

    let _ = write!(s, "| Scenario | Measure |");
    for r in results {
        let _ = write!(s, " {} ({}) |", r.dir.display(), r.fs);
    }
    let _ = writeln!(s, " Target |");
    let _ = write!(s, "|---|---|");
    for _ in results {
        let _ = write!(s, "--:|");
    }
    let _ = writeln!(s, "---|");
    for r in &rows {
        let _ = write!(s, "| {} | {} |", r.scenario, r.measure);
        for c in &r.cells {
            let _ = write!(s, " {c} |");
        }
        let _ = writeln!(s, " {} |", r.target);
    }

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
    for r in results {
        if let Some(Ok(b)) = &r.burst {
            let _ = writeln!(
                s,
                "- On {}: publishing the burst alone took {} of its {}.",
                r.dir.display(),
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
