//! Outage history: one record per time the breaker was open, from the trip
//! to the close.
//!
//! A re-trip during recovery (HalfOpen → Open) stays the *same* outage (its
//! `trips` grows); the original opened a second record and left the first
//! one open forever. The last [`MAX_OUTAGES`] records are kept.
//!
//! `jobs_affected` is the number of changes held back by the outage: the
//! larger of the distinct jobs released because of it (tracked by id while
//! the outage is open, up to [`MAX_TRACKED_IDS`]) and the peak number of
//! queued changes seen while it was open.
//!
//! Metrics over a window (default 30 days, never longer than the time the
//! history has been kept), manual opens excluded:
//!
//! - `count`: outages overlapping the window (an ongoing one included);
//! - `downtime`: their time inside the window;
//! - `MTTR`: mean full duration of the completed ones;
//! - `MTBF`: uptime in the window ÷ count (mean time between failures);
//! - `availability`: uptime ÷ window × 100.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

use crate::host::OutageWindow;
use crate::text::{clip, duration_text, utc_text};

pub const MAX_OUTAGES: usize = 100;
pub const MAX_TRACKED_IDS: usize = 256;
pub const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    pub start_ms: i64,
    #[serde(default)]
    pub end_ms: Option<i64>,
    /// Trips in this outage (1 + re-trips during recovery).
    #[serde(default)]
    pub trips: u32,
    #[serde(default)]
    pub jobs_affected: u64,
    /// Opened by hand (`breaker_open`): not counted in the metrics.
    #[serde(default)]
    pub manual: bool,
    /// Why it started (the failure that tripped the breaker).
    #[serde(default)]
    pub cause: String,
    /// Distinct jobs released because of it (while open only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<u64>,
    #[serde(default)]
    pub peak_pending: u64,
}

impl Outage {
    pub fn duration_ms(&self, now: i64) -> i64 {
        self.end_ms.unwrap_or(now).saturating_sub(self.start_ms).max(0)
    }

    fn affected(&self) -> u64 {
        self.jobs_affected.max(self.peak_pending).max(self.released.len() as u64)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Oldest first.
    #[serde(default)]
    pub outages: Vec<Outage>,
}

/// Figures over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub window_ms: i64,
    pub count: u32,
    pub ongoing: bool,
    pub downtime_ms: i64,
    pub mttr_ms: Option<i64>,
    pub mtbf_ms: Option<i64>,
    pub availability_pct: f64,
}

impl History {
    /// The open outage, if any.
    pub fn current(&self) -> Option<&Outage> {
        self.outages.last().filter(|o| o.end_ms.is_none())
    }

    fn current_mut(&mut self) -> Option<&mut Outage> {
        self.outages.last_mut().filter(|o| o.end_ms.is_none())
    }

    /// The breaker opened (or re-opened).
    pub fn opened(&mut self, now: i64, cause: &str, manual: bool) {
        if let Some(o) = self.current_mut() {
            o.trips = o.trips.saturating_add(1);
            return;
        }
        self.outages.push(Outage { start_ms: now, trips: 1, manual, cause: clip(cause, 300), ..Outage::default() });
        if self.outages.len() > MAX_OUTAGES {
            let extra = self.outages.len() - MAX_OUTAGES;
            self.outages.drain(..extra);
        }
    }

    /// The breaker closed: the open outage ends.
    pub fn closed(&mut self, now: i64) -> Option<Outage> {
        let o = self.current_mut()?;
        o.end_ms = Some(now.max(o.start_ms));
        o.jobs_affected = o.affected();
        o.released.clear();
        Some(o.clone())
    }

    /// A job was released because of the open outage.
    pub fn note_released(&mut self, job_id: u64) {
        if let Some(o) = self.current_mut()
            && !o.released.contains(&job_id)
        {
            if o.released.len() < MAX_TRACKED_IDS {
                o.released.push(job_id);
            } else {
                o.jobs_affected = o.jobs_affected.max(o.released.len() as u64).saturating_add(1);
            }
        }
    }

