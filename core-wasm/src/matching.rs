//! Matching a Stash file path to a Plex item.
//!
//! 1. The path as Plex sees it: `plex_path_map` (see `pathmap`).
//! 2. The section: the movie or show section whose `Location.path` is the
//!    longest prefix of the path on a folder boundary, among the sections
//!    `plex_library` allows. A section with a Windows location compares
//!    paths as a Windows Plex server does (`pathmap::path_key`).
//! 3. The item: equality of the path with a `Media[].Part[].file` of the
//!    section's listing (every part of every item). The [`PathIndex`]
//!    pages through the listing lazily and remembers how far it got, so a
//!    miss continues where the previous one stopped. It lives for a whole
//!    drain; a path it does not know after a full listing makes the caller
//!    *refresh* it with the newest items ([`refresh_request`]), never list
//!    the section again.
//! 4. Fallbacks, each verified against `Part.file`: the `file=` filter and a
//!    title search ([`filter_request`]); then, only without
//!    `strict_matching`, a unique file name in the section.

use std::collections::HashMap;

use crate::host::{PlexRequest, VideoFile};
use crate::pathmap::{PathMap, is_windows_path, path_key};
use crate::plex_json::{ListedItem, ListingPage, SectionInfo};

/// Items per listing page (`X-Plex-Container-Size`).
pub const PAGE_SIZE: u64 = 200;
/// Items per page when refreshing with the newest items.
pub const REFRESH_PAGE_SIZE: u64 = 50;
/// Pages of newest items read in one refresh.
pub const REFRESH_MAX_PAGES: u32 = 4;

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
        self.item_kind().plex_type()
    }

    pub fn item_kind(self) -> crate::desired::ItemKind {
        match self {
            SectionKind::Movie => crate::desired::ItemKind::Movie,
            SectionKind::Show => crate::desired::ItemKind::Episode,
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
    /// A Windows Plex server's library: paths compare case-insensitively,
    /// `/` = `\`, `\\?\` ignored.
    pub windows: bool,
}

impl Section {
    /// `path` in the form this section compares paths in.
    pub fn key_of(&self, path: &str) -> String {
        path_key(path, self.windows)
    }
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
        let locations: Vec<String> = info.locations.iter().filter_map(|l| normalise_location(l)).collect();
        let windows = info.locations.iter().any(|l| is_windows_path(l));
        sections.push(Section { key: info.key.clone(), title: info.title.clone(), kind, locations, windows });
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

/// Whether `path` lies inside the folder `location` (both in key form).
fn folder_contains(location: &str, path: &str) -> bool {
    match path.strip_prefix(location) {
        Some(rest) => rest.starts_with(is_separator) && !rest.trim_start_matches(is_separator).is_empty(),
        None => false,
    }
}

/// The section whose location is the longest folder prefix of `path` (as
/// Plex sees it). Ties keep the first section in Plex's order.
pub fn pick_section<'a>(sections: &'a [Section], path: &str) -> Option<&'a Section> {
    let mut best: Option<(&Section, usize)> = None;
    for section in sections {
        let key = section.key_of(path);
        for location in &section.locations {
            let loc = section.key_of(location);
            if folder_contains(&loc, &key) && best.is_none_or(|(_, len)| loc.len() > len) {
                best = Some((section, loc.len()));
            }
        }
    }
    best.map(|(s, _)| s)
}

