//! `step`: one unit of work: a job, a health probe, a credential check,
//! or nothing.
//!
//! Before any job is claimed the reliability state decides whether Plex may
//! be called at all:
//!
//! 1. **Token rejected** (an earlier 401/403): nothing is claimed, so no
//!    attempt is used. One `GET /library/sections` checks the token when a
//!    drain starts and then every 5 minutes; otherwise the step is
//!    `idle(next check)`.
//! 2. **Breaker open**: with due jobs, the `GET /identity` probe runs when
//!    due (`worked`), else the step waits for it (`wait-ms`, at most 60 s,
//!    so a Process Queue task rides out an outage and drains on recovery);
//!    with only waiting jobs, `idle(max(next due, next probe))`.
//! 3. **Pacing** (the ramp after a recovery, the steady rate otherwise):
//!    `wait-ms` until the next job may start.
//! 4. **Half-open**: the job runs as one of the trials.
//! 5. **Retry budget**: a retry over budget is released, not sent.
//!
//! A job: claim → Stash scene → Plex section → ratingKey (path index) →
//! full item → diff → at most one PUT → complete / retry-at / release /
//! dead-letter, with the reliability state written in the same queue call.
//! Every failure is classified in `classify` and handled by its class's
//! retry profile (`retry`); a breaker-counted failure that leaves the
//! breaker open releases the job (the attempt does not count) until the
//! next probe.

use std::fmt::Write as _;

use crate::breaker::{self, Outcome, Permit};
use crate::classify::{self, Classified, Endpoint, ErrorClass};
use crate::edits;
use crate::fanout;
use crate::health;
use crate::host::{
    DeadLetterInfo, Describe, Host, Job, LogLevel, Method, PlexRequest, PlexResponse, QueueError, Scene, StepOutcome,
};
use crate::matching::{self, PathIndex, Resolution, Section};
use crate::plex_json::{self, ListingPage, PlexItem};
use crate::resilience::{self, Resilience};
use crate::retry::{self, Decision};
use crate::settings::Settings;
use crate::text::{body_snippet, clip, duration_text};

/// Lease taken on each claimed job.
pub const LEASE_MS: u32 = 120_000;
/// Listing pages fetched for one job in one step; a bigger library is listed
/// over several steps (the job is released, not failed, in between).
pub const MAX_PAGES_PER_STEP: u32 = 25;
/// Longest `wait-ms` a step returns (the host re-asks after it).
pub const MAX_WAIT_MS: i64 = 60_000;
/// A retry over budget waits this long (uniform), not counted.
pub const BUDGET_DELAY_MS: (u64, u64) = (5_000, 10_000);

const MAX_ERROR_CHARS: usize = 500;
const MAX_DETAIL_CHARS: usize = 2_000;
const MAX_QUERY_VALUE_CHARS: usize = 200;
const BODY_SNIPPET_BYTES: usize = 200;
const PATH_LOG_CHARS: usize = 300;

/// Knowledge kept for the life of the instance (one drain).
#[derive(Debug, Default)]
pub struct DrainState {
    sections: Option<Vec<Section>>,
    index: PathIndex,
    /// This instance has checked the token during a credential pause (a new
    /// drain checks once at its start, so fixing the token resumes at once).
    auth_checked: bool,
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
    /// A classified failure (see `classify`).
    Class(Classified),
    /// Another drainer owns the job now; record nothing.
    LeaseLost,
    /// The queue itself failed.
    Storage(String),
}

impl From<QueueError> for Failure {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::LeaseLost => Failure::LeaseLost,
            QueueError::Storage(m) | QueueError::Refused(m) => Failure::Storage(m),
        }
    }
}

