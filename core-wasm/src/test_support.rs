//! A test host for native tests: a fake clock, a seeded generator, the
//! host's real SQLite queue (in memory: the one queue, the same code the
//! plugin runs), scripted Stash scenes, and a small in-memory Plex Media
//! Server that answers the endpoints the policy uses with PMS's JSON shapes
//! and records every request. Settings go through the host's real parser.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::{Value, json};

use crate::host::{
    DeadLetterInfo, EnqueueOutcome, Host, ImageInfo, Job, LogLevel, Method, PlexRequest, PlexResponse, QueueCounts,
    QueueError, RelatedObject, Scene, ScenePage, SceneQuery, Setting, StashError, StateWrite, Studio, TransportError,
    VideoFile,
};
use crate::settings::{self, Settings};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stash2plex::store as real;

// ---------------------------------------------------------------- fake Plex

#[derive(Debug, Clone)]
pub struct FakeSection {
    pub key: String,
    /// `movie`, `show`, `artist`, …
    pub kind: String,
    pub title: String,
    pub locations: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeItem {
    pub rating_key: String,
    pub section: String,
    /// 1 movie, 4 episode.
    pub item_type: u8,
    pub title: String,
    pub summary: String,
    pub studio: String,
    pub date: String,
    pub files: Vec<String>,
    pub locked: BTreeSet<String>,
    /// Other one-value fields (`titleSort`, `tagline`, `contentRating`).
    pub extra: BTreeMap<String, String>,
    /// Tag lists by edit name (`genre`, `actor`, `collection`, `label`).
    pub tags: BTreeMap<String, Vec<String>>,
    pub user_rating: Option<f64>,
}

/// An in-memory PMS.
#[derive(Debug, Default)]
pub struct FakePlex {
    pub sections: Vec<FakeSection>,
    /// In listing order.
    pub items: Vec<FakeItem>,
}

fn section_type(kind: &str) -> Option<u8> {
    match kind {
        "movie" => Some(1),
        "show" => Some(4),
        _ => None,
    }
}

fn type_name(t: u8) -> &'static str {
    match t {
        1 => "movie",
        4 => "episode",
        _ => "unknown",
    }
}

fn json_response(status: u16, value: &Value) -> PlexResponse {
    PlexResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: value.to_string().into_bytes(),
        elapsed_ms: 3,
    }
}

/// Tag names per list in a listing entry (PMS truncates them there).
pub const LISTED_TAGS: usize = 3;

pub fn status_response(status: u16, body: &str) -> PlexResponse {
    PlexResponse { status, headers: Vec::new(), body: body.as_bytes().to_vec(), elapsed_ms: 3 }
}

fn not_found() -> PlexResponse {
    status_response(404, "<html><head><title>Not Found</title></head><body><h1>404 Not Found</h1></body></html>")
}

impl FakePlex {
    pub fn add_section(&mut self, key: &str, kind: &str, title: &str, locations: &[&str]) {
        self.sections.push(FakeSection {
            key: key.into(),
            kind: kind.into(),
            title: title.into(),
            locations: locations.iter().map(|s| s.to_string()).collect(),
        });
    }

    /// Add an item with one file; its type follows the section's.
    pub fn add_item(&mut self, section: &str, rating_key: &str, title: &str, file: &str) {
        let item_type =
            self.sections.iter().find(|s| s.key == section).and_then(|s| section_type(&s.kind)).unwrap_or(1);
        self.items.push(FakeItem {
            rating_key: rating_key.into(),
            section: section.into(),
            item_type,
            title: title.into(),
            files: vec![file.into()],
            ..FakeItem::default()
        });
    }

    pub fn item(&self, rating_key: &str) -> Option<&FakeItem> {
        self.items.iter().find(|i| i.rating_key == rating_key)
    }

    pub fn remove_item(&mut self, rating_key: &str) {
        self.items.retain(|i| i.rating_key != rating_key);
    }

