//! Small text helpers for messages: durations as people read them
//! (humantime), and values cut short on a character boundary.

/// A duration the way people read it (`0s`, `42s`, `3m 5s`, `2h 10m`),
/// in whole seconds; negative is `0s`.
pub fn duration_text(ms: i64) -> String {
    let secs = u64::try_from(ms.max(0) / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// Problems (sentences) in one line: `a; b; c`, without their full stops.
pub fn joined(problems: &[String]) -> String {
    problems.iter().map(|p| p.trim_end_matches('.')).collect::<Vec<_>>().join("; ")
}

/// `s` cut to `max_chars` characters, with `…` when it was cut.
pub fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A serde message without the value it quotes after `invalid type:` or
/// `invalid value:` (`integer `5``, `string "abc"`): the value may be a
/// cookie, a key or a token. Field names and the rest stay.
pub fn without_values(message: &str) -> String {
    const MARKERS: [&str; 2] = ["invalid type: ", "invalid value: "];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, marker)) = MARKERS.iter().filter_map(|m| rest.find(m).map(|i| (i, *m))).min() {
        let start = at + marker.len();
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let after = if let Some(quoted) = tail.strip_prefix("string \"") {
            out.push_str("string (value not shown)");
            closing_quote(quoted).map(|end| &quoted[end + 1..])
        } else if let Some((kind, value)) = tail.split_once(" `")
            && !kind.contains([',', '`'])
        {
            out.push_str(kind);
            out.push_str(" (value not shown)");
            value.find('`').map(|end| &value[end + 1..])
        } else {
            Some(tail)
        };
        match after {
            Some(after) => rest = after,
            // An unterminated value: nothing after it is shown.
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Where a Rust debug-quoted string (after its opening `"`) ends.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' if !escaped => return Some(i),
            '\\' if !escaped => escaped = true,
            _ => escaped = false,
        }
    }
    None
}

/// The start of a body, decoded lossily, on one line, for diagnostics.
pub fn snippet(body: &[u8], max_bytes: usize) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(max_bytes)]).replace(['\n', '\r'], " ");
    if body.len() > max_bytes { format!("{s}…") } else { s }
}

/// A timestamp as Stash writes it (`2026-01-10T12:34:56+01:00` or `…Z`,
/// whole seconds): the instant in ms and the offset in seconds.
pub fn parse_timestamp(text: &str) -> Option<(i64, i64)> {
    let (head, offset) = if let Some(head) = text.strip_suffix('Z') {
        (head, 0)
    } else {
        let (head, tail) = text.split_at_checked(text.len().checked_sub(6)?)?;
        let b = tail.as_bytes();
        let sign = match b[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours: i64 = tail.get(1..3)?.parse().ok()?;
        let minutes: i64 = tail.get(4..6)?.parse().ok()?;
        if b[3] != b':' || hours > 23 || minutes > 59 {
            return None;
        }
        (head, sign * (hours * 3600 + minutes * 60))
    };
    if head.len() != 19 || head.as_bytes()[10] != b'T' {
        return None;
    }
    let local = humantime::parse_rfc3339(&format!("{head}Z")).ok()?;
    let secs = i64::try_from(local.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
    Some((secs.checked_sub(offset)?.checked_mul(1000)?, offset))
}

/// The instant `ms` written like `sample`, a timestamp Stash returned: same
/// form, same offset, so the two compare correctly as text (Stash's
/// timestamp filters are lexical). `None` when `sample` is not in that form.
pub fn timestamp_like(ms: i64, sample: &str) -> Option<String> {
    let (_, offset) = parse_timestamp(sample)?;
    let local = u64::try_from(ms.div_euclid(1000) + offset).ok()?;
    let utc = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(local));
    let suffix = if sample.ends_with('Z') { "Z" } else { &sample[sample.len() - 6..] };
    Some(format!("{}{suffix}", utc.to_string().strip_suffix('Z')?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_take_the_form_of_the_sample() {
        // 2026-01-10T11:34:56Z
        let ms = 1_768_044_896_000;
        assert_eq!(timestamp_like(ms, "2025-03-01T00:00:00Z").as_deref(), Some("2026-01-10T11:34:56Z"));
        assert_eq!(timestamp_like(ms, "2025-03-01T00:00:00+01:00").as_deref(), Some("2026-01-10T12:34:56+01:00"));
        assert_eq!(timestamp_like(ms, "2025-03-01T00:00:00-05:30").as_deref(), Some("2026-01-10T06:04:56-05:30"));
        for odd in ["", "yesterday", "2025-03-01 00:00:00", "2025-03-01T00:00:00+1:00", "2025-03-01T00:00:00+25:00"] {
            assert_eq!(timestamp_like(ms, odd), None, "{odd:?}");
            assert_eq!(parse_timestamp(odd), None, "{odd:?}");
        }
        assert_eq!(parse_timestamp("2026-01-10T12:34:56+01:00"), Some((ms, 3600)));
        assert_eq!(parse_timestamp("2026-01-10T11:34:56Z"), Some((ms, 0)));
    }

    #[test]
    fn serde_messages_lose_their_values_and_keep_the_rest() {
        let shown = without_values(
            "invalid type: string \"session=abc\\\"def\", expected struct SessionCookie at line 1 column 9",
        );
        assert_eq!(shown, "invalid type: string (value not shown), expected struct SessionCookie at line 1 column 9");
        assert_eq!(
            without_values("invalid type: integer `12345678901234`, expected a string"),
            "invalid type: integer (value not shown), expected a string"
        );
        assert_eq!(without_values("invalid type: map, expected u16"), "invalid type: map, expected u16");
        assert_eq!(without_values("missing field `id` at line 3"), "missing field `id` at line 3");
        assert_eq!(without_values("invalid value: string \"unterminated"), "invalid value: string (value not shown)");
    }

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
