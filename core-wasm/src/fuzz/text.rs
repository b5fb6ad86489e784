//! Fuzz target: the text sanitiser (`sanitize`: what goes to Plex) and the
//! clipping helpers of `text` (what goes into messages), seeded from
//! `tests/fuzz/corpus/text/`.
//!
//! Properties: never a panic (any Unicode, NUL, lone `\r`, huge input, a
//! limit of 0); the output has no control characters (`\n` only in
//! multi-line text, never `\r`), no leading or trailing whitespace, at
//! most the limit in characters, and is a clean prefix of the input's
//! cleaned text; sanitising twice changes nothing (a re-sync writes
//! nothing); short clean text is kept exactly; name lists have no
//! case-insensitive duplicates and at most `cap` names.

use super::*;
use crate::text::{body_snippet, clip, truncate_chars};
use proptest::prelude::*;
use stash2plex_testkit::fuzz;

fn inputs() -> impl Strategy<Value = String> {
    let seeds: Vec<String> = fuzz::corpus_json("text")
        .into_iter()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    prop_oneof![
        3 => fuzz::nasty_string(),
        2 => prop::sample::select(seeds.clone()),
        2 => (prop::sample::select(seeds), fuzz::nasty_string(), any::<prop::sample::Index>()).prop_map(|(s, insert, at)| {
            let cut = s.char_indices().map(|(i, _)| i).chain([s.len()]).nth(at.index(s.chars().count() + 1)).unwrap_or(0);
            format!("{}{insert}{}", &s[..cut], &s[cut..])
        }),
        1 => prop::collection::vec(prop_oneof![Just(' '), Just('\r'), Just('\n'), Just('\t'), Just('\u{0}'), Just('a'), Just('é'), Just('\u{85}'), Just('\u{2028}')], 0..400)
            .prop_map(|c| c.into_iter().collect()),
    ]
}

fn limits() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), Just(1), Just(5), Just(LINE_MAX_CHARS), Just(SUMMARY_MAX_CHARS), 0usize..600]
}

/// The cleaned text without any cut: the reference the cut output must
/// be a prefix of.
fn uncut(s: &str, multiline: bool) -> String {
    if multiline { text(s, usize::MAX) } else { line(s, usize::MAX) }
}

fn check_clean(out: &str, input: &str, max: usize, multiline: bool) -> Result<(), TestCaseError> {
    prop_assert!(out.chars().count() <= max, "{} chars > {max}", out.chars().count());
    prop_assert!(
        !out.chars().any(|c| c.is_control() && !(multiline && c == '\n')),
        "a control character left: {out:?}"
    );
    prop_assert!(!out.contains('\r'));
    prop_assert_eq!(out.trim(), out, "untrimmed");
    let full = uncut(input, multiline);
    prop_assert!(full.starts_with(out), "{out:?} is not a prefix of {full:?}");
    if full.chars().count() <= max {
        prop_assert_eq!(out, full.as_str(), "cut although it fits");
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz::config(1000))]

    #[test]
    fn fuzz_text_lines_are_clean_bounded_and_idempotent(s in inputs(), max in limits()) {
        let once = line(&s, max);
        check_clean(&once, &s, max, false)?;
        prop_assert!(!once.contains('\n'));
        prop_assert_eq!(line(&once, max), once.clone(), "not idempotent");
    }

    #[test]
    fn fuzz_text_summaries_keep_paragraphs_and_are_idempotent(s in inputs(), max in limits()) {
        let once = text(&s, max);
        check_clean(&once, &s, max, true)?;
        prop_assert_eq!(text(&once, max), once.clone(), "not idempotent");
        let lines_in = s.replace("\r\n", "\n").replace('\r', "\n").matches('\n').count();
        prop_assert!(once.matches('\n').count() <= lines_in);
    }

    #[test]
    fn fuzz_text_clean_short_text_is_kept_exactly(s in "[^\\p{Cc}\\s][^\\p{Cc}]{0,40}[^\\p{Cc}\\s]") {
        prop_assert_eq!(line(&s, LINE_MAX_CHARS), s.clone());
        prop_assert_eq!(text(&s, SUMMARY_MAX_CHARS), s);
    }

    #[test]
    fn fuzz_text_cut_at_word_is_a_bounded_prefix(s in inputs(), max in limits()) {
        let cut = cut_at_word(&s, max);
        prop_assert!(s.starts_with(cut));
        prop_assert!(cut.chars().count() <= max);
        if s.chars().count() <= max {
            prop_assert_eq!(cut, s.as_str());
        }
    }

    #[test]
    fn fuzz_text_names_are_unique_clean_and_capped(
        names in prop::collection::vec(inputs(), 0..12),
        cap in 0usize..10,
        max in limits(),
    ) {
        let out = dedup_names(names.clone(), max, cap);
        prop_assert!(out.len() <= cap);
        let lower: Vec<String> = out.iter().map(|n| n.to_lowercase()).collect();
        for (i, n) in out.iter().enumerate() {
            prop_assert!(!n.is_empty());
            prop_assert_eq!(&line(n, max), n);
            prop_assert!(!lower[..i].contains(&lower[i]), "a duplicate: {n:?}");
        }
        prop_assert_eq!(dedup_names(out.clone(), max, cap), out, "not idempotent");
    }

    #[test]
    fn fuzz_text_message_clips_are_one_bounded_line(s in inputs(), max in limits(), bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let c = clip(&s, max);
        prop_assert!(c.chars().count() <= max + 1);
        prop_assert!(!c.chars().any(char::is_control), "{c:?}");
        let n = s.chars().count();
        prop_assert_eq!(c.chars().count(), n.min(max) + usize::from(n > max), "{:?}", c);
        let snippet = body_snippet(&bytes, max);
        prop_assert!(snippet.chars().count() <= max + 1);
        prop_assert!(!snippet.chars().any(char::is_control), "{snippet:?}");
        let t = truncate_chars(&s, max);
        prop_assert!(s.starts_with(t) && t.chars().count() == s.chars().count().min(max));
    }
}
