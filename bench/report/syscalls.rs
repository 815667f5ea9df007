//! The syscall table: per request, the limit loop's and each `gt`'s, by
//! syscall.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::Report;
use crate::syscalls::{Counts, Syscalls};

pub(super) fn render(s: &mut String, report: &Report<'_>) {
    let runs: Vec<(&str, &Syscalls)> = report
        .results
        .iter()
        .filter_map(|r| match &r.syscalls {
            Some(Ok(sc)) => Some((r.gt.as_str(), sc)),
            _ => None,
        })
        .collect();
    let failed = report
        .results
        .iter()
        .any(|r| matches!(r.syscalls, Some(Err(_))));
    if runs.is_empty() {
        if let (Some(why), false) = (report.syscalls_missing, failed) {
            let _ = writeln!(s, "\n### Syscalls per request\n\n**{why}**");
        }
        if failed {
            let _ = writeln!(s, "\n### Syscalls per request\n\nFAILED (see below)");
        }
        return;
    }
    let (_, first) = runs[0];
    let per = |c: &Counts, name: &str| {
        let calls = c.by_name.get(name).copied().unwrap_or(0);
        calls as f64 / first.n as f64
    };
    let mut names: BTreeSet<&str> = first.limit.by_name.keys().map(String::as_str).collect();
    for (_, sc) in &runs {
        names.extend(sc.daemon.by_name.keys().map(String::as_str));
    }
    // The ones that count per request, busiest first; start-up's few
    // calls (under 0.01 a request everywhere) are left out.
    let mut names: Vec<&str> = names
        .into_iter()
        .filter(|n| {
            per(&first.limit, n) >= 0.01 || runs.iter().any(|(_, sc)| per(&sc.daemon, n) >= 0.01)
        })
        .collect();
    names.sort_by(|a, b| {
        let most = |n: &str| {
            runs.iter()
                .map(|(_, sc)| per(&sc.daemon, n))
                .fold(per(&first.limit, n), f64::max)
        };
        most(b).total_cmp(&most(a)).then(a.cmp(b))
    });
    let _ = writeln!(s, "\n### Syscalls per request ({} requests)\n", first.n);
    let _ = write!(s, "| syscall | limit loop |");
    for (gt, _) in &runs {
        let _ = write!(s, " gt daemon, {gt} |");
    }
    let _ = write!(s, "\n|---|--:|");
    for _ in &runs {
        let _ = write!(s, "--:|");
    }
    let _ = writeln!(s);
    for name in names {
        let _ = write!(s, "| {name} | {:.2} |", per(&first.limit, name));
        for (_, sc) in &runs {
            let _ = write!(s, " {:.2} |", per(&sc.daemon, name));
        }
        let _ = writeln!(s);
    }
    let total = |c: &Counts| c.total as f64 / first.n as f64;
    let _ = write!(s, "| **all** | **{:.1}** |", total(&first.limit));
    for (_, sc) in &runs {
        let _ = write!(s, " **{:.1}** |", total(&sc.daemon));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "\nHow it is measured:");
    let _ = writeln!(s, "- `strace -c -f`, each on its own fresh town on the first directory. The limit loop (readdir, read, rename into processing/, rename into processed/, create and write the sidecar; no fsync) runs alone in a child of the bench (`--internal-limit`), its start-up included. The daemon (`gt daemon run --dry-run`) drains a held burst: started, stopped (SIGSTOP), the requests published, strace attached, let go (SIGCONT); counted until state.json counts every request, so its flushes (the ledger's, which make each outcome durable before it is counted) are in. Calls per request: all its threads' calls over the requests.");
}
