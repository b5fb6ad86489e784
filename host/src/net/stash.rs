//! Stash's GraphQL API: the plugin's settings, and scene look-ups for the
//! policy's `stash` capability. Requests carry the session cookie Stash gave
//! the plugin (needed for hook-loop tracking) and, when Stash has one, the
//! API key (which keeps long tasks authenticated after the cookie expires).

use crate::net::http::{ClientOptions, HttpClient, Method, TransportError};
use crate::runtime::wit::stash as wit;
use crate::text::snippet;
use serde::Deserialize;
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
}

/// SHA-1 of an image and its size (the contract's `image-digest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigest {
    pub sha1: String,
    pub size: u64,
}

const BASE_SCENE_FIELDS: &str = "id title code details director date rating100 organized urls created_at updated_at \
     files { path size duration } paths { screenshot } \
     studio { id name parent_studio { name } } \
     performers { id name disambiguation gender image_path } \
     tags { id name }";

/// `Scene.groups` exists since Stash v0.27 (before, groups were "movies").
const GROUP_FIELDS: &str = "groups { scene_index group { id name } }";

impl StashClient {
    pub fn new(base_url: &str, cookie: Option<&str>, api_key: Option<&str>) -> StashClient {
        let loopback =
            base_url.contains("://127.") || base_url.contains("://localhost") || base_url.contains("://[::1]");
        let http = HttpClient::new(ClientOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_body: 256 << 20,
            // Stash with TLS usually has a self-signed certificate; accept it
            // only on loopback, where nobody can be in the middle.
            accept_invalid_certs: loopback,
            user_agent: format!("stash2plex/{}", env!("CARGO_PKG_VERSION")),
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

    /// One GraphQL request; returns `data`.
    pub fn graphql(&self, query: &str, variables: Value) -> Result<Value, StashError> {
        let url = format!("{}/graphql", self.base_url);
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))
            .map_err(|e| StashError::Malformed(e.to_string()))?;
        let mut headers = self.auth_headers();
        headers.push(("Content-Type".into(), "application/json".into()));
        headers.push(("Accept".into(), "application/json".into()));
        let resp = self.http.send(Method::Post, &url, &headers, Some(&body), None).map_err(|e| match e {
            TransportError::TooLarge(n) => StashError::Malformed(format!("response larger than {n} bytes")),
            other => StashError::Unreachable { url: self.base_url.clone(), detail: other.to_string() },
        })?;
        self.keep_fresh_cookie(&resp.headers);
        if resp.status == 401 || resp.status == 403 {
            return Err(StashError::Unauthorized(resp.status));
        }
        let parsed: Value = serde_json::from_slice(&resp.body).map_err(|e| {
            StashError::Malformed(format!(
                "HTTP {} with a body that is not JSON ({e}): {}",
                resp.status,
                snippet(&resp.body, 200)
            ))
        })?;
        if let Some(errors) = parsed.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            let msgs: Vec<&str> = errors.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).collect();
            return Err(StashError::Graphql(if msgs.is_empty() { "unknown error".into() } else { msgs.join("; ") }));
        }
        if !(200..300).contains(&resp.status) {
            return Err(StashError::Malformed(format!("HTTP {}: {}", resp.status, snippet(&resp.body, 200))));
        }
        match parsed.get("data") {
            Some(d) if !d.is_null() => Ok(d.clone()),
            _ => Err(StashError::Malformed("the response has no data".into())),
        }
    }

    /// The plugin's settings map and Stash's API key (empty when none).
    pub fn plugin_settings(&self, plugin_id: &str) -> Result<(Map<String, Value>, Option<String>), StashError> {
        let id = serde_json::to_string(plugin_id).map_err(|e| StashError::Malformed(e.to_string()))?;
        let q = format!("{{ configuration {{ general {{ apiKey }} plugins(include: [{id}]) }} }}");
        let data = self.graphql(&q, json!({}))?;
        let config =
            data.get("configuration").ok_or_else(|| StashError::Malformed("no configuration in the answer".into()))?;
        let api_key =
            config.pointer("/general/apiKey").and_then(Value::as_str).filter(|k| !k.is_empty()).map(str::to_string);
        let settings = match config.get("plugins").and_then(|p| p.get(plugin_id)) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(StashError::Malformed(format!("plugin settings are not an object: {other}"))),
        };
        Ok((settings, api_key))
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

    /// Use Stash's API key from now on (it outlives the session cookie).
    pub fn set_api_key(&mut self, key: Option<String>) {
        if let Some(k) = &key {
            crate::plugin::log::register_secret(k);
        }
        self.api_key = key.filter(|k| !k.is_empty());
    }

    fn scene_fields(&self) -> String {
        if self.no_groups.load(std::sync::atomic::Ordering::Relaxed) {
            BASE_SCENE_FIELDS.to_string()
        } else {
            format!("{BASE_SCENE_FIELDS} {GROUP_FIELDS}")
        }
    }

    /// Run a scene query; if this Stash predates `Scene.groups`, remember
    /// that and ask again without it.
    fn scene_query(&self, build: impl Fn(&str) -> String, variables: Value) -> Result<Value, StashError> {
        match self.graphql(&build(&self.scene_fields()), variables.clone()) {
            Err(StashError::Graphql(m))
                if m.contains("\"groups\"") && !self.no_groups.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                crate::debug!("This Stash has no scene groups (older than v0.27); asking without them");
                self.no_groups.store(true, std::sync::atomic::Ordering::Relaxed);
                self.graphql(&build(&self.scene_fields()), variables)
            }
            other => other,
        }
    }

    pub fn find_scene(&self, id: &str) -> Result<Option<wit::Scene>, StashError> {
        let data = self.scene_query(
            |fields| format!("query FindScene($id: ID!) {{ findScene(id: $id) {{ {fields} }} }}"),
            json!({ "id": id }),
        )?;
        match data.get("findScene") {
            None => Err(StashError::Malformed("no findScene in the answer".into())),
            Some(Value::Null) => Ok(None),
            Some(v) => scene_from_json(v).map(Some),
        }
    }

    pub fn find_scenes(&self, query: &wit::SceneQuery) -> Result<wit::ScenePage, StashError> {
        let mut scene_filter = json!({});
        if let Some(after) = &query.updated_after {
            scene_filter = json!({ "updated_at": { "value": after, "modifier": "GREATER_THAN" } });
        }
        let mut vars = json!({
            "filter": { "page": query.page.max(1), "per_page": query.per_page.clamp(1, 1000), "sort": "updated_at", "direction": "ASC" },
            "scene_filter": scene_filter,
        });
        let by_id = !query.ids.is_empty();
        if by_id {
            vars["ids"] = json!(query.ids);
        }
        let data = self.scene_query(
            |fields| {
                let (decl, arg) = if by_id { (", $ids: [ID!]", ", ids: $ids") } else { ("", "") };
                format!(
                    "query FindScenes($filter: FindFilterType, $scene_filter: SceneFilterType{decl}) {{ \
                     findScenes(filter: $filter, scene_filter: $scene_filter{arg}) {{ count scenes {{ {fields} }} }} }}"
                )
            },
            vars,
        )?;
        let result =
            data.get("findScenes").ok_or_else(|| StashError::Malformed("no findScenes in the answer".into()))?;
        let count = result.get("count").and_then(Value::as_u64).unwrap_or(0);
        let scenes = match result.get("scenes") {
            Some(Value::Array(items)) => items.iter().map(scene_from_json).collect::<Result<Vec<_>, _>>()?,
            _ => return Err(StashError::Malformed("findScenes has no scenes list".into())),
        };
        Ok(wit::ScenePage { count, scenes })
    }

    /// Download an image from this Stash server (for poster uploads); the
    /// image [`StashClient::image_digest`] just read is not downloaded again.
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

    fn download_image(&self, url: &str) -> Result<Vec<u8>, TransportError> {
        if !same_origin(url, &self.base_url) {
            return Err(TransportError::InvalidRequest(format!(
                "the image URL is not on the Stash server ({})",
                self.base_url
            )));
        }
        let resp = self.http.send(Method::Get, url, &self.auth_headers(), None, None)?;
        self.keep_fresh_cookie(&resp.headers);
        if resp.status != 200 {
            return Err(TransportError::InvalidRequest(format!("Stash answered HTTP {} for the image", resp.status)));
        }
        Ok(resp.body)
    }
}

