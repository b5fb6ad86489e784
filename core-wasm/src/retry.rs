//! Retry scheduling: one [`RetryProfile`] per error class.
//!
//! The delay after a failure is drawn from the host's seeded generator, so a
//! schedule is reproducible in tests, and is never shorter than the server's
//! `Retry-After`. Nothing sleeps: the delay becomes the job's `not-before`.
//!
//! Shapes (`retry_jitter` setting; `ceiling(n) = min(cap, base × 2^(n−1))`):
//!
//! - `full` (default): `U(0, ceiling(n))`: least load on a recovering Plex;
//! - `equal`: `ceiling(n)/2 + U(0, ceiling(n)/2)`;
//! - `decorrelated`: `min(cap, U(base, 3 × prev))`, where `prev` is
//!   `ceiling(n−1)` (the job record cannot carry the previous actual delay,
//!   so it is recomputed from the attempt number; `prev = base` for n = 1).
//!
//! Defaults per class (attempts = total attempts including the first; "∞"
//! means the class never dead-letters a job: the attempt is given back with
//! `release` instead of being counted, and the delay grows with the
//! breaker's run of consecutive failures rather than with the job's
//! attempts, so an outage never eats a job's budget for real failures):
//!
//! | class | base | cap | attempts | breaker |
//! |---|---|---|---|---|
//! | plex-unavailable: refused, DNS, TLS, other | 5 s | 80 s | ∞ | yes |
//! | plex-unavailable: connection reset | 5 s | 80 s | `max_retries` (5) | yes |
//! | plex-timeout | 10 s | 160 s | `max_retries` (5) | yes |
//! | plex-starting (503) | 15 s | 300 s | ∞ | yes |
//! | plex-overloaded (429, 5xx) | 5 s | 80 s | `max_retries` (5) | yes |
//! | plex-wrong-address | 30 s | 600 s | `max_retries` (5) | yes |
//! | plex-malformed-response | 5 s | 80 s | `max_retries` (5) | yes |
//! | plex-unauthorized | 300 s (fixed) | 300 s | ∞ (the auth pause) | no |
//! | not-in-plex, stale-item, stale-section | 30 s | 600 s | 12 | no |
//! | ambiguous-match, plex-rejected-request, request-refused-by-host | – | – | 1 (dead-letter at once) | no |
//! | stash-unavailable | 10 s | 600 s | 12 | no |
//! | stash-unauthorized | 60 s (fixed) | 60 s | ∞ | no |
//! | stash-malformed | 5 s | 80 s | `max_retries` (5) | no |
//!
//! 5 s / 80 s / 5 and 30 s / 600 s / 12 are the original plugin's transient
//! and not-found schedules; the Stash schedule is the not-found one with a
//! shorter start (the original dead-lettered at the first Stash hiccup).

use crate::classify::{ErrorClass, TransportKind};

/// How the delay is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    #[default]
    Full,
    Decorrelated,
    Equal,
    /// Exactly the ceiling (fixed schedules: the credential pauses).
    None,
}

impl Jitter {
    /// The spreads a user can choose (`retry_jitter`).
    pub const ALL: [Jitter; 3] = [Jitter::Full, Jitter::Decorrelated, Jitter::Equal];

    pub fn parse(s: &str) -> Option<Jitter> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Some(Jitter::Full),
            "decorrelated" => Some(Jitter::Decorrelated),
            "equal" => Some(Jitter::Equal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Jitter::Full => "full",
            Jitter::Decorrelated => "decorrelated",
            Jitter::Equal => "equal",
            Jitter::None => "none",
        }
    }
}

/// How one class of failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryProfile {
    pub base_ms: u64,
    pub cap_ms: u64,
    /// Total attempts including the first; `None` = never dead-letter (the
    /// attempt is released, not counted).
    pub max_attempts: Option<u32>,
    pub counts_for_breaker: bool,
    pub jitter: Jitter,
}

