//! Stash's GraphQL API: the plugin's settings, and scene look-ups for the
//! policy's `stash` capability. Requests carry the session cookie Stash gave
//! the plugin (needed for hook-loop tracking) and, when Stash has one, the
//! API key (which keeps long tasks authenticated after the cookie expires).

use crate::net::http::{self, ClientOptions, HttpClient, Method, TransportError};
use crate::runtime::wit::stash as wit;
use crate::text::{clip, snippet, without_values};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StashError {
    #[error("Stash could not be reached at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "Stash refused the plugin's credentials (HTTP {0}); if Stash has a password, make sure the plugin runs from Stash"
    )]
    Unauthorized(u16),
    #[error("Stash reported an error: {0}")]
    Graphql(String),
    #[error("Stash answered with something unexpected: {0}")]
    Malformed(String),
}

impl From<StashError> for wit::StashError {
    fn from(e: StashError) -> Self {
        match e {
            StashError::Unreachable { .. } => wit::StashError::Unreachable(e.to_string()),
            StashError::Unauthorized(_) => wit::StashError::Unauthorized(e.to_string()),
            StashError::Graphql(m) => wit::StashError::Graphql(m),
            StashError::Malformed(m) => wit::StashError::Malformed(m),
        }
    }
}

pub struct StashClient {
    http: HttpClient,
    base_url: String,
    /// The session cookie. Stash answers each request authenticated by it
    /// with a fresh one (`Set-Cookie`), and refuses an old one after
    /// `max_session_age` (an hour by default), so a long drain keeps the
    /// newest.
    cookie: std::sync::Mutex<Option<String>>,
    api_key: Option<String>,
    /// Set once Stash says it has no `Scene.groups` (older than v0.27).
    no_groups: std::sync::atomic::AtomicBool,
    /// The last image digested (URL, bytes), so the upload that usually
    /// follows does not download it again.
    last_image: std::sync::Mutex<Option<(String, Vec<u8>)>>,
    /// A drain's watch riding on the policy's next scene query.
    rider: std::sync::Mutex<Rider>,
}

/// A running drain's look at Stash (its settings and running job) can ride
/// on the policy's next scene query as two more root fields of the same
/// GraphQL document, so a long walk over Stash's scenes (a reconciliation,
/// a catch-up, batched look-ups) costs one request per page and no watch
/// requests beside them.
#[derive(Default)]
struct Rider {
    /// The plugin whose settings the next scene query should carry.
    wanted: Option<String>,
    /// What the last carrying query brought back.
    answer: Option<Watched>,
    /// This Stash refused a carrying query that it answers without the
    /// rider: the watch asks on its own from now on.
    refused: bool,
    /// When the policy last asked Stash something (a rider only waits for
    /// a policy that is reading Stash now).
    last_query: Option<std::time::Instant>,
}

/// A policy that asked Stash this recently is likely to ask again soon.
const READING_WITHIN: Duration = Duration::from_secs(1);

/// The plugin's settings and the heavy Stash job running, if any.
pub type Watched = (Map<String, Value>, Option<String>);

/// SHA-1 of an image and its size (the contract's `image-digest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigest {
    pub sha1: String,
    pub size: u64,
}

impl std::fmt::Debug for StashClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StashClient")
            .field("base_url", &self.base_url)
            .field("cookie", &"****")
            .field("api_key", &self.api_key.as_ref().map(|_| "****"))
            .finish()
    }
}

/// The largest Stash answer the host reads. Scene pages are capped at
/// [`MAX_PER_PAGE`] scenes, a few KiB each; a bigger answer is an error, not
/// a memory blow-up.
const MAX_GRAPHQL_BODY: u64 = 32 << 20;
/// Scenes per page the host asks Stash for at most.
pub const MAX_PER_PAGE: u32 = 250;
/// The largest image the host passes on to Plex.
pub const MAX_IMAGE_BYTES: u64 = 20 << 20;

/// The image routes of Stash a poster or background may come from (`{id}`
/// is a Stash id).
const IMAGE_ROUTES: &[&str] = &[
    "/scene/{id}/screenshot",
    "/performer/{id}/image",
    "/studio/{id}/image",
    "/tag/{id}/image",
    "/group/{id}/frontimage",
    "/group/{id}/backimage",
    "/movie/{id}/frontimage",
    "/movie/{id}/backimage",
];

const BASE_SCENE_FIELDS: &str = "id title code details director date rating100 organized urls created_at updated_at \
     files { path size duration } paths { screenshot } \
     studio { id name parent_studio { name } } \
     performers { id name disambiguation gender image_path } \
     tags { id name }";

/// `Scene.groups` exists since Stash v0.27; before, groups were "movies".
const GROUP_FIELDS: &str = "groups { scene_index group { id name } }";
const MOVIE_FIELDS: &str = "movies { scene_index movie { id name } }";

/// A GraphQL answer: `data` is parsed into its type only after `errors`
/// were looked at, straight from the body (no intermediate JSON tree).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    errors: Option<Vec<GraphqlError>>,
}

#[derive(Deserialize)]
struct GraphqlError {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ConfigurationData {
    configuration: Configuration,
}

impl ConfigurationData {
    /// The plugin's settings map and Stash's API key (empty when none).
    fn plugin_settings(self, plugin_id: &str) -> Result<(Map<String, Value>, Option<String>), StashError> {
        let config = self.configuration;
        let api_key = config.general.and_then(|g| g.api_key).filter(|k| !k.is_empty());
        let settings = match config.plugins.and_then(|mut p| p.remove(plugin_id)) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(StashError::Malformed(format!(
                    "the plugin settings are not an object but {}",
                    json_kind(&other)
                )));
            }
        };
        Ok((settings, api_key))
    }
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    general: Option<General>,
    #[serde(default)]
    plugins: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct General {
    #[serde(rename = "apiKey", default)]
    api_key: Option<String>,
}

