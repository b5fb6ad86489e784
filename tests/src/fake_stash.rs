//! A loopback fake of Stash's GraphQL server: authentication like Stash's
//! `authenticateHandler`, gqlgen's status codes and error shapes, and the
//! queries a sync plugin uses (see `stash-plugin-protocol.md` §3–§4).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value as Json, json};

use crate::clock::{format_rfc3339, parse_rfc3339, unix_now};
use crate::graphql::{self, Field, FieldDef, FieldKind, GraphQlError, Operation, OperationKind, Schema};
use crate::http_util::{Handler, HttpServer, Reply, Request, Response, find_header, lock};
use crate::tripwire::{TripHandle, TripPoint, Tripwires};

/// The Stash version the fake reports.
pub const STASH_VERSION: &str = "v0.30.1";

/// How the fake Stash authenticates `/graphql` and media routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StashAuth {
    /// No credentials configured: everything is open. (Like the real server,
    /// a non-empty `ApiKey` header is still checked — and fails, as no key
    /// is configured.)
    None,
    /// Credentials configured; only this API key (header `ApiKey` or query
    /// `apikey`) authenticates.
    ApiKey(String),
    /// Credentials configured; `Cookie: session=<cookie_value>` or the API
    /// key (when set) authenticates.
    Session { cookie_value: String, api_key: Option<String> },
}

/// A video file of a scene.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SceneFile {
    pub id: String,
    pub path: String,
    pub size: u64,
    /// Seconds.
    pub duration: f64,
    pub width: u32,
    pub height: u32,
    pub video_codec: String,
    pub audio_codec: String,
    pub frame_rate: f64,
    pub bit_rate: u64,
    pub format: String,
    pub oshash: Option<String>,
}

impl SceneFile {
    /// A 1080p h264/aac mp4 of 10 minutes at `path`.
    pub fn new(id: &str, path: &str) -> SceneFile {
        SceneFile {
            id: id.to_string(),
            path: path.to_string(),
            size: 734_003_200,
            duration: 600.0,
            width: 1920,
            height: 1080,
            video_codec: "h264".into(),
            audio_codec: "aac".into(),
            frame_rate: 29.97,
            bit_rate: 9_786_709,
            format: "mp4".into(),
            oshash: None,
        }
    }

    /// File name part of `path` (either separator).
    pub fn basename(&self) -> &str {
        self.path.rsplit(['/', '\\']).next().unwrap_or(&self.path)
    }

