//! From a Stash scene to one Plex edit request.
//!
//! The desired value of each core field is computed from the scene, compared
//! with the item's current value and lock, and every field that differs or is
//! not locked yet goes into ONE `PUT /library/sections/{sid}/all` as
//! `<field>.value` + `<field>.locked=1`. Locking keeps a Plex metadata refresh
//! from reverting what Stash wrote, and makes the next sync of an unchanged
//! scene send nothing.

use crate::host::Scene;
use crate::plex_json::PlexItem;
use crate::settings::Settings;
use crate::text::{clip, truncate_chars};

pub const TITLE_MAX_CHARS: usize = 255;
pub const STUDIO_MAX_CHARS: usize = 255;
pub const SUMMARY_MAX_CHARS: usize = 10_000;

/// A core field the policy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Title,
    Summary,
    OriginallyAvailableAt,
    Studio,
}

impl Field {
    /// The Plex edit/lock name.
    pub fn plex_name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Summary => "summary",
            Field::OriginallyAvailableAt => "originallyAvailableAt",
            Field::Studio => "studio",
        }
    }

    fn current(self, item: &PlexItem) -> &str {
        let value = match self {
            Field::Title => &item.title,
            Field::Summary => &item.summary,
            Field::OriginallyAvailableAt => &item.originally_available_at,
            Field::Studio => &item.studio,
        };
        let value = value.as_deref().unwrap_or("");
        match self {
            // Plex returns `YYYY-MM-DD`; tolerate a time part.
            Field::OriginallyAvailableAt if value.len() > 10 && value.is_char_boundary(10) => &value[..10],
            _ => value,
        }
    }
}

/// The edit to send, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EditPlan {
    /// The query of the PUT: `type`, `id`, then value+lock per field. Empty
    /// when nothing needs writing.
    pub query: Vec<(String, String)>,
    /// The fields written, in order.
    pub changed: Vec<Field>,
    /// Values that could not be used (bad dates), for the log.
    pub warnings: Vec<String>,
}

impl EditPlan {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    pub fn changed_names(&self) -> Vec<&'static str> {
        self.changed.iter().map(|f| f.plex_name()).collect()
    }
}

/// What Stash wants for each field: `None` = leave the field alone,
/// `Some("")` = clear it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub originally_available_at: Option<String>,
    pub studio: Option<String>,
    pub warnings: Vec<String>,
}

/// The desired Plex values for a scene under `settings`.
pub fn desired(scene: &Scene, settings: &Settings) -> Desired {
    let mut d = Desired::default();
    if !settings.sync_master {
        return d;
    }
    // The title is never cleared.
    let title = sanitize_line(scene.title.as_deref().unwrap_or(""), TITLE_MAX_CHARS);
    if !title.is_empty() {
        d.title = Some(title);
    }
    if settings.sync_summary {
        d.summary = Some(sanitize_text(scene.details.as_deref().unwrap_or(""), SUMMARY_MAX_CHARS));
    }
    if settings.sync_date {
        let raw = scene.date.as_deref().unwrap_or("");
        match normalise_date(raw) {
            Some(date) => d.originally_available_at = Some(date),
            None => d.warnings.push(format!(
                "date {:?} is not YYYY, YYYY-MM or YYYY-MM-DD; the Plex date is left as it is",
                clip(raw, 40)
            )),
        }
    }
    if settings.sync_studio {
        let name = scene.studio.as_ref().map_or("", |s| s.name.as_str());
        d.studio = Some(sanitize_line(name, STUDIO_MAX_CHARS));
    }
    d
}

/// Compare the desired values with the item and build the PUT query.
pub fn plan(scene: &Scene, item: &PlexItem, settings: &Settings, plex_type: u8, rating_key: &str) -> EditPlan {
    let want = desired(scene, settings);
    let mut plan = EditPlan { warnings: want.warnings.clone(), ..EditPlan::default() };
    let fields = [
        (Field::Title, &want.title),
        (Field::Summary, &want.summary),
        (Field::OriginallyAvailableAt, &want.originally_available_at),
        (Field::Studio, &want.studio),
    ];
    let mut pairs = Vec::new();
    for (field, value) in fields {
        let Some(value) = value else { continue };
        let current = field.current(item);
        if settings.preserve_plex_edits && (!current.is_empty() || value.is_empty()) {
            // Never overwrite a Plex value, never clear one.
            continue;
        }
        let locked = item.locked.contains(field.plex_name());
        if value != current || !locked {
            pairs.push((format!("{}.value", field.plex_name()), value.clone()));
            pairs.push((format!("{}.locked", field.plex_name()), "1".to_string()));
            plan.changed.push(field);
        }
    }
    if !pairs.is_empty() {
        plan.query.push(("type".into(), plex_type.to_string()));
        plan.query.push(("id".into(), rating_key.to_string()));
        plan.query.extend(pairs);
    }
    plan
}

