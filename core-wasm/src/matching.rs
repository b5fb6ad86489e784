//! Matching a Stash file path to a Plex item.
//!
//! 1. The section: the movie or show section whose `Location.path` is the
//!    longest prefix of the file path on a path-segment boundary, among the
//!    sections `plex_library` allows.
//! 2. The item: exact, case-sensitive equality of the path with a
//!    `Media[].Part[].file` of the section's listing. The [`PathIndex`] pages
//!    through the listing lazily and remembers how far it got, so a miss
//!    continues where the previous one stopped; only a fully listed section
//!    says "not in Plex".

use std::collections::HashMap;

use crate::host::PlexRequest;
use crate::plex_json::{ListingPage, SectionInfo};

/// Items per listing page (`X-Plex-Container-Size`).
pub const PAGE_SIZE: u64 = 200;

/// How long a fully listed section is trusted to say "not in Plex". After
/// that, a miss lists the section again (new files may have been scanned).
pub const INDEX_TRUST_MS: i64 = 5 * 60 * 1000;

/// The library types the policy can edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Movie,
    Show,
}

impl SectionKind {
    pub fn from_plex(kind: &str) -> Option<Self> {
        match kind {
            "movie" => Some(SectionKind::Movie),
            "show" => Some(SectionKind::Show),
            _ => None,
        }
    }

    /// The metadata `type` of the items to list and edit: movies (1) in a
    /// movie section, episodes (4) in a show section.
    pub fn plex_type(self) -> u8 {
        match self {
            SectionKind::Movie => 1,
            SectionKind::Show => 4,
        }
    }
}

/// A library section the policy may write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub key: String,
    pub title: String,
    pub kind: SectionKind,
    /// Folder paths without trailing separators; `""` is the root `/`.
    pub locations: Vec<String>,
}

/// The usable sections, and the configured names that matched none of them.
pub fn build_sections(infos: &[SectionInfo], wanted: &[String]) -> (Vec<Section>, Vec<String>) {
    let mut sections = Vec::new();
    for info in infos {
        let Some(kind) = SectionKind::from_plex(&info.kind) else {
            continue;
        };
        if !is_safe_key(&info.key) {
            continue;
        }
        if !wanted.is_empty() && !wanted.contains(&info.title.trim().to_lowercase()) {
            continue;
        }
        let locations = info.locations.iter().filter_map(|l| normalise_location(l)).collect();
        sections.push(Section { key: info.key.clone(), title: info.title.clone(), kind, locations });
    }
    let missing =
        wanted.iter().filter(|w| !sections.iter().any(|s| s.title.trim().to_lowercase() == **w)).cloned().collect();
    (sections, missing)
}

/// Section keys and ratingKeys go into request paths: accept only the plain
/// tokens Plex uses.
pub fn is_safe_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_separator(c: char) -> bool {
    c == '/' || c == '\\'
}

/// Trailing separators removed; the root (`/`) becomes `""`; an empty
/// location is dropped.
fn normalise_location(location: &str) -> Option<String> {
    if location.is_empty() {
        return None;
    }
    Some(location.trim_end_matches(is_separator).to_string())
}

/// Whether `path` lies inside the folder `location` (normalised).
fn folder_contains(location: &str, path: &str) -> bool {
    match path.strip_prefix(location) {
        Some(rest) => rest.starts_with(is_separator) && !rest.trim_start_matches(is_separator).is_empty(),
        None => false,
    }
}

/// The section whose location is the longest folder prefix of `path`.
/// Ties keep the first section in Plex's order.
pub fn pick_section<'a>(sections: &'a [Section], path: &str) -> Option<&'a Section> {
    let mut best: Option<(&Section, usize)> = None;
    for section in sections {
        for location in &section.locations {
            if folder_contains(location, path) && best.is_none_or(|(_, len)| location.len() > len) {
                best = Some((section, location.len()));
            }
        }
    }
    best.map(|(s, _)| s)
}

/// The listing request for one page of a section.
pub fn listing_request(section: &Section, start: u64) -> PlexRequest {
    let mut request = PlexRequest::get(format!("/library/sections/{}/all", section.key));
    request.query.push(("type".into(), section.kind.plex_type().to_string()));
    request.headers = vec![
        ("X-Plex-Container-Start".into(), start.to_string()),
        ("X-Plex-Container-Size".into(), PAGE_SIZE.to_string()),
    ];
    request
}