    fn parent(&self) -> &str {
        match self.path.rfind(['/', '\\']) {
            Some(0) => "/",
            Some(i) => &self.path[..i],
            None => "",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Studio {
    pub id: String,
    pub name: String,
    pub parent: Option<Box<Studio>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Performer {
    pub id: String,
    pub name: String,
    pub disambiguation: Option<String>,
    /// `FEMALE`, `MALE`, `TRANSGENDER_MALE`, `TRANSGENDER_FEMALE`, `INTERSEX`, `NON_BINARY`.
    pub gender: Option<String>,
    /// Absolute URL; `None` serves Stash's default `{url}/performer/{id}/image`.
    pub image_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tag {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SceneGroup {
    pub scene_index: Option<i64>,
    pub group_id: String,
    pub group_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StashId {
    pub endpoint: String,
    pub stash_id: String,
}

/// A scene as stored by the fake (fields of Stash's `Scene` type that a
/// sync plugin reads).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SceneSpec {
    pub id: String,
    pub title: Option<String>,
    pub code: Option<String>,
    pub details: Option<String>,
    pub director: Option<String>,
    pub urls: Vec<String>,
    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub date: Option<String>,
    pub rating100: Option<i64>,
    pub organized: bool,
    /// RFC 3339; filled on first upsert when `None`.
    pub created_at: Option<String>,
    /// RFC 3339; set from the fake clock on every upsert unless a value
    /// different from the stored one is given.
    pub updated_at: Option<String>,
    pub files: Vec<SceneFile>,
    pub studio: Option<Studio>,
    pub performers: Vec<Performer>,
    pub tags: Vec<Tag>,
    pub groups: Vec<SceneGroup>,
    pub stash_ids: Vec<StashId>,
}

impl SceneSpec {
    pub fn new(id: &str) -> SceneSpec {
        SceneSpec { id: id.to_string(), ..SceneSpec::default() }
    }

    /// Path of the primary (first) file.
    pub fn primary_path(&self) -> Option<&str> {
        self.files.first().map(|f| f.path.as_str())
    }
}

/// An entry of `jobQueue`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSpec {
    pub id: String,
    /// `READY`, `RUNNING`, `FINISHED`, `STOPPING`, `CANCELLED`, `FAILED`.
    pub status: String,
    pub description: String,
    pub progress: Option<f64>,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StashRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Lower-cased header names, in order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// GraphQL document text, for `/graphql` requests that carried one.
    pub graphql: Option<String>,
    pub operation_name: Option<String>,
    /// GraphQL variables (`null` when none were sent).
    pub variables: Json,
    /// Status answered.
    pub status: u16,
}

impl StashRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The deterministic "JPEG" served at `/scene/{id}/screenshot`.
pub fn screenshot_bytes(scene_id: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00];
    b.extend_from_slice(b"stash-scene-");
    b.extend_from_slice(scene_id.as_bytes());
    b.extend_from_slice(&[0xFF, 0xD9]);
    b
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct StashData {
    scenes: BTreeMap<String, SceneSpec>,
    /// Screenshot files that differ from the generated one: (content type, bytes).
    screenshots: BTreeMap<String, (String, Vec<u8>)>,
    plugins: BTreeMap<String, Json>,
    jobs: Vec<JobSpec>,
    clock_offset: i64,
    utc_offset_minutes: i32,
    last_time: i64,
    /// Scene ids in the order of one `sort` and direction over every scene,
    /// kept until a scene changes: a walk over 100,000 scenes asks for the
    /// same order on every page, as Stash answers it from its index.
    ordered: Option<((String, bool), Vec<String>)>,
}

impl StashData {
    /// The scenes, for a change (the kept order is dropped).
    fn scenes_mut(&mut self) -> &mut BTreeMap<String, SceneSpec> {
        self.ordered = None;
        &mut self.scenes
    }

    fn tick(&mut self) -> String {
        let t = (unix_now() + self.clock_offset).max(self.last_time);
        self.last_time = t;
        format_rfc3339(t, self.utc_offset_minutes)
    }

    /// Every scene in id order (numeric ids as numbers, as Stash's are).
    /// The key is parsed once per scene, not per comparison: this runs on
    /// every findScenes, over 100,000 scenes in the bench.
    fn sorted_scenes(&self) -> Vec<&SceneSpec> {
        let mut v: Vec<&SceneSpec> = self.scenes.values().collect();
        v.sort_by_cached_key(|s| (s.id.parse::<u64>().map_or((1, 0), |n| (0, n)), s.id.clone()));
        v
    }
}

fn id_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

struct StashShared {
    auth: StashAuth,
    data: Mutex<StashData>,
    requests: Mutex<Vec<StashRequest>>,
    fail_next: Mutex<VecDeque<String>>,
    latency: Mutex<Duration>,
    /// Session expiry (see [`FakeStash::set_session_lifetime`]).
    sessions: Mutex<Option<Sessions>>,
    /// The version this fake pretends to be (see [`FakeStash::set_version`]).
    version: Mutex<String>,
    /// Armed on GraphQL documents (see [`FakeStash::tripwire`]).
    tripwires: Tripwires,
}

/// The "method" Stash's tripwires match: a GraphQL request, named by the
/// start of its document.
const GRAPHQL_TRIP: &str = "graphql";

thread_local! {
    /// The GraphQL document this connection's thread is answering, for the
    /// `Answered` tripwire (the server calls `answered` on the same thread
    /// right after writing the answer).
    static ANSWERING: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Real Stash signs a timestamp into the session cookie, refuses it after
/// `max_session_age`, and answers every request authenticated by it with a
/// fresh `Set-Cookie`. Modelled with a use count instead of time.
struct Sessions {
    uses_per_cookie: u32,
    remaining: HashMap<String, u32>,
    issued: u64,
}

enum AuthResult {
    Denied,
    Allowed,
    /// Allowed by a session cookie; send this fresh one back.
    Refreshed(String),
}

struct Inner {
    server: HttpServer,
    shared: Arc<StashShared>,
}

/// Handle to a running fake Stash on `127.0.0.1`. Clones share the server;
/// it stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeStash {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeStash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeStash").field("url", &self.url()).finish()
    }
}

impl FakeStash {
    /// Starts a server on an ephemeral loopback port.
    pub fn start(auth: StashAuth) -> io::Result<FakeStash> {
        let shared = Arc::new(StashShared {
            auth,
            data: Mutex::new(StashData {
                scenes: BTreeMap::new(),
                screenshots: BTreeMap::new(),
                plugins: BTreeMap::new(),
                jobs: Vec::new(),
                clock_offset: 0,
                utc_offset_minutes: 0,
                last_time: 0,
                ordered: None,
            }),
            requests: Mutex::new(Vec::new()),
            fail_next: Mutex::new(VecDeque::new()),
            latency: Mutex::new(Duration::ZERO),
            sessions: Mutex::new(None),
            version: Mutex::new(STASH_VERSION.to_string()),
            tripwires: Tripwires::default(),
        });
        let server = HttpServer::start(shared.clone())?;
        Ok(FakeStash { inner: Arc::new(Inner { server, shared }) })
    }

    fn shared(&self) -> &StashShared {
        &self.inner.shared
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn port(&self) -> u16 {
        self.inner.server.port()
    }

    /// The configured API key (what `configuration.general.apiKey` returns).
    pub fn api_key(&self) -> Option<&str> {
        self.shared().auth.api_key()
    }

    /// Replaces the saved settings of a plugin (`configuration.plugins`).
    /// Serve `bytes` as `content_type` at the scene's screenshot route
    /// without touching the scene (a huge file, or something that is not an
    /// image).
    pub fn serve_screenshot(&self, scene_id: &str, content_type: &str, bytes: Vec<u8>) {
        lock(&self.shared().data).screenshots.insert(scene_id.to_string(), (content_type.to_string(), bytes));
    }

    pub fn set_plugin_settings(&self, plugin_id: &str, settings: Json) {
        lock(&self.shared().data).plugins.insert(plugin_id.to_string(), settings);
    }

    pub fn plugin_settings(&self, plugin_id: &str) -> Option<Json> {
        lock(&self.shared().data).plugins.get(plugin_id).cloned()
    }

    /// Inserts or replaces a scene and returns its new `updated_at`.
    /// `updated_at` comes from the fake clock unless the spec carries a
    /// value different from the stored one (so read-modify-write bumps it).
    pub fn upsert_scene(&self, spec: SceneSpec) -> String {
        let mut data = lock(&self.shared().data);
        let now = data.tick();
        let existing = data.scenes.get(&spec.id);
        let created = spec
            .created_at
            .clone()
            .or_else(|| existing.and_then(|e| e.created_at.clone()))
            .unwrap_or_else(|| now.clone());
        let updated = match (&spec.updated_at, existing.and_then(|e| e.updated_at.as_ref())) {
            (Some(given), Some(stored)) if given == stored => now,
            (Some(given), _) => given.clone(),
            (None, _) => now,
        };
        let stored = SceneSpec { created_at: Some(created), updated_at: Some(updated.clone()), ..spec };
        data.scenes_mut().insert(stored.id.clone(), stored);
        updated
    }

    /// Renames a performer everywhere, as `performerUpdate` does: the scenes
    /// that carry it show the new name, and their `updated_at` does not
    /// move. Returns how many scenes carry it.
    pub fn rename_performer(&self, performer_id: &str, name: &str) -> usize {
        let mut data = lock(&self.shared().data);
        let mut n = 0;
        for s in data.scenes_mut().values_mut() {
            for p in s.performers.iter_mut().filter(|p| p.id == performer_id) {
                p.name = name.to_string();
                n += 1;
            }
        }
        n
    }

    /// Renames a tag everywhere (`tagUpdate`), `updated_at` unchanged.
    pub fn rename_tag(&self, tag_id: &str, name: &str) -> usize {
        let mut data = lock(&self.shared().data);
        let mut n = 0;
        for s in data.scenes_mut().values_mut() {
            for t in s.tags.iter_mut().filter(|t| t.id == tag_id) {
                t.name = name.to_string();
                n += 1;
            }
        }
        n
    }

    /// Renames a studio everywhere (`studioUpdate`), `updated_at` unchanged.
    pub fn rename_studio(&self, studio_id: &str, name: &str) -> usize {
        let mut data = lock(&self.shared().data);
        let mut n = 0;
        for s in data.scenes_mut().values_mut() {
            if let Some(st) = s.studio.as_mut().filter(|st| st.id == studio_id) {
                st.name = name.to_string();
                n += 1;
            }
        }
        n
    }

    /// Replaces a scene's screenshot (as regenerating the cover in Stash
    /// does) and bumps its `updated_at`, which changes `paths.screenshot`.
    pub fn set_screenshot(&self, id: &str, bytes: Vec<u8>) -> Option<String> {
        lock(&self.shared().data).screenshots.insert(id.to_string(), ("image/jpeg".to_string(), bytes));
        self.touch_scene(id)
    }

    /// Bumps a scene's `updated_at` (like any edit in Stash would).
    pub fn touch_scene(&self, id: &str) -> Option<String> {
        let mut data = lock(&self.shared().data);
        let now = data.tick();
        let s = data.scenes_mut().get_mut(id)?;
        s.updated_at = Some(now.clone());
        Some(now)
    }

    pub fn remove_scene(&self, id: &str) -> bool {
        lock(&self.shared().data).scenes_mut().remove(id).is_some()
    }

    pub fn scene(&self, id: &str) -> Option<SceneSpec> {
        lock(&self.shared().data).scenes.get(id).cloned()
    }

    /// All scenes by numeric id.
    pub fn scenes(&self) -> Vec<SceneSpec> {
        let data = lock(&self.shared().data);
        data.sorted_scenes().into_iter().cloned().collect()
    }

    /// Moves the fake clock (used for `created_at`/`updated_at`) forward.
    pub fn advance_clock(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX / 2);
        lock(&self.shared().data).clock_offset += secs;
    }

    /// Offset of the server's local time zone; timestamps are written
    /// `+HH:MM` instead of `Z` (and compared lexically, like Stash does).
    pub fn set_utc_offset_minutes(&self, minutes: i32) {
        lock(&self.shared().data).utc_offset_minutes = minutes;
    }

    /// What `jobQueue` returns (`null` when empty, like Stash).
    pub fn set_jobs(&self, jobs: Vec<JobSpec>) {
        lock(&self.shared().data).jobs = jobs;
    }

    pub fn requests(&self) -> Vec<StashRequest> {
        lock(&self.shared().requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared().requests).clear();
    }

    /// GraphQL requests whose document contains `needle` (e.g. `"findScenes"`).
    pub fn graphql_count(&self, needle: &str) -> usize {
        lock(&self.shared().requests)
            .iter()
            .filter(|r| r.graphql.as_deref().is_some_and(|q| q.contains(needle)))
            .count()
    }

    /// `true` closes the listener (connects refused, open connections
    /// dropped); `false` listens again on the same port.
    ///
    /// # Panics
    /// If the port cannot be bound again (see [`FakeStash::try_set_down`]).
    pub fn set_down(&self, down: bool) {
        if let Err(e) = self.try_set_down(down) {
            panic!("fake Stash: cannot listen again on its port: {e}");
        }
    }

    pub fn try_set_down(&self, down: bool) -> io::Result<()> {
        self.inner.server.set_listening(!down)
    }

    /// The next `n` GraphQL requests that pass authentication and
    /// validation get HTTP 200 `{"errors":[{"message":…}],"data":null}`.
    pub fn fail_next_graphql(&self, n: usize, message: &str) {
        let mut q = lock(&self.shared().fail_next);
        for _ in 0..n {
            q.push_back(message.to_string());
        }
    }

    /// Added before every response.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.shared().latency) = latency;
    }

    /// Arm a tripwire on the `nth` GraphQL request whose document starts
    /// with `document_start` (leading whitespace ignored), e.g.
    /// `"query CatchUp"` (see [`crate::tripwire`]). `Received` holds the
    /// answer, already computed from the data as it was when the request
    /// arrived; `Answered` fires once it is written.
    pub fn tripwire(&self, document_start: &str, nth: usize, point: TripPoint) -> TripHandle {
        self.shared().tripwires.arm(GRAPHQL_TRIP, document_start, nth, point)
    }

    /// [`FakeStash::tripwire`] on GraphQL documents that contain `needle`
    /// anywhere (a field that rides in another query's document).
    pub fn tripwire_containing(&self, needle: &str, nth: usize, point: TripPoint) -> TripHandle {
        self.shared().tripwires.arm_containing(GRAPHQL_TRIP, needle, nth, point)
    }

    /// Pretend to be another Stash version. Before v0.27 the schema has no
    /// `Scene.groups`, so a query selecting it fails validation (HTTP 422).
    pub fn set_version(&self, version: &str) {
        *lock(&self.shared().version) = version.to_string();
    }

    /// Make session cookies expire like real ones: each cookie (the
    /// configured one included) authenticates at most `uses` requests, and
    /// every request it authenticates is answered with
    /// `Set-Cookie: session=<fresh>` good for another `uses`. Only for
    /// [`StashAuth::Session`].
    pub fn set_session_lifetime(&self, uses: u32) {
        let mut remaining = HashMap::new();
        if let StashAuth::Session { cookie_value, .. } = &self.shared().auth {
            remaining.insert(cookie_value.clone(), uses);
        }
        *lock(&self.shared().sessions) = Some(Sessions { uses_per_cookie: uses, remaining, issued: 0 });
    }
}

impl StashAuth {
    fn api_key(&self) -> Option<&str> {
        match self {
            StashAuth::None => None,
            StashAuth::ApiKey(k) => Some(k),
            StashAuth::Session { api_key, .. } => api_key.as_deref(),
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

#[derive(Default)]
struct GqlInfo {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Json,
}

fn gql_errors(status: u16, errors: Vec<Json>) -> Response {
    Response::json(status, &json!({"errors": errors, "data": null}))
}

fn go_not_found() -> Response {
    Response::with_body(404, "text/plain; charset=utf-8", "404 page not found\n")
}

impl Handler for StashShared {
    fn handle(&self, req: Request) -> Reply {
        let latency = *lock(&self.latency);
        if !latency.is_zero() {
            thread::sleep(latency);
        }
        let mut info = GqlInfo::default();
        let resp = self.route(&req, &mut info);
        let document = info.query.as_deref().map(|q| q.trim_start().to_string());
        lock(&self.requests).push(StashRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            body_len: req.body.len(),
            graphql: info.query,
            operation_name: info.operation_name,
            variables: info.variables,
            status: resp.status,
        });
        if let Some(doc) = &document {
            self.tripwires.at(TripPoint::Received, GRAPHQL_TRIP, doc);
        }
        ANSWERING.with(|a| *a.borrow_mut() = document);
        Reply::Send(resp)
    }

    fn answered(&self, _method: &str, _path: &str) {
        if let Some(doc) = ANSWERING.with(|a| a.borrow_mut().take()) {
            self.tripwires.at(TripPoint::Answered, GRAPHQL_TRIP, &doc);
        }
    }
}

impl StashShared {
    fn version(&self) -> String {
        lock(&self.version).clone()
    }

    fn schema(&self) -> StashSchema {
        let v = self.version();
        let mut parts = v.trim_start_matches('v').split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        StashSchema { has_groups: (major, minor) >= (0, 27) }
    }

    fn authenticated(&self, req: &Request) -> AuthResult {
        let key = req
            .header("apikey")
            .filter(|k| !k.is_empty())
            .or_else(|| req.query_param("apikey").filter(|k| !k.is_empty()));
        if let Some(k) = key {
            return if self.auth.api_key() == Some(k) { AuthResult::Allowed } else { AuthResult::Denied };
        }
        let cookie = req
            .headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(n, _)| *n == "session")
            .map(|(_, v)| v.to_string());
        match (&self.auth, cookie) {
            (StashAuth::None, _) => AuthResult::Allowed,
            (StashAuth::ApiKey(_), _) | (StashAuth::Session { .. }, None) => AuthResult::Denied,
            (StashAuth::Session { cookie_value, .. }, Some(sent)) => {
                let mut sessions = lock(&self.sessions);
                match sessions.as_mut() {
                    None if &sent == cookie_value => AuthResult::Allowed,
                    None => AuthResult::Denied,
                    Some(s) => match s.remaining.get_mut(&sent) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            s.issued += 1;
                            let fresh = format!("fresh-session-{}", s.issued);
                            s.remaining.insert(fresh.clone(), s.uses_per_cookie);
                            AuthResult::Refreshed(fresh)
                        }
                        _ => AuthResult::Denied,
                    },
                }
            }
        }
    }

    fn route(&self, req: &Request, info: &mut GqlInfo) -> Response {
        let path = req.path.as_str();
        if path == "/healthz" {
            return Response::new(200);
        }
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let known = matches!(segs.as_slice(), ["graphql"] | ["scene", _, "screenshot"]);
        if !known {
            return go_not_found();
        }
        let refreshed = match self.authenticated(req) {
            AuthResult::Denied => return Response::new(401),
            AuthResult::Allowed => None,
            AuthResult::Refreshed(c) => Some(c),
        };
        let resp = self.route_authenticated(req, info, &segs);
        match refreshed {
            Some(c) => resp.header("Set-Cookie", format!("session={c}; Path=/; HttpOnly; SameSite=Lax")),
            None => resp,
        }
    }

    fn route_authenticated(&self, req: &Request, info: &mut GqlInfo, segs: &[&str]) -> Response {
        match (req.method.as_str(), segs) {
            ("POST" | "GET", ["graphql"]) => self.graphql_http(req, info),
            ("GET" | "HEAD", ["scene", id, "screenshot"]) => {
                let data = lock(&self.data);
                match (data.scenes.contains_key(*id), data.screenshots.get(*id)) {
                    (true, Some((content_type, bytes))) => Response::with_body(200, content_type, bytes.clone()),
                    (true, None) => Response::with_body(200, "image/jpeg", screenshot_bytes(id)),
                    (false, _) => go_not_found(),
                }
            }
            _ => Response::new(405),
        }
    }

    fn graphql_http(&self, req: &Request, info: &mut GqlInfo) -> Response {
        let (query, op_name, variables) = if req.method == "POST" {
            let ctype = req.header("content-type").unwrap_or("");
            let mime = ctype.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case("application/json") {
                return gql_errors(400, vec![json!({"message": "transport not supported"})]);
            }
            let body: Json = match serde_json::from_slice(&req.body) {
                Ok(b) => b,
                Err(e) => {
                    return gql_errors(
                        400,
                        vec![
                            json!({"message": format!("json request body could not be decoded: {e} body:{}", String::from_utf8_lossy(&req.body))}),
                        ],
                    );
                }
            };
            let Json::Object(body) = body else {
                return gql_errors(
                    400,
                    vec![json!({"message": "json request body could not be decoded: body is not an object"})],
                );
            };
            let q = body.get("query").and_then(Json::as_str).map(str::to_string);
            let op = body.get("operationName").and_then(Json::as_str).map(str::to_string);
            let vars = body.get("variables").cloned().unwrap_or(Json::Null);
            (q, op, vars)
        } else {
            let vars = match req.query_param("variables").filter(|v| !v.is_empty()) {
                None => Json::Null,
                Some(v) => match serde_json::from_str(v) {
                    Ok(v) => v,
                    Err(_) => {
                        return gql_errors(400, vec![json!({"message": "variables could not be decoded"})]);
                    }
                },
            };
            (req.query_param("query").map(str::to_string), req.query_param("operationName").map(str::to_string), vars)
        };
        info.query = query.clone();
        info.operation_name = op_name.clone();
        info.variables = variables.clone();
        let vars = match variables {
            Json::Null => Map::new(),
            Json::Object(m) => m,
            _ => {
                return gql_errors(
                    400,
                    vec![json!({"message": "json request body could not be decoded: variables is not an object"})],
                );
            }
        };
        let Some(query) = query.filter(|q| !q.trim().is_empty()) else {
            return gql_errors(
                422,
                vec![json!({"message": "no operation provided", "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}})],
            );
        };
        let doc = match graphql::parse(&query) {
            Ok(d) => d,
            Err(e) => return gql_errors(422, vec![e.to_json(Some("GRAPHQL_PARSE_FAILED"))]),
        };
        let op = match doc.operation(op_name.as_deref()) {
            Ok(o) => o,
            Err(e) => return gql_errors(422, vec![e.to_json(Some("GRAPHQL_VALIDATION_FAILED"))]),
        };
        let root = match op.kind {
            OperationKind::Query => "Query",
            OperationKind::Mutation => "Mutation",
            OperationKind::Subscription => {
                let e = GraphQlError::new("subscriptions are not supported by this fake server", Some(op.pos));
                return gql_errors(422, vec![e.to_json(Some("GRAPHQL_VALIDATION_FAILED"))]);
            }
        };
        if req.method == "GET" && op.kind == OperationKind::Mutation {
            return gql_errors(406, vec![json!({"message": "GET requests only allow query operations"})]);
        }
        let mut errors = Vec::new();
        let schema = self.schema();
        graphql::validate(&schema, root, &op.selection_set, &mut errors);
        graphql::validate_variables(op, &vars, &mut errors);
        if !errors.is_empty() {
            let errs = errors.iter().map(|e| e.to_json(Some("GRAPHQL_VALIDATION_FAILED"))).collect();
            return gql_errors(422, errs);
        }
        if let Some(msg) = lock(&self.fail_next).pop_front() {
            return gql_errors(200, vec![json!({"message": msg})]);
        }
        let base = match req.header("host") {
            Some(h) if !h.is_empty() => format!("http://{h}"),
            _ => "http://127.0.0.1".to_string(),
        };
        let vars = graphql::effective_variables(op, &vars);
        self.execute(op, root, &vars, &base)
    }

    fn execute(&self, op: &Operation, root: &str, vars: &Map<String, Json>, base: &str) -> Response {
        let mut data = Map::new();
        let mut errors: Vec<Json> = Vec::new();
        let mut null_data = false;
        for f in op.selection_set.iter().filter(|f| f.is_included(vars)) {
            let key = f.response_key().to_string();
            let args: Map<String, Json> = f.arguments.iter().map(|(n, v)| (n.clone(), v.to_json(vars))).collect();
            let result: Result<(Json, &str), String> = match (root, f.name.as_str()) {
                (_, "__typename") => {
                    data.insert(key, json!(root));
                    continue;
                }
                ("Query", "configuration") => Ok((self.configuration(), "ConfigResult")),
                ("Query", "findScene") => Ok((self.find_scene(&args, base), "Scene")),
                ("Query", "findScenes") => self.find_scenes(&args, base).map(|v| (v, "FindScenesResultType")),
                ("Query", "version") => Ok((
                    json!({"version": self.version(), "hash": "0000000", "build_time": "2025-12-18 00:00:00"}),
                    "Version",
                )),
                ("Query", "jobQueue") => Ok((self.job_queue(), "Job")),
                ("Mutation", "configurePlugin") => self.configure_plugin(&args).map(|v| (v, "Map")),
                _ => Err(format!("{} is not implemented by this fake server", f.name)),
            };
            match result {
                Ok((value, ty)) => {
                    let projected = match &f.selection_set {
                        Some(sub) => graphql::project(&self.schema(), ty, &value, sub, vars),
                        None => value,
                    };
                    data.insert(key, projected);
                }
                Err(msg) => {
                    errors.push(json!({"message": msg, "path": [key]}));
                    // Non-null root fields null the whole response.
                    if matches!(f.name.as_str(), "findScenes" | "configuration" | "version" | "configurePlugin") {
                        null_data = true;
                    } else {
                        data.insert(key, Json::Null);
                    }
                }
            }
        }
        let data = if null_data { Json::Null } else { Json::Object(data) };
        if errors.is_empty() {
            Response::json(200, &json!({"data": data}))
        } else {
            Response::json(200, &json!({"errors": errors, "data": data}))
        }
    }

    fn configuration(&self) -> Json {
        let d = lock(&self.data);
        let plugins: Map<String, Json> = d.plugins.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        json!({
            "general": {
                "apiKey": self.auth.api_key().unwrap_or(""),
                "databasePath": "/root/.stash/stash-go.sqlite",
                "configFilePath": "/root/.stash/config.yml",
                "generatedPath": "/root/.stash/generated",
                "metadataPath": "/root/.stash/metadata",
                "cachePath": "/root/.stash/cache",
                "stashes": [{"path": "/data", "excludeVideo": false, "excludeImage": false}],
            },
            "plugins": plugins,
        })
    }

    fn job_queue(&self) -> Json {
        let d = lock(&self.data);
        if d.jobs.is_empty() {
            return Json::Null;
        }
        Json::Array(
            d.jobs
                .iter()
                .map(|j| {
                    json!({
                        "id": j.id, "status": j.status, "subTasks": [], "description": j.description,
                        "progress": j.progress, "startTime": null, "endTime": null,
                        "addTime": format_rfc3339(unix_now(), 0), "error": null,
                    })
                })
                .collect(),
        )
    }

    fn configure_plugin(&self, args: &Map<String, Json>) -> Result<Json, String> {
        let id = match args.get("plugin_id") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) => n.to_string(),
            _ => return Err("plugin_id is required".into()),
        };
        let input = match args.get("input") {
            Some(v @ Json::Object(_)) => v.clone(),
            _ => return Err("input must be a map".into()),
        };
        lock(&self.data).plugins.insert(id, input.clone());
        Ok(input)
    }

    fn find_scene(&self, args: &Map<String, Json>, base: &str) -> Json {
        let id = match args.get("id") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) => n.to_string(),
            _ => return Json::Null,
        };
        let d = lock(&self.data);
        match d.scenes.get(&id) {
            Some(s) => scene_json(s, base, self.auth.api_key()),
            None => Json::Null,
        }
    }

    fn find_scenes(&self, args: &Map<String, Json>, base: &str) -> Result<Json, String> {
        let mut d = lock(&self.data);
        if let Some(answer) = Self::page_of_all(&mut d, args, base, self.auth.api_key())? {
            return Ok(answer);
        }
        let mut list = d.sorted_scenes();
        let ids = args.get("ids").or_else(|| args.get("scene_ids")).and_then(Json::as_array).map(|a| {
            a.iter()
                .map(|v| match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
        });
        if let Some(ids) = ids {
            list.retain(|s| ids.contains(&s.id));
        }
        if let Some(Json::Object(sf)) = args.get("scene_filter") {
            for (k, crit) in sf {
                list = apply_filter(list, k, crit)?;
            }
        }
        let filter = match args.get("filter") {
            Some(Json::Object(f)) => f.clone(),
            _ => Map::new(),
        };
        let sort = filter.get("sort").and_then(Json::as_str).filter(|s| !s.is_empty());
        let desc = filter.get("direction").and_then(Json::as_str) == Some("DESC");
        if let Some(sort) = sort {
            sort_scenes(&mut list, sort, desc)?;
        }
        let range = page_range(&filter, list.len());
        let totals = file_totals(list.iter().copied());
        Ok(scenes_answer(list.len(), totals, &list[range], base, self.auth.api_key()))
    }

    /// A page of every scene in a plain sort (no ids, no scene filter):
    /// from the kept order, looking up only the page's scenes. `None` for
    /// any other query.
    fn page_of_all(
        d: &mut StashData,
        args: &Map<String, Json>,
        base: &str,
        api_key: Option<&str>,
    ) -> Result<Option<Json>, String> {
        let filter = match args.get("filter") {
            Some(Json::Object(f)) => f,
            _ => return Ok(None),
        };
        let unfiltered = match args.get("scene_filter") {
            None | Some(Json::Null) => true,
            Some(Json::Object(sf)) => sf.is_empty(),
            Some(_) => false,
        };
        let sort = filter.get("sort").and_then(Json::as_str).filter(|s| !s.is_empty() && !s.starts_with("random_"));
        let (Some(sort), true, None, None) = (sort, unfiltered, args.get("ids"), args.get("scene_ids")) else {
            return Ok(None);
        };
        let key = (sort.to_string(), filter.get("direction").and_then(Json::as_str) == Some("DESC"));
        if d.ordered.as_ref().is_none_or(|(k, _)| *k != key) {
            let mut list = d.sorted_scenes();
            sort_scenes(&mut list, sort, key.1)?;
            let ids = list.iter().map(|s| s.id.clone()).collect();
            d.ordered = Some((key, ids));
        }
        let ids = d.ordered.as_ref().map(|(_, ids)| ids.as_slice()).unwrap_or_default();
        let page: Vec<&SceneSpec> =
            ids[page_range(filter, ids.len())].iter().filter_map(|id| d.scenes.get(id)).collect();
        Ok(Some(scenes_answer(ids.len(), file_totals(d.scenes.values()), &page, base, api_key)))
    }
}

fn apply_filter<'a>(list: Vec<&'a SceneSpec>, key: &str, crit: &Json) -> Result<Vec<&'a SceneSpec>, String> {
    let text = |crit: &Json, f: &str| crit.get(f).and_then(Json::as_str).map(str::to_string);
    match key {
        "updated_at" | "created_at" => {
            let value = text(crit, "value").ok_or_else(|| format!("scene_filter.{key}.value is required"))?;
            let value2 = text(crit, "value2");
            let modifier = text(crit, "modifier").unwrap_or_default();
            let get = |s: &SceneSpec| -> String {
                if key == "updated_at" { s.updated_at.clone() } else { s.created_at.clone() }.unwrap_or_default()
            };
            // Stash binds the string as-is into SQL: the comparison is lexical.
            let keep: Box<dyn Fn(&str) -> bool> = match modifier.as_str() {
                "GREATER_THAN" => Box::new(move |v| v > value.as_str()),
                "LESS_THAN" => Box::new(move |v| v < value.as_str()),
                "EQUALS" => Box::new(move |v| v == value),
                "NOT_EQUALS" => Box::new(move |v| v != value),
                "IS_NULL" => Box::new(|_| false),
                "NOT_NULL" => Box::new(|_| true),
                "BETWEEN" | "NOT_BETWEEN" => {
                    let hi = value2.unwrap_or_else(|| format_rfc3339(unix_now() + 86_400, 0));
                    let not = modifier == "NOT_BETWEEN";
                    Box::new(move |v| (v >= value.as_str() && v <= hi.as_str()) != not)
                }
                m => return Err(format!("unsupported modifier {m} for {key}")),
            };
            Ok(list.into_iter().filter(|s| keep(&get(s))).collect())
        }
        "id" => {
            // IntCriterionInput: GraphQL Int values.
            let int = |f: &str| crit.get(f).and_then(Json::as_i64);
            let value = int("value").ok_or_else(|| "scene_filter.id.value must be an Int".to_string())?;
            let value2 = int("value2");
            let modifier = text(crit, "modifier").unwrap_or_default();
            let mut out = Vec::new();
            for s in list {
                let id: i64 = s.id.parse().map_err(|_| format!("scene id {} is not an integer", s.id))?;
                let keep = match modifier.as_str() {
                    "EQUALS" => id == value,
                    "NOT_EQUALS" => id != value,
                    "GREATER_THAN" => id > value,
                    "LESS_THAN" => id < value,
                    "BETWEEN" => id >= value && id <= value2.unwrap_or(value),
                    "NOT_BETWEEN" => !(id >= value && id <= value2.unwrap_or(value)),
                    m => return Err(format!("unsupported modifier {m} for id")),
                };
                if keep {
                    out.push(s);
                }
            }
            Ok(out)
        }
        "organized" => match crit {
            Json::Bool(b) => Ok(list.into_iter().filter(|s| s.organized == *b).collect()),
            Json::Null => Ok(list),
            _ => Err("scene_filter.organized must be a Boolean".into()),
        },
        "path" | "title" => {
            let value = text(crit, "value").unwrap_or_default().to_lowercase();
            let modifier = text(crit, "modifier").unwrap_or_default();
            let get = |s: &SceneSpec| -> Option<String> {
                if key == "path" {
                    s.primary_path().map(str::to_lowercase)
                } else {
                    s.title.as_ref().map(|t| t.to_lowercase())
                }
            };
            let keep = |s: &&SceneSpec| -> Result<bool, String> {
                let v = get(s);
                Ok(match modifier.as_str() {
                    "EQUALS" => v.as_deref() == Some(value.as_str()),
                    "NOT_EQUALS" => v.as_deref() != Some(value.as_str()),
                    "INCLUDES" => v.is_some_and(|v| v.contains(&value)),
                    "EXCLUDES" => !v.is_some_and(|v| v.contains(&value)),
                    "IS_NULL" => v.is_none_or(|v| v.is_empty()),
                    "NOT_NULL" => v.is_some_and(|v| !v.is_empty()),
                    m => return Err(format!("unsupported modifier {m} for {key}")),
                })
            };
            let mut out = Vec::new();
            for s in list {
                if keep(&s)? {
                    out.push(s);
                }
            }
            Ok(out)
        }
        "performers" | "tags" | "studios" | "groups" | "movies" => {
            // MultiCriterionInput / HierarchicalMultiCriterionInput.
            let wanted: Vec<String> = crit
                .get("value")
                .and_then(Json::as_array)
                .ok_or_else(|| format!("scene_filter.{key}.value must be a list of ids"))?
                .iter()
                .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                .collect();
            let modifier = text(crit, "modifier").unwrap_or_else(|| "INCLUDES".into());
            let depth = crit.get("depth").and_then(Json::as_i64).unwrap_or(0);
            let carried = |s: &SceneSpec| -> Vec<String> {
                match key {
                    "performers" => s.performers.iter().map(|p| p.id.clone()).collect(),
                    "tags" => s.tags.iter().map(|t| t.id.clone()).collect(),
                    "groups" | "movies" => s.groups.iter().map(|g| g.group_id.clone()).collect(),
                    _ => {
                        // A studio, and with depth != 0 its parents too.
                        let mut ids = Vec::new();
                        let mut st = s.studio.as_ref();
                        while let Some(x) = st {
                            ids.push(x.id.clone());
                            st = if depth == 0 { None } else { x.parent.as_deref() };
                        }
                        ids
                    }
                }
            };
            let keep = |s: &&SceneSpec| -> Result<bool, String> {
                let have = carried(s);
                Ok(match modifier.as_str() {
                    "INCLUDES" => wanted.iter().any(|w| have.contains(w)),
                    "INCLUDES_ALL" => wanted.iter().all(|w| have.contains(w)),
                    "EXCLUDES" => !wanted.iter().any(|w| have.contains(w)),
                    "IS_NULL" => have.is_empty(),
                    "NOT_NULL" => !have.is_empty(),
                    m => return Err(format!("unsupported modifier {m} for {key}")),
                })
            };
            let mut out = Vec::new();
            for s in list {
                if keep(&s)? {
                    out.push(s);
                }
            }
            Ok(out)
        }
        other => Err(format!("scene_filter.{other} is not supported by this fake server")),
    }
}

