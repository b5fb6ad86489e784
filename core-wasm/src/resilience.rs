//! The reliability state as one unit: breaker, probe schedule, pacer/ramp,
//! retry budget, credential pause and outage history, stored as one JSON
//! value under [`STATE_KEY`] in the host's policy state.
//!
//! It is read at the start of every step and task (so a manual
//! `breaker_open` from another process takes effect at once) and written
//! back in the same queue call as the job outcome it reflects (`complete`,
//! `retry-at`, `release`, `dead-letter` carry it as a state write); only
//! changes without a job (a probe, a credential check, a manual task) use
//! `state-set`. A value that cannot be read is logged and replaced by a
//! fresh state: never a trap.
//!
//! This module also turns breaker transitions into their consequences (the
//! outage record, the probe schedule, the ramp) and into log lines a user
//! understands.
//!
//! The stored JSON (times in ms since the epoch; every field but `v` and
//! `since_ms` may be missing and takes its default):
//!
//! ```json
//! {"v":1,"since_ms":1700000000000,
//!  "breaker":{"state":"open","since":1700000000000,"until":1700000032500,"forced":false,
//!             "consecutive_failures":0,"window":"oosf","trips":1},
//!  "probes":{"failed":1,"last_at":1700000030000,"last_ok":false,"last_detail":"refused","total":1},
//!  "pacer":{"next_send_at":0,"ramp":{"started_at":0,"rate_milli":1000,"changed_at":0,"recent":"of","halvings":0}},
//!  "budget":{"buckets":[{"at":1700000000000,"first":1,"retry":0}]},
//!  "auth":{"since_ms":0,"next_check_ms":300000,"status":401,"checks":0,"message":"…"},
//!  "outages":{"outages":[{"start_ms":1700000000000,"end_ms":null,"trips":1,"jobs_affected":0,
//!             "manual":false,"cause":"Plex could not be reached: …","released":[7],"peak_pending":3}]},
//!  "last_failure":"Plex could not be reached: connection refused"}
//! ```
//!
//! `breaker.state` is `closed`, `open` (`since`, `until`, `forced`) or
//! `half-open` (`since`, `in_flight`, `successes`); `pacer.ramp` and `auth`
//! are `null` when not running.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

use crate::breaker::{self, Breaker, BreakerConfig, Kind, Outcome, Transition, TripReason};
use crate::budget::{self, Budget};
use crate::host::{Condition, Host, LogLevel, QueueCounts, QueueError, StateWrite};
use crate::outage::{self, DAY_MS, History};
use crate::recovery::{self, Pacer, ProbeConfig, Probes, RampConfig, RampEvent};
use crate::retry::{AUTH_PAUSE_MS, RetrySettings};
use crate::settings::Settings;
use crate::text::{clip, duration_text, utc_text};

/// The policy-state key (the host namespaces it by policy name).
pub const STATE_KEY: &str = "resilience/v1";
pub const STATE_VERSION: u32 = 1;

/// Syncing is paused because Plex rejected the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthPause {
    pub since_ms: i64,
    /// When the next credential check (`GET /library/sections`) is due.
    pub next_check_ms: i64,
    /// 401 or 403.
    pub status: u16,
    #[serde(default)]
    pub checks: u32,
    #[serde(default)]
    pub message: String,
}

/// Everything persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub v: u32,
    /// When this state (and so the outage history) started.
    pub since_ms: i64,
    #[serde(default)]
    pub breaker: Breaker,
    #[serde(default)]
    pub probes: Probes,
    #[serde(default)]
    pub pacer: Pacer,
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub auth: Option<AuthPause>,
    #[serde(default)]
    pub outages: History,
    /// The last breaker-counted failure (the cause shown when it trips).
    #[serde(default)]
    pub last_failure: String,
}

