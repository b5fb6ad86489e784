//! A loopback fake of Plex Media Server: library sections, movies and
//! episodes, the bulk-edit endpoint with value/lock/tag semantics, artwork
//! uploads and partial scans — with the status codes, JSON shapes and paging
//! of the real server (see `plex-http-api.md`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::clock::{parse_date, unix_now};
use crate::faults::{Faults, Injected};
use crate::http_util::{Handler, HttpServer, Reply, Request, Response, error_html, find_header, lock, percent_decode};
use crate::tripwire::{TripHandle, TripPoint, Tripwires};

/// The PMS version the fake claims to be.
pub const PLEX_VERSION: &str = "1.41.3.9314-a0bfb8370";

const IDENTIFIER: &str = "com.plexapp.plugins.library";
const FIRST_RATING_KEY: u64 = 1000;
/// The image every item starts with in `/posters` (what a scan or agent
/// provides), not selected by anyone yet.
const AGENT_POSTER: &str = "metadata://posters/tv.plex.agents.none_0f1e2d3c";
/// List responses carry at most this many entries per tag array.
const LIST_TAG_LIMIT: usize = 3;

/// Library section type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Items are movies (`type=1`).
    Movie,
    /// Items are episodes (`type=4`) of one show per section (`type=2`).
    Show,
}

/// What to put into the fake library; fields left `None`/empty are absent,
/// as for an item a scan just added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemSpec {
    pub title: String,
    /// The media file (`Part.file`).
    pub file_path: String,
    /// More files, each as an extra `Media` version.
    pub extra_file_paths: Vec<String>,
    pub title_sort: Option<String>,
    pub original_title: Option<String>,
    pub summary: Option<String>,
    pub studio: Option<String>,
    pub tagline: Option<String>,
    /// `YYYY-MM-DD`.
    pub originally_available_at: Option<String>,
    pub content_rating: Option<String>,
    pub genres: Vec<String>,
    pub actors: Vec<String>,
    pub collections: Vec<String>,
    pub labels: Vec<String>,
    /// Field lock names (`title`, `genre`, `thumb`, …) locked from the start.
    pub locked_fields: Vec<String>,
    pub duration_ms: u64,
    pub size: u64,
}

impl ItemSpec {
    pub fn new(title: &str, file_path: &str) -> ItemSpec {
        ItemSpec { title: title.to_string(), file_path: file_path.to_string(), ..ItemSpec::default() }
    }
}

/// The state of one item, as the fake holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemSnapshot {
    pub rating_key: String,
    pub section_key: String,
    /// `"movie"` or `"episode"`.
    pub item_type: String,
    pub title: String,
    pub title_sort: Option<String>,
    pub original_title: Option<String>,
    pub summary: Option<String>,
    pub studio: Option<String>,
    pub tagline: Option<String>,
    pub originally_available_at: Option<String>,
    pub content_rating: Option<String>,
    pub locked_fields: BTreeSet<String>,
    pub genres: Vec<String>,
    pub actors: Vec<String>,
    pub collections: Vec<String>,
    pub labels: Vec<String>,
    pub file_paths: Vec<String>,
    pub added_at: i64,
    pub updated_at: i64,
    /// Byte lengths of posters uploaded as request bodies, in order.
    pub poster_uploads: Vec<usize>,
    /// Byte lengths of background art uploaded as request bodies, in order.
    pub art_uploads: Vec<usize>,
    /// `url=` values of poster uploads by URL, in order.
    pub poster_urls: Vec<String>,
    /// `url=` values of art uploads by URL, in order.
    pub art_urls: Vec<String>,
    /// 0–10, set through `PUT /:/rate`.
    pub user_rating: Option<f64>,
    /// The poster and background Plex shows (`upload://posters/<sha1>`, an
    /// agent's URL, or `None` for the scan's own).
    pub selected_poster: Option<String>,
    pub selected_art: Option<String>,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Percent-decoded path, without the query string.
    pub path: String,
    /// The query string exactly as sent.
    pub raw_query: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Lower-cased header names, in order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// Status answered; 0 when the connection was reset.
    pub status: u16,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------
// Library model
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TagKind {
    Genre,
    Actor,
    Collection,
    Label,
}

impl TagKind {
    const ALL: [TagKind; 4] = [TagKind::Genre, TagKind::Actor, TagKind::Collection, TagKind::Label];