    pub fn handle(&mut self, req: &PlexRequest) -> PlexResponse {
        let path = req.path.as_str();
        match (req.method, path) {
            (Method::Get, "/identity") => json_response(
                200,
                &json!({"MediaContainer": {"size": 0, "claimed": true,
                    "machineIdentifier": "fake0123", "version": "1.41.3.9314-a0bfb8370"}}),
            ),
            (Method::Get, "/library/sections") => self.sections_json(),
            (Method::Put, "/:/rate") => self.rate(req),
            (Method::Get, _) if path.starts_with("/library/metadata/") => {
                self.metadata_json(&path["/library/metadata/".len()..])
            }
            (method, _) if path.starts_with("/library/sections/") && path.ends_with("/all") => {
                let sid = &path["/library/sections/".len()..path.len() - "/all".len()];
                match method {
                    Method::Get => self.listing_json(sid, req),
                    Method::Put => self.edit(sid, req),
                    _ => status_response(405, ""),
                }
            }
            _ => not_found(),
        }
    }

    fn sections_json(&self) -> PlexResponse {
        let dirs: Vec<Value> = self
            .sections
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "allowSync": true, "key": s.key, "type": s.kind, "title": s.title,
                    "agent": "tv.plex.agents.movie", "refreshing": false, "hidden": 0,
                    "uuid": format!("uuid-{}", s.key), "updatedAt": 1735865761,
                    "Location": s.locations.iter().enumerate()
                        .map(|(j, p)| json!({"id": i * 10 + j, "path": p}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        json_response(
            200,
            &json!({"MediaContainer": {"size": dirs.len(), "allowSync": false,
                "title1": "Plex Library", "Directory": dirs}}),
        )
    }

    fn media_json(item: &FakeItem) -> Value {
        Value::Array(
            item.files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    json!({"id": i + 1, "duration": 5062, "container": "mkv",
                        "Part": [{"id": i + 1, "key": format!("/library/parts/{}/file.mkv", i + 1),
                                  "file": f, "size": 13400382, "container": "mkv"}]})
                })
                .collect(),
        )
    }

    fn listing_json(&self, sid: &str, req: &PlexRequest) -> PlexResponse {
        let Some(section) = self.sections.iter().find(|s| s.key == sid) else {
            return not_found();
        };
        let Some(wanted) = req.query_value("type").and_then(|t| t.parse::<u8>().ok()) else {
            return status_response(400, "type required by this fake");
        };
        let items: Vec<&FakeItem> =
            self.items.iter().filter(|i| i.section == section.key && i.item_type == wanted).collect();
        let total = items.len();
        let start: usize = req.header_value("X-Plex-Container-Start").and_then(|v| v.parse().ok()).unwrap_or(0);
        let size: usize = req.header_value("X-Plex-Container-Size").and_then(|v| v.parse().ok()).unwrap_or(total);
        // As PMS lists: the item's fields, but tag lists cut to their first
        // few names and no `Field` (locks) or section keys.
        let page: Vec<Value> = items
            .iter()
            .skip(start)
            .take(size)
            .map(|i| {
                let mut m = Self::item_full_json(i);
                if let Value::Object(o) = &mut m {
                    for key in ["Field", "librarySectionID", "librarySectionKey", "guid"] {
                        o.remove(key);
                    }
                    for key in ["Role", "Genre", "Collection", "Label"] {
                        if let Some(Value::Array(tags)) = o.get_mut(key) {
                            tags.truncate(LISTED_TAGS);
                        }
                    }
                }
                m
            })
            .collect();
        let mut container = json!({"size": page.len(), "totalSize": total, "offset": start,
            "allowSync": true, "librarySectionID": section.key.parse::<u64>().unwrap_or(0),
            "librarySectionTitle": section.title});
        if !page.is_empty() {
            container["Metadata"] = Value::Array(page);
        }
        json_response(200, &json!({ "MediaContainer": container }))
    }

    fn metadata_json(&self, rks: &str) -> PlexResponse {
        let items: Vec<&FakeItem> = rks.split(',').filter_map(|rk| self.item(rk)).collect();
        let Some(first) = items.first() else {
            return not_found();
        };
        let sid = first.section.parse::<u64>().unwrap_or(0);
        let entries: Vec<Value> = items.iter().map(|item| Self::item_full_json(item)).collect();
        json_response(
            200,
            &json!({"MediaContainer": {"size": entries.len(), "librarySectionID": sid, "Metadata": entries}}),
        )
    }

