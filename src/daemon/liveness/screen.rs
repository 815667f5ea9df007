//! What a look at a pane tells, from its rows alone (pure: no tmux, no
//! clock): the screen reduced to what counts as progress ([`Screen`]),
//! whether it moved between two looks ([`moved`]), whether a poke's text
//! still sits on the input line ([`on_input_line`]), and the line that
//! asks a person something ([`prompt_line`]).
//!
//! The daemon's own typing must never look like progress: the text of a
//! poke (or the prime text) echoed on a line, and the Enter after it that
//! moves the cursor down and scrolls the screen. So every occurrence of
//! those texts is taken out of each line and blank lines are left out;
//! and lines are compared where they are in the pane's whole scrollback
//! (a row keeps its number as the screen scrolls), not where they are on
//! the screen. Then an echo is no change, and an agent that answers every
//! poke with the same line still moves its screen each time.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use unicode_width::UnicodeWidthStr;

use crate::tmux::PaneView;

/// How many of a screen's last non-blank lines may hold a question for a
/// person: a permission dialog puts its question above its choices, a
/// reason and a command.
pub(crate) const PROMPT_LINES: usize = 10;

/// A prompt line is kept to this many characters.
const PROMPT_CHARS: usize = 300;

/// With its cursor hidden (a program that draws its own), the rows above
/// the cursor that may hold its input line.
const HIDDEN_CURSOR_ROWS: usize = 4;

/// One line of a pane: one row, or several when the text wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// The number of its first row in the pane's scrollback.
    pub(crate) row: u64,
    /// Its rows, as indexes into the view's rows.
    pub(crate) rows: std::ops::Range<usize>,
    pub(crate) text: String,
}

/// Does `row` fill the pane's width? Then the text went on to the next
/// row (tmux drops trailing spaces, so a wrapped row is a full one).
fn full(row: &str, width: usize) -> bool {
    width > 0 && row.width() >= width
}

/// The view's lines, wrapped rows joined.
pub(crate) fn lines(view: &PaneView) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    let mut start = 0;
    while start < view.rows.len() {
        let mut end = start + 1;
        while end < view.rows.len() && full(&view.rows[end - 1], view.width) {
            end += 1;
        }
        lines.push(Line {
            row: view.first_row + start as u64,
            rows: start..end,
            text: view.rows[start..end].concat(),
        });
        start = end;
    }
    lines
}

/// A line with the daemon's typing taken out, as it is compared.
fn stripped(text: &str, typed: &[&str]) -> String {
    let mut text = text.to_string();
    for t in typed.iter().filter(|t| !t.is_empty()) {
        if text.contains(t) {
            text = text.replace(t, "");
        }
    }
    text.trim().to_string()
}

/// A screen as far as progress goes: its non-blank lines, by row number,
/// the daemon's typing taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Screen {
    /// Row number → the line's hash (the text itself is not kept).
    lines: BTreeMap<u64, u64>,
    /// The rows the look covered.
    first_row: u64,
    end_row: u64,
    history_size: u64,
}

impl Screen {
    pub(crate) fn of(view: &PaneView, typed: &[&str]) -> Screen {
        let lines = lines(view)
            .into_iter()
            .filter_map(|line| {
                let text = stripped(&line.text, typed);
                (!text.is_empty()).then(|| (line.row, hash(&text)))
            })
            .collect();
        Screen {
            lines,
            first_row: view.first_row,
            end_row: view.first_row + view.rows.len() as u64,
            history_size: view.history_size,
        }
    }
}

fn hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Did the screen move between the look that saw `before` and the one
/// that saw `now`, other than by the daemon's typing? A line is new or
/// different where both looks saw its row, or a non-blank line appeared
/// below what `before` saw. Lines that scrolled out of sight are not a
/// change.
pub(crate) fn moved(before: &Screen, now: &Screen) -> bool {
    if now.history_size < before.history_size {
        // tmux trimmed the history (`history-limit`, `clear-history`):
        // row numbers shifted by an unknown amount.
        return !aligns_somehow(before, now);
    }
    differs_at(before, now, 0)
}

/// Do the lines of `now`, their rows moved up by `shift`, differ from
/// what `before` saw?
fn differs_at(before: &Screen, now: &Screen, shift: i128) -> bool {
    let at = |row: u64| row as i128 + shift;
    let seen = |row: i128| row >= before.first_row as i128 && row < before.end_row as i128;
    // Where both looked, every line must be the same, and none gone.
    for (&row, h) in &now.lines {
        let r = at(row);
        if r >= before.end_row as i128 {
            return true; // a line below everything seen before
        }
        if seen(r) && u64::try_from(r).ok().and_then(|r| before.lines.get(&r)) != Some(h) {
            return true;
        }
    }
    let now_from = now.first_row as i128 + shift;
    let now_to = now.end_row as i128 + shift;
    before.lines.keys().any(|&row| {
        let r = row as i128;
        r >= now_from
            && r < now_to
            && u64::try_from(r - shift).is_ok_and(|r| !now.lines.contains_key(&r))
    })
}

