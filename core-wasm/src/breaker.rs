//! The circuit breaker: a pure state machine driven by the caller's clock.
//!
//! States: **Closed** (requests flow), **Open** (no requests to Plex until
//! `until`; only the health probe of `recovery` runs), **HalfOpen** (a few
//! trial jobs may run). Every call takes `now` and returns the
//! [`Transition`]s it caused, so the outage history and the log react to an
//! explicit event instead of diffing state.
//!
//! | from | to | when |
//! |---|---|---|
//! | Closed | Open | `failure_threshold` failures in a row (default 5); or, once the window of the last `window` calls (20) holds at least `min_calls` (10), failures ≥ `failure_rate` % (50) or slow successes ≥ `slow_call_rate` % (80) |
//! | Open | HalfOpen | the health probe succeeded (or, without a probe, `permit` at or after `until`) |
//! | HalfOpen | Closed | `half_open_trials` trials (3) all succeeded |
//! | HalfOpen | Open | a trial failed, or a trial was still unreported after `half_open_max_wait` (120 s) |
//! | HalfOpen | Closed | `half_open_max_wait` passed with no trial failed and none outstanding (no traffic to judge: the probe passed and nothing failed) |
//! | any | Open / Closed | manual `force_open`, `force_close`, `reset` |
//!
//! A call is one job's exchange with Plex: a **failure** if it failed with a
//! breaker-counted class, a **success** otherwise if Plex answered, and
//! **slow** if a response took at least `slow_call_ms` (10 000 ms: Plex's
//! "busy database"); a slow success is counted as slow, not as a failure.
//! Not-found, ambiguous, bad-request and credential answers are
//! [`Outcome::Ignored`] and never change anything (the token has its own
//! pause).
//!
//! Open duration: `open_base` (4 s) × 2 per consecutive trip (a trip from
//! HalfOpen without a close in between), capped at `open_max` (10 min), back
//! to the base after a close. Entering Open clears the window, so the
//! statistics after a recovery start fresh.

use serde::{Deserialize, Serialize};

/// The breaker's knobs (from the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub failure_rate_pct: u32,
    pub window: u32,
    pub min_calls: u32,
    pub slow_call_ms: u32,
    pub slow_call_rate_pct: u32,
    pub half_open_trials: u32,
    pub half_open_max_wait_ms: i64,
    pub open_base_ms: i64,
    pub open_max_ms: i64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            failure_rate_pct: 50,
            window: 20,
            min_calls: 10,
            slow_call_ms: 10_000,
            slow_call_rate_pct: 80,
            half_open_trials: 3,
            half_open_max_wait_ms: 120_000,
            open_base_ms: 4_000,
            open_max_ms: 600_000,
        }
    }
}

impl BreakerConfig {
    /// How long the `trips`-th consecutive trip stays open.
    pub fn open_duration_ms(&self, trips: u32) -> i64 {
        let doublings = trips.saturating_sub(1).min(40);
        self.open_base_ms.saturating_mul(1i64 << doublings).min(self.open_max_ms).max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum State {
    Closed,
    Open {
        since: i64,
        /// No requests before this time; the next health probe is due then.
        until: i64,
        /// Opened by hand (`breaker_open` task): no probe before `until`.
        #[serde(default)]
        forced: bool,
    },
    HalfOpen {
        since: i64,
        /// Trials permitted and not yet recorded.
        in_flight: u32,
        successes: u32,
    },
}

/// The three state kinds, for reports and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn kind(&self) -> Kind {
        match self {
            State::Closed => Kind::Closed,
            State::Open { .. } => Kind::Open,
            State::HalfOpen { .. } => Kind::HalfOpen,
        }
    }
}

/// Why the breaker opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripReason {
    ConsecutiveFailures(u32),
    /// Failure rate in percent over the window.
    FailureRate(u32),
    /// Slow-call rate in percent over the window.
    SlowCallRate(u32),
    TrialFailed,
    HalfOpenTimeout,
}