    fn item_full_json(item: &FakeItem) -> Value {
        let rk = &item.rating_key;
        let sid = item.section.parse::<u64>().unwrap_or(0);
        let mut m = json!({"ratingKey": item.rating_key, "key": format!("/library/metadata/{rk}"),
            "guid": format!("plex://movie/{rk}"), "type": type_name(item.item_type),
            "title": item.title, "librarySectionID": sid,
            "librarySectionKey": format!("/library/sections/{}", item.section),
            "addedAt": 1579514268, "updatedAt": 1700000000,
            "Media": Self::media_json(item)});
        // PMS leaves empty fields out.
        for (key, value) in
            [("summary", &item.summary), ("studio", &item.studio), ("originallyAvailableAt", &item.date)]
        {
            if !value.is_empty() {
                m[key] = json!(value);
            }
        }
        for (key, value) in &item.extra {
            if !value.is_empty() {
                m[key.as_str()] = json!(value);
            }
        }
        if let Some(r) = item.user_rating {
            m["userRating"] = json!(r);
        }
        for (name, list) in &item.tags {
            let key = match name.as_str() {
                "actor" => "Role",
                "genre" => "Genre",
                "collection" => "Collection",
                _ => "Label",
            };
            if !list.is_empty() {
                m[key] = Value::Array(list.iter().map(|t| json!({"tag": t})).collect());
            }
        }
        if !item.locked.is_empty() {
            m["Field"] = Value::Array(item.locked.iter().map(|n| json!({"locked": true, "name": n})).collect());
        }
        m
    }

    /// `PUT /:/rate?key=&identifier=&rating=` (−1 clears).
    fn rate(&mut self, req: &PlexRequest) -> PlexResponse {
        let (Some(key), Some(rating)) = (req.query_value("key"), req.query_value("rating")) else {
            return status_response(400, "key and rating required");
        };
        let Ok(rating) = rating.parse::<f64>() else {
            return status_response(400, "bad rating");
        };
        let Some(item) = self.items.iter_mut().find(|i| i.rating_key == key) else {
            return not_found();
        };
        item.user_rating = (rating >= 0.0).then_some(rating);
        status_response(200, "")
    }

    fn edit(&mut self, sid: &str, req: &PlexRequest) -> PlexResponse {
        let (Some(t), Some(id)) = (req.query_value("type"), req.query_value("id")) else {
            return status_response(400, "type and id required");
        };
        let Some(item) = self.items.iter_mut().find(|i| i.rating_key == id && i.section == sid) else {
            return not_found();
        };
        if t != item.item_type.to_string() {
            return status_response(400, "type mismatch");
        }
        let mut replaced: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in &req.query {
            if key == "type" || key == "id" {
                continue;
            }
            if let Some((tag, rest)) = key.split_once('[') {
                // `genre[0].tag.tag=` replaces the list; `genre[].tag.tag-=`
                // removes the (double-encoded) names.
                if !["genre", "actor", "collection", "label"].contains(&tag) {
                    return status_response(400, "unknown tag");
                }
                if rest == "].tag.tag-" {
                    let gone: Vec<String> = value.split(',').map(pct_decode).collect();
                    item.tags.entry(tag.to_string()).or_default().retain(|t| !gone.contains(t));
                } else if rest.ends_with("].tag.tag") {
                    let idx: usize = rest.trim_end_matches("].tag.tag").parse().unwrap_or(0);
                    let list = replaced.entry(tag.to_string()).or_default();
                    if list.len() <= idx {
                        list.resize(idx + 1, String::new());
                    }
                    list[idx] = value.clone();
                } else {
                    return status_response(400, "bad tag parameter");
                }
                continue;
            }
            let Some((field, op)) = key.split_once('.') else {
                return status_response(400, "bad parameter");
            };
            match op {
                "value" => {
                    let slot = match field {
                        "title" => &mut item.title,
                        "summary" => &mut item.summary,
                        "studio" => &mut item.studio,
                        "originallyAvailableAt" => &mut item.date,
                        "titleSort" | "tagline" | "contentRating" => item.extra.entry(field.to_string()).or_default(),
                        _ => return status_response(400, "unknown field"),
                    };
                    *slot = value.clone();
                }
                "locked" => {
                    if value == "1" {
                        item.locked.insert(field.to_string());
                    } else {
                        item.locked.remove(field);
                    }
                }
                _ => return status_response(400, "bad parameter"),
            }
        }
        for (tag, list) in replaced {
            item.tags.insert(tag, list.into_iter().filter(|t| !t.is_empty()).collect());
        }
        status_response(200, "")
    }
}

