//! What a scene should look like in Plex: every field the settings turn on,
//! computed from the Stash scene as a whole, before anything is compared.
//!
//! | Plex field | from Stash | setting | on an episode |
//! |---|---|---|---|
//! | `title` | title (never cleared) | `sync_title` | yes |
//! | `titleSort` | title, or `date title` | `sync_sort_title` | yes |
//! | `summary` | details, paragraphs kept | `sync_summary` | yes |
//! | `tagline` | studio code | `sync_tagline` | no: Plex keeps it on the show |
//! | `originallyAvailableAt` | date (`YYYY` → `YYYY-01-01`, `YYYY-MM` → `YYYY-MM-01`) | `sync_date` | yes |
//! | `studio` | studio (optionally `Parent / Studio`) | `sync_studio`, `studio_with_parent` | no: on the show |
//! | `contentRating` | the setting's value | `content_rating` | yes |
//! | user rating | rating100 / 10 | `sync_rating` | yes |
//! | actors (`actor`) | performers | `sync_performers` | no: on the show |
//! | genres (`genre`) | tags, at most `max_tags` | `sync_tags` | no: on the show |
//! | collections | studio, groups | `sync_collection`, `sync_group_collections` | yes |
//! | labels | the setting's labels | `plex_labels` | yes |
//! | poster (`thumb`) | screenshot | `sync_poster` | yes |
//! | background (`art`) | screenshot (never the preview video) | `sync_background` | yes |

use crate::host::Scene;
use crate::sanitize::{self, LINE_MAX_CHARS, SUMMARY_MAX_CHARS};
use crate::settings::{Settings, SortTitle};
use crate::text::clip;

/// Actors written per item (the original plugin's limit).
pub const MAX_PERFORMERS: usize = 50;
/// Collections written per item.
pub const MAX_COLLECTIONS: usize = 20;
/// Labels written per item.
pub const MAX_LABELS: usize = 20;

/// A one-value Plex field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scalar {
    Title,
    TitleSort,
    Summary,
    Tagline,
    OriginallyAvailableAt,
    Studio,
    ContentRating,
}

impl Scalar {
    /// The edit and lock name.
    pub fn plex_name(self) -> &'static str {
        match self {
            Scalar::Title => "title",
            Scalar::TitleSort => "titleSort",
            Scalar::Summary => "summary",
            Scalar::Tagline => "tagline",
            Scalar::OriginallyAvailableAt => "originallyAvailableAt",
            Scalar::Studio => "studio",
            Scalar::ContentRating => "contentRating",
        }
    }
}

/// A Plex tag list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListKind {
    Actor,
    Genre,
    Collection,
    Label,
}

impl ListKind {
    /// The edit and lock name (`actor[0].tag.tag`, `actor.locked`).
    pub fn plex_name(self) -> &'static str {
        match self {
            ListKind::Actor => "actor",
            ListKind::Genre => "genre",
            ListKind::Collection => "collection",
            ListKind::Label => "label",
        }
    }
}

/// An image slot of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Poster,
    Background,
}

impl ImageKind {
    /// The upload collection (`/library/metadata/{rk}/posters`).
    pub fn collection(self) -> &'static str {
        match self {
            ImageKind::Poster => "posters",
            ImageKind::Background => "arts",
        }
    }

    /// The select endpoint (`/library/metadata/{rk}/poster?url=`).
    pub fn select(self) -> &'static str {
        match self {
            ImageKind::Poster => "poster",
            ImageKind::Background => "art",
        }
    }

    /// The lock name.
    pub fn field(self) -> &'static str {
        match self {
            ImageKind::Poster => "thumb",
            ImageKind::Background => "art",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Poster => "poster",
            ImageKind::Background => "background",
        }
    }
}

/// Movie (1) or episode (4): episodes have no studio, tagline, genres or
/// actors of their own in Plex (the show holds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Movie,
    Episode,
}

impl ItemKind {
    pub fn plex_type(self) -> u8 {
        match self {
            ItemKind::Movie => 1,
            ItemKind::Episode => 4,
        }
    }

    /// Whether Plex keeps this scalar on the item itself.
    pub fn has_scalar(self, s: Scalar) -> bool {
        self == ItemKind::Movie || !matches!(s, Scalar::Studio | Scalar::Tagline)
    }

