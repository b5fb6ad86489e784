//! Parsing and validating the plugin settings JSON.
//!
//! The host passes the plugin's whole settings map (minus secrets), so
//! unknown keys are ignored. A key that is absent or `null` takes its
//! default. Every error is a sentence naming the key and the bad value.
//!
//! Sync settings: `plex_library` (text, empty = all movie/TV libraries),
//! `sync_master`, `sync_summary`, `sync_studio`, `sync_date` (true),
//! `preserve_plex_edits` (false), `strict_matching` (true).
//!
//! Reliability settings (whole numbers; default, range):
//!
//! | key | default | range | meaning |
//! |---|---|---|---|
//! | `max_retries` | 5 | 1–20 | attempts for transient failures (overload, timeouts, resets, malformed answers) |
//! | `retry_jitter` | `full` | `full`, `decorrelated`, `equal` | how retry delays are spread (see `retry`) |
//! | `retry_budget_percent` | 20 | 0–100 | retries allowed per minute as a share of first attempts (plus 6 per minute) |
//! | `breaker_failure_threshold` | 5 | 1–100 | failures in a row that open the circuit |
//! | `breaker_failure_rate` | 50 | 1–100 | % of failed calls in the window that opens it |
//! | `breaker_window` | 20 | 2–200 | calls in the sliding window |
//! | `breaker_min_calls` | 10 | 1–200, ≤ window | calls needed before the rates are judged |
//! | `breaker_slow_call_ms` | 10000 | 100–120000 | a response this slow is a slow call |
//! | `breaker_slow_call_rate` | 80 | 1–100 | % of slow calls in the window that opens it |
//! | `breaker_half_open_trials` | 3 | 1–20 | trial jobs after Plex answers again; all must succeed to close |
//! | `breaker_half_open_max_wait_secs` | 120 | 10–3600 | longest time in the trial state |
//! | `breaker_open_base_secs` | 30 | 1–3600 | first open duration (doubles per repeated trip) |
//! | `breaker_open_max_secs` | 600 | 1–86400, ≥ base | longest open duration |
//! | `probe_interval_secs` | 5 | 1–600 | first health-probe interval while open |
//! | `probe_max_interval_secs` | 60 | 1–3600, ≥ interval | longest health-probe interval |
//! | `ramp_start_rps` | 1 | 1–100 | Plex requests per second right after a recovery |
//! | `ramp_target_rps` | 20 | 1–1000, ≥ start | where the ramp ends (it doubles every 10 s up to this) |
//! | `max_rps` | 0 | 0–1000 | steady cap on Plex requests per second; 0 = none (one request at a time) |

use serde_json::{Map, Value};

use crate::breaker::BreakerConfig;
use crate::recovery::{ProbeConfig, RampConfig};
use crate::retry::{Jitter, RetrySettings};
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
    pub retry_jitter: Jitter,
    pub retry_budget_percent: u32,
    pub breaker_failure_threshold: u32,
    pub breaker_failure_rate: u32,
    pub breaker_window: u32,
    pub breaker_min_calls: u32,
    pub breaker_slow_call_ms: u32,
    pub breaker_slow_call_rate: u32,
    pub breaker_half_open_trials: u32,
    pub breaker_half_open_max_wait_secs: u32,
    pub breaker_open_base_secs: u32,
    pub breaker_open_max_secs: u32,
    pub probe_interval_secs: u32,
    pub probe_max_interval_secs: u32,
    pub ramp_start_rps: u32,
    pub ramp_target_rps: u32,
    pub max_rps: u32,
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
            retry_jitter: Jitter::Full,
            retry_budget_percent: 20,
            breaker_failure_threshold: 5,
            breaker_failure_rate: 50,
            breaker_window: 20,
            breaker_min_calls: 10,
            breaker_slow_call_ms: 10_000,
            breaker_slow_call_rate: 80,
            breaker_half_open_trials: 3,
            breaker_half_open_max_wait_secs: 120,
            breaker_open_base_secs: 30,
            breaker_open_max_secs: 600,
            probe_interval_secs: 5,
            probe_max_interval_secs: 60,
            ramp_start_rps: 1,
            ramp_target_rps: 20,
            max_rps: 0,
        }
    }
}

impl Settings {
    pub fn retry(&self) -> RetrySettings {
        RetrySettings { max_retries: self.max_retries, jitter: self.retry_jitter }
    }

