//! `step`: claim one job and carry it to an outcome.
//!
//! claim → Stash scene → Plex section → ratingKey (path index) → full item →
//! diff → at most one PUT → complete / retry-at / dead-letter / release.
//! Failures are classified at the HTTP boundary: transport errors, 5xx, 429
//! and malformed answers are transient; 401/403 are a configuration problem
//! (retried slowly, never dead-lettered); 400 and other 4xx are permanent;
//! "not in Plex" waits for a Plex scan on its own, slower schedule.

use std::fmt::Write as _;

use crate::backoff::{self, Decision, Profile};
use crate::edits;
use crate::host_api::{
    DeadLetterInfo, Host, Job, LogLevel, Method, PlexRequest, PlexResponse, QueueError, Scene, StashError, StepOutcome,
};
use crate::matching::{self, PathIndex, Resolution, Section};
use crate::plex_json::{self, ListingPage, PlexItem};
use crate::settings::Settings;
use crate::text::{body_snippet, clip};

/// Lease taken on each claimed job.
pub const LEASE_MS: u32 = 120_000;
/// Listing pages fetched for one job in one step; a bigger library is listed
/// over several steps (the job is released, not failed, in between).
pub const MAX_PAGES_PER_STEP: u32 = 25;

const MAX_ERROR_CHARS: usize = 500;
const MAX_DETAIL_CHARS: usize = 2_000;
const MAX_QUERY_VALUE_CHARS: usize = 200;
const BODY_SNIPPET_BYTES: usize = 200;
const PATH_LOG_CHARS: usize = 300;

/// Plex knowledge kept for the life of the instance (one drain).
#[derive(Debug, Default)]
pub struct DrainState {
    sections: Option<Vec<Section>>,
    index: PathIndex,
}

impl DrainState {
    /// Forget everything learned from Plex.
    pub fn reset(&mut self) {
        *self = DrainState::default();
    }
}

/// Why an attempt did not succeed.
#[derive(Debug)]
enum Failure {
    /// Retry with the transient profile (then dead-letter under `class`).
    Transient { class: &'static str, message: String },
    /// The file is not in Plex (yet): retry with the not-found profile.
    NotFound { message: String },
    /// Credentials refused: retry slowly, never dead-letter.
    Unauthorized { class: &'static str, message: String },
    /// Retrying cannot help: dead-letter now.
    Permanent { class: &'static str, message: String },
    /// The listed section no longer exists (404 on its listing).
    SectionGone { message: String },
    /// Another drainer owns the job now; record nothing.
    LeaseLost,
    /// The queue itself failed.
    Storage(String),
}

impl From<QueueError> for Failure {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::LeaseLost => Failure::LeaseLost,
            QueueError::Storage(m) => Failure::Storage(m),
        }
    }
}

/// How a job ended well.
#[derive(Debug)]
enum Done {
    Synced {
        rating_key: String,
        fields: Vec<&'static str>,
    },
    InSync {
        rating_key: String,
    },
    NoFile,
    SceneGone,
    SyncOff,
    /// The listing budget for this step ran out; give the job back.
    Unfinished {
        section: String,
        listed: u64,
        total: Option<u64>,
    },
}

/// Per-job bookkeeping.
struct JobRun<'a> {
    host: &'a dyn Host,
    job: &'a Job,
    settings: &'a Settings,
    requests: u32,
    last_exchange: Option<String>,
    last_renew_ms: i64,
    shown_path: Option<String>,
}

/// Run one step.
pub fn step(settings: &Settings, state: &mut DrainState, host: &dyn Host) -> Result<StepOutcome, String> {
    let job = match host.claim(LEASE_MS) {
        Ok(Some(job)) => job,
        Ok(None) => {
            let counts = host.counts().map_err(|e| format!("could not read the queue: {e}"))?;
            return Ok(StepOutcome::Idle(counts.next_due_ms));
        }
        Err(e) => return Err(format!("could not claim a job: {e}")),
    };
    let mut run = JobRun {
        host,
        job: &job,
        settings,
        requests: 0,
        last_exchange: None,
        last_renew_ms: host.now_ms(),
        shown_path: None,
    };
    let result = process(state, &mut run);
    run.finish(result)
}

