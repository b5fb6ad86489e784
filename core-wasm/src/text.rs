//! Small string helpers that keep everything the policy produces bounded.

/// The first `max_chars` characters of `s` (never splits a character).
pub fn truncate_chars(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((byte_index, _)) => &s[..byte_index],
        None => s,
    }
}

/// `s` cut to `max_chars` characters with `…` appended when it was cut, and
/// control characters (line breaks included) replaced by spaces: safe to put
/// inside a one-line log message or error.
pub fn clip(s: &str, max_chars: usize) -> String {
    let cut = truncate_chars(s, max_chars);
    let mut out: String = cut.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if cut.len() < s.len() {
        out.push('…');
    }
    out
}

/// The first `max_bytes` bytes of a body, decoded lossily and clipped, for
/// diagnostics.
pub fn body_snippet(body: &[u8], max_bytes: usize) -> String {
    let head = &body[..body.len().min(max_bytes)];
    let text = String::from_utf8_lossy(head);
    let mut out = clip(text.trim(), max_bytes);
    if body.len() > max_bytes && !out.ends_with('…') {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("日本語", 5), "日本語");
        assert_eq!(truncate_chars("", 3), "");
    }

    #[test]
    fn clip_marks_the_cut_and_flattens_lines() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 3), "abc…");
    }

    #[test]
    fn body_snippet_is_bounded() {
        let body = vec![b'x'; 1000];
        let s = body_snippet(&body, 200);
        assert_eq!(s.chars().count(), 201);
        assert!(s.ends_with('…'));
        // Invalid UTF-8 does not panic.
        assert_eq!(body_snippet(&[0xff, b'a'], 10), "\u{fffd}a");
    }
}
