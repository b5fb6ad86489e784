//! Parsing and validating the plugin settings JSON.
//!
//! The host passes the plugin's whole settings map (minus secrets), so
//! unknown keys are ignored. A key that is absent or `null` takes its
//! default. Every error is a sentence naming the key and the bad value.

use serde_json::{Map, Value};

use crate::text::clip;

/// The settings this policy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Plex library (section) titles to sync into, lower-cased; empty = all.
    pub plex_library: Vec<String>,
    /// `false` = write nothing to Plex at all.
    pub sync_master: bool,
    pub sync_summary: bool,
    pub sync_studio: bool,
    pub sync_date: bool,
    /// Never overwrite a non-empty Plex value, never clear one.
    pub preserve_plex_edits: bool,
    /// Refuse ambiguous matches (dead-letter) instead of picking one.
    pub strict_matching: bool,
    /// Attempts for transient failures, 1–20.
    pub max_retries: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            plex_library: Vec::new(),
            sync_master: true,
            sync_summary: true,
            sync_studio: true,
            sync_date: true,
            preserve_plex_edits: false,
            strict_matching: true,
            max_retries: 5,
        }
    }
}

pub const MAX_RETRIES_RANGE: (u32, u32) = (1, 20);

/// Parse the settings JSON text. Empty text or `null` means "nothing saved".
pub fn parse(json: &str) -> Result<Settings, Vec<String>> {
    let trimmed = json.trim();
    if trimmed.is_empty() {
        return Ok(Settings::default());
    }
    let value: Value = serde_json::from_str(trimmed)
        .map_err(|e| vec![format!("The plugin settings are not valid JSON ({}).", clip(&e.to_string(), 200))])?;
    match value {
        Value::Null => Ok(Settings::default()),
        Value::Object(map) => from_map(&map),
        other => Err(vec![format!("The plugin settings must be a JSON object, not {}.", show(&other))]),
    }
}

fn from_map(map: &Map<String, Value>) -> Result<Settings, Vec<String>> {
    let mut settings = Settings::default();
    let mut errors = Vec::new();

    match present(map, "plex_library") {
        None => {}
        Some(Value::String(s)) => settings.plex_library = split_libraries(s),
        Some(other) => errors
            .push(format!("plex_library must be text: Plex library names separated by commas (got {}).", show(other))),
    }

    let booleans: [(&str, &mut bool); 6] = [
        ("sync_master", &mut settings.sync_master),
        ("sync_summary", &mut settings.sync_summary),
        ("sync_studio", &mut settings.sync_studio),
        ("sync_date", &mut settings.sync_date),
        ("preserve_plex_edits", &mut settings.preserve_plex_edits),
        ("strict_matching", &mut settings.strict_matching),
    ];
    for (key, slot) in booleans {
        if let Some(value) = present(map, key) {
            match parse_bool(value) {
                Some(b) => *slot = b,
                None => errors.push(format!("{key} must be true or false (got {}).", show(value))),
            }
        }
    }

    if let Some(value) = present(map, "max_retries") {
        let (lo, hi) = MAX_RETRIES_RANGE;
        match parse_int(value) {
            Some(n) if n >= i64::from(lo) && n <= i64::from(hi) => {
                // In range, so it fits.
                settings.max_retries = u32::try_from(n).unwrap_or(hi);
            }
            _ => errors.push(format!("max_retries must be a whole number from {lo} to {hi} (got {}).", show(value))),
        }
    }

    if errors.is_empty() { Ok(settings) } else { Err(errors) }
}

/// The value under `key`, treating `null` as absent.
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// Comma-separated titles, trimmed, empties dropped, lower-cased for
/// case-insensitive comparison, duplicates removed.
pub fn split_libraries(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',') {
        let name = part.trim().to_lowercase();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// A JSON bool, `"true"/"false"/"yes"/"no"/"1"/"0"` (any case, trimmed), or
/// the numbers 0 and 1.
pub fn parse_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => {
            let x = n.as_f64()?;
            if x == 0.0 {
                Some(false)
            } else if x == 1.0 {
                Some(true)
            } else {
                None
            }
        }
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A whole number given as a JSON integer, an integral float (`5.0`) or a
/// numeric string.
fn parse_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 1e15).map(|x| x as i64))
        }
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// A short rendering of a bad value for an error sentence.
fn show(value: &Value) -> String {
    clip(&value.to_string(), 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_gives_defaults() {
        assert_eq!(parse("").unwrap(), Settings::default());
        assert_eq!(parse("null").unwrap(), Settings::default());
        assert_eq!(parse("{}").unwrap(), Settings::default());
        let d = Settings::default();
        assert!(d.sync_master && d.sync_summary && d.sync_studio && d.sync_date);
        assert!(d.strict_matching && !d.preserve_plex_edits);
        assert_eq!(d.max_retries, 5);
    }

    #[test]
    fn accepts_every_boolean_spelling_and_ignores_unknown_keys() {
        let s = parse(
            r#"{"sync_master":"yes","sync_summary":"FALSE","sync_studio":0,"sync_date":"1",
                "preserve_plex_edits":1,"strict_matching":"no","plex_url":"http://x",
                "something_else":[1,2]}"#,
        )
        .unwrap();
        assert!(s.sync_master);
        assert!(!s.sync_summary);
        assert!(!s.sync_studio);
        assert!(s.sync_date);
        assert!(s.preserve_plex_edits);
        assert!(!s.strict_matching);
    }

    #[test]
    fn null_means_default() {
        let s = parse(r#"{"sync_summary":null,"max_retries":null,"plex_library":null}"#).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn libraries_are_split_trimmed_and_case_folded() {
        let s = parse(r#"{"plex_library":" Movies , ,TV Shows,movies"}"#).unwrap();
        assert_eq!(s.plex_library, vec!["movies", "tv shows"]);
        let s = parse(r#"{"plex_library":"   "}"#).unwrap();
        assert!(s.plex_library.is_empty());
    }

    #[test]
    fn max_retries_accepts_numbers_and_numeric_text_in_range() {
        assert_eq!(parse(r#"{"max_retries":7}"#).unwrap().max_retries, 7);
        assert_eq!(parse(r#"{"max_retries":"20"}"#).unwrap().max_retries, 20);
        assert_eq!(parse(r#"{"max_retries":1.0}"#).unwrap().max_retries, 1);
    }

    #[test]
    fn bad_values_give_one_sentence_per_key() {
        let errs = parse(
            r#"{"sync_summary":"maybe","max_retries":0,"strict_matching":2,
                "plex_library":5,"sync_date":[true]}"#,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("sync_summary") && e.contains("\"maybe\"")));
        assert!(errs.iter().any(|e| e.contains("max_retries") && e.contains("1 to 20") && e.contains("got 0")));
        assert!(errs.iter().any(|e| e.contains("strict_matching") && e.contains("got 2")));
        assert!(errs.iter().any(|e| e.contains("plex_library")));
        assert!(errs.iter().any(|e| e.contains("sync_date")));
    }

    #[test]
    fn out_of_range_and_fractional_retries_are_errors() {
        for bad in [r#"21"#, r#"5.5"#, r#""five""#, r#"-1"#, r#"true"#] {
            let json = format!(r#"{{"max_retries":{bad}}}"#);
            let errs = parse(&json).unwrap_err();
            assert!(errs[0].starts_with("max_retries"), "{bad}: {errs:?}");
        }
    }

    #[test]
    fn non_object_and_invalid_json_are_errors() {
        assert!(parse("[1]").unwrap_err()[0].contains("JSON object"));
        assert!(parse("{").unwrap_err()[0].contains("not valid JSON"));
    }
}