/// Is there a shift of rows under which `now` shows nothing new?
fn aligns_somehow(before: &Screen, now: &Screen) -> bool {
    let Some((&last, h)) = now.lines.iter().next_back() else {
        return true; // nothing at all on the screen is nothing new
    };
    before
        .lines
        .iter()
        .filter(|(_, b)| *b == h)
        .any(|(&row, _)| !differs_at(before, now, row as i128 - last as i128))
}

/// Does the line at the pane's cursor (with the rows it wrapped over)
/// hold `text`? A program that draws its own input line hides the
/// terminal's cursor, often below that line: then the few rows above the
/// cursor count as well.
pub(crate) fn on_input_line(view: &PaneView, text: &str) -> bool {
    let Some(cursor) = view.cursor_row else {
        return false;
    };
    if text.is_empty() {
        return false;
    }
    let from = if view.cursor_visible {
        cursor
    } else {
        cursor.saturating_sub(HIDDEN_CURSOR_ROWS)
    };
    lines(view)
        .iter()
        .filter(|l| l.rows.end > from && l.rows.start <= cursor)
        .any(|l| l.text.contains(text))
}

/// `human_prompt_patterns`: text, matched as written.
#[derive(Debug, Default)]
pub(crate) struct Patterns(Vec<String>);

impl Patterns {
    pub(crate) fn new(source: &[String]) -> Self {
        Patterns(source.iter().filter(|p| !p.is_empty()).cloned().collect())
    }

    /// The config's patterns (a reload may change them).
    pub(crate) fn update(&mut self, source: &[String]) {
        if self.0.as_slice() != source {
            *self = Patterns::new(source);
        }
    }

    fn matches(&self, line: &str) -> bool {
        self.0.iter().any(|p| line.contains(p.as_str()))
    }

    /// Where the first pattern found in `line` ends (a byte offset).
    fn end_of_match(&self, line: &str) -> Option<usize> {
        self.0
            .iter()
            .filter_map(|p| line.find(p.as_str()).map(|at| at + p.len()))
            .min()
    }
}

/// A line that asks a person something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prompt {
    /// The number of its first row in the pane's scrollback.
    pub(crate) row: u64,
    /// The line, trimmed and cut to a few hundred characters.
    pub(crate) text: String,
    /// The whole line's hash: an answer typed onto a long line changes it
    /// where `text` may not show.
    pub(crate) whole: u64,
}

/// The bottom-most of the visible screen's last [`PROMPT_LINES`]
/// non-blank lines that holds a pattern once the daemon's typing is taken
/// out (an agent that quotes a poke asks nobody anything).
pub(crate) fn prompt_line(view: &PaneView, patterns: &Patterns, typed: &[&str]) -> Option<Prompt> {
    let top = view.first_row + view.rows.len().saturating_sub(view.screen_rows) as u64;
    lines(view)
        .into_iter()
        .rev()
        .filter(|l| l.row >= top && !l.text.trim().is_empty())
        .take(PROMPT_LINES)
        .find(|l| patterns.matches(&stripped(&l.text, typed)))
        .map(|l| Prompt {
            row: l.row,
            text: shown(l.text.trim(), patterns),
            whole: hash(&l.text),
        })
}

/// A prompt line as shown: whole when short; else cut to
/// [`PROMPT_CHARS`] characters that keep what matched (a long question
/// ends with its choices), marked `…` where cut.
fn shown(line: &str, patterns: &Patterns) -> String {
    if line.chars().count() <= PROMPT_CHARS {
        return line.to_string();
    }
    let end = patterns.end_of_match(line).unwrap_or(line.len());
    let kept: Vec<char> = line[..end].chars().collect();
    if kept.len() < PROMPT_CHARS {
        let head: String = line.chars().take(PROMPT_CHARS - 1).collect();
        return head + "…";
    }
    let more = if end < line.len() { "…" } else { "" };
    let room = PROMPT_CHARS - 1 - more.chars().count();
    let tail: String = kept[kept.len() - room..].iter().collect();
    format!("…{tail}{more}")
}

#[cfg(test)]
mod tests;
