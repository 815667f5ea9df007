//! The one way the CLI lays out a table: each column as wide as its widest
//! cell *as a terminal shows it*, columns two spaces apart, the last one
//! not padded, no blanks at the end of a line.
//!
//! Width is display width (Unicode Standard Annex #11, by `unicode-width`):
//! a CJK character or an emoji takes two columns, a combining mark or a
//! zero-width joiner none, so counting characters would misalign every
//! column after an agent or a file name that holds them. Cells hold
//! untrusted text already escaped by `crate::text` (no control character
//! reaches this module), so what is measured is what is shown.

use std::borrow::Cow;

use anstyle::Style;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// What separates two columns.
const GAP: &str = "  ";

/// How many terminal columns `text` takes.
pub fn width(text: &str) -> usize {
    text.width()
}

/// `cell` padded with spaces to `columns` terminal columns (never cut).
pub fn pad(cell: &str, columns: usize) -> String {
    let mut out = cell.to_string();
    out.extend(std::iter::repeat_n(
        ' ',
        columns.saturating_sub(width(cell)),
    ));
    out
}

/// `cell` cut to at most `max` terminal columns, ending in `…` when cut.
pub fn clip(cell: &str, max: usize) -> Cow<'_, str> {
    if width(cell) <= max {
        return Cow::Borrowed(cell);
    }
    let room = max.saturating_sub(1);
    let mut out = String::new();
    let mut used = 0;
    for c in cell.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        out.push(c);
    }
    // A few sequences (emoji with a presentation selector, say) are wider
    // than their characters added up: shorten until the whole fits.
    while width(&out) > room {
        out.pop();
    }
    out.push('…');
    Cow::Owned(out)
}

/// A cell with a style of its own (the outcome in colour, say); the
/// padding after it stays unstyled.
#[derive(Debug, Clone, Copy)]
pub struct Styled<'a>(pub &'a str, pub Style);

impl<'a> From<&'a str> for Styled<'a> {
    fn from(text: &'a str) -> Self {
        Styled(text, Style::new())
    }
}

impl<'a> From<&'a String> for Styled<'a> {
    fn from(text: &'a String) -> Self {
        Styled(text, Style::new())
    }
}

/// The widths of a table's columns, and how its lines are laid out.
#[derive(Debug, Clone)]
pub struct Table {
    widths: Vec<usize>,
    indent: usize,
}

impl Table {
    /// A table whose columns are at least as wide as `header`'s cells.
    pub fn new(header: &[&str]) -> Table {
        Table {
            widths: header.iter().map(|h| width(h)).collect(),
            indent: 0,
        }
    }

    /// Every line starts with `columns` spaces.
    pub fn indent(mut self, columns: usize) -> Table {
        self.indent = columns;
        self
    }

    /// Column `column` is at least `columns` wide.
    pub fn at_least(mut self, column: usize, columns: usize) -> Table {
        self.widths[column] = self.widths[column].max(columns);
        self
    }

