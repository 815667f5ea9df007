//! Many agents' panes at once: each session's own pane in one listing,
//! and the screens of many panes in one call (the look the liveness stage
//! takes of every agent), plus typing into one pane by its id.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Chain, Exit, Tmux, TmuxError};

/// One agent's own pane, as [`Tmux::agent_panes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentPane {
    pub(crate) session: String,
    /// `%N`: tmux never gives two panes of one server the same id.
    pub(crate) id: String,
    pub(crate) pid: Option<u32>,
    /// Unix time the session was created.
    pub(crate) created: Option<i64>,
    /// How its process ended, once it has (a pane kept by
    /// `remain-on-exit`).
    pub(crate) exit: Option<Exit>,
}

impl AgentPane {
    /// Its process has ended.
    pub(crate) fn dead(&self) -> bool {
        self.exit.is_some()
    }
}

/// What [`Tmux::view_panes`] saw of one pane: its screen's last rows (a
/// little history, then the visible screen) and where its cursor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaneView {
    pub(crate) id: String,
    pub(crate) dead: bool,
    /// The rows, oldest first: up to the history asked for, then every
    /// visible row (at most [`VIEW_ROWS`] in all: the bottom ones).
    pub(crate) rows: Vec<String>,
    /// Where `rows[0]` is in everything the pane ever showed (its history
    /// and its screen), counted in rows from the oldest kept: a row keeps
    /// its number as the screen scrolls.
    pub(crate) first_row: u64,
    /// How many of `rows` (the last ones) are the visible screen.
    pub(crate) screen_rows: usize,
    /// The pane's history, in rows (tmux trims it past `history-limit`).
    pub(crate) history_size: u64,
    /// The cursor's row in `rows` (`None`: cut off with the top rows).
    pub(crate) cursor_row: Option<usize>,
    /// The cursor is shown (programs that draw their own hide it).
    pub(crate) cursor_visible: bool,
    pub(crate) width: usize,
}

/// Panes viewed per tmux call: about 270 bytes of arguments each, well
/// under the 16 KiB a tmux client may send.
pub(crate) const PANES_PER_CALL: usize = 32;

/// The most rows of one pane [`Tmux::view_panes`] keeps (the bottom ones):
/// a screen taller than this is cut at the top.
pub(crate) const VIEW_ROWS: usize = 300;