    /// Queued changes seen while the outage is open.
    pub fn note_pending(&mut self, pending: u64) -> bool {
        match self.current_mut() {
            Some(o) if pending > o.peak_pending => {
                o.peak_pending = pending;
                true
            }
            _ => false,
        }
    }

    /// Repair what a crash or an old version may have left: only the last
    /// record may be open; ends never precede starts; at most 100 records.
    pub fn sanitise(&mut self) {
        let n = self.outages.len();
        for i in 0..n.saturating_sub(1) {
            let next_start = self.outages[i + 1].start_ms;
            let o = &mut self.outages[i];
            if o.end_ms.is_none() {
                o.end_ms = Some(next_start.max(o.start_ms));
                o.released.clear();
            }
        }
        for o in &mut self.outages {
            if let Some(end) = o.end_ms {
                o.end_ms = Some(end.max(o.start_ms));
            }
        }
        if n > MAX_OUTAGES {
            self.outages.drain(..n - MAX_OUTAGES);
        }
    }

    /// Completed outages, newest first.
    pub fn completed(&self) -> impl Iterator<Item = &Outage> {
        self.outages.iter().rev().filter(|o| o.end_ms.is_some())
    }

    /// Figures over the `window_ms` before `now`, but not before
    /// `since_ms` (when the history started).
    pub fn metrics(&self, now: i64, window_ms: i64, since_ms: i64) -> Metrics {
        let start = now.saturating_sub(window_ms.max(0)).max(since_ms.min(now));
        let window = now.saturating_sub(start).max(0);
        let mut count = 0u32;
        let mut downtime = 0i64;
        let mut ongoing = false;
        let (mut repaired, mut repair_total) = (0i64, 0i64);
        for o in self.outages.iter().filter(|o| !o.manual) {
            let end = o.end_ms.unwrap_or(now);
            if end < start || o.start_ms > now {
                continue;
            }
            count += 1;
            downtime += end.min(now).saturating_sub(o.start_ms.max(start)).max(0);
            match o.end_ms {
                Some(_) => {
                    repaired += 1;
                    repair_total += o.duration_ms(now);
                }
                None => ongoing = true,
            }
        }
        let downtime = downtime.min(window);
        let uptime = window - downtime;
        Metrics {
            window_ms: window,
            count,
            ongoing,
            downtime_ms: downtime,
            mttr_ms: (repaired > 0).then(|| repair_total / repaired),
            mtbf_ms: (count > 0).then(|| uptime / i64::from(count)),
            availability_pct: if window > 0 { uptime as f64 * 100.0 / window as f64 } else { 100.0 },
        }
    }

    /// `<start_ms> <end_ms>` of the `index`-th most recent completed outage.
    /// The completed outages, most recent first, as the host sees them.
    pub fn windows(&self) -> Vec<OutageWindow> {
        self.completed()
            .map(|o| OutageWindow {
                started_ms: o.start_ms,
                ended_ms: o.end_ms.unwrap_or(o.start_ms),
                cause: o.cause.clone(),
            })
            .collect()
    }

