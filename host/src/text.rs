//! Small text helpers for messages: durations as people read them
//! (humantime), and values cut short on a character boundary.

/// A duration the way people read it (`0s`, `42s`, `3m 5s`, `2h 10m`),
/// in whole seconds; negative is `0s`.
pub fn duration_text(ms: i64) -> String {
    let secs = u64::try_from(ms.max(0) / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// `s` cut to `max_chars` characters, with `…` when it was cut.
pub fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The start of a body, decoded lossily, on one line, for diagnostics.
pub fn snippet(body: &[u8], max_bytes: usize) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(max_bytes)]).replace(['\n', '\r'], " ");
    if body.len() > max_bytes { format!("{s}…") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_clips_and_snippets() {
        assert_eq!(duration_text(-5), "0s");
        assert_eq!(duration_text(42_900), "42s");
        assert_eq!(duration_text(185_000), "3m 5s");
        assert_eq!(duration_text(7_800_000), "2h 10m");
        assert_eq!(duration_text(273_600_000), "3days 4h");
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(snippet(b"a\nb", 10), "a b");
        assert_eq!(snippet(&[b'x'; 20], 5), "xxxxx…");
    }
}