impl From<Classified> for Failure {
    fn from(c: Classified) -> Self {
        Failure::Class(c)
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
    started_ms: i64,
    requests: u32,
    /// The slowest Plex response of the attempt (slow-call detection).
    slowest_ms: u32,
    last_exchange: Option<String>,
    last_renew_ms: i64,
    shown_path: Option<String>,
}

fn queue_text(e: QueueError) -> String {
    format!("could not use the queue: {}", e.describe())
}

/// `wait-ms` for `ms`, clamped to 1 ms – [`MAX_WAIT_MS`].
fn wait(ms: i64) -> StepOutcome {
    StepOutcome::WaitMs(u32::try_from(ms.clamp(1, MAX_WAIT_MS)).unwrap_or(1))
}

/// Run one step.
pub fn step(settings: &Settings, state: &mut DrainState, host: &dyn Host) -> Result<StepOutcome, String> {
    let now = host.now_ms();
    let mut res = Resilience::load(host, settings, now)
        .map_err(|e| format!("could not read the policy state: {}", e.describe()))?;
    res.tick(host, now);

    if res.state.auth.is_some() {
        return auth_paused(state, &mut res, host, now);
    }
    if let breaker::State::Open { until, forced, .. } = res.state.breaker.state {
        return breaker_open(&mut res, host, now, until, forced);
    }
    let pace = res.state.pacer.wait_ms(now);
    if pace > 0 {
        return nothing_due_or(&mut res, host, wait(i64::from(pace)));
    }
    let (permit, transitions) = res.state.breaker.permit(&res.cfg.breaker, now);
    res.apply(host, now, &transitions);
    let trial = match permit {
        Permit::Allow => false,
        Permit::Trial => true,
        Permit::Reject { until } => return nothing_due_or(&mut res, host, wait(until.saturating_sub(now))),
    };

    let job = match host.claim(LEASE_MS) {
        Ok(Some(job)) => job,
        Ok(None) => {
            if trial {
                res.record(host, now, Outcome::Ignored, None);
            }
            res.save_if_changed(host).map_err(queue_text)?;
            let counts = host.counts().map_err(|e| format!("could not read the queue: {}", e.describe()))?;
            return Ok(StepOutcome::Idle(counts.next_due_ms));
        }
        Err(e) => return Err(format!("could not claim a job: {}", e.describe())),
    };

    if let Some(object) = fanout::object(&job.scene_id) {
        // A performer, studio, tag or group: queue the scenes that carry it.
        if trial {
            res.record(host, now, Outcome::Ignored, None);
        }
        res.save_if_changed(host).map_err(queue_text)?;
        return fanout::step(host, &job, object);
    }
    if !res.budget_allows(job.attempt, now) {
        if trial {
            res.record(host, now, Outcome::Ignored, None);
        }
        return over_budget(&mut res, host, &job, now);
    }

    let mut run = JobRun {
        host,
        job: &job,
        settings,
        started_ms: now,
        requests: 0,
        slowest_ms: 0,
        last_exchange: None,
        last_renew_ms: now,
        shown_path: None,
    };
    let result = process(state, &mut run);
    let outcome = run.finish(&mut res, result);
    if res.state.auth.is_some() {
        // The pause started in this drain: its first check is due in 5 minutes.
        state.auth_checked = true;
    }
    outcome
}

/// Return `outcome` if a job is due; `idle` if none is (waiting jobs never
/// keep a drain busy).
fn nothing_due_or(res: &mut Resilience, host: &dyn Host, outcome: StepOutcome) -> Result<StepOutcome, String> {
    res.save_if_changed(host).map_err(queue_text)?;
    let counts = host.counts().map_err(|e| format!("could not read the queue: {}", e.describe()))?;
    if counts.ready == 0 {
        return Ok(StepOutcome::Idle(counts.next_due_ms));
    }
    Ok(outcome)
}

/// The breaker is open: probe when due, else wait for the probe (or idle
/// when nothing is due). A manual pause (`breaker_open` task) is not an
/// outage to ride out: the drain goes idle until the pause ends.
fn breaker_open(
    res: &mut Resilience,
    host: &dyn Host,
    now: i64,
    until: i64,
    forced: bool,
) -> Result<StepOutcome, String> {
    let counts = host.counts().map_err(|e| format!("could not read the queue: {}", e.describe()))?;
    res.state.outages.note_pending(resilience::pending(&counts));
    if counts.ready == 0 {
        res.save_if_changed(host).map_err(queue_text)?;
        return Ok(StepOutcome::Idle(counts.next_due_ms.map(|due| due.max(until))));
    }
    if now < until {
        res.save_if_changed(host).map_err(queue_text)?;
        if forced {
            return Ok(StepOutcome::Idle(Some(until)));
        }
        return Ok(wait(until - now));
    }
    let summary = probe(res, host);
    res.save_if_changed(host).map_err(queue_text)?;
    Ok(StepOutcome::Worked(summary))
}

/// One `GET /identity` probe; its result moves the breaker or the schedule.
pub fn probe(res: &mut Resilience, host: &dyn Host) -> String {
    let result = health::identity(host);
    let now = host.now_ms();
    match result {
        Ok(detail) => {
            let summary = format!("probe GET /identity: Plex answers ({detail})");
            res.probe_ok(host, now, detail);
            summary
        }
        Err(c) => {
            let next = res.probe_failed(now, host.random_u64(), clip(&c.message, 200), c.retry_after_ms);
            let wait = duration_text(next.saturating_sub(now));
            host.log(
                LogLevel::Info,
                &clip(&format!("Plex is still unavailable ({}); next check in {wait}.", c.message), 600),
            );
            format!("probe GET /identity: {}; next probe in {wait}", c.class.name())
        }
    }
}

/// Syncing is paused for the token: check it when due, never claim.
fn auth_paused(state: &mut DrainState, res: &mut Resilience, host: &dyn Host, now: i64) -> Result<StepOutcome, String> {
    let Some(pause) = res.state.auth.clone() else {
        return Ok(StepOutcome::Worked("no credential pause".into()));
    };
    let counts = host.counts().map_err(|e| format!("could not read the queue: {}", e.describe()))?;
    let waiting = resilience::pending(&counts);
    let due = now >= pause.next_check_ms || !state.auth_checked;
    if waiting == 0 || !due {
        res.save_if_changed(host).map_err(queue_text)?;
        return Ok(StepOutcome::Idle((waiting > 0).then_some(pause.next_check_ms)));
    }
    state.auth_checked = true;
    let result = health::token(host);
    let now = host.now_ms();
    match result {
        Ok(()) => {
            res.auth_ok(host, now);
            res.save_if_changed(host).map_err(queue_text)?;
            Ok(StepOutcome::Worked("token check GET /library/sections: Plex accepts the token; syncing resumes".into()))
        }
        Err(c) => {
            let status = health::unauthorized_status(&c).unwrap_or(pause.status);
            res.pause_for_auth(now, status, &c.message);
            let next = res.state.auth.as_ref().map_or(now, |p| p.next_check_ms);
            let why = match health::unauthorized_status(&c) {
                Some(s) => format!("Plex still rejects the token (HTTP {s})"),
                None => format!("the token could not be checked ({})", clip(&c.message, 200)),
            };
            host.log(
                LogLevel::Info,
                &format!(
                    "{why}; syncing stays paused ({waiting} change(s) waiting). Check plex_token in the plugin settings; next check in {}.",
                    duration_text(next.saturating_sub(now))
                ),
            );
            res.save_if_changed(host).map_err(queue_text)?;
            Ok(StepOutcome::Idle(Some(next)))
        }
    }
}

/// A retry over the retry budget: give it back for a few seconds.
fn over_budget(res: &mut Resilience, host: &dyn Host, job: &Job, now: i64) -> Result<StepOutcome, String> {
    let delay = retry::uniform(BUDGET_DELAY_MS.0, BUDGET_DELAY_MS.1, host.random_u64());
    let (first, retries) = res.state.budget.totals(now);
    let writes = res.write();
    let line = format!(
        "scene {}: retry budget used up ({retries} retries for {first} first attempts in the last minute); trying again in {}",
        clip(&job.scene_id, 64),
        duration_text(i64::try_from(delay).unwrap_or(0))
    );
    match host.release(job.id, job.lease, now.saturating_add(i64::try_from(delay).unwrap_or(0)), &writes) {
        Ok(()) | Err(QueueError::LeaseLost) => {
            host.log(LogLevel::Debug, &line);
            Ok(StepOutcome::Worked(line))
        }
        Err(QueueError::Storage(m) | QueueError::Refused(m)) => {
            Err(format!("could not give back scene {}: {}", clip(&job.scene_id, 64), clip(&m, 300)))
        }
    }
}

fn process(state: &mut DrainState, run: &mut JobRun<'_>) -> Result<Done, Failure> {
    if !run.settings.sync_master {
        return Ok(Done::SyncOff);
    }
    let scene = match run.host.find_scene(&run.job.scene_id) {
        Ok(Some(scene)) => scene,
        Ok(None) => return Ok(Done::SceneGone),
        Err(e) => return Err(classify::stash(&e).into()),
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
        let response = run.send(Endpoint::Sections, &request)?;
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
    Err(classify::not_in_plex(clip(&message, MAX_ERROR_CHARS)).into())
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
            Err(Failure::Class(c)) if c.class == ErrorClass::StaleSection => {
                // Sections changed under us: read them again next time.
                state.sections = None;
                state.index.invalidate(&section.key);
                return Err(classify::not_in_plex(c.message).into());
            }
            Err(other) => return Err(other),
        };
        let rating_key = match resolution {
            Resolution::Found(rk) => rk,
            Resolution::Ambiguous(keys) => {
                let listed = clip(&keys.join(", "), MAX_ERROR_CHARS);
                if run.settings.strict_matching {
                    return Err(classify::ambiguous(format!(
                            "{} Plex items in library \"{}\" have the file {} (ratingKeys {listed}); strict_matching refuses to guess",
                            keys.len(),
                            section.title,
                            run.shown_path()
                        ))
                    .into());
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
                    return Err(classify::not_in_plex(format!(
                        "Plex item {rating_key} no longer has the file {} and no other item in library \"{}\" has it",
                        run.shown_path(),
                        section.title
                    ))
                    .into());
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
    match run.send(Endpoint::Edit, &request) {
        Ok(_) => Ok(Done::Synced { rating_key: rating_key.to_string(), fields }),
        Err(Failure::Class(c)) if c.class == ErrorClass::StaleItem => {
            state.index.invalidate(&section.key);
            Err(classify::not_in_plex(format!("Plex item {rating_key} disappeared before it could be edited")).into())
        }
        Err(other) => Err(other),
    }
}

fn fetch_listing(run: &mut JobRun<'_>, request: &PlexRequest) -> Result<ListingPage, Failure> {
    let response = run.send(Endpoint::Listing, request)?;
    plex_json::parse_listing(&response.body).map_err(|e| malformed(request, e))
}

/// `GET /library/metadata/{rk}`; `None` on 404 or an empty container.
fn fetch_item(run: &mut JobRun<'_>, rating_key: &str) -> Result<Option<PlexItem>, Failure> {
    let request = PlexRequest::get(format!("/library/metadata/{rating_key}"));
    let response = match run.send(Endpoint::Item, &request) {
        Ok(response) => response,
        // A stale index entry: the caller lists the section again.
        Err(Failure::Class(c)) if c.class == ErrorClass::StaleItem => return Ok(None),
        Err(other) => return Err(other),
    };
    plex_json::parse_item(&response.body).map_err(|e| malformed(&request, e))
}

/// `GET /path` for messages.
fn what(request: &PlexRequest) -> String {
    format!("{} {}", request.method.as_str(), clip(&request.path, 200))
}

fn malformed(request: &PlexRequest, error: plex_json::PlexJsonError) -> Failure {
    classify::malformed(&what(request), &error.to_string()).into()
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
    /// used, remember the exchange for diagnostics, and classify the answer
    /// (`Ok` only for 2xx).
    fn send(&mut self, endpoint: Endpoint, request: &PlexRequest) -> Result<PlexResponse, Failure> {
        self.keep_lease()?;
        self.requests += 1;
        let summary = describe_request(request);
        match self.host.plex_send(request) {
            Ok(response) => {
                self.slowest_ms = self.slowest_ms.max(response.elapsed_ms);
                let mut line = format!("{summary} → {}", response.status);
                if !(200..300).contains(&response.status) && !response.body.is_empty() {
                    let _ = write!(line, " {}", body_snippet(&response.body, BODY_SNIPPET_BYTES));
                }
                self.last_exchange = Some(line);
                match classify::response(endpoint, &response, &what(request), self.host.now_ms()) {
                    None => Ok(response),
                    Some(c) => Err(c.into()),
                }
            }
            Err(error) => {
                self.last_exchange = Some(format!("{summary} → {}", clip(&error.describe(), 300)));
                Err(classify::transport(&error).into())
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
        classify::not_in_plex(format!(
            "not in Plex yet: no item in library \"{}\" has the file {}",
            section.title,
            self.shown_path()
        ))
        .into()
    }

    /// Record the outcome with the breaker, then in the queue (with the
    /// reliability state in the same call), log one line, and say what
    /// happened.
    fn finish(&self, res: &mut Resilience, result: Result<Done, Failure>) -> Result<StepOutcome, String> {
        let host = self.host;
        let job = self.job;
        let who = self.who();
        let now = host.now_ms();
        let requests = match self.requests {
            1 => "1 Plex request".to_string(),
            n => format!("{n} Plex requests"),
        };

        let outcome = match &result {
            Ok(Done::Synced { .. } | Done::InSync { .. } | Done::Unfinished { .. }) if self.requests > 0 => {
                Outcome::Success { elapsed_ms: self.slowest_ms }
            }
            Err(Failure::Class(c)) if c.class.counts_for_breaker() => Outcome::Failure,
            _ => Outcome::Ignored,
        };
        let failure = match &result {
            Err(Failure::Class(c)) if c.class.counts_for_breaker() => Some(c.message.as_str()),
            _ => None,
        };
        res.record(host, now, outcome, failure);
        res.state.pacer.sent(&res.cfg.ramp, self.started_ms, self.requests);

        let (recorded, level, what) = match result {
            Ok(Done::Unfinished { section, listed, total }) => {
                let total = total.map_or_else(|| "?".to_string(), |t| t.to_string());
                let writes = res.write();
                (
                    host.release(job.id, job.lease, now, &writes),
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
                let writes = res.write();
                (host.complete(job.id, job.lease, &writes), LogLevel::Info, what)
            }
            Err(Failure::LeaseLost) => {
                // The breaker still learned from the exchange.
                let _ = res.save_if_changed(host);
                let line = format!("{who}: the job's lease was lost to another drainer; nothing recorded ({requests})");
                host.log(LogLevel::Warn, &line);
                return Ok(StepOutcome::Worked(line));
            }
            Err(Failure::Storage(m)) => {
                return Err(format!("queue storage failed during {who}: {}", clip(&m, 300)));
            }
            Err(Failure::Class(c)) => self.failed(res, c, now),
        };

        match recorded {
            Ok(()) => {
                let line = clip(&format!("{who}{what} ({requests})"), 1_000);
                host.log(level, &line);
                Ok(StepOutcome::Worked(line))
            }
            Err(QueueError::LeaseLost) => {
                let _ = res.save_if_changed(host);
                let line = format!("{who}: the job's lease was lost before the outcome could be recorded ({requests})");
                host.log(LogLevel::Warn, &line);
                Ok(StepOutcome::Worked(line))
            }
            Err(QueueError::Storage(m) | QueueError::Refused(m)) => {
                Err(format!("could not record the outcome of {who}: {}", clip(&m, 300)))
            }
        }
    }

    /// What a classified failure does to the job.
    fn failed(&self, res: &mut Resilience, c: Classified, now: i64) -> (Result<(), QueueError>, LogLevel, String) {
        let host = self.host;
        let job = self.job;
        let name = c.class.name();
        let message = c.message.as_str();

        if let ErrorClass::PlexUnauthorized { status } = c.class {
            let started = res.pause_for_auth(now, status, message);
            let writes = res.write();
            // Due at once: the pause itself keeps jobs from being claimed,
            // and when the token is accepted again every change goes
            // immediately instead of waiting out the check interval.
            let recorded = host.release(job.id, job.lease, now, &writes);
            if started {
                let waiting = host.counts().map(|c| resilience::pending(&c)).unwrap_or(1).max(1);
                host.log(LogLevel::Error, &auth_message(status, waiting));
            }
            return (
                recorded,
                LogLevel::Warn,
                format!(": Plex rejected the token (HTTP {status}); the change waits while syncing is paused"),
            );
        }

        if c.class.counts_for_breaker() && res.state.breaker.is_open() {
            if let Some(ra) = c.retry_after_ms {
                res.state.breaker.extend_open(now.saturating_add(i64::try_from(ra).unwrap_or(0)));
            }
            let until = res.state.breaker.open_until().unwrap_or(now);
            res.state.outages.note_released(job.id);
            let writes = res.write();
            return (
                host.release(job.id, job.lease, until, &writes),
                LogLevel::Info,
                format!(
                    ": Plex is unavailable ({message}); the change waits for Plex to recover (next check in {})",
                    duration_text(until.saturating_sub(now))
                ),
            );
        }

        let profile = retry::profile(c.class, res.cfg.retry);
        let streak = res.state.breaker.consecutive_failures.max(1);
        let attempt = job.attempt;
        match profile.decide(attempt, streak, host.random_u64(), c.retry_after_ms) {
            Decision::RetryIn(delay) => {
                let writes = res.write();
                let max = profile.max_attempts.map_or_else(|| "∞".to_string(), |m| m.to_string());
                (
                    host.retry_at(job.id, job.lease, at(now, delay), &error_text(name, message), &writes),
                    LogLevel::Info,
                    format!(": retrying in {} s (attempt {attempt} of {max}): {message}", delay.div_ceil(1000)),
                )
            }
            Decision::ReleaseFor(delay) => {
                let writes = res.write();
                (
                    host.release(job.id, job.lease, at(now, delay), &writes),
                    LogLevel::Warn,
                    format!(": trying again in {} s (not counted as an attempt): {message}", delay.div_ceil(1000)),
                )
            }
            Decision::DeadLetter => {
                let writes = res.write();
                let what = if profile.max_attempts == Some(1) {
                    format!(": {}", dead_text(name, message))
                } else {
                    format!(": after {attempt} attempts, {}", dead_text(name, message))
                };
                (self.bury(name, message, &writes), LogLevel::Warn, what)
            }
        }
    }

    fn bury(&self, class: &str, message: &str, writes: &[crate::host::StateWrite]) -> Result<(), QueueError> {
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
        self.host.dead_letter(self.job.id, self.job.lease, &info, writes)
    }
}

/// `now + delay`, saturating.
fn at(now: i64, delay_ms: u64) -> i64 {
    now.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX))
}

/// The one error line a credential pause logs.
pub fn auth_message(status: u16, waiting: u64) -> String {
    let what = if status == 403 {
        "Plex refused this token access (HTTP 403: a shared user's token cannot edit the library; use the server owner's token)"
    } else {
        "Plex rejected the token (HTTP 401)"
    };
    let changes = if waiting == 1 { "1 change is".to_string() } else { format!("{waiting} changes are") };
    format!(
        "{what}. Syncing is paused and nothing is lost: {changes} waiting. Check plex_token in the plugin settings; stash2plex retries by itself every {} minutes.",
        retry::AUTH_PAUSE_MS / 60_000
    )
}

fn error_text(class: &str, message: &str) -> String {
    clip(&format!("{class}: {message}"), MAX_ERROR_CHARS)
}

fn dead_text(class: &str, message: &str) -> String {
    format!("dead-lettered ({class}): {message}")
}

#[cfg(test)]
mod tests;