const SORT_OPTIONS: [&str; 33] = [
    "bitrate",
    "created_at",
    "code",
    "date",
    "production_date",
    "file_count",
    "filesize",
    "duration",
    "file_mod_time",
    "framerate",
    "group_scene_number",
    "id",
    "interactive",
    "interactive_speed",
    "last_o_at",
    "last_played_at",
    "movie_scene_number",
    "o_counter",
    "organized",
    "performer_count",
    "play_count",
    "play_duration",
    "resume_time",
    "path",
    "perceptual_similarity",
    "random",
    "rating",
    "resolution",
    "studio",
    "tag_count",
    "title",
    "updated_at",
    "performer_age",
];

/// Which of `count` results a `findScenes` filter asks for: page `page`
/// (from 1) of `per_page` (default 25; negative: all of them).
fn page_range(filter: &Map<String, Json>, count: usize) -> std::ops::Range<usize> {
    let page = filter.get("page").and_then(Json::as_i64).unwrap_or(1).max(1);
    match filter.get("per_page").and_then(Json::as_i64) {
        Some(n) if n < 0 => 0..count,
        other => {
            let n = usize::try_from(other.unwrap_or(25)).unwrap_or(0);
            let skip = usize::try_from(page - 1).unwrap_or(0).saturating_mul(n).min(count);
            skip..skip.saturating_add(n).min(count)
        }
    }
}

