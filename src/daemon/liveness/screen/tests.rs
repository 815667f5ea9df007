//! Table tests of what a look tells from a pane's rows.

use super::*;

const POKE: &str = "HEARTBEAT: check your rigs";

/// A pane of `width` columns showing `rows` (all visible), the first at
/// scrollback row `first_row` after `history_size` rows of history.
fn pane(rows: &[&str], first_row: u64, width: usize) -> PaneView {
    PaneView {
        id: "%1".into(),
        dead: false,
        rows: rows.iter().map(|r| r.to_string()).collect(),
        first_row,
        screen_rows: rows.len(),
        history_size: first_row,
        cursor_row: None,
        cursor_visible: true,
        width,
    }
}

fn at_cursor(mut view: PaneView, row: usize, visible: bool) -> PaneView {
    view.cursor_row = Some(row);
    view.cursor_visible = visible;
    view
}

fn screen(rows: &[&str], first_row: u64) -> Screen {
    Screen::of(&pane(rows, first_row, 80), &[POKE, "gt prime"])
}

#[test]
fn wrapped_rows_are_one_line() {
    let view = pane(&["abcd", "ef", "", "ghij", "klmn", "o"], 7, 4);
    let lines = lines(&view);
    let texts: Vec<(&str, u64)> = lines.iter().map(|l| (l.text.as_str(), l.row)).collect();
    assert_eq!(texts, [("abcdef", 7), ("", 9), ("ghijklmno", 10)]);
    assert_eq!(lines[2].rows, 3..6);
}

#[test]
fn only_what_the_daemon_did_not_type_moves_a_screen() {
    let prompt = ["agent ready", "> "];
    // (what, before, after, moved)
    let table: Vec<(&str, Screen, Screen, bool)> = vec![
        ("nothing", screen(&prompt, 0), screen(&prompt, 0), false),
        (
            "a poke echoed on the input line",
            screen(&prompt, 0),
            screen(&["agent ready", &format!("> {POKE}")], 0),
            false,
        ),
        (
            "a poke and its Enter echoed by a program that never reads",
            screen(&["started", "", ""], 0),
            screen(&["started", POKE, ""], 0),
            false,
        ),
        (
            "echoes that scrolled the screen",
            screen(&["started", POKE, POKE], 10),
            screen(&[POKE, POKE, POKE], 11),
            false,
        ),
        (
            "the prime text echoed",
            screen(&["started", ""], 0),
            screen(&["started", "gt prime"], 0),
            false,
        ),
        (
            "an answer below",
            screen(&["agent ready", "> "], 0),
            screen(&["agent ready", "> ", "ack"], 0),
            true,
        ),
        (
            "the same answer again, the screen full of them",
            screen(&["ack", "ack", "ack"], 20),
            screen(&["ack", "ack", "ack"], 21),
            true,
        ),
        (
            "a line changed in place (a spinner)",
            screen(&["working |", "x"], 0),
            screen(&["working /", "x"], 0),
            true,
        ),
        (
            "a line erased",
            screen(&["a question", "x"], 0),
            screen(&["", "x"], 0),
            true,
        ),
        (
            "lines scrolled out of sight, nothing new",
            screen(&["a", "b", ""], 5),
            screen(&["b", "", ""], 6),
            false,
        ),
        (
            "history trimmed, the same lines",
            screen(&["a", "b", "c"], 2000),
            screen(&["a", "b", "c"], 1800),
            false,
        ),
        (
            "history trimmed, and a new line",
            screen(&["a", "b", "c"], 2000),
            screen(&["b", "c", "d"], 1801),
            true,
        ),
    ];
    for (what, before, after, expected) in table {
        assert_eq!(moved(&before, &after), expected, "{what}");
    }
}

#[test]
fn a_poke_sits_on_the_input_line_only_at_the_cursor() {
    let typed = format!("> {POKE}");
    let wide = 40;
    // (what, view, on the input line)
    let table = vec![
        (
            "on the cursor's row",
            at_cursor(pane(&["ready", &typed, ""], 0, wide), 1, true),
            true,
        ),
        (
            "echoed on the row above the cursor (a program that never reads)",
            at_cursor(pane(&["ready", POKE, ""], 0, wide), 2, true),
            false,
        ),
        (
            "wrapped over two rows, the cursor on the second",
            at_cursor(
                pane(&["ready", "> HEARTBEAT: chec", "k your rigs"], 0, 17),
                2,
                true,
            ),
            true,
        ),
        (
            "a hidden cursor below a drawn input box",
            at_cursor(
                pane(
                    &["╭────╮", &format!("│ {POKE} │"), "╰────╯", "hint", ""],
                    0,
                    wide,
                ),
                4,
                false,
            ),
            true,
        ),
        (
            "a hidden cursor, the text far above (submitted)",
            at_cursor(
                pane(
                    &[&typed, "answer", "x", "y", "z", "╭──╮", "│ > │", "╰──╯", ""],
                    0,
                    wide,
                ),
                8,
                false,
            ),
            false,
        ),
        ("no cursor known", pane(&["ready", &typed], 0, wide), false),
    ];
    for (what, view, expected) in table {
        assert_eq!(on_input_line(&view, POKE), expected, "{what}");
    }
}