fn process(state: &mut DrainState, run: &mut JobRun<'_>) -> Result<Done, Failure> {
    if !run.settings.sync_master {
        return Ok(Done::SyncOff);
    }
    let scene = match run.host.find_scene(&run.job.scene_id) {
        Ok(Some(scene)) => scene,
        Ok(None) => return Ok(Done::SceneGone),
        Err(e) => return Err(stash_failure(e)),
    };
    let Some(file) = scene.files.first() else {
        return Ok(Done::NoFile);
    };
    let path = file.path.clone();
    run.shown_path = Some(clip(&run.host.obfuscate_path(&path), PATH_LOG_CHARS));

    let section = section_for(state, run, &path)?;
    let (rating_key, item) = match locate(state, run, &section, &path)? {
        Located::Item(rk, item) => (rk, item),
        Located::Unfinished { listed, total } => {
            return Ok(Done::Unfinished { section: section.title.clone(), listed, total });
        }
    };
    edit(state, run, &scene, &section, &rating_key, &item)
}

/// The section for `path`, fetching the section list once per instance.
fn section_for(state: &mut DrainState, run: &mut JobRun<'_>, path: &str) -> Result<Section, Failure> {
    if state.sections.is_none() {
        let request = PlexRequest::get("/library/sections");
        let response = run.send(&request)?;
        expect_success(&response, &request)?;
        let infos = plex_json::parse_sections(&response.body).map_err(|e| malformed(&request, e))?;
        let (sections, missing) = matching::build_sections(&infos, &run.settings.plex_library);
        if !missing.is_empty() {
            run.host.log(
                LogLevel::Warn,
                &clip(
                    &format!("plex_library names not found in Plex as movie or TV libraries: {}", missing.join(", ")),
                    MAX_ERROR_CHARS,
                ),
            );
        }
        state.sections = Some(sections);
    }
    let sections = state.sections.as_deref().unwrap_or_default();
    if let Some(section) = matching::pick_section(sections, path) {
        return Ok(section.clone());
    }
    let shown = run.shown_path();
    let message = if sections.is_empty() && !run.settings.plex_library.is_empty() {
        format!(
            "none of the libraries in plex_library ({}) is a movie or TV library in Plex, so no Plex library folder contains {shown}",
            run.settings.plex_library.join(", ")
        )
    } else {
        let searched: Vec<&str> = sections.iter().map(|s| s.title.as_str()).collect();
        format!("no Plex library folder contains {shown} (libraries searched: {})", searched.join(", "))
    };
    Err(Failure::NotFound { message: clip(&message, MAX_ERROR_CHARS) })
}

enum Located {
    Item(String, Box<PlexItem>),
    Unfinished { listed: u64, total: Option<u64> },
}

/// Find the item with `path` and read it in full. A cached ratingKey that
/// proves stale (404, or the item lost the file) is dropped and the section
/// listed again, once.
fn locate(state: &mut DrainState, run: &mut JobRun<'_>, section: &Section, path: &str) -> Result<Located, Failure> {
    let mut relisted = false;
    loop {
        let now = run.host.now_ms();
        let resolution =
            state.index.resolve(section, path, now, MAX_PAGES_PER_STEP, |request| fetch_listing(run, request));
        let resolution = match resolution {
            Ok(r) => r,
            Err(Failure::SectionGone { message }) => {
                // Sections changed under us: read them again next time.
                state.sections = None;
                state.index.invalidate(&section.key);
                return Err(Failure::NotFound { message });
            }
            Err(other) => return Err(other),
        };
        let rating_key = match resolution {
            Resolution::Found(rk) => rk,
            Resolution::Ambiguous(keys) => {
                let listed = clip(&keys.join(", "), MAX_ERROR_CHARS);
                if run.settings.strict_matching {
                    return Err(Failure::Permanent {
                        class: "ambiguous-match",
                        message: format!(
                            "{} Plex items in library \"{}\" have the file {} (ratingKeys {listed}); strict_matching refuses to guess",
                            keys.len(),
                            section.title,
                            run.shown_path()
                        ),
                    });
                }
                let Some(lowest) = keys.into_iter().next() else {
                    return Err(run.not_in_plex(section));
                };
                run.host.log(
                    LogLevel::Warn,
                    &format!(
                        "{}: several Plex items have this file (ratingKeys {listed}); using {lowest} because strict_matching is off",
                        run.who()
                    ),
                );
                lowest
            }
            Resolution::NotInPlex => return Err(run.not_in_plex(section)),
            Resolution::Unfinished { listed, total } => {
                return Ok(Located::Unfinished { listed, total });
            }
        };
        match fetch_item(run, &rating_key)? {
            Some(item) if item.files.iter().any(|f| f == path) => {
                return Ok(Located::Item(rating_key, Box::new(item)));
            }
            _ => {
                state.index.invalidate(&section.key);
                if relisted {
                    return Err(Failure::NotFound {
                        message: format!(
                            "Plex item {rating_key} no longer has the file {} and no other item in library \"{}\" has it",
                            run.shown_path(),
                            section.title
                        ),
                    });
                }
                relisted = true;
            }
        }
    }
}