/// What to do with a job after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `retry-at` (the attempt counts) after this many milliseconds.
    RetryIn(u64),
    /// `release` (the attempt does not count) for this many milliseconds.
    ReleaseFor(u64),
    /// Attempts used up (or retrying cannot help): dead-letter.
    DeadLetter,
}

/// The two settings that shape the profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// Attempts for the transient classes (`max_retries`, 1–20).
    pub max_retries: u32,
    pub jitter: Jitter,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings { max_retries: 5, jitter: Jitter::Full }
    }
}

/// The profile of a class.
pub fn profile(class: ErrorClass, settings: RetrySettings) -> RetryProfile {
    let transient = Some(settings.max_retries.max(1));
    let j = settings.jitter;
    let p = |base_ms: u64, cap_ms: u64, max_attempts: Option<u32>, jitter: Jitter| RetryProfile {
        base_ms,
        cap_ms,
        max_attempts,
        counts_for_breaker: class.counts_for_breaker(),
        jitter,
    };
    match class {
        ErrorClass::PlexUnreachable(TransportKind::Reset) => p(5_000, 80_000, transient, j),
        ErrorClass::PlexUnreachable(_) => p(5_000, 80_000, None, j),
        ErrorClass::PlexSlow => p(10_000, 160_000, transient, j),
        ErrorClass::PlexStarting => p(15_000, 300_000, None, j),
        ErrorClass::PlexOverloaded { .. } => p(5_000, 80_000, transient, j),
        ErrorClass::PlexWrongAddress => p(30_000, 600_000, transient, j),
        ErrorClass::PlexMalformed => p(5_000, 80_000, transient, j),
        ErrorClass::PlexUnauthorized { .. } => p(AUTH_PAUSE_MS, AUTH_PAUSE_MS, None, Jitter::None),
        ErrorClass::NotInPlex | ErrorClass::StaleItem | ErrorClass::StaleSection => {
            p(30_000, 600_000, Some(NOT_FOUND_ATTEMPTS), j)
        }
        ErrorClass::Ambiguous | ErrorClass::BadRequest { .. } | ErrorClass::RequestRefused => {
            p(0, 0, Some(1), Jitter::None)
        }
        // Stash being away is an outage like Plex's: the change waits, no
        // attempt is used (the host ends a drain whose Stash is gone).
        ErrorClass::StashUnavailable => p(10_000, 120_000, None, j),
        ErrorClass::StashUnauthorized => p(60_000, 60_000, None, Jitter::None),
        ErrorClass::StashMalformed => p(5_000, 80_000, transient, j),
    }
}

/// Attempts for "not in Plex yet" (the original's 12, about 75 minutes).
pub const NOT_FOUND_ATTEMPTS: u32 = 12;
/// How long syncing pauses after Plex rejects the token before it checks
/// again (and the fixed delay of the `plex-unauthorized` profile).
pub const AUTH_PAUSE_MS: u64 = 300_000;

/// A uniform draw in `lo..=hi` from one 64-bit value (multiply-shift, no
/// modulo bias).
pub fn uniform(lo: u64, hi: u64, random: u64) -> u64 {
    if hi <= lo {
        return lo;
    }
    let span = u128::from(hi - lo) + 1;
    lo + ((u128::from(random) * span) >> 64) as u64
}

impl RetryProfile {
    /// `min(cap, base × 2^(n−1))` for the 1-based failure number `n`.
    pub fn ceiling_ms(&self, n: u32) -> u64 {
        let doublings = n.saturating_sub(1).min(62);
        self.base_ms.saturating_mul(1u64 << doublings).min(self.cap_ms)
    }