/// Multi-line text (the summary): control characters dropped except line
/// breaks and tabs, `\r\n` and lone `\r` turned into `\n`, trimmed, capped at
/// `max_chars` characters. Paragraphs stay paragraphs.
pub fn sanitize_text(s: &str, max_chars: usize) -> String {
    clean(s, max_chars, true)
}

/// One-line text (title, studio): as [`sanitize_text`], but line breaks and
/// tabs become spaces.
pub fn sanitize_line(s: &str, max_chars: usize) -> String {
    clean(s, max_chars, false)
}

fn clean(s: &str, max_chars: usize, multiline: bool) -> String {
    let unified = s.replace("\r\n", "\n").replace('\r', "\n");
    let kept: String = unified
        .chars()
        .filter_map(|c| match c {
            '\n' | '\t' if multiline => Some(c),
            '\n' | '\t' => Some(' '),
            // Byte order mark and zero-width space: invisible debris.
            '\u{feff}' | '\u{200b}' => None,
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    truncate_chars(kept.trim(), max_chars).trim_end().to_string()
}

/// A Stash date as Plex wants it: `YYYY-MM-DD` as is, `YYYY-MM` → the 1st of
/// the month, `YYYY` → January 1st, empty → `""` (clear). `None` = invalid.
pub fn normalise_date(raw: &str) -> Option<String> {
    let s = raw.trim();
    if s.is_empty() {
        return Some(String::new());
    }
    let parts: Vec<&str> = s.split('-').collect();
    let number = |p: &str, len: usize| -> Option<u32> {
        if p.len() == len && p.bytes().all(|b| b.is_ascii_digit()) { p.parse().ok() } else { None }
    };
    let (year, month, day) = match parts.as_slice() {
        [y] => (number(y, 4)?, 1, 1),
        [y, m] => (number(y, 4)?, number(m, 2)?, 1),
        [y, m, d] => (number(y, 4)?, number(m, 2)?, number(d, 2)?),
        _ => return None,
    };
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > crate::calendar::days_in_month(year, month) {
        return None;
    }
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Studio;

    fn scene() -> Scene {
        Scene {
            id: "7".into(),
            title: Some("My Scene".into()),
            details: Some("First paragraph.\n\nSecond.".into()),
            date: Some("2024-01-15".into()),
            studio: Some(Studio { id: "1".into(), name: "Studio X".into(), parent_name: None }),
            ..Scene::default()
        }
    }

    fn item_matching(scene: &Scene, locked: &[&str]) -> PlexItem {
        PlexItem {
            rating_key: "108".into(),
            title: scene.title.clone(),
            summary: scene.details.clone(),
            studio: scene.studio.as_ref().map(|s| s.name.clone()),
            originally_available_at: scene.date.clone(),
            locked: locked.iter().map(|s| s.to_string()).collect(),
            ..PlexItem::default()
        }
    }

    const ALL: [&str; 4] = ["title", "summary", "originallyAvailableAt", "studio"];

    fn value<'a>(plan: &'a EditPlan, key: &str) -> Option<&'a str> {
        plan.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn equal_and_locked_needs_no_put() {
        let s = scene();
        let plan = plan(&s, &item_matching(&s, &ALL), &Settings::default(), 1, "108");
        assert!(plan.is_empty());
        assert!(plan.query.is_empty());
    }

    #[test]
    fn equal_but_unlocked_is_written_with_a_lock() {
        let s = scene();
        let p = plan(&s, &item_matching(&s, &["title", "summary", "studio"]), &Settings::default(), 1, "108");
        assert_eq!(p.changed, vec![Field::OriginallyAvailableAt]);
        assert_eq!(
            p.query,
            vec![
                ("type".to_string(), "1".to_string()),
                ("id".to_string(), "108".to_string()),
                ("originallyAvailableAt.value".to_string(), "2024-01-15".to_string()),
                ("originallyAvailableAt.locked".to_string(), "1".to_string()),
            ]
        );
    }

    #[test]
    fn first_sync_writes_every_field_in_one_query() {
        let s = scene();
        let p = plan(&s, &PlexItem::default(), &Settings::default(), 4, "55");
        assert_eq!(p.changed_names(), ALL.to_vec());
        assert_eq!(value(&p, "type"), Some("4"));
        assert_eq!(value(&p, "id"), Some("55"));
        assert_eq!(value(&p, "title.value"), Some("My Scene"));
        assert_eq!(value(&p, "summary.value"), Some("First paragraph.\n\nSecond."));
        assert_eq!(value(&p, "studio.value"), Some("Studio X"));
        for f in ALL {
            assert_eq!(value(&p, &format!("{f}.locked")), Some("1"), "{f}");
        }
        assert_eq!(p.query.len(), 2 + 2 * 4);
    }

    #[test]
    fn empty_stash_values_clear_but_title_is_never_cleared() {
        let s = Scene { id: "7".into(), title: Some("   ".into()), ..Scene::default() };
        let item = PlexItem {
            title: Some("Plex Title".into()),
            summary: Some("old".into()),
            studio: Some("Old Studio".into()),
            originally_available_at: Some("2001-01-01".into()),
            ..PlexItem::default()
        };
        let p = plan(&s, &item, &Settings::default(), 1, "1");
        assert_eq!(value(&p, "title.value"), None);
        assert_eq!(value(&p, "title.locked"), None);
        assert_eq!(value(&p, "summary.value"), Some(""));
        assert_eq!(value(&p, "studio.value"), Some(""));
        assert_eq!(value(&p, "originallyAvailableAt.value"), Some(""));
    }

    #[test]
    fn preserve_mode_never_overwrites_or_clears() {
        let settings = Settings { preserve_plex_edits: true, ..Settings::default() };
        let s = Scene {
            id: "7".into(),
            title: Some("Stash Title".into()),
            details: Some("Stash summary".into()),
            ..Scene::default()
        };
        let item = PlexItem {
            title: Some("Plex Title".into()),
            summary: None,
            studio: Some("Plex Studio".into()),
            ..PlexItem::default()
        };
        let p = plan(&s, &item, &settings, 1, "1");
        // Only the empty Plex summary is filled; the empty Stash studio and
        // date do not clear anything.
        assert_eq!(p.changed, vec![Field::Summary]);
        assert_eq!(value(&p, "summary.value"), Some("Stash summary"));
    }

    #[test]
    fn toggles_and_master_switch() {
        let s = scene();
        let off = Settings { sync_summary: false, sync_studio: false, sync_date: false, ..Settings::default() };
        let p = plan(&s, &PlexItem::default(), &off, 1, "1");
        assert_eq!(p.changed, vec![Field::Title]);
        let master_off = Settings { sync_master: false, ..Settings::default() };
        assert!(plan(&s, &PlexItem::default(), &master_off, 1, "1").is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(normalise_date("2024-01-15").as_deref(), Some("2024-01-15"));
        assert_eq!(normalise_date(" 2024-02 ").as_deref(), Some("2024-02-01"));
        assert_eq!(normalise_date("1999").as_deref(), Some("1999-01-01"));
        assert_eq!(normalise_date("").as_deref(), Some(""));
        assert_eq!(normalise_date("2024-02-29").as_deref(), Some("2024-02-29"));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "24-01-01",
            "2024/01/01",
            "2024-1-5",
            "0000",
            "2024-01-15T00:00",
            "tomorrow",
            "2024-04-31",
        ] {
            assert_eq!(normalise_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn invalid_date_is_not_written_and_warned() {
        let mut s = scene();
        s.date = Some("15/01/2024".into());
        let item = PlexItem { originally_available_at: Some("2000-01-01".into()), ..PlexItem::default() };
        let p = plan(&s, &item, &Settings::default(), 1, "1");
        assert!(!p.changed.contains(&Field::OriginallyAvailableAt));
        assert_eq!(value(&p, "originallyAvailableAt.locked"), None);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("15/01/2024"));
        // Partial dates compare as the normalised form.
        let mut s = scene();
        s.date = Some("2024-03".into());
        let item = PlexItem {
            originally_available_at: Some("2024-03-01".into()),
            locked: ["originallyAvailableAt".to_string()].into(),
            ..PlexItem::default()
        };
        let p = plan(&s, &item, &Settings::default(), 1, "1");
        assert!(!p.changed.contains(&Field::OriginallyAvailableAt));
    }

    #[test]
    fn sanitising_keeps_paragraphs() {
        assert_eq!(
            sanitize_text("  One\r\ntwo\rthree\u{0}\u{7}\tfour\n\nfive  ", 100),
            "One\ntwo\nthree\tfour\n\nfive"
        );
        assert_eq!(sanitize_line("A\nB\tC\u{1b}D\u{feff}", 100), "A B CD");
    }

    #[test]
    fn truncation_on_a_char_boundary() {
        let long: String = "é".repeat(300);
        let t = sanitize_line(&long, TITLE_MAX_CHARS);
        assert_eq!(t.chars().count(), 255);
        assert_eq!(t.len(), 510);
        let mixed: String = "日本語 ".repeat(4000);
        let summary = sanitize_text(&mixed, SUMMARY_MAX_CHARS);
        assert!(summary.chars().count() <= SUMMARY_MAX_CHARS);
        assert!(summary.chars().count() >= SUMMARY_MAX_CHARS - 1);
        assert!(summary.starts_with("日本語"));
        // Through plan(): the written title is the capped one.
        let s = Scene { id: "1".into(), title: Some("🎬".repeat(400)), ..Scene::default() };
        let p = plan(&s, &PlexItem::default(), &Settings::default(), 1, "1");
        assert_eq!(value(&p, "title.value").map(|v| v.chars().count()), Some(255));
    }

    #[test]
    fn plex_summary_with_newlines_equals_stash_text() {
        let s = scene();
        let mut item = item_matching(&s, &ALL);
        item.summary = Some("First paragraph.\n\nSecond.".into());
        assert!(plan(&s, &item, &Settings::default(), 1, "108").is_empty());
    }
}