impl std::fmt::Display for TripReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TripReason::ConsecutiveFailures(n) => write!(f, "{n} failures in a row"),
            TripReason::FailureRate(p) => write!(f, "{p} % of recent requests failed"),
            TripReason::SlowCallRate(p) => write!(f, "{p} % of recent requests were slow"),
            TripReason::TrialFailed => write!(f, "a trial request failed"),
            TripReason::HalfOpenTimeout => write!(f, "the trial requests did not finish in time"),
        }
    }
}

/// A state change, as reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed → Open.
    Opened { reason: TripReason, until: i64 },
    /// Open → HalfOpen.
    HalfOpened,
    /// HalfOpen → Closed.
    Closed,
    /// HalfOpen → Open.
    Reopened { reason: TripReason, until: i64 },
    /// Manual: any → Open.
    ForcedOpen { until: i64 },
    /// Manual: any → Closed.
    ForcedClosed,
    /// Manual: any → Closed with every counter cleared.
    Reset,
}

impl Transition {
    /// The state kinds this transition may leave (`None` = any) and enter
    /// (the property tests check every transition against it).
    #[cfg(test)]
    pub fn edge(&self) -> (Option<Kind>, Kind) {
        match self {
            Transition::Opened { .. } => (Some(Kind::Closed), Kind::Open),
            Transition::HalfOpened => (Some(Kind::Open), Kind::HalfOpen),
            Transition::Closed => (Some(Kind::HalfOpen), Kind::Closed),
            Transition::Reopened { .. } => (Some(Kind::HalfOpen), Kind::Open),
            Transition::ForcedOpen { .. } => (None, Kind::Open),
            Transition::ForcedClosed | Transition::Reset => (None, Kind::Closed),
        }
    }
}

/// Whether a request may go to Plex now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: go ahead.
    Allow,
    /// HalfOpen: go ahead as one of the trials; record its outcome.
    Trial,
    /// Not now; ask again at `until`.
    Reject { until: i64 },
}

/// How a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Plex answered; the slowest response took `elapsed_ms`.
    Success { elapsed_ms: u32 },
    /// A breaker-counted failure.
    Failure,
    /// Says nothing about Plex's health.
    Ignored,
}

const OK: char = 'o';
const SLOW: char = 's';
const FAIL: char = 'f';

/// The breaker's persistent state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    #[serde(flatten)]
    pub state: State,
    /// Failures in a row (Closed).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The last calls, oldest first: `o` ok, `s` slow, `f` failed.
    #[serde(default)]
    pub window: String,
    /// Trips since the last close (sets the open duration).
    #[serde(default)]
    pub trips: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: State::Closed, consecutive_failures: 0, window: String::new(), trips: 0 }
    }
}

impl Breaker {
    pub fn kind(&self) -> Kind {
        self.state.kind()
    }

    pub fn is_open(&self) -> bool {
        self.kind() == Kind::Open
    }

    /// `until` while Open.
    pub fn open_until(&self) -> Option<i64> {
        match self.state {
            State::Open { until, .. } => Some(until),
            _ => None,
        }
    }

    /// Drop window entries that are not calls and trim it to the configured
    /// size (after loading, or when the setting changed).
    pub fn sanitise(&mut self, cfg: &BreakerConfig) {
        self.window.retain(|c| c == OK || c == SLOW || c == FAIL);
        let n = self.window.chars().count();
        let keep = cfg.window.max(1) as usize;
        if n > keep {
            self.window = self.window.chars().skip(n - keep).collect();
        }
        if let State::HalfOpen { in_flight, successes, .. } = &mut self.state {
            *successes = (*successes).min(cfg.half_open_trials);
            *in_flight = (*in_flight).min(cfg.half_open_trials - *successes);
        }
    }

    /// (calls, failures, slow) in the window.
    pub fn window_counts(&self) -> (u32, u32, u32) {
        self.window.chars().fold((0, 0, 0), |(n, f, s), c| (n + 1, f + u32::from(c == FAIL), s + u32::from(c == SLOW)))
    }