/// The total duration and size of the scenes' first files.
fn file_totals<'a>(scenes: impl Iterator<Item = &'a SceneSpec>) -> (f64, f64) {
    scenes.filter_map(|s| s.files.first()).fold((0.0, 0.0), |(d, z), f| (d + f.duration, z + f.size as f64))
}

/// A `findScenes` answer: `count` results, their files' totals, and the
/// scenes of the page asked for.
fn scenes_answer(
    count: usize,
    (duration, filesize): (f64, f64),
    page: &[&SceneSpec],
    base: &str,
    api_key: Option<&str>,
) -> Json {
    let scenes: Vec<Json> = page.iter().map(|s| scene_json(s, base, api_key)).collect();
    json!({"count": count, "duration": duration, "filesize": filesize, "scenes": scenes})
}

fn sort_scenes(list: &mut [&SceneSpec], sort: &str, desc: bool) -> Result<(), String> {
    let random_seed = sort
        .strip_prefix("random_")
        .map(|s| s.parse::<u64>().map_err(|_| format!("invalid random seed: {s}")))
        .transpose()?;
    if random_seed.is_none() && !SORT_OPTIONS.contains(&sort) {
        return Err(format!("invalid sort: {sort}"));
    }
    let title_key = |s: &SceneSpec| -> String {
        s.title
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| s.files.first().map(|f| f.basename().to_string()))
            .unwrap_or_default()
            .to_lowercase()
    };
    list.sort_by(|a, b| {
        let ord = match sort {
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "created_at" => a.created_at.cmp(&b.created_at),
            "title" => title_key(a).cmp(&title_key(b)),
            "date" => a.date.cmp(&b.date),
            "path" => a.primary_path().cmp(&b.primary_path()),
            "rating" => a.rating100.cmp(&b.rating100),
            "organized" => a.organized.cmp(&b.organized),
            "filesize" => a.files.first().map(|f| f.size).cmp(&b.files.first().map(|f| f.size)),
            "code" => a.code.cmp(&b.code),
            _ => std::cmp::Ordering::Equal,
        };
        let ord = if desc { ord.reverse() } else { ord };
        ord.then_with(|| id_cmp(&a.id, &b.id))
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Scene JSON (every field; projected through the query's selection)
// ---------------------------------------------------------------------------

fn studio_json(s: &Studio, base: &str) -> Json {
    json!({
        "id": s.id,
        "name": s.name,
        "url": null,
        "urls": [],
        "image_path": format!("{base}/studio/{}/image", s.id),
        "details": null,
        "aliases": [],
        "rating100": null,
        "favorite": false,
        "parent_studio": s.parent.as_deref().map(|p| studio_json(p, base)),
    })
}

fn scene_json(s: &SceneSpec, base: &str, api_key: Option<&str>) -> Json {
    let id = &s.id;
    let updated = s.updated_at.clone().unwrap_or_default();
    let t = parse_rfc3339(&updated).unwrap_or(0);
    let stream = match api_key {
        Some(k) => format!("{base}/scene/{id}/stream?apikey={}", crate::http_util::percent_encode(k)),
        None => format!("{base}/scene/{id}/stream"),
    };
    let files: Vec<Json> = s
        .files
        .iter()
        .map(|f| {
            let fingerprints: Vec<Json> = f.oshash.iter().map(|h| json!({"type": "oshash", "value": h})).collect();
            json!({
                "id": f.id,
                "path": f.path,
                "basename": f.basename(),
                "parent_folder": {"id": format!("folder-{}", f.id), "path": f.parent()},
                "mod_time": s.created_at,
                "size": f.size,
                "format": f.format,
                "width": f.width,
                "height": f.height,
                "duration": f.duration,
                "video_codec": f.video_codec,
                "audio_codec": f.audio_codec,
                "frame_rate": f.frame_rate,
                "bit_rate": f.bit_rate,
                "fingerprints": fingerprints,
                "created_at": s.created_at,
                "updated_at": s.created_at,
            })
        })
        .collect();
    let performers: Vec<Json> = s
        .performers
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.name,
                "disambiguation": p.disambiguation,
                "gender": p.gender,
                "image_path": p.image_path.clone().unwrap_or_else(|| format!("{base}/performer/{}/image", p.id)),
                "alias_list": [],
                "birthdate": null,
                "country": null,
                "urls": [],
                "favorite": false,
                "rating100": null,
            })
        })
        .collect();
    let tags: Vec<Json> = s
        .tags
        .iter()
        .map(|t| {
            json!({
                "id": t.id, "name": t.name, "sort_name": null, "description": null,
                "aliases": [], "image_path": format!("{base}/tag/{}/image", t.id),
            })
        })
        .collect();
    let group = |g: &SceneGroup| {
        json!({"id": g.group_id, "name": g.group_name, "date": null,
               "front_image_path": format!("{base}/group/{}/frontimage", g.group_id)})
    };
    let groups: Vec<Json> = s.groups.iter().map(|g| json!({"scene_index": g.scene_index, "group": group(g)})).collect();
    let movies: Vec<Json> = s.groups.iter().map(|g| json!({"scene_index": g.scene_index, "movie": group(g)})).collect();
    let stash_ids: Vec<Json> = s
        .stash_ids
        .iter()
        .map(|x| json!({"endpoint": x.endpoint, "stash_id": x.stash_id, "updated_at": updated}))
        .collect();
    json!({
        "id": id,
        "title": s.title,
        "code": s.code,
        "details": s.details,
        "director": s.director,
        "url": s.urls.first(),
        "urls": s.urls,
        "date": s.date,
        "rating100": s.rating100,
        "organized": s.organized,
        "o_counter": 0,
        "interactive": false,
        "interactive_speed": null,
        "captions": [],
        "created_at": s.created_at,
        "updated_at": updated,
        "last_played_at": null,
        "resume_time": 0.0,
        "play_duration": 0.0,
        "play_count": 0,
        "play_history": [],
        "o_history": [],
        "files": files,
        "paths": {
            "screenshot": format!("{base}/scene/{id}/screenshot?t={t}"),
            "preview": format!("{base}/scene/{id}/preview"),
            "stream": stream,
            "webp": format!("{base}/scene/{id}/webp"),
            "vtt": format!("{base}/scene/{id}/vtt/thumbs"),
            "sprite": format!("{base}/scene/{id}/vtt/sprite"),
            "funscript": format!("{base}/scene/{id}/funscript"),
            "interactive_heatmap": format!("{base}/scene/{id}/interactive_heatmap"),
            "caption": format!("{base}/scene/{id}/caption"),
        },
        "studio": s.studio.as_ref().map(|st| studio_json(st, base)),
        "groups": groups,
        "movies": movies,
        "tags": tags,
        "performers": performers,
        "stash_ids": stash_ids,
    })
}

