//! Reconciliation: does Plex really match Stash? One paged listing of every
//! usable Plex section (the path index of `matching`) joined with a paged
//! listing of the Stash scenes, with no request per scene, and every scene
//! classified:
//!
//! - **in sync**: its Plex item shows what the sync would write;
//! - **drifted**: stash2plex synced it once (the host's `synced-at`) and
//!   Plex now differs, field by field (`edits::differences`, from the same
//!   desired state `desired` the sync writes);
//! - **never synced**: Plex differs and no job for it ever completed;
//! - **missing from Plex**: no item has its file (or no library holds it);
//! - **ambiguous**: several items have its file;
//! - **no file**: the scene has no file to match;
//!
//! and, for the scope `all`, every Plex item no scene matched.
//!
//! A run is step-driven: the policy's `step` does one request of it when no
//! job is due (jobs always go first), so a run never holds up the drain and
//! never runs beside one: it runs *in* the drain. The request (scope, mode)
//! is kept in policy state, so a run a task started survives the drainer
//! ending; a new instance starts the run over (its index lives in memory).
//! The automatic schedule (`reconcile_schedule`) is checked when a drain's
//! instance first has nothing due, then every 10 minutes; the start of the
//! last run is kept in policy state, so it holds across restarts.
//!
//! Modes: `report` (counts per class and per field, the first examples with
//! old → new values) or `enqueue` (also queue a job for every drifted or
//! never-synced scene; `enqueue` coalesces with what is already queued).
//! Scopes: `all`, `24h` and `7days` (scenes updated -- so also created -- in
//! that time), `since_last` (scenes updated since the newest one the last
//! run saw).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::desired::desired;
use crate::edits::{Difference, differences};
use crate::host::{Describe, Host, LogLevel, PlexRequest, Scene, SceneQuery, StateWrite};
use crate::matching::{self, PathIndex, Resolution, Section, listing_request, pick_section, plex_paths};
use crate::plex_json::{self, PlexItem};
use crate::settings::Settings;
use crate::text::{clip, duration_text};

/// Policy-state key of the run under way.
pub const RUN_KEY: &str = "reconcile.run";
/// Policy-state key of the last finished run.
pub const LAST_KEY: &str = "reconcile.last";
/// Scenes per Stash page.
pub const STASH_PAGE: u32 = 250;
/// Examples in a report unless the task asks otherwise.
pub const DEFAULT_EXAMPLES: u32 = 10;
pub const MAX_EXAMPLES: u32 = 100;
/// Failed requests in a row that end a run.
const MAX_FAILURES: u32 = 3;
/// How often an instance with nothing due looks at the schedule again.
const CHECK_EVERY_MS: i64 = 10 * 60_000;
const HOUR_MS: i64 = 3_600_000;
const VALUE_CHARS: usize = 80;

macro_rules! words {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $word)] $variant),+ }
        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
            pub fn parse(text: &str) -> Option<$name> {
                let text = text.trim().to_lowercase();
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }
    };
}

words!(
    /// Which scenes a run looks at.
    Scope { All = "all", Day = "24h", Week = "7days", SinceLast = "since_last" }
);
words!(
    /// What a run does with what it finds.
    Mode { Report = "report", Enqueue = "enqueue" }
);
words!(
    /// How often a run starts by itself.
    Schedule { Never = "never", Hourly = "hourly", Daily = "daily", Weekly = "weekly" }
);

impl Schedule {
    pub fn interval_ms(self) -> Option<i64> {
        match self {
            Schedule::Never => None,
            Schedule::Hourly => Some(HOUR_MS),
            Schedule::Daily => Some(24 * HOUR_MS),
            Schedule::Weekly => Some(7 * 24 * HOUR_MS),
        }
    }
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::All => "all scenes",
            Scope::Day => "scenes updated in the last 24 hours",
            Scope::Week => "scenes updated in the last 7 days",
            Scope::SinceLast => "scenes updated since the last reconciliation",
        }
    }
}

/// Whether a scheduled run is due: never with `never`; else when no run
/// ever started, or the last one started at least an interval ago.
pub fn due(schedule: Schedule, last_started_ms: Option<i64>, now_ms: i64) -> bool {
    match (schedule.interval_ms(), last_started_ms) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(interval), Some(last)) => now_ms.saturating_sub(last) >= interval,
    }
}