    /// Whether Plex keeps this list on the item itself.
    pub fn has_list(self, l: ListKind) -> bool {
        self == ItemKind::Movie || !matches!(l, ListKind::Actor | ListKind::Genre)
    }
}

/// The wanted user rating: `None` = clear it.
pub type Rating = Option<f64>;

/// The scene's wanted Plex state. `None` for a field = leave it alone;
/// `Some("")` or an empty list = clear it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    pub scalars: Vec<(Scalar, String)>,
    pub lists: Vec<(ListKind, Vec<String>)>,
    pub rating: Option<Rating>,
    /// The Stash image URL for each enabled image slot.
    pub images: Vec<(ImageKind, String)>,
    /// Whether the scene carries meaningful metadata (studio, performers,
    /// tags, details or date); without it nothing in Plex is cleared or
    /// removed (Stash fires hooks before identification fills a scene in).
    pub meaningful: bool,
    /// Values that could not be used, for the log.
    pub warnings: Vec<String>,
}

#[cfg(test)]
impl Desired {
    pub fn scalar(&self, s: Scalar) -> Option<&str> {
        self.scalars.iter().find(|(k, _)| *k == s).map(|(_, v)| v.as_str())
    }

    pub fn list(&self, l: ListKind) -> Option<&[String]> {
        self.lists.iter().find(|(k, _)| *k == l).map(|(_, v)| v.as_slice())
    }
}

/// Whether the scene has anything worth writing beyond a title.
pub fn has_meaningful_metadata(scene: &Scene) -> bool {
    let text = |s: &Option<String>| s.as_deref().is_some_and(|t| !t.trim().is_empty());
    scene.studio.as_ref().is_some_and(|s| !s.name.trim().is_empty())
        || scene.performers.iter().any(|p| !p.name.trim().is_empty())
        || scene.tags.iter().any(|t| !t.name.trim().is_empty())
        || text(&scene.details)
        || text(&scene.date)
}

/// The studio name as written (`Parent / Studio` with `studio_with_parent`).
pub fn studio_name(scene: &Scene, with_parent: bool) -> String {
    let Some(studio) = &scene.studio else { return String::new() };
    let name = sanitize::line(&studio.name, LINE_MAX_CHARS);
    match studio.parent_name.as_deref().map(|p| sanitize::line(p, LINE_MAX_CHARS)) {
        Some(parent) if with_parent && !parent.is_empty() && !name.is_empty() => {
            sanitize::line(&format!("{parent} / {name}"), LINE_MAX_CHARS)
        }
        _ => name,
    }
}