    fn push(&mut self, cfg: &BreakerConfig, c: char) {
        self.window.push(c);
        let n = self.window.chars().count();
        let keep = cfg.window.max(1) as usize;
        if n > keep {
            self.window = self.window.chars().skip(n - keep).collect();
        }
    }

    fn open(&mut self, cfg: &BreakerConfig, now: i64) -> i64 {
        self.trips = self.trips.saturating_add(1);
        let until = now.saturating_add(cfg.open_duration_ms(self.trips));
        self.state = State::Open { since: now, until, forced: false };
        self.window.clear();
        self.consecutive_failures = 0;
        until
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.trips = 0;
        self.window.clear();
        self.consecutive_failures = 0;
    }

    /// Time-driven transitions: HalfOpen for longer than the maximum wait
    /// ends. With a trial still unreported (a hung call) it goes back to
    /// Open with a grown duration; with none outstanding (no trial failed,
    /// there was just no traffic to judge, e.g. only changes Plex has not
    /// scanned yet) it closes, so a healthy Plex is not held in a phantom
    /// outage. Every other method calls this first.
    pub fn tick(&mut self, cfg: &BreakerConfig, now: i64) -> Vec<Transition> {
        if let State::HalfOpen { since, in_flight, .. } = self.state
            && now.saturating_sub(since) > cfg.half_open_max_wait_ms
        {
            if in_flight > 0 {
                let until = self.open(cfg, now);
                return vec![Transition::Reopened { reason: TripReason::HalfOpenTimeout, until }];
            }
            self.close();
            return vec![Transition::Closed];
        }
        Vec::new()
    }

    /// May a request go now? A `Trial` must be followed by a `record`.
    pub fn permit(&mut self, cfg: &BreakerConfig, now: i64) -> (Permit, Vec<Transition>) {
        let mut transitions = self.tick(cfg, now);
        let permit = match self.state {
            State::Closed => Permit::Allow,
            State::Open { until, .. } if now >= until => {
                self.state = State::HalfOpen { since: now, in_flight: 1, successes: 0 };
                transitions.push(Transition::HalfOpened);
                Permit::Trial
            }
            State::Open { until, .. } => Permit::Reject { until },
            State::HalfOpen { since, in_flight, successes } => {
                if in_flight.saturating_add(successes) < cfg.half_open_trials {
                    self.state = State::HalfOpen { since, in_flight: in_flight + 1, successes };
                    Permit::Trial
                } else {
                    Permit::Reject { until: since.saturating_add(cfg.half_open_max_wait_ms).saturating_add(1) }
                }
            }
        };
        (permit, transitions)
    }