/// A run as requested (kept in policy state while it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub scope: Scope,
    pub mode: Mode,
    pub examples: u32,
    pub scheduled: bool,
    pub started_ms: i64,
}

/// The last finished run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Last {
    pub started_ms: i64,
    pub finished_ms: i64,
    /// The newest `updated_at` it saw (where `since_last` starts).
    pub newest: Option<String>,
    pub report: String,
}

/// The classes, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    InSync,
    Drifted,
    NeverSynced,
    MissingFromPlex,
    Ambiguous,
    NoFile,
    PlexOnly,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::InSync,
        Class::Drifted,
        Class::NeverSynced,
        Class::MissingFromPlex,
        Class::Ambiguous,
        Class::NoFile,
        Class::PlexOnly,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Class::InSync => "in sync",
            Class::Drifted => "drifted",
            Class::NeverSynced => "never synced",
            Class::MissingFromPlex => "missing from Plex",
            Class::Ambiguous => "ambiguous match",
            Class::NoFile => "no file",
            Class::PlexOnly => "Plex items with no Stash scene",
        }
    }
}

/// One example for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub class: Class,
    /// `scene 12 "Title"` or `Plex item 345 "Title"`.
    pub what: String,
    pub detail: String,
}

/// What a run found so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub classes: BTreeMap<Class, u64>,
    /// Scenes (drifted or never synced) per differing field.
    pub fields: BTreeMap<&'static str, u64>,
    pub examples: Vec<Example>,
    pub scenes: u64,
    pub plex_items: u64,
    pub enqueued: u64,
    pub newest: Option<String>,
}