#[derive(Deserialize)]
struct FindSceneData {
    #[serde(rename = "findScene")]
    find_scene: Option<JScene>,
}

#[derive(Deserialize)]
struct FindScenesData {
    #[serde(rename = "findScenes")]
    find_scenes: JScenePage,
}

#[derive(Deserialize)]
struct JScenePage {
    #[serde(default)]
    count: u64,
    scenes: Vec<JScene>,
}

#[derive(Deserialize)]
struct SceneIdsData {
    #[serde(rename = "findScenes")]
    find_scenes: IdsPage,
}

#[derive(Deserialize)]
struct IdsPage {
    count: u64,
    scenes: Vec<IdRow>,
}

#[derive(Deserialize)]
struct IdRow {
    id: Value,
    #[serde(default)]
    updated_at: Option<String>,
}

impl SceneIdsData {
    /// How many scenes are left, and the page's (id, `updated_at`).
    fn rows(self) -> Result<(u64, Vec<(String, String)>), StashError> {
        let rows = self
            .find_scenes
            .scenes
            .into_iter()
            .map(|r| Ok((id_string(&r.id)?, r.updated_at.unwrap_or_default())))
            .collect::<Result<Vec<_>, StashError>>()?;
        Ok((self.find_scenes.count, rows))
    }
}

#[derive(Deserialize)]
struct WatchData {
    configuration: Configuration,
    #[serde(rename = "jobQueue", default)]
    job_queue: Option<Vec<Job>>,
}

/// A scene query's answer with the watch's fields riding on it.
#[derive(Deserialize)]
struct Carried<T> {
    #[serde(flatten)]
    data: T,
    #[serde(default)]
    configuration: Option<Configuration>,
    #[serde(rename = "jobQueue", default)]
    job_queue: Option<Vec<Job>>,
}