/// What the index knows about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one item has a part with this path.
    Found(String),
    /// Several items do; ratingKeys sorted, lowest first.
    Ambiguous(Vec<String>),
    /// The section was listed completely and no part has this path.
    NotInPlex,
    /// The page budget ran out before the listing was complete.
    Unfinished { listed: u64, total: Option<u64> },
}

#[derive(Debug, Default)]
struct SectionIndex {
    next_start: u64,
    total: Option<u64>,
    complete: bool,
    completed_at_ms: i64,
    by_path: HashMap<String, Vec<String>>,
}

impl SectionIndex {
    fn hit(&self, path: &str) -> Option<Resolution> {
        let keys = self.by_path.get(path)?;
        match keys.as_slice() {
            [] => None,
            [one] => Some(Resolution::Found(one.clone())),
            many => {
                let mut sorted = many.to_vec();
                sorted.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
                Some(Resolution::Ambiguous(sorted))
            }
        }
    }

    fn add_page(&mut self, start: u64, page: &ListingPage, now_ms: i64) {
        for item in &page.items {
            if !is_safe_key(&item.rating_key) {
                continue;
            }
            for file in &item.files {
                let keys = self.by_path.entry(file.clone()).or_default();
                if !keys.contains(&item.rating_key) {
                    keys.push(item.rating_key.clone());
                }
            }
        }
        let received = page.items.len() as u64;
        self.next_start = start.saturating_add(received);
        if page.total_size.is_some() {
            self.total = page.total_size;
        }
        let done = match page.total_size {
            _ if received == 0 => true,
            // The server ignored paging and sent everything.
            _ if received > PAGE_SIZE => true,
            Some(total) => self.next_start >= total,
            None => received < PAGE_SIZE,
        };
        if done {
            self.complete = true;
            self.completed_at_ms = now_ms;
        }
    }
}

/// path → ratingKey, per section, built from paged listings.
#[derive(Debug, Default)]
pub struct PathIndex {
    sections: HashMap<String, SectionIndex>,
}

impl PathIndex {
    /// Look `path` up in `section`, listing further pages through `fetch`
    /// (at most `max_pages` in this call) until it is found or the section is
    /// fully listed. An error from `fetch` leaves what was already listed in
    /// place, so the next call continues from there.
    pub fn resolve<E>(
        &mut self,
        section: &Section,
        path: &str,
        now_ms: i64,
        max_pages: u32,
        mut fetch: impl FnMut(&PlexRequest) -> Result<ListingPage, E>,
    ) -> Result<Resolution, E> {
        let index = self.sections.entry(section.key.clone()).or_default();
        if let Some(hit) = index.hit(path) {
            return Ok(hit);
        }
        if index.complete {
            if now_ms.saturating_sub(index.completed_at_ms) < INDEX_TRUST_MS {
                return Ok(Resolution::NotInPlex);
            }
            // Too old to trust a miss: list again from the start.
            *index = SectionIndex::default();
        }
        for _ in 0..max_pages {
            let start = index.next_start;
            let page = fetch(&listing_request(section, start))?;
            index.add_page(start, &page, now_ms);
            if let Some(hit) = index.hit(path) {
                return Ok(hit);
            }
            if index.complete {
                return Ok(Resolution::NotInPlex);
            }
        }
        Ok(Resolution::Unfinished { listed: index.next_start, total: index.total })
    }

    /// Forget everything about a section (a cached entry proved stale): the
    /// next look-up lists it again from the start.
    pub fn invalidate(&mut self, section_key: &str) {
        self.sections.remove(section_key);
    }