impl Tally {
    pub fn count(&self, class: Class) -> u64 {
        self.classes.get(&class).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Sections,
    Listing {
        section: usize,
    },
    Scenes {
        page: u32,
        since: Option<String>,
    },
}

/// The part of the progress bar the Plex listings fill (the Stash pages
/// fill the rest): listing is about a third of a run's requests.
const LISTING_SHARE: f64 = 0.3;

/// A run's working state (memory of the instance).
#[derive(Debug)]
struct Active {
    request: Request,
    phase: Phase,
    sections: Vec<Section>,
    index: PathIndex,
    /// Listed items, by ratingKey, without what a comparison does not need.
    items: HashMap<String, PlexItem>,
    /// ratingKeys some scene matched.
    matched: HashSet<String>,
    tally: Tally,
    failures: u32,
}

/// The reconciliation state of one policy instance.
#[derive(Debug, Default)]
pub struct Reconciler {
    active: Option<Active>,
    next_check_ms: Option<i64>,
}

fn state_text(e: crate::host::QueueError) -> String {
    format!("could not use the policy state: {}", e.describe())
}

pub fn load_last(host: &dyn Host) -> Result<Option<Last>, String> {
    let Some(text) = host.state_get(LAST_KEY).map_err(state_text)? else { return Ok(None) };
    Ok(serde_json::from_str(&text).ok())
}

fn load_request(host: &dyn Host) -> Result<Option<Request>, String> {
    let Some(text) = host.state_get(RUN_KEY).map_err(state_text)? else { return Ok(None) };
    Ok(serde_json::from_str(&text).ok())
}

/// The task's arguments: `scope`, `reconcile_mode` (default: the
/// settings), `examples`.
pub fn request_from_args(
    settings: &Settings,
    args: &serde_json::Map<String, serde_json::Value>,
    now_ms: i64,
) -> Result<Request, String> {
    let word = |key: &str| args.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let scope = match word("scope") {
        None => settings.reconcile_scope,
        Some(w) => Scope::parse(&w).ok_or_else(|| {
            format!(
                "scope {w:?} is not one of {}",
                Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?,
    };
    // `mode` is the Stash task's own (`reconcile`).
    let mode = match word("reconcile_mode") {
        None => settings.reconcile_mode,
        Some(w) => Mode::parse(&w).ok_or_else(|| format!("reconcile_mode {w:?} is not report or enqueue"))?,
    };
    let examples = crate::tasks::number(args, "examples", DEFAULT_EXAMPLES, 0, MAX_EXAMPLES)?;
    Ok(Request { scope, mode, examples, scheduled: false, started_ms: now_ms })
}

impl Reconciler {
    /// Start a run (the task): it is kept in policy state and done by the
    /// drain's steps. A run already under way is replaced.
    pub fn start(&mut self, host: &dyn Host, request: Request) -> Result<String, String> {
        let text = serde_json::to_string(&request).map_err(|e| e.to_string())?;
        host.state_set(&[StateWrite { key: RUN_KEY.into(), value: Some(text) }]).map_err(state_text)?;
        let what = format!("{} ({})", request.scope.label(), mode_words(request.mode));
        self.active = Some(Active::new(request));
        Ok(what)
    }

    #[cfg(test)]
    pub fn running(&self) -> bool {
        self.active.is_some()
    }

    /// One unit of a run (one request), starting one the schedule or a task
    /// asked for; `None` when there is nothing to do.
    pub fn step(&mut self, settings: &Settings, host: &dyn Host) -> Result<Option<String>, String> {
        let now = host.now_ms();
        if self.active.is_none() {
            // A run a task asked for is looked for at every idle step (one
            // state read); the schedule every few minutes.
            let asked = load_request(host)?;
            if asked.is_none() && self.next_check_ms.is_some_and(|at| now < at) {
                return Ok(None);
            }
            if asked.is_none() {
                self.next_check_ms = Some(now.saturating_add(CHECK_EVERY_MS));
            }
            let request = match asked {
                Some(request) => {
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "Reconciliation of {} ({}) under way",
                            request.scope.label(),
                            mode_words(request.mode)
                        ),
                    );
                    request
                }
                None => {
                    let last = load_last(host)?.map(|l| l.started_ms);
                    if !due(settings.reconcile_schedule, last, now) {
                        return Ok(None);
                    }
                    let request = Request {
                        scope: settings.reconcile_scope,
                        mode: settings.reconcile_mode,
                        examples: DEFAULT_EXAMPLES,
                        scheduled: true,
                        started_ms: now,
                    };
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "Scheduled reconciliation ({}) of {}",
                            settings.reconcile_schedule.as_str(),
                            request.scope.label()
                        ),
                    );
                    let text = serde_json::to_string(&request).map_err(|e| e.to_string())?;
                    host.state_set(&[StateWrite { key: RUN_KEY.into(), value: Some(text) }]).map_err(state_text)?;
                    request
                }
            };
            self.active = Some(Active::new(request));
        }
        let Some(active) = self.active.as_mut() else { return Ok(None) };
        match active.advance(settings, host) {
            Ok(Some(summary)) => {
                active.failures = 0;
                Ok(Some(summary))
            }
            Ok(None) => {
                let active = self.active.take();
                match active {
                    Some(active) => active.finish(host, now, None).map(Some),
                    None => Ok(None),
                }
            }
            Err(problem) => {
                active.failures += 1;
                if active.failures < MAX_FAILURES {
                    host.log(LogLevel::Warn, &format!("Reconciliation: {problem} (tried again)"));
                    return Ok(Some(format!("reconciliation: {problem}")));
                }
                let active = self.active.take();
                match active {
                    Some(active) => active.finish(host, now, Some(problem)).map(Some),
                    None => Ok(None),
                }
            }
        }
    }
}

fn mode_words(mode: Mode) -> &'static str {
    match mode {
        Mode::Report => "report only",
        Mode::Enqueue => "queue the fixes",
    }
}

impl Active {
    fn new(request: Request) -> Active {
        Active {
            request,
            phase: Phase::Sections,
            sections: Vec::new(),
            index: PathIndex::default(),
            items: HashMap::new(),
            matched: HashSet::new(),
            tally: Tally::default(),
            failures: 0,
        }
    }

    fn get(host: &dyn Host, request: &PlexRequest) -> Result<Vec<u8>, String> {
        let response = host.plex_send(request).map_err(|e| format!("Plex: {}", e.describe()))?;
        if response.status != 200 {
            return Err(format!("Plex answered {} to {}", response.status, request.path));
        }
        Ok(response.body)
    }