/// Diff and, if needed, send the one PUT.
fn edit(
    state: &mut DrainState,
    run: &mut JobRun<'_>,
    scene: &Scene,
    section: &Section,
    rating_key: &str,
    item: &PlexItem,
) -> Result<Done, Failure> {
    let plan = edits::plan(scene, item, run.settings, section.kind.plex_type(), rating_key);
    for warning in plan.warnings.iter().take(8) {
        run.host.log(LogLevel::Warn, &clip(&format!("{}: {warning}", run.who()), MAX_ERROR_CHARS));
    }
    if plan.is_empty() {
        return Ok(Done::InSync { rating_key: rating_key.to_string() });
    }
    let fields = plan.changed_names();
    let mut request = PlexRequest::new(Method::Put, format!("/library/sections/{}/all", section.key));
    request.query = plan.query;
    let response = run.send(&request)?;
    match response.status {
        200 | 201 | 204 => Ok(Done::Synced { rating_key: rating_key.to_string(), fields }),
        404 => {
            state.index.invalidate(&section.key);
            Err(Failure::NotFound { message: format!("Plex item {rating_key} disappeared before it could be edited") })
        }
        status => Err(status_failure(status, &request)),
    }
}

fn fetch_listing(run: &mut JobRun<'_>, request: &PlexRequest) -> Result<ListingPage, Failure> {
    let response = run.send(request)?;
    if response.status == 404 {
        return Err(Failure::SectionGone {
            message: format!("Plex library section at {} no longer exists", request.path),
        });
    }
    expect_success(&response, request)?;
    plex_json::parse_listing(&response.body).map_err(|e| malformed(request, e))
}

/// `GET /library/metadata/{rk}`; `None` on 404 or an empty container.
fn fetch_item(run: &mut JobRun<'_>, rating_key: &str) -> Result<Option<PlexItem>, Failure> {
    let request = PlexRequest::get(format!("/library/metadata/{rating_key}"));
    let response = run.send(&request)?;
    if response.status == 404 {
        return Ok(None);
    }
    expect_success(&response, &request)?;
    plex_json::parse_item(&response.body).map_err(|e| malformed(&request, e))
}

fn expect_success(response: &PlexResponse, request: &PlexRequest) -> Result<(), Failure> {
    if (200..300).contains(&response.status) { Ok(()) } else { Err(status_failure(response.status, request)) }
}

/// Classify a non-success status.
fn status_failure(status: u16, request: &PlexRequest) -> Failure {
    let what = format!("{} {}", request.method.as_str(), clip(&request.path, 200));
    match status {
        401 | 403 => Failure::Unauthorized {
            class: "plex-unauthorized",
            message: format!("Plex rejected the token; check plex_token in the plugin settings ({status} on {what})"),
        },
        400 => Failure::Permanent {
            class: "plex-rejected-request",
            message: format!("Plex rejected the request as invalid (400 on {what})"),
        },
        429 | 500..=599 => {
            Failure::Transient { class: "plex-unavailable", message: format!("Plex answered {status} on {what}") }
        }
        // Only requests without their own 404 handling get here (the
        // section list): most likely plex_url points at something else, which
        // fixing the setting cures, so keep the job.
        404 => Failure::Transient {
            class: "plex-unavailable",
            message: format!("Plex answered 404 on {what}; check that plex_url points at the Plex server"),
        },
        402 | 405..=499 => Failure::Permanent {
            class: "plex-rejected-request",
            message: format!("Plex refused the request ({status} on {what})"),
        },
        _ => Failure::Transient {
            class: "plex-unavailable",
            message: format!("Plex answered with unexpected status {status} on {what}"),
        },
    }
}

fn malformed(request: &PlexRequest, error: plex_json::PlexJsonError) -> Failure {
    Failure::Transient {
        class: "plex-malformed-response",
        message: format!(
            "Plex sent an unexpected answer to {} {}: {}",
            request.method.as_str(),
            clip(&request.path, 200),
            error
        ),
    }
}