/// Percent-decoding of one removal name.
fn pct_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

// ---------------------------------------------------------------- fake queue

/// A live job as tests look at it (the queue's own report of it).
pub type FakeJob = real::JobRow;

/// A dead letter as tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadJob {
    pub attempt: u32,
    pub info: DeadLetterInfo,
}

/// The same value in the other crate's generated types (the host's and the
/// policy's bindings of one WIT type have the same serde form).
pub fn convert<A: Serialize, B: DeserializeOwned>(a: A) -> B {
    let value = serde_json::to_value(a).expect("a WIT value serializes");
    serde_json::from_value(value).expect("the two bindings of one WIT type agree")
}

fn queue_error(e: real::QueueError) -> QueueError {
    match e {
        real::QueueError::LeaseLost => QueueError::LeaseLost,
        other => QueueError::Storage(other.to_string()),
    }
}

/// Settings JSON (as Stash stores it) through the host's parser, with this
/// policy's schema: the clean values `configure` receives.
pub fn host_settings(json: &str) -> Result<Vec<Setting>, Vec<String>> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(json).expect("test settings are a JSON object");
    let specs: Vec<stash2plex::runtime::wit::policy::SettingSpec> = convert(settings::schema());
    stash2plex::settings::parse::parse_all(&specs, &map).map(convert)
}

/// Settings JSON as production turns it into [`Settings`].
pub fn parse_settings(json: &str) -> Result<Settings, Vec<String>> {
    settings::from_settings(&host_settings(json)?)
}

// ---------------------------------------------------------------- the host

#[derive(Debug, Clone)]
pub enum Reply {
    Response(PlexResponse),
    Transport(TransportError),
}

#[derive(Debug, Clone)]
struct Script {
    method: Option<Method>,
    path_prefix: String,
    reply: Reply,
    times: u32,
}