#[derive(Deserialize)]
struct Job {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

impl WatchData {
    /// The plugin's settings and the heavy Stash job running, if any.
    fn settings_and_busy(self, plugin_id: &str) -> Watched {
        let settings = match self.configuration.plugins.and_then(|mut p| p.remove(plugin_id)) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        // `jobQueue` is null when nothing is queued.
        let busy = self.job_queue.unwrap_or_default().into_iter().find_map(|j| {
            let running = j.status.as_deref() == Some("RUNNING");
            let what = j.description.unwrap_or_default();
            let lower = what.to_ascii_lowercase();
            let heavy = ["scan", "identify", "auto tag", "auto-tag", "generat"].iter().any(|w| lower.contains(w));
            (running && heavy).then_some(what)
        });
        (settings, busy)
    }
}

impl FindSceneData {
    fn scene(self) -> Result<Option<wit::Scene>, StashError> {
        self.find_scene.map(JScene::into_wit).transpose()
    }
}

impl FindScenesData {
    fn page(self) -> Result<wit::ScenePage, StashError> {
        let page = self.find_scenes;
        let scenes = page.scenes.into_iter().map(JScene::into_wit).collect::<Result<Vec<_>, _>>()?;
        Ok(wit::ScenePage { count: page.count, scenes })
    }
}

impl StashClient {
    pub fn new(base_url: &str, cookie: Option<&str>, api_key: Option<&str>) -> StashClient {
        let http = HttpClient::new(ClientOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_body: MAX_GRAPHQL_BODY.max(MAX_IMAGE_BYTES),
            // Stash with TLS usually has a self-signed certificate; accept it
            // only on loopback, where nobody can be in the middle.
            accept_invalid_certs: http::is_loopback(base_url),
            user_agent: format!("stash2plex/{}", env!("CARGO_PKG_VERSION")),
            // Stash is reached directly, never through a proxy.
            proxy: None,
        });
        if let Some(c) = cookie {
            crate::plugin::log::register_secret(c);
        }
        if let Some(k) = api_key {
            crate::plugin::log::register_secret(k);
        }
        StashClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            cookie: std::sync::Mutex::new(cookie.map(str::to_string)),
            api_key: api_key.filter(|k| !k.is_empty()).map(str::to_string),
            no_groups: std::sync::atomic::AtomicBool::new(false),
            last_image: std::sync::Mutex::new(None),
            rider: std::sync::Mutex::new(Rider::default()),
        }
    }

    fn auth_headers(&self) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(c) = self.cookie.lock().ok().and_then(|c| c.clone()) {
            h.push(("Cookie".into(), format!("session={c}")));
        }
        if let Some(k) = &self.api_key {
            h.push(("ApiKey".into(), k.clone()));
        }
        h
    }

    fn unreachable(&self, e: TransportError) -> StashError {
        match e {
            TransportError::TooLarge(n) => StashError::Malformed(format!("response larger than {n} bytes")),
            other => StashError::Unreachable { url: self.base_url.clone(), detail: other.to_string() },
        }
    }

    /// One GraphQL request; returns `data` as `T`.
    fn graphql<T: DeserializeOwned>(&self, query: &str, variables: Value) -> Result<T, StashError> {
        let url = format!("{}/graphql", self.base_url);
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))
            .map_err(|e| StashError::Malformed(e.to_string()))?;
        let mut headers = self.auth_headers();
        headers.push(("Content-Type".into(), "application/json".into()));
        headers.push(("Accept".into(), "application/json".into()));
        let resp = self
            .http
            .send(Method::Post, &url, &headers, Some(body), None, Some(MAX_GRAPHQL_BODY))
            .map_err(|e| self.unreachable(e))?;
        self.keep_fresh_cookie(&resp.headers);
        read_answer(resp.status, &resp.body)
    }

    /// The plugin's settings map and Stash's API key (empty when none).
    pub fn plugin_settings(&self, plugin_id: &str) -> Result<(Map<String, Value>, Option<String>), StashError> {
        let id = serde_json::to_string(plugin_id).map_err(|e| StashError::Malformed(e.to_string()))?;
        let q = format!("{{ configuration {{ general {{ apiKey }} plugins(include: [{id}]) }} }}");
        let data: ConfigurationData = self.graphql(&q, json!({}))?;
        data.plugin_settings(plugin_id)
    }

    /// Take the refreshed session cookie from a response, if there is one.
    fn keep_fresh_cookie(&self, headers: &[(String, String)]) {
        let fresh = headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next()?.trim().strip_prefix("session="))
            .rfind(|v| !v.is_empty());
        if let Some(value) = fresh
            && let Ok(mut c) = self.cookie.lock()
        {
            crate::plugin::log::register_secret(value);
            *c = Some(value.to_string());
        }
    }

    /// The session cookie as Stash last refreshed it.
    pub fn session_cookie(&self) -> Option<String> {
        self.cookie.lock().ok().and_then(|c| c.clone())
    }

    /// Use Stash's API key from now on (it outlives the session cookie).
    pub fn set_api_key(&mut self, key: Option<String>) {
        if let Some(k) = &key {
            crate::plugin::log::register_secret(k);
        }
        self.api_key = key.filter(|k| !k.is_empty());
    }

    fn old_groups(&self) -> bool {
        self.no_groups.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn scene_fields(&self) -> String {
        let groups = if self.old_groups() { MOVIE_FIELDS } else { GROUP_FIELDS };
        format!("{BASE_SCENE_FIELDS} {groups}")
    }

    /// The `scene_filter` for a query, in this Stash's names.
    fn scene_filter(&self, query: &wit::SceneQuery) -> Value {
        let mut filter = Map::new();
        if let Some(after) = &query.updated_after {
            filter.insert("updated_at".into(), json!({ "value": after, "modifier": "GREATER_THAN" }));
        }
        match &query.related {
            None => {}
            Some(wit::RelatedObject::Performer(id)) => {
                filter.insert("performers".into(), json!({ "value": [id], "modifier": "INCLUDES" }));
            }
            Some(wit::RelatedObject::Studio(id)) => {
                filter.insert("studios".into(), json!({ "value": [id], "modifier": "INCLUDES", "depth": 0 }));
            }
            Some(wit::RelatedObject::Tag(id)) => {
                filter.insert("tags".into(), json!({ "value": [id], "modifier": "INCLUDES", "depth": 0 }));
            }
            Some(wit::RelatedObject::Group(id)) => {
                let key = if self.old_groups() { "movies" } else { "groups" };
                filter.insert(key.into(), json!({ "value": [id], "modifier": "INCLUDES" }));
            }
        }
        Value::Object(filter)
    }

    /// Run a scene query; if this Stash predates `Scene.groups`, remember
    /// that and ask again with `movies`.
    fn scene_query<T: DeserializeOwned>(
        &self,
        build: impl Fn(&str) -> String,
        variables: Value,
    ) -> Result<T, StashError> {
        match self.policy_query(&build(&self.scene_fields()), variables.clone()) {
            Err(StashError::Graphql(m))
                if m.contains("\"groups\"") && !self.no_groups.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                crate::debug!("This Stash has no scene groups (older than v0.27); asking for movies instead");
                self.no_groups.store(true, std::sync::atomic::Ordering::Relaxed);
                self.policy_query(&build(&self.scene_fields()), variables)
            }
            other => other,
        }
    }

    pub fn find_scene(&self, id: &str) -> Result<Option<wit::Scene>, StashError> {
        let data: FindSceneData = self.scene_query(
            |fields| format!("query FindScene($id: ID!) {{ findScene(id: $id) {{ {fields} }} }}"),
            json!({ "id": id }),
        )?;
        data.scene()
    }

    /// A page of scenes; `per-page` is capped at [`MAX_PER_PAGE`].
    pub fn find_scenes(&self, query: &wit::SceneQuery) -> Result<wit::ScenePage, StashError> {
        let mut vars = json!({
            "filter": { "page": query.page.max(1), "per_page": query.per_page.clamp(1, MAX_PER_PAGE), "sort": "updated_at", "direction": "ASC" },
            "scene_filter": self.scene_filter(query),
        });
        let by_id = !query.ids.is_empty();
        if by_id {
            vars["ids"] = json!(query.ids);
        }
        let data: FindScenesData = self.scene_query(
            |fields| {
                let (decl, arg) = if by_id { (", $ids: [ID!]", ", ids: $ids") } else { ("", "") };
                format!(
                    "query FindScenes($filter: FindFilterType, $scene_filter: SceneFilterType{decl}) {{ \
                     findScenes(filter: $filter, scene_filter: $scene_filter{arg}) {{ count scenes {{ {fields} }} }} }}"
                )
            },
            vars,
        )?;
        data.page()
    }

    /// The next page of scene ids (ascending, after `after_id`) with their
    /// `updated_at` exactly as Stash wrote it, optionally only those updated
    /// after `updated_after`: Sync All and Sync Recent read these, not whole
    /// scenes. Keyset paging by id stays correct while scenes are edited or
    /// deleted during the walk (page numbers would shift and skip some).
    /// Returns how many scenes are left from `after_id` on, and the page.
    /// `operation` names the GraphQL query (`SceneIds`, `CatchUp`) so
    /// Stash's log and the tests tell the walks apart.
    pub fn scene_ids(
        &self,
        operation: &str,
        after_id: Option<u64>,
        updated_after: Option<&str>,
    ) -> Result<(u64, Vec<(String, String)>), StashError> {
        let mut filter = Map::new();
        if let Some(after) = updated_after {
            filter.insert("updated_at".into(), json!({ "value": after, "modifier": "GREATER_THAN" }));
        }
        if let Some(id) = after_id {
            filter.insert("id".into(), json!({ "value": id, "modifier": "GREATER_THAN" }));
        }
        let vars = json!({
            "filter": { "page": 1, "per_page": MAX_PER_PAGE, "sort": "id", "direction": "ASC" },
            "scene_filter": filter,
        });
        let q = format!(
            "query {operation}($filter: FindFilterType, $scene_filter: SceneFilterType) {{ \
             findScenes(filter: $filter, scene_filter: $scene_filter) {{ count scenes {{ id updated_at }} }} }}"
        );
        let data: SceneIdsData = self.policy_query(&q, vars)?;
        data.rows()
    }

    /// The `updated_at` of the most recently updated scene (its offset is
    /// the server's, which Sync Recent's first watermark must use).
    pub fn newest_update(&self) -> Result<Option<String>, StashError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "findScenes")]
            find_scenes: Page,
        }
        #[derive(Deserialize)]
        struct Page {
            scenes: Vec<Row>,
        }
        #[derive(Deserialize)]
        struct Row {
            #[serde(default)]
            updated_at: Option<String>,
        }
        let q = "{ findScenes(filter: {page: 1, per_page: 1, sort: \"updated_at\", direction: DESC}) { scenes { updated_at } } }";
        let data: Data = self.graphql(q, json!({}))?;
        Ok(data.find_scenes.scenes.into_iter().next().and_then(|r| r.updated_at))
    }

    /// What a running drainer watches: the plugin's settings, and the Stash
    /// job (scan, identify, auto tag, generate) that is running, if any.
    pub fn watch(&self, plugin_id: &str) -> Result<Watched, StashError> {
        if let Ok(mut rider) = self.rider.lock() {
            rider.wanted = None;
        }
        let q = format!("{{ {} }}", watch_fields(plugin_id)?);
        let data: WatchData = self.graphql(&q, json!({}))?;
        Ok(data.settings_and_busy(plugin_id))
    }

    /// Let the watch ride on the next scene query (see [`Rider`]). An
    /// answer a late carrier left from an earlier wish is dropped: only
    /// what comes after this wish is taken.
    pub fn want_watch(&self, plugin_id: &str) {
        if let Ok(mut rider) = self.rider.lock() {
            rider.answer = None;
            rider.wanted = (!rider.refused).then(|| plugin_id.to_string());
        }
    }

    /// Whether the watch should wait for a scene query to carry it: this
    /// Stash takes riders and the policy is reading scenes now (it asked
    /// within the last second). See [`Rider`].
    pub fn rides_soon(&self) -> bool {
        self.rider.lock().is_ok_and(|r| !r.refused && r.last_query.is_some_and(|t| t.elapsed() < READING_WITHIN))
    }

    /// What a scene query carried back since the watch asked for it.
    pub fn take_watch(&self) -> Option<Watched> {
        self.rider.lock().ok()?.answer.take()
    }

    /// A query the policy asked for, carrying the watch if it is wanted.
    /// A Stash that refuses the carrying document but answers the plain one
    /// is not asked to carry again.
    fn policy_query<T: DeserializeOwned>(&self, query: &str, variables: Value) -> Result<T, StashError> {
        let wanted = self.rider.lock().ok().and_then(|mut r| {
            r.last_query = Some(std::time::Instant::now());
            r.wanted.take()
        });
        let Some(plugin_id) = wanted else {
            return self.graphql(query, variables);
        };
        let carrying = watch_fields(&plugin_id).ok().and_then(|fields| with_root_fields(query, &fields));
        let Some(carrying) = carrying else {
            return self.graphql(query, variables);
        };
        match self.graphql::<Carried<T>>(&carrying, variables.clone()) {
            Ok(carried) => {
                let watched = carried.configuration.map(|configuration| {
                    WatchData { configuration, job_queue: carried.job_queue }.settings_and_busy(&plugin_id)
                });
                if let Ok(mut rider) = self.rider.lock() {
                    rider.answer = watched;
                }
                Ok(carried.data)
            }
            Err(StashError::Graphql(m)) => {
                let plain = self.graphql(query, variables);
                if plain.is_ok() {
                    crate::debug!("Stash refused the watch riding on a scene query ({m}); the watch asks on its own");
                    if let Ok(mut rider) = self.rider.lock() {
                        rider.refused = true;
                    }
                }
                plain
            }
            Err(e) => Err(e),
        }
    }

    /// An image for an upload to Plex; the image [`StashClient::image_digest`]
    /// just read is not downloaded again.
    pub fn fetch_image(&self, url: &str) -> Result<Vec<u8>, TransportError> {
        if let Some(bytes) = self.cached_image(url) {
            return Ok(bytes);
        }
        self.download_image(url)
    }

    /// Download an image and return its SHA-1 and size, keeping the bytes
    /// for the next [`StashClient::fetch_image`] of the same URL.
    pub fn image_digest(&self, url: &str) -> Result<ImageDigest, StashError> {
        use sha1::Digest as _;
        let cached = self.cached_image(url).map(Ok);
        let bytes = cached.unwrap_or_else(|| self.download_image(url)).map_err(|e| match e {
            TransportError::InvalidRequest(m) => StashError::Malformed(m),
            TransportError::TooLarge(n) => StashError::Malformed(format!("the image is larger than {n} bytes")),
            other => StashError::Unreachable { url: self.base_url.clone(), detail: other.to_string() },
        })?;
        let sha1: String = sha1::Sha1::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let digest = ImageDigest { sha1, size: bytes.len() as u64 };
        if let Ok(mut last) = self.last_image.lock() {
            *last = Some((url.to_string(), bytes));
        }
        Ok(digest)
    }

    /// The last image digested, if it is the one at `url` (a poster and a
    /// background from the same screenshot are downloaded once).
    fn cached_image(&self, url: &str) -> Option<Vec<u8>> {
        let last = self.last_image.lock().ok()?;
        last.as_ref().filter(|(u, _)| u == url).map(|(_, b)| b.clone())
    }

    /// Download an image from this Stash server: only from Stash's image
    /// routes (`IMAGE_ROUTES`), fetched from the Stash the plugin was started
    /// by whatever host the URL names, at most [`MAX_IMAGE_BYTES`], and only
    /// if the answer is an image.
    fn download_image(&self, url: &str) -> Result<Vec<u8>, TransportError> {
        let path_and_query = image_route(url).map_err(TransportError::InvalidRequest)?;
        let resp = self.http.send(
            Method::Get,
            &format!("{}{path_and_query}", self.base_url),
            &self.auth_headers(),
            None,
            None,
            Some(MAX_IMAGE_BYTES),
        )?;
        self.keep_fresh_cookie(&resp.headers);
        if resp.status != 200 {
            return Err(TransportError::InvalidRequest(format!("Stash answered HTTP {} for the image", resp.status)));
        }
        let content_type =
            resp.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str()).unwrap_or("");
        if !content_type.trim_start().to_ascii_lowercase().starts_with("image/") || image_kind(&resp.body).is_none() {
            return Err(TransportError::InvalidRequest(format!(
                "Stash's answer for the image is not an image (Content-Type {:?}, {} bytes)",
                clip(content_type, 60),
                resp.body.len()
            )));
        }
        Ok(resp.body)
    }
}