    /// One request; `Ok(None)` when the run is complete.
    fn advance(&mut self, settings: &Settings, host: &dyn Host) -> Result<Option<String>, String> {
        match &self.phase {
            Phase::Sections => {
                let body = Self::get(host, &PlexRequest::get("/library/sections"))?;
                let infos = plex_json::parse_sections(&body).map_err(|e| format!("Plex's libraries: {}", e.0))?;
                let (sections, missing) = matching::build_sections(&infos, &settings.plex_library);
                if sections.is_empty() {
                    let named = if settings.plex_library.is_empty() {
                        "Plex has no movie or TV library".to_string()
                    } else {
                        format!("none of the libraries in plex_library ({}) exists", missing.join(", "))
                    };
                    return Err(format!("{named}; nothing to compare with"));
                }
                self.sections = sections;
                self.phase = Phase::Listing { section: 0 };
                Ok(Some(format!("reconciliation: {} Plex library(ies)", self.sections.len())))
            }
            Phase::Listing { section } => {
                let i = *section;
                let section = &self.sections[i];
                let start = self.index.next_start(section);
                let body = Self::get(host, &listing_request(section, start))?;
                let page = plex_json::parse_listing(&body).map_err(|e| format!("Plex's listing: {}", e.0))?;
                let items = plex_json::parse_items(&body).map_err(|e| format!("Plex's listing: {}", e.0))?;
                let complete = self.index.add_listing(section, start, &page);
                let within = match page.total_size {
                    Some(total) if total > 0 => ((start + page.items.len() as u64) as f64 / total as f64).min(1.0),
                    _ => 0.0,
                };
                host.progress(
                    LISTING_SHARE * (i as f64 + if complete { 1.0 } else { within }) / self.sections.len() as f64,
                );
                for mut item in items {
                    if !matching::is_safe_key(&item.rating_key) {
                        continue;
                    }
                    item.files.clear();
                    item.thumb = None;
                    item.art = None;
                    self.items.insert(item.rating_key.clone(), item);
                }
                let listed = self.items.len();
                if complete {
                    self.phase = if i + 1 < self.sections.len() {
                        Phase::Listing { section: i + 1 }
                    } else {
                        Phase::Scenes { page: 1, since: self.since(host)? }
                    };
                }
                Ok(Some(format!("reconciliation: {listed} Plex item(s) listed")))
            }
            Phase::Scenes { page, since } => {
                let (page_no, since) = (*page, since.clone());
                let query = SceneQuery {
                    page: page_no,
                    per_page: STASH_PAGE,
                    ids: Vec::new(),
                    updated_after: since.clone(),
                    related: None,
                };
                let scenes = host.find_scenes(&query).map_err(|e| e.describe())?;
                let ids: Vec<String> = scenes.scenes.iter().map(|s| s.id.clone()).collect();
                let synced = if ids.is_empty() { Vec::new() } else { host.synced_at(&ids).map_err(state_text)? };
                for (i, scene) in scenes.scenes.iter().enumerate() {
                    self.check(settings, host, scene, synced.get(i).copied().flatten());
                }
                let total = scenes.count;
                if total > 0 {
                    let checked = (u64::from(page_no) * u64::from(STASH_PAGE)).min(total);
                    host.progress(LISTING_SHARE + (1.0 - LISTING_SHARE) * checked as f64 / total as f64);
                }
                if scenes.scenes.len() < STASH_PAGE as usize || u64::from(page_no) * u64::from(STASH_PAGE) >= total {
                    return Ok(None);
                }
                self.phase = Phase::Scenes { page: page_no + 1, since };
                let done = self.tally.scenes;
                if page_no % 40 == 0 {
                    host.log(LogLevel::Info, &format!("Reconciliation: {done} of {total} scene(s) checked"));
                }
                Ok(Some(format!("reconciliation: {done} of {total} scene(s) checked")))
            }
        }
    }

