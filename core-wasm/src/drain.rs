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
//! A job: claim (jobs due together are claimed as a batch, their scenes
//! looked up in one `findScenes`: `batch`) → Plex section → ratingKey (path
//! index, refresh, fallbacks: `locate`) → full item → desired state → diff →
//! at most one PUT, the rating, the images → read back (verified /
//! drifted): `sync` → complete / retry-at / release / dead-letter, with the
//! reliability state written in the same queue call.
//! Every failure is classified in `classify` and handled by its class's
//! retry profile (`retry`); a breaker-counted failure that leaves the
//! breaker open releases the job (the attempt does not count) until the
//! next probe.

use std::fmt::Write as _;

use crate::breaker::{self, Outcome, Permit};
use crate::classify::{self, Classified, Endpoint, ErrorClass};
use crate::fanout;
use crate::health;
use std::collections::{HashMap, VecDeque};

use crate::host::{
    DeadLetterInfo, Describe, Host, Job, LogLevel, PlexRequest, PlexResponse, QueueError, StateWrite, StepOutcome,
};
use crate::matching::{PathIndex, Section};
use crate::plex_json::{self, Activity, PlexItem};
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
    /// Claimed jobs waiting for their step, with their scenes.
    batch: VecDeque<batch::Held>,
    /// Full items read together with another job's.
    prefetched: HashMap<String, PlexItem>,
    /// The scans asked for (`scan`), as last read or written.
    scans: Option<crate::scan::Scans>,
    /// The last `GET /activities` answer and when it came.
    activities: Option<(i64, Vec<Activity>)>,
    /// The latest time a job parked for a scan by this instance is due.
    parked_until: Option<i64>,
    /// This instance has checked the token during a credential pause (a new
    /// drain checks once at its start, so fixing the token resumes at once).
    auth_checked: bool,
}

impl DrainState {
    /// Forget everything learned from Plex (held jobs are kept: their
    /// leases run out on their own if nobody works on them).
    pub fn reset(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        *self = DrainState { batch, ..DrainState::default() };
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
        verify: Option<sync::Verify>,
        notes: Vec<String>,
    },
    InSync {
        rating_key: String,
        notes: Vec<String>,
    },
    /// Waiting for a Plex scan of the file's folder (not an attempt).
    WaitingForScan {
        until: i64,
        folder: String,
        requested: bool,
    },
    /// Not in Plex, and `skip_not_found` drops it.
    Skipped,
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
    /// Policy state written with the job's outcome (images, scans).
    writes: Vec<StateWrite>,
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

    batch::renew_held(state, host, now);

    if res.state.auth.is_some() {
        if !state.batch.is_empty() {
            batch::release_all(state, host, now, &res.write());
        }
        return auth_paused(state, &mut res, host, now);
    }
    if let breaker::State::Open { until, forced, .. } = res.state.breaker.state {
        if !state.batch.is_empty() {
            batch::release_all(state, host, until, &res.write());
        }
        return breaker_open(&mut res, host, now, until, forced);
    }
    let pace = res.state.pacer.wait_ms(now);
    if pace > 0 {
        if !state.batch.is_empty() {
            res.save_if_changed(host).map_err(queue_text)?;
            return Ok(wait(i64::from(pace)));
        }
        return nothing_due_or(&mut res, host, wait(i64::from(pace)));
    }
    let (permit, transitions) = res.state.breaker.permit(&res.cfg.breaker, now);
    res.apply(host, now, &transitions);
    let trial = match permit {
        Permit::Allow => false,
        Permit::Trial => true,
        Permit::Reject { until } => {
            if !state.batch.is_empty() {
                batch::release_all(state, host, now, &res.write());
            }
            return nothing_due_or(&mut res, host, wait(until.saturating_sub(now)));
        }
    };

    let max = if trial { 1 } else { batch::BATCH_SIZE };
    let held = match batch::next(state, host, settings.sync_master, max)? {
        Some(held) => held,
        None => {
            if trial {
                res.record(host, now, Outcome::Ignored, None);
            }
            res.save_if_changed(host).map_err(queue_text)?;
            let counts = host.counts().map_err(|e| format!("could not read the queue: {}", e.describe()))?;
            // A job parked for a scan this drain asked for is due soon:
            // wait for it rather than end the drain.
            if let (Some(due), Some(parked)) = (counts.next_due_ms, state.parked_until)
                && due <= parked
                && due.saturating_sub(now) <= MAX_WAIT_MS
            {
                return Ok(wait(due.saturating_sub(now)));
            }
            state.parked_until = None;
            return Ok(StepOutcome::Idle(counts.next_due_ms));
        }
    };
    let batch::Held { job, scene, leased_ms } = held;