/// The desired state of `scene` for an item of `kind`.
pub fn desired(scene: &Scene, settings: &Settings, kind: ItemKind) -> Desired {
    let mut d = Desired { meaningful: has_meaningful_metadata(scene), ..Desired::default() };
    if !settings.sync_master {
        return d;
    }
    let title = sanitize::line(scene.title.as_deref().unwrap_or(""), LINE_MAX_CHARS);
    let date = match normalise_date(scene.date.as_deref().unwrap_or("")) {
        Some(date) => Some(date),
        None => {
            d.warnings.push(format!(
                "date {:?} is not YYYY, YYYY-MM or YYYY-MM-DD; the Plex date is left as it is",
                clip(scene.date.as_deref().unwrap_or(""), 40)
            ));
            None
        }
    };
    let mut scalars: Vec<(Scalar, String)> = Vec::new();
    // The title is never cleared: Plex's file-name title beats none.
    if settings.sync_title && !title.is_empty() {
        scalars.push((Scalar::Title, title.clone()));
    }
    match settings.sort_title {
        SortTitle::Title if !title.is_empty() => scalars.push((Scalar::TitleSort, title.clone())),
        SortTitle::Date if !title.is_empty() => {
            let sort = match date.as_deref() {
                Some(day) if !day.is_empty() => format!("{day} {title}"),
                _ => title.clone(),
            };
            scalars.push((Scalar::TitleSort, sanitize::line(&sort, LINE_MAX_CHARS)));
        }
        _ => {}
    }
    if settings.sync_summary {
        scalars.push((Scalar::Summary, sanitize::text(scene.details.as_deref().unwrap_or(""), SUMMARY_MAX_CHARS)));
    }
    if settings.sync_tagline {
        scalars.push((Scalar::Tagline, sanitize::line(scene.code.as_deref().unwrap_or(""), LINE_MAX_CHARS)));
    }
    if settings.sync_date
        && let Some(date) = date
    {
        scalars.push((Scalar::OriginallyAvailableAt, date));
    }
    if settings.sync_studio {
        scalars.push((Scalar::Studio, studio_name(scene, settings.studio_with_parent)));
    }
    if !settings.content_rating.is_empty() {
        scalars.push((Scalar::ContentRating, settings.content_rating.clone()));
    }
    d.scalars = scalars.into_iter().filter(|(s, _)| kind.has_scalar(*s)).collect();

    let mut lists: Vec<(ListKind, Vec<String>)> = Vec::new();
    if settings.sync_performers {
        let names = scene.performers.iter().map(|p| p.name.clone());
        let all = sanitize::dedup_names(names, LINE_MAX_CHARS, usize::MAX);
        if all.len() > MAX_PERFORMERS {
            d.warnings.push(format!("{} performers; the first {MAX_PERFORMERS} are written", all.len()));
        }
        lists.push((ListKind::Actor, all.into_iter().take(MAX_PERFORMERS).collect()));
    }
    let mut tag_labels = Vec::new();
    if settings.sync_tags {
        let cap = settings.max_tags as usize;
        let all = sanitize::dedup_names(scene.tags.iter().map(|t| t.name.clone()), LINE_MAX_CHARS, usize::MAX);
        let kind = if settings.tags_as_labels { "labels" } else { "genres" };
        if all.len() > cap {
            d.warnings.push(format!("{} tags; the first {cap} are written as {kind} (max_tags)", all.len()));
        }
        if settings.tags_as_labels {
            tag_labels = all.into_iter().take(cap).collect();
        } else {
            lists.push((ListKind::Genre, all.into_iter().take(cap).collect()));
        }
    }
    if settings.sync_collection || settings.sync_group_collections {
        let mut names = Vec::new();
        if settings.sync_collection {
            names.push(studio_name(scene, false));
        }
        if settings.sync_group_collections {
            names.extend(scene.groups.iter().map(|g| g.name.clone()));
        }
        lists.push((ListKind::Collection, sanitize::dedup_names(names, LINE_MAX_CHARS, MAX_COLLECTIONS)));
    }
    if settings.tags_as_labels && settings.sync_tags {
        // Labels exist on episodes too, and Plex's sharing restrictions
        // filter by label: the tags, then the fixed labels.
        let names = tag_labels.into_iter().chain(settings.plex_labels.iter().cloned());
        let cap = settings.max_tags as usize + MAX_LABELS;
        lists.push((ListKind::Label, sanitize::dedup_names(names, LINE_MAX_CHARS, cap)));
    } else if !settings.plex_labels.is_empty() {
        lists.push((ListKind::Label, settings.plex_labels.iter().take(MAX_LABELS).cloned().collect()));
    }
    d.lists = lists.into_iter().filter(|(l, _)| kind.has_list(*l)).collect();

    if settings.sync_rating {
        d.rating = Some(scene.rating100.map(|r| f64::from(r.min(100)) / 10.0));
    }
    if let Some(url) = scene.screenshot_url.as_deref().filter(|u| !u.is_empty()) {
        if settings.sync_poster {
            d.images.push((ImageKind::Poster, url.to_string()));
        }
        if settings.sync_background {
            d.images.push((ImageKind::Background, url.to_string()));
        }
    }
    d
}

#[cfg(test)]
mod flavor_tests {
    use super::*;
    use crate::host::Tag;