    /// Number of paths indexed for a section.
    #[cfg(test)]
    pub fn len(&self, section_key: &str) -> usize {
        self.sections.get(section_key).map_or(0, |s| s.by_path.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plex_json::ListedItem;

    fn info(key: &str, kind: &str, title: &str, locations: &[&str]) -> SectionInfo {
        SectionInfo {
            key: key.into(),
            kind: kind.into(),
            title: title.into(),
            locations: locations.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn all_sections() -> Vec<SectionInfo> {
        vec![
            info("1", "movie", "Movies", &["/data/Movies/"]),
            info("2", "movie", "Old Movies", &["/data/MoviesOld"]),
            info("3", "show", "TV Shows", &["/data/TV"]),
            info("4", "artist", "Music", &["/data"]),
            info("5", "movie", "Everything", &["/data"]),
            info("6", "movie", "Nested", &["/data/Movies/Special"]),
        ]
    }

    #[test]
    fn longest_prefix_on_a_segment_boundary() {
        let (sections, missing) = build_sections(&all_sections(), &[]);
        assert!(missing.is_empty());
        // The music section is never a candidate.
        assert!(sections.iter().all(|s| s.key != "4"));
        let pick = |p: &str| pick_section(&sections, p).map(|s| s.key.clone());
        assert_eq!(pick("/data/Movies/x.mp4").as_deref(), Some("1"));
        // `/data/Movies` is not a prefix of `/data/MoviesOld/...`.
        assert_eq!(pick("/data/MoviesOld/x.mp4").as_deref(), Some("2"));
        assert_eq!(pick("/data/Movies/Special/y.mkv").as_deref(), Some("6"));
        assert_eq!(pick("/data/TV/Show/S01E01.mkv").as_deref(), Some("3"));
        assert_eq!(pick("/data/other/z.mkv").as_deref(), Some("5"));
        assert_eq!(pick("/elsewhere/z.mkv"), None);
        // A folder path itself is not a file inside it.
        assert_eq!(pick("/data/Movies/").as_deref(), Some("5"));
    }

    #[test]
    fn library_filter_is_case_insensitive_and_reports_unknown_names() {
        let wanted = vec!["movies".to_string(), "nope".to_string(), "music".to_string()];
        let (sections, missing) = build_sections(&all_sections(), &wanted);
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].title, "Movies");
        // Music exists but is not a movie/show library, so it is unusable too.
        assert_eq!(missing, vec!["nope", "music"]);
        assert_eq!(pick_section(&sections, "/data/other/z.mkv"), None);
    }

    #[test]
    fn root_and_windows_locations() {
        let infos = vec![info("1", "movie", "Root", &["/"]), info("2", "show", "Win", &["D:\\Media\\TV\\"])];
        let (sections, _) = build_sections(&infos, &[]);
        assert_eq!(pick_section(&sections, "/x.mkv").unwrap().key, "1");
        assert_eq!(pick_section(&sections, "D:\\Media\\TV\\a.mkv").unwrap().key, "2");
        assert!(pick_section(&sections, "D:\\Media\\TVx\\a.mkv").is_none());
        assert_eq!(sections[1].kind.plex_type(), 4);
    }

    #[test]
    fn unsafe_section_keys_are_dropped() {
        let infos = vec![info("1/../2", "movie", "Evil", &["/data"])];
        assert!(build_sections(&infos, &[]).0.is_empty());
    }

    fn page(start: u64, count: u64, total: u64) -> ListingPage {
        ListingPage {
            offset: Some(start),
            size: Some(count),
            total_size: Some(total),
            items: (start..start + count)
                .map(|i| ListedItem {
                    rating_key: (1000 + i).to_string(),
                    files: vec![format!("/data/Movies/{i}.mkv")],
                })
                .collect(),
        }
    }

    fn movies() -> Section {
        build_sections(&all_sections(), &[]).0.remove(0)
    }

    /// A listing of `total` items answering the page at the requested start.
    fn listing(total: u64, log: &mut Vec<u64>) -> impl FnMut(&PlexRequest) -> Result<ListingPage, String> + '_ {
        move |req| {
            let start: u64 =
                req.header_value("X-Plex-Container-Start").and_then(|s| s.parse().ok()).ok_or("no start")?;
            assert_eq!(req.header_value("X-Plex-Container-Size"), Some("200"));
            assert_eq!(req.query_value("type"), Some("1"));
            log.push(start);
            Ok(page(start, PAGE_SIZE.min(total.saturating_sub(start)), total))
        }
    }

    #[test]
    fn pages_on_and_continues_where_it_stopped() {
        let section = movies();
        let mut index = PathIndex::default();
        let mut starts = Vec::new();
        // Item 450 is on the third page.
        let r = index.resolve(&section, "/data/Movies/450.mkv", 0, 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::Found("1450".into()));
        assert_eq!(starts, vec![0, 200, 400]);
        // An already listed path costs no request.
        starts.clear();
        let r = index.resolve(&section, "/data/Movies/10.mkv", 0, 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::Found("1010".into()));
        assert!(starts.is_empty());
        // A later miss continues from page 4, not from the start.
        let r = index.resolve(&section, "/data/Movies/999.mkv", 0, 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::Found("1999".into()));
        assert_eq!(starts, vec![600, 800]);
        // Fully listed: a miss is answered without requests.
        starts.clear();
        let r = index.resolve(&section, "/data/Movies/nope.mkv", 1000, 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::NotInPlex);
        assert!(starts.is_empty());
        // ... until the listing is too old to trust.
        let r = index
            .resolve(&section, "/data/Movies/nope.mkv", INDEX_TRUST_MS + 1, 25, listing(1000, &mut starts))
            .unwrap();
        assert_eq!(r, Resolution::NotInPlex);
        assert_eq!(starts, vec![0, 200, 400, 600, 800]);
    }

    #[test]
    fn page_budget_and_errors_keep_progress() {
        let section = movies();
        let mut index = PathIndex::default();
        let mut starts = Vec::new();
        let r = index.resolve(&section, "/data/Movies/nope.mkv", 0, 2, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::Unfinished { listed: 400, total: Some(1000) });
        // A failing page does not lose the first pages.
        let err = index.resolve(&section, "/data/Movies/nope.mkv", 0, 2, |_| Err::<ListingPage, _>("boom"));
        assert_eq!(err, Err("boom"));
        starts.clear();
        let r = index.resolve(&section, "/data/Movies/nope.mkv", 0, 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::NotInPlex);
        assert_eq!(starts, vec![400, 600, 800]);
    }

    #[test]
    fn listing_without_total_ends_on_a_short_page() {
        let section = movies();
        let mut index = PathIndex::default();
        let mut calls = 0;
        let r = index
            .resolve(&section, "/x.mkv", 0, 25, |req| {
                calls += 1;
                let start: u64 = req.header_value("X-Plex-Container-Start").and_then(|s| s.parse().ok()).unwrap_or(0);
                let mut p = page(start, PAGE_SIZE.min(300 - start), 300);
                p.total_size = None;
                Ok::<_, ()>(p)
            })
            .unwrap();
        assert_eq!(r, Resolution::NotInPlex);
        assert_eq!(calls, 2);
    }

    #[test]
    fn same_path_on_two_items_is_ambiguous_lowest_first() {
        let section = movies();
        let mut index = PathIndex::default();
        let p = ListingPage {
            total_size: Some(3),
            items: vec![
                ListedItem { rating_key: "20".into(), files: vec!["/data/Movies/a.mkv".into()] },
                ListedItem { rating_key: "9".into(), files: vec!["/data/Movies/a.mkv".into()] },
                ListedItem { rating_key: "100".into(), files: vec!["/data/Movies/A.mkv".into()] },
            ],
            ..Default::default()
        };
        let r = index.resolve(&section, "/data/Movies/a.mkv", 0, 5, |_| Ok::<_, ()>(p.clone())).unwrap();
        assert_eq!(r, Resolution::Ambiguous(vec!["9".into(), "20".into()]));
        // Exact, case-sensitive: A.mkv is a different file.
        let r = index.resolve(&section, "/data/Movies/A.mkv", 0, 5, |_| Ok::<_, ()>(p.clone())).unwrap();
        assert_eq!(r, Resolution::Found("100".into()));
    }

    #[test]
    fn invalidate_lists_again() {
        let section = movies();
        let mut index = PathIndex::default();
        let mut starts = Vec::new();
        index.resolve(&section, "/data/Movies/5.mkv", 0, 25, listing(300, &mut starts)).unwrap();
        assert!(index.len("1") > 0);
        index.invalidate("1");
        assert_eq!(index.len("1"), 0);
        starts.clear();
        index.resolve(&section, "/data/Movies/5.mkv", 0, 25, listing(300, &mut starts)).unwrap();
        assert_eq!(starts, vec![0]);
    }
}