/// A scene's files as Plex sees them (`plex_path_map`), primary first,
/// without repeats.
pub fn plex_paths(map: &PathMap, files: &[VideoFile]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in files {
        let p = map.to_plex(&f.path);
        if !p.is_empty() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
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

/// A page of the newest items of a section (`sort=addedAt:desc`).
pub fn refresh_request(section: &Section, start: u64) -> PlexRequest {
    let mut request = PlexRequest::get(format!("/library/sections/{}/all", section.key));
    request.query.push(("type".into(), section.kind.plex_type().to_string()));
    request.query.push(("sort".into(), "addedAt:desc".into()));
    request.headers = vec![
        ("X-Plex-Container-Start".into(), start.to_string()),
        ("X-Plex-Container-Size".into(), REFRESH_PAGE_SIZE.to_string()),
    ];
    request
}

/// A filtered listing: `file=<path>` or `title=<text>` (Plex matches both
/// as "contains"; the answer is verified against `Part.file`).
pub fn filter_request(section: &Section, key: &str, value: &str) -> PlexRequest {
    let mut request = PlexRequest::get(format!("/library/sections/{}/all", section.key));
    request.query.push(("type".into(), section.kind.plex_type().to_string()));
    request.query.push((key.into(), value.into()));
    request.headers = vec![
        ("X-Plex-Container-Start".into(), "0".into()),
        ("X-Plex-Container-Size".into(), REFRESH_PAGE_SIZE.to_string()),
    ];
    request
}

/// A title to search for a file: its name without the extension.
pub fn title_guess(path: &str) -> String {
    let name = file_name(path);
    match name.rfind('.') {
        Some(dot) if dot > 0 => name[..dot].to_string(),
        _ => name.to_string(),
    }
}

/// The last path component (either separator).
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
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
    /// Path key → ratingKeys.
    by_path: HashMap<String, Vec<String>>,
    /// Lower-cased file name → ratingKeys.
    by_name: HashMap<String, Vec<String>>,
    /// When the newest items were last read (refresh).
    refreshed_at_ms: Option<i64>,
}

fn push_unique(list: &mut Vec<String>, rk: &str) {
    if !list.iter().any(|k| k == rk) {
        list.push(rk.to_string());
    }
}

fn sorted_keys(keys: &[String]) -> Vec<String> {
    let mut sorted = keys.to_vec();
    sorted.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    sorted
}

impl SectionIndex {
    fn hit(&self, key: &str) -> Option<Resolution> {
        match self.by_path.get(key)?.as_slice() {
            [] => None,
            [one] => Some(Resolution::Found(one.clone())),
            many => Some(Resolution::Ambiguous(sorted_keys(many))),
        }
    }

    /// Add items; returns how many of them were new to the index.
    fn add_items(&mut self, section: &Section, items: &[ListedItem]) -> usize {
        let mut new = 0;
        for item in items {
            if !is_safe_key(&item.rating_key) {
                continue;
            }
            let mut fresh = false;
            for file in &item.files {
                let keys = self.by_path.entry(section.key_of(file)).or_default();
                if !keys.contains(&item.rating_key) {
                    keys.push(item.rating_key.clone());
                    fresh = true;
                }
                push_unique(self.by_name.entry(file_name(file).to_lowercase()).or_default(), &item.rating_key);
            }
            new += usize::from(fresh);
        }
        new
    }

    fn add_page(&mut self, section: &Section, start: u64, page: &ListingPage) {
        self.add_items(section, &page.items);
        let received = page.items.len() as u64;
        self.next_start = start.saturating_add(received);
        if page.total_size.is_some() {
            self.total = page.total_size;
        }
        self.complete = match page.total_size {
            _ if received == 0 => true,
            // The server ignored paging and sent everything.
            _ if received > PAGE_SIZE => true,
            Some(total) => self.next_start >= total,
            None => received < PAGE_SIZE,
        };
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
        max_pages: u32,
        mut fetch: impl FnMut(&PlexRequest) -> Result<ListingPage, E>,
    ) -> Result<Resolution, E> {
        let key = section.key_of(path);
        let index = self.sections.entry(section.key.clone()).or_default();
        if let Some(hit) = index.hit(&key) {
            return Ok(hit);
        }
        if index.complete {
            return Ok(Resolution::NotInPlex);
        }
        for _ in 0..max_pages {
            let start = index.next_start;
            let page = fetch(&listing_request(section, start))?;
            index.add_page(section, start, &page);
            if let Some(hit) = index.hit(&key) {
                return Ok(hit);
            }
            if index.complete {
                return Ok(Resolution::NotInPlex);
            }
        }
        Ok(Resolution::Unfinished { listed: index.next_start, total: index.total })
    }

    /// What the index says about `path` without asking Plex (`None` when it
    /// cannot say yet).
    pub fn peek(&self, section: &Section, path: &str) -> Option<Resolution> {
        let index = self.sections.get(&section.key)?;
        index.hit(&section.key_of(path)).or(index.complete.then_some(Resolution::NotInPlex))
    }

    /// Read the newest items of a fully listed section (at most
    /// [`REFRESH_MAX_PAGES`] pages, stopping at a page with nothing new),
    /// unless that was done in the last `min_interval_ms`. Returns the
    /// number of requests sent.
    pub fn refresh<E>(
        &mut self,
        section: &Section,
        now_ms: i64,
        min_interval_ms: i64,
        mut fetch: impl FnMut(&PlexRequest) -> Result<ListingPage, E>,
    ) -> Result<u32, E> {
        let index = self.sections.entry(section.key.clone()).or_default();
        if index.refreshed_at_ms.is_some_and(|at| now_ms.saturating_sub(at) < min_interval_ms) {
            return Ok(0);
        }
        let mut sent = 0;
        let mut start = 0;
        while sent < REFRESH_MAX_PAGES {
            let page = fetch(&refresh_request(section, start))?;
            sent += 1;
            let new = index.add_items(section, &page.items);
            let received = page.items.len() as u64;
            start += received;
            if new == 0 || received < REFRESH_PAGE_SIZE {
                break;
            }
        }
        index.refreshed_at_ms = Some(now_ms);
        Ok(sent)
    }

    /// Add items found by a filtered listing (already verified by the
    /// caller or not: only exact part paths ever match).
    pub fn learn(&mut self, section: &Section, items: &[ListedItem]) {
        self.sections.entry(section.key.clone()).or_default().add_items(section, items);
    }

    /// The items whose file name equals `path`'s (case-insensitively), in any
    /// folder of the section.
    pub fn same_name(&self, section: &Section, path: &str) -> Vec<String> {
        self.sections
            .get(&section.key)
            .and_then(|i| i.by_name.get(&file_name(path).to_lowercase()))
            .map(|keys| sorted_keys(keys))
            .unwrap_or_default()
    }

    /// Forget that `path` belongs to `rating_key` (the item no longer has
    /// it); the rest of the index stays.
    pub fn forget(&mut self, section: &Section, path: &str, rating_key: &str) {
        if let Some(index) = self.sections.get_mut(&section.key) {
            let key = section.key_of(path);
            if let Some(keys) = index.by_path.get_mut(&key) {
                keys.retain(|k| k != rating_key);
                if keys.is_empty() {
                    index.by_path.remove(&key);
                }
            }
            if let Some(keys) = index.by_name.get_mut(&file_name(path).to_lowercase()) {
                keys.retain(|k| k != rating_key);
            }
            // The next miss reads the newest items again at once.
            index.refreshed_at_ms = None;
        }
    }

    /// Forget everything about a section (it disappeared): the next look-up
    /// lists it again from the start.
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
        let r = index.resolve(&section, "/data/Movies/450.mkv", 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::Found("1450".into()));
        assert_eq!(starts, vec![0, 200, 400]);
        // An already listed path costs no request.
        starts.clear();
        let r = index.resolve(&section, "/data/Movies/10.mkv", 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::Found("1010".into()));
        assert!(starts.is_empty());
        // A later miss continues from page 4, not from the start.
        let r = index.resolve(&section, "/data/Movies/999.mkv", 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::Found("1999".into()));
        assert_eq!(starts, vec![600, 800]);
        // Fully listed: a miss is answered without requests, for the whole
        // drain (the caller refreshes with the newest items instead).
        starts.clear();
        let r = index.resolve(&section, "/data/Movies/nope.mkv", 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::NotInPlex);
        assert!(starts.is_empty());
        assert_eq!(index.peek(&section, "/data/Movies/nope.mkv"), Some(Resolution::NotInPlex));
        assert_eq!(index.peek(&section, "/data/Movies/3.mkv"), Some(Resolution::Found("1003".into())));
    }

    #[test]
    fn page_budget_and_errors_keep_progress() {
        let section = movies();
        let mut index = PathIndex::default();
        let mut starts = Vec::new();
        let r = index.resolve(&section, "/data/Movies/nope.mkv", 2, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::Unfinished { listed: 400, total: Some(1000) });
        // A failing page does not lose the first pages.
        let err = index.resolve(&section, "/data/Movies/nope.mkv", 2, |_| Err::<ListingPage, _>("boom"));
        assert_eq!(err, Err("boom"));
        starts.clear();
        let r = index.resolve(&section, "/data/Movies/nope.mkv", 25, listing(1000, &mut starts)).unwrap();
        assert_eq!(r, Resolution::NotInPlex);
        assert_eq!(starts, vec![400, 600, 800]);
    }

    #[test]
    fn listing_without_total_ends_on_a_short_page() {
        let section = movies();
        let mut index = PathIndex::default();
        let mut calls = 0;
        let r = index
            .resolve(&section, "/x.mkv", 25, |req| {
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
        let r = index.resolve(&section, "/data/Movies/a.mkv", 5, |_| Ok::<_, ()>(p.clone())).unwrap();
        assert_eq!(r, Resolution::Ambiguous(vec!["9".into(), "20".into()]));
        // Exact, case-sensitive: A.mkv is a different file.
        let r = index.resolve(&section, "/data/Movies/A.mkv", 5, |_| Ok::<_, ()>(p.clone())).unwrap();
        assert_eq!(r, Resolution::Found("100".into()));
    }

    #[test]
    fn invalidate_lists_again() {
        let section = movies();
        let mut index = PathIndex::default();
        let mut starts = Vec::new();
        index.resolve(&section, "/data/Movies/5.mkv", 25, listing(300, &mut starts)).unwrap();
        assert!(index.len("1") > 0);
        index.invalidate("1");
        assert_eq!(index.len("1"), 0);
        starts.clear();
        index.resolve(&section, "/data/Movies/5.mkv", 25, listing(300, &mut starts)).unwrap();
        assert_eq!(starts, vec![0]);
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use crate::plex_json::ListedItem;

    fn section(windows: bool) -> Section {
        let loc = if windows { "\\\\?\\D:\\Media" } else { "/data/Movies" };
        let info =
            SectionInfo { key: "1".into(), kind: "movie".into(), title: "M".into(), locations: vec![loc.into()] };
        build_sections(&[info], &[]).0.remove(0)
    }

    fn item(rk: &str, files: &[&str]) -> ListedItem {
        ListedItem { rating_key: rk.into(), files: files.iter().map(|f| f.to_string()).collect() }
    }

    fn page(items: Vec<ListedItem>) -> ListingPage {
        ListingPage { total_size: Some(items.len() as u64), items, ..Default::default() }
    }

    #[test]
    fn windows_sections_compare_like_windows() {
        let s = section(true);
        assert!(s.windows);
        let sections = vec![s.clone()];
        assert!(pick_section(&sections, "d:/media/Studio/A.mp4").is_some());
        assert!(pick_section(&sections, "D:\\Other\\A.mp4").is_none());
        let mut index = PathIndex::default();
        let p = page(vec![item("5", &["\\\\?\\D:\\Media\\Studio\\Scene One.MP4"])]);
        let r = index.resolve(&s, "D:\\Media\\studio\\scene one.mp4", 5, |_| Ok::<_, ()>(p.clone())).unwrap();
        assert_eq!(r, Resolution::Found("5".into()));
    }

    #[test]
    fn every_part_of_an_item_and_same_names_in_other_folders() {
        let s = section(false);
        let mut index = PathIndex::default();
        let p = page(vec![
            item("1", &["/data/Movies/a/x.mp4", "/data/Movies/a/x-4k.mp4"]),
            item("2", &["/data/Movies/b/x.mp4"]),
        ]);
        let r = index.resolve(&s, "/data/Movies/a/x-4k.mp4", 5, |_| Ok::<_, ()>(p.clone())).unwrap();
        assert_eq!(r, Resolution::Found("1".into()));
        assert_eq!(index.peek(&s, "/data/Movies/b/x.mp4"), Some(Resolution::Found("2".into())));
        // The same file name in two folders is two items, never ambiguous
        // by path; by name alone it is.
        assert_eq!(index.same_name(&s, "/elsewhere/X.MP4"), ["1", "2"]);
        index.forget(&s, "/data/Movies/b/x.mp4", "2");
        assert_eq!(index.peek(&s, "/data/Movies/b/x.mp4"), Some(Resolution::NotInPlex));
    }

    #[test]
    fn refresh_reads_newest_pages_until_nothing_is_new() {
        let s = section(false);
        let mut index = PathIndex::default();
        index.resolve(&s, "/none", 5, |_| Ok::<_, ()>(page(vec![item("1", &["/data/Movies/old.mp4"])]))).unwrap();
        let mut asked = Vec::new();
        let sent = index
            .refresh(&s, 0, 5_000, |req| {
                asked.push((
                    req.query_value("sort").map(String::from),
                    req.header_value("X-Plex-Container-Start").map(String::from),
                ));
                let mut items: Vec<ListedItem> = (0..REFRESH_PAGE_SIZE)
                    .map(|i| item(&format!("n{i}"), &[&format!("/data/Movies/n{i}.mp4")]))
                    .collect();
                if asked.len() > 1 {
                    items = vec![item("1", &["/data/Movies/old.mp4"])];
                }
                Ok::<_, ()>(page(items))
            })
            .unwrap();
        assert_eq!(sent, 2);
        assert_eq!(asked[0], (Some("addedAt:desc".into()), Some("0".into())));
        assert_eq!(index.peek(&s, "/data/Movies/n7.mp4"), Some(Resolution::Found("n7".into())));
        // Not again within the interval.
        assert_eq!(index.refresh(&s, 1_000, 5_000, |_| Err::<ListingPage, _>(())).unwrap(), 0);
        assert_eq!(title_guess("/a/b/My Scene (2020).mp4"), "My Scene (2020)");
    }
}