    #[test]
    fn the_tags_as_labels_flavour_writes_tags_as_labels_on_movies_and_episodes() {
        let mut scene = crate::test_support::scene("1", "A", "/media/a.mp4");
        scene.tags =
            vec![Tag { id: "1".into(), name: "Outdoor".into() }, Tag { id: "2".into(), name: "outdoor".into() }];
        let settings = Settings { tags_as_labels: true, plex_labels: vec!["Stash".into()], ..Settings::default() };
        for kind in [ItemKind::Movie, ItemKind::Episode] {
            let d = desired(&scene, &settings, kind);
            let labels = d.lists.iter().find(|(k, _)| *k == ListKind::Label).map(|(_, v)| v.clone());
            assert_eq!(labels, Some(vec!["Outdoor".to_string(), "Stash".to_string()]), "{kind:?}");
            assert!(d.lists.iter().all(|(k, _)| *k != ListKind::Genre), "no genres: {:?}", d.lists);
        }
        let d = desired(&scene, &Settings::default(), ItemKind::Movie);
        assert!(d.lists.iter().any(|(k, v)| *k == ListKind::Genre && v == &["Outdoor"]), "{:?}", d.lists);
        assert!(d.lists.iter().all(|(k, _)| *k != ListKind::Label), "{:?}", d.lists);
    }
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
    use crate::host::{Group, Performer, Studio, Tag};

    fn performer(name: &str) -> Performer {
        Performer { id: name.into(), name: name.into(), disambiguation: None, gender: None, image_url: None }
    }

    pub fn full_scene() -> Scene {
        Scene {
            id: "7".into(),
            title: Some("My Scene".into()),
            code: Some("ABC-123".into()),
            details: Some("First paragraph.\n\nSecond.".into()),
            date: Some("2024-03".into()),
            rating100: Some(85),
            studio: Some(Studio { id: "1".into(), name: "Studio X".into(), parent_name: Some("Network".into()) }),
            performers: vec![performer("Jane Doe"), performer("jane doe"), performer("John")],
            tags: vec![
                Tag { id: "1".into(), name: "Drama".into() },
                Tag { id: "2".into(), name: "Sci-Fi & Fantasy".into() },
            ],
            groups: vec![Group { id: "3".into(), name: "Series A".into(), scene_index: Some(1) }],
            screenshot_url: Some("http://stash/scene/7/screenshot?t=1".into()),
            ..Scene::default()
        }
    }

    #[test]
    fn every_field_from_a_full_scene() {
        let s = Settings {
            sync_rating: true,
            content_rating: "X".into(),
            plex_labels: vec!["Stash".into()],
            ..Settings::default()
        };
        let d = desired(&full_scene(), &s, ItemKind::Movie);
        assert!(d.meaningful);
        assert_eq!(d.scalar(Scalar::Title), Some("My Scene"));
        assert_eq!(d.scalar(Scalar::TitleSort), Some("My Scene"));
        assert_eq!(d.scalar(Scalar::Summary), Some("First paragraph.\n\nSecond."));
        assert_eq!(d.scalar(Scalar::Tagline), Some("ABC-123"));
        assert_eq!(d.scalar(Scalar::OriginallyAvailableAt), Some("2024-03-01"));
        assert_eq!(d.scalar(Scalar::Studio), Some("Studio X"));
        assert_eq!(d.scalar(Scalar::ContentRating), Some("X"));
        assert_eq!(d.list(ListKind::Actor), Some(&["Jane Doe".to_string(), "John".to_string()][..]));
        assert_eq!(d.list(ListKind::Genre).map(<[String]>::len), Some(2));
        assert_eq!(d.list(ListKind::Collection), Some(&["Studio X".to_string(), "Series A".to_string()][..]));
        assert_eq!(d.list(ListKind::Label), Some(&["Stash".to_string()][..]));
        assert_eq!(d.rating, Some(Some(8.5)));
        assert_eq!(d.images.len(), 2);
        assert!(d.images.iter().all(|(_, u)| u.contains("/screenshot")));
    }