impl Tmux {
    /// Every session's own pane (the first pane of its first window, as
    /// [`Tmux::look_and_type`] takes it), in one call. A server without
    /// sessions: none; no server: [`TmuxError::NoServer`], which callers
    /// may want to say.
    pub(crate) fn agent_panes(&self) -> Result<Vec<AgentPane>, TmuxError> {
        let out = match self.run(["list-panes", "-a", "-F", AGENT_PANES_FORMAT]) {
            Ok(out) => out,
            Err(TmuxError::NoSession { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(first_panes(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Looks at several panes (`%id`s) in one call: for each, where its
    /// cursor is and its last rows (`history` rows above the visible
    /// screen, then the screen). A pane that is gone is left out. Each
    /// pane's rows are framed by lines carrying a number drawn for this
    /// call, which no program in a pane can know, so none can forge where
    /// its screen ends; a pane whose frame is incomplete is left out too.
    /// The flag: the output was read to its end (not cut at its bound, so
    /// the panes left out are gone). tmux takes at most 16 KiB of
    /// arguments in one call ("command too long"): more than
    /// [`PANES_PER_CALL`] panes take more calls.
    pub(crate) fn view_panes(
        &self,
        panes: &[&str],
        history: u32,
    ) -> Result<(Vec<PaneView>, bool), TmuxError> {
        let mut views = Vec::new();
        let mut whole = true;
        for group in panes.chunks(PANES_PER_CALL) {
            let (seen, all) = self.view_group(group, history)?;
            views.extend(seen);
            whole &= all;
        }
        Ok((views, whole))
    }

    /// [`Tmux::view_panes`] in one call.
    fn view_group(&self, panes: &[&str], history: u32) -> Result<(Vec<PaneView>, bool), TmuxError> {
        let nonce = nonce();
        let mut chain = Chain::new();
        for &pane in panes {
            let begin = format!(
                "{nonce} begin #{{pane_id}} #{{pane_dead}} #{{cursor_y}} #{{cursor_flag}} \
                 #{{history_size}} #{{pane_width}} #{{pane_height}}"
            );
            // A pane gone since it was listed is skipped, not an error
            // that would end the whole call.
            let capture = format!("capture-pane -p -t {pane} -S -{history}");
            chain = chain
                .then(["display-message", "-p", "-t", pane, &begin])
                .then(["if-shell", "-F", "-t", pane, "#{pane_id}", &capture])
                .then(["display-message", "-p", "-t", pane, &format!("{nonce} end")]);
        }
        let text = self.chain(&chain)?;
        let whole = text.ends_with(&format!("{nonce} end\n"));
        Ok((parse_views(&text, &nonce, history), whole))
    }

    /// Types `text` literally (no key-name lookup) into the pane `%id`.
    pub(crate) fn type_text(&self, pane: &str, text: &str) -> Result<(), TmuxError> {
        self.run(["send-keys", "-t", pane, "-l", "--", text])
            .map(drop)
    }

    /// Presses Enter, alone, in the pane `%id`.
    pub(crate) fn press_enter(&self, pane: &str) -> Result<(), TmuxError> {
        self.run(["send-keys", "-t", pane, "Enter"]).map(drop)
    }
}

/// A number no program in a pane can guess: the standard library's
/// per-process random hash keys, over the time and a counter.
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("gt{:016x}", hasher.finish())
}

/// The session option naming the agent's own pane (`%id`), set in the
/// same client that creates the session (see `NewSession`).
pub(crate) const AGENT_PANE_OPTION: &str = "@gt_pane";

/// What [`first_panes`] reads of each pane, a tab between fields. A
/// process a signal killed has no `pane_dead_status`; tmux 3.4 and later
/// name the signal in `pane_dead_signal` (older ones expand it to
/// nothing). The session name last: it is the one field that may hold a
/// tab.
pub(crate) const AGENT_PANES_FORMAT: &str = "#{window_index}\t#{pane_index}\t#{pane_id}\t#{pane_pid}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_dead_signal}\t#{session_created}\t#{@gt_pane}\t#{session_name}";

/// Each session's agent pane, from `list-panes` lines in
/// [`AGENT_PANES_FORMAT`]: the pane the session's [`AGENT_PANE_OPTION`]
/// names, or, for a session made without it, the first pane of its first
/// window. A session whose named pane is gone (closed, while panes a
/// person opened keep the session) gets that pane as [`Exit::Closed`]:
/// a person's pane is never taken for the agent.
pub(crate) fn first_panes(text: &str) -> Vec<AgentPane> {
    // Per session: (named, (window, pane)) of the pane kept, the pane, the name.
    let mut first: Vec<((bool, u32, u32), AgentPane, String)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.splitn(10, '\t').collect();
        let [w, p, id, pid, dead, status, signal, created, named, session] = f[..] else {
            continue;
        };
        let (Ok(w), Ok(p)) = (w.parse::<u32>(), p.parse::<u32>()) else {
            continue;
        };
        // The named pane first, then the lowest window and pane.
        let order = (named != id, w, p);
        let pane = AgentPane {
            session: session.to_string(),
            id: id.to_string(),
            pid: pid.parse().ok(),
            created: created.parse().ok(),
            exit: (dead == "1").then(|| Exit::of(status, signal)),
        };
        match first.iter_mut().find(|(_, a, _)| a.session == pane.session) {
            Some((kept_order, kept, _)) if order < *kept_order => {
                *kept_order = order;
                *kept = pane;
            }
            Some(_) => {}
            None => first.push((order, pane, named.to_string())),
        }
    }
    first
        .into_iter()
        .map(|(_, pane, named)| {
            if named.is_empty() || named == pane.id {
                return pane;
            }
            AgentPane {
                id: named,
                pid: None,
                exit: Some(Exit::Closed),
                ..pane
            }
        })
        .collect()
}

/// The panes [`Tmux::view_panes`] printed, framed by `nonce` lines.
fn parse_views(text: &str, nonce: &str, history: u32) -> Vec<PaneView> {
    let begin = format!("{nonce} begin ");
    let end = format!("{nonce} end");
    let mut views = Vec::new();
    // The pane being read, its cursor's screen row, the rows kept (the
    // last ones) and how many were read.
    let mut open: Option<(PaneView, usize, Vec<String>, usize)> = None;
    for line in text.lines() {
        if let Some(header) = line.strip_prefix(&begin) {
            open = parse_header(header).map(|(view, y)| (view, y, Vec::new(), 0));
            continue;
        }
        if line == end {
            let Some((mut view, cursor_y, mut rows, read)) = open.take() else {
                continue;
            };
            if read == 0 {
                continue; // no capture: the pane went between the calls
            }
            let cut = rows.len().saturating_sub(VIEW_ROWS);
            rows.drain(..cut);
            let dropped = read - rows.len();
            let history_rows = (u64::from(history)).min(view.history_size) as usize;
            view.first_row = view.history_size - history_rows as u64 + dropped as u64;
            view.screen_rows = rows.len() - history_rows.saturating_sub(dropped).min(rows.len());
            view.cursor_row = (history_rows + cursor_y)
                .checked_sub(dropped)
                .filter(|&r| r < rows.len());
            view.rows = rows;
            views.push(view);
            continue;
        }
        if let Some((_, _, rows, read)) = &mut open {
            // Bounded while reading: the bottom rows are the ones kept.
            if rows.len() >= VIEW_ROWS * 2 {
                rows.drain(..VIEW_ROWS);
            }
            rows.push(line.to_string());
            *read += 1;
        }
    }
    views
}

/// `%id dead cursor_y cursor_flag history_size width height`: the view,
/// and the cursor's row on the visible screen.
fn parse_header(header: &str) -> Option<(PaneView, usize)> {
    let f: Vec<&str> = header.split(' ').collect();
    let [id, dead, cursor_y, cursor_flag, history_size, width, _height] = f[..] else {
        return None;
    };
    if !id.starts_with('%') {
        return None; // the pane is gone: its formats expand to nothing
    }
    let view = PaneView {
        id: id.to_string(),
        dead: dead == "1",
        rows: Vec::new(),
        first_row: 0,
        screen_rows: 0,
        history_size: history_size.parse().ok()?,
        cursor_row: None,
        cursor_visible: cursor_flag == "1",
        width: width.parse().ok()?,
    };
    Some((view, cursor_y.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_gets_the_first_pane_of_its_first_window() {
        let text = "1\t0\t%7\t70\t0\t\t\t100\t\tgt-mayor\n\
                    0\t1\t%5\t50\t0\t\t\t100\t\tgt-mayor\n\
                    0\t0\t%4\t40\t1\t\t9\t100\t\tgt-mayor\n\
                    0\t0\t%9\t90\t0\t\t\t200\t\tname\twith\ttabs\n\
                    garbage\n\
                    x\t0\t%8\t80\t0\t\t\t1\t\tbad";
        let panes = first_panes(text);
        assert_eq!(panes.len(), 2, "{panes:?}");
        assert_eq!(panes[0].session, "gt-mayor");
        assert_eq!(panes[0].id, "%4");
        assert_eq!(panes[0].exit, Some(Exit::Signal(Some(9))));
        assert!(panes[1].exit.is_none());
        assert_eq!(panes[1].session, "name\twith\ttabs");
        assert_eq!((panes[1].pid, panes[1].created), (Some(90), Some(200)));
    }

    #[test]
    fn the_named_pane_is_the_agents_and_a_person_s_pane_never_is() {
        // %5 was split off by a person before the agent's %6 (in a later
        // window); the session names %6.
        let text = "0\t0\t%5\t50\t0\t\t\t100\t%6\tgt-mayor\n\
                    1\t0\t%6\t60\t1\t2\t\t100\t%6\tgt-mayor\n";
        let panes = first_panes(text);
        assert_eq!(
            (panes[0].id.as_str(), panes[0].exit),
            ("%6", Some(Exit::Status(2)))
        );
        // Its pane closed: the session stays, held by the person's pane.
        let closed = first_panes("0\t1\t%5\t50\t0\t\t\t100\t%6\tgt-mayor\n");
        assert_eq!(closed[0].id, "%6");
        assert_eq!(closed[0].pid, None);
        assert_eq!(closed[0].exit, Some(Exit::Closed));
        assert!(closed[0].dead());
        assert_eq!(
            closed[0].exit.unwrap().to_string(),
            "is gone: its pane was closed"
        );
        let killed = |signal: &str| Exit::of("", signal).to_string();
        assert_eq!(killed("9"), "was killed by signal 9");
        assert_eq!(killed(""), "was killed by a signal");
        assert_eq!(Exit::of("0", "").to_string(), "exited with status 0");
    }

    #[test]
    fn views_are_read_only_inside_whole_frames_of_this_call() {
        let n = "gt00ff";
        let text = format!(
            "{n} begin %1 0 2 1 10 20 3\nrow a\nrow b\nrow c\n{n} end\n\
             {n} begin  \n{n} end\n\
             gtforged begin %2 0 0 1 0 20 1\nforged\n\
             {n} begin %3 1 0 0 0 20 2\nlast\n"
        );
        let views = parse_views(&text, n, 0);
        assert_eq!(
            views.len(),
            1,
            "a gone pane, a forged and a cut frame are out"
        );
        let v = &views[0];
        assert_eq!(v.id, "%1");
        assert_eq!(v.rows, ["row a", "row b", "row c"]);
        assert_eq!((v.first_row, v.screen_rows), (10, 3));
        assert_eq!(v.cursor_row, Some(2));
        assert!(v.cursor_visible && !v.dead);
        // A forged frame inside a pane's rows is rows of that pane.
        let text = format!("{n} begin %1 0 0 1 0 20 2\n{n}x end\nrow\n{n} end\n");
        assert_eq!(parse_views(&text, n, 0)[0].rows.len(), 2);
    }

    #[test]
    fn a_tall_pane_keeps_its_bottom_rows() {
        let n = "gt01";
        let rows = VIEW_ROWS * 3 + 7;
        // 5 rows of history, then the screen, the cursor on its last row.
        let mut text = format!("{n} begin %1 0 {} 1 40 80 {}\n", rows - 6, rows - 5);
        for i in 0..rows {
            text += &format!("row {i}\n");
        }
        text += &format!("{n} end\n");
        let v = &parse_views(&text, n, 5)[0];
        assert_eq!(v.rows.len(), VIEW_ROWS);
        assert_eq!(
            v.rows.last().map(String::as_str),
            Some(&*format!("row {}", rows - 1))
        );
        assert_eq!(v.first_row, 40 - 5 + (rows - VIEW_ROWS) as u64);
        assert_eq!(v.cursor_row, Some(VIEW_ROWS - 1));
        assert_eq!(v.screen_rows, VIEW_ROWS);
    }
}