    /// The `updated-after` bound of the scope, in Stash's own form.
    fn since(&self, host: &dyn Host) -> Result<Option<String>, String> {
        let back = match self.request.scope {
            Scope::All => return Ok(None),
            Scope::SinceLast => return Ok(load_last(host)?.and_then(|l| l.newest)),
            Scope::Day => 24 * HOUR_MS,
            Scope::Week => 7 * 24 * HOUR_MS,
        };
        // One scene shows the form (offset) Stash writes its times in.
        let query = SceneQuery { page: 1, per_page: 1, ids: Vec::new(), updated_after: None, related: None };
        let page = host.find_scenes(&query).map_err(|e| e.describe())?;
        let sample = page.scenes.first().map_or("Z", |s| s.updated_at.as_str());
        let sample = if crate::calendar::timestamp_like(0, sample).is_some() { sample } else { "Z" };
        Ok(crate::calendar::timestamp_like(self.request.started_ms - back, sample))
    }

    fn check(&mut self, settings: &Settings, host: &dyn Host, scene: &Scene, synced: Option<i64>) {
        self.tally.scenes += 1;
        if self.tally.newest.as_deref().is_none_or(|n| scene.updated_at.as_str() > n) {
            self.tally.newest = Some(scene.updated_at.clone());
        }
        let name = scene_name(host, scene);
        let (class, detail, fix) = match self.locate(settings, scene) {
            Located::NoFile => (Class::NoFile, String::new(), None),
            Located::Missing(path) => (Class::MissingFromPlex, host.obfuscate_path(&path), None),
            Located::Ambiguous(keys) => {
                // They have a scene, just not one each.
                self.matched.extend(keys.iter().cloned());
                (Class::Ambiguous, format!("Plex items {}", keys.join(", ")), None)
            }
            Located::Found(kind, rk) => {
                self.matched.insert(rk.clone());
                let unlisted = PlexItem::default();
                let item = self.items.get(&rk).unwrap_or(&unlisted);
                let want = desired(scene, settings, kind.item_kind());
                let diffs = differences(&want, item, settings.preserve_plex_edits);
                if diffs.is_empty() {
                    (Class::InSync, String::new(), None)
                } else {
                    for d in &diffs {
                        *self.tally.fields.entry(d.field).or_default() += 1;
                    }
                    let class = if synced.is_some() { Class::Drifted } else { Class::NeverSynced };
                    (class, format!("Plex item {rk}: {}", changes_text(&diffs)), Some(diffs))
                }
            }
        };
        *self.tally.classes.entry(class).or_default() += 1;
        if let (Some(diffs), Mode::Enqueue) = (&fix, self.request.mode) {
            let fields: Vec<&str> = diffs.iter().map(|d| d.field).collect();
            let payload = serde_json::json!({"v": 1, "trigger": "Task.Reconcile", "fields": fields}).to_string();
            match host.enqueue(&scene.id, &payload, host.now_ms()) {
                Ok(_) => self.tally.enqueued += 1,
                Err(e) => host.log(LogLevel::Warn, &format!("Reconciliation could not queue {name}: {}", e.describe())),
            }
        }
        if class != Class::InSync && self.tally.examples.len() < self.request.examples as usize {
            self.tally.examples.push(Example { class, what: name, detail });
        }
    }

    fn locate(&self, settings: &Settings, scene: &Scene) -> Located {
        let paths = plex_paths(&settings.path_map, &scene.files);
        let Some(first) = paths.first() else { return Located::NoFile };
        let mut ambiguous = None;
        for path in &paths {
            let Some(section) = pick_section(&self.sections, path) else { continue };
            match self.index.peek(section, path) {
                Some(Resolution::Found(rk)) => return Located::Found(section.kind, rk),
                Some(Resolution::Ambiguous(keys)) => ambiguous = ambiguous.or(Some(keys)),
                _ => {
                    if !settings.strict_matching
                        && let [only] = self.index.same_name(section, path).as_slice()
                    {
                        return Located::Found(section.kind, only.clone());
                    }
                }
            }
        }
        match ambiguous {
            Some(keys) => Located::Ambiguous(keys),
            None => Located::Missing(first.clone()),
        }
    }

