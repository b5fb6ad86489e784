//! The settings this policy reads: their declaration (`schema`, returned
//! in `policy-info`), and the typed [`Settings`] built from the clean values
//! the host passes to `configure`. The host parses what Stash stores with
//! one rule per kind and checks every range declared here; this module only
//! checks the rules that join two settings.
//!
//! Sync settings (every field, what it writes and how it is matched is in
//! `docs/metadata.md`):
//!
//! | key | kind | default | meaning |
//! |---|---|---|---|
//! | `plex_library` | text | empty | library names to sync into (empty = every movie/TV library) |
//! | `sync_master` | flag | true | off = nothing is written to Plex |
//! | `sync_title`, `sync_summary`, `sync_tagline`, `sync_date`, `sync_studio`, `sync_performers`, `sync_tags`, `sync_collection`, `sync_group_collections`, `sync_poster`, `sync_background` | flag | true | one per field |
//! | `sync_sort_title` | choice | `title` | `title`, `date` (date then title), `off` |
//! | `studio_with_parent` | flag | false | studio written as `Parent / Studio` |
//! | `sync_rating` | flag | false | Stash `rating100` → Plex user rating (0–10) |
//! | `content_rating` | text | empty | this content rating on every synced item (empty = leave Plex's) |
//! | `plex_labels` | text | empty | comma-separated labels on every synced item (empty = leave Plex's) |
//! | `max_tags` | whole 10–500 | 100 | genres written per item |
//! | `plex_path_map` | text | empty | `stash prefix=>plex prefix; …` |
//! | `preserve_plex_edits` | flag | false | only fill empty Plex fields |
//! | `strict_matching` | flag | true | only exact-path matches; never guess |
//! | `trigger_plex_scan` | flag | false | ask Plex to scan a file's folder when it has no item for it |
//! | `skip_not_found` | flag | false | drop changes of files Plex does not have |
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
//! | `breaker_open_base_secs` | 4 | 1–3600 | first open duration, i.e. when the first health probe is due (doubles per repeated trip) |
//! | `breaker_open_max_secs` | 600 | 1–86400, ≥ base | longest open duration |
//! | `probe_interval_secs` | 4 | 1–600 | health-probe interval while an outage is under 5 minutes old (then it doubles every minute) |
//! | `probe_max_interval_secs` | 60 | 1–3600, ≥ interval | longest health-probe interval |
//! | `ramp_start_rps` | 1 | 1–100 | Plex requests per second right after a recovery |
//! | `ramp_target_rps` | 20 | 1–1000, ≥ start | where the ramp ends (it doubles every 10 s up to this) |
//! | `max_rps` | 0 | 0–1000 | steady cap on Plex requests per second; 0 = none (one request at a time) |
//!
//! Reconciliation settings (choices; see `reconcile` and docs/reconcile.md):
//!
//! | key | default | choices |
//! |---|---|---|
//! | `reconcile_schedule` | `never` | `never`, `hourly`, `daily`, `weekly` |
//! | `reconcile_scope` | `all` | `all`, `24h`, `7days`, `since_last` |
//! | `reconcile_mode` | `report` | `report`, `enqueue` |

use crate::breaker::BreakerConfig;
use crate::host::{Setting, SettingKind, SettingSpec, SettingValue, WholeRange};
use crate::reconcile::{Mode as ReconcileMode, Schedule, Scope as ReconcileScope};
use crate::recovery::{ProbeConfig, RampConfig};
use crate::retry::{Jitter, RetrySettings};

pub use crate::pathmap::PathMap;

/// What the Plex sort title is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortTitle {
    /// The (written) title.
    Title,
    /// `YYYY-MM-DD title`, so scenes sort by date.
    Date,
    /// Leave Plex's sort title alone.
    Off,
}

impl SortTitle {
    pub const ALL: [SortTitle; 3] = [SortTitle::Title, SortTitle::Date, SortTitle::Off];