fn stash_failure(error: StashError) -> Failure {
    match error {
        StashError::Unauthorized(m) => Failure::Unauthorized {
            class: "stash-unauthorized",
            message: format!("Stash rejected the plugin's credentials ({})", clip(&m, 200)),
        },
        StashError::Unreachable(m) | StashError::Graphql(m) => Failure::Transient {
            class: "stash-unavailable",
            message: format!("Stash could not answer ({})", clip(&m, 200)),
        },
        StashError::Malformed(m) => Failure::Transient {
            class: "stash-malformed",
            message: format!("Stash sent an unexpected answer ({})", clip(&m, 200)),
        },
    }
}

/// `METHOD /path?k=v&… [headers]` with every value cut to 200 characters.
pub fn describe_request(request: &PlexRequest) -> String {
    let mut out = format!("{} {}", request.method.as_str(), clip(&request.path, 200));
    for (i, (k, v)) in request.query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        let _ = write!(out, "{}={}", clip(k, 100), clip(v, MAX_QUERY_VALUE_CHARS));
    }
    if !request.headers.is_empty() {
        let headers: Vec<String> =
            request.headers.iter().map(|(k, v)| format!("{}: {}", clip(k, 100), clip(v, 100))).collect();
        let _ = write!(out, " [{}]", headers.join(", "));
    }
    out
}

