//! Getting back to work after an outage: the health-probe schedule while the
//! breaker is Open, and the pacer that ramps the request rate up after it
//! closes.
//!
//! **Probes.** While Open, the only request to Plex is `GET /identity`
//! (unauthenticated, answered only once PMS's database is up; 5 s timeout).
//! The first probe is due when the open duration ends (`breaker_open_base_secs`,
//! 4 s). While the outage is young (under [`YOUNG_OUTAGE_MS`], 5 minutes),
//! the next probe follows a failed one after `probe_interval_secs` (4 s) ×
//! U(0.75, 1.0): most outages are short (a Plex restart, an update, a NAS
//! waking up), so Plex coming back is noticed within 4 s and the first write
//! follows at once, at about 15 requests per 40 s of outage. Once the
//! outage is older, the interval doubles every minute, up to
//! `probe_max_interval_secs` (60 s: a probe is one tiny unauthenticated GET,
//! so a recovery is still noticed within a minute; the original capped its
//! probe spacing at 60 s too). The jitter keeps probes apart without ever
//! coming close to 0 s (the original's full jitter could probe again at
//! once). A successful probe moves the breaker to HalfOpen.
//!
//! **Pacing and ramp.** Plex requests are paced as "the next job may start
//! at `next_send_at`": after a job that sent `n` requests at rate `r`
//! requests/s, `next_send_at = max(next_send_at, job start) + n / r`. In
//! normal operation nothing is paced unless `max_rps` is set: requests go
//! one at a time, so Plex's own speed is the limit, and the slow-call
//! breaker backs off when Plex struggles. When the breaker closes after an
//! outage, `r` starts at
//! `ramp_start_rps` (1/s) and doubles every [`RAMP_STEP_MS`] (10 s) up to
//! the target (1 → 2 → 4 → 8 → 16 → 20: full speed after 50 s). If errors
//! return during the ramp (more than [`RAMP_ERROR_PCT`] % of at least
//! [`RAMP_MIN_OUTCOMES`] of the last [`RAMP_RECENT`] outcomes failed), the
//! rate is halved (never below a quarter of the start rate, at least
//! 0.1/s) and the doubling clock restarts; the breaker still decides
//! whether to open again. Everything here is plain data, persisted with the
//! rest of the policy state, so a restart resumes the same schedule.

use serde::{Deserialize, Serialize};

use crate::retry::uniform;

/// Probe schedule knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    pub interval_ms: u64,
    pub max_interval_ms: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { interval_ms: 4_000, max_interval_ms: 60_000 }
    }
}

/// An outage younger than this is probed every `interval_ms`.
pub const YOUNG_OUTAGE_MS: i64 = 5 * 60_000;
/// After that, the probe interval doubles this often.
pub const PROBE_DOUBLING_MS: i64 = 60_000;

/// Timeout of one probe.
pub const PROBE_TIMEOUT_MS: u32 = 5_000;

/// Probe bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probes {
    /// Failed probes since the breaker opened (or since the last success).
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub last_at: Option<i64>,
    #[serde(default)]
    pub last_ok: Option<bool>,
    /// What the last probe saw (for status reports).
    #[serde(default)]
    pub last_detail: String,
    #[serde(default)]
    pub total: u64,
}

impl Probes {
    /// The nominal interval for an outage `age_ms` old.
    pub fn nominal_interval_ms(cfg: &ProbeConfig, age_ms: i64) -> u64 {
        let base = cfg.interval_ms.min(cfg.max_interval_ms).max(1);
        if age_ms < YOUNG_OUTAGE_MS {
            return base;
        }
        let doublings = ((age_ms - YOUNG_OUTAGE_MS) / PROBE_DOUBLING_MS + 1).clamp(0, 40) as u32;
        base.saturating_mul(1u64 << doublings).min(cfg.max_interval_ms).max(1)
    }

    /// `nominal × U(0.75, 1.0)`.
    pub fn jittered_ms(nominal: u64, random: u64) -> u64 {
        uniform(nominal.saturating_mul(3).div_ceil(4), nominal, random)
    }

    /// A probe failed at `now`, `age_ms` into the outage: the time of the
    /// next one.
    pub fn failed_at(&mut self, cfg: &ProbeConfig, now: i64, age_ms: i64, random: u64, detail: String) -> i64 {
        self.failed = self.failed.saturating_add(1);
        self.last_at = Some(now);
        self.last_ok = Some(false);
        self.last_detail = detail;
        self.total = self.total.saturating_add(1);
        let wait = Self::jittered_ms(Self::nominal_interval_ms(cfg, age_ms), random);
        now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX))
    }

    /// A probe succeeded at `now`.
    pub fn succeeded_at(&mut self, now: i64, detail: String) {
        self.failed = 0;
        self.last_at = Some(now);
        self.last_ok = Some(true);
        self.last_detail = detail;
        self.total = self.total.saturating_add(1);
    }

    /// The breaker (re)opened: start the schedule over.
    pub fn restart(&mut self) {
        self.failed = 0;
    }
}