impl State {
    pub fn fresh(now: i64) -> Self {
        State {
            v: STATE_VERSION,
            since_ms: now,
            breaker: Breaker::default(),
            probes: Probes::default(),
            pacer: Pacer::default(),
            budget: Budget::default(),
            auth: None,
            outages: History::default(),
            last_failure: String::new(),
        }
    }
}

/// The knobs, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub breaker: BreakerConfig,
    pub probes: ProbeConfig,
    pub ramp: RampConfig,
    pub retry: RetrySettings,
    pub budget_percent: u32,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Self {
        Config {
            breaker: s.breaker(),
            probes: s.probes(),
            ramp: s.ramp(),
            retry: s.retry(),
            budget_percent: s.retry_budget_percent,
        }
    }
}

/// The loaded state with its configuration.
#[derive(Debug, Clone)]
pub struct Resilience {
    pub state: State,
    pub cfg: Config,
    /// The JSON last read or written (to skip writes that change nothing).
    saved: Option<String>,
}

impl Resilience {
    /// A fresh state.
    #[cfg(test)]
    pub fn fresh(settings: &Settings, now: i64) -> Self {
        Resilience { state: State::fresh(now), cfg: Config::from_settings(settings), saved: None }
    }

    /// Read the state. A storage failure is an error (the step cannot know
    /// whether Plex may be called); unreadable contents start fresh.
    pub fn load(host: &dyn Host, settings: &Settings, now: i64) -> Result<Self, QueueError> {
        let cfg = Config::from_settings(settings);
        let Some(text) = host.state_get(STATE_KEY)? else {
            return Ok(Resilience { state: State::fresh(now), cfg, saved: None });
        };
        let parsed = serde_json::from_str::<State>(&text)
            .map_err(|e| clip(&e.to_string(), 200))
            .and_then(|s| if s.v == STATE_VERSION { Ok(s) } else { Err(format!("unknown version {}", s.v)) });
        match parsed {
            Ok(mut state) => {
                state.breaker.sanitise(&cfg.breaker);
                // One drainer at a time, and a trial never outlives its step.
                if let breaker::State::HalfOpen { since, successes, .. } = state.breaker.state {
                    state.breaker.state = breaker::State::HalfOpen { since, in_flight: 0, successes };
                }
                state.outages.sanitise();
                if state.breaker.kind() == Kind::Closed && state.outages.current().is_some() {
                    // The breaker is closed, so the outage is over (the
                    // original showed such records as "ONGOING" forever).
                    state.outages.closed(now);
                }
                Ok(Resilience { state, cfg, saved: Some(text) })
            }
            Err(why) => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "The saved reliability state could not be read ({why}); starting fresh: circuit breaker closed, no outage history. No queued change is affected."
                    ),
                );
                Ok(Resilience { state: State::fresh(now), cfg, saved: None })
            }
        }
    }

    /// The JSON of the state.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.state).unwrap_or_default()
    }

    /// The state write to pass along with a job outcome (marks it saved).
    pub fn write(&mut self) -> Vec<StateWrite> {
        let json = self.to_json();
        self.saved = Some(json.clone());
        vec![StateWrite { key: STATE_KEY.to_string(), value: Some(json) }]
    }

    /// Whether the state differs from what was last read or written.
    pub fn changed(&self) -> bool {
        self.saved.as_deref() != Some(self.to_json().as_str())
    }

    /// Save with `state-set` when something changed (no job involved).
    pub fn save_if_changed(&mut self, host: &dyn Host) -> Result<(), QueueError> {
        if !self.changed() {
            return Ok(());
        }
        let writes = self.write();
        host.state_set(&writes).inspect_err(|_| self.saved = None)
    }

    // ------------------------------------------------------------ time

    /// Time-driven changes: a trial phase that ran too long, ramp steps.
    pub fn tick(&mut self, host: &dyn Host, now: i64) {
        let transitions = self.state.breaker.tick(&self.cfg.breaker, now);
        self.apply(host, now, &transitions);
        for event in self.state.pacer.tick(&self.cfg.ramp, now) {
            self.log_ramp(host, event);
        }
    }

    // ------------------------------------------------------------ jobs

    /// Record a job's exchange with Plex. `failure` is the message of a
    /// breaker-counted failure (the cause if it trips).
    pub fn record(&mut self, host: &dyn Host, now: i64, outcome: Outcome, failure: Option<&str>) -> Vec<Transition> {
        if let Some(message) = failure {
            self.state.last_failure = clip(message, 300);
        }
        let transitions = self.state.breaker.record(&self.cfg.breaker, now, outcome);
        if outcome != Outcome::Ignored
            && let Some(event) = self.state.pacer.record(&self.cfg.ramp, now, outcome == Outcome::Failure)
        {
            self.log_ramp(host, event);
        }
        self.apply(host, now, &transitions);
        transitions
    }

    /// React to transitions: outage record, probe schedule, ramp, log.
    ///
    /// The outage's cause says why the breaker tripped; for failure trips it
    /// also carries the last error (for slow calls there is no error).
    pub fn apply(&mut self, host: &dyn Host, now: i64, transitions: &[Transition]) {
        for t in transitions {
            match *t {
                Transition::Opened { reason, until } => {
                    let cause = outage_cause(reason, &self.state.last_failure);
                    self.state.outages.opened(now, &cause, false);
                    self.state.probes.restart();
                    self.state.pacer.stop_ramp();
                    let last = match reason {
                        TripReason::SlowCallRate(_) => String::new(),
                        _ if self.state.last_failure.is_empty() => String::new(),
                        _ => format!("; last error: {}", self.state.last_failure),
                    };
                    host.log(
                        LogLevel::Warn,
                        &clip(
                            &format!(
                                "Plex is not answering properly ({reason}{last}). Requests to Plex are paused (circuit breaker open); nothing is lost: changes wait in the queue. Checking Plex again in {}.",
                                duration_text(until.saturating_sub(now))
                            ),
                            1_000,
                        ),
                    );
                }
                Transition::Reopened { reason, until } => {
                    let cause = outage_cause(reason, &self.state.last_failure);
                    self.state.outages.opened(now, &cause, false);
                    self.state.probes.restart();
                    self.state.pacer.stop_ramp();
                    host.log(
                        LogLevel::Warn,
                        &format!(
                            "Plex failed again while recovering ({reason}); requests stay paused and Plex is checked again in {} (circuit breaker open).",
                            duration_text(until.saturating_sub(now))
                        ),
                    );
                }
                Transition::HalfOpened => {
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "Plex answers again; trying up to {} change(s) before resuming fully (circuit breaker half-open).",
                            self.cfg.breaker.half_open_trials
                        ),
                    );
                }
                Transition::Closed => {
                    let took = self.state.outages.closed(now).map(|o| o.duration_ms(now)).unwrap_or(0);
                    let event = self.state.pacer.start_ramp(&self.cfg.ramp, now);
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "Plex has recovered after {} of trouble; syncing resumes at {} and speeds up to {} (circuit breaker closed).",
                            duration_text(took),
                            ramp_rate(event),
                            recovery::rate_text(self.cfg.ramp.target_milli)
                        ),
                    );
                }
                Transition::ForcedOpen { until } => {
                    self.state.outages.opened(now, "opened by hand (breaker_open task)", true);
                    self.state.pacer.stop_ramp();
                    host.log(
                        LogLevel::Warn,
                        &format!(
                            "Circuit breaker opened by hand until {}: nothing is sent to Plex until then; changes wait in the queue.",
                            utc_text(until)
                        ),
                    );
                }
                Transition::ForcedClosed => {
                    self.state.outages.closed(now);
                    let event = self.state.pacer.start_ramp(&self.cfg.ramp, now);
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "Circuit breaker closed by hand; syncing resumes at {} and speeds up to {}.",
                            ramp_rate(event),
                            recovery::rate_text(self.cfg.ramp.target_milli)
                        ),
                    );
                }
                Transition::Reset => {
                    self.state.outages.closed(now);
                    self.state.probes = Probes::default();
                    self.state.pacer = Pacer::default();
                    self.state.budget = Budget::default();
                    self.state.auth = None;
                    self.state.last_failure.clear();
                    host.log(
                        LogLevel::Info,
                        "Circuit breaker reset: closed, with its counters, the probe schedule, the ramp, the retry budget and any token pause cleared.",
                    );
                }
            }
        }
    }

    fn log_ramp(&self, host: &dyn Host, event: RampEvent) {
        match event {
            RampEvent::Halved { rate_milli, failed, of } => host.log(
                LogLevel::Warn,
                &format!(
                    "Errors are back while recovering ({failed} of the last {of} changes failed); slowing down to {}.",
                    recovery::rate_text(rate_milli)
                ),
            ),
            RampEvent::Finished => host.log(
                LogLevel::Info,
                &format!(
                    "Recovery complete: back to full speed ({}).",
                    recovery::rate_text(self.cfg.ramp.target_milli)
                ),
            ),
            RampEvent::Raised { rate_milli } => {
                host.log(LogLevel::Debug, &format!("Recovery ramp: now {}.", recovery::rate_text(rate_milli)))
            }
            RampEvent::Started { .. } => {}
        }
    }

    // ------------------------------------------------------------ probes

    /// A health probe answered.
    pub fn probe_ok(&mut self, host: &dyn Host, now: i64, detail: String) -> Vec<Transition> {
        self.state.probes.succeeded_at(now, detail);
        let transitions = self.state.breaker.probe_succeeded(&self.cfg.breaker, now);
        self.apply(host, now, &transitions);
        transitions
    }

    /// A health probe failed: the next one is scheduled (and the breaker
    /// stays open until then). Returns the next probe time.
    pub fn probe_failed(&mut self, now: i64, random: u64, detail: String, retry_after_ms: Option<u64>) -> i64 {
        let age = self.state.outages.current().map_or(0, |o| now.saturating_sub(o.start_ms));
        let mut next = self.state.probes.failed_at(&self.cfg.probes, now, age, random, detail);
        if let Some(ra) = retry_after_ms {
            next = next.max(now.saturating_add(i64::try_from(ra).unwrap_or(0)));
        }
        self.state.breaker.extend_open(next);
        next
    }

    // ------------------------------------------------------------ budget

    /// A job is about to be attempted: `true` if it may go (first attempts
    /// always may; retries take from the budget).
    pub fn budget_allows(&mut self, retry: bool, now: i64) -> bool {
        if retry {
            self.state.budget.try_retry(self.cfg.budget_percent, now)
        } else {
            self.state.budget.record_first(now);
            true
        }
    }

    // ------------------------------------------------------------ credentials

    /// Start (or keep) the credential pause; `true` if it just started.
    pub fn pause_for_auth(&mut self, now: i64, status: u16, message: &str) -> bool {
        let next = now.saturating_add(AUTH_PAUSE_MS as i64);
        match &mut self.state.auth {
            Some(p) => {
                p.next_check_ms = next;
                p.status = status;
                p.checks = p.checks.saturating_add(1);
                false
            }
            None => {
                self.state.auth = Some(AuthPause {
                    since_ms: now,
                    next_check_ms: next,
                    status,
                    checks: 0,
                    message: clip(message, 300),
                });
                true
            }
        }
    }

    /// Plex accepted the token again.
    pub fn auth_ok(&mut self, host: &dyn Host, now: i64) {
        if let Some(p) = self.state.auth.take() {
            host.log(
                LogLevel::Info,
                &format!(
                    "Plex accepts the token again; syncing resumes (it was paused for {}).",
                    duration_text(now.saturating_sub(p.since_ms))
                ),
            );
        }
    }

    // ------------------------------------------------------------ manual

    /// `breaker_open`: open until `until`.
    pub fn force_open(&mut self, host: &dyn Host, now: i64, until: i64) {
        let t = self.state.breaker.force_open(&self.cfg.breaker, now, until);
        self.apply(host, now, &t);
    }

    /// `breaker_close`.
    pub fn force_close(&mut self, host: &dyn Host, now: i64) -> bool {
        let t = self.state.breaker.force_close(&self.cfg.breaker, now);
        self.apply(host, now, &t);
        !t.is_empty()
    }

    /// `breaker_reset`.
    pub fn reset(&mut self, host: &dyn Host, now: i64) {
        let t = self.state.breaker.reset();
        self.apply(host, now, &t);
    }

    // ------------------------------------------------------------ reports

    /// How syncing stands, in one word.
    pub fn condition(&self, now: i64) -> Condition {
        if self.state.auth.is_some() {
            return Condition::PlexTokenRejected;
        }
        match self.state.breaker.state {
            breaker::State::Open { forced: true, until, .. } if now < until => Condition::PausedByUser,
            breaker::State::Open { .. } => Condition::PlexUnavailable,
            breaker::State::HalfOpen { .. } => Condition::Recovering,
            breaker::State::Closed if self.state.pacer.ramp.is_some() => Condition::Recovering,
            breaker::State::Closed => Condition::Healthy,
        }
    }

    /// The compact status (`status`: its first line is the summary, the
    /// rest goes under the host's queue status).
    pub fn status(&self, now: i64, counts: Option<&QueueCounts>) -> String {
        let s = &self.state;
        let mut out = String::new();
        let (calls, failures, slow) = s.breaker.window_counts();
        match s.breaker.state {
            breaker::State::Closed => {
                let _ = writeln!(
                    out,
                    "Plex connection: healthy (circuit breaker closed; {failures} failed and {slow} slow of the last {calls} calls, {} failure(s) in a row)",
                    s.breaker.consecutive_failures
                );
            }
            breaker::State::Open { since, until, forced } => {
                let why = if forced { "opened by hand" } else { "Plex is unavailable" };
                let _ = write!(
                    out,
                    "Plex connection: PAUSED, {why} (circuit breaker open since {}, {}); next check of Plex in {}",
                    utc_text(since),
                    duration_text(now.saturating_sub(since)),
                    duration_text(until.saturating_sub(now))
                );
                if s.probes.failed > 0 {
                    let _ = write!(
                        out,
                        " ({} failed check(s) so far, last: {})",
                        s.probes.failed,
                        clip(&s.probes.last_detail, 120)
                    );
                }
                out.push('\n');
            }
            breaker::State::HalfOpen { since, successes, .. } => {
                let _ = writeln!(
                    out,
                    "Plex connection: recovering (circuit breaker half-open since {}): {successes} of {} trial change(s) succeeded",
                    utc_text(since),
                    self.cfg.breaker.half_open_trials
                );
            }
        }
        if let Some(p) = &s.auth {
            let _ = writeln!(
                out,
                "Plex token: REJECTED (HTTP {}) since {}; syncing is paused, next check in {}. Check plex_token in the plugin settings.",
                p.status,
                utc_text(p.since_ms),
                duration_text(p.next_check_ms.saturating_sub(now))
            );
        }
        match &s.pacer.ramp {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "Request rate: {} (ramping up to {} after a recovery, started {} ago)",
                    recovery::rate_text(s.pacer.rate_milli(&self.cfg.ramp).unwrap_or(self.cfg.ramp.target_milli)),
                    recovery::rate_text(self.cfg.ramp.target_milli),
                    duration_text(now.saturating_sub(r.started_at))
                );
            }
            None => {
                let _ = match self.cfg.ramp.steady_milli {
                    0 => writeln!(out, "Request rate: one request at a time, no fixed cap (max_rps)"),
                    cap => writeln!(out, "Request rate: up to {} (max_rps)", recovery::rate_text(cap)),
                };
            }
        }
        let (first, retries) = s.budget.totals(now);
        let _ = writeln!(
            out,
            "Retry budget: {} of {} retries left this minute ({first} first attempts, {retries} retries; {} % + {} per minute)",
            s.budget.remaining(self.cfg.budget_percent, now),
            s.budget.allowance(self.cfg.budget_percent, now),
            self.cfg.budget_percent,
            budget::FLOOR
        );
        let m = s.outages.metrics(now, 30 * DAY_MS, s.since_ms);
        let _ = writeln!(out, "Outages (30 days): {}", outage::metrics_line(&m));
        if let Some(c) = counts {
            let _ = write!(
                out,
                "Queue: {} due, {} waiting to retry, {} running, {} dead-lettered",
                c.ready, c.waiting, c.running, c.dead
            );
            if let Some(next) = c.next_due_ms {
                let _ = write!(out, "; next retry in {}", duration_text(next.saturating_sub(now)));
            }
            out.push('\n');
        }
        out.trim_end().to_string()
    }
}