// ---------------------------------------------------------------------------
// Schema (the subset of Stash's schema the fake serves)
// ---------------------------------------------------------------------------

/// The schema of one Stash version: before v0.27 there is no
/// `Scene.groups` (groups were still "movies").
struct StashSchema {
    has_groups: bool,
}

const NO_ARGS: &[&str] = &[];

fn scalar(t: &'static str) -> FieldDef {
    FieldDef { kind: FieldKind::Scalar(t), args: NO_ARGS }
}

fn object(t: &'static str) -> FieldDef {
    FieldDef { kind: FieldKind::Object(t), args: NO_ARGS }
}

fn with_args(mut d: FieldDef, args: &'static [&'static str]) -> FieldDef {
    d.args = args;
    d
}

impl Schema for StashSchema {
    fn field(&self, type_name: &str, field: &str) -> Option<FieldDef> {
        Some(match (type_name, field) {
            ("Query", "configuration") => object("ConfigResult"),
            ("Query", "findScene") => with_args(object("Scene"), &["id", "checksum"]),
            ("Query", "findScenes") => {
                with_args(object("FindScenesResultType"), &["scene_filter", "scene_ids", "ids", "filter"])
            }
            ("Query", "version") => object("Version"),
            ("Query", "jobQueue") => object("Job"),
            ("Mutation", "configurePlugin") => with_args(scalar("Map"), &["plugin_id", "input"]),
            ("ConfigResult", "general") => object("ConfigGeneralResult"),
            ("ConfigResult", "plugins") => with_args(scalar("PluginConfigMap"), &["include"]),
            (
                "ConfigGeneralResult",
                "apiKey" | "databasePath" | "configFilePath" | "generatedPath" | "metadataPath" | "cachePath",
            ) => scalar("String"),
            ("ConfigGeneralResult", "stashes") => object("StashConfig"),
            ("StashConfig", "path") => scalar("String"),
            ("StashConfig", "excludeVideo" | "excludeImage") => scalar("Boolean"),
            ("Version", "version" | "hash" | "build_time") => scalar("String"),
            ("Job", "id") => scalar("ID"),
            ("Job", "status") => scalar("JobStatus"),
            ("Job", "subTasks" | "description" | "error") => scalar("String"),
            ("Job", "progress") => scalar("Float"),
            ("Job", "startTime" | "endTime" | "addTime") => scalar("Time"),
            ("FindScenesResultType", "count") => scalar("Int"),
            ("FindScenesResultType", "duration" | "filesize") => scalar("Float"),
            ("FindScenesResultType", "scenes") => object("Scene"),
            ("Scene", "id") => scalar("ID"),
            ("Scene", "title" | "code" | "details" | "director" | "url" | "date" | "urls") => scalar("String"),
            ("Scene", "rating100" | "o_counter" | "play_count" | "interactive_speed") => scalar("Int"),
            ("Scene", "organized" | "interactive") => scalar("Boolean"),
            ("Scene", "created_at" | "updated_at" | "last_played_at" | "play_history" | "o_history") => scalar("Time"),
            ("Scene", "resume_time" | "play_duration") => scalar("Float"),
            ("Scene", "captions") => object("VideoCaption"),
            ("Scene", "files") => object("VideoFile"),
            ("Scene", "paths") => object("ScenePathsType"),
            ("Scene", "studio") => object("Studio"),
            ("Scene", "groups") if self.has_groups => object("SceneGroup"),
            ("Scene", "movies") => object("SceneMovie"),
            ("Scene", "tags") => object("Tag"),
            ("Scene", "performers") => object("Performer"),
            ("Scene", "stash_ids") => object("StashID"),
            ("VideoCaption", "language_code" | "caption_type") => scalar("String"),
            ("VideoFile", "id") => scalar("ID"),
            ("VideoFile", "path" | "basename" | "format" | "video_codec" | "audio_codec") => scalar("String"),
            ("VideoFile", "mod_time" | "created_at" | "updated_at") => scalar("Time"),
            ("VideoFile", "size") => scalar("Int64"),
            ("VideoFile", "width" | "height" | "bit_rate") => scalar("Int"),
            ("VideoFile", "duration" | "frame_rate") => scalar("Float"),
            ("VideoFile", "fingerprint") => with_args(scalar("String"), &["type"]),
            ("VideoFile", "fingerprints") => object("Fingerprint"),
            ("VideoFile", "parent_folder") => object("Folder"),
            ("Fingerprint", "type" | "value") => scalar("String"),
            ("Folder", "id") => scalar("ID"),
            ("Folder", "path") => scalar("String"),
            (
                "ScenePathsType",
                "screenshot"
                | "preview"
                | "stream"
                | "webp"
                | "vtt"
                | "sprite"
                | "funscript"
                | "interactive_heatmap"
                | "caption",
            ) => scalar("String"),
            ("Studio", "id") => scalar("ID"),
            ("Studio", "name" | "url" | "urls" | "image_path" | "details" | "aliases") => scalar("String"),
            ("Studio", "rating100") => scalar("Int"),
            ("Studio", "favorite") => scalar("Boolean"),
            ("Studio", "parent_studio") => object("Studio"),
            ("Performer", "id") => scalar("ID"),
            (
                "Performer",
                "name" | "disambiguation" | "image_path" | "birthdate" | "country" | "alias_list" | "urls",
            ) => scalar("String"),
            ("Performer", "gender") => scalar("GenderEnum"),
            ("Performer", "favorite") => scalar("Boolean"),
            ("Performer", "rating100") => scalar("Int"),
            ("Tag", "id") => scalar("ID"),
            ("Tag", "name" | "sort_name" | "description" | "image_path" | "aliases") => scalar("String"),
            ("SceneGroup" | "SceneMovie", "scene_index") => scalar("Int"),
            ("SceneGroup", "group") => object("Group"),
            ("SceneMovie", "movie") => object("Movie"),
            ("Group" | "Movie", "id") => scalar("ID"),
            ("Group" | "Movie", "name" | "date" | "front_image_path") => scalar("String"),
            ("StashID", "endpoint" | "stash_id") => scalar("String"),
            ("StashID", "updated_at") => scalar("Time"),
            _ => return None,
        })
    }