fn same_origin(url: &str, base: &str) -> bool {
    url.starts_with(base) && matches!(url.as_bytes().get(base.len()), None | Some(b'/') | Some(b'?'))
}

// ---- JSON → contract types -------------------------------------------------

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
    #[serde(default)]
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
    group: JTag,
}

fn id_string(v: &Value) -> Result<String, StashError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(StashError::Malformed(format!("an id is not a string or number: {other}"))),
    }
}

pub fn scene_from_json(v: &Value) -> Result<wit::Scene, StashError> {
    let s: JScene = serde_json::from_value(v.clone())
        .map_err(|e| StashError::Malformed(format!("a scene could not be read: {e}")))?;
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
mod tests {
    use super::*;

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

    #[test]
    fn a_broken_scene_is_a_clear_error() {
        let err = scene_from_json(&json!({"id": {"x":1}})).unwrap_err();
        assert!(matches!(err, StashError::Malformed(_)));
    }

    #[test]
    fn sha1_of_known_bytes() {
        use sha1::Digest as _;
        let hex: String = sha1::Sha1::digest(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn images_only_from_stash() {
        assert!(same_origin("http://127.0.0.1:9999/scene/1/screenshot", "http://127.0.0.1:9999"));
        assert!(!same_origin("http://127.0.0.1:99990/x", "http://127.0.0.1:9999"));
        assert!(!same_origin("http://evil/x", "http://127.0.0.1:9999"));
    }
}