/// The root fields of the drain's watch: the plugin's settings and Stash's
/// job queue.
fn watch_fields(plugin_id: &str) -> Result<String, StashError> {
    let id = serde_json::to_string(plugin_id).map_err(|e| StashError::Malformed(e.to_string()))?;
    Ok(format!("configuration {{ plugins(include: [{id}]) }} jobQueue {{ status description }}"))
}

/// `query` (one operation, ending with its selection set) with `fields`
/// added to its root selection; `None` for a document of another shape.
fn with_root_fields(query: &str, fields: &str) -> Option<String> {
    let trimmed = query.trim_end();
    let body = trimmed.strip_suffix('}')?;
    Some(format!("{body} {fields} }}"))
}

/// A GraphQL answer (status and body) read as `data` of type `T`: the
/// credentials refused, Stash's own errors, an answer that is not GraphQL,
/// each a typed error.
fn read_answer<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, StashError> {
    if status == 401 || status == 403 {
        return Err(StashError::Unauthorized(status));
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
        let why = clip(&without_values(&e.to_string()), MAX_MESSAGE_CHARS);
        StashError::Malformed(format!(
            "HTTP {status} with a body that is not a GraphQL answer ({why}): {}",
            shown_body(body)
        ))
    })?;
    if let Some(errors) = envelope.errors.filter(|e| !e.is_empty()) {
        let msgs: Vec<String> = errors.into_iter().filter_map(|e| e.message).collect();
        let text = if msgs.is_empty() { "unknown error".into() } else { msgs.join("; ") };
        return Err(StashError::Graphql(clip(&text, MAX_MESSAGE_CHARS)));
    }
    if !(200..300).contains(&status) {
        return Err(StashError::Malformed(format!("HTTP {status}: {}", shown_body(body))));
    }
    let data = envelope
        .data
        .filter(|d| d.get() != "null")
        .ok_or_else(|| StashError::Malformed("the response has no data".into()))?;
    serde_json::from_str(data.get()).map_err(|e| {
        let why = clip(&without_values(&e.to_string()), MAX_MESSAGE_CHARS);
        StashError::Malformed(format!("the answer could not be read: {why}"))
    })
}