    /// The report, kept as the last run; the run's request is removed.
    fn finish(mut self, host: &dyn Host, now: i64, failure: Option<String>) -> Result<String, String> {
        if self.request.scope == Scope::All && failure.is_none() {
            let mut orphans: Vec<&PlexItem> =
                self.items.values().filter(|i| !self.matched.contains(&i.rating_key)).collect();
            orphans.sort_by(|a, b| a.rating_key.len().cmp(&b.rating_key.len()).then(a.rating_key.cmp(&b.rating_key)));
            self.tally.classes.insert(Class::PlexOnly, orphans.len() as u64);
            let room = (self.request.examples as usize).saturating_sub(self.tally.examples.len());
            for item in orphans.into_iter().take(room) {
                let title = clip(item.title.as_deref().unwrap_or(""), VALUE_CHARS);
                self.tally.examples.push(Example {
                    class: Class::PlexOnly,
                    what: format!("Plex item {} {title:?}", item.rating_key),
                    detail: String::new(),
                });
            }
        }
        self.tally.plex_items = self.items.len() as u64;
        let report = report_text(&self.request, &self.tally, now, failure.as_deref());
        let newest = match &failure {
            None => self.tally.newest.clone(),
            Some(_) => load_last(host)?.and_then(|l| l.newest),
        };
        let last = Last { started_ms: self.request.started_ms, finished_ms: now, newest, report: report.clone() };
        let text = serde_json::to_string(&last).map_err(|e| e.to_string())?;
        host.state_set(&[
            StateWrite { key: LAST_KEY.into(), value: Some(text) },
            StateWrite { key: RUN_KEY.into(), value: None },
        ])
        .map_err(state_text)?;
        for line in report.lines() {
            host.log(LogLevel::Info, line);
        }
        Ok(report.lines().next().unwrap_or("reconciliation finished").to_string())
    }
}

enum Located {
    NoFile,
    Missing(String),
    Ambiguous(Vec<String>),
    Found(crate::matching::SectionKind, String),
}

fn scene_name(host: &dyn Host, scene: &Scene) -> String {
    let title = scene
        .title
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(str::to_string)
        .or_else(|| scene.files.first().map(|f| host.obfuscate_path(matching::file_name(&f.path))));
    match title {
        Some(t) => format!("scene {} {:?}", scene.id, clip(&t, VALUE_CHARS)),
        None => format!("scene {}", scene.id),
    }
}

fn changes_text(diffs: &[Difference]) -> String {
    diffs
        .iter()
        .map(|d| format!("{} {:?} → {:?}", d.field, clip(&d.plex, VALUE_CHARS), clip(&d.stash, VALUE_CHARS)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The report a user reads.
pub fn report_text(request: &Request, tally: &Tally, now: i64, failure: Option<&str>) -> String {
    let mut out = String::new();
    let took = duration_text(now.saturating_sub(request.started_ms));
    match failure {
        None => {
            let _ = write!(
                out,
                "Reconciliation of {} ({}): {} scene(s) checked against {} Plex item(s) in {took}",
                request.scope.label(),
                mode_words(request.mode),
                tally.scenes,
                tally.plex_items
            );
        }
        Some(problem) => {
            let _ = write!(
                out,
                "Reconciliation of {} stopped after {} scene(s): {problem}. Run it again once that is fixed; these are the counts so far",
                request.scope.label(),
                tally.scenes
            );
        }
    }
    for class in Class::ALL {
        if class == Class::PlexOnly && (request.scope != Scope::All || failure.is_some()) {
            continue;
        }
        let _ = write!(out, "\n  {}: {}", class.label(), tally.count(class));
        if class == Class::NeverSynced && !tally.fields.is_empty() {
            let fields: Vec<String> = tally.fields.iter().map(|(f, n)| format!("{f} {n}")).collect();
            let _ = write!(out, "\n  fields that differ (drifted and never synced): {}", fields.join(", "));
        }
    }
    let to_fix = tally.count(Class::Drifted) + tally.count(Class::NeverSynced);
    match request.mode {
        Mode::Enqueue => {
            let _ = write!(out, "\n  queued fixes: {} (coalesced with the changes already queued)", tally.enqueued);
        }
        Mode::Report if to_fix > 0 => {
            let _ = write!(out, "\n  nothing was queued (report only); run Reconcile with mode enqueue to fix them");
        }
        Mode::Report => {}
    }
    if !tally.examples.is_empty() {
        out.push_str("\nExamples:");
        for e in &tally.examples {
            let _ = write!(out, "\n  {}: {}", e.class.label(), e.what);
            if !e.detail.is_empty() {
                let _ = write!(out, " -- {}", e.detail);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
