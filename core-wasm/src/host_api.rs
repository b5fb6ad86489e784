//! Rust-native mirrors of the WIT types the policy uses, and the [`Host`]
//! trait: one method per import of `wit/policy.wit`.
//!
//! Everything outside `glue.rs` talks to the host only through [`Host`], so the
//! policy compiles and unit-tests natively against a fake host
//! (`test_support.rs`). `glue.rs` implements [`Host`] on wasm32 by calling the
//! generated imports.

// ---------------------------------------------------------------- log

/// `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

// ---------------------------------------------------------------- plex

/// `plex.method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// `plex.body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    StashImage(String),
}

/// `plex.request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexRequest {
    pub method: Method,
    /// Relative to the server root, starting with `/`.
    pub path: String,
    /// Query pairs in order; the host percent-encodes the values.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub timeout_ms: Option<u32>,
}

impl PlexRequest {
    /// A request with no query, headers or body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        PlexRequest {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            timeout_ms: None,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::Get, path)
    }

    /// The value of the first query parameter named `key`.
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `plex.response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexResponse {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed_ms: u32,
}

/// `plex.transport-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    Refused(String),
    Timeout(String),
    Reset(String),
    Dns(String),
    Tls(String),
    TooLarge(u64),
    InvalidRequest(String),
    Other(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Refused(m) => write!(f, "connection refused ({m})"),
            TransportError::Timeout(m) => write!(f, "timed out ({m})"),
            TransportError::Reset(m) => write!(f, "connection reset ({m})"),
            TransportError::Dns(m) => write!(f, "host name not resolved ({m})"),
            TransportError::Tls(m) => write!(f, "TLS failure ({m})"),
            TransportError::TooLarge(cap) => {
                write!(f, "response larger than the host's cap of {cap} bytes")
            }
            TransportError::InvalidRequest(m) => write!(f, "request refused by the host ({m})"),
            TransportError::Other(m) => write!(f, "transport error ({m})"),
        }
    }
}

// ---------------------------------------------------------------- stash

/// `stash.studio`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Studio {
    pub id: String,
    pub name: String,
    pub parent_name: Option<String>,
}

/// `stash.performer`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Performer {
    pub id: String,
    pub name: String,
    pub disambiguation: Option<String>,
    pub gender: Option<String>,
    pub image_url: Option<String>,
}

/// `stash.tag`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tag {
    pub id: String,
    pub name: String,
}

/// `stash.group`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub scene_index: Option<i32>,
}

/// `stash.video-file`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VideoFile {
    pub path: String,
    pub size: u64,
    pub duration_secs: f64,
}

/// `stash.scene`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scene {
    pub id: String,
    pub title: Option<String>,
    pub code: Option<String>,
    pub details: Option<String>,
    pub director: Option<String>,
    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub date: Option<String>,
    pub rating100: Option<u8>,
    pub organized: bool,
    pub urls: Vec<String>,
    pub studio: Option<Studio>,
    pub performers: Vec<Performer>,
    pub tags: Vec<Tag>,
    pub groups: Vec<Group>,
    /// The first file is the primary one.
    pub files: Vec<VideoFile>,
    pub screenshot_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `stash.scene-query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneQuery {
    pub page: u32,
    pub per_page: u32,
    pub updated_after: Option<String>,
}

/// `stash.scene-page`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScenePage {
    pub count: u64,
    pub scenes: Vec<Scene>,
}

/// `stash.stash-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StashError {
    Unreachable(String),
    Unauthorized(String),
    Graphql(String),
    Malformed(String),
}

impl std::fmt::Display for StashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StashError::Unreachable(m) => write!(f, "Stash unreachable ({m})"),
            StashError::Unauthorized(m) => write!(f, "Stash refused the credentials ({m})"),
            StashError::Graphql(m) => write!(f, "Stash GraphQL error ({m})"),
            StashError::Malformed(m) => write!(f, "unexpected answer from Stash ({m})"),
        }
    }
}

// ---------------------------------------------------------------- queue

/// `queue.state-write`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub key: String,
    /// `None` deletes the key.
    pub value: Option<String>,
}

/// `queue.job`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub scene_id: String,
    pub payload: String,
    /// Attempts so far, including the one this claim starts.
    pub attempt: u32,
    pub first_enqueued_ms: i64,
    pub last_enqueued_ms: i64,
    pub lease: u64,
    pub last_error: Option<String>,
}

/// `queue.enqueue-outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Created,
    Coalesced,
    RequeuedAfterRunning,
}

impl EnqueueOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EnqueueOutcome::Created => "created",
            EnqueueOutcome::Coalesced => "coalesced",
            EnqueueOutcome::RequeuedAfterRunning => "requeued-after-running",
        }
    }
}

/// `queue.queue-counts`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueCounts {
    pub ready: u64,
    pub waiting: u64,
    pub running: u64,
    pub dead: u64,
    pub next_due_ms: Option<i64>,
}

/// `queue.dead-letter-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    pub error_class: String,
    pub message: String,
    pub detail: String,
}

/// `queue.queue-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    LeaseLost,
    Storage(String),
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::LeaseLost => write!(f, "the job's lease was lost"),
            QueueError::Storage(m) => write!(f, "queue storage failure: {m}"),
        }
    }
}

// ---------------------------------------------------------------- policy exports

/// `policy.policy-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub api_version: String,
}

/// `policy.event`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub trigger: String,
    pub object_id: Option<String>,
    pub input_fields: Vec<String>,
    pub input: Option<String>,
}

/// `policy.event-outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    Enqueued(String),
    Ignored(String),
}

/// `policy.step-outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Worked(String),
    WaitMs(u32),
    Idle(Option<i64>),
}

// ---------------------------------------------------------------- the host

/// Everything the policy can ask of the host: one method per WIT import.
///
/// Methods take `&self`; a fake host keeps its state in cells.
pub trait Host {
    // clock
    fn now_ms(&self) -> i64;
    fn random_u64(&self) -> u64;

    // log
    fn log(&self, level: LogLevel, message: &str);
    fn obfuscate_path(&self, path: &str) -> String;
    fn progress(&self, fraction: f64);

    // plex
    fn plex_server_label(&self) -> String;
    fn plex_send(&self, request: &PlexRequest) -> Result<PlexResponse, TransportError>;

    // stash
    fn find_scene(&self, id: &str) -> Result<Option<Scene>, StashError>;
    fn find_scenes(&self, query: &SceneQuery) -> Result<ScenePage, StashError>;

    // queue
    fn enqueue(&self, scene_id: &str, payload: &str, not_before_ms: i64) -> Result<EnqueueOutcome, QueueError>;
    fn claim(&self, lease_ms: u32) -> Result<Option<Job>, QueueError>;
    fn renew(&self, job_id: u64, lease: u64, lease_ms: u32) -> Result<(), QueueError>;
    fn complete(&self, job_id: u64, lease: u64, state: &[StateWrite]) -> Result<(), QueueError>;
    fn retry_at(
        &self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        error: &str,
        state: &[StateWrite],
    ) -> Result<(), QueueError>;
    fn release(&self, job_id: u64, lease: u64, not_before_ms: i64, state: &[StateWrite]) -> Result<(), QueueError>;
    fn dead_letter(
        &self,
        job_id: u64,
        lease: u64,
        info: &DeadLetterInfo,
        state: &[StateWrite],
    ) -> Result<(), QueueError>;
    fn counts(&self) -> Result<QueueCounts, QueueError>;
    fn state_get(&self, key: &str) -> Result<Option<String>, QueueError>;
    fn state_set(&self, writes: &[StateWrite]) -> Result<(), QueueError>;
}
