//! The retry budget: retries may be at most a share of first attempts.
//!
//! Over a sliding window of [`WINDOW_MS`] (60 s, six 10 s buckets), a retry
//! (a job claimed with `attempt > 1` whose earlier attempt failed: it has a
//! `last-error`; a claim that a killed drainer left without an outcome is
//! not one) is sent only while
//!
//! `retries_in_window + 1 ≤ first_attempts_in_window × retry_budget_percent / 100 + FLOOR`
//!
//! with `FLOOR` = one retry per 10 s (6 per window), so a quiet queue can
//! still retry. Default `retry_budget_percent` = 20. A retry over budget is
//! not sent: the job is given back (`release`, the attempt does not count)
//! for a few seconds. The idea is tower's `TpsBudget`; unlike it, the
//! buckets are plain counters, serialisable into the policy state, so the
//! budget survives restarts.

use serde::{Deserialize, Serialize};

/// Window length.
pub const WINDOW_MS: i64 = 60_000;
/// Bucket length (the window slides by this much).
pub const BUCKET_MS: i64 = 10_000;
/// Buckets per window.
pub const BUCKETS: usize = (WINDOW_MS / BUCKET_MS) as usize;
/// Retries always allowed per window (one per bucket).
pub const FLOOR: u64 = BUCKETS as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket (a multiple of [`BUCKET_MS`]).
    pub at: i64,
    pub first: u64,
    pub retry: u64,
}

/// The counters, oldest bucket first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    #[serde(default)]
    pub buckets: Vec<Bucket>,
}

impl Budget {
    /// Drop buckets that left the window (and any from the future: the
    /// clock went back).
    fn expire(&mut self, now: i64) {
        let current = now.div_euclid(BUCKET_MS) * BUCKET_MS;
        let oldest = current - (BUCKETS as i64 - 1) * BUCKET_MS;
        self.buckets.retain(|b| b.at >= oldest && b.at <= current);
        if self.buckets.len() > BUCKETS {
            let extra = self.buckets.len() - BUCKETS;
            self.buckets.drain(..extra);
        }
    }

    fn current(&mut self, now: i64) -> &mut Bucket {
        self.expire(now);
        let at = now.div_euclid(BUCKET_MS) * BUCKET_MS;
        if self.buckets.last().is_none_or(|b| b.at != at) {
            self.buckets.push(Bucket { at, first: 0, retry: 0 });
        }
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }

    /// (first attempts, retries) in the window ending at `now`.
    pub fn totals(&self, now: i64) -> (u64, u64) {
        let mut copy = self.clone();
        copy.expire(now);
        copy.buckets.iter().fold((0, 0), |(f, r), b| (f + b.first, r + b.retry))
    }

    /// Retries the window allows in total.
    pub fn allowance(&self, percent: u32, now: i64) -> u64 {
        let (first, _) = self.totals(now);
        first.saturating_mul(u64::from(percent)) / 100 + FLOOR
    }

    /// A first attempt was sent.
    pub fn record_first(&mut self, now: i64) {
        let b = self.current(now);
        b.first = b.first.saturating_add(1);
    }

    /// Take one retry from the budget; `false` = over budget (not recorded).
    pub fn try_retry(&mut self, percent: u32, now: i64) -> bool {
        let allowance = self.allowance(percent, now);
        let (_, used) = self.totals(now);
        if used.saturating_add(1) > allowance {
            return false;
        }
        let b = self.current(now);
        b.retry = b.retry.saturating_add(1);
        true
    }

    /// Retries still allowed now.
    pub fn remaining(&self, percent: u32, now: i64) -> u64 {
        let (_, used) = self.totals(now);
        self.allowance(percent, now).saturating_sub(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floor_then_share_of_first_attempts() {
        let mut b = Budget::default();
        let t = 1_000_000;
        // Nothing sent yet: the floor allows 6 retries per window.
        for _ in 0..6 {
            assert!(b.try_retry(20, t));
        }
        assert!(!b.try_retry(20, t));
        // 10 first attempts add 2 more at 20 %.
        for _ in 0..10 {
            b.record_first(t);
        }
        assert!(b.try_retry(20, t));
        assert!(b.try_retry(20, t));
        assert!(!b.try_retry(20, t));
        assert_eq!(b.remaining(20, t), 0);
        // A minute later everything has left the window.
        assert_eq!(b.totals(t + WINDOW_MS), (0, 0));
        assert!(b.try_retry(20, t + WINDOW_MS));
        // 0 % leaves only the floor; 100 % allows one retry per first attempt.
        let mut b = Budget::default();
        for _ in 0..50 {
            b.record_first(t);
        }
        assert_eq!(b.allowance(0, t), FLOOR);
        assert_eq!(b.allowance(100, t), 50 + FLOOR);
    }

    #[test]
    fn the_window_slides_by_buckets() {
        let mut b = Budget::default();
        let t0 = 0;
        for _ in 0..6 {
            assert!(b.try_retry(0, t0));
        }
        assert!(!b.try_retry(0, t0 + 59_999));
        // At 60 s the first bucket leaves the window.
        assert!(b.try_retry(0, t0 + 60_000));
        assert!(b.buckets.len() <= BUCKETS);
    }

    #[test]
    fn survives_serialisation_and_a_clock_going_back() {
        let mut b = Budget::default();
        b.record_first(100_000);
        assert!(b.try_retry(20, 100_000));
        let json = serde_json::to_string(&b).unwrap();
        let back: Budget = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.totals(100_000), (1, 1));
        // Buckets from "the future" are dropped, not trusted.
        assert_eq!(back.totals(50_000), (0, 0));
    }

    proptest! {
        /// At every admitted retry, the retries in the window so far never
        /// exceed percent × first attempts + floor, for any sequence of
        /// first attempts and retries over time.
        #[test]
        fn retries_never_exceed_the_budget(
            percent in 0u32..=100,
            events in proptest::collection::vec((0i64..15_000, any::<bool>()), 1..400),
        ) {
            let mut b = Budget::default();
            let mut now = 5_000_000i64;
            // (time, is_first) of everything admitted.
            let mut log: Vec<(i64, bool)> = Vec::new();
            for (dt, first) in events {
                now += dt;
                if first {
                    b.record_first(now);
                    log.push((now, true));
                } else if b.try_retry(percent, now) {
                    log.push((now, false));
                    let start = now.div_euclid(BUCKET_MS) * BUCKET_MS - (BUCKETS as i64 - 1) * BUCKET_MS;
                    let firsts = log.iter().filter(|(t, f)| *f && *t >= start).count() as u64;
                    let retries = log.iter().filter(|(t, f)| !*f && *t >= start).count() as u64;
                    prop_assert!(retries <= firsts * u64::from(percent) / 100 + FLOOR,
                        "retries {} firsts {} percent {}", retries, firsts, percent);
                }
                prop_assert!(b.buckets.len() <= BUCKETS);
            }
        }
    }
}
