//! Text as it goes to Plex: control characters removed, lengths capped at a
//! word boundary, everything else kept exactly (no Unicode normalisation,
//! no quote or dash folding), so the same Stash text always gives the same
//! Plex text and a re-sync of an unchanged scene writes nothing.
//!
//! - multi-line text (the summary): `\r\n` and a lone `\r` become `\n`;
//!   line breaks are kept, so paragraphs stay paragraphs;
//! - one-line text (title, studio, names): line breaks become spaces;
//! - a tab becomes a space (never glued words); every other control
//!   character (Unicode category Cc) is dropped;
//! - leading and trailing whitespace is trimmed;
//! - over the limit, the text is cut at the last whitespace in its final
//!   fifth, else at the limit (never inside a character).

use crate::text::truncate_chars;

/// Title, sort title, tagline, studio, tag and performer names.
pub const LINE_MAX_CHARS: usize = 255;
/// The summary.
pub const SUMMARY_MAX_CHARS: usize = 10_000;

/// Multi-line text (the summary).
pub fn text(s: &str, max_chars: usize) -> String {
    clean(s, max_chars, true)
}

/// One-line text (title, studio, names).
pub fn line(s: &str, max_chars: usize) -> String {
    clean(s, max_chars, false)
}

fn clean(s: &str, max_chars: usize, multiline: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(if multiline { '\n' } else { ' ' });
            }
            '\n' => out.push(if multiline { '\n' } else { ' ' }),
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    cut_at_word(out.trim(), max_chars).trim_end().to_string()
}

/// `s` cut to at most `max_chars` characters, at a word boundary when one
/// lies in the last fifth of the limit.
pub fn cut_at_word(s: &str, max_chars: usize) -> &str {
    let cut = truncate_chars(s, max_chars);
    if cut.len() == s.len() {
        return s;
    }
    if s[cut.len()..].starts_with(char::is_whitespace) {
        return cut;
    }
    let floor = max_chars - max_chars / 5;
    match cut.char_indices().rev().find(|(_, c)| c.is_whitespace()) {
        Some((byte, _)) if cut[..byte].chars().count() >= floor => &cut[..byte],
        _ => cut,
    }
}

/// Names for a Plex tag list: each sanitised as one line, empties dropped,
/// case-insensitive duplicates dropped (the first spelling wins), order
/// kept, at most `cap`.
pub fn dedup_names(names: impl IntoIterator<Item = String>, max_chars: usize, cap: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for name in names {
        if out.len() >= cap {
            break;
        }
        let name = line(&name, max_chars);
        let key = name.to_lowercase();
        if name.is_empty() || seen.contains(&key) {
            continue;
        }
        seen.push(key);
        out.push(name);
    }
    out
}

#[cfg(test)]
#[path = "fuzz/text.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_survive_and_control_characters_go() {
        assert_eq!(text("  One\r\ntwo\rthree\u{0}\u{7}\tfour\n\nfive  ", 100), "One\ntwo\nthree four\n\nfive");
        assert_eq!(line("A\nB\tC\u{1b}D", 100), "A B CD");
        // Everything that is not a control character is kept exactly.
        let kept = "“Quotes” – dashes — … &,%+ é 日本 🎬 \u{200b}\u{feff}x";
        assert_eq!(line(kept, 255), kept);
        assert_eq!(text(kept, 255), kept);
    }

    #[test]
    fn cuts_at_a_word_boundary_near_the_limit() {
        let s = "aaaa bbbb cccc dddd";
        assert_eq!(cut_at_word(s, 16), "aaaa bbbb cccc");
        assert_eq!(cut_at_word(s, 12), "aaaa bbbb cc");
        // The boundary is too far back (before 80 %): hard cut.
        assert_eq!(cut_at_word("a bbbbbbbbbbbbbbbbbbb", 10), "a bbbbbbbb");
        // A cut that falls just before a space keeps the whole word.
        assert_eq!(cut_at_word("aaaa bbbb cccc", 9), "aaaa bbbb");
        assert_eq!(cut_at_word("short", 10), "short");
        let long: String = "é".repeat(300);
        assert_eq!(line(&long, LINE_MAX_CHARS).chars().count(), 255);
        let words = "日本語 ".repeat(4000);
        let t = text(&words, SUMMARY_MAX_CHARS);
        assert!(t.chars().count() <= SUMMARY_MAX_CHARS && t.ends_with("日本語"));
    }

    #[test]
    fn the_same_input_gives_the_same_output() {
        let messy = " Title\u{0} with\r\nbreaks \t ";
        assert_eq!(line(messy, 255), line(messy, 255));
        // Sanitising twice changes nothing (a re-sync compares equal).
        let once = text(messy, 255);
        assert_eq!(text(&once, 255), once);
        let once = line(messy, 8);
        assert_eq!(line(&once, 8), once);
    }

    #[test]
    fn names_are_deduplicated_case_insensitively_in_order() {
        let names = ["Drama", " drama", "Sci-Fi & Fantasy", "", "\u{7}", "DRAMA", "Action, Adventure", "x"];
        let out = dedup_names(names.iter().map(|s| s.to_string()), 255, 3);
        assert_eq!(out, ["Drama", "Sci-Fi & Fantasy", "Action, Adventure"]);
    }
}