impl JobRun<'_> {
    /// Send one Plex request, renewing the lease first when half of it is
    /// used, and remember the exchange for diagnostics.
    fn send(&mut self, request: &PlexRequest) -> Result<PlexResponse, Failure> {
        self.keep_lease()?;
        self.requests += 1;
        let summary = describe_request(request);
        match self.host.plex_send(request) {
            Ok(response) => {
                let mut line = format!("{summary} → {}", response.status);
                if !(200..300).contains(&response.status) && !response.body.is_empty() {
                    let _ = write!(line, " {}", body_snippet(&response.body, BODY_SNIPPET_BYTES));
                }
                self.last_exchange = Some(line);
                Ok(response)
            }
            Err(error) => {
                let error = clip(&error.to_string(), 300);
                self.last_exchange = Some(format!("{summary} → {error}"));
                Err(Failure::Transient {
                    class: "plex-unavailable",
                    message: format!("Plex could not be reached: {error}"),
                })
            }
        }
    }

    fn keep_lease(&mut self) -> Result<(), Failure> {
        let now = self.host.now_ms();
        if now.saturating_sub(self.last_renew_ms) >= i64::from(LEASE_MS / 2) {
            self.host.renew(self.job.id, self.job.lease, LEASE_MS)?;
            self.last_renew_ms = now;
        }
        Ok(())
    }

    fn shown_path(&self) -> &str {
        self.shown_path.as_deref().unwrap_or("(no path)")
    }

    /// `scene 12 (/data/x.mp4)` or `scene 12`.
    fn who(&self) -> String {
        let id = clip(&self.job.scene_id, 64);
        match &self.shown_path {
            Some(p) => format!("scene {id} ({p})"),
            None => format!("scene {id}"),
        }
    }

    fn not_in_plex(&self, section: &Section) -> Failure {
        Failure::NotFound {
            message: format!(
                "not in Plex yet: no item in library \"{}\" has the file {}",
                section.title,
                self.shown_path()
            ),
        }
    }

    /// Record the outcome in the queue, log one line, and say what happened.
    fn finish(&self, result: Result<Done, Failure>) -> Result<StepOutcome, String> {
        let host = self.host;
        let job = self.job;
        let who = self.who();
        let now = host.now_ms();
        let requests = match self.requests {
            1 => "1 Plex request".to_string(),
            n => format!("{n} Plex requests"),
        };

        let (recorded, level, what) = match result {
            Ok(Done::Unfinished { section, listed, total }) => {
                let total = total.map_or_else(|| "?".to_string(), |t| t.to_string());
                (
                    host.release(job.id, job.lease, now, &[]),
                    LogLevel::Info,
                    format!(
                        ": still listing Plex library \"{section}\" ({listed} of {total} items so far); continuing"
                    ),
                )
            }
            Ok(done) => {
                let what = match done {
                    Done::Synced { rating_key, fields } => {
                        format!(": synced {} to Plex item {rating_key}", fields.join(", "))
                    }
                    Done::InSync { rating_key } => {
                        format!(": already in sync with Plex item {rating_key}")
                    }
                    Done::NoFile => " has no file; nothing to sync in Plex".to_string(),
                    Done::SceneGone => " no longer exists in Stash; nothing to sync".to_string(),
                    Done::SyncOff => ": field sync is off (sync_master); nothing written to Plex".to_string(),
                    Done::Unfinished { .. } => String::new(),
                };
                (host.complete(job.id, job.lease, &[]), LogLevel::Info, what)
            }
            Err(Failure::LeaseLost) => {
                let line = format!("{who}: the job's lease was lost to another drainer; nothing recorded ({requests})");
                host.log(LogLevel::Warn, &line);
                return Ok(StepOutcome::Worked(line));
            }
            Err(Failure::Storage(m)) => {
                return Err(format!("queue storage failed during {who}: {}", clip(&m, 300)));
            }
            Err(Failure::SectionGone { message }) | Err(Failure::NotFound { message }) => {
                self.retry_or_bury(backoff::NOT_FOUND, "not-in-plex", &message, now)
            }
            Err(Failure::Transient { class, message }) => {
                self.retry_or_bury(backoff::transient(self.settings.max_retries), class, &message, now)
            }
            Err(Failure::Unauthorized { class, message }) => {
                let delay = backoff::UNAUTHORIZED_DELAY_MS;
                (
                    host.retry_at(
                        job.id,
                        job.lease,
                        now.saturating_add(delay as i64),
                        &error_text(class, &message),
                        &[],
                    ),
                    LogLevel::Warn,
                    format!(": retrying in {} s: {message}", delay / 1000),
                )
            }
            Err(Failure::Permanent { class, message }) => {
                (self.bury(class, &message), LogLevel::Warn, format!(": {}", dead_text(class, &message)))
            }
        };

        match recorded {
            Ok(()) => {
                let line = clip(&format!("{who}{what} ({requests})"), 1_000);
                host.log(level, &line);
                Ok(StepOutcome::Worked(line))
            }
            Err(QueueError::LeaseLost) => {
                let line = format!("{who}: the job's lease was lost before the outcome could be recorded ({requests})");
                host.log(LogLevel::Warn, &line);
                Ok(StepOutcome::Worked(line))
            }
            Err(QueueError::Storage(m)) => Err(format!("could not record the outcome of {who}: {}", clip(&m, 300))),
        }
    }

    fn retry_or_bury(
        &self,
        profile: Profile,
        class: &'static str,
        message: &str,
        now: i64,
    ) -> (Result<(), QueueError>, LogLevel, String) {
        let attempt = self.job.attempt;
        match profile.decide(attempt, self.host.random_u64()) {
            Decision::RetryIn(delay) => (
                self.host.retry_at(
                    self.job.id,
                    self.job.lease,
                    now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)),
                    &error_text(class, message),
                    &[],
                ),
                LogLevel::Info,
                format!(
                    ": retrying in {} s (attempt {attempt} of {}): {message}",
                    delay.div_ceil(1000),
                    profile.max_attempts
                ),
            ),
            Decision::GiveUp => (
                self.bury(class, message),
                LogLevel::Warn,
                format!(": after {attempt} attempts, {}", dead_text(class, message)),
            ),
        }
    }

    fn bury(&self, class: &str, message: &str) -> Result<(), QueueError> {
        let mut detail = self.last_exchange.clone().unwrap_or_else(|| "no Plex request was sent".to_string());
        let _ = write!(detail, "; attempt {}; {} Plex requests in the last attempt", self.job.attempt, self.requests);
        if let Some(previous) = &self.job.last_error {
            let _ = write!(detail, "; previous error: {}", clip(previous, 300));
        }
        let info = DeadLetterInfo {
            error_class: class.to_string(),
            message: clip(message, MAX_ERROR_CHARS),
            detail: clip(&detail, MAX_DETAIL_CHARS),
        };
        self.host.dead_letter(self.job.id, self.job.lease, &info, &[])
    }
}

fn error_text(class: &str, message: &str) -> String {
    clip(&format!("{class}: {message}"), MAX_ERROR_CHARS)
}

fn dead_text(class: &str, message: &str) -> String {
    format!("dead-lettered ({class}): {message}")
}

#[cfg(test)]
mod tests;