    /// The `outage_summary` report.
    pub fn report(&self, now: i64, days: u32, since_ms: i64) -> String {
        let m = self.metrics(now, i64::from(days) * DAY_MS, since_ms);
        let mut out = format!("Plex outages over the last {days} day(s)");
        if m.window_ms < i64::from(days) * DAY_MS {
            let _ = write!(out, " (recorded since {})", utc_text(now - m.window_ms));
        }
        out.push_str(":\n");
        let _ = writeln!(out, "  {}", metrics_line(&m));
        let listed: Vec<&Outage> = self
            .outages
            .iter()
            .rev()
            .filter(|o| o.end_ms.is_none_or(|e| e >= now - i64::from(days) * DAY_MS))
            .take(20)
            .collect();
        if listed.is_empty() {
            out.push_str("No outages recorded in that time.");
            return out;
        }
        out.push_str("Outages, newest first:\n");
        for (i, o) in listed.iter().enumerate() {
            let _ = write!(out, "  {}. {} → ", i + 1, utc_text(o.start_ms));
            match o.end_ms {
                Some(end) => {
                    let _ = write!(out, "{} ({})", utc_text(end), duration_text(o.duration_ms(now)));
                }
                None => {
                    let _ = write!(out, "ongoing ({} so far)", duration_text(o.duration_ms(now)));
                }
            }
            let _ = write!(out, "; {} trip(s); {} change(s) held back", o.trips.max(1), o.affected());
            if o.manual {
                out.push_str("; opened by hand");
            }
            if !o.cause.is_empty() {
                let _ = write!(out, "; cause: {}", clip(&o.cause, 160));
            }
            out.push('\n');
        }
        out.trim_end().to_string()
    }
}