    /// Edit parameter name, lock name and `filter` prefix.
    fn param(self) -> &'static str {
        match self {
            TagKind::Genre => "genre",
            TagKind::Actor => "actor",
            TagKind::Collection => "collection",
            TagKind::Label => "label",
        }
    }

    fn json_key(self) -> &'static str {
        match self {
            TagKind::Genre => "Genre",
            TagKind::Actor => "Role",
            TagKind::Collection => "Collection",
            TagKind::Label => "Label",
        }
    }

    fn from_param(s: &str) -> Option<TagKind> {
        TagKind::ALL.into_iter().find(|k| k.param() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct TagEntry {
    name: String,
    role: Option<String>,
    thumb: Option<String>,
}

impl TagEntry {
    fn named(name: &str) -> TagEntry {
        TagEntry { name: name.to_string(), role: None, thumb: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ItemKind {
    Movie,
    Episode,
}

impl ItemKind {
    fn type_num(self) -> u32 {
        match self {
            ItemKind::Movie => 1,
            ItemKind::Episode => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ItemKind::Movie => "movie",
            ItemKind::Episode => "episode",
        }
    }
}

#[derive(Debug, Clone)]
struct Part {
    id: u64,
    file: String,
    size: u64,
}

#[derive(Debug, Clone)]
struct Item {
    rk: u64,
    section: String,
    kind: ItemKind,
    title: String,
    title_sort: Option<String>,
    original_title: Option<String>,
    summary: Option<String>,
    studio: Option<String>,
    tagline: Option<String>,
    originally_available_at: Option<String>,
    content_rating: Option<String>,
    added_at: i64,
    updated_at: i64,
    thumb_ts: i64,
    art_ts: i64,
    locked: BTreeSet<String>,
    tags: BTreeMap<TagKind, Vec<TagEntry>>,
    parts: Vec<Part>,
    duration_ms: u64,
    index: u32,
    poster_uploads: Vec<usize>,
    art_uploads: Vec<usize>,
    poster_urls: Vec<String>,
    art_urls: Vec<String>,
    user_rating: Option<f64>,
    /// Every poster/background the item has (`/posters`, `/arts`): ratingKey,
    /// in the order they arrived; uploads are never deleted (as in Plex).
    posters: Vec<String>,
    arts: Vec<String>,
    selected_poster: Option<String>,
    selected_art: Option<String>,
}

impl Item {
    fn tag_names(&self, kind: TagKind) -> Vec<String> {
        self.tags.get(&kind).map(|v| v.iter().map(|t| t.name.clone()).collect()).unwrap_or_default()
    }

    fn snapshot(&self) -> ItemSnapshot {
        ItemSnapshot {
            rating_key: self.rk.to_string(),
            section_key: self.section.clone(),
            item_type: self.kind.name().to_string(),
            title: self.title.clone(),
            title_sort: self.title_sort.clone(),
            original_title: self.original_title.clone(),
            summary: self.summary.clone(),
            studio: self.studio.clone(),
            tagline: self.tagline.clone(),
            originally_available_at: self.originally_available_at.clone(),
            content_rating: self.content_rating.clone(),
            locked_fields: self.locked.clone(),
            genres: self.tag_names(TagKind::Genre),
            actors: self.tag_names(TagKind::Actor),
            collections: self.tag_names(TagKind::Collection),
            labels: self.tag_names(TagKind::Label),
            file_paths: self.parts.iter().map(|p| p.file.clone()).collect(),
            added_at: self.added_at,
            updated_at: self.updated_at,
            poster_uploads: self.poster_uploads.clone(),
            art_uploads: self.art_uploads.clone(),
            poster_urls: self.poster_urls.clone(),
            art_urls: self.art_urls.clone(),
            user_rating: self.user_rating,
            selected_poster: self.selected_poster.clone(),
            selected_art: self.selected_art.clone(),
        }
    }

    fn bump(&mut self) {
        self.updated_at = unix_now().max(self.updated_at + 1);
    }

    fn sort_title(&self) -> String {
        self.title_sort.clone().unwrap_or_else(|| self.title.clone()).to_lowercase()
    }

    fn scalar(&self, field: &str) -> Option<&String> {
        match field {
            "titleSort" => self.title_sort.as_ref(),
            "originalTitle" => self.original_title.as_ref(),
            "summary" => self.summary.as_ref(),
            "studio" => self.studio.as_ref(),
            "tagline" => self.tagline.as_ref(),
            "originallyAvailableAt" => self.originally_available_at.as_ref(),
            "contentRating" => self.content_rating.as_ref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Section {
    key: String,
    title: String,
    kind: SectionKind,
    locations: Vec<(u64, String)>,
    uuid: String,
    show_rk: Option<u64>,
    created_at: i64,
    scanned_at: i64,
    /// Scans requested by `/refresh` that have not completed yet.
    pending_scans: Vec<(Instant, Option<String>)>,
}

impl Section {
    fn id_json(&self) -> Value {
        match self.key.parse::<u64>() {
            Ok(n) => json!(n),
            Err(_) => json!(self.key),
        }
    }

    fn default_type(&self) -> u32 {
        match self.kind {
            SectionKind::Movie => 1,
            SectionKind::Show => 2,
        }
    }
}

/// The library's items by rating key. Every change goes through here, so
/// the listing orders it keeps stay true: like a real Plex, which keeps a
/// section's order in its database, paging a large section does not sort
/// it again for every page.
#[derive(Debug, Default)]
struct Items {
    by_rk: BTreeMap<u64, Item>,
    per_section: HashMap<String, u32>,
    /// Rating keys in listing order, per listing.
    orders: HashMap<Listing, Vec<u64>>,
}

/// A listing's order: (section, kind, sort asked for and whether descending).
type Listing = (String, ItemKind, Option<(SortField, bool)>);

impl Items {
    fn get(&self, rk: &u64) -> Option<&Item> {
        self.by_rk.get(rk)
    }

    fn values(&self) -> impl Iterator<Item = &Item> {
        self.by_rk.values()
    }

    fn get_mut(&mut self, rk: &u64) -> Option<&mut Item> {
        self.orders.clear();
        self.by_rk.get_mut(rk)
    }

    fn insert(&mut self, item: Item) {
        self.orders.clear();
        *self.per_section.entry(item.section.clone()).or_default() += 1;
        if let Some(old) = self.by_rk.insert(item.rk, item) {
            self.forget(&old);
        }
    }

    fn remove(&mut self, rk: &u64) -> Option<Item> {
        self.orders.clear();
        let old = self.by_rk.remove(rk)?;
        self.forget(&old);
        Some(old)
    }

    fn forget(&mut self, old: &Item) {
        if let Some(n) = self.per_section.get_mut(&old.section) {
            *n = n.saturating_sub(1);
        }
    }

    /// How many items a section holds.
    fn in_section(&self, section: &str) -> u32 {
        self.per_section.get(section).copied().unwrap_or(0)
    }

    /// A section's items of one kind in listing order.
    fn ordered(&mut self, section: &str, kind: ItemKind, sort: Option<(SortField, bool)>) -> &[u64] {
        let by_rk = &self.by_rk;
        self.orders.entry((section.to_string(), kind, sort)).or_insert_with(|| {
            let mut items: Vec<&Item> = by_rk.values().filter(|i| i.section == section && i.kind == kind).collect();
            sort_items(&mut items, sort.as_ref(), kind);
            items.iter().map(|i| i.rk).collect()
        })
    }
}

#[derive(Debug)]
struct Library {
    sections: Vec<Section>,
    items: Items,
    /// Files on disk that the next covering scan adds: (section, spec).
    staged: Vec<(String, ItemSpec)>,
    next_rk: u64,
    next_id: u64,
    tag_ids: HashMap<(TagKind, String), u64>,
    next_tag_id: u64,
    scan_delay: Duration,
}

impl Library {
    fn new() -> Library {
        Library {
            sections: Vec::new(),
            items: Items::default(),
            staged: Vec::new(),
            next_rk: FIRST_RATING_KEY,
            next_id: 1,
            tag_ids: HashMap::new(),
            next_tag_id: 100,
            scan_delay: Duration::ZERO,
        }
    }

    fn section(&self, key: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.key == key)
    }

    fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn tag_id(&mut self, kind: TagKind, name: &str) -> u64 {
        if let Some(id) = self.tag_ids.get(&(kind, name.to_string())) {
            return *id;
        }
        self.next_tag_id += 1;
        self.tag_ids.insert((kind, name.to_string()), self.next_tag_id);
        self.next_tag_id
    }

    fn insert_item(&mut self, section_key: &str, spec: &ItemSpec) -> Option<u64> {
        let kind = match self.section(section_key)?.kind {
            SectionKind::Movie => ItemKind::Movie,
            SectionKind::Show => ItemKind::Episode,
        };
        let index = 1 + self.items.in_section(section_key);
        let rk = self.next_rk;
        self.next_rk += 1;
        let mut parts = Vec::new();
        for file in std::iter::once(&spec.file_path).chain(&spec.extra_file_paths) {
            let id = self.alloc_id();
            parts.push(Part { id, file: file.clone(), size: spec.size });
        }
        let mut tags = BTreeMap::new();
        for (kind, names) in [
            (TagKind::Genre, &spec.genres),
            (TagKind::Actor, &spec.actors),
            (TagKind::Collection, &spec.collections),
            (TagKind::Label, &spec.labels),
        ] {
            if !names.is_empty() {
                for n in names {
                    self.tag_id(kind, n);
                }
                tags.insert(kind, names.iter().map(|n| TagEntry::named(n)).collect());
            }
        }
        let now = unix_now();
        self.items.insert(Item {
            rk,
            section: section_key.to_string(),
            kind,
            title: spec.title.clone(),
            title_sort: spec.title_sort.clone(),
            original_title: spec.original_title.clone(),
            summary: spec.summary.clone(),
            studio: spec.studio.clone(),
            tagline: spec.tagline.clone(),
            originally_available_at: spec.originally_available_at.clone(),
            content_rating: spec.content_rating.clone(),
            added_at: now,
            updated_at: now,
            thumb_ts: now,
            art_ts: now,
            locked: spec.locked_fields.iter().cloned().collect(),
            tags,
            parts,
            duration_ms: spec.duration_ms,
            index,
            poster_uploads: Vec::new(),
            art_uploads: Vec::new(),
            poster_urls: Vec::new(),
            art_urls: Vec::new(),
            user_rating: None,
            posters: vec![AGENT_POSTER.to_string()],
            arts: Vec::new(),
            selected_poster: None,
            selected_art: None,
        });
        Some(rk)
    }

    /// Completes scans whose delay has passed: staged files under the
    /// scanned path become items.
    fn settle(&mut self) {
        let now = Instant::now();
        let mut done: Vec<(String, Option<String>)> = Vec::new();
        for s in &mut self.sections {
            let (ready, waiting): (Vec<_>, Vec<_>) = s.pending_scans.drain(..).partition(|(t, _)| *t <= now);
            s.pending_scans = waiting;
            for (_, path) in ready {
                s.scanned_at = unix_now();
                done.push((s.key.clone(), path));
            }
        }
        for (section, path) in done {
            let staged = std::mem::take(&mut self.staged);
            for (sec, spec) in staged {
                let covered = sec == section && path.as_deref().is_none_or(|p| path_covers(p, &spec.file_path));
                if covered {
                    self.insert_item(&sec, &spec);
                } else {
                    self.staged.push((sec, spec));
                }
            }
        }
    }
}

/// Whether a scan of `dir` (a folder or a file) reaches `file`.
fn path_covers(dir: &str, file: &str) -> bool {
    let dir = dir.trim_end_matches(['/', '\\']);
    file == dir || (file.starts_with(dir) && matches!(file.as_bytes().get(dir.len()), Some(b'/') | Some(b'\\')))
}

// ---------------------------------------------------------------------------
// The fake server
// ---------------------------------------------------------------------------

struct PlexShared {
    token: Option<String>,
    machine_id: String,
    lib: Mutex<Library>,
    requests: Mutex<Vec<RecordedRequest>>,
    latency: Mutex<Duration>,
    faults: Faults,
    tripwires: Tripwires,
    /// Requests being answered now, and the most there were at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

struct Inner {
    server: HttpServer,
    shared: Arc<PlexShared>,
}

/// Handle to a running fake Plex Media Server on `127.0.0.1`. Clones share
/// the server; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakePlex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakePlex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakePlex").field("url", &self.url()).finish()
    }
}

impl FakePlex {
    /// Starts a server on an ephemeral loopback port. With `Some(token)` it
    /// behaves like a claimed server: every endpoint but `/identity` wants
    /// `X-Plex-Token`. With `None` it is an unclaimed server that lets
    /// local clients in without a token.
    pub fn start(token: Option<&str>) -> io::Result<FakePlex> {
        static INSTANCES: AtomicU64 = AtomicU64::new(1);
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        // 40 hex digits like the real identifier; stable per process + instance.
        let machine_id = format!("{:08x}{:032x}", std::process::id(), n);
        let shared = Arc::new(PlexShared {
            token: token.map(str::to_string),
            machine_id,
            lib: Mutex::new(Library::new()),
            requests: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            faults: Faults::new(),
            tripwires: Tripwires::default(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let server = HttpServer::start(shared.clone())?;
        shared.faults.attach(server.switch());
        Ok(FakePlex { inner: Arc::new(Inner { server, shared }) })
    }

    fn shared(&self) -> &PlexShared {
        &self.inner.shared
    }

    fn lib(&self) -> std::sync::MutexGuard<'_, Library> {
        let mut lib = lock(&self.shared().lib);
        lib.settle();
        lib
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn port(&self) -> u16 {
        self.inner.server.port()
    }

    /// The token the server wants, if it is claimed.
    pub fn token(&self) -> Option<&str> {
        self.shared().token.as_deref()
    }

    pub fn machine_identifier(&self) -> &str {
        &self.shared().machine_id
    }

    /// Adds (or redefines) a library section.
    pub fn add_section(&self, key: &str, title: &str, kind: SectionKind, locations: &[&str]) {
        let mut lib = self.lib();
        let mut locs = Vec::new();
        for l in locations {
            let id = lib.alloc_id();
            locs.push((id, l.to_string()));
        }
        let show_rk = match kind {
            SectionKind::Show => {
                let rk = lib.next_rk;
                lib.next_rk += 1;
                Some(rk)
            }
            SectionKind::Movie => None,
        };
        let now = unix_now();
        let n = lib.sections.len() as u64 + 1;
        let section = Section {
            key: key.to_string(),
            title: title.to_string(),
            kind,
            locations: locs,
            uuid: format!("9b3c6f1e-5a1d-4c7e-8f00-{:012x}", n),
            show_rk,
            created_at: now,
            scanned_at: now,
            pending_scans: Vec::new(),
        };
        match lib.sections.iter_mut().find(|s| s.key == key) {
            Some(s) => *s = section,
            None => lib.sections.push(section),
        }
    }

    /// Adds an item to a section and returns its ratingKey. Items of a
    /// [`SectionKind::Show`] section are episodes.
    ///
    /// # Panics
    /// If the section does not exist (a test setup mistake).
    pub fn add_item(&self, section_key: &str, spec: ItemSpec) -> String {
        match self.lib().insert_item(section_key, &spec) {
            Some(rk) => rk.to_string(),
            None => panic!("FakePlex::add_item: no section {section_key:?}"),
        }
    }

    /// Puts a file "on disk" without adding it: it becomes an item when a
    /// `/library/sections/{key}/refresh` covering its path completes.
    pub fn stage_item(&self, section_key: &str, spec: ItemSpec) {
        self.lib().staged.push((section_key.to_string(), spec));
    }

    /// How long a requested scan takes before staged items appear
    /// (the section reports `refreshing: true` meanwhile). Default: instant.
    pub fn set_scan_delay(&self, delay: Duration) {
        self.lib().scan_delay = delay;
    }

    pub fn item(&self, rating_key: &str) -> Option<ItemSnapshot> {
        let rk = rating_key.parse::<u64>().ok()?;
        self.lib().items.get(&rk).map(Item::snapshot)
    }

    /// Every item (of one section when `section_key` is given), by ratingKey.
    pub fn items(&self, section_key: Option<&str>) -> Vec<ItemSnapshot> {
        self.lib().items.values().filter(|i| section_key.is_none_or(|k| i.section == k)).map(Item::snapshot).collect()
    }

    /// The item whose media file is exactly `path`.
    pub fn find_by_file(&self, path: &str) -> Option<ItemSnapshot> {
        self.lib().items.values().find(|i| i.parts.iter().any(|p| p.file == path)).map(Item::snapshot)
    }

    /// A user's edit in Plex Web (or an agent refresh): sets the title,
    /// summary or studio of an item without locking it. Returns whether the
    /// item and the field exist.
    pub fn user_edit(&self, rating_key: &str, field: &str, value: &str) -> bool {
        let Ok(rk) = rating_key.parse::<u64>() else { return false };
        let mut lib = self.lib();
        let Some(item) = lib.items.get_mut(&rk) else { return false };
        match field {
            "title" => item.title = value.to_string(),
            "summary" => item.summary = Some(value.to_string()),
            "studio" => item.studio = Some(value.to_string()),
            _ => return false,
        }
        item.updated_at = unix_now();
        true
    }

    /// Deletes an item (later reads answer 404). Returns whether it existed.
    pub fn remove_item(&self, rating_key: &str) -> bool {
        match rating_key.parse::<u64>() {
            Ok(rk) => self.lib().items.remove(&rk).is_some(),
            Err(_) => false,
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared().requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared().requests).clear();
        self.shared().most_in_flight.store(0, Ordering::SeqCst);
    }

    /// The most requests Plex was answering at the same time since the
    /// start (or `clear_requests`). One drainer sends one request at a
    /// time, so more means more than one process talked to Plex at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared().most_in_flight.load(Ordering::SeqCst)
    }

    /// Requests with this method whose path starts with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.shared().requests)
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    pub fn faults(&self) -> &Faults {
        &self.shared().faults
    }

    /// Added before every response.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.shared().latency) = latency;
    }

    /// Arm a tripwire on the `nth` `method` request whose path starts with
    /// `path_prefix` (see [`crate::tripwire`]).
    pub fn tripwire(&self, method: &str, path_prefix: &str, nth: usize, point: TripPoint) -> TripHandle {
        self.shared().tripwires.arm(method, path_prefix, nth, point)
    }
}

impl Handler for PlexShared {
    fn answered(&self, method: &str, path: &str) {
        self.tripwires.at(TripPoint::Answered, method, path);
    }

    fn handle(&self, req: Request) -> Reply {
        struct InFlight<'a>(&'a AtomicUsize);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _in_flight = InFlight(&self.in_flight);
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        self.tripwires.at(TripPoint::Received, &req.method, &req.path);
        let latency = *lock(&self.latency);
        if !latency.is_zero() {
            thread::sleep(latency);
        }
        let reply = match self.faults.take(&req.path) {
            Some(Injected::Reply(r)) => r,
            Some(Injected::Delay(d)) => {
                thread::sleep(d);
                self.route(&req)
            }
            None => self.route(&req),
        };
        let reply = match reply {
            Reply::Send(r) => Reply::Send(r.header("X-Plex-Protocol", "1.0")),
            Reply::Reset => Reply::Reset,
        };
        lock(&self.requests).push(RecordedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            raw_query: req.raw_query.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            body_len: req.body.len(),
            status: reply.status(),
        });
        reply
    }
}

fn html(status: u16) -> Response {
    Response::with_body(status, "text/html", error_html(status))
}

fn empty_ok() -> Response {
    Response::new(200)
}

/// Paging request: (start, size) from the query or the request headers.
fn paging(req: &Request) -> Result<(Option<usize>, Option<usize>), Response> {
    let get = |name: &str| -> Result<Option<usize>, Response> {
        let q = req.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        match q.or_else(|| req.header(name)) {
            None => Ok(None),
            Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| html(400)),
        }
    };
    Ok((get("X-Plex-Container-Start")?, get("X-Plex-Container-Size")?))
}

impl PlexShared {
    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let header = req.header("x-plex-token");
        let query = req.query.iter().find(|(k, _)| k.eq_ignore_ascii_case("X-Plex-Token")).map(|(_, v)| v.as_str());
        header == Some(token.as_str()) || query == Some(token.as_str())
    }

    fn route(&self, req: &Request) -> Reply {
        let path = req.path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        let method = req.method.as_str();
        let read = method == "GET" || method == "HEAD";
        if read && segs == ["identity"] {
            return Reply::Send(self.container(req, self.identity()));
        }
        if !self.authorized(req) {
            return Reply::Send(Response::with_body(
                401,
                "text/html",
                "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>",
            ));
        }
        let resp = match (method, segs.as_slice()) {
            (_, []) if read => self.container(req, self.server_info()),
            (_, ["library", "sections"]) | (_, ["library", "sections", "all"]) if read => {
                self.container(req, self.sections())
            }
            (_, ["library", "sections", sid, "all"]) if read => self.list(req, sid),
            ("PUT", ["library", "sections", sid, "all"]) => self.edit(req, sid),
            ("GET" | "HEAD" | "POST", ["library", "sections", sid, "refresh"]) => self.refresh(req, sid),
            ("DELETE", ["library", "sections", sid, "refresh"]) => {
                let mut lib = lock(&self.lib);
                match lib.sections.iter_mut().find(|s| s.key == *sid) {
                    Some(s) => {
                        s.pending_scans.clear();
                        empty_ok()
                    }
                    None => html(404),
                }
            }
            (_, ["library", "metadata", rks]) if read => self.metadata(req, rks),
            ("POST", ["library", "metadata", rk, kind @ ("posters" | "arts")]) => self.upload(req, rk, kind),
            (_, ["library", "metadata", rk, kind @ ("posters" | "arts")]) if read => self.images(req, rk, kind),
            ("PUT", ["library", "metadata", rk, kind @ ("poster" | "art")]) => self.select(req, rk, kind),
            ("PUT", [":", "rate"]) => self.rate(req),
            (_, ["activities"]) if read => self.container(req, self.activities()),
            _ => html(404),
        };
        Reply::Send(resp)
    }

    /// JSON when asked for, else PMS's default XML.
    fn container(&self, req: &Request, v: Value) -> Response {
        if req.accepts_json() {
            Response::json(200, &v)
        } else {
            Response::with_body(200, "text/xml;charset=utf-8", to_xml(&v))
        }
    }

    fn identity(&self) -> Value {
        json!({"MediaContainer": {
            "size": 0,
            "claimed": self.token.is_some(),
            "machineIdentifier": self.machine_id,
            "version": PLEX_VERSION,
        }})
    }

    fn server_info(&self) -> Value {
        let dirs: Vec<Value> =
            ["activities", "library", "system"].iter().map(|k| json!({"count": 1, "key": k, "title": k})).collect();
        json!({"MediaContainer": {
            "size": dirs.len(),
            "allowCameraUpload": false,
            "allowChannelAccess": true,
            "allowSync": false,
            "claimed": self.token.is_some(),
            "friendlyName": "stash2plex-fake",
            "machineIdentifier": self.machine_id,
            "myPlex": self.token.is_some(),
            "platform": "Linux",
            "platformVersion": "6.1.0",
            "transcoderActiveVideoSessions": 0,
            "updatedAt": unix_now(),
            "version": PLEX_VERSION,
            "Directory": dirs,
        }})
    }

    fn sections(&self) -> Value {
        let mut lib = lock(&self.lib);
        lib.settle();
        let dirs: Vec<Value> = lib.sections.iter().map(section_json).collect();
        json!({"MediaContainer": {
            "size": dirs.len(),
            "allowSync": false,
            "title1": "Plex Library",
            "Directory": dirs,
        }})
    }

    fn list(&self, req: &Request, sid: &str) -> Response {
        let mut guard = lock(&self.lib);
        guard.settle();
        let Some((section_key, section_kind, default_type)) =
            guard.section(sid).map(|s| (s.key.clone(), s.kind, s.default_type()))
        else {
            return html(404);
        };
        let ty = match req.query_param("type") {
            None => default_type,
            Some(t) => match t.trim().parse::<u32>() {
                Ok(n) => n,
                Err(_) => return html(400),
            },
        };
        let (start, size) = match paging(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let title_filter = req.query_param("title").map(str::to_lowercase);
        let file_filter = req.query_param("file").map(str::to_lowercase);
        let sort = match req.query_param("sort").map(parse_sort).transpose() {
            Ok(s) => s,
            Err(()) => return html(400),
        };
        let limit = match req.query_param("limit").map(str::parse::<usize>).transpose() {
            Ok(l) => l,
            Err(_) => return html(400),
        };
        let excluded: Vec<&str> =
            req.query_param("excludeFields").map(|v| v.split(',').map(str::trim).collect()).unwrap_or_default();

        let item_kind = match (section_kind, ty) {
            (SectionKind::Movie, 1) => Some(ItemKind::Movie),
            (SectionKind::Show, 4) => Some(ItemKind::Episode),
            _ => None,
        };
        let (view_group, title2) = match (section_kind, ty) {
            (SectionKind::Show, 2) => ("show", "All Shows"),
            (_, 4) => ("episode", "All Episodes"),
            _ => ("movie", "All Movies"),
        };

        // What matches, in order; only the page asked for is rendered (PMS
        // answers a page of a large library without building the rest).
        let order: Vec<u64> = match item_kind {
            Some(kind) => guard.items.ordered(&section_key, kind, sort).to_vec(),
            None => Vec::new(),
        };
        let lib: &Library = &guard;
        let Some(sec) = lib.section(sid) else {
            return html(404);
        };
        // Rating keys of what matches; items are looked up for the page only.
        let mut matching: Vec<u64> = Vec::new();
        let mut show = false;
        if item_kind.is_some() {
            matching = if title_filter.is_none() && file_filter.is_none() {
                order
            } else {
                order
                    .into_iter()
                    .filter(|rk| {
                        lib.items.get(rk).is_some_and(|i| {
                            title_filter.as_deref().is_none_or(|t| i.title.to_lowercase().contains(t))
                                && file_filter
                                    .as_deref()
                                    .is_none_or(|f| i.parts.iter().any(|p| p.file.to_lowercase().contains(f)))
                        })
                    })
                    .collect()
            };
        } else if sec.kind == SectionKind::Show && ty == 2 {
            let leaves = lib.items.values().filter(|i| i.section == sec.key).count();
            let matches = title_filter.as_deref().is_none_or(|t| sec.title.to_lowercase().contains(t));
            show = leaves > 0 && matches && file_filter.is_none();
        }
        let mut total = if show { 1 } else { matching.len() };
        if let Some(l) = limit {
            total = total.min(l);
        }
        let paged = start.is_some() || size.is_some();
        let offset = start.unwrap_or(0).min(total);
        let take = size.unwrap_or(usize::MAX).min(total - offset);
        let mut page: Vec<Value> = if show {
            std::iter::once(show_json(lib, sec, false)).skip(offset).take(take).collect()
        } else {
            matching[offset..offset + take]
                .iter()
                .filter_map(|rk| lib.items.get(rk))
                .map(|i| item_json(lib, sec, i, false))
                .collect()
        };
        for e in &mut page {
            if let Value::Object(m) = e {
                for f in &excluded {
                    m.remove(*f);
                }
            }
        }
        let mut mc = Map::new();
        mc.insert("size".into(), json!(page.len()));
        if paged {
            mc.insert("totalSize".into(), json!(total));
            mc.insert("offset".into(), json!(offset));
        }
        mc.insert("allowSync".into(), json!(true));
        mc.insert("art".into(), json!("/:/resources/movie-fanart.jpg"));
        mc.insert("identifier".into(), json!(IDENTIFIER));
        mc.insert("librarySectionID".into(), sec.id_json());
        mc.insert("librarySectionTitle".into(), json!(sec.title));
        mc.insert("librarySectionUUID".into(), json!(sec.uuid));
        mc.insert("mediaTagPrefix".into(), json!("/system/bundle/media/flags/"));
        mc.insert("mediaTagVersion".into(), json!(1_735_000_000));
        mc.insert("title1".into(), json!(sec.title));
        mc.insert("title2".into(), json!(title2));
        mc.insert("viewGroup".into(), json!(view_group));
        if !page.is_empty() {
            mc.insert("Metadata".into(), Value::Array(page));
        }
        drop(guard);
        let mut resp = self.container(req, json!({"MediaContainer": mc}));
        if paged {
            resp = resp
                .header("X-Plex-Container-Start", offset.to_string())
                .header("X-Plex-Container-Total-Size", total.to_string());
        }
        resp
    }

    fn metadata(&self, req: &Request, rks: &str) -> Response {
        let mut lib = lock(&self.lib);
        lib.settle();
        let mut entries = Vec::new();
        let mut first_section: Option<&Section> = None;
        for rk in rks.split(',') {
            let Ok(rk) = rk.trim().parse::<u64>() else {
                continue;
            };
            if let Some(item) = lib.items.get(&rk) {
                if let Some(sec) = lib.section(&item.section) {
                    first_section.get_or_insert(sec);
                    entries.push(item_json(&lib, sec, item, true));
                }
            } else if let Some(sec) = lib.sections.iter().find(|s| s.show_rk == Some(rk))
                && lib.items.values().any(|i| i.section == sec.key)
            {
                first_section.get_or_insert(sec);
                entries.push(show_json(&lib, sec, true));
            }
        }
        let Some(sec) = first_section else {
            return html(404);
        };
        let v = json!({"MediaContainer": {
            "size": entries.len(),
            "allowSync": true,
            "identifier": IDENTIFIER,
            "librarySectionID": sec.id_json(),
            "librarySectionTitle": sec.title,
            "librarySectionUUID": sec.uuid,
            "mediaTagPrefix": "/system/bundle/media/flags/",
            "mediaTagVersion": 1_735_000_000,
            "Metadata": entries,
        }});
        drop(lib);
        self.container(req, v)
    }

    fn refresh(&self, req: &Request, sid: &str) -> Response {
        let mut lib = lock(&self.lib);
        let ready = Instant::now() + lib.scan_delay;
        let path = req.query_param("path").filter(|p| !p.is_empty()).map(str::to_string);
        match lib.sections.iter_mut().find(|s| s.key == sid) {
            Some(s) => s.pending_scans.push((ready, path)),
            None => return html(404),
        }
        lib.settle();
        empty_ok()
    }

    fn upload(&self, req: &Request, rk: &str, kind: &str) -> Response {
        let mut lib = lock(&self.lib);
        lib.settle();
        let Some(item) = rk.parse::<u64>().ok().and_then(|rk| lib.items.get_mut(&rk)) else {
            return html(404);
        };
        let url = req.query_param("url").filter(|u| !u.is_empty());
        let posters = kind == "posters";
        if !req.body.is_empty() {
            use sha1::Digest as _;
            let sha1: String = sha1::Sha1::digest(&req.body).iter().map(|b| format!("{b:02x}")).collect();
            // Plex keeps every upload under the SHA-1 of its bytes.
            let key = format!("upload://{kind}/{sha1}");
            let (list, selected) = if posters {
                (&mut item.posters, &mut item.selected_poster)
            } else {
                (&mut item.arts, &mut item.selected_art)
            };
            if !list.contains(&key) {
                list.push(key.clone());
            }
            *selected = Some(key);
            if posters {
                item.poster_uploads.push(req.body.len());
            } else {
                item.art_uploads.push(req.body.len());
            }
        } else if let Some(url) = url {
            if posters {
                item.poster_urls.push(url.to_string());
            } else {
                item.art_urls.push(url.to_string());
            }
        } else {
            return html(400);
        }
        // The upload becomes the selected image and its field gets locked.
        item.locked.insert(if posters { "thumb" } else { "art" }.to_string());
        item.bump();
        if posters {
            item.thumb_ts = item.updated_at;
        } else {
            item.art_ts = item.updated_at;
        }
        empty_ok()
    }

    /// `GET /library/metadata/{rk}/posters|arts`: every image, the
    /// selected one flagged.
    fn images(&self, req: &Request, rk: &str, kind: &str) -> Response {
        let mut lib = lock(&self.lib);
        lib.settle();
        let Some(item) = rk.parse::<u64>().ok().and_then(|rk| lib.items.get(&rk)) else {
            return html(404);
        };
        let (list, selected) =
            if kind == "posters" { (&item.posters, &item.selected_poster) } else { (&item.arts, &item.selected_art) };
        let entries: Vec<Value> = list
            .iter()
            .map(|key| {
                let is_selected = match selected {
                    Some(s) => s == key,
                    None => kind == "posters" && key == AGENT_POSTER,
                };
                json!({
                    "key": format!("/library/metadata/{rk}/file?url={}", crate::http_util::percent_encode(key)),
                    "ratingKey": key,
                    "selected": is_selected,
                    "thumb": format!("/library/metadata/{rk}/file?url={}", crate::http_util::percent_encode(key)),
                })
            })
            .collect();
        let mut mc = Map::new();
        mc.insert("size".into(), json!(entries.len()));
        if !entries.is_empty() {
            mc.insert("Metadata".into(), Value::Array(entries));
        }
        drop(lib);
        self.container(req, json!({"MediaContainer": mc}))
    }

    /// `PUT /library/metadata/{rk}/poster|art?url=<ratingKey of an entry>`.
    fn select(&self, req: &Request, rk: &str, kind: &str) -> Response {
        let mut lib = lock(&self.lib);
        lib.settle();
        let Some(item) = rk.parse::<u64>().ok().and_then(|rk| lib.items.get_mut(&rk)) else {
            return html(404);
        };
        let Some(url) = req.query_param("url").filter(|u| !u.is_empty()) else {
            return html(400);
        };
        let poster = kind == "poster";
        let list = if poster { &item.posters } else { &item.arts };
        if !list.iter().any(|k| k == url) {
            return html(404);
        }
        let key = Some(url.to_string());
        if poster {
            item.selected_poster = key;
        } else {
            item.selected_art = key;
        }
        item.bump();
        empty_ok()
    }

    /// `PUT /:/rate?key={rk}&identifier=com.plexapp.plugins.library&rating=0..10` (−1 clears).
    fn rate(&self, req: &Request) -> Response {
        let mut lib = lock(&self.lib);
        lib.settle();
        if req.query_param("identifier") != Some(IDENTIFIER) {
            return html(400);
        }
        let Some(rating) = req.query_param("rating").and_then(|r| r.trim().parse::<f64>().ok()) else {
            return html(400);
        };
        if !(rating == -1.0 || (0.0..=10.0).contains(&rating)) {
            return html(400);
        }
        let Some(item) =
            req.query_param("key").and_then(|k| k.parse::<u64>().ok()).and_then(|rk| lib.items.get_mut(&rk))
        else {
            return html(404);
        };
        item.user_rating = (rating >= 0.0).then_some(rating);
        item.bump();
        empty_ok()
    }

    /// `GET /activities`: one `library.update.section` per scan still running.
    fn activities(&self) -> Value {
        let mut lib = lock(&self.lib);
        lib.settle();
        let acts: Vec<Value> = lib
            .sections
            .iter()
            .filter(|s| !s.pending_scans.is_empty())
            .map(|s| {
                json!({
                    "uuid": format!("{}-scan", s.uuid),
                    "type": "library.update.section",
                    "cancellable": true,
                    "userID": 1,
                    "title": format!("Scanning {}", s.title),
                    "subtitle": "",
                    "progress": 0,
                    "Context": {"librarySectionID": s.key},
                })
            })
            .collect();
        let mut mc = Map::new();
        mc.insert("size".into(), json!(acts.len()));
        if !acts.is_empty() {
            mc.insert("Activity".into(), Value::Array(acts));
        }
        json!({"MediaContainer": mc})
    }

    fn edit(&self, req: &Request, sid: &str) -> Response {
        let mut lib = lock(&self.lib);
        lib.settle();
        let Some(sec) = lib.section(sid) else {
            return html(404);
        };
        let section_key = sec.key.clone();
        let plan = match EditPlan::parse(&req.query, sec.default_type()) {
            Ok(p) => p,
            Err(status) => return html(status),
        };
        // By id when ids are given (a write to a few items of a large
        // library does not walk all of it), else every item of the type.
        let mut targets: Vec<u64> = match plan.ids.as_ref() {
            Some(ids) => ids.iter().filter_map(|rk| lib.items.get(rk)).collect::<Vec<_>>(),
            None => lib.items.values().collect(),
        }
        .into_iter()
        .filter(|i| i.section == section_key && i.kind.type_num() == plan.type_num)
        .map(|i| i.rk)
        .collect();
        targets.sort_unstable();
        targets.dedup();
        if !targets.is_empty() {
            for (kind, entries) in &plan.tag_sets {
                for e in entries.values().filter(|e| !e.name.is_empty()) {
                    lib.tag_id(*kind, &e.name);
                }
            }
        }
        for rk in targets {
            if let Some(item) = lib.items.get_mut(&rk) {
                plan.apply(item);
            }
        }
        empty_ok()
    }
}

// ---------------------------------------------------------------------------
// Bulk edit (`PUT /library/sections/{sid}/all`)
// ---------------------------------------------------------------------------

const SCALAR_FIELDS: [&str; 9] = [
    "title",
    "titleSort",
    "originalTitle",
    "summary",
    "studio",
    "tagline",
    "originallyAvailableAt",
    "contentRating",
    "addedAt",
];
/// Fields that can be locked but have no `.value` here (artwork, theme).
const LOCK_ONLY_FIELDS: [&str; 3] = ["thumb", "art", "theme"];

#[derive(Debug, Default)]
struct EditPlan {
    type_num: u32,
    ids: Option<Vec<u64>>,
    values: Vec<(&'static str, String)>,
    locks: Vec<(String, bool)>,
    /// Per kind: index → entry (the full new list, replace semantics).
    tag_sets: BTreeMap<TagKind, BTreeMap<usize, TagEntry>>,
    tag_removals: Vec<(TagKind, Vec<String>)>,
    tag_clears: Vec<TagKind>,
}

impl EditPlan {
    /// Validates every parameter before anything is applied: unknown names
    /// → 400, invalid values → 500 (PMS's answers).
    fn parse(query: &[(String, String)], default_type: u32) -> Result<EditPlan, u16> {
        let mut plan = EditPlan { type_num: default_type, ..EditPlan::default() };
        for (k, v) in query {
            if k.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("X-Plex-")) {
                continue;
            }
            match k.as_str() {
                "type" => plan.type_num = v.trim().parse().map_err(|_| 400u16)?,
                "id" => {
                    let ids: Result<Vec<u64>, _> = v.split(',').map(|s| s.trim().parse::<u64>()).collect();
                    plan.ids = Some(ids.map_err(|_| 400u16)?);
                }
                _ => plan.parse_field(k, v)?,
            }
        }
        Ok(plan)
    }

    fn parse_field(&mut self, k: &str, v: &str) -> Result<(), u16> {
        if let Some(field) = k.strip_suffix(".value") {
            let Some(field) = SCALAR_FIELDS.iter().find(|f| **f == field) else {
                return Err(400);
            };
            let valid = match *field {
                "originallyAvailableAt" => v.is_empty() || parse_date(v).is_some(),
                "addedAt" => v.is_empty() || v.parse::<i64>().is_ok(),
                _ => true,
            };
            if !valid {
                return Err(500);
            }
            self.values.push((field, v.to_string()));
            return Ok(());
        }
        if let Some(field) = k.strip_suffix(".locked") {
            let known = SCALAR_FIELDS.contains(&field)
                || LOCK_ONLY_FIELDS.contains(&field)
                || TagKind::from_param(field).is_some();
            if !known {
                return Err(400);
            }
            let on = match v {
                "1" => true,
                "0" => false,
                _ => return Err(400),
            };
            self.locks.push((field.to_string(), on));
            return Ok(());
        }
        let Some((tag, rest)) = k.split_once('[') else {
            return Err(400);
        };
        let kind = TagKind::from_param(tag).ok_or(400u16)?;
        let (idx, tail) = rest.split_once(']').ok_or(400u16)?;
        if idx.is_empty() {
            match tail {
                ".tag.tag-" => {
                    let names = v.split(',').filter(|s| !s.is_empty()).map(percent_decode).collect();
                    self.tag_removals.push((kind, names));
                }
                ".tag" => self.tag_clears.push(kind),
                _ => return Err(400),
            }
            return Ok(());
        }
        let idx: usize = idx.parse().map_err(|_| 400u16)?;
        let slot = self.tag_sets.entry(kind).or_default().entry(idx).or_insert_with(|| TagEntry::named(""));
        match (kind, tail) {
            (_, ".tag.tag") => slot.name = v.to_string(),
            (TagKind::Actor, ".tagging.text") => slot.role = Some(v.to_string()),
            (TagKind::Actor, ".tag.thumb") => slot.thumb = Some(v.to_string()),
            _ => return Err(400),
        }
        Ok(())
    }

    fn apply(&self, item: &mut Item) {
        for (field, v) in &self.values {
            let val = (!v.is_empty()).then(|| v.clone());
            match *field {
                "title" => item.title = v.clone(),
                "titleSort" => item.title_sort = val,
                "originalTitle" => item.original_title = val,
                "summary" => item.summary = val,
                "studio" => item.studio = val,
                "tagline" => item.tagline = val,
                "originallyAvailableAt" => item.originally_available_at = val,
                "contentRating" => item.content_rating = val,
                "addedAt" => {
                    if let Ok(t) = v.parse::<i64>() {
                        item.added_at = t;
                    }
                }
                _ => {}
            }
        }
        for (name, on) in &self.locks {
            if *on {
                item.locked.insert(name.clone());
            } else {
                item.locked.remove(name);
            }
        }
        for kind in &self.tag_clears {
            item.tags.remove(kind);
        }
        for (kind, entries) in &self.tag_sets {
            let old = item.tags.remove(kind).unwrap_or_default();
            let mut list: Vec<TagEntry> = Vec::new();
            for entry in entries.values() {
                if entry.name.is_empty() || list.iter().any(|t| t.name == entry.name) {
                    continue;
                }
                let prev = old.iter().find(|t| t.name == entry.name);
                list.push(TagEntry {
                    name: entry.name.clone(),
                    role: entry.role.clone().or_else(|| prev.and_then(|p| p.role.clone())),
                    thumb: entry.thumb.clone().or_else(|| prev.and_then(|p| p.thumb.clone())),
                });
            }
            if !list.is_empty() {
                item.tags.insert(*kind, list);
            }
        }
        for (kind, names) in &self.tag_removals {
            if let Some(list) = item.tags.get_mut(kind) {
                list.retain(|t| !names.contains(&t.name));
                if list.is_empty() {
                    item.tags.remove(kind);
                }
            }
        }
        item.bump();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SortField {
    TitleSort,
    Title,
    AddedAt,
    UpdatedAt,
    OriginallyAvailableAt,
    RatingKey,
    Index,
}

fn parse_sort(s: &str) -> Result<(SortField, bool), ()> {
    let (field, dir) = match s.split_once(':') {
        Some((f, d)) => (f, d),
        None => (s, "asc"),
    };
    let desc = match dir {
        "asc" => false,
        "desc" => true,
        _ => return Err(()),
    };
    let field = match field {
        "titleSort" => SortField::TitleSort,
        "title" => SortField::Title,
        "addedAt" => SortField::AddedAt,
        "updatedAt" => SortField::UpdatedAt,
        "originallyAvailableAt" => SortField::OriginallyAvailableAt,
        "id" | "ratingKey" => SortField::RatingKey,
        "index" | "episode.index" => SortField::Index,
        _ => return Err(()),
    };
    Ok((field, desc))
}

fn sort_items(items: &mut [&Item], sort: Option<&(SortField, bool)>, kind: ItemKind) {
    let default = match kind {
        ItemKind::Movie => (SortField::TitleSort, false),
        ItemKind::Episode => (SortField::Index, false),
    };
    let (field, desc) = sort.copied().unwrap_or(default);
    // Text keys are computed once per item, not per comparison (a page of
    // a 100,000-item library is sorted on every request).
    match field {
        SortField::TitleSort | SortField::Title => {
            let key =
                |i: &Item| if matches!(field, SortField::TitleSort) { i.sort_title() } else { i.title.to_lowercase() };
            if desc {
                items.sort_by_cached_key(|i| (std::cmp::Reverse(key(i)), i.rk));
            } else {
                items.sort_by_cached_key(|i| (key(i), i.rk));
            }
            return;
        }
        _ => {}
    }
    items.sort_by(|a, b| {
        let ord = match field {
            SortField::TitleSort => a.sort_title().cmp(&b.sort_title()),
            SortField::Title => a.title.to_lowercase().cmp(&b.title.to_lowercase()),
            SortField::AddedAt => a.added_at.cmp(&b.added_at),
            SortField::UpdatedAt => a.updated_at.cmp(&b.updated_at),
            SortField::OriginallyAvailableAt => a.originally_available_at.cmp(&b.originally_available_at),
            SortField::RatingKey => a.rk.cmp(&b.rk),
            SortField::Index => a.index.cmp(&b.index),
        };
        let ord = if desc { ord.reverse() } else { ord };
        ord.then(a.rk.cmp(&b.rk))
    });
}

// ---------------------------------------------------------------------------
// JSON shapes
// ---------------------------------------------------------------------------

fn section_json(s: &Section) -> Value {
    let (ty, agent, scanner, art, thumb) = match s.kind {
        SectionKind::Movie => {
            ("movie", "tv.plex.agents.movie", "Plex Movie", "/:/resources/movie-fanart.jpg", "/:/resources/movie.png")
        }
        SectionKind::Show => {
            ("show", "tv.plex.agents.series", "Plex TV Series", "/:/resources/show-fanart.jpg", "/:/resources/show.png")
        }
    };
    let locations: Vec<Value> = s.locations.iter().map(|(id, p)| json!({"id": id, "path": p})).collect();
    json!({
        "allowSync": true,
        "art": art,
        "composite": format!("/library/sections/{}/composite/{}", s.key, s.scanned_at),
        "filters": true,
        "refreshing": !s.pending_scans.is_empty(),
        "thumb": thumb,
        "key": s.key,
        "type": ty,
        "title": s.title,
        "agent": agent,
        "scanner": scanner,
        "language": "en-US",
        "uuid": s.uuid,
        "updatedAt": s.scanned_at,
        "createdAt": s.created_at,
        "scannedAt": s.scanned_at,
        "content": true,
        "directory": true,
        "contentChangedAt": s.scanned_at,
        "hidden": 0,
        "Location": locations,
    })
}

fn container_of(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .filter(|e| e.len() <= 5 && !e.contains('/'))
        .unwrap_or_else(|| "mp4".to_string())
}

fn item_json(lib: &Library, sec: &Section, item: &Item, full: bool) -> Value {
    let mut m = Map::new();
    let rk = item.rk;
    m.insert("ratingKey".into(), json!(rk.to_string()));
    m.insert("key".into(), json!(format!("/library/metadata/{rk}")));
    m.insert("guid".into(), json!(format!("local://{rk}")));
    m.insert("type".into(), json!(item.kind.name()));
    m.insert("title".into(), json!(item.title));
    if full {
        m.insert("librarySectionTitle".into(), json!(sec.title));
        m.insert("librarySectionID".into(), sec.id_json());
        m.insert("librarySectionKey".into(), json!(format!("/library/sections/{}", sec.key)));
    }
    for (key, field) in [
        ("titleSort", "titleSort"),
        ("originalTitle", "originalTitle"),
        ("studio", "studio"),
        ("contentRating", "contentRating"),
        ("summary", "summary"),
        ("tagline", "tagline"),
        ("originallyAvailableAt", "originallyAvailableAt"),
    ] {
        if let Some(v) = item.scalar(field) {
            m.insert(key.into(), json!(v));
        }
    }
    if let Some(year) =
        item.originally_available_at.as_deref().and_then(|d| d.get(..4)).and_then(|y| y.parse::<u32>().ok())
    {
        m.insert("year".into(), json!(year));
    }
    if item.kind == ItemKind::Episode {
        if let Some(show) = sec.show_rk {
            m.insert("grandparentRatingKey".into(), json!(show.to_string()));
            m.insert("grandparentKey".into(), json!(format!("/library/metadata/{show}")));
        }
        m.insert("grandparentTitle".into(), json!(sec.title));
        m.insert("parentTitle".into(), json!("Season 1"));
        m.insert("parentIndex".into(), json!(1));
        m.insert("index".into(), json!(item.index));
    }
    if let Some(r) = item.user_rating {
        m.insert("userRating".into(), json!(r));
    }
    m.insert("thumb".into(), json!(format!("/library/metadata/{rk}/thumb/{}", item.thumb_ts)));
    m.insert("art".into(), json!(format!("/library/metadata/{rk}/art/{}", item.art_ts)));
    m.insert("duration".into(), json!(item.duration_ms));
    m.insert("addedAt".into(), json!(item.added_at));
    m.insert("updatedAt".into(), json!(item.updated_at));
    let media: Vec<Value> = item
        .parts
        .iter()
        .map(|p| {
            let container = container_of(&p.file);
            json!({
                "id": p.id,
                "duration": item.duration_ms,
                "videoResolution": "1080",
                "container": container,
                "Part": [{
                    "id": p.id,
                    "key": format!("/library/parts/{}/{}/file.{}", p.id, item.added_at, container),
                    "duration": item.duration_ms,
                    "file": p.file,
                    "size": p.size,
                    "container": container,
                }],
            })
        })
        .collect();
    m.insert("Media".into(), Value::Array(media));
    for kind in TagKind::ALL {
        let Some(list) = item.tags.get(&kind).filter(|l| !l.is_empty()) else {
            continue;
        };
        let tags: Vec<Value> = if full {
            list.iter()
                .map(|t| {
                    let id = lib.tag_ids.get(&(kind, t.name.clone())).copied().unwrap_or(0);
                    let mut e = Map::new();
                    e.insert("id".into(), json!(id));
                    e.insert("filter".into(), json!(format!("{}={id}", kind.param())));
                    e.insert("tag".into(), json!(t.name));
                    if let Some(r) = &t.role {
                        e.insert("role".into(), json!(r));
                    }
                    if let Some(th) = &t.thumb {
                        e.insert("thumb".into(), json!(th));
                    }
                    Value::Object(e)
                })
                .collect()
        } else {
            list.iter().take(LIST_TAG_LIMIT).map(|t| json!({"tag": t.name})).collect()
        };
        m.insert(kind.json_key().into(), Value::Array(tags));
    }
    if full && !item.locked.is_empty() {
        let fields: Vec<Value> = item.locked.iter().map(|n| json!({"locked": true, "name": n})).collect();
        m.insert("Field".into(), Value::Array(fields));
    }
    Value::Object(m)
}

fn show_json(lib: &Library, sec: &Section, full: bool) -> Value {
    let rk = sec.show_rk.unwrap_or(0);
    let episodes: Vec<&Item> = lib.items.values().filter(|i| i.section == sec.key).collect();
    let added = episodes.iter().map(|i| i.added_at).min().unwrap_or(0);
    let updated = episodes.iter().map(|i| i.updated_at).max().unwrap_or(0);
    let mut m = Map::new();
    m.insert("ratingKey".into(), json!(rk.to_string()));
    m.insert("key".into(), json!(format!("/library/metadata/{rk}/children")));
    m.insert("guid".into(), json!(format!("local://{rk}")));
    m.insert("type".into(), json!("show"));
    m.insert("title".into(), json!(sec.title));
    if full {
        m.insert("librarySectionTitle".into(), json!(sec.title));
        m.insert("librarySectionID".into(), sec.id_json());
        m.insert("librarySectionKey".into(), json!(format!("/library/sections/{}", sec.key)));
    }
    m.insert("index".into(), json!(1));
    m.insert("leafCount".into(), json!(episodes.len()));
    m.insert("viewedLeafCount".into(), json!(0));
    m.insert("childCount".into(), json!(1));
    m.insert("addedAt".into(), json!(added));
    m.insert("updatedAt".into(), json!(updated));
    m.insert("thumb".into(), json!(format!("/library/metadata/{rk}/thumb/{updated}")));
    Value::Object(m)
}

// ---------------------------------------------------------------------------
// XML rendition (PMS's default format when no JSON is asked for)
// ---------------------------------------------------------------------------

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_element(out: &mut String, name: &str, m: &Map<String, Value>) {
    out.push('<');
    out.push_str(name);
    let mut children = Vec::new();
    for (k, v) in m {
        let text = match v {
            Value::Array(a) => {
                children.push((k, a));
                continue;
            }
            Value::Object(_) | Value::Null => continue,
            Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            Value::String(s) => xml_escape(s),
            Value::Number(n) => n.to_string(),
        };
        out.push_str(&format!(" {k}=\"{text}\""));
    }
    if children.is_empty() {
        out.push_str(" />\n");
        return;
    }
    out.push_str(">\n");
    for (k, arr) in children {
        for v in arr {
            if let Value::Object(c) = v {
                let child = match (k.as_str(), c.get("type").and_then(Value::as_str)) {
                    ("Metadata", Some("movie" | "episode" | "clip")) => "Video",
                    ("Metadata", _) => "Directory",
                    (other, _) => other,
                };
                xml_element(out, child, c);
            }
        }
    }
    out.push_str(&format!("</{name}>\n"));
}

fn to_xml(v: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    match v.get("MediaContainer") {
        Some(Value::Object(m)) => xml_element(&mut out, "MediaContainer", m),
        _ => out.push_str("<MediaContainer size=\"0\" />\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultMode;
    use crate::test_client::{get_json, request};

    const TOKEN: &str = "tok-123";
    const AUTH: (&str, &str) = ("X-Plex-Token", TOKEN);

    fn movie(i: usize) -> ItemSpec {
        ItemSpec {
            genres: vec!["A".into(), "B".into(), "C".into(), "D".into()],
            ..ItemSpec::new(&format!("Movie {i}"), &format!("/data/Movies/Movie {i}.mkv"))
        }
    }

    fn plex_with_movies(n: usize) -> (FakePlex, Vec<String>) {
        let plex = FakePlex::start(Some(TOKEN)).expect("start");
        plex.add_section("1", "Movies", SectionKind::Movie, &["/data/Movies"]);
        let rks = (0..n).map(|i| plex.add_item("1", movie(i))).collect();
        (plex, rks)
    }

    fn put(plex: &FakePlex, query: &str) -> crate::test_client::Resp {
        request(plex.port(), "PUT", &format!("/library/sections/1/all?{query}"), &[AUTH], b"").expect("PUT")
    }

    #[test]
    fn token_is_required_everywhere_but_identity() {
        let (plex, _) = plex_with_movies(1);
        let id = get_json(plex.port(), "/identity", &[]);
        assert_eq!(id.status, 200);
        let v = id.json();
        assert_eq!(v["MediaContainer"]["claimed"], json!(true));
        assert_eq!(v["MediaContainer"]["version"], json!(PLEX_VERSION));

        let denied = get_json(plex.port(), "/library/sections", &[]);
        assert_eq!(denied.status, 401);
        assert_eq!(denied.header("content-type"), Some("text/html"));
        assert!(denied.text().contains("<h1>401 Unauthorized</h1>"));
        assert!(serde_json::from_slice::<Value>(&denied.body).is_err());
        let wrong = get_json(plex.port(), "/", &[("X-Plex-Token", "nope")]);
        assert_eq!(wrong.status, 401);

        assert_eq!(get_json(plex.port(), "/library/sections", &[AUTH]).status, 200);
        let by_query = get_json(plex.port(), &format!("/?X-Plex-Token={TOKEN}"), &[]);
        assert_eq!(by_query.status, 200);
        assert_eq!(by_query.json()["MediaContainer"]["platform"], json!("Linux"));

        let unclaimed = FakePlex::start(None).expect("start");
        assert_eq!(get_json(unclaimed.port(), "/library/sections", &[]).status, 200);
        let id = get_json(unclaimed.port(), "/identity", &[]).json();
        assert_eq!(id["MediaContainer"]["claimed"], json!(false));
    }

    #[test]
    fn sections_have_string_keys_locations_and_integer_hidden() {
        let (plex, _) = plex_with_movies(0);
        plex.add_section("2", "TV Shows", SectionKind::Show, &["/data/TV Shows"]);
        for path in ["/library/sections", "/library/sections/all"] {
            let v = get_json(plex.port(), path, &[AUTH]).json();
            let dirs = v["MediaContainer"]["Directory"].as_array().expect("dirs").clone();
            assert_eq!(v["MediaContainer"]["size"], json!(2));
            assert_eq!(dirs[0]["key"], json!("1"));
            assert_eq!(dirs[0]["type"], json!("movie"));
            assert_eq!(dirs[0]["hidden"], json!(0));
            assert_eq!(dirs[0]["refreshing"], json!(false));
            assert_eq!(dirs[0]["Location"][0]["path"], json!("/data/Movies"));
            assert_eq!(dirs[1]["type"], json!("show"));
            assert_eq!(dirs[1]["Location"][0]["path"], json!("/data/TV Shows"));
        }
    }

    #[test]
    fn the_listing_order_follows_edits_additions_and_removals() {
        let (plex, rks) = plex_with_movies(3);
        let titles = |sort: &str| -> Vec<String> {
            let v = get_json(plex.port(), &format!("/library/sections/1/all?type=1{sort}"), &[AUTH]).json();
            let items = v["MediaContainer"]["Metadata"].as_array().cloned().unwrap_or_default();
            items.iter().map(|i| i["title"].as_str().unwrap_or_default().to_string()).collect()
        };
        assert_eq!(titles(""), ["Movie 0", "Movie 1", "Movie 2"]);
        assert_eq!(titles("&sort=titleSort:desc"), ["Movie 2", "Movie 1", "Movie 0"]);
        // A title edited through the API moves the item.
        assert_eq!(put(&plex, &format!("type=1&id={}&title.value=AAA&title.locked=1", rks[2])).status, 200);
        assert_eq!(titles(""), ["AAA", "Movie 0", "Movie 1"]);
        assert_eq!(titles("&sort=titleSort:desc"), ["Movie 1", "Movie 0", "AAA"]);
        // And one edited in Plex Web, one added, one deleted.
        assert!(plex.user_edit(&rks[0], "title", "ZZZ"));
        plex.add_item("1", movie(7));
        assert!(plex.remove_item(&rks[1]));
        assert_eq!(titles(""), ["AAA", "Movie 7", "ZZZ"]);
        assert_eq!(titles("&sort=id"), ["ZZZ", "AAA", "Movie 7"]);
    }

    #[test]
    fn paging_by_headers_or_query_reports_totals() {
        let (plex, _) = plex_with_movies(5);
        let r = get_json(
            plex.port(),
            "/library/sections/1/all?type=1",
            &[AUTH, ("X-Plex-Container-Start", "0"), ("X-Plex-Container-Size", "2")],
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-Plex-Container-Total-Size"), Some("5"));
        assert_eq!(r.header("X-Plex-Container-Start"), Some("0"));
        let mc = r.json()["MediaContainer"].clone();
        assert_eq!(mc["size"], json!(2));
        assert_eq!(mc["totalSize"], json!(5));
        assert_eq!(mc["offset"], json!(0));
        assert_eq!(mc["librarySectionID"], json!(1));
        assert_eq!(mc["Metadata"].as_array().map(Vec::len), Some(2));

        let last = get_json(
            plex.port(),
            "/library/sections/1/all?type=1&X-Plex-Container-Start=4&X-Plex-Container-Size=2",
            &[AUTH],
        )
        .json();
        assert_eq!(last["MediaContainer"]["size"], json!(1));
        assert_eq!(last["MediaContainer"]["Metadata"][0]["title"], json!("Movie 4"));

        let past = get_json(
            plex.port(),
            "/library/sections/1/all?type=1",
            &[AUTH, ("X-Plex-Container-Start", "10"), ("X-Plex-Container-Size", "2")],
        )
        .json();
        assert_eq!(past["MediaContainer"]["size"], json!(0));
        assert_eq!(past["MediaContainer"]["totalSize"], json!(5));
        assert!(past["MediaContainer"].get("Metadata").is_none());

        let all = get_json(plex.port(), "/library/sections/1/all?type=1", &[AUTH]).json();
        assert_eq!(all["MediaContainer"]["size"], json!(5));
        assert!(all["MediaContainer"].get("totalSize").is_none());

        let bad = get_json(plex.port(), "/library/sections/1/all?type=1", &[AUTH, ("X-Plex-Container-Start", "x")]);
        assert_eq!(bad.status, 400);
        assert_eq!(get_json(plex.port(), "/library/sections/9/all", &[AUTH]).status, 404);
    }

    #[test]
    fn list_entries_are_truncated_without_ids_or_fields() {
        let (plex, rks) = plex_with_movies(1);
        put(&plex, &format!("type=1&id={}&title.locked=1", rks[0]));
        let v = get_json(plex.port(), "/library/sections/1/all?type=1&title=movie%200", &[AUTH]).json();
        let e = &v["MediaContainer"]["Metadata"][0];
        assert_eq!(e["ratingKey"], json!(rks[0]));
        assert_eq!(e["Media"][0]["Part"][0]["file"], json!("/data/Movies/Movie 0.mkv"));
        assert_eq!(e["Genre"], json!([{"tag": "A"}, {"tag": "B"}, {"tag": "C"}]));
        assert!(e.get("Field").is_none());
        assert!(e.get("librarySectionID").is_none());

        let none = get_json(plex.port(), "/library/sections/1/all?type=1&title=zzz", &[AUTH]).json();
        assert_eq!(none["MediaContainer"]["size"], json!(0));
        assert!(none["MediaContainer"].get("Metadata").is_none());
    }

    #[test]
    fn edit_value_and_lock_then_unlock() {
        let (plex, rks) = plex_with_movies(2);
        let rk = &rks[0];
        let before = plex.item(rk).expect("item").updated_at;
        let r = put(
            &plex,
            &format!(
                "type=1&id={rk}&title.value=New%20Title&title.locked=1&summary.value=S%20%26%20T&originallyAvailableAt.value=2024-05-17"
            ),
        );
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        let v = get_json(plex.port(), &format!("/library/metadata/{rk}"), &[AUTH]).json();
        let m = &v["MediaContainer"]["Metadata"][0];
        assert_eq!(m["title"], json!("New Title"));
        assert_eq!(m["summary"], json!("S & T"));
        assert_eq!(m["year"], json!(2024));
        assert_eq!(m["librarySectionID"], json!(1));
        assert_eq!(m["librarySectionKey"], json!("/library/sections/1"));
        assert_eq!(m["Field"], json!([{"locked": true, "name": "title"}]));
        assert!(m["updatedAt"].as_i64().unwrap_or(0) > before);
        // The other item was not touched.
        assert_eq!(plex.item(&rks[1]).map(|i| i.title), Some("Movie 1".into()));

        put(&plex, &format!("type=1&id={rk}&title.locked=0&summary.value="));
        let v = get_json(plex.port(), &format!("/library/metadata/{rk}"), &[AUTH]).json();
        let m = &v["MediaContainer"]["Metadata"][0];
        assert!(m.get("Field").is_none());
        assert!(m.get("summary").is_none());
        assert_eq!(m["title"], json!("New Title"));
    }

    #[test]
    fn invalid_parameters_are_rejected_atomically() {
        let (plex, rks) = plex_with_movies(1);
        let rk = &rks[0];
        let before = plex.item(rk).expect("item");
        let r = put(&plex, &format!("type=1&id={rk}&title.value=X&title.locked=1&sortTitle.value=Y"));
        assert_eq!(r.status, 400);
        assert!(r.text().starts_with("<html>"));
        assert_eq!(plex.item(rk), Some(before.clone()));
        let r = put(&plex, &format!("type=1&id={rk}&title.value=X&originallyAvailableAt.value=2024-13-40"));
        assert_eq!(r.status, 500);
        let r = put(&plex, &format!("type=1&id={rk}&title.locked=yes"));
        assert_eq!(r.status, 400);
        assert_eq!(plex.item(rk), Some(before));
        assert_eq!(put(&plex, "type=1&id=1000&title.value=X").status, 200);
        let missing = request(plex.port(), "PUT", "/library/sections/7/all?type=1&id=1", &[AUTH], b"").expect("PUT");
        assert_eq!(missing.status, 404);
    }

    #[test]
    fn tags_replace_and_double_encoded_removal() {
        let (plex, rks) = plex_with_movies(1);
        let rk = &rks[0];
        let r = put(
            &plex,
            &format!(
                "type=1&id={rk}&genre%5B0%5D.tag.tag=Sci-Fi%20%26%20Fantasy&genre[1].tag.tag=Action%2C%20Adventure&genre[2].tag.tag=Drama&genre.locked=1&actor[0].tag.tag=Jane%20Doe&actor[0].tagging.text=Herself"
            ),
        );
        assert_eq!(r.status, 200);
        let item = plex.item(rk).expect("item");
        assert_eq!(item.genres, vec!["Sci-Fi & Fantasy", "Action, Adventure", "Drama"]);
        assert_eq!(item.actors, vec!["Jane Doe"]);
        assert!(item.locked_fields.contains("genre"));

        let v = get_json(plex.port(), &format!("/library/metadata/{rk}"), &[AUTH]).json();
        let m = &v["MediaContainer"]["Metadata"][0];
        let role = &m["Role"][0];
        assert_eq!(role["tag"], json!("Jane Doe"));
        assert_eq!(role["role"], json!("Herself"));
        assert!(role["filter"].as_str().is_some_and(|f| f.starts_with("actor=")));
        assert!(m["Genre"][0]["id"].as_u64().is_some());

        let r = put(
            &plex,
            &format!(
                "type=1&id={rk}&genre[].tag.tag-=Sci-Fi%2520%2526%2520Fantasy%2CAction%252C%2520Adventure&genre.locked=1"
            ),
        );
        assert_eq!(r.status, 200);
        assert_eq!(plex.item(rk).map(|i| i.genres), Some(vec!["Drama".to_string()]));
    }

    #[test]
    fn edit_without_id_hits_every_item_and_wrong_type_hits_none() {
        let (plex, rks) = plex_with_movies(3);
        assert_eq!(put(&plex, "type=4&studio.value=Nope").status, 200);
        assert!(plex.items(Some("1")).iter().all(|i| i.studio.is_none()));
        assert_eq!(put(&plex, "type=1&studio.value=Everyone").status, 200);
        for rk in &rks {
            assert_eq!(plex.item(rk).and_then(|i| i.studio), Some("Everyone".into()));
        }
    }

    #[test]
    fn metadata_404_and_comma_lists() {
        let (plex, rks) = plex_with_movies(2);
        let r = get_json(plex.port(), "/library/metadata/99999", &[AUTH]);
        assert_eq!(r.status, 404);
        assert!(serde_json::from_slice::<Value>(&r.body).is_err());
        let v = get_json(plex.port(), &format!("/library/metadata/{},{}", rks[0], rks[1]), &[AUTH]).json();
        assert_eq!(v["MediaContainer"]["size"], json!(2));
        plex.remove_item(&rks[0]);
        assert_eq!(get_json(plex.port(), &format!("/library/metadata/{}", rks[0]), &[AUTH]).status, 404);
        assert_eq!(get_json(plex.port(), "/no/such/thing", &[AUTH]).status, 404);
    }

    #[test]
    fn show_sections_hold_episodes() {
        let plex = FakePlex::start(None).expect("start");
        plex.add_section("2", "Scenes", SectionKind::Show, &["/data/Scenes"]);
        let rk = plex.add_item("2", ItemSpec::new("Ep", "/data/Scenes/S01E01.mp4"));
        let shows = get_json(plex.port(), "/library/sections/2/all", &[]).json();
        assert_eq!(shows["MediaContainer"]["Metadata"][0]["type"], json!("show"));
        assert!(shows["MediaContainer"]["Metadata"][0].get("Media").is_none());
        let eps = get_json(plex.port(), "/library/sections/2/all?type=4", &[]).json();
        assert_eq!(eps["MediaContainer"]["Metadata"][0]["type"], json!("episode"));
        assert_eq!(eps["MediaContainer"]["Metadata"][0]["ratingKey"], json!(rk));
        let movies = get_json(plex.port(), "/library/sections/2/all?type=1", &[]).json();
        assert_eq!(movies["MediaContainer"]["size"], json!(0));

        let edit = |q: &str| {
            request(plex.port(), "PUT", &format!("/library/sections/2/all?{q}"), &[], b"").expect("PUT").status
        };
        assert_eq!(edit(&format!("type=1&id={rk}&title.value=Wrong")), 200);
        assert_eq!(plex.item(&rk).map(|i| i.title), Some("Ep".into()));
        assert_eq!(edit(&format!("type=4&id={rk}&title.value=Right")), 200);
        assert_eq!(plex.item(&rk).map(|i| i.title), Some("Right".into()));
    }

    #[test]
    fn uploads_are_recorded_and_lock_the_image() {
        let (plex, rks) = plex_with_movies(1);
        let rk = &rks[0];
        let r = request(plex.port(), "POST", &format!("/library/metadata/{rk}/posters"), &[AUTH], &[0xFF; 1234])
            .expect("POST");
        assert_eq!(r.status, 200);
        let r = request(
            plex.port(),
            "POST",
            &format!("/library/metadata/{rk}/arts?url=http%3A%2F%2Fstash%2Fscene%2F1%2Fscreenshot"),
            &[AUTH],
            b"",
        )
        .expect("POST");
        assert_eq!(r.status, 200);
        let item = plex.item(rk).expect("item");
        assert_eq!(item.poster_uploads, vec![1234]);
        assert_eq!(item.art_urls, vec!["http://stash/scene/1/screenshot".to_string()]);
        assert!(item.locked_fields.contains("thumb") && item.locked_fields.contains("art"));
        let r = request(plex.port(), "POST", "/library/metadata/5/posters", &[AUTH], b"x").expect("POST");
        assert_eq!(r.status, 404);
    }

    #[test]
    fn posters_list_uploads_by_sha1_select_and_never_delete() {
        let (plex, rks) = plex_with_movies(1);
        let rk = &rks[0];
        let list = |kind: &str| get_json(plex.port(), &format!("/library/metadata/{rk}/{kind}"), &[AUTH]).json();
        let v = list("posters");
        assert_eq!(v["MediaContainer"]["Metadata"][0]["ratingKey"], json!(AGENT_POSTER));
        assert_eq!(v["MediaContainer"]["Metadata"][0]["selected"], json!(true));
        let post = |body: &[u8]| {
            request(plex.port(), "POST", &format!("/library/metadata/{rk}/posters"), &[AUTH], body)
                .expect("POST")
                .status
        };
        assert_eq!(post(b"abc"), 200);
        let v = list("posters");
        let entries = v["MediaContainer"]["Metadata"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 2);
        // SHA-1("abc"), selected; the agent's poster is still there.
        assert_eq!(entries[1]["ratingKey"], json!("upload://posters/a9993e364706816aba3e25717850c26c9cd0d89d"));
        assert_eq!(entries[1]["selected"], json!(true));
        assert_eq!(entries[0]["selected"], json!(false));
        // Select the old one again; the upload stays.
        let sel = request(
            plex.port(),
            "PUT",
            &format!("/library/metadata/{rk}/poster?url={}", crate::http_util::percent_encode(AGENT_POSTER)),
            &[AUTH],
            b"",
        )
        .expect("PUT");
        assert_eq!(sel.status, 200);
        let v = list("posters");
        assert_eq!(v["MediaContainer"]["Metadata"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["MediaContainer"]["Metadata"][0]["selected"], json!(true));
        let bad = request(plex.port(), "PUT", &format!("/library/metadata/{rk}/poster?url=nope"), &[AUTH], b"");
        assert_eq!(bad.expect("PUT").status, 404);
        // Background art: none until one is uploaded.
        assert!(list("arts")["MediaContainer"].get("Metadata").is_none());
        assert_eq!(plex.item(rk).unwrap().poster_uploads, vec![3]);
    }

    #[test]
    fn rate_sets_and_clears_the_user_rating() {
        let (plex, rks) = plex_with_movies(1);
        let rk = &rks[0];
        let rate = |q: &str| request(plex.port(), "PUT", &format!("/:/rate?{q}"), &[AUTH], b"").expect("PUT").status;
        assert_eq!(rate(&format!("key={rk}&identifier=com.plexapp.plugins.library&rating=8.5")), 200);
        assert_eq!(plex.item(rk).unwrap().user_rating, Some(8.5));
        let v = get_json(plex.port(), &format!("/library/metadata/{rk}"), &[AUTH]).json();
        assert_eq!(v["MediaContainer"]["Metadata"][0]["userRating"], json!(8.5));
        assert_eq!(rate(&format!("key={rk}&identifier=com.plexapp.plugins.library&rating=-1")), 200);
        assert_eq!(plex.item(rk).unwrap().user_rating, None);
        assert_eq!(rate(&format!("key={rk}&identifier=x&rating=5")), 400);
        assert_eq!(rate(&format!("key={rk}&identifier=com.plexapp.plugins.library&rating=11")), 400);
        assert_eq!(rate("key=1&identifier=com.plexapp.plugins.library&rating=5"), 404);
    }

    #[test]
    fn activities_show_scans_until_they_complete() {
        let (plex, _) = plex_with_movies(0);
        plex.set_scan_delay(Duration::from_millis(300));
        plex.stage_item("1", ItemSpec::new("New", "/data/Movies/New/New.mkv"));
        let acts = || get_json(plex.port(), "/activities", &[AUTH]).json();
        assert_eq!(acts()["MediaContainer"]["size"], json!(0));
        let r = get_json(plex.port(), "/library/sections/1/refresh?path=%2Fdata%2FMovies%2FNew", &[AUTH]);
        assert_eq!(r.status, 200);
        let v = acts();
        assert_eq!(v["MediaContainer"]["Activity"][0]["type"], json!("library.update.section"));
        assert_eq!(v["MediaContainer"]["Activity"][0]["Context"]["librarySectionID"], json!("1"));
        assert!(plex.find_by_file("/data/Movies/New/New.mkv").is_none());
        thread::sleep(Duration::from_millis(350));
        assert_eq!(acts()["MediaContainer"]["size"], json!(0));
        assert!(plex.find_by_file("/data/Movies/New/New.mkv").is_some());
    }

    #[test]
    fn refresh_scans_staged_files_under_the_path() {
        let (plex, _) = plex_with_movies(0);
        plex.stage_item("1", ItemSpec::new("New", "/data/Movies/New/New.mkv"));
        plex.stage_item("1", ItemSpec::new("Other", "/data/Movies/Other/Other.mkv"));
        assert!(plex.find_by_file("/data/Movies/New/New.mkv").is_none());
        let r = get_json(plex.port(), "/library/sections/1/refresh?path=%2Fdata%2FMovies%2FNew", &[AUTH]);
        assert_eq!(r.status, 200);
        assert!(plex.find_by_file("/data/Movies/New/New.mkv").is_some());
        assert!(plex.find_by_file("/data/Movies/Other/Other.mkv").is_none());
        assert_eq!(get_json(plex.port(), "/library/sections/8/refresh", &[AUTH]).status, 404);
    }

    #[test]
    fn xml_is_the_default_format() {
        let (plex, _) = plex_with_movies(1);
        let r = request(plex.port(), "GET", "/library/sections", &[AUTH], b"").expect("GET");
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/xml")));
        let body = r.text();
        assert!(body.starts_with("<?xml"));
        assert!(body.contains("<Directory ") && body.contains("<Location "));
    }

    #[test]
    fn refuse_closes_the_port_and_up_reopens_the_same_port() {
        let (plex, _) = plex_with_movies(1);
        let port = plex.port();
        plex.faults().set(FaultMode::Refuse);
        let err = request(port, "GET", "/identity", &[], b"").expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        plex.faults().set(FaultMode::Up);
        assert_eq!(plex.port(), port);
        assert_eq!(get_json(port, "/identity", &[]).status, 200);
    }

    #[test]
    fn status_garbage_reset_and_one_shot_faults() {
        let (plex, _) = plex_with_movies(1);
        let port = plex.port();
        plex.faults().set(FaultMode::maintenance());
        let r = get_json(port, "/identity", &[]);
        assert_eq!(r.status, 503);
        assert!(r.text().contains("database migrations"));
        plex.faults().set(FaultMode::too_many_requests(3));
        assert_eq!(get_json(port, "/identity", &[]).status, 200);
        let r = get_json(port, "/library/sections", &[AUTH]);
        assert_eq!((r.status, r.header("Retry-After")), (429, Some("3")));

        plex.faults().set(FaultMode::Garbage);
        let r = get_json(port, "/library/sections", &[AUTH]);
        assert_eq!(r.status, 200);
        assert!(serde_json::from_slice::<Value>(&r.body).is_err());

        plex.faults().set(FaultMode::Reset);
        let err = request(port, "GET", "/library/sections", &[AUTH], b"").expect_err("reset");
        assert!(matches!(err.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset));

        plex.faults().set(FaultMode::Up);
        plex.clear_requests();
        let before = plex.faults().faulted_count();
        plex.faults().fail_next(2, FaultMode::status(500));
        assert_eq!(get_json(port, "/library/sections", &[AUTH]).status, 500);
        assert_eq!(get_json(port, "/library/sections", &[AUTH]).status, 500);
        assert_eq!(get_json(port, "/library/sections", &[AUTH]).status, 200);
        assert_eq!(plex.faults().faulted_count() - before, 2);
        let statuses: Vec<u16> = plex.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![500, 500, 200]);
        assert_eq!(plex.count("GET", "/library/sections"), 3);
        assert_eq!(plex.requests()[0].header("accept"), Some("application/json"));
    }

    #[test]
    fn latency_delays_answers() {
        let (plex, _) = plex_with_movies(0);
        plex.set_latency(Duration::from_millis(150));
        let t = Instant::now();
        assert_eq!(get_json(plex.port(), "/identity", &[]).status, 200);
        assert!(t.elapsed() >= Duration::from_millis(150));
    }
}