pub struct FakeHost {
    now: Cell<i64>,
    rng: Cell<u64>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    progress: RefCell<Vec<f64>>,
    obfuscate: Cell<bool>,
    pub plex: RefCell<FakePlex>,
    requests: RefCell<Vec<PlexRequest>>,
    scripts: RefCell<VecDeque<Script>>,
    scenes: RefCell<HashMap<String, Result<Option<Scene>, StashError>>>,
    scenes_error: RefCell<Option<StashError>>,
    image_error: RefCell<Option<StashError>>,
    queue: RefCell<real::Queue>,
    queue_failure: RefCell<Option<QueueError>>,
    completed: RefCell<Vec<u64>>,
    next_lease: Cell<u64>,
    renewals: Cell<u32>,
    /// (queue call, state keys written with it), in order.
    state_calls: RefCell<Vec<(&'static str, Vec<String>)>>,
    advance_per_request: Cell<i64>,
    steal_leases_at_request: Cell<Option<usize>>,
    digests: Cell<u32>,
    stash_batches: Cell<u32>,
    /// (page, per-page) of every `find-scenes` call.
    scene_pages: RefCell<Vec<(u32, u32)>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHost {
    pub fn new() -> Self {
        FakeHost {
            now: Cell::new(1_700_000_000_000),
            rng: Cell::new(0x5eed_1234_abcd_0042),
            logs: RefCell::default(),
            progress: RefCell::default(),
            obfuscate: Cell::new(false),
            plex: RefCell::default(),
            requests: RefCell::default(),
            scripts: RefCell::default(),
            scenes: RefCell::default(),
            scenes_error: RefCell::default(),
            image_error: RefCell::default(),
            queue: RefCell::new(real::Queue::open_in_memory().expect("an in-memory queue opens")),
            queue_failure: RefCell::default(),
            completed: RefCell::default(),
            next_lease: Cell::new(0),
            renewals: Cell::new(0),
            state_calls: RefCell::default(),
            advance_per_request: Cell::new(0),
            steal_leases_at_request: Cell::new(None),
            digests: Cell::new(0),
            stash_batches: Cell::new(0),
            scene_pages: RefCell::default(),
        }
    }

    // clock
    pub fn set_now(&self, ms: i64) {
        self.now.set(ms);
    }
    pub fn now(&self) -> i64 {
        self.now.get()
    }
    pub fn advance(&self, ms: i64) {
        self.now.set(self.now.get() + ms);
    }

    // log
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }
    /// Every `progress` the policy reported, in order.
    pub fn progress_reports(&self) -> Vec<f64> {
        self.progress.borrow().clone()
    }
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.borrow().iter().any(|(_, m)| m.contains(needle))
    }
    /// Make `obfuscate_path` hide paths (as `obfuscate_paths` would).
    pub fn obfuscate_paths(&self, on: bool) {
        self.obfuscate.set(on);
    }
    /// Let every Plex request take this long on the fake clock.
    pub fn set_request_duration(&self, ms: i64) {
        self.advance_per_request.set(ms);
    }
    /// When the `n`th Plex request is sent, every running job's lease passes
    /// to another (imaginary) drainer.
    pub fn steal_leases_at_request(&self, n: usize) {
        self.steal_leases_at_request.set(Some(n));
    }
    /// `find-scenes` calls so far.
    pub fn stash_batches(&self) -> u32 {
        self.stash_batches.get()
    }
    /// (page, per-page) of every `find-scenes` call so far, in order.
    pub fn scene_pages(&self) -> Vec<(u32, u32)> {
        self.scene_pages.borrow().clone()
    }
    pub fn renewals(&self) -> u32 {
        self.renewals.get()
    }
    /// Every queue call that can carry state writes (`complete`,
    /// `retry-at`, `release`, `dead-letter`, `state-set`), with the keys it
    /// wrote, in order.
    pub fn state_calls(&self) -> Vec<(&'static str, Vec<String>)> {
        self.state_calls.borrow().clone()
    }
    /// The policy state under `key`.
    pub fn state_value(&self, key: &str) -> Option<String> {
        self.queue.borrow().state_get(key).expect("the queue answers")
    }
    fn note_state_call(&self, call: &'static str, writes: &[StateWrite]) {
        self.state_calls.borrow_mut().push((call, writes.iter().map(|w| w.key.clone()).collect()));
    }
    /// Set the next values of the generator (deterministic traces).
    pub fn seed(&self, seed: u64) {
        self.rng.set(seed);
    }