    if let Some(object) = fanout::object(&job.scene_id) {
        // A performer, studio, tag or group: queue the scenes that carry it.
        if trial {
            res.record(host, now, Outcome::Ignored, None);
        }
        res.save_if_changed(host).map_err(queue_text)?;
        return fanout::step(host, &job, object);
    }
    // A retry is an attempt after a failed one. A job claimed before
    // without an outcome (its drainer was killed mid-attempt, or it sat
    // unsent in a claimed batch) carries no error: Plex refused nothing, so
    // it is not a retry for the budget, only for its attempt count.
    let retry = job.attempt > 1 && job.last_error.is_some();
    if !res.budget_allows(retry, now) {
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
        last_renew_ms: leased_ms,
        shown_path: None,
        writes: Vec::new(),
    };
    let result = if !settings.sync_master {
        Ok(Done::SyncOff)
    } else {
        match scene {
            Ok(Some(scene)) => process(state, &mut run, scene),
            Ok(None) => Ok(Done::SceneGone),
            Err(c) => Err(Failure::Class(c)),
        }
    };
    if let Ok(Done::WaitingForScan { until, .. }) = &result {
        state.parked_until = Some(state.parked_until.map_or(*until, |p| p.max(*until)));
    }
    let outcome = run.finish(&mut res, result);
    // Jobs held for later steps must not wait for a Plex that is down or
    // a token that is rejected.
    if !state.batch.is_empty() {
        if let Some(until) = res.state.breaker.open_until() {
            batch::release_all(state, host, until, &res.write());
        } else if res.state.auth.is_some() {
            batch::release_all(state, host, host.now_ms(), &res.write());
        }
    }
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
        Ok(_) => {
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

mod batch;
mod images;
mod locate;
mod sync;

use sync::process;

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

    /// A policy state write recorded with the job's outcome.
    fn write(&mut self, key: &str, value: Option<String>) {
        self.writes.retain(|w| w.key != key);
        self.writes.push(StateWrite { key: key.to_string(), value });
    }

    /// The reliability state and this job's own writes, for the queue call.
    fn all_writes(&self, res: &mut Resilience) -> Vec<StateWrite> {
        let mut writes = res.write();
        writes.extend(self.writes.iter().cloned());
        writes
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
            Ok(
                Done::Synced { .. }
                | Done::InSync { .. }
                | Done::Unfinished { .. }
                | Done::WaitingForScan { .. }
                | Done::Skipped,
            ) if self.requests > 0 => Outcome::Success { elapsed_ms: self.slowest_ms },
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
            Ok(Done::WaitingForScan { until, folder, requested }) => {
                let writes = self.all_writes(res);
                let what = if requested {
                    format!(": not in Plex yet; asked Plex to scan {folder} and waiting for the scan")
                } else {
                    format!(": waiting for Plex to finish scanning {folder}")
                };
                (host.release(job.id, job.lease, until, &writes), LogLevel::Info, what)
            }
            Ok(Done::Unfinished { section, listed, total }) => {
                let total = total.map_or_else(|| "?".to_string(), |t| t.to_string());
                let writes = self.all_writes(res);
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
                    Done::Synced { rating_key, fields, verify, notes } => {
                        let checked = match verify {
                            Some(sync::Verify::Verified) => "; verified",
                            Some(sync::Verify::Drifted(_)) => "; drifted (see the warning)",
                            None => "",
                        };
                        format!(
                            ": synced {} to Plex item {rating_key}{checked}{}",
                            fields.join(", "),
                            note_text(&notes)
                        )
                    }
                    Done::InSync { rating_key, notes } => {
                        format!(": already in sync with Plex item {rating_key}{}", note_text(&notes))
                    }
                    Done::Skipped => {
                        format!(": not in Plex; dropped because skip_not_found is on ({})", self.shown_path())
                    }
                    Done::WaitingForScan { .. } => String::new(),
                    Done::NoFile => " has no file; nothing to sync in Plex".to_string(),
                    Done::SceneGone => " no longer exists in Stash; nothing to sync".to_string(),
                    Done::SyncOff => ": field sync is off (sync_master); nothing written to Plex".to_string(),
                    Done::Unfinished { .. } => String::new(),
                };
                let writes = self.all_writes(res);
                let mut recorded = host.complete(job.id, job.lease, &writes);
                if let Err(QueueError::Refused(why)) = &recorded
                    && !self.writes.is_empty()
                {
                    // The host refused this job's own records (its bounds on
                    // policy state): the change is in Plex, so the outcome is
                    // kept without them. They are a cache (the image record:
                    // the next sync finds the images in Plex's lists).
                    host.log(LogLevel::Debug, &format!("{who}: this scene's records were not kept ({why})"));
                    recorded = host.complete(job.id, job.lease, &res.write());
                }
                (recorded, LogLevel::Info, what)
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

/// `; note; note` or nothing.
fn note_text(notes: &[String]) -> String {
    notes.iter().map(|n| format!("; {n}")).collect()
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