/// How often the ramp doubles the rate.
pub const RAMP_STEP_MS: i64 = 10_000;
/// Error share (percent) among recent ramp outcomes that halves the rate.
pub const RAMP_ERROR_PCT: u32 = 30;
/// Outcomes kept for that judgement.
pub const RAMP_RECENT: usize = 10;
/// Outcomes needed before judging.
pub const RAMP_MIN_OUTCOMES: usize = 4;
/// Longest wait the pacer ever asks for (a clock that jumped back cannot
/// stall the drain).
pub const MAX_PACE_WAIT_MS: i64 = 60_000;

/// Rates in milli-requests per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampConfig {
    pub start_milli: u32,
    pub target_milli: u32,
    /// Steady-state cap outside a ramp; 0 = none (requests go one at a
    /// time, so Plex's own speed is the limit, and the slow-call breaker
    /// backs off if Plex struggles).
    pub steady_milli: u32,
}

impl Default for RampConfig {
    fn default() -> Self {
        RampConfig { start_milli: 1_000, target_milli: 20_000, steady_milli: 0 }
    }
}

impl RampConfig {
    fn floor_milli(&self) -> u32 {
        (self.start_milli / 4).max(100)
    }
}

/// The ramp after a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ramp {
    pub started_at: i64,
    pub rate_milli: u32,
    /// When the rate last changed (the doubling clock).
    pub changed_at: i64,
    /// Recent outcomes, oldest first: `o` ok, `f` failed.
    #[serde(default)]
    pub recent: String,
    #[serde(default)]
    pub halvings: u32,
}

/// What the pacer did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampEvent {
    Started { rate_milli: u32 },
    Raised { rate_milli: u32 },
    Halved { rate_milli: u32, failed: u32, of: u32 },
    Finished,
}

/// Request pacing, with the ramp when one is running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pacer {
    #[serde(default)]
    pub next_send_at: i64,
    #[serde(default)]
    pub ramp: Option<Ramp>,
}

impl Pacer {
    /// The rate now, milli-requests per second; `None` = not paced.
    pub fn rate_milli(&self, cfg: &RampConfig) -> Option<u32> {
        match &self.ramp {
            Some(r) => Some(r.rate_milli.clamp(1, cfg.target_milli.max(1))),
            None => (cfg.steady_milli > 0).then_some(cfg.steady_milli),
        }
    }

    /// Start a ramp (the breaker closed after an outage).
    pub fn start_ramp(&mut self, cfg: &RampConfig, now: i64) -> RampEvent {
        let rate_milli = cfg.start_milli.min(cfg.target_milli).max(1);
        self.ramp = Some(Ramp { started_at: now, rate_milli, changed_at: now, recent: String::new(), halvings: 0 });
        self.next_send_at = self.next_send_at.min(now);
        RampEvent::Started { rate_milli }
    }

    /// Drop the ramp (the breaker opened again).
    pub fn stop_ramp(&mut self) {
        self.ramp = None;
    }

    /// Time-driven ramp steps: double the rate every [`RAMP_STEP_MS`]; the
    /// ramp ends once the target is reached.
    pub fn tick(&mut self, cfg: &RampConfig, now: i64) -> Vec<RampEvent> {
        let mut events = Vec::new();
        let Some(ramp) = &mut self.ramp else {
            return events;
        };
        if now < ramp.changed_at {
            // The clock went back: restart the doubling clock.
            ramp.changed_at = now;
        }
        while ramp.rate_milli < cfg.target_milli && now.saturating_sub(ramp.changed_at) >= RAMP_STEP_MS {
            ramp.rate_milli = ramp.rate_milli.saturating_mul(2).min(cfg.target_milli);
            ramp.changed_at = ramp.changed_at.saturating_add(RAMP_STEP_MS);
            events.push(RampEvent::Raised { rate_milli: ramp.rate_milli });
        }
        if ramp.rate_milli >= cfg.target_milli {
            self.ramp = None;
            events.push(RampEvent::Finished);
        }
        events
    }

    /// How long to wait before the next job may start.
    pub fn wait_ms(&self, now: i64) -> u32 {
        let wait = self.next_send_at.saturating_sub(now).clamp(0, MAX_PACE_WAIT_MS);
        u32::try_from(wait).unwrap_or(0)
    }

