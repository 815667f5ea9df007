//! The durability table: latency to durable while another process writes a
//! big file, and how long a killed daemon keeps its town locked.

use std::fmt::Write;

use super::units::{human, int, lat_human};
use super::{cell, heading, keep, table, Report, Rows};
use crate::durability::{self, Durability, Kill};
use crate::DirResults;

pub(super) fn render(s: &mut String, report: &Report<'_>) {
    let several_gts = report.several_gts();
    let cols: Vec<&DirResults> = report
        .results
        .iter()
        .filter(|r| r.durability.is_some())
        .collect();
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
    let mut rows = Rows::new(&cols);
    latency_rows(&mut rows, report.o.durable_samples);
    kill_rows(&mut rows);
    let _ = writeln!(s, "\n### Durability beside a large concurrent writer\n");
    table(s, &headings, &keep(rows.done()));
    how(s, report.o.durable_samples);
    for r in &cols {
        if let Some(Ok(d)) = &r.durability {
            if let Some(note) = &d.writer_note {
                let _ = writeln!(s, "- {}: {note}", heading(r, several_gts));
            }
        }
    }
}

fn mib(m: Option<u64>) -> String {
    m.map_or("?".into(), |m| format!("{} MiB", int(m)))
}

/// A cell of a column's durability result.
fn of(r: &&DirResults, f: impl Fn(&Durability) -> String) -> String {
    cell(&r.durability, f)
}

fn latency_rows(rows: &mut Rows<'_, &DirResults>, samples: usize) {
    let n = int(samples as u64);
    rows.add(
        &format!("Latency, {n} requests one at a time, nothing else writing"),
        "rename → sidecar written, p50 / p99",
        |r| of(r, |d| lat_human(&d.quiet.sidecar, false)),
        "",
    );
    rows.add(
        "",
        "rename → counted in state.json (durable), p50 / p99",
        |r| of(r, |d| lat_human(&d.quiet.durable, false)),
        "",
    );
    rows.add(
        &format!("The same, {n} or more, while another process writes a big file without fsync"),
        "the writer: written, in; most dirty + writeback page cache seen",
        |r| {
            of(r, |d| {
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
            })
        },
        "",
    );
    rows.add(
        "",
        "rename → sidecar written, p50 / p99",
        |r| of(r, |d| lat_human(&d.busy.sidecar, false)),
        "",
    );
    rows.add(
        "",
        "**rename → counted in state.json (durable)**, p50 / p99 / max",
        |r| of(r, |d| format!("**{}**", lat_human(&d.busy.durable, true))),
        "not the writer's data",
    );
}

fn kill_rows(rows: &mut Rows<'_, &DirResults>) {
    let kill = |k: &Kill| {
        format!(
            "{} (killed {} in{}; dirty {})",
            human(k.released),
            human(k.after),
            if k.in_flush { "" } else { ", NOT in a flush" },
            mib(k.dirty_mib)
        )
    };
    rows.add(
        &format!(
            "SIGKILL while filing a burst of {}, the ledger inside a flush",
            int(durability::KILL_BURST as u64),
        ),
        "→ daemon.lock free, nothing else writing",
        |r| of(r, |d| kill(&d.kill_quiet)),
        "",
    );
    rows.add(
        "",
        "**→ daemon.lock free, the writer's file written just before, not synced**",
        |r| of(r, |d| format!("**{}**", kill(&d.kill_busy))),
        "not the writer's data",
    );
    rows.add(
        "",
        "filed as interrupted by the next daemon (quiet / busy)",
        |r| {
            of(r, |d| {
                format!("{} / {}", d.kill_quiet.interrupted, d.kill_busy.interrupted)
            })
        },
        "",
    );
}

fn how(s: &mut String, samples: usize) {
    let n = int(samples as u64);
    let _ = writeln!(s, "\nHow it is measured:");
    let _ = writeln!(s, "- Only on disk-backed filesystems (on tmpfs there is no disk for a flush to wait for). A fresh town and `gt daemon run --dry-run` (config `{}`) per part; requests as in the main table.", crate::town::CONFIG);
    let _ = writeln!(s, "- Latency: one request at a time, the next {} ms after the previous one's sidecar; the first 20 of the quiet part are warm-up. \"Counted in state.json\": the first rewrite of state.json (seen by inotify) whose `requests_processed` includes it; the daemon counts an outcome only after the flush that made it durable, and rewrites state.json at most every 100 ms, so that is the floor.", 10);
    let _ = writeln!(s, "- The writer is another process writing one file of incompressible bytes beside the town, as fast as it can, never syncing. The second part starts sampling when the writer has written half its file and goes on until it has written everything and at least {n} samples were taken; whatever of its file is dirty at a flush is what a `syncfs` has to write first.");
    let _ = writeln!(s, "- SIGKILL: a fresh daemon is sent a burst (published from a second thread) and killed the moment its `ledger` thread (the one that makes outcomes durable) is seen in uninterruptible sleep (`D` in `/proc/PID/task/TID/stat`, polled every 0.1 ms), i.e. inside a flush; then the bench tries a non-blocking `flock` on `daemon.lock` every 0.2 ms until it gets it. The kernel releases the lock when the last thread has left the kernel, so that is how long the flush in hand kept a dead daemon's town locked. The busy variant runs the writer to the end first (its data dirty; with `dirty_background_ratio` above its size, the kernel does not start writing it back for `dirty_expire_centisecs`). Afterwards a second daemon files the rest and every request is checked: processed, or failed as interrupted, once.");
}