    // plex
    pub fn requests(&self) -> Vec<PlexRequest> {
        self.requests.borrow().clone()
    }
    /// `METHOD path` of every request so far.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests.borrow().iter().map(|r| format!("{} {}", r.method.as_str(), r.path)).collect()
    }
    /// Forget every scripted reply (Plex answers normally again).
    pub fn clear_scripts(&self) {
        self.scripts.borrow_mut().clear();
    }
    pub fn clear_requests(&self) {
        self.requests.borrow_mut().clear();
    }
    /// Answer the next `times` requests whose path starts with `path_prefix`
    /// (and method matches, if given) with `reply` instead of the fake PMS.
    pub fn script(&self, method: Option<Method>, path_prefix: &str, reply: Reply, times: u32) {
        self.scripts.borrow_mut().push_back(Script { method, path_prefix: path_prefix.into(), reply, times });
    }

    // stash
    pub fn add_scene(&self, scene: Scene) {
        self.scenes.borrow_mut().insert(scene.id.clone(), Ok(Some(scene)));
    }
    /// Make scene listings (`find-scenes`) fail with `error` (`None`: work).
    /// Every `image-digest` fails with this (Stash away, image gone).
    pub fn image_error(&self, error: Option<StashError>) {
        *self.image_error.borrow_mut() = error;
    }

    pub fn scenes_error(&self, error: Option<StashError>) {
        *self.scenes_error.borrow_mut() = error;
    }
    pub fn stash_error(&self, id: &str, error: StashError) {
        self.scenes.borrow_mut().insert(id.into(), Err(error));
    }

    // queue
    pub fn jobs(&self) -> Vec<FakeJob> {
        self.queue.borrow().jobs(u32::MAX, self.now()).expect("the queue answers")
    }
    /// Dead letters, oldest first.
    pub fn dead(&self) -> Vec<DeadJob> {
        let mut rows =
            self.queue.borrow().dead_letters_matching(&real::DeadFilter::all(), u32::MAX).expect("the queue answers");
        rows.reverse();
        rows.into_iter()
            .map(|d| DeadJob {
                attempt: d.attempts,
                info: DeadLetterInfo { error_class: d.error_class, message: d.message, detail: d.detail },
            })
            .collect()
    }
    /// Ids of the jobs the policy completed, in order.
    pub fn completed(&self) -> Vec<u64> {
        self.completed.borrow().clone()
    }
    pub fn fail_queue(&self, error: QueueError) {
        *self.queue_failure.borrow_mut() = Some(error);
    }
    /// Claim the next job as another drainer would.
    pub fn claim_for_test(&self) -> Option<Job> {
        self.claim(60_000).ok().flatten()
    }
    /// Record a change for a scene, due now.
    pub fn enqueue_now(&self, scene_id: &str) {
        let _ = self.enqueue(scene_id, r#"{"v":1,"trigger":"test","fields":[]}"#, self.now());
    }

    fn queue_check(&self) -> Result<(), QueueError> {
        match &*self.queue_failure.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// A scene with a title and one file.
pub fn scene(id: &str, title: &str, path: &str) -> Scene {
    Scene {
        id: id.into(),
        title: Some(title.into()),
        details: Some(format!("Details of {title}.\n\nSecond paragraph.")),
        date: Some("2024-01-15".into()),
        studio: Some(Studio { id: "1".into(), name: "Studio X".into(), parent_name: None }),
        files: vec![VideoFile { path: path.into(), size: 1000, duration_secs: 60.0 }],
        created_at: "2024-01-15T00:00:00Z".into(),
        updated_at: "2024-01-15T00:00:00Z".into(),
        ..Scene::default()
    }
}

/// One step of splitmix64: the new state and the value drawn.
pub fn splitmix64(state: u64) -> (u64, u64) {
    let s = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (s, z ^ (z >> 31))
}

/// The first `n` values the fake host's generator draws from `seed`.
pub fn draws(seed: u64, n: usize) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let (next, v) = splitmix64(s);
            s = next;
            v
        })
        .collect()
}

impl Host for FakeHost {
    fn now_ms(&self) -> i64 {
        self.now.get()
    }