    pub fn as_str(self) -> &'static str {
        match self {
            SortTitle::Title => "title",
            SortTitle::Date => "date",
            SortTitle::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<SortTitle> {
        Self::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// The settings this policy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Plex library (section) titles to sync into, lower-cased; empty = all.
    pub plex_library: Vec<String>,
    /// `false` = write nothing to Plex at all.
    pub sync_master: bool,
    pub sync_title: bool,
    pub sort_title: SortTitle,
    pub sync_summary: bool,
    pub sync_tagline: bool,
    pub sync_studio: bool,
    pub studio_with_parent: bool,
    pub sync_date: bool,
    pub sync_rating: bool,
    /// Written as `contentRating` on every synced item; empty = untouched.
    pub content_rating: String,
    pub sync_performers: bool,
    pub sync_tags: bool,
    /// Genres written per item.
    pub max_tags: u32,
    /// The studio as a collection.
    pub sync_collection: bool,
    /// Each Stash group as a collection.
    pub sync_group_collections: bool,
    /// Labels given to every synced item; empty = labels untouched.
    pub plex_labels: Vec<String>,
    /// Not a setting: the policy's flavour ([`crate::policy::Flavor`]).
    /// Stash tags become Plex labels (with `plex_labels`) instead of genres.
    pub tags_as_labels: bool,
    pub sync_poster: bool,
    pub sync_background: bool,
    /// Stash → Plex path prefix rules, longest Stash prefix first.
    pub path_map: PathMap,
    /// Request a partial scan when a file is not in Plex yet.
    pub trigger_plex_scan: bool,
    /// Drop changes of files Plex does not have.
    pub skip_not_found: bool,
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
    /// How often a reconciliation starts by itself.
    pub reconcile_schedule: Schedule,
    /// The scenes a scheduled (or argument-less) reconciliation looks at.
    pub reconcile_scope: ReconcileScope,
    /// Report only, or also queue the fixes.
    pub reconcile_mode: ReconcileMode,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            plex_library: Vec::new(),
            sync_master: true,
            sync_title: true,
            sort_title: SortTitle::Title,
            sync_summary: true,
            sync_tagline: true,
            sync_studio: true,
            studio_with_parent: false,
            sync_date: true,
            sync_rating: false,
            content_rating: String::new(),
            sync_performers: true,
            sync_tags: true,
            max_tags: 100,
            sync_collection: true,
            sync_group_collections: true,
            plex_labels: Vec::new(),
            tags_as_labels: false,
            sync_poster: true,
            sync_background: true,
            path_map: PathMap::default(),
            trigger_plex_scan: false,
            skip_not_found: false,
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
            breaker_open_base_secs: 4,
            breaker_open_max_secs: 600,
            probe_interval_secs: 4,
            probe_max_interval_secs: 60,
            ramp_start_rps: 1,
            ramp_target_rps: 20,
            max_rps: 0,
            reconcile_schedule: Schedule::Never,
            reconcile_scope: ReconcileScope::All,
            reconcile_mode: ReconcileMode::Report,
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

/// The whole-number settings: key, range, what it does.
const NUMBERS: [(&str, u32, u32, &str); 18] = [
    ("max_tags", 10, 500, "Most Stash tags written as Plex genres per item"),
    ("max_retries", 1, 20, "Attempts for a change that fails for a temporary reason"),
    ("retry_budget_percent", 0, 100, "Retries allowed per minute, as a share of first attempts"),
    ("breaker_failure_threshold", 1, 100, "Failures in a row that open the circuit breaker"),
    ("breaker_failure_rate", 1, 100, "Percent of failed calls in the window that opens the breaker"),
    ("breaker_window", 2, 200, "Calls in the breaker's sliding window"),
    ("breaker_min_calls", 1, 200, "Calls needed before the breaker judges rates"),
    ("breaker_slow_call_ms", 100, 120_000, "A Plex response this slow (ms) is a slow call"),
    ("breaker_slow_call_rate", 1, 100, "Percent of slow calls in the window that opens the breaker"),
    ("breaker_half_open_trials", 1, 20, "Trial changes after Plex answers again"),
    ("breaker_half_open_max_wait_secs", 10, 3_600, "Longest time in the trial state (seconds)"),
    (
        "breaker_open_base_secs",
        1,
        3_600,
        "First open duration of the breaker, when the first health probe is due (seconds)",
    ),
    ("breaker_open_max_secs", 1, 86_400, "Longest open duration of the breaker (seconds)"),
    ("probe_interval_secs", 1, 600, "Health-probe interval while an outage is under 5 minutes old (seconds)"),
    ("probe_max_interval_secs", 1, 3_600, "Longest health-probe interval (seconds)"),
    ("ramp_start_rps", 1, 100, "Plex requests per second right after a recovery"),
    ("ramp_target_rps", 1, 1_000, "Where the recovery ramp ends (requests per second)"),
    ("max_rps", 0, 1_000, "Steady cap on Plex requests per second; 0 = none"),
];

/// The yes/no settings: key, what it does.
const FLAGS: [(&str, &str); 18] = [
    ("sync_master", "Off stops all writes to Plex (jobs still complete)"),
    ("sync_title", "Write the scene's title"),
    ("sync_summary", "Write the scene's details as the Plex summary"),
    ("sync_tagline", "Write the scene's studio code as the Plex tagline"),
    ("sync_studio", "Write the scene's studio"),
    ("studio_with_parent", "Write the studio as 'Parent / Studio' when it has a parent studio"),
    ("sync_date", "Write the scene's date"),
    ("sync_rating", "Write the scene's rating as the Plex user rating"),
    ("sync_performers", "Write the scene's performers as Plex actors"),
    ("sync_tags", "Write the scene's tags as Plex genres"),
    ("sync_collection", "Put the item into a collection named after its studio"),
    ("sync_group_collections", "Put the item into a collection per Stash group"),
    ("sync_poster", "Upload the scene's screenshot as the Plex poster"),
    ("sync_background", "Upload the scene's screenshot as the Plex background"),
    ("preserve_plex_edits", "Only fill Plex fields that are empty; never overwrite or clear them"),
    ("strict_matching", "Only match a Plex item by its exact file path; never guess"),
    ("trigger_plex_scan", "Ask Plex to scan a file's folder when it has no item for the file yet"),
    ("skip_not_found", "Drop changes of files Plex does not have instead of retrying"),
];

fn number_slot<'a>(settings: &'a mut Settings, key: &str) -> Option<&'a mut u32> {
    Some(match key {
        "max_retries" => &mut settings.max_retries,
        "max_tags" => &mut settings.max_tags,
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

fn flag_slot<'a>(settings: &'a mut Settings, key: &str) -> Option<&'a mut bool> {
    Some(match key {
        "sync_master" => &mut settings.sync_master,
        "sync_title" => &mut settings.sync_title,
        "sync_summary" => &mut settings.sync_summary,
        "sync_tagline" => &mut settings.sync_tagline,
        "sync_studio" => &mut settings.sync_studio,
        "studio_with_parent" => &mut settings.studio_with_parent,
        "sync_date" => &mut settings.sync_date,
        "sync_rating" => &mut settings.sync_rating,
        "sync_performers" => &mut settings.sync_performers,
        "sync_tags" => &mut settings.sync_tags,
        "sync_collection" => &mut settings.sync_collection,
        "sync_group_collections" => &mut settings.sync_group_collections,
        "sync_poster" => &mut settings.sync_poster,
        "sync_background" => &mut settings.sync_background,
        "trigger_plex_scan" => &mut settings.trigger_plex_scan,
        "skip_not_found" => &mut settings.skip_not_found,
        "preserve_plex_edits" => &mut settings.preserve_plex_edits,
        "strict_matching" => &mut settings.strict_matching,
        _ => return None,
    })
}

/// The free-text settings besides `plex_library` (all default to empty).
const TEXTS: [(&str, &str); 3] = [
    ("content_rating", "Content rating written on every synced item (empty = leave Plex's)"),
    ("plex_labels", "Comma-separated labels given to every synced item (empty = leave Plex's labels alone)"),
    (
        "plex_path_map",
        "Where Plex sees Stash's files: 'stash prefix=>plex prefix', several separated by ';' (empty = the same paths)",
    ),
];

/// Every setting this policy reads, with its kind and default (the defaults
/// are [`Settings::default`]'s).
pub fn schema() -> Vec<SettingSpec> {
    let mut defaults = Settings::default();
    let mut specs = vec![SettingSpec {
        key: "plex_library".into(),
        kind: SettingKind::Text,
        default_value: SettingValue::Text(String::new()),
        description: "Comma-separated Plex library names to sync into (empty = every movie/TV library)".into(),
    }];
    for (key, description) in FLAGS {
        let default = flag_slot(&mut defaults, key).map(|b| *b).unwrap_or(false);
        specs.push(SettingSpec {
            key: key.into(),
            kind: SettingKind::Flag,
            default_value: SettingValue::Flag(default),
            description: description.into(),
        });
    }
    for (key, lo, hi, description) in NUMBERS {
        let default = number_slot(&mut defaults, key).map(|n| *n).unwrap_or(lo);
        specs.push(SettingSpec {
            key: key.into(),
            kind: SettingKind::Whole(WholeRange { min: i64::from(lo), max: i64::from(hi) }),
            default_value: SettingValue::Whole(i64::from(default)),
            description: description.into(),
        });
    }
    for (key, description) in TEXTS {
        specs.push(SettingSpec {
            key: key.into(),
            kind: SettingKind::Text,
            default_value: SettingValue::Text(String::new()),
            description: description.into(),
        });
    }
    specs.push(SettingSpec {
        key: "sync_sort_title".into(),
        kind: SettingKind::Choice(SortTitle::ALL.iter().map(|s| s.as_str().to_string()).collect()),
        default_value: SettingValue::Text(defaults.sort_title.as_str().into()),
        description: "The Plex sort title: the scene's title, its date then title, or off".into(),
    });
    specs.push(SettingSpec {
        key: "retry_jitter".into(),
        kind: SettingKind::Choice(Jitter::ALL.iter().map(|j| j.as_str().to_string()).collect()),
        default_value: SettingValue::Text(defaults.retry_jitter.as_str().into()),
        description: "How retry delays are spread".into(),
    });
    let choice = |key: &str, words: &[&'static str], default: &str, description: &str| SettingSpec {
        key: key.into(),
        kind: SettingKind::Choice(words.iter().map(|w| w.to_string()).collect()),
        default_value: SettingValue::Text(default.into()),
        description: description.into(),
    };
    specs.push(choice(
        "reconcile_schedule",
        &Schedule::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        defaults.reconcile_schedule.as_str(),
        "How often a reconciliation of Stash and Plex starts by itself (never, hourly, daily, weekly)",
    ));
    specs.push(choice(
        "reconcile_scope",
        &ReconcileScope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        defaults.reconcile_scope.as_str(),
        "The scenes a scheduled reconciliation checks: all, 24h, 7days or since_last",
    ));
    specs.push(choice(
        "reconcile_mode",
        &ReconcileMode::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        defaults.reconcile_mode.as_str(),
        "What a scheduled reconciliation does: report (only say what differs) or enqueue (also queue the fixes)",
    ));
    specs
}

/// The typed settings from the clean values the host passes. A key that is
/// missing or of the wrong kind keeps its default (the host fills every
/// declared key; this only guards against a host that does not).
pub fn from_settings(values: &[Setting]) -> Result<Settings, Vec<String>> {
    let mut settings = Settings::default();
    let mut path_errors = Vec::new();
    for Setting { key, value } in values {
        match value {
            SettingValue::Flag(b) => {
                if let Some(slot) = flag_slot(&mut settings, key) {
                    *slot = *b;
                }
            }
            SettingValue::Whole(n) => {
                let range = NUMBERS.iter().find(|(k, ..)| k == key).map(|(_, lo, hi, _)| (*lo, *hi));
                if let (Some((lo, hi)), Some(slot)) = (range, number_slot(&mut settings, key)) {
                    *slot = u32::try_from(*n).unwrap_or(0).clamp(lo, hi);
                }
            }
            SettingValue::Text(text) if key == "plex_library" => settings.plex_library = split_libraries(text),
            SettingValue::Text(text) if key == "content_rating" => {
                settings.content_rating = crate::sanitize::line(text, crate::sanitize::LINE_MAX_CHARS);
            }
            SettingValue::Text(text) if key == "plex_labels" => {
                settings.plex_labels = split_list(text);
            }
            SettingValue::Text(text) if key == "plex_path_map" => match PathMap::parse(text) {
                Ok(map) => settings.path_map = map,
                Err(e) => path_errors.push(e),
            },
            SettingValue::Text(text) if key == "sync_sort_title" => {
                if let Some(s) = SortTitle::parse(text) {
                    settings.sort_title = s;
                }
            }
            SettingValue::Text(text) if key == "reconcile_schedule" => {
                if let Some(v) = Schedule::parse(text) {
                    settings.reconcile_schedule = v;
                }
            }
            SettingValue::Text(text) if key == "reconcile_scope" => {
                if let Some(v) = ReconcileScope::parse(text) {
                    settings.reconcile_scope = v;
                }
            }
            SettingValue::Text(text) if key == "reconcile_mode" => {
                if let Some(v) = ReconcileMode::parse(text) {
                    settings.reconcile_mode = v;
                }
            }
            SettingValue::Text(text) if key == "retry_jitter" => {
                if let Some(j) = Jitter::parse(text) {
                    settings.retry_jitter = j;
                }
            }
            SettingValue::Text(_) => {}
        }
    }

    // Pairs that must be in order.
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
    let mut errors: Vec<String> = pairs
        .iter()
        .filter(|(_, low, _, high)| low > high)
        .map(|(low_key, low, high_key, high)| format!("{low_key} ({low}) must not be larger than {high_key} ({high})."))
        .collect();
    errors.extend(path_errors);
    if errors.is_empty() { Ok(settings) } else { Err(errors) }
}

/// Comma-separated names (labels): trimmed, sanitised, empties and
/// case-insensitive duplicates dropped, order kept.
pub fn split_list(s: &str) -> Vec<String> {
    crate::sanitize::dedup_names(s.split(',').map(str::to_string), crate::sanitize::LINE_MAX_CHARS, usize::MAX)
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

#[cfg(test)]
#[path = "fuzz/settings.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// As production parses them: the schema through the host's parser.
    fn parse(json: &str) -> Result<Settings, Vec<String>> {
        crate::test_support::parse_settings(json)
    }

    #[test]
    fn empty_input_gives_defaults() {
        assert_eq!(parse("{}").unwrap(), Settings::default());
        assert_eq!(from_settings(&[]).unwrap(), Settings::default());
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
        for (key, lo, hi, _) in NUMBERS {
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
        // Values the host cannot parse are reported by the host first; the
        // policy's own rules join two valid values.
        let errs = parse(r#"{"retry_jitter":"wobbly","breaker_window":20}"#).unwrap_err();
        assert_eq!(errs, ["retry_jitter must be one of full, decorrelated or equal (got \"wobbly\")."]);
        let errs = parse(
            r#"{"breaker_min_calls":30,"breaker_window":20,"breaker_open_base_secs":700,
                "probe_interval_secs":400,"ramp_start_rps":50}"#,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs.iter().any(|e| e == "breaker_min_calls (30) must not be larger than breaker_window (20)."));
        assert!(errs.iter().any(|e| e.contains("breaker_open_base_secs (700)")));
        assert!(errs.iter().any(|e| e.contains("probe_interval_secs (400)")));
        assert!(errs.iter().any(|e| e.contains("ramp_start_rps (50) must not be larger than ramp_target_rps (20)")));
        // A bad number does not also produce an ordering complaint.
        let errs = parse(r#"{"breaker_window":1}"#).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
    }
}