    fn computed(
        &self,
        type_name: &str,
        field: &Field,
        parent: &Map<String, Json>,
        vars: &Map<String, Json>,
    ) -> Option<Json> {
        match (type_name, field.name.as_str()) {
            ("ConfigResult", "plugins") => {
                let all = parent.get("plugins").and_then(Json::as_object)?;
                let include = field.argument("include").map(|v| v.to_json(vars));
                let Some(Json::Array(ids)) = include else {
                    return Some(Json::Object(all.clone()));
                };
                let wanted: Vec<&str> = ids.iter().filter_map(Json::as_str).collect();
                Some(Json::Object(
                    all.iter()
                        .filter(|(k, _)| wanted.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ))
            }
            ("VideoFile", "fingerprint") => {
                let ty = field.argument("type").map(|v| v.to_json(vars));
                let ty = ty.as_ref().and_then(Json::as_str)?;
                let found = parent
                    .get("fingerprints")
                    .and_then(Json::as_array)
                    .and_then(|fps| fps.iter().find(|f| f["type"] == ty))
                    .map(|f| f["value"].clone());
                Some(found.unwrap_or(Json::Null))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client::{Resp, request};

    fn gql(stash: &FakeStash, query: &str, variables: Json, headers: &[(&str, &str)]) -> Resp {
        let body = json!({"query": query, "variables": variables}).to_string();
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        match request(stash.port(), "POST", "/graphql", &h, body.as_bytes()) {
            Ok(r) => r,
            Err(e) => panic!("POST /graphql: {e}"),
        }
    }

    fn full_scene(id: &str) -> SceneSpec {
        SceneSpec {
            title: Some(format!("Scene {id}")),
            details: Some("Details".into()),
            date: Some("2024-05".into()),
            urls: vec!["https://example.org/s".into()],
            files: vec![SceneFile::new(&format!("f{id}"), &format!("/data/Studio/Scene {id}.mp4"))],
            studio: Some(Studio {
                id: "3".into(),
                name: "Studio".into(),
                parent: Some(Box::new(Studio { id: "1".into(), name: "Parent".into(), parent: None })),
            }),
            performers: vec![Performer { id: "9".into(), name: "Jane".into(), ..Performer::default() }],
            tags: vec![Tag { id: "4".into(), name: "Tag".into() }],
            groups: vec![SceneGroup { scene_index: Some(2), group_id: "5".into(), group_name: "Group".into() }],
            ..SceneSpec::new(id)
        }
    }

    #[test]
    fn a_tripwire_fires_on_the_graphql_document_it_names() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        stash.upsert_scene(full_scene("45"));
        let find = "query FindScene($id: ID!) { findScene(id: $id) { id title } }";
        let answered = stash.tripwire("query FindScene", 2, TripPoint::Answered);
        assert_eq!(gql(&stash, "{ version { version } }", json!({}), &[]).status, 200);
        assert_eq!(gql(&stash, find, json!({"id": "45"}), &[]).status, 200);
        assert_eq!(answered.wait(Duration::from_millis(20)), None, "another document, then the first match");
        assert_eq!(gql(&stash, &format!("  {find}"), json!({"id": "45"}), &[]).status, 200);
        assert!(answered.wait(Duration::from_secs(5)).is_some_and(|d| d.contains("query FindScene")));
        // Received holds the answer until released.
        let held = stash.tripwire("query FindScene", 1, TripPoint::Received);
        let client = {
            let stash = stash.clone();
            std::thread::spawn(move || gql(&stash, find, json!({"id": "45"}), &[]).status)
        };
        assert!(held.wait(Duration::from_secs(5)).is_some());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!client.is_finished(), "the answer is held");
        held.release();
        assert_eq!(client.join().expect("client"), 200);
        // A field anywhere in a document.
        let field = stash.tripwire_containing("jobQueue {", 1, TripPoint::Answered);
        assert_eq!(gql(&stash, find, json!({"id": "45"}), &[]).status, 200);
        assert_eq!(field.wait(Duration::from_millis(20)), None, "not in that document");
        let riding = "query FindScene($id: ID!) { findScene(id: $id) { id } jobQueue { status } }";
        assert_eq!(gql(&stash, riding, json!({"id": "45"}), &[]).status, 200);
        assert!(field.wait(Duration::from_secs(5)).is_some(), "a root field after another");
    }

    #[test]
    fn projection_returns_only_selected_fields() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        stash.upsert_scene(full_scene("45"));
        let r = gql(
            &stash,
            "query Scene($id: ID!) { findScene(id: $id) { id title date studio { name parent_studio { name } } files { path basename } groups { scene_index group { name } } } }",
            json!({"id": "45"}),
            &[],
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!({"data": {"findScene": {
                "id": "45", "title": "Scene 45", "date": "2024-05",
                "studio": {"name": "Studio", "parent_studio": {"name": "Parent"}},
                "files": [{"path": "/data/Studio/Scene 45.mp4", "basename": "Scene 45.mp4"}],
                "groups": [{"scene_index": 2, "group": {"name": "Group"}}],
            }}})
        );
        let missing = gql(&stash, "{ findScene(id: 99) { id } }", Json::Null, &[]).json();
        assert_eq!(missing, json!({"data": {"findScene": null}}));

        let paths = gql(&stash, "{ findScene(id: \"45\") { paths { screenshot } } }", Json::Null, &[]).json();
        let shot = paths["data"]["findScene"]["paths"]["screenshot"].as_str().unwrap_or("").to_string();
        let prefix = format!("http://127.0.0.1:{}/scene/45/screenshot?t=", stash.port());
        assert!(shot.starts_with(&prefix), "{shot}");
        let img = request(stash.port(), "GET", &shot[shot.find("/scene").unwrap_or(0)..], &[], b"").expect("GET");
        assert_eq!((img.status, img.header("content-type")), (200, Some("image/jpeg")));
        assert_eq!(img.body, screenshot_bytes("45"));
    }

    #[test]
    fn validation_errors_are_422_and_bad_bodies_400() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        let r = gql(&stash, "{ findScene(id: 1) { id nope } }", Json::Null, &[]);
        assert_eq!(r.status, 422);
        let v = r.json();
        assert_eq!(v["errors"][0]["message"], json!("Cannot query field \"nope\" on type \"Scene\"."));
        assert_eq!(v["errors"][0]["extensions"]["code"], json!("GRAPHQL_VALIDATION_FAILED"));
        assert_eq!(v["data"], Json::Null);

        let r = gql(&stash, "query Q($id: ID!) { findScene(id: $id) { id } }", Json::Null, &[]);
        assert_eq!(r.status, 422);
        assert_eq!(r.json()["errors"][0]["path"], json!(["variable", "id"]));

        let r = gql(&stash, "{ findScene(id: 1) { ...F } } fragment F on Scene { id }", Json::Null, &[]);
        assert_eq!(r.status, 422);
        let r = gql(&stash, "{ findScene(id: 1) { id }", Json::Null, &[]);
        assert_eq!(
            (r.status, r.json()["errors"][0]["extensions"]["code"].clone()),
            (422, json!("GRAPHQL_PARSE_FAILED"))
        );

        let bad = request(stash.port(), "POST", "/graphql", &[("Content-Type", "application/json")], b"{not json")
            .expect("POST");
        assert_eq!(bad.status, 400);
        let plain = request(stash.port(), "POST", "/graphql", &[("Content-Type", "text/plain")], b"{}").expect("POST");
        assert_eq!(plain.status, 400);
    }