    /// Widens the columns to fit `row`.
    pub fn fit<C: AsRef<str>>(&mut self, row: &[C]) {
        for (w, cell) in self.widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell.as_ref()));
        }
    }

    /// [`Table::fit`] for every row.
    pub fn fitting<C: AsRef<str>, R: AsRef<[C]>>(mut self, rows: &[R]) -> Table {
        for row in rows {
            self.fit(row.as_ref());
        }
        self
    }

    /// One line: the cells padded to their columns (the last one not),
    /// with no blanks at its end. A cell wider than its column (a row that
    /// came after the widths were set) pushes the rest right; it is never
    /// cut.
    pub fn line<C: AsRef<str>>(&self, cells: &[C]) -> String {
        let cells: Vec<Styled<'_>> = cells.iter().map(|c| Styled::from(c.as_ref())).collect();
        self.styled_line(&cells)
    }

    /// [`Table::line`] with a style per cell.
    pub fn styled_line(&self, cells: &[Styled<'_>]) -> String {
        let mut line = " ".repeat(self.indent);
        for (i, Styled(text, style)) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str(GAP);
            }
            line.push_str(&format!("{style}{text}{style:#}"));
            if i + 1 < cells.len() {
                let columns = self.widths.get(i).copied().unwrap_or(0);
                line.extend(std::iter::repeat_n(
                    ' ',
                    columns.saturating_sub(width(text)),
                ));
            }
        }
        line.truncate(line.trim_end().len());
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_is_what_a_terminal_shows() {
        assert_eq!(width("abc"), 3);
        // Wide: CJK and emoji take two columns each.
        assert_eq!(width("日本語"), 6);
        assert_eq!(width("ラボ/witness"), 12);
        assert_eq!(width("👍"), 2);
        // Zero-width: a combining accent and a zero-width joiner.
        assert_eq!(width("e\u{301}"), 1);
        assert_eq!(width("a\u{200d}b"), 2);
    }

    #[test]
    fn pad_fills_columns_not_characters() {
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("abcdef", 4), "abcdef");
        assert_eq!(pad("日本", 6), "日本  ");
        assert_eq!(pad("e\u{301}", 3), "e\u{301}  ");
        assert_eq!(width(&pad("👍x", 7)), 7);
    }

    #[test]
    fn clip_cuts_to_columns() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert!(matches!(clip("日本語", 6), Cow::Borrowed(_)));
        // Two wide characters and the ellipsis fit in 5; a third would not.
        assert_eq!(clip("日本語テキスト", 5), "日本…");
        assert_eq!(clip("日本語テキスト", 6), "日本…");
        assert_eq!(clip("e\u{301}e\u{301}e\u{301}", 2), "e\u{301}…");
        for text in ["日本語テキスト", "☺\u{fe0f}☺\u{fe0f}☺\u{fe0f}", "a👍b👍c👍"]
        {
            for max in 1..8 {
                assert!(width(&clip(text, max)) <= max, "{text:?} clipped to {max}");
            }
        }
    }

    /// The display column at which `needle` starts in `line`.
    fn column_of(line: &str, needle: &str) -> usize {
        width(&line[..line.find(needle).expect(needle)])
    }

    #[test]
    fn columns_line_up_whatever_the_characters() {
        let header = ["SESSION", "PID", "GUARD"];
        let rows = [
            ["gt-日本語-witness", "12", "none"],
            ["gt-e\u{301}t\u{301}e\u{301}-witness", "3", "held"],
            ["gt-mayor", "456", "2 restarts"],
        ];
        let table = Table::new(&header).fitting(&rows);
        let lines: Vec<String> = std::iter::once(table.line(&header))
            .chain(rows.iter().map(|r| table.line(r)))
            .collect();
        let pid = column_of(&lines[0], "PID");
        let guard = column_of(&lines[0], "GUARD");
        assert_eq!(pid, width("gt-日本語-witness") + 2, "{lines:#?}");
        for (line, row) in lines[1..].iter().zip(&rows) {
            assert_eq!(column_of(line, row[1]), pid, "{lines:#?}");
            assert_eq!(column_of(line, row[2]), guard, "{lines:#?}");
        }
    }

    #[test]
    fn lines_are_indented_trimmed_and_styled_without_the_padding() {
        let table = Table::new(&["A", "B", "C"]).indent(4).at_least(1, 5);
        assert_eq!(table.line(&["x", "y", ""]), "    x  y");
        assert_eq!(table.line(&["x", "y", "z"]), "    x  y      z");
        let red = Style::new().fg_color(Some(anstyle::AnsiColor::Red.into()));
        let line = table.styled_line(&[Styled::from("x"), Styled("bad", red), Styled::from("z")]);
        assert_eq!(line, format!("    x  {red}bad{red:#}    z"));
        // A cell wider than its column is never cut.
        assert_eq!(table.line(&["wide", "y", "z"]), "    wide  y      z");
    }
}