fn ramp_rate(event: RampEvent) -> String {
    match event {
        RampEvent::Started { rate_milli } => recovery::rate_text(rate_milli),
        _ => String::new(),
    }
}

/// Changes still to sync (for messages).
pub fn pending(counts: &QueueCounts) -> u64 {
    counts.ready + counts.waiting + counts.running
}

/// What an outage record says caused it.
fn outage_cause(reason: TripReason, last_failure: &str) -> String {
    match reason {
        TripReason::SlowCallRate(_) => format!("Plex answered too slowly ({reason})"),
        _ if last_failure.is_empty() => reason.to_string(),
        _ => last_failure.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeHost;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn round_trip_through_the_host() {
        let host = FakeHost::new();
        let settings = Settings::default();
        let mut r = Resilience::load(&host, &settings, T0).unwrap();
        assert_eq!(r.state, State::fresh(T0));
        assert!(r.changed());
        for _ in 0..5 {
            r.record(&host, T0, Outcome::Failure, Some("connection refused"));
        }
        assert!(r.state.breaker.is_open());
        r.save_if_changed(&host).unwrap();
        assert!(!r.changed());
        let back = Resilience::load(&host, &settings, T0 + 1).unwrap();
        assert_eq!(back.state, r.state);
        assert_eq!(back.state.outages.current().unwrap().cause, "connection refused");
        assert!(host.logged("Plex is not answering properly (5 failures in a row; last error: connection refused)"));
    }

    #[test]
    fn corrupt_or_unknown_state_starts_fresh_with_a_warning() {
        let settings = Settings::default();
        for bad in ["{not json", r#"{"v":99,"since_ms":1}"#, r#"{"v":1,"since_ms":1,"breaker":{"state":"ajar"}}"#, "[]"]
        {
            let host = FakeHost::new();
            host.state_set(&[StateWrite { key: STATE_KEY.into(), value: Some(bad.into()) }]).unwrap();
            let r = Resilience::load(&host, &settings, T0).unwrap();
            assert_eq!(r.state, State::fresh(T0), "{bad}");
            assert!(host.logs().iter().any(|(l, m)| *l == LogLevel::Warn && m.contains("starting fresh")), "{bad}");
        }
    }

    #[test]
    fn a_closed_breaker_closes_a_dangling_outage_and_trials_do_not_survive_a_step() {
        let host = FakeHost::new();
        let settings = Settings::default();
        let mut state = State::fresh(T0);
        state.outages.opened(T0, "x", false);
        state.breaker.state = breaker::State::Closed;
        let json = serde_json::to_string(&state).unwrap();
        host.state_set(&[StateWrite { key: STATE_KEY.into(), value: Some(json) }]).unwrap();
        let r = Resilience::load(&host, &settings, T0 + 5).unwrap();
        assert_eq!(r.state.outages.outages[0].end_ms, Some(T0 + 5));

        state.breaker.state = breaker::State::HalfOpen { since: T0, in_flight: 2, successes: 1 };
        let json = serde_json::to_string(&state).unwrap();
        host.state_set(&[StateWrite { key: STATE_KEY.into(), value: Some(json) }]).unwrap();
        let r = Resilience::load(&host, &settings, T0 + 5).unwrap();
        assert_eq!(r.state.breaker.state, breaker::State::HalfOpen { since: T0, in_flight: 0, successes: 1 });
    }

    #[test]
    fn recovery_closes_the_outage_and_starts_the_ramp() {
        let host = FakeHost::new();
        let mut r = Resilience::fresh(&Settings::default(), T0);
        for _ in 0..5 {
            r.record(&host, T0, Outcome::Failure, Some("503"));
        }
        // 30 s into the outage: probes 4 s apart (the top of the jitter).
        let next = r.probe_failed(T0 + 30_000, u64::MAX, "refused".into(), None);
        assert_eq!(next, T0 + 34_000);
        assert_eq!(r.state.breaker.open_until(), Some(T0 + 34_000));
        // A Retry-After longer than the probe interval wins.
        let next = r.probe_failed(T0 + 35_000, 0, "503".into(), Some(120_000));
        assert_eq!(next, T0 + 155_000);
        assert_eq!(r.probe_ok(&host, T0 + 155_000, "200".into()), vec![Transition::HalfOpened]);
        for _ in 0..3 {
            r.state.breaker.permit(&r.cfg.breaker, T0 + 156_000);
            r.record(&host, T0 + 156_000, Outcome::Success { elapsed_ms: 5 }, None);
        }
        assert_eq!(r.state.breaker.kind(), Kind::Closed);
        let o = &r.state.outages.outages[0];
        assert_eq!((o.start_ms, o.end_ms), (T0, Some(T0 + 156_000)));
        assert_eq!(r.state.pacer.rate_milli(&r.cfg.ramp), Some(1_000));
        assert!(
            host.logged("Plex has recovered after 2m 36s of trouble; syncing resumes at 1/s and speeds up to 20/s")
        );
        let status = r.status(T0 + 157_000, None);
        assert!(status.contains("Request rate: 1/s (ramping up to 20/s"), "{status}");
        assert!(status.contains("Outages (30 days): 1 outage(s)"), "{status}");
    }

    #[test]
    fn manual_controls() {
        let host = FakeHost::new();
        let mut r = Resilience::fresh(&Settings::default(), T0);
        r.force_open(&host, T0, T0 + 3_600_000);
        assert!(r.state.breaker.is_open());
        assert!(r.state.outages.current().unwrap().manual);
        assert!(r.status(T0 + 1, None).contains("PAUSED, opened by hand"));
        assert!(r.force_close(&host, T0 + 60_000));
        assert!(!r.force_close(&host, T0 + 60_001));
        assert_eq!(r.state.outages.outages[0].end_ms, Some(T0 + 60_000));
        r.pause_for_auth(T0, 401, "x");
        r.reset(&host, T0 + 70_000);
        assert_eq!(r.state.auth, None);
        assert_eq!(r.state.pacer, Pacer::default());
        assert!(host.logged("Circuit breaker reset"));
    }

    #[test]
    fn the_auth_pause_starts_once_and_is_pushed_back() {
        let host = FakeHost::new();
        let mut r = Resilience::fresh(&Settings::default(), T0);
        assert!(r.pause_for_auth(T0, 401, "Plex rejected the token"));
        assert!(!r.pause_for_auth(T0 + 300_000, 401, "again"));
        let p = r.state.auth.clone().unwrap();
        assert_eq!((p.since_ms, p.next_check_ms, p.checks), (T0, T0 + 600_000, 1));
        r.auth_ok(&host, T0 + 600_000);
        assert!(r.state.auth.is_none());
        assert!(host.logged("Plex accepts the token again; syncing resumes (it was paused for 10m 0s)"));
    }
}