#[test]
fn the_default_patterns_catch_the_common_prompts_and_little_else() {
    let patterns = Patterns::new(&crate::config::Config::default().human_prompt_patterns);
    let asks = [
        "│ Do you want to proceed?                       │",
        " Do you want to make this edit to README.md?",
        "Do you want to create notes.txt?",
        "  Would you like to run the following command?",
        "  Would you like to make the following edits?",
        "│ Allow execution of: 'rm -rf build'? │",
        "Apply this change?",
        "Add file to the chat? (Y)es/(N)o/(D)on't ask again [Yes]:",
        "Continue? [y/N] ",
        "Overwrite? [Y/n]",
        "Delete it (y/n)?",
        "Are you sure you want to continue connecting (yes/no/[fingerprint])?",
    ];
    for line in asks {
        let view = pane(&["some output", line, ""], 0, 200);
        assert_eq!(
            prompt_line(&view, &patterns, &[])
                .map(|p| p.text)
                .as_deref(),
            Some(line.trim()),
            "{line:?}"
        );
    }
    let says = [
        "you may proceed now",
        "the tests pass: yes or no questions aside",
        "HEARTBEAT: check your rigs",
        "Applying this change",
        "y/n",
    ];
    for line in says {
        let view = pane(&["some output", line, ""], 0, 200);
        assert_eq!(prompt_line(&view, &patterns, &[]), None, "{line:?}");
    }
}

#[test]
fn a_prompt_counts_near_the_bottom_of_the_screen_only() {
    let patterns = Patterns::new(&["(y/n)".to_string()]);
    let mut rows = vec!["Continue? (y/n)".to_string()];
    rows.extend((0..PROMPT_LINES).map(|i| format!("line {i}")));
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    assert_eq!(
        prompt_line(&pane(&rows, 0, 80), &patterns, &[]),
        None,
        "too far up"
    );
    assert!(prompt_line(&pane(&rows[..PROMPT_LINES], 0, 80), &patterns, &[]).is_some());
    // Blank rows do not push it up.
    let mut spaced = vec!["Continue? (y/n)"];
    spaced.extend(["", ""].repeat(PROMPT_LINES));
    assert!(prompt_line(&pane(&spaced, 0, 80), &patterns, &[]).is_some());
    // History above the screen is not the screen.
    let mut view = pane(&["Continue? (y/n)", "$ "], 0, 80);
    view.screen_rows = 1;
    assert_eq!(prompt_line(&view, &patterns, &[]), None);
    // A long line is cut.
    let long = format!("{} (y/n)", "x".repeat(1000));
    let line = prompt_line(&pane(&[&long], 0, 2000), &patterns, &[]).unwrap();
    assert_eq!(line.text.chars().count(), PROMPT_CHARS);
    assert!(
        line.text.starts_with('…') && line.text.ends_with("(y/n)"),
        "{line:?}"
    );
    // What matched is kept, wherever it is.
    let middle = format!("{} (y/n) {}", "a".repeat(500), "b".repeat(500));
    let line = prompt_line(&pane(&[&middle], 0, 2000), &patterns, &[]).unwrap();
    assert!(
        line.text.contains("(y/n)") && line.text.ends_with('…'),
        "{line:?}"
    );
    assert_eq!(line.text.chars().count(), PROMPT_CHARS);
    let early = format!("Continue? (y/n) {}", "c".repeat(1000));
    let line = prompt_line(&pane(&[&early], 0, 2000), &patterns, &[]).unwrap();
    assert!(line.text.starts_with("Continue? (y/n)") && line.text.ends_with('…'));
    assert_eq!(line.text.chars().count(), PROMPT_CHARS);
    // A poke the agent quotes asks nobody anything.
    let quoted = pane(&["you said: HB: anything to approve? (y/n)"], 0, 80);
    assert!(prompt_line(&quoted, &patterns, &[]).is_some());
    assert_eq!(
        prompt_line(&quoted, &patterns, &["HB: anything to approve? (y/n)"]),
        None
    );
}

#[test]
fn patterns_follow_the_config() {
    let mut p = Patterns::new(&["a".to_string(), String::new()]);
    assert!(p.matches("cat"));
    assert!(!p.matches("dog"), "an empty pattern matches nothing");
    p.update(&["dog".to_string()]);
    assert!(p.matches("hotdog") && !p.matches("cat"));
}
