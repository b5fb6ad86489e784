//! Retry scheduling: exponential backoff with full jitter.
//!
//! `delay = uniform(0, min(cap, base × 2^(attempt−1)))`, drawn from the
//! host's seeded generator so schedules are reproducible in tests. A profile
//! also says how many attempts a job gets for that kind of failure; the
//! job's `attempt` counts the attempt that just failed.

/// How one class of failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub base_ms: u64,
    pub cap_ms: u64,
    /// Total attempts, including the first.
    pub max_attempts: u32,
}

/// Plex or Stash unreachable, 5xx/429, malformed answers.
pub fn transient(max_retries: u32) -> Profile {
    Profile { base_ms: 5_000, cap_ms: 80_000, max_attempts: max_retries.max(1) }
}

/// The file is not in Plex (yet): waiting for a Plex scan.
pub const NOT_FOUND: Profile = Profile { base_ms: 30_000, cap_ms: 600_000, max_attempts: 12 };

/// A rejected token or cookie is a configuration problem: retry at a steady,
/// slow pace and never dead-letter for it (fixing the setting resumes work).
pub const UNAUTHORIZED_DELAY_MS: u64 = 60_000;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run again after this many milliseconds.
    RetryIn(u64),
    /// Attempts used up.
    GiveUp,
}

impl Profile {
    /// The upper bound of the delay after attempt `attempt` (1-based).
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(62);
        self.base_ms.saturating_mul(1u64 << doublings).min(self.cap_ms)
    }

    /// A delay uniformly spread over `0..=ceiling` from one random draw.
    pub fn delay_ms(&self, attempt: u32, random: u64) -> u64 {
        let span = u128::from(self.ceiling_ms(attempt)) + 1;
        // Multiply-shift maps the 64-bit draw onto 0..span without modulo bias.
        ((u128::from(random) * span) >> 64) as u64
    }

    /// The decision after attempt `attempt` failed.
    pub fn decide(&self, attempt: u32, random: u64) -> Decision {
        if attempt >= self.max_attempts { Decision::GiveUp } else { Decision::RetryIn(self.delay_ms(attempt, random)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let p = transient(5);
        assert_eq!(p.ceiling_ms(1), 5_000);
        assert_eq!(p.ceiling_ms(2), 10_000);
        assert_eq!(p.ceiling_ms(4), 40_000);
        assert_eq!(p.ceiling_ms(5), 80_000);
        assert_eq!(p.ceiling_ms(9), 80_000);
        assert_eq!(p.ceiling_ms(u32::MAX), 80_000);
        assert_eq!(NOT_FOUND.ceiling_ms(1), 30_000);
        assert_eq!(NOT_FOUND.ceiling_ms(12), 600_000);
    }

    #[test]
    fn delay_covers_the_whole_range() {
        let p = transient(5);
        assert_eq!(p.delay_ms(3, 0), 0);
        assert_eq!(p.delay_ms(3, u64::MAX), 20_000);
        assert_eq!(p.delay_ms(3, u64::MAX / 2), 10_000);
    }

    #[test]
    fn gives_up_at_max_attempts() {
        let p = transient(3);
        assert!(matches!(p.decide(2, 7), Decision::RetryIn(_)));
        assert_eq!(p.decide(3, 7), Decision::GiveUp);
        assert_eq!(NOT_FOUND.decide(12, 0), Decision::GiveUp);
        assert_eq!(NOT_FOUND.decide(11, 0), Decision::RetryIn(0));
        assert_eq!(transient(0).max_attempts, 1);
    }
}