/// Stash's own error messages and serde's, cut to this.
const MAX_MESSAGE_CHARS: usize = 1000;

/// A body for a diagnostic: the start of an error page; of JSON only its
/// size (a GraphQL answer, even a cut-short one, may hold the API key or a
/// plugin setting's secret).
fn shown_body(body: &[u8]) -> String {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => format!("(a JSON body of {} bytes)", body.len()),
        _ => snippet(body, 200),
    }
}

/// The path and query of `url` if it names one of Stash's image routes with
/// nothing but a `t` cache-buster in the query.
fn image_route(url: &str) -> Result<String, String> {
    let uri = url.parse::<ureq::http::Uri>().map_err(|_| format!("{:?} is not a URL", clip(url, 120)))?;
    let path = uri.path();
    let id_ok = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let route_ok = IMAGE_ROUTES.iter().any(|pattern| {
        let (prefix, suffix) = pattern.split_once("{id}").unwrap_or((pattern, ""));
        path.strip_prefix(prefix).and_then(|rest| rest.strip_suffix(suffix)).is_some_and(id_ok)
    });
    if !route_ok {
        return Err(format!("{} is not one of Stash's image routes", clip(path, 120)));
    }
    let query = uri.query().unwrap_or("");
    let query_ok = query.split('&').filter(|p| !p.is_empty()).all(|pair| {
        pair.split_once('=').is_some_and(|(k, v)| k == "t" && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()))
    });
    if !query_ok {
        return Err(format!("an image URL may carry only a t= cache-buster, not {:?}", clip(query, 80)));
    }
    Ok(if query.is_empty() { path.to_string() } else { format!("{path}?{query}") })
}