    fn random_u64(&self) -> u64 {
        let (state, value) = splitmix64(self.rng.get());
        self.rng.set(state);
        value
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn progress(&self, fraction: f64) {
        self.progress.borrow_mut().push(fraction);
    }

    fn obfuscate_path(&self, path: &str) -> String {
        if self.obfuscate.get() {
            path.split('/').map(|seg| if seg.is_empty() { "" } else { "xxx" }).collect::<Vec<_>>().join("/")
        } else {
            path.to_string()
        }
    }

    fn plex_server_label(&self) -> String {
        "http://plex.test:32400".into()
    }

    fn plex_send(&self, request: &PlexRequest) -> Result<PlexResponse, TransportError> {
        self.requests.borrow_mut().push(request.clone());
        self.advance(self.advance_per_request.get());
        if self.steal_leases_at_request.get() == Some(self.requests.borrow().len()) {
            // Another drainer takes every running job: it claims them as of
            // a time when their leases have expired.
            let running = self.jobs().iter().filter(|j| j.running).count();
            let later = self.now() + 1_000_000_000;
            for n in 0..running {
                let _ = self.queue.borrow_mut().claim(60_000, later, 9_000_000 + n as u64);
            }
        }
        let scripted = {
            let mut scripts = self.scripts.borrow_mut();
            let found = scripts.iter().position(|s| {
                s.times > 0 && request.path.starts_with(&s.path_prefix) && s.method.is_none_or(|m| m == request.method)
            });
            found.map(|i| {
                scripts[i].times -= 1;
                let reply = scripts[i].reply.clone();
                if scripts[i].times == 0 {
                    scripts.remove(i);
                }
                reply
            })
        };
        match scripted {
            Some(Reply::Response(r)) => Ok(r),
            Some(Reply::Transport(e)) => Err(e),
            None => Ok(self.plex.borrow_mut().handle(request)),
        }
    }

    fn find_scene(&self, id: &str) -> Result<Option<Scene>, StashError> {
        self.scenes.borrow().get(id).cloned().unwrap_or(Ok(None))
    }

    fn find_scenes(&self, query: &SceneQuery) -> Result<ScenePage, StashError> {
        self.stash_batches.set(self.stash_batches.get() + 1);
        self.scene_pages.borrow_mut().push((query.page, query.per_page));
        if let Some(e) = self.scenes_error.borrow().clone() {
            return Err(e);
        }
        if let Some(err) =
            query.ids.iter().find_map(|id| self.scenes.borrow().get(id).and_then(|r| r.as_ref().err().cloned()))
        {
            return Err(err);
        }
        let carries = |s: &Scene| match &query.related {
            None => true,
            Some(RelatedObject::Performer(id)) => s.performers.iter().any(|p| &p.id == id),
            Some(RelatedObject::Studio(id)) => s.studio.as_ref().is_some_and(|st| &st.id == id),
            Some(RelatedObject::Tag(id)) => s.tags.iter().any(|t| &t.id == id),
            Some(RelatedObject::Group(id)) => s.groups.iter().any(|g| &g.id == id),
        };
        let mut scenes: Vec<Scene> = self
            .scenes
            .borrow()
            .values()
            .filter_map(|r| r.clone().ok().flatten())
            .filter(|s| carries(s))
            .filter(|s| query.ids.is_empty() || query.ids.contains(&s.id))
            .filter(|s| query.updated_after.as_ref().is_none_or(|after| s.updated_at.as_str() > after.as_str()))
            .collect();
        scenes.sort_by(|a, b| a.updated_at.cmp(&b.updated_at).then_with(|| a.id.cmp(&b.id)));
        let count = scenes.len() as u64;
        // As the WIT says (and the host does): 1-250 per page.
        let per = query.per_page.clamp(1, 250) as usize;
        let skip = (query.page.max(1) as usize - 1) * per;
        Ok(ScenePage { count, scenes: scenes.into_iter().skip(skip).take(per).collect() })
    }

    fn image_digest(&self, url: &str) -> Result<ImageInfo, StashError> {
        self.digests.set(self.digests.get() + 1);
        if let Some(e) = self.image_error.borrow().clone() {
            return Err(e);
        }
        // A stand-in digest: the same image path gives the same "SHA-1".
        let path = url.split('?').next().unwrap_or(url);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in path.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(ImageInfo { sha1: format!("{h:016x}{h:016x}{:08x}", h as u32), size: 1234 })
    }

    fn enqueue(&self, scene_id: &str, payload: &str, not_before_ms: i64) -> Result<EnqueueOutcome, QueueError> {
        self.queue_check()?;
        let now = self.now();
        self.queue.borrow_mut().enqueue(scene_id, payload, not_before_ms, now).map(convert).map_err(queue_error)
    }

    fn claim(&self, lease_ms: u32) -> Result<Option<Job>, QueueError> {
        self.queue_check()?;
        let now = self.now();
        // The host draws lease tokens from its own generator, not the
        // policy's: a claim does not move the policy's random sequence.
        self.next_lease.set(self.next_lease.get() + 1);
        let token = self.next_lease.get();
        self.queue.borrow_mut().claim(lease_ms, now, token).map(convert).map_err(queue_error)
    }

    fn renew(&self, job_id: u64, lease: u64, lease_ms: u32) -> Result<(), QueueError> {
        self.queue_check()?;
        let now = self.now();
        self.queue.borrow_mut().renew(job_id, lease, lease_ms, now).map_err(queue_error)?;
        self.renewals.set(self.renewals.get() + 1);
        Ok(())
    }

    fn complete(&self, job_id: u64, lease: u64, state: &[StateWrite]) -> Result<(), QueueError> {
        self.queue_check()?;
        self.note_state_call("complete", state);
        let now = self.now();
        let writes: Vec<real::StateWrite> = convert(state);
        self.queue.borrow_mut().complete(job_id, lease, &writes, now).map_err(queue_error)?;
        self.completed.borrow_mut().push(job_id);
        Ok(())
    }

    fn retry_at(
        &self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        error: &str,
        state: &[StateWrite],
    ) -> Result<(), QueueError> {
        self.queue_check()?;
        self.note_state_call("retry-at", state);
        let now = self.now();
        let writes: Vec<real::StateWrite> = convert(state);
        self.queue.borrow_mut().retry_at(job_id, lease, not_before_ms, error, &writes, now).map_err(queue_error)
    }

    fn release(&self, job_id: u64, lease: u64, not_before_ms: i64, state: &[StateWrite]) -> Result<(), QueueError> {
        self.queue_check()?;
        self.note_state_call("release", state);
        let writes: Vec<real::StateWrite> = convert(state);
        self.queue.borrow_mut().release(job_id, lease, not_before_ms, &writes).map_err(queue_error)
    }

    fn dead_letter(
        &self,
        job_id: u64,
        lease: u64,
        info: &DeadLetterInfo,
        state: &[StateWrite],
    ) -> Result<(), QueueError> {
        self.queue_check()?;
        self.note_state_call("dead-letter", state);
        let now = self.now();
        let writes: Vec<real::StateWrite> = convert(state);
        let info: real::DeadLetterInfo = convert(info);
        self.queue.borrow_mut().dead_letter(job_id, lease, &info, &writes, now).map_err(queue_error)
    }

    fn counts(&self) -> Result<QueueCounts, QueueError> {
        self.queue_check()?;
        self.queue.borrow().counts(self.now()).map(convert).map_err(queue_error)
    }

    fn forget(&self, key: &str) -> Result<bool, QueueError> {
        self.queue_check()?;
        self.queue.borrow_mut().forget(key).map_err(queue_error)
    }

    fn synced_at(&self, scene_ids: &[String]) -> Result<Vec<Option<i64>>, QueueError> {
        self.queue_check()?;
        self.queue.borrow().synced_at(scene_ids).map_err(queue_error)
    }

    fn state_get(&self, key: &str) -> Result<Option<String>, QueueError> {
        self.queue_check()?;
        self.queue.borrow().state_get(key).map_err(queue_error)
    }

    fn state_set(&self, writes: &[StateWrite]) -> Result<(), QueueError> {
        self.queue_check()?;
        self.note_state_call("state-set", writes);
        let writes: Vec<real::StateWrite> = convert(writes);
        self.queue.borrow_mut().state_set(&writes).map_err(queue_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_plex_pages_and_edits() {
        let mut p = FakePlex::default();
        p.add_section("1", "movie", "Movies", &["/m"]);
        for i in 0..3 {
            p.add_item("1", &format!("{i}"), "t", &format!("/m/{i}.mkv"));
        }
        let mut req = PlexRequest::get("/library/sections/1/all");
        req.query.push(("type".into(), "1".into()));
        req.headers = vec![("X-Plex-Container-Start".into(), "2".into()), ("X-Plex-Container-Size".into(), "2".into())];
        let r = p.handle(&req);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["MediaContainer"]["totalSize"], 3);
        assert_eq!(v["MediaContainer"]["Metadata"].as_array().unwrap().len(), 1);
        req.headers[0].1 = "3".into();
        let v: Value = serde_json::from_slice(&p.handle(&req).body).unwrap();
        assert!(v["MediaContainer"].get("Metadata").is_none());
        assert_eq!(p.handle(&PlexRequest::get("/library/metadata/99")).status, 404);
        let mut put = PlexRequest::new(Method::Put, "/library/sections/1/all");
        put.query = vec![
            ("type".into(), "1".into()),
            ("id".into(), "1".into()),
            ("title.value".into(), "New".into()),
            ("title.locked".into(), "1".into()),
        ];
        assert_eq!(p.handle(&put).status, 200);
        assert_eq!(p.item("1").unwrap().title, "New");
        assert!(p.item("1").unwrap().locked.contains("title"));
    }
}
