//! The storm table: agents cycling at once, and a request behind them.

use std::fmt::Write;

use super::units::human;
use super::{keep, table, Report, Rows};
use crate::storm::{self, Case, Storm, StormResult};
use crate::DirResults;

pub(super) fn render(s: &mut String, report: &Report<'_>) {
    let cols: Vec<&DirResults> = report
        .results
        .iter()
        .filter(|r| !r.storms.is_empty())
        .collect();
    if cols.is_empty() {
        if let Some(why) = report.storm_missing {
            let _ = writeln!(s, "\n### Storm of agents cycling at once\n\n**{why}**");
        }
        return;
    }
    let headings: Vec<String> = cols.iter().map(|r| r.gt.clone()).collect();
    let mut rows = Rows::new(&cols);
    for (i, case) in storm::cases(&report.o.storms).iter().enumerate() {
        case_rows(&mut rows, i, case);
    }
    let _ = writeln!(s, "\n### Storm of agents cycling at once\n");
    table(s, &headings, &keep(rows.done()));
    how(s);
}

/// The cell of case `i` in column `r`: `f` of its result, or what kept it
/// from one (said in full on the case's `first` row only).
fn of(r: &DirResults, i: usize, first: bool, f: impl Fn(&Storm) -> String) -> String {
    match r.storms.get(i).map(|(_, o)| o) {
        None | Some(None) => "—".into(),
        Some(Some(Err(_))) => "FAILED".into(),
        Some(Some(Ok(StormResult::Unsupported(why)))) if first => format!("n/a: {why}"),
        Some(Some(Ok(StormResult::Unsupported(_)))) => "n/a".into(),
        Some(Some(Ok(StormResult::Ran(st)))) => f(st),
    }
}

fn case_rows(rows: &mut Rows<'_, &DirResults>, i: usize, case: &Case) {
    let pool = match case.pool {
        None => "`max_parallel` not set".to_string(),
        Some(p) => format!("`max_parallel` {p}"),
    };
    let within_pool = case.pool.is_some_and(|p| case.n <= p);
    rows.add(
        &format!("Storm: {} agents cycling at once, {pool}", case.n),
        "one cycle alone, before (publish → sidecar)",
        |r| of(r, i, true, |st| human(st.one_cycle)),
        "",
    );
    rows.add(
        "",
        "tmux clients the daemon ran: for the cycle alone / per cycle of the storm",
        |r| {
            of(r, i, false, |st| {
                format!("{} / {:.1}", st.tmux_one_cycle, st.tmux_per_storm_cycle)
            })
        },
        "",
    );
    rows.add(
        "",
        &format!(
            "**all {} cycles filed**, from the first publish (÷ one cycle)",
            case.n
        ),
        |r| {
            of(r, i, false, |st| {
                format!(
                    "**{}** ({:.1}×)",
                    human(st.all_filed),
                    st.all_filed.as_secs_f64() / st.one_cycle.as_secs_f64()
                )
            })
        },
        if within_pool {
            "≤ 1.5× one cycle"
        } else {
            "(N > pool: several rounds)"
        },
    );
    rows.add(
        "",
        "a shutdown (no session) published right after: publish → sidecar",
        |r| of(r, i, false, |st| human(st.shutdown_behind)),
        "",
    );
    rows.add(
        "",
        "the same shutdown alone, before (median of 3)",
        |r| of(r, i, false, |st| human(st.shutdown_alone)),
        "",
    );
    rows.add(
        "",
        "**the shutdown's wait behind the storm** (behind − alone)",
        |r| {
            of(r, i, false, |st| {
                format!(
                    "**{}**",
                    human(st.shutdown_behind.saturating_sub(st.shutdown_alone))
                )
            })
        },
        "≤ 100 ms",
    );
    rows.add(
        "",
        "cycles filed before the shutdown",
        |r| {
            of(r, i, false, |st| {
                format!("{} of {}", st.cycles_before_shutdown, case.n)
            })
        },
        "",
    );
}

fn how(s: &mut String) {
    let _ = writeln!(s, "\nHow it is measured:");
    let _ = writeln!(s, "- Each case on a fresh town and its own private tmux server (`tmux -L`), with the real `gt daemon run` (no `--dry-run`) and config `{}` (plus `max_parallel` when the case says so). The agents are `sleep 600`, one session each (`gt-r00-witness` …), made before any request; each cycle kills one and starts a new one, and types the prime text after `prime_delay`. tmux clients are counted by the daemon's own metrics (`gt_tmux_calls_total`, one per client process) around the cycle alone, and around the storm (less the shutdown's, measured alone).", storm::config("NAME", None, 9000));
    let _ = writeln!(s, "- The storm's requests (`cycle` from `r00/witness` …) are written to the inbox first and published with one rename each, back to back; the shutdown from `deacon` (which has no session: nothing to end, so near-instant alone) is published right after. Times end at inotify on `processed/` reporting each sidecar written.");
    let _ = writeln!(s, "- Checked afterwards: every request processed with the right from and action by this daemon, nothing in `failed/`, and every agent's session has a new pane process. The server and every process of its panes are killed at the end, also on failure.");
}