    /// A job that started at `started` sent `requests` requests.
    pub fn sent(&mut self, cfg: &RampConfig, started: i64, requests: u32) {
        let Some(rate) = self.rate_milli(cfg).filter(|_| requests > 0) else {
            return;
        };
        let per_request_ms = 1_000_000 / i64::from(rate);
        let base = self.next_send_at.max(started);
        self.next_send_at = base.saturating_add(per_request_ms.saturating_mul(i64::from(requests)));
        // Never further ahead than the longest wait (clock jumps).
        self.next_send_at = self.next_send_at.min(started.saturating_add(MAX_PACE_WAIT_MS));
    }

    /// A breaker-relevant outcome during the ramp (`failed` = counted
    /// failure). Halves the rate when errors come back.
    pub fn record(&mut self, cfg: &RampConfig, now: i64, failed: bool) -> Option<RampEvent> {
        let ramp = self.ramp.as_mut()?;
        ramp.recent.push(if failed { 'f' } else { 'o' });
        let n = ramp.recent.chars().count();
        if n > RAMP_RECENT {
            ramp.recent = ramp.recent.chars().skip(n - RAMP_RECENT).collect();
        }
        let of = ramp.recent.chars().count();
        let fails = ramp.recent.chars().filter(|&c| c == 'f').count();
        if of >= RAMP_MIN_OUTCOMES && fails * 100 > RAMP_ERROR_PCT as usize * of {
            ramp.rate_milli = (ramp.rate_milli / 2).max(cfg.floor_milli());
            ramp.changed_at = now;
            ramp.recent.clear();
            ramp.halvings = ramp.halvings.saturating_add(1);
            return Some(RampEvent::Halved {
                rate_milli: ramp.rate_milli,
                failed: u32::try_from(fails).unwrap_or(u32::MAX),
                of: u32::try_from(of).unwrap_or(u32::MAX),
            });
        }
        None
    }
}

