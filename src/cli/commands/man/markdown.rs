//! The reference pages under docs/ (Markdown) as sections of a manual page
//! (roff), so `gt man` ships the same text as the repository: headings
//! become subsections, tables become tagged paragraphs (`.TP`), code
//! blocks stay as they are.
//!
//! Markdown is read with pulldown-cmark: inline code, links, escaped
//! pipes in tables and nested lists are easy to get subtly wrong by hand.

use clap_mangen::roff::{bold, italic, line_break, roman, Inline, Roff};
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Appends `markdown` to `roff` as the body of a section: the level-one
/// heading is left out (the section's own `.SH` says it).
pub(super) fn render(markdown: &str, roff: &mut Roff) {
    let mut out = Writer {
        roff,
        line: Vec::new(),
        table: None,
        lists: Vec::new(),
        code: false,
        skip: false,
        emphasis: false,
        strong: false,
        link: None,
    };
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        out.event(event);
    }
}

/// A table being read: its header cells and the cells of its rows.
#[derive(Default)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Vec<Inline>>>,
    in_header: bool,
}

struct Writer<'a> {
    roff: &'a mut Roff,
    /// The text of the paragraph, heading, item or cell being read.
    line: Vec<Inline>,
    table: Option<Table>,
    /// Per open list: the next number, or `None` for bullets.
    lists: Vec<Option<u64>>,
    code: bool,
    /// Inside the level-one heading.
    skip: bool,
    emphasis: bool,
    strong: bool,
    /// The address of the link being read, when it leads out of docs/.
    link: Option<String>,
}

impl Writer<'_> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) if self.code => {
                self.roff.control("nf", []);
                for line in text.lines() {
                    self.roff.text([roman(line)]);
                }
                self.roff.control("fi", []);
            }
            Event::Text(text) if !self.skip => {
                let text = text.to_string();
                self.line.push(match (self.strong, self.emphasis) {
                    (true, _) => bold(text),
                    (false, true) => italic(text),
                    (false, false) => roman(text),
                });
            }
            Event::Code(text) => self.line.push(bold(text.to_string())),
            Event::SoftBreak => self.line.push(roman(" ")),
            Event::HardBreak => self.line.push(line_break()),
            // The HTML comment that says a page is generated.
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => {
                self.flush();
                self.skip = level == HeadingLevel::H1;
            }
            Tag::Paragraph if self.lists.is_empty() => self.flush(),
            Tag::List(first) => {
                if self.lists.is_empty() {
                    self.flush();
                } else {
                    // The item's own text first, then the nested list.
                    self.flush_text();
                    self.roff.control("RS", []);
                }
                self.lists.push(first);
            }
            Tag::Item => self.item(),
            Tag::CodeBlock(_) => {
                if self.lists.is_empty() {
                    self.flush();
                    self.roff.control("PP", []);
                } else {
                    self.flush_text();
                }
                self.roff.control("RS", ["4"]);
                self.code = true;
            }
            Tag::Table(_) => {
                self.flush();
                self.table = Some(Table::default());
            }
            Tag::TableHead => {
                if let Some(t) = &mut self.table {
                    t.in_header = true;
                }
            }
            Tag::TableRow => {
                if let Some(t) = &mut self.table {
                    t.rows.push(Vec::new());
                }
            }
            Tag::Emphasis => self.emphasis = true,
            Tag::Strong => self.strong = true,
            // A page of docs/ is a section of the same manual page; an
            // address outside is kept.
            Tag::Link { dest_url, .. } if dest_url.contains("://") => {
                self.link = Some(dest_url.to_string())
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(level) => {
                let title = text_of(&std::mem::take(&mut self.line));
                match level {
                    HeadingLevel::H1 => {}
                    HeadingLevel::H2 => {
                        self.roff.control("SS", [title.as_str()]);
                    }
                    _ => {
                        self.roff.control("PP", []);
                        self.roff.text([bold(title)]);
                    }
                }
                self.skip = false;
            }
            TagEnd::Paragraph if self.lists.is_empty() => self.paragraph(),
            TagEnd::Paragraph => self.line.push(roman(" ")),
            TagEnd::Item => self.flush_text(),
            TagEnd::List(_) => {
                self.flush_text();
                self.lists.pop();
                if !self.lists.is_empty() {
                    self.roff.control("RE", []);
                }
            }
            TagEnd::CodeBlock => {
                self.code = false;
                self.roff.control("RE", []);
            }
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.line);
                if let Some(t) = &mut self.table {
                    if t.in_header {
                        t.header.push(text_of(&cell));
                    } else if let Some(row) = t.rows.last_mut() {
                        row.push(cell);
                    }
                }
            }
            TagEnd::TableHead => {
                if let Some(t) = &mut self.table {
                    t.in_header = false;
                }
            }
            TagEnd::Table => {
                if let Some(table) = self.table.take() {
                    self.write_table(table);
                }
            }
            TagEnd::Emphasis => self.emphasis = false,
            TagEnd::Strong => self.strong = false,
            TagEnd::Link => {
                if let Some(url) = self.link.take() {
                    self.line.push(roman(format!(" <{url}>")));
                }
            }
            _ => {}
        }
    }

    /// A list item: a bullet, or its number.
    fn item(&mut self) {
        self.flush_text();
        let depth = self.lists.len();
        match self.lists.last_mut() {
            Some(Some(n)) => {
                let tag = format!("{n}.");
                *n += 1;
                self.roff.control("IP", [tag.as_str(), "4"]);
            }
            _ => {
                self.roff
                    .control("IP", [if depth > 1 { "\\-" } else { "\\(bu" }, "2"]);
            }
        }
    }

    /// Each row as a tagged paragraph: its first cell the tag, then the
    /// middle cells as `header: value`, then the last cell.
    fn write_table(&mut self, table: Table) {
        for row in table.rows {
            let mut cells = row.into_iter();
            let Some(first) = cells.next() else { continue };
            let rest: Vec<Vec<Inline>> = cells.collect();
            self.roff.control("TP", []);
            self.roff.text(first);
            let mut body = Vec::new();
            let last = rest.len().saturating_sub(1);
            for (i, cell) in rest.into_iter().enumerate() {
                let text = text_of(&cell);
                if i == last {
                    if !body.is_empty() {
                        body.push(line_break());
                    }
                    body.extend(cell);
                } else if !text.trim().is_empty() && text != "-" {
                    if !body.is_empty() {
                        body.push(roman("; "));
                    }
                    let header = table.header.get(i + 1).map_or("", String::as_str);
                    body.push(roman(format!("{header}: ")));
                    body.extend(cell);
                }
            }
            if !body.is_empty() {
                self.roff.text(body);
            }
        }
    }

    fn paragraph(&mut self) {
        self.roff.control("PP", []);
        self.flush_text();
    }

    fn flush(&mut self) {
        if !self.line.is_empty() {
            self.paragraph();
        }
    }

    fn flush_text(&mut self) {
        let line = std::mem::take(&mut self.line);
        if line
            .iter()
            .any(|i| !text_of(std::slice::from_ref(i)).trim().is_empty())
        {
            self.roff.text(line);
        }
    }
}

/// The plain text of inline parts.
fn text_of(parts: &[Inline]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Inline::Roman(t) | Inline::Italic(t) | Inline::Bold(t) => t.as_str(),
            Inline::LineBreak => " ",
        })
        .collect()
}