    /// The delay after failure number `n`, from one random draw, never below
    /// `retry_after_ms`.
    pub fn delay_ms(&self, n: u32, random: u64, retry_after_ms: Option<u64>) -> u64 {
        let ceiling = self.ceiling_ms(n);
        let drawn = match self.jitter {
            Jitter::Full => uniform(0, ceiling, random),
            Jitter::Equal => ceiling / 2 + uniform(0, ceiling - ceiling / 2, random),
            Jitter::Decorrelated => {
                let prev = if n <= 1 { self.base_ms } else { self.ceiling_ms(n - 1) };
                let hi = prev.saturating_mul(3).max(self.base_ms);
                uniform(self.base_ms, hi, random).min(self.cap_ms)
            }
            Jitter::None => ceiling,
        };
        drawn.max(retry_after_ms.unwrap_or(0))
    }

    /// The decision after attempt `attempt` (1-based, counting this one)
    /// failed. `streak` is the breaker's run of consecutive failures (at
    /// least 1): the delay exponent for classes that do not count attempts.
    pub fn decide(&self, attempt: u32, streak: u32, random: u64, retry_after_ms: Option<u64>) -> Decision {
        match self.max_attempts {
            None => Decision::ReleaseFor(self.delay_ms(streak.max(1), random, retry_after_ms)),
            Some(max) if attempt >= max => Decision::DeadLetter,
            Some(_) => Decision::RetryIn(self.delay_ms(attempt, random, retry_after_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::draws;

    fn transient(jitter: Jitter) -> RetryProfile {
        profile(ErrorClass::PlexOverloaded { status: 502 }, RetrySettings { max_retries: 5, jitter })
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let p = transient(Jitter::Full);
        let ceilings: Vec<u64> = (1..=6).map(|n| p.ceiling_ms(n)).collect();
        assert_eq!(ceilings, vec![5_000, 10_000, 20_000, 40_000, 80_000, 80_000]);
        assert_eq!(p.ceiling_ms(u32::MAX), 80_000);
        let nf = profile(ErrorClass::NotInPlex, RetrySettings::default());
        assert_eq!((nf.ceiling_ms(1), nf.ceiling_ms(12)), (30_000, 600_000));
    }

    #[test]
    fn bounds_hold_for_every_shape_attempt_and_hint() {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let p = transient(jitter);
            for (i, r) in draws(7, 2_000).into_iter().enumerate() {
                let n = (i % 9) as u32 + 1;
                let d = p.delay_ms(n, r, None);
                assert!(d <= p.cap_ms, "{jitter:?} n={n} d={d}");
                match jitter {
                    Jitter::Full => assert!(d <= p.ceiling_ms(n)),
                    Jitter::Equal => assert!(d >= p.ceiling_ms(n) / 2 && d <= p.ceiling_ms(n)),
                    _ => assert!(d >= p.base_ms),
                }
                let hinted = p.delay_ms(n, r, Some(120_000));
                assert!(hinted >= 120_000);
                assert_eq!(hinted, d.max(120_000));
            }
        }
        // The extremes of the draw reach both ends.
        let p = transient(Jitter::Full);
        assert_eq!(p.delay_ms(3, 0, None), 0);
        assert_eq!(p.delay_ms(3, u64::MAX, None), 20_000);
    }

    #[test]
    fn golden_delays_with_a_fixed_seed() {
        let r = draws(0x5eed, 5);
        let shape = |jitter| -> Vec<u64> {
            let p = transient(jitter);
            (1..=5).map(|n| p.delay_ms(n, r[n as usize - 1], None)).collect()
        };
        assert_eq!(shape(Jitter::Full), vec![194, 3_328, 7_294, 17_628, 3_733]);
        assert_eq!(shape(Jitter::Equal), vec![2_597, 6_664, 13_647, 28_814, 41_866]);
        assert_eq!(shape(Jitter::Decorrelated), vec![5_388, 8_328, 14_117, 29_239, 10_367]);
        assert_eq!(shape(Jitter::None), vec![5_000, 10_000, 20_000, 40_000, 80_000]);
    }

    #[test]
    fn shapes_differ_in_spread() {
        // Over many draws: full averages ~ceiling/2, equal ~3/4 ceiling,
        // decorrelated never below base.
        let r = draws(99, 4_000);
        let mean = |jitter, n: u32| -> u64 {
            let p = transient(jitter);
            r.iter().map(|&x| p.delay_ms(n, x, None)).sum::<u64>() / r.len() as u64
        };
        let (full, equal, decorrelated) =
            (mean(Jitter::Full, 3), mean(Jitter::Equal, 3), mean(Jitter::Decorrelated, 3));
        assert!((9_500..=10_500).contains(&full), "{full}");
        assert!((14_500..=15_500).contains(&equal), "{equal}");
        // U(5 000, 30 000) → mean 17 500.
        assert!((17_000..=18_000).contains(&decorrelated), "{decorrelated}");
    }

    #[test]
    fn max_attempts_then_dead_letter() {
        let p = transient(Jitter::Full);
        assert!(matches!(p.decide(4, 1, 7, None), Decision::RetryIn(_)));
        assert_eq!(p.decide(5, 1, 7, None), Decision::DeadLetter);
        let p =
            profile(ErrorClass::PlexOverloaded { status: 500 }, RetrySettings { max_retries: 0, jitter: Jitter::Full });
        assert_eq!(p.max_attempts, Some(1));
        let nf = profile(ErrorClass::NotInPlex, RetrySettings::default());
        assert_eq!(nf.decide(11, 1, 0, None), Decision::RetryIn(0));
        assert_eq!(nf.decide(12, 1, 0, None), Decision::DeadLetter);
        // Permanent classes dead-letter at the first failure.
        for class in [ErrorClass::Ambiguous, ErrorClass::BadRequest { status: 400 }, ErrorClass::RequestRefused] {
            assert_eq!(profile(class, RetrySettings::default()).decide(1, 1, 0, None), Decision::DeadLetter);
        }
    }

    #[test]
    fn outage_classes_release_and_grow_with_the_streak() {
        let refused = profile(ErrorClass::PlexUnreachable(TransportKind::Refused), RetrySettings::default());
        assert_eq!(refused.max_attempts, None);
        assert!(refused.counts_for_breaker);
        // Whatever the attempt number, never a dead letter.
        for attempt in [1, 5, 50, u32::MAX] {
            assert!(matches!(refused.decide(attempt, 1, u64::MAX, None), Decision::ReleaseFor(5_000)));
        }
        assert_eq!(refused.decide(1, 4, u64::MAX, None), Decision::ReleaseFor(40_000));
        let starting = profile(ErrorClass::PlexStarting, RetrySettings::default());
        assert_eq!(starting.decide(9, 1, 0, Some(30_000)), Decision::ReleaseFor(30_000));
        let auth = profile(ErrorClass::PlexUnauthorized { status: 401 }, RetrySettings::default());
        assert_eq!(auth.decide(3, 1, 12345, None), Decision::ReleaseFor(AUTH_PAUSE_MS));
        assert!(!auth.counts_for_breaker);
        let stash = profile(ErrorClass::StashUnauthorized, RetrySettings::default());
        assert_eq!(stash.decide(3, 1, 12345, None), Decision::ReleaseFor(60_000));
        // A reset may be caused by the request itself: it counts.
        let reset = profile(ErrorClass::PlexUnreachable(TransportKind::Reset), RetrySettings::default());
        assert_eq!(reset.decide(5, 1, 0, None), Decision::DeadLetter);
    }

    #[test]
    fn uniform_covers_the_range() {
        assert_eq!(uniform(10, 10, 123), 10);
        assert_eq!(uniform(10, 5, 123), 10);
        assert_eq!(uniform(0, 9, 0), 0);
        assert_eq!(uniform(0, 9, u64::MAX), 9);
        assert_eq!(uniform(0, u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn jitter_names() {
        for j in [Jitter::Full, Jitter::Decorrelated, Jitter::Equal] {
            assert_eq!(Jitter::parse(j.as_str()), Some(j));
        }
        assert_eq!(Jitter::parse(" FULL "), Some(Jitter::Full));
        assert_eq!(Jitter::parse("none"), None);
    }
}
