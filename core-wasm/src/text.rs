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

/// A duration the way people read it: `0s`, `42s`, `3m 5s`, `2h 10m`,
/// `3d 4h` (whole seconds, truncated; negative is `0s`).
pub fn duration_text(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `2023-11-14 22:13:20 UTC` for a time in milliseconds since the epoch.
pub fn utc_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = crate::calendar::civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC", t / 3_600, t % 3_600 / 60, t % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(duration_text(-5), "0s");
        assert_eq!(duration_text(999), "0s");
        assert_eq!(duration_text(42_900), "42s");
        assert_eq!(duration_text(185_000), "3m 5s");
        assert_eq!(duration_text(7_800_000), "2h 10m");
        assert_eq!(duration_text(273_600_000), "3d 4h");
        assert_eq!(utc_text(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(-1), "1969-12-31 23:59:59 UTC");
    }

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