    #[test]
    fn updated_at_filter_is_lexical_and_pages() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        for i in 1..=5 {
            stash.upsert_scene(SceneSpec {
                updated_at: Some(format!("2026-01-10T1{i}:00:00+01:00")),
                ..full_scene(&i.to_string())
            });
        }
        let q = "query Changed($since: String!, $page: Int!) {
            findScenes(scene_filter: {updated_at: {value: $since, modifier: GREATER_THAN}},
                       filter: {page: $page, per_page: 2, sort: \"updated_at\", direction: ASC}) {
              count scenes { id updated_at } } }";
        let page = |since: &str, page: i64| gql(&stash, q, json!({"since": since, "page": page}), &[]).json();
        let p1 = page("2026-01-10T12:00:00+01:00", 1);
        assert_eq!(p1["data"]["findScenes"]["count"], json!(3));
        assert_eq!(
            p1["data"]["findScenes"]["scenes"],
            json!([
                {"id": "3", "updated_at": "2026-01-10T13:00:00+01:00"},
                {"id": "4", "updated_at": "2026-01-10T14:00:00+01:00"},
            ])
        );
        let p2 = page("2026-01-10T12:00:00+01:00", 2);
        assert_eq!(p2["data"]["findScenes"]["scenes"], json!([{"id": "5", "updated_at": "2026-01-10T15:00:00+01:00"}]));
        // Lexical, not chronological: with a space instead of "T" every
        // same-day stored value compares greater, even later-in-time ones.
        let lexical = page("2026-01-10 23:59:59", 1);
        assert_eq!(lexical["data"]["findScenes"]["count"], json!(5));
        let next_day = page("2026-01-11T00:00:00Z", 1);
        assert_eq!(next_day["data"]["findScenes"]["count"], json!(0));
        // page < 1 means page 1.
        assert_eq!(page("2026-01-10T12:00:00+01:00", 0)["data"]["findScenes"]["scenes"][0]["id"], json!("3"));

        let all = gql(
            &stash,
            "{ findScenes(filter: {per_page: -1, sort: \"title\", direction: DESC}) { count scenes { id } } }",
            Json::Null,
            &[],
        )
        .json();
        let ids: Vec<&str> = all["data"]["findScenes"]["scenes"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(ids, vec!["5", "4", "3", "2", "1"]);
        let bad_sort = gql(&stash, "{ findScenes(filter: {sort: \"nope\"}) { count } }", Json::Null, &[]);
        assert_eq!(bad_sort.status, 200);
        assert_eq!(
            bad_sort.json(),
            json!({"errors": [{"message": "invalid sort: nope", "path": ["findScenes"]}], "data": null})
        );
    }