    pub fn breaker(&self) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.breaker_failure_threshold,
            failure_rate_pct: self.breaker_failure_rate,
            window: self.breaker_window,
            min_calls: self.breaker_min_calls,
            slow_call_ms: self.breaker_slow_call_ms,
            slow_call_rate_pct: self.breaker_slow_call_rate,
            half_open_trials: self.breaker_half_open_trials,
            half_open_max_wait_ms: i64::from(self.breaker_half_open_max_wait_secs) * 1000,
            open_base_ms: i64::from(self.breaker_open_base_secs) * 1000,
            open_max_ms: i64::from(self.breaker_open_max_secs) * 1000,
        }
    }

    pub fn probes(&self) -> ProbeConfig {
        ProbeConfig {
            interval_ms: u64::from(self.probe_interval_secs) * 1000,
            max_interval_ms: u64::from(self.probe_max_interval_secs) * 1000,
        }
    }

    pub fn ramp(&self) -> RampConfig {
        RampConfig {
            start_milli: self.ramp_start_rps.saturating_mul(1000),
            target_milli: self.ramp_target_rps.saturating_mul(1000),
            steady_milli: self.max_rps.saturating_mul(1000),
        }
    }
}

pub const MAX_RETRIES_RANGE: (u32, u32) = (1, 20);

/// The whole-number reliability settings: key, range.
const NUMBERS: [(&str, u32, u32); 17] = [
    ("max_retries", 1, 20),
    ("retry_budget_percent", 0, 100),
    ("breaker_failure_threshold", 1, 100),
    ("breaker_failure_rate", 1, 100),
    ("breaker_window", 2, 200),
    ("breaker_min_calls", 1, 200),
    ("breaker_slow_call_ms", 100, 120_000),
    ("breaker_slow_call_rate", 1, 100),
    ("breaker_half_open_trials", 1, 20),
    ("breaker_half_open_max_wait_secs", 10, 3_600),
    ("breaker_open_base_secs", 1, 3_600),
    ("breaker_open_max_secs", 1, 86_400),
    ("probe_interval_secs", 1, 600),
    ("probe_max_interval_secs", 1, 3_600),
    ("ramp_start_rps", 1, 100),
    ("ramp_target_rps", 1, 1_000),
    ("max_rps", 0, 1_000),
];