    /// Record how a call went.
    pub fn record(&mut self, cfg: &BreakerConfig, now: i64, outcome: Outcome) -> Vec<Transition> {
        let mut transitions = self.tick(cfg, now);
        match (self.state, outcome) {
            (_, Outcome::Ignored) => {
                if let State::HalfOpen { since, in_flight, successes } = self.state {
                    self.state = State::HalfOpen { since, in_flight: in_flight.saturating_sub(1), successes };
                }
            }
            (State::Closed, Outcome::Success { elapsed_ms }) => {
                self.consecutive_failures = 0;
                self.push(cfg, if elapsed_ms >= cfg.slow_call_ms { SLOW } else { OK });
                let (calls, _, slow) = self.window_counts();
                if calls >= cfg.min_calls && slow * 100 >= cfg.slow_call_rate_pct * calls {
                    let pct = slow * 100 / calls.max(1);
                    let until = self.open(cfg, now);
                    transitions.push(Transition::Opened { reason: TripReason::SlowCallRate(pct), until });
                }
            }
            (State::Closed, Outcome::Failure) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.push(cfg, FAIL);
                let (calls, failures, _) = self.window_counts();
                let reason = if self.consecutive_failures >= cfg.failure_threshold {
                    Some(TripReason::ConsecutiveFailures(self.consecutive_failures))
                } else if calls >= cfg.min_calls && failures * 100 >= cfg.failure_rate_pct * calls {
                    Some(TripReason::FailureRate(failures * 100 / calls.max(1)))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let until = self.open(cfg, now);
                    transitions.push(Transition::Opened { reason, until });
                }
            }
            (State::HalfOpen { since, in_flight, successes }, Outcome::Success { .. }) => {
                let successes = successes + 1;
                if successes >= cfg.half_open_trials {
                    self.close();
                    transitions.push(Transition::Closed);
                } else {
                    self.state = State::HalfOpen { since, in_flight: in_flight.saturating_sub(1), successes };
                }
            }
            (State::HalfOpen { .. }, Outcome::Failure) => {
                let until = self.open(cfg, now);
                transitions.push(Transition::Reopened { reason: TripReason::TrialFailed, until });
            }
            // A late outcome while Open changes nothing.
            (State::Open { .. }, _) => {}
        }
        transitions
    }

    /// The health probe answered: Open → HalfOpen (trials may run).
    pub fn probe_succeeded(&mut self, cfg: &BreakerConfig, now: i64) -> Vec<Transition> {
        let mut transitions = self.tick(cfg, now);
        if self.is_open() {
            self.state = State::HalfOpen { since: now, in_flight: 0, successes: 0 };
            transitions.push(Transition::HalfOpened);
        }
        transitions
    }

    /// Stay Open at least until `until` (the next probe, a `Retry-After`).
    pub fn extend_open(&mut self, until: i64) {
        if let State::Open { since, until: current, forced } = self.state {
            self.state = State::Open { since, until: current.max(until), forced };
        }
    }

    /// Manual open until `until`.
    pub fn force_open(&mut self, cfg: &BreakerConfig, now: i64, until: i64) -> Vec<Transition> {
        let mut transitions = self.tick(cfg, now);
        let since = match self.state {
            State::Open { since, .. } => since,
            _ => now,
        };
        self.state = State::Open { since, until: until.max(now), forced: true };
        transitions.push(Transition::ForcedOpen { until: until.max(now) });
        transitions
    }

    /// Manual close (counters cleared, open duration back to the base).
    pub fn force_close(&mut self, cfg: &BreakerConfig, now: i64) -> Vec<Transition> {
        let mut transitions = self.tick(cfg, now);
        if self.kind() != Kind::Closed {
            self.close();
            transitions.push(Transition::ForcedClosed);
        }
        transitions
    }

    /// Manual reset: Closed with everything cleared.
    pub fn reset(&mut self) -> Vec<Transition> {
        *self = Breaker::default();
        vec![Transition::Reset]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_000_000;

    /// The defaults, with a 30 s first open duration (easier to read in
    /// the traces below than the default 4 s).
    fn cfg() -> BreakerConfig {
        BreakerConfig { open_base_ms: 30_000, ..BreakerConfig::default() }
    }

    fn ok() -> Outcome {
        Outcome::Success { elapsed_ms: 20 }
    }

    fn fail(b: &mut Breaker, now: i64, n: u32) -> Vec<Transition> {
        let mut all = Vec::new();
        for _ in 0..n {
            all.extend(b.record(&cfg(), now, Outcome::Failure));
        }
        all
    }

    #[test]
    fn closed_to_open_after_consecutive_failures() {
        let mut b = Breaker::default();
        assert!(fail(&mut b, T0, 4).is_empty());
        assert_eq!(b.consecutive_failures, 4);
        // A success resets the run.
        assert!(b.record(&cfg(), T0, ok()).is_empty());
        assert!(fail(&mut b, T0, 4).is_empty());
        let t = fail(&mut b, T0, 1);
        assert_eq!(t, vec![Transition::Opened { reason: TripReason::ConsecutiveFailures(5), until: T0 + 30_000 }]);
        assert_eq!(b.state, State::Open { since: T0, until: T0 + 30_000, forced: false });
        assert_eq!(b.permit(&cfg(), T0 + 29_999), (Permit::Reject { until: T0 + 30_000 }, vec![]));
    }

    #[test]
    fn closed_to_open_on_failure_rate_after_min_calls() {
        let mut b = Breaker::default();
        // Alternate: never 5 in a row, but 50 % of the window.
        for i in 0..9 {
            let out = if i % 2 == 0 { Outcome::Failure } else { ok() };
            assert!(b.record(&cfg(), T0, out).is_empty(), "call {i}");
        }
        // 9 calls (5 failures): below min_calls. The 10th call makes 10 calls.
        let t = b.record(&cfg(), T0, ok());
        assert!(t.is_empty(), "5/10 but the 10th was a success: rate is judged on failures only");
        let t = b.record(&cfg(), T0, Outcome::Failure);
        assert_eq!(t, vec![Transition::Opened { reason: TripReason::FailureRate(54), until: T0 + 30_000 }]);
    }

    #[test]
    fn slow_successes_trip_the_breaker_and_are_not_failures() {
        let mut b = Breaker::default();
        let slow = Outcome::Success { elapsed_ms: 10_000 };
        for _ in 0..2 {
            b.record(&cfg(), T0, ok());
        }
        for _ in 0..7 {
            assert!(b.record(&cfg(), T0, slow).is_empty());
        }
        assert_eq!(b.consecutive_failures, 0);
        assert_eq!(b.window_counts(), (9, 0, 7));
        // 8 slow of 10 = 80 %.
        let t = b.record(&cfg(), T0, slow);
        assert_eq!(t, vec![Transition::Opened { reason: TripReason::SlowCallRate(80), until: T0 + 30_000 }]);
        assert!(b.window.is_empty(), "opening clears the window");
    }

    #[test]
    fn window_keeps_the_last_calls() {
        let mut b = Breaker::default();
        for _ in 0..30 {
            b.record(&cfg(), T0, ok());
        }
        assert_eq!(b.window_counts(), (20, 0, 0));
    }

    #[test]
    fn open_to_half_open_to_closed() {
        let mut b = Breaker::default();
        fail(&mut b, T0, 5);
        // The probe decides.
        assert_eq!(b.probe_succeeded(&cfg(), T0 + 30_000), vec![Transition::HalfOpened]);
        assert_eq!(b.state, State::HalfOpen { since: T0 + 30_000, in_flight: 0, successes: 0 });
        let now = T0 + 30_000;
        for _ in 0..3 {
            assert_eq!(b.permit(&cfg(), now).0, Permit::Trial);
        }
        // Never more than 3 trials at once.
        assert!(matches!(b.permit(&cfg(), now).0, Permit::Reject { .. }));
        assert!(b.record(&cfg(), now, ok()).is_empty());
        assert!(b.record(&cfg(), now, ok()).is_empty());
        assert!(matches!(b.permit(&cfg(), now).0, Permit::Reject { .. }), "2 done + 1 in flight = 3");
        assert_eq!(b.record(&cfg(), now, ok()), vec![Transition::Closed]);
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn open_to_half_open_lazily_without_a_probe() {
        let mut b = Breaker::default();
        fail(&mut b, T0, 5);
        let (p, t) = b.permit(&cfg(), T0 + 30_000);
        assert_eq!((p, t), (Permit::Trial, vec![Transition::HalfOpened]));
        assert_eq!(b.state, State::HalfOpen { since: T0 + 30_000, in_flight: 1, successes: 0 });
    }

    #[test]
    fn half_open_to_open_on_a_failed_trial_with_a_longer_open_duration() {
        let mut b = Breaker::default();
        fail(&mut b, T0, 5);
        b.probe_succeeded(&cfg(), T0 + 30_000);
        b.permit(&cfg(), T0 + 30_000);
        let t = b.record(&cfg(), T0 + 31_000, Outcome::Failure);
        assert_eq!(t, vec![Transition::Reopened { reason: TripReason::TrialFailed, until: T0 + 31_000 + 60_000 }]);
        assert_eq!(b.trips, 2);
        // Again: 120 s, 240 s, 480 s, then the 600 s cap.
        let mut now = T0 + 91_000;
        for want in [120_000, 240_000, 480_000, 600_000, 600_000] {
            b.probe_succeeded(&cfg(), now);
            b.permit(&cfg(), now);
            let t = b.record(&cfg(), now, Outcome::Failure);
            assert_eq!(t, vec![Transition::Reopened { reason: TripReason::TrialFailed, until: now + want }]);
            now += want;
        }
        // A close resets it to the base.
        b.probe_succeeded(&cfg(), now);
        for _ in 0..3 {
            b.permit(&cfg(), now);
            b.record(&cfg(), now, ok());
        }
        assert_eq!(b.kind(), Kind::Closed);
        let t = fail(&mut b, now, 5);
        assert_eq!(t, vec![Transition::Opened { reason: TripReason::ConsecutiveFailures(5), until: now + 30_000 }]);
    }

    #[test]
    fn half_open_times_out_back_to_open() {
        let mut b = Breaker::default();
        fail(&mut b, T0, 5);
        b.probe_succeeded(&cfg(), T0 + 30_000);
        b.permit(&cfg(), T0 + 30_000);
        assert!(b.tick(&cfg(), T0 + 150_000).is_empty(), "exactly the max wait is allowed");
        let t = b.tick(&cfg(), T0 + 150_001);
        assert_eq!(t, vec![Transition::Reopened { reason: TripReason::HalfOpenTimeout, until: T0 + 150_001 + 60_000 }]);
    }

    #[test]
    fn half_open_without_traffic_closes_after_the_max_wait() {
        let mut b = Breaker::default();
        fail(&mut b, T0, 5);
        b.probe_succeeded(&cfg(), T0 + 30_000);
        // One trial succeeded, one was not a Plex call (not in Plex yet).
        b.permit(&cfg(), T0 + 30_000);
        b.record(&cfg(), T0 + 30_000, ok());
        b.permit(&cfg(), T0 + 31_000);
        b.record(&cfg(), T0 + 31_000, Outcome::Ignored);
        let (p, t) = b.permit(&cfg(), T0 + 150_001);
        assert_eq!((p, t), (Permit::Allow, vec![Transition::Closed]));
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn ignored_outcomes_change_nothing_but_free_a_trial_slot() {
        let mut b = Breaker::default();
        fail(&mut b, T0, 3);
        let before = b.clone();
        for _ in 0..100 {
            assert!(b.record(&cfg(), T0, Outcome::Ignored).is_empty());
        }
        assert_eq!(b, before);
        fail(&mut b, T0, 2);
        let open = b.clone();
        assert!(b.record(&cfg(), T0 + 1, Outcome::Ignored).is_empty());
        assert_eq!(b, open);
        b.probe_succeeded(&cfg(), T0 + 30_000);
        b.permit(&cfg(), T0 + 30_000);
        b.record(&cfg(), T0 + 30_000, Outcome::Ignored);
        assert_eq!(b.state, State::HalfOpen { since: T0 + 30_000, in_flight: 0, successes: 0 });
    }

    #[test]
    fn manual_open_close_reset() {
        let mut b = Breaker::default();
        assert_eq!(b.force_open(&cfg(), T0, T0 + 3_600_000), vec![Transition::ForcedOpen { until: T0 + 3_600_000 }]);
        assert_eq!(b.state, State::Open { since: T0, until: T0 + 3_600_000, forced: true });
        assert_eq!(b.trips, 0, "a manual open is not a trip");
        assert_eq!(b.force_close(&cfg(), T0 + 1), vec![Transition::ForcedClosed]);
        assert!(b.force_close(&cfg(), T0 + 2).is_empty(), "already closed");
        fail(&mut b, T0, 5);
        b.probe_succeeded(&cfg(), T0 + 30_000);
        b.permit(&cfg(), T0 + 30_000);
        b.record(&cfg(), T0 + 30_000, Outcome::Failure);
        assert_eq!(b.trips, 2);
        assert_eq!(b.reset(), vec![Transition::Reset]);
        assert_eq!(b, Breaker::default());
        // extend_open only ever pushes `until` later, and only while Open.
        b.extend_open(T0);
        assert_eq!(b.kind(), Kind::Closed);
        fail(&mut b, T0, 5);
        b.extend_open(T0 + 10);
        assert_eq!(b.open_until(), Some(T0 + 30_000));
        b.extend_open(T0 + 90_000);
        assert_eq!(b.open_until(), Some(T0 + 90_000));
    }

    #[test]
    fn serde_round_trip_and_sanitising() {
        let mut b = Breaker::default();
        fail(&mut b, T0, 2);
        b.record(&cfg(), T0, Outcome::Success { elapsed_ms: 20_000 });
        for state in [
            State::Closed,
            State::Open { since: 1, until: 2, forced: true },
            State::HalfOpen { since: 3, in_flight: 1, successes: 1 },
        ] {
            b.state = state;
            let json = serde_json::to_string(&b).unwrap();
            let back: Breaker = serde_json::from_str(&json).unwrap();
            assert_eq!(back, b, "{json}");
        }
        let json = serde_json::to_string(&Breaker { state: State::Closed, ..b.clone() }).unwrap();
        assert_eq!(json, r#"{"state":"closed","consecutive_failures":0,"window":"ffs","trips":0}"#);
        let mut odd: Breaker =
            serde_json::from_str(r#"{"state":"half-open","since":5,"in_flight":9,"successes":9,"window":"ox?fffffffffffffffffffffffffffff"}"#)
                .unwrap();
        odd.sanitise(&cfg());
        assert_eq!(odd.window.len(), 20);
        assert!(!odd.window.contains('x'));
        assert_eq!(odd.state, State::HalfOpen { since: 5, in_flight: 0, successes: 3 });
        assert!(serde_json::from_str::<Breaker>(r#"{"state":"ajar"}"#).is_err());
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Permit,
        Success(u32),
        Failure,
        Ignored,
        Probe,
        Extend(i64),
        ForceOpen(i64),
        ForceClose,
        Reset,
        Tick,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            6 => Just(Ev::Permit),
            4 => (0u32..20_000).prop_map(Ev::Success),
            5 => Just(Ev::Failure),
            2 => Just(Ev::Ignored),
            2 => Just(Ev::Probe),
            1 => (0i64..300_000).prop_map(Ev::Extend),
            1 => (0i64..600_000).prop_map(Ev::ForceOpen),
            1 => Just(Ev::ForceClose),
            1 => Just(Ev::Reset),
            2 => Just(Ev::Tick),
        ]
    }

    fn small_cfg() -> impl Strategy<Value = BreakerConfig> {
        (1u32..8, 1u32..=100, 2u32..30, 1u32..8, 1u32..=100, 1u32..6, 1_000i64..200_000, 1_000i64..60_000).prop_map(
            |(threshold, rate, window, trials, slow_rate, min_calls, max_wait, base)| BreakerConfig {
                failure_threshold: threshold,
                failure_rate_pct: rate,
                window,
                min_calls: min_calls.min(window),
                slow_call_ms: 10_000,
                slow_call_rate_pct: slow_rate,
                half_open_trials: trials,
                half_open_max_wait_ms: max_wait,
                open_base_ms: base,
                open_max_ms: base * 16,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn state_machine_invariants(
            cfg in small_cfg(),
            events in proptest::collection::vec((ev(), 0i64..90_000), 1..250),
        ) {
            let mut b = Breaker::default();
            let mut now = T0;
            // Model: trips since the last close.
            let mut trips = 0u32;
            for (event, dt) in events {
                now += dt;
                let before = b.clone();
                let transitions = match event {
                    Ev::Permit => {
                        let (p, t) = b.permit(&cfg, now);
                        if p == Permit::Trial {
                            prop_assert_eq!(b.kind(), Kind::HalfOpen);
                        }
                        if p == Permit::Allow {
                            prop_assert_eq!(b.kind(), Kind::Closed);
                        }
                        t
                    }
                    Ev::Success(ms) => b.record(&cfg, now, Outcome::Success { elapsed_ms: ms }),
                    Ev::Failure => b.record(&cfg, now, Outcome::Failure),
                    Ev::Ignored => {
                        let mut t = b.tick(&cfg, now);
                        let ticked = b.clone();
                        let more = b.record(&cfg, now, Outcome::Ignored);
                        // Ignored never changes the state kind, the counters or the window.
                        prop_assert!(more.is_empty());
                        prop_assert_eq!(b.kind(), ticked.kind());
                        prop_assert_eq!(&b.window, &ticked.window);
                        prop_assert_eq!(b.consecutive_failures, ticked.consecutive_failures);
                        prop_assert_eq!(b.trips, ticked.trips);
                        t.extend(more);
                        t
                    }
                    Ev::Probe => b.probe_succeeded(&cfg, now),
                    Ev::Extend(d) => { b.extend_open(now + d); Vec::new() }
                    Ev::ForceOpen(d) => b.force_open(&cfg, now, now + d),
                    Ev::ForceClose => b.force_close(&cfg, now),
                    Ev::Reset => b.reset(),
                    Ev::Tick => b.tick(&cfg, now),
                };
                // Legal transitions only, chained from the state before.
                let mut kind = before.kind();
                for t in &transitions {
                    let (from, to) = t.edge();
                    if let Some(from) = from {
                        prop_assert_eq!(from, kind, "illegal {:?} from {:?}", t, kind);
                    }
                    match t {
                        Transition::Opened { until, .. } | Transition::Reopened { until, .. } => {
                            trips += 1;
                            // Open duration: base × 2^(trips−1), capped.
                            prop_assert_eq!(*until - now, cfg.open_duration_ms(trips));
                        }
                        Transition::Closed | Transition::ForcedClosed | Transition::Reset => trips = 0,
                        _ => {}
                    }
                    kind = to;
                }
                prop_assert_eq!(kind, b.kind(), "state changed without a transition: {:?} → {:?}", before.state, b.state);
                prop_assert_eq!(b.trips, trips);
                match b.state {
                    State::HalfOpen { since, in_flight, successes } => {
                        // Trials never exceed the configured number.
                        prop_assert!(in_flight + successes <= cfg.half_open_trials);
                        prop_assert!(successes < cfg.half_open_trials);
                        // Never half-open beyond the max wait (checked at every call).
                        if !matches!(event, Ev::Extend(_)) {
                            prop_assert!(now - since <= cfg.half_open_max_wait_ms);
                        }
                    }
                    State::Open { since, until, .. } => prop_assert!(until >= since),
                    State::Closed => {}
                }
                prop_assert!(b.window.chars().count() <= cfg.window as usize);
                prop_assert!(b.consecutive_failures < cfg.failure_threshold);
            }
        }

        #[test]
        fn open_never_lets_a_request_through_before_until(
            cfg in small_cfg(),
            offsets in proptest::collection::vec(0i64..1_000_000, 1..50),
        ) {
            let mut b = Breaker::default();
            for _ in 0..cfg.failure_threshold {
                b.record(&cfg, T0, Outcome::Failure);
            }
            let until = b.open_until().unwrap();
            for off in offsets {
                let now = T0 + off;
                let mut copy = b.clone();
                let (p, _) = copy.permit(&cfg, now);
                if now < until {
                    prop_assert_eq!(p, Permit::Reject { until });
                } else {
                    prop_assert_eq!(p, Permit::Trial);
                }
            }
        }
    }
}