/// `2 outage(s), downtime 5m 0s, MTTR 2m 30s, MTBF 14d 23h, availability 99.988 %`.
pub fn metrics_line(m: &Metrics) -> String {
    let opt = |v: Option<i64>| v.map_or_else(|| "n/a".to_string(), duration_text);
    format!(
        "{} outage(s){}, downtime {}, MTTR {}, MTBF {}, availability {:.3} %",
        m.count,
        if m.ongoing { " (one ongoing)" } else { "" },
        duration_text(m.downtime_ms),
        opt(m.mttr_ms),
        opt(m.mtbf_ms),
        m.availability_pct
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;
    const H: i64 = 3_600_000;
    const MIN: i64 = 60_000;

    #[test]
    fn one_outage_per_open_to_close_even_with_re_trips() {
        let mut h = History::default();
        h.opened(T0, "refused", false);
        // Recovery fails twice: HalfOpen → Open, still the same outage.
        h.opened(T0 + MIN, "trial failed", false);
        h.opened(T0 + 3 * MIN, "trial failed", false);
        h.note_released(7);
        h.note_released(7);
        h.note_released(8);
        h.note_pending(1);
        assert_eq!(h.outages.len(), 1);
        let closed = h.closed(T0 + 10 * MIN).unwrap();
        assert_eq!(closed.trips, 3);
        assert_eq!(closed.jobs_affected, 2);
        assert_eq!(closed.duration_ms(T0 + H), 10 * MIN);
        assert!(closed.released.is_empty());
        assert!(h.current().is_none());
        // Closing again does nothing; the next trip is a new outage.
        assert!(h.closed(T0 + 11 * MIN).is_none());
        h.opened(T0 + 20 * MIN, "503", false);
        assert_eq!(h.outages.len(), 2);
        let windows = h.windows();
        assert_eq!(windows.len(), 1);
        assert_eq!((windows[0].started_ms, windows[0].ended_ms), (T0, T0 + 10 * MIN));
    }

    #[test]
    fn peak_pending_counts_changes_held_back() {
        let mut h = History::default();
        h.opened(T0, "refused", false);
        h.note_released(1);
        assert!(h.note_pending(40));
        assert!(!h.note_pending(12));
        assert_eq!(h.closed(T0 + 1).unwrap().jobs_affected, 40);
        assert!(!h.note_pending(99), "no open outage");
    }

    #[test]
    fn metrics_on_a_hand_made_history() {
        let now = T0 + 40 * DAY_MS;
        let mk = |start: i64, end: Option<i64>, manual: bool| Outage {
            start_ms: start,
            end_ms: end,
            trips: 1,
            manual,
            ..Outage::default()
        };
        let h = History {
            outages: vec![
                // Before the window: not counted.
                mk(T0 + 5 * DAY_MS, Some(T0 + 5 * DAY_MS + H), false),
                // Straddles the window start: 30 min inside, 1 h long.
                mk(T0 + 10 * DAY_MS - 30 * MIN, Some(T0 + 10 * DAY_MS + 30 * MIN), false),
                mk(T0 + 20 * DAY_MS, Some(T0 + 20 * DAY_MS + 2 * H), false),
                // Opened by hand: not an outage of Plex.
                mk(T0 + 25 * DAY_MS, Some(T0 + 25 * DAY_MS + H), true),
                // Ongoing for 10 minutes.
                mk(now - 10 * MIN, None, false),
            ],
        };
        let m = h.metrics(now, 30 * DAY_MS, T0);
        assert_eq!(m.window_ms, 30 * DAY_MS);
        assert_eq!(m.count, 3);
        assert!(m.ongoing);
        assert_eq!(m.downtime_ms, 30 * MIN + 2 * H + 10 * MIN);
        assert_eq!(m.mttr_ms, Some(90 * MIN));
        assert_eq!(m.mtbf_ms, Some((30 * DAY_MS - 160 * MIN) / 3));
        assert_eq!(m.mtbf_ms, Some(860_800_000));
        assert!((m.availability_pct - 99.629_629_6).abs() < 1e-6, "{}", m.availability_pct);
        // A history kept for only 1 day is judged over that day.
        let m = h.metrics(now, 30 * DAY_MS, now - DAY_MS);
        assert_eq!(m.window_ms, DAY_MS);
        assert_eq!((m.count, m.downtime_ms), (1, 10 * MIN));
        assert_eq!(m.mttr_ms, None);
        // No outages: 100 %.
        let m = History::default().metrics(now, 30 * DAY_MS, T0);
        assert_eq!((m.count, m.downtime_ms, m.mtbf_ms, m.availability_pct), (0, 0, None, 100.0));
        let report = h.report(now, 30, T0);
        assert!(
            report.contains(
                "3 outage(s) (one ongoing), downtime 2h 40m, MTTR 1h 30m, MTBF 9d 23h, availability 99.630 %"
            ),
            "{report}"
        );
        assert!(report.contains("ongoing (10m 0s so far)"), "{report}");
        assert!(report.contains("opened by hand"), "{report}");
        assert!(!report.contains(&utc_text(T0 + 5 * DAY_MS)), "outside the window: {report}");
    }

    #[test]
    fn history_is_bounded_and_repaired() {
        let mut h = History::default();
        for i in 0..150 {
            h.opened(T0 + i * H, "x", false);
            h.closed(T0 + i * H + MIN);
        }
        assert_eq!(h.outages.len(), MAX_OUTAGES);
        assert_eq!(h.outages[0].start_ms, T0 + 50 * H);
        // Two open records (an old version's bug): the first is closed at the
        // second's start.
        let mut broken = History {
            outages: vec![
                Outage { start_ms: 10, ..Outage::default() },
                Outage { start_ms: 50, end_ms: Some(40), ..Outage::default() },
                Outage { start_ms: 60, ..Outage::default() },
            ],
        };
        broken.sanitise();
        assert_eq!(broken.outages[0].end_ms, Some(50));
        assert_eq!(broken.outages[1].end_ms, Some(50));
        assert_eq!(broken.outages[2].end_ms, None);
        let mut many = h.clone();
        for _ in 0..10 {
            many.outages.push(Outage::default());
        }
        many.sanitise();
        assert_eq!(many.outages.len(), MAX_OUTAGES);
    }

    #[test]
    fn ids_tracked_up_to_the_cap_then_counted() {
        let mut h = History::default();
        h.opened(T0, "x", false);
        for id in 0..(MAX_TRACKED_IDS as u64 + 10) {
            h.note_released(id);
        }
        assert_eq!(h.current().unwrap().released.len(), MAX_TRACKED_IDS);
        assert_eq!(h.closed(T0 + 1).unwrap().jobs_affected, MAX_TRACKED_IDS as u64 + 10);
    }
}