/// The image format of `bytes` by its magic number.
pub fn image_kind(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some("jpeg"),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some("png"),
        [b'G', b'I', b'F', b'8', ..] => Some("gif"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("webp"),
        [_, _, _, _, b'f', b't', b'y', b'p', b'a', b'v', b'i', b'f', ..] => Some("avif"),
        _ => None,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// ---- JSON → contract types -------------------------------------------------

/// A scene as Stash's GraphQL API returns it (`findScene`; also wrapped in
/// `{"data": {"findScene": ...}}` or `{"findScene": ...}`), as the contract's
/// scene (`stash2plex policy run --scene`, the conformance fixture).
pub fn scene_from_json(v: &Value) -> Result<wit::Scene, StashError> {
    let inner = v.pointer("/data/findScene").or_else(|| v.get("findScene")).unwrap_or(v);
    let scene: JScene = serde_json::from_value(inner.clone())
        .map_err(|e| StashError::Malformed(format!("not a Stash scene (findScene) object: {e}")))?;
    scene.into_wit()
}

#[derive(Deserialize)]
struct JScene {
    id: Value,
    title: Option<String>,
    code: Option<String>,
    details: Option<String>,
    director: Option<String>,
    date: Option<String>,
    rating100: Option<i64>,
    #[serde(default)]
    organized: Option<bool>,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    files: Option<Vec<JFile>>,
    #[serde(default)]
    paths: Option<JPaths>,
    #[serde(default)]
    studio: Option<JStudio>,
    #[serde(default)]
    performers: Option<Vec<JPerformer>>,
    #[serde(default)]
    tags: Option<Vec<JTag>>,
    /// `movies` before Stash v0.27.
    #[serde(default, alias = "movies")]
    groups: Option<Vec<JSceneGroup>>,
}

#[derive(Deserialize)]
struct JFile {
    path: String,
    #[serde(default)]
    size: Option<Value>,
    #[serde(default)]
    duration: Option<f64>,
}

#[derive(Deserialize)]
struct JPaths {
    screenshot: Option<String>,
}

#[derive(Deserialize)]
struct JStudio {
    id: Value,
    name: String,
    parent_studio: Option<JNamed>,
}

#[derive(Deserialize)]
struct JNamed {
    name: String,
}

#[derive(Deserialize)]
struct JPerformer {
    id: Value,
    name: String,
    disambiguation: Option<String>,
    gender: Option<String>,
    image_path: Option<String>,
}

#[derive(Deserialize)]
struct JTag {
    id: Value,
    name: String,
}

#[derive(Deserialize)]
struct JSceneGroup {
    scene_index: Option<i64>,
    /// `movie` before Stash v0.27.
    #[serde(alias = "movie")]
    group: JTag,
}

fn id_string(v: &Value) -> Result<String, StashError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => {
            Err(StashError::Malformed(format!("an id is not a string or number: {}", clip(&other.to_string(), 60))))
        }
    }
}

impl JScene {
    fn into_wit(self) -> Result<wit::Scene, StashError> {
        scene_to_wit(self)
    }
}

fn scene_to_wit(s: JScene) -> Result<wit::Scene, StashError> {
    let files = s
        .files
        .unwrap_or_default()
        .into_iter()
        .map(|f| wit::VideoFile {
            path: f.path,
            size: match f.size {
                Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
                Some(Value::String(s)) => s.parse().unwrap_or(0),
                _ => 0,
            },
            duration_secs: f.duration.filter(|d| d.is_finite()).unwrap_or(0.0),
        })
        .collect();
    let studio = match s.studio {
        None => None,
        Some(st) => {
            Some(wit::Studio { id: id_string(&st.id)?, name: st.name, parent_name: st.parent_studio.map(|p| p.name) })
        }
    };
    let performers = s
        .performers
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            Ok(wit::Performer {
                id: id_string(&p.id)?,
                name: p.name,
                disambiguation: p.disambiguation.filter(|d| !d.is_empty()),
                gender: p.gender,
                image_url: p.image_path,
            })
        })
        .collect::<Result<Vec<_>, StashError>>()?;
    let tags = s
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| Ok(wit::Tag { id: id_string(&t.id)?, name: t.name }))
        .collect::<Result<Vec<_>, StashError>>()?;
    let groups = s
        .groups
        .unwrap_or_default()
        .into_iter()
        .map(|g| {
            Ok(wit::Group {
                id: id_string(&g.group.id)?,
                name: g.group.name,
                scene_index: g.scene_index.and_then(|i| i32::try_from(i).ok()),
            })
        })
        .collect::<Result<Vec<_>, StashError>>()?;
    Ok(wit::Scene {
        id: id_string(&s.id)?,
        title: s.title,
        code: s.code,
        details: s.details,
        director: s.director,
        date: s.date,
        rating100: s.rating100.and_then(|r| u8::try_from(r.clamp(0, 100)).ok()),
        organized: s.organized.unwrap_or(false),
        urls: s.urls.unwrap_or_default(),
        studio,
        performers,
        tags,
        groups,
        files,
        screenshot_url: s.paths.and_then(|p| p.screenshot),
        created_at: s.created_at.unwrap_or_default(),
        updated_at: s.updated_at.unwrap_or_default(),
    })
}