    #[test]
    fn each_setting_turns_its_field_off() {
        let scene = full_scene();
        let all = desired(&scene, &Settings::default(), ItemKind::Movie);
        let cases: Vec<(Settings, &str)> = vec![
            (Settings { sync_title: false, ..Settings::default() }, "title"),
            (Settings { sort_title: SortTitle::Off, ..Settings::default() }, "titleSort"),
            (Settings { sync_summary: false, ..Settings::default() }, "summary"),
            (Settings { sync_tagline: false, ..Settings::default() }, "tagline"),
            (Settings { sync_date: false, ..Settings::default() }, "originallyAvailableAt"),
            (Settings { sync_studio: false, ..Settings::default() }, "studio"),
        ];
        for (s, field) in cases {
            let d = desired(&scene, &s, ItemKind::Movie);
            assert!(all.scalars.iter().any(|(k, _)| k.plex_name() == field));
            assert!(!d.scalars.iter().any(|(k, _)| k.plex_name() == field), "{field}");
            assert_eq!(d.scalars.len(), all.scalars.len() - 1, "{field}");
        }
        let no = |s: Settings, l: ListKind| desired(&scene, &s, ItemKind::Movie).list(l).is_none();
        assert!(no(Settings { sync_performers: false, ..Settings::default() }, ListKind::Actor));
        assert!(no(Settings { sync_tags: false, ..Settings::default() }, ListKind::Genre));
        assert!(no(
            Settings { sync_collection: false, sync_group_collections: false, ..Settings::default() },
            ListKind::Collection
        ));
        let only_groups = Settings { sync_collection: false, ..Settings::default() };
        assert_eq!(
            desired(&scene, &only_groups, ItemKind::Movie).list(ListKind::Collection),
            Some(&["Series A".to_string()][..])
        );
        assert!(desired(&scene, &Settings::default(), ItemKind::Movie).rating.is_none());
        let posters_only = Settings { sync_background: false, ..Settings::default() };
        assert_eq!(desired(&scene, &posters_only, ItemKind::Movie).images.len(), 1);
        let off = Settings { sync_master: false, ..Settings::default() };
        let d = desired(&scene, &off, ItemKind::Movie);
        assert!(d.scalars.is_empty() && d.lists.is_empty() && d.images.is_empty() && d.rating.is_none());
    }

    #[test]
    fn studio_parent_sort_by_date_and_max_tags() {
        let mut scene = full_scene();
        let s = Settings { studio_with_parent: true, sort_title: SortTitle::Date, ..Settings::default() };
        let d = desired(&scene, &s, ItemKind::Movie);
        assert_eq!(d.scalar(Scalar::Studio), Some("Network / Studio X"));
        assert_eq!(d.scalar(Scalar::TitleSort), Some("2024-03-01 My Scene"));
        // The collection is the studio itself, not the parent path.
        assert_eq!(d.list(ListKind::Collection).and_then(|l| l.first()).map(String::as_str), Some("Studio X"));
        scene.tags = (0..30).map(|i| Tag { id: i.to_string(), name: format!("t{i}") }).collect();
        let d = desired(&scene, &Settings { max_tags: 10, ..Settings::default() }, ItemKind::Movie);
        assert_eq!(d.list(ListKind::Genre).map(<[String]>::len), Some(10));
        assert_eq!(d.list(ListKind::Genre).and_then(|l| l.first()).map(String::as_str), Some("t0"));
        assert!(d.warnings.iter().any(|w| w.contains("max_tags")));
    }

    #[test]
    fn episodes_leave_show_fields_alone() {
        let d = desired(&full_scene(), &Settings::default(), ItemKind::Episode);
        assert!(d.scalar(Scalar::Studio).is_none() && d.scalar(Scalar::Tagline).is_none());
        assert!(d.list(ListKind::Actor).is_none() && d.list(ListKind::Genre).is_none());
        assert!(d.scalar(Scalar::Title).is_some() && d.list(ListKind::Collection).is_some());
        assert_eq!(d.images.len(), 2);
    }

    #[test]
    fn a_scene_with_no_metadata_is_not_meaningful() {
        let bare = Scene { id: "1".into(), title: Some("file name".into()), rating100: Some(50), ..Scene::default() };
        let d = desired(&bare, &Settings::default(), ItemKind::Movie);
        assert!(!d.meaningful);
        let mut dated = bare.clone();
        dated.date = Some("2020".into());
        assert!(has_meaningful_metadata(&dated));
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
        let mut s = full_scene();
        s.date = Some("15/01/2024".into());
        let d = desired(&s, &Settings::default(), ItemKind::Movie);
        assert!(d.scalar(Scalar::OriginallyAvailableAt).is_none());
        assert!(d.warnings.iter().any(|w| w.contains("15/01/2024")));
    }
}