/// `1.5/s` style text for a milli-rate.
pub fn rate_text(milli: u32) -> String {
    if milli.is_multiple_of(1000) {
        return format!("{}/s", milli / 1000);
    }
    let fraction = format!("{:03}", milli % 1000);
    format!("{}.{}/s", milli / 1000, fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::draws;

    #[test]
    fn probes_stay_frequent_while_an_outage_is_young_then_back_off() {
        let cfg = ProbeConfig::default();
        let at_minutes = |m: i64| Probes::nominal_interval_ms(&cfg, m * 60_000);
        let nominal: Vec<u64> = (0..=12).map(at_minutes).collect();
        assert_eq!(
            nominal,
            vec![4_000, 4_000, 4_000, 4_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(Probes::nominal_interval_ms(&cfg, YOUNG_OUTAGE_MS - 1), 4_000);
        // A 40 s outage: at most 14 probes (with the opening failures, 20
        // requests); a return is noticed within 4 s.
        let mut p = Probes::default();
        let mut now = 0i64;
        let mut in_40s = 0;
        for (k, r) in draws(3, 2_000).into_iter().enumerate() {
            let next = p.failed_at(&cfg, now, now, r, String::new());
            let wait = (next - now) as u64;
            let nominal = Probes::nominal_interval_ms(&cfg, now);
            assert!(wait * 4 >= nominal * 3, "probe {k}: {wait} < 75 % of {nominal}");
            assert!(wait <= nominal && wait <= cfg.max_interval_ms);
            if now < 40_000 {
                in_40s += 1;
                assert!(wait <= 4_000, "young outages are probed every 4 s at most");
            }
            now = next;
        }
        assert!(in_40s <= 14, "{in_40s} probes in the first 40 s");
        // Extremes of the draw.
        assert_eq!(Probes::jittered_ms(4_000, 0), 3_000);
        assert_eq!(Probes::jittered_ms(4_000, u64::MAX), 4_000);
        p.succeeded_at(now, "ok".into());
        assert_eq!(p.failed, 0);
        assert_eq!(p.last_ok, Some(true));
    }

    #[test]
    fn golden_probe_trace_with_a_fixed_seed() {
        let cfg = ProbeConfig::default();
        let mut p = Probes::default();
        // From 4m 50s into an outage, across the 5 minute mark.
        let mut now = 290_000;
        let mut waits = Vec::new();
        for r in draws(0x5eed, 9) {
            let next = p.failed_at(&cfg, now, now, r, String::new());
            waits.push(next - now);
            now = next;
        }
        assert_eq!(waits, vec![3_038, 3_333, 3_365, 3_441, 6_093, 6_740, 6_323, 6_144, 7_708]);
    }

    #[test]
    fn ramp_doubles_to_the_target_then_ends() {
        let cfg = RampConfig::default();
        let mut pacer = Pacer::default();
        assert_eq!(pacer.start_ramp(&cfg, 0), RampEvent::Started { rate_milli: 1_000 });
        assert_eq!(pacer.rate_milli(&cfg), Some(1_000));
        assert!(pacer.tick(&cfg, 9_999).is_empty());
        let mut rates = Vec::new();
        for t in (10_000..=60_000).step_by(10_000) {
            for e in pacer.tick(&cfg, t) {
                rates.push((t, e));
            }
        }
        assert_eq!(
            rates,
            vec![
                (10_000, RampEvent::Raised { rate_milli: 2_000 }),
                (20_000, RampEvent::Raised { rate_milli: 4_000 }),
                (30_000, RampEvent::Raised { rate_milli: 8_000 }),
                (40_000, RampEvent::Raised { rate_milli: 16_000 }),
                (50_000, RampEvent::Raised { rate_milli: 20_000 }),
                (50_000, RampEvent::Finished),
            ]
        );
        assert!(pacer.ramp.is_none());
        assert_eq!(pacer.rate_milli(&cfg), None, "after the ramp, not paced by default");
        let capped = RampConfig { steady_milli: 5_000, ..cfg };
        assert_eq!(pacer.rate_milli(&capped), Some(5_000), "unless max_rps is set");
    }

    #[test]
    fn ramp_halves_when_errors_return() {
        let cfg = RampConfig::default();
        let mut pacer = Pacer::default();
        pacer.start_ramp(&cfg, 0);
        pacer.tick(&cfg, 30_000);
        assert_eq!(pacer.rate_milli(&cfg), Some(8_000));
        // 1 failure in 4 = 25 %: fine. A second: 2 of 5 = 40 % > 30 %.
        for failed in [false, false, true, false] {
            assert_eq!(pacer.record(&cfg, 31_000, failed), None);
        }
        assert_eq!(pacer.record(&cfg, 32_000, true), Some(RampEvent::Halved { rate_milli: 4_000, failed: 2, of: 5 }));
        // The doubling clock restarted at the halving.
        assert!(pacer.tick(&cfg, 41_999).is_empty());
        assert_eq!(pacer.tick(&cfg, 42_000), vec![RampEvent::Raised { rate_milli: 8_000 }]);
        // Repeated errors never push it below the floor (0.25/s for a 1/s start).
        for i in 0..40 {
            pacer.record(&cfg, 43_000 + i, true);
        }
        assert_eq!(pacer.rate_milli(&cfg), Some(250));
        // Outside a ramp, outcomes change nothing.
        let mut idle = Pacer::default();
        assert_eq!(idle.record(&cfg, 0, true), None);
    }

    #[test]
    fn pacing_spaces_requests_at_the_rate() {
        // Not paced by default outside a ramp.
        let mut unpaced = Pacer::default();
        unpaced.sent(&RampConfig::default(), 1_000, 4);
        assert_eq!(unpaced.wait_ms(1_000), 0);
        let cfg = RampConfig { steady_milli: 20_000, ..RampConfig::default() };
        let mut pacer = Pacer::default();
        // Steady state with max_rps 20: 4 requests take 200 ms.
        pacer.sent(&cfg, 1_000, 4);
        assert_eq!(pacer.next_send_at, 1_200);
        assert_eq!(pacer.wait_ms(1_050), 150);
        assert_eq!(pacer.wait_ms(1_300), 0);
        // A ramp at 1/s: 2 requests → 2 s.
        pacer.start_ramp(&cfg, 5_000);
        pacer.sent(&cfg, 5_000, 2);
        assert_eq!(pacer.next_send_at, 7_000);
        // No requests, no pacing.
        pacer.sent(&cfg, 5_000, 0);
        assert_eq!(pacer.next_send_at, 7_000);
        // Waits are capped.
        pacer.sent(&cfg, 7_000, 1_000);
        assert_eq!(pacer.wait_ms(7_000), 60_000);
        assert_eq!(pacer.wait_ms(i64::MIN), 60_000);
    }

    #[test]
    fn serde_round_trip() {
        let cfg = RampConfig::default();
        let mut pacer = Pacer::default();
        pacer.start_ramp(&cfg, 10);
        pacer.record(&cfg, 11, true);
        let json = serde_json::to_string(&pacer).unwrap();
        assert_eq!(serde_json::from_str::<Pacer>(&json).unwrap(), pacer);
        let mut probes = Probes::default();
        probes.failed_at(&ProbeConfig::default(), 0, 0, 1, "refused".into());
        let json = serde_json::to_string(&probes).unwrap();
        assert_eq!(serde_json::from_str::<Probes>(&json).unwrap(), probes);
        assert_eq!(serde_json::from_str::<Probes>("{}").unwrap(), Probes::default());
    }

    #[test]
    fn rate_texts() {
        assert_eq!(rate_text(20_000), "20/s");
        assert_eq!(rate_text(250), "0.25/s");
        assert_eq!(rate_text(1_500), "1.5/s");
    }
}