#[cfg(test)]
#[path = "../fuzz/stash_answers.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn scene_from_json(v: &Value) -> Result<wit::Scene, StashError> {
        let s: JScene = serde_json::from_value(v.clone()).map_err(|e| StashError::Malformed(e.to_string()))?;
        s.into_wit()
    }

    #[test]
    fn reads_a_full_scene() {
        let v = json!({"id":"45","title":"T","code":null,"details":"D","director":null,"date":"2024-05","rating100":80,
            "organized":true,"urls":["u"],"created_at":"c","updated_at":"u2",
            "files":[{"path":"/data/a.mp4","size":"123","duration":12.5}],"paths":{"screenshot":"http://s/x"},
            "studio":{"id":"3","name":"S","parent_studio":{"name":"P"}},
            "performers":[{"id":1,"name":"A","disambiguation":"","gender":"FEMALE","image_path":null}],
            "tags":[{"id":"9","name":"tag"}],"groups":[{"scene_index":2,"group":{"id":"4","name":"G"}}]});
        let s = scene_from_json(&v).unwrap();
        assert_eq!(s.files[0].size, 123);
        assert_eq!(s.studio.as_ref().unwrap().parent_name.as_deref(), Some("P"));
        assert_eq!(s.performers[0].id, "1");
        assert_eq!(s.performers[0].disambiguation, None);
        assert_eq!(s.groups[0].scene_index, Some(2));
        assert_eq!(s.rating100, Some(80));
    }

    /// Found by the GraphQL fuzz target: an answer cut short, or one with
    /// a wrong-typed value, was quoted in the error (the first 200 bytes of
    /// a configuration answer hold the API key; serde quotes a string it
    /// did not expect in full, however long).
    #[test]
    fn errors_quote_neither_json_answers_nor_unexpected_values() {
        let secret = "not-a-real-api-key-0123456789";
        let answer = format!(r#"{{"data":{{"configuration":{{"general":{{"apiKey":"{secret}"}},"plugins":{{}}}}}}}}"#);
        let cut = &answer.as_bytes()[..answer.len() - 5];
        for status in [200, 500] {
            let e = read_answer::<ConfigurationData>(status, cut).err().expect("an error").to_string();
            assert!(!e.contains(secret) && e.contains("JSON body"), "{e}");
        }
        let e = read_answer::<ConfigurationData>(502, answer.as_bytes()).err().expect("an error").to_string();
        assert!(!e.contains(secret) && e.starts_with("Stash answered with something unexpected: HTTP 502"), "{e}");
        let wrong = format!(r#"{{"data":{{"configuration":{{"general":"{secret}"}}}}}}"#);
        let e = read_answer::<ConfigurationData>(200, wrong.as_bytes()).err().expect("an error").to_string();
        assert!(!e.contains(secret) && e.contains("(value not shown)"), "{e}");
        let huge = format!(r#"{{"data":{{"findScene":{{"id":"1","rating100":"{}"}}}}}}"#, "9".repeat(100_000));
        let e = read_answer::<FindSceneData>(200, huge.as_bytes()).err().expect("an error").to_string();
        assert!(e.len() < 2000, "{} chars", e.len());
        let html =
            read_answer::<ConfigurationData>(502, b"<html>Bad Gateway</html>").err().expect("an error").to_string();
        assert!(html.contains("<html>Bad Gateway</html>"), "{html}");
    }

    #[test]
    fn a_broken_scene_is_a_clear_error() {
        let err = scene_from_json(&json!({"id": {"x":1}})).unwrap_err();
        assert!(matches!(err, StashError::Malformed(_)));
    }

    #[test]
    fn images_only_from_stash_image_routes() {
        assert_eq!(
            image_route("http://127.0.0.1:9999/scene/1/screenshot?t=1700000000").unwrap(),
            "/scene/1/screenshot?t=1700000000"
        );
        assert_eq!(image_route("https://stash.example.net/performer/12/image").unwrap(), "/performer/12/image");
        for bad in [
            "http://127.0.0.1:9999/graphql?query={configuration{general{apiKey}plugins}}",
            "http://127.0.0.1:9999/scene/1/stream",
            "http://127.0.0.1:9999/scene/1/preview",
            "http://127.0.0.1:9999/scene/1/screenshot?apikey=x",
            "http://127.0.0.1:9999/scene/x/screenshot",
            "http://127.0.0.1:9999/scene/1/screenshot/../../graphql",
            "not a url",
        ] {
            assert!(image_route(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images_are_known_formats() {
        assert_eq!(image_kind(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpeg"));
        assert_eq!(image_kind(b"\x89PNG\r\n\x1a\nrest"), Some("png"));
        assert_eq!(image_kind(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(image_kind(b"{\"data\":{\"configuration\":1}}"), None);
        assert_eq!(image_kind(b"<html>"), None);
    }

    #[test]
    fn an_image_comes_only_from_our_stash_and_only_if_it_is_an_image_under_the_cap() {
        use stash2plex_testkit::{FakeStash, SceneSpec, StashAuth, screenshot_bytes};
        let stash = FakeStash::start(StashAuth::None).unwrap();
        stash.upsert_scene(SceneSpec::new("1"));
        let client = StashClient::new(&stash.url(), None, None);
        let url = format!("{}/scene/1/screenshot?t=5", stash.url());
        assert_eq!(client.fetch_image(&url).unwrap(), screenshot_bytes("1"));
        // Another host in the URL: still fetched from the Stash we know.
        let elsewhere = "http://stash.elsewhere.invalid:1/scene/1/screenshot".to_string();
        assert_eq!(client.fetch_image(&elsewhere).unwrap(), screenshot_bytes("1"));
        let graphql = format!("{}/graphql?query=%7Bconfiguration%7Bgeneral%7BapiKey%7D%7D%7D", stash.url());
        let err = client.fetch_image(&graphql).unwrap_err();
        assert!(
            matches!(&err, TransportError::InvalidRequest(m) if m.contains("not one of Stash's image routes")),
            "{err:?}"
        );
        stash.serve_screenshot("1", "text/html", b"<html>not an image</html>".to_vec());
        let err = client.fetch_image(&url).unwrap_err();
        assert!(matches!(&err, TransportError::InvalidRequest(m) if m.contains("is not an image")), "{err:?}");
        stash.serve_screenshot("1", "image/jpeg", b"{\"data\":1}".to_vec());
        assert!(client.fetch_image(&url).is_err(), "the content type alone does not make an image");
        let mut huge = vec![0xFF, 0xD8, 0xFF];
        huge.resize(usize::try_from(MAX_IMAGE_BYTES).unwrap() + 10, 0);
        stash.serve_screenshot("1", "image/jpeg", huge);
        assert!(matches!(client.fetch_image(&url), Err(TransportError::TooLarge(_))));
    }

    #[test]
    fn an_answer_larger_than_the_largest_page_is_refused_not_buffered_whole() {
        use stash2plex_testkit::{FakeStash, SceneSpec, StashAuth};
        let stash = FakeStash::start(StashAuth::None).unwrap();
        let mut huge = SceneSpec::new("1");
        huge.details = Some("d".repeat(usize::try_from(MAX_GRAPHQL_BODY).unwrap() + 1024));
        stash.upsert_scene(huge);
        let client = StashClient::new(&stash.url(), None, None);
        let err = client.find_scene("1").unwrap_err();
        assert!(matches!(&err, StashError::Malformed(m) if m.contains("larger than")), "{err:?}");
        let q = wit::SceneQuery { page: 1, per_page: 1_000_000, ids: Vec::new(), updated_after: None, related: None };
        stash.upsert_scene(SceneSpec::new("1"));
        assert_eq!(client.find_scenes(&q).unwrap().scenes.len(), 1);
        let asked = stash.requests().last().map(|r| r.variables.clone()).unwrap_or_default();
        assert_eq!(asked["filter"]["per_page"], MAX_PER_PAGE, "{asked}");
    }

    #[test]
    fn the_drains_watch_rides_on_the_next_scene_query() {
        use stash2plex_testkit::{FakeStash, JobSpec, SceneSpec, StashAuth};
        let stash = FakeStash::start(StashAuth::None).unwrap();
        stash.upsert_scene(SceneSpec::new("1"));
        stash.set_plugin_settings("stash2plex", json!({"plex_url": "http://127.0.0.1:32400"}));
        stash.set_jobs(vec![JobSpec {
            id: "7".into(),
            status: "RUNNING".into(),
            description: "Scanning...".into(),
            progress: Some(0.5),
        }]);
        let client = StashClient::new(&stash.url(), None, None);
        let q = wit::SceneQuery { page: 1, per_page: 10, ids: Vec::new(), updated_after: None, related: None };
        assert!(!client.rides_soon(), "a policy that has not read Stash is not waited for");
        assert_eq!(client.find_scenes(&q).unwrap().scenes.len(), 1);
        assert!(client.take_watch().is_none(), "nothing rides unless the watch asked");
        assert!(client.rides_soon(), "the policy is reading Stash");
        assert!(client.watch("stash2plex").is_ok());
        assert!(client.rides_soon(), "the watch's own request is not the policy reading");

        client.want_watch("stash2plex");
        stash.clear_requests();
        assert_eq!(client.find_scenes(&q).unwrap().scenes.len(), 1);
        assert_eq!(stash.requests().len(), 1, "one request carries both");
        let (settings, busy) = client.take_watch().expect("the watch came back with the page");
        assert_eq!(settings.get("plex_url"), Some(&json!("http://127.0.0.1:32400")));
        assert_eq!(busy.as_deref(), Some("Scanning..."));
        assert!(client.take_watch().is_none(), "an answer is taken once");
        assert_eq!(client.find_scenes(&q).unwrap().scenes.len(), 1);
        assert!(client.take_watch().is_none(), "a wish is carried once");
        client.want_watch("stash2plex");
        assert_eq!(client.find_scenes(&q).unwrap().scenes.len(), 1);
        client.want_watch("stash2plex");
        assert!(client.take_watch().is_none(), "an answer from before a new wish is not taken");
        assert_eq!(client.find_scenes(&q).unwrap().scenes.len(), 1);
        assert!(client.take_watch().is_some(), "the new wish's answer is");

        // Catch-up and Sync All pages carry it too, and the scene answer is whole.
        client.want_watch("stash2plex");
        let (left, rows) = client.scene_ids("CatchUp", None, None).unwrap();
        assert_eq!((left, rows.len()), (1, 1));
        assert!(client.take_watch().is_some_and(|(s, _)| !s.is_empty()));

        // The watch asking on its own cancels a wish.
        client.want_watch("stash2plex");
        assert!(client.watch("stash2plex").is_ok());
        assert_eq!(client.find_scene("1").unwrap().map(|s| s.id), Some("1".to_string()));
        assert!(client.take_watch().is_none());
    }

    #[test]
    fn a_scene_query_that_fails_with_the_watch_riding_still_gets_its_answer() {
        use stash2plex_testkit::{FakeStash, SceneSpec, StashAuth};
        let stash = FakeStash::start(StashAuth::None).unwrap();
        stash.upsert_scene(SceneSpec::new("1"));
        // A Stash older than groups refuses the first document for its own
        // reasons; the query falls back to movies and answers.
        stash.set_version("v0.26.2");
        let client = StashClient::new(&stash.url(), None, None);
        client.want_watch("stash2plex");
        assert_eq!(client.find_scene("1").unwrap().map(|s| s.id), Some("1".to_string()));
        assert!(client.take_watch().is_none(), "the failed carrier brought nothing back");
        assert!(client.rides_soon(), "a failure that was not the rider's does not stop riding");
        client.want_watch("stash2plex");
        assert_eq!(client.find_scene("1").unwrap().map(|s| s.id), Some("1".to_string()));
        assert!(client.take_watch().is_some());
    }

    #[test]
    fn a_debug_print_hides_the_credentials() {
        let c = StashClient::new("http://127.0.0.1:9999", Some("cookie-value-123"), Some("api-key-456"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("cookie-value-123") && !shown.contains("api-key-456"), "{shown}");
    }

    #[test]
    fn sha1_of_known_bytes() {
        use sha1::Digest as _;
        let hex: String = sha1::Sha1::digest(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