    #[test]
    fn scenes_are_found_by_what_they_carry_and_renames_keep_updated_at() {
        let stash = FakeStash::start(StashAuth::None).unwrap();
        let performer = |id: &str| Performer { id: id.into(), name: format!("P{id}"), ..Performer::default() };
        let mut a = SceneSpec::new("1");
        a.performers = vec![performer("7"), performer("8")];
        a.tags = vec![Tag { id: "3".into(), name: "t".into() }];
        a.studio = Some(Studio {
            id: "5".into(),
            name: "Child".into(),
            parent: Some(Box::new(Studio { id: "4".into(), name: "Parent".into(), parent: None })),
        });
        let mut b = SceneSpec::new("2");
        b.performers = vec![performer("8")];
        b.groups = vec![SceneGroup { scene_index: None, group_id: "9".into(), group_name: "G".into() }];
        stash.upsert_scene(a);
        stash.upsert_scene(b);
        let ids = |filter: Json| -> Vec<String> {
            let q = "query Q($f: SceneFilterType) { findScenes(scene_filter: $f) { scenes { id } } }";
            let r = gql(&stash, q, json!({"f": filter}), &[]).json();
            r["data"]["findScenes"]["scenes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(json!({"performers": {"value": ["7"], "modifier": "INCLUDES"}})), ["1"]);
        assert_eq!(ids(json!({"performers": {"value": ["8"], "modifier": "INCLUDES"}})), ["1", "2"]);
        assert_eq!(ids(json!({"tags": {"value": ["3"], "modifier": "INCLUDES", "depth": 0}})), ["1"]);
        assert_eq!(ids(json!({"studios": {"value": ["4"], "modifier": "INCLUDES", "depth": 0}})), Vec::<String>::new());
        assert_eq!(ids(json!({"studios": {"value": ["4"], "modifier": "INCLUDES", "depth": -1}})), ["1"]);
        assert_eq!(ids(json!({"groups": {"value": ["9"], "modifier": "INCLUDES"}})), ["2"]);
        let before = stash.scene("2").unwrap().updated_at;
        assert_eq!(stash.rename_performer("8", "Renamed"), 2);
        assert_eq!(stash.scene("2").unwrap().performers[0].name, "Renamed");
        assert_eq!(stash.scene("2").unwrap().updated_at, before, "a rename does not touch the scene");
    }

    #[test]
    fn older_versions_have_no_groups() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        stash.upsert_scene(full_scene("1"));
        let q = "{ findScene(id: 1) { id groups { scene_index } } }";
        assert_eq!(gql(&stash, q, Json::Null, &[]).status, 200);
        stash.set_version("v0.26.2");
        let old = gql(&stash, q, Json::Null, &[]);
        assert_eq!(old.status, 422);
        assert_eq!(old.json()["errors"][0]["message"], json!("Cannot query field \"groups\" on type \"Scene\"."));
        let v = gql(&stash, "{ version { version } }", Json::Null, &[]).json();
        assert_eq!(v["data"]["version"]["version"], json!("v0.26.2"));
    }

    #[test]
    fn session_cookies_expire_and_are_refreshed_like_stash() {
        let stash =
            FakeStash::start(StashAuth::Session { cookie_value: "first".into(), api_key: None }).expect("start");
        stash.set_session_lifetime(2);
        let q = "{ version { version } }";
        let with = |c: &str| gql(&stash, q, Json::Null, &[("Cookie", &format!("session={c}"))]);
        let r1 = with("first");
        assert_eq!(r1.status, 200);
        let fresh = r1.header("set-cookie").and_then(|v| v.split(';').next()).and_then(|v| v.strip_prefix("session="));
        let fresh = fresh.expect("a refreshed cookie").to_string();
        assert_eq!(with("first").status, 200, "the first cookie has one use left");
        assert_eq!(with("first").status, 401, "then it has expired");
        assert_eq!(with(&fresh).status, 200, "the refreshed one works");
        assert_eq!(with("made-up").status, 401);
    }

    #[test]
    fn default_page_size_is_25_and_upsert_bumps_updated_at() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        for i in 1..=30 {
            stash.upsert_scene(full_scene(&i.to_string()));
        }
        let r = gql(&stash, "{ findScenes { count scenes { id } } }", Json::Null, &[]).json();
        assert_eq!(r["data"]["findScenes"]["count"], json!(30));
        assert_eq!(r["data"]["findScenes"]["scenes"].as_array().map(Vec::len), Some(25));

        let before = stash.scene("1").and_then(|s| s.updated_at).unwrap_or_default();
        stash.advance_clock(Duration::from_secs(5));
        let mut s = stash.scene("1").expect("scene");
        s.title = Some("Renamed".into());
        let after = stash.upsert_scene(s);
        assert!(after > before, "{after} <= {before}");
        assert!(stash.scene("1").and_then(|s| s.created_at).is_some_and(|c| c <= before));
    }

    #[test]
    fn pages_of_a_sorted_walk_follow_changes_made_between_them() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        for i in 1..=5 {
            stash.upsert_scene(full_scene(&i.to_string()));
            stash.advance_clock(Duration::from_secs(1));
        }
        let page = |n: i64, per: i64| -> Vec<String> {
            let vars = json!({"filter": {"page": n, "per_page": per, "sort": "updated_at", "direction": "ASC"},
                "scene_filter": {}});
            let q = "query Q($filter: FindFilterType, $scene_filter: SceneFilterType) { \
                     findScenes(filter: $filter, scene_filter: $scene_filter) { count scenes { id } } }";
            let r = gql(&stash, q, vars, &[]).json();
            assert_eq!(r["data"]["findScenes"]["count"], json!(stash.scenes().len()), "{r}");
            let scenes = r["data"]["findScenes"]["scenes"].as_array().cloned().unwrap_or_default();
            scenes.iter().map(|s| s["id"].as_str().unwrap_or_default().to_string()).collect()
        };
        assert_eq!(page(1, 2), ["1", "2"]);
        assert_eq!(page(3, 2), ["5"]);
        assert_eq!(page(4, 2), Vec::<String>::new(), "past the end");
        // An edit moves the scene to the end of an updated_at walk.
        let mut s = stash.scene("1").expect("scene");
        s.title = Some("Edited".into());
        stash.upsert_scene(s);
        assert_eq!(page(1, 2), ["2", "3"]);
        assert_eq!(page(3, 2), ["1"]);
        // A deleted scene is gone from the walk and the count.
        assert!(stash.remove_scene("3"));
        assert_eq!(page(1, 10), ["2", "4", "5", "1"]);
    }

    #[test]
    fn auth_rules_follow_stash() {
        let keyed = FakeStash::start(StashAuth::ApiKey("k1".into())).expect("start");
        keyed.upsert_scene(full_scene("1"));
        let q = "{ version { version } }";
        let denied = gql(&keyed, q, Json::Null, &[]);
        assert_eq!(denied.status, 401);
        assert!(denied.body.is_empty());
        assert_eq!(gql(&keyed, q, Json::Null, &[("ApiKey", "wrong")]).status, 401);
        let ok = gql(&keyed, q, Json::Null, &[("ApiKey", "k1")]);
        assert_eq!(ok.json(), json!({"data": {"version": {"version": STASH_VERSION}}}));
        assert_eq!(request(keyed.port(), "GET", "/scene/1/screenshot", &[], b"").expect("GET").status, 401);
        assert_eq!(request(keyed.port(), "GET", "/scene/1/screenshot?apikey=k1", &[], b"").expect("GET").status, 200);
        assert_eq!(request(keyed.port(), "GET", "/healthz", &[], b"").expect("GET").status, 200);
        let key = gql(&keyed, "{ configuration { general { apiKey } } }", Json::Null, &[("ApiKey", "k1")]).json();
        assert_eq!(key["data"]["configuration"]["general"]["apiKey"], json!("k1"));

        let session =
            FakeStash::start(StashAuth::Session { cookie_value: "abc=".into(), api_key: None }).expect("start");
        assert_eq!(gql(&session, q, Json::Null, &[("Cookie", "other=1; session=abc=")]).status, 200);
        assert_eq!(gql(&session, q, Json::Null, &[("Cookie", "session=nope")]).status, 401);
        // A wrong ApiKey fails even with a good cookie.
        assert_eq!(gql(&session, q, Json::Null, &[("Cookie", "session=abc="), ("ApiKey", "x")]).status, 401);

        let open = FakeStash::start(StashAuth::None).expect("start");
        assert_eq!(gql(&open, q, Json::Null, &[]).status, 200);
        assert_eq!(gql(&open, q, Json::Null, &[("ApiKey", "anything")]).status, 401);
    }

    #[test]
    fn plugin_settings_jobs_and_configure_plugin() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        stash.set_plugin_settings("stash2plex", json!({"plexToken": "t", "batchSize": 50}));
        stash.set_plugin_settings("other", json!({"x": true}));
        let r =
            gql(&stash, r#"{ configuration { plugins(include: ["stash2plex", "absent"]) } }"#, Json::Null, &[]).json();
        assert_eq!(
            r,
            json!({"data": {"configuration": {"plugins": {"stash2plex": {"plexToken": "t", "batchSize": 50}}}}})
        );
        let all = gql(&stash, "query { configuration { plugins } }", Json::Null, &[]).json();
        assert_eq!(all["data"]["configuration"]["plugins"].as_object().map(Map::len), Some(2));

        let jobs = gql(&stash, "{ jobQueue { id status description } }", Json::Null, &[]).json();
        assert_eq!(jobs, json!({"data": {"jobQueue": null}}));
        stash.set_jobs(vec![JobSpec {
            id: "1".into(),
            status: "RUNNING".into(),
            description: "Scanning...".into(),
            progress: Some(0.5),
        }]);
        let jobs = gql(&stash, "{ jobQueue { status description } }", Json::Null, &[]).json();
        assert_eq!(jobs["data"]["jobQueue"], json!([{"status": "RUNNING", "description": "Scanning..."}]));

        let m = gql(
            &stash,
            "mutation C($input: Map!) { configurePlugin(plugin_id: \"stash2plex\", input: $input) }",
            json!({"input": {"watermark": "2026"}}),
            &[],
        );
        assert_eq!(m.status, 200);
        assert_eq!(stash.plugin_settings("stash2plex"), Some(json!({"watermark": "2026"})));
        assert_eq!(stash.graphql_count("configurePlugin"), 1);
        let last = stash.requests().pop().expect("recorded");
        assert_eq!(last.variables, json!({"input": {"watermark": "2026"}}));
        assert_eq!(last.header("content-type"), Some("application/json"));
    }

    #[test]
    fn injected_graphql_errors_and_outage() {
        let stash = FakeStash::start(StashAuth::None).expect("start");
        let q = "{ version { version } }";
        stash.fail_next_graphql(1, "database is locked");
        let r = gql(&stash, q, Json::Null, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), json!({"errors": [{"message": "database is locked"}], "data": null}));
        assert_eq!(gql(&stash, q, Json::Null, &[]).json()["data"]["version"]["version"], json!(STASH_VERSION));

        let port = stash.port();
        stash.set_down(true);
        let err = request(port, "POST", "/graphql", &[], b"").expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        stash.set_down(false);
        assert_eq!(stash.port(), port);
        assert_eq!(gql(&stash, q, Json::Null, &[]).status, 200);
    }
}