fn number_slot<'a>(settings: &'a mut Settings, key: &str) -> Option<&'a mut u32> {
    Some(match key {
        "max_retries" => &mut settings.max_retries,
        "retry_budget_percent" => &mut settings.retry_budget_percent,
        "breaker_failure_threshold" => &mut settings.breaker_failure_threshold,
        "breaker_failure_rate" => &mut settings.breaker_failure_rate,
        "breaker_window" => &mut settings.breaker_window,
        "breaker_min_calls" => &mut settings.breaker_min_calls,
        "breaker_slow_call_ms" => &mut settings.breaker_slow_call_ms,
        "breaker_slow_call_rate" => &mut settings.breaker_slow_call_rate,
        "breaker_half_open_trials" => &mut settings.breaker_half_open_trials,
        "breaker_half_open_max_wait_secs" => &mut settings.breaker_half_open_max_wait_secs,
        "breaker_open_base_secs" => &mut settings.breaker_open_base_secs,
        "breaker_open_max_secs" => &mut settings.breaker_open_max_secs,
        "probe_interval_secs" => &mut settings.probe_interval_secs,
        "probe_max_interval_secs" => &mut settings.probe_max_interval_secs,
        "ramp_start_rps" => &mut settings.ramp_start_rps,
        "ramp_target_rps" => &mut settings.ramp_target_rps,
        "max_rps" => &mut settings.max_rps,
        _ => return None,
    })
}

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

    let mut bad_numbers = Vec::new();
    for (key, lo, hi) in NUMBERS {
        let Some(value) = present(map, key) else {
            continue;
        };
        match parse_int(value) {
            Some(n) if n >= i64::from(lo) && n <= i64::from(hi) => {
                if let Some(slot) = number_slot(&mut settings, key) {
                    // In range, so it fits.
                    *slot = u32::try_from(n).unwrap_or(hi);
                }
            }
            _ => {
                bad_numbers.push(key);
                errors.push(format!("{key} must be a whole number from {lo} to {hi} (got {}).", show(value)));
            }
        }
    }

    if let Some(value) = present(map, "retry_jitter") {
        match value.as_str().and_then(Jitter::parse) {
            Some(j) => settings.retry_jitter = j,
            None => {
                errors.push(format!("retry_jitter must be one of full, decorrelated or equal (got {}).", show(value)))
            }
        }
    }

    // Pairs that must be in order (only when both values were valid).
    let pairs: [(&str, u32, &str, u32); 4] = [
        ("breaker_min_calls", settings.breaker_min_calls, "breaker_window", settings.breaker_window),
        (
            "breaker_open_base_secs",
            settings.breaker_open_base_secs,
            "breaker_open_max_secs",
            settings.breaker_open_max_secs,
        ),
        (
            "probe_interval_secs",
            settings.probe_interval_secs,
            "probe_max_interval_secs",
            settings.probe_max_interval_secs,
        ),
        ("ramp_start_rps", settings.ramp_start_rps, "ramp_target_rps", settings.ramp_target_rps),
    ];
    for (low_key, low, high_key, high) in pairs {
        if low > high && !bad_numbers.contains(&low_key) && !bad_numbers.contains(&high_key) {
            errors.push(format!("{low_key} ({low}) must not be larger than {high_key} ({high})."));
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
    fn reliability_settings_parse_with_ranges_and_order() {
        let s = parse(
            r#"{"breaker_failure_threshold":"7","breaker_window":50,"breaker_min_calls":50,
                "retry_jitter":"Decorrelated","retry_budget_percent":0,"ramp_start_rps":20,
                "ramp_target_rps":20,"probe_interval_secs":10,"probe_max_interval_secs":10}"#,
        )
        .unwrap();
        assert_eq!(s.breaker_failure_threshold, 7);
        assert_eq!((s.breaker_window, s.breaker_min_calls), (50, 50));
        assert_eq!(s.retry_jitter, Jitter::Decorrelated);
        assert_eq!(s.retry_budget_percent, 0);
        assert_eq!(s.breaker().window, 50);
        assert_eq!(s.probes().interval_ms, 10_000);
        assert_eq!(s.ramp().start_milli, 20_000);
        let d = Settings::default();
        assert_eq!(d.breaker(), BreakerConfig::default());
        assert_eq!(d.probes(), ProbeConfig::default());
        assert_eq!(d.ramp(), RampConfig::default());
        assert_eq!(d.retry(), RetrySettings::default());
    }

    #[test]
    fn every_reliability_number_is_range_checked() {
        for (key, lo, hi) in NUMBERS {
            let errs = parse(&format!(r#"{{"{key}":{}}}"#, u64::from(hi) + 1)).unwrap_err();
            assert_eq!(errs.len(), 1, "{key}: {errs:?}");
            assert!(errs[0].starts_with(key) && errs[0].contains(&format!("from {lo} to {hi}")), "{errs:?}");
            if lo > 0 {
                assert!(parse(&format!(r#"{{"{key}":{}}}"#, lo - 1)).is_err(), "{key}");
            }
            assert!(parse(&format!(r#"{{"{key}":"many"}}"#)).is_err(), "{key}");
        }
    }

    #[test]
    fn out_of_order_pairs_and_bad_jitter_are_explained() {
        let errs = parse(
            r#"{"breaker_min_calls":30,"breaker_window":20,"breaker_open_base_secs":700,
                "probe_interval_secs":400,"ramp_start_rps":50,"retry_jitter":"wobbly"}"#,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs.iter().any(|e| e == "breaker_min_calls (30) must not be larger than breaker_window (20)."));
        assert!(errs.iter().any(|e| e.contains("breaker_open_base_secs (700)")));
        assert!(errs.iter().any(|e| e.contains("probe_interval_secs (400)")));
        assert!(errs.iter().any(|e| e.contains("ramp_start_rps (50) must not be larger than ramp_target_rps (20)")));
        assert!(errs.iter().any(|e| e.contains("retry_jitter must be one of full, decorrelated or equal")));
        // A bad number does not also produce an ordering complaint.
        let errs = parse(r#"{"breaker_window":1}"#).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn non_object_and_invalid_json_are_errors() {
        assert!(parse("[1]").unwrap_err()[0].contains("JSON object"));
        assert!(parse("{").unwrap_err()[0].contains("not valid JSON"));
    }
}
