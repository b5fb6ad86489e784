//! Files Plex has not scanned yet (`trigger_plex_scan`).
//!
//! When no Plex item has a scene's file, the policy asks Plex once to scan
//! the file's folder (`GET /library/sections/{sid}/refresh?path=<folder>`)
//! and parks the job (`release`, the attempt is not counted) instead of
//! burning retries. A parked job comes back every few seconds and looks at
//! `GET /activities`: while a scan of the section runs it is parked again;
//! once no scan runs (or after [`MAX_WAIT_MS`], the bounded fallback for a
//! Plex that does not report the scan), it looks the file up again. If the
//! file is still missing after the scan ended, the job falls back to the
//! ordinary not-in-Plex retries, and the folder is not scanned again for
//! [`RESCAN_AFTER_MS`]: no storm of scans, nothing dead-lettered because a
//! scan is slow.
//!
//! The scans asked for are kept in the policy state under [`STATE_KEY`] (a
//! small JSON map, pruned as it is written), so a later drain knows them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plex_json::Activity;

pub const STATE_KEY: &str = "scans";
/// The longest a job waits for one scan.
pub const MAX_WAIT_MS: i64 = 10 * 60_000;
/// A folder whose scan ended is not scanned again for this long.
pub const RESCAN_AFTER_MS: i64 = 60 * 60_000;
/// Plex needs a moment to start a scan; before that, "no activity" does not
/// mean "done".
pub const SETTLE_MS: i64 = 2_000;
/// Entries kept at most.
const MAX_ENTRIES: usize = 500;

/// One requested scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    /// When it was requested.
    pub at: i64,
    /// When the policy saw it end (or gave up waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<i64>,
}

/// Scans by `section|folder`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scans(pub BTreeMap<String, Scan>);

/// What to do about a missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Ask Plex to scan the folder, then park the job.
    Request,
    /// A scan is running (or just started): park the job until this time.
    Park(i64),
    /// The scan is over (or was done recently): look again, then retry as
    /// usual if the file is still missing.
    LookAgain,
}

pub fn key(section: &str, folder: &str) -> String {
    format!("{section}|{folder}")
}

/// The folder of a file path (either separator); the path itself if it has
/// none.
pub fn folder_of(path: &str) -> &str {
    match path.rfind(['/', '\\']) {
        Some(0) => &path[..1],
        Some(i) => &path[..i],
        None => path,
    }
}

/// Whether `activities` show a scan of `section` (an activity without a
/// section counts: better to wait a little than to give up early).
pub fn scanning(activities: &[Activity], section: &str) -> bool {
    activities.iter().any(|a| {
        (a.kind.starts_with("library.update.section") || a.kind.starts_with("library.refresh"))
            && a.section.as_deref().is_none_or(|s| s == section)
    })
}

/// How long a parked job waits before it looks again: a quarter of the time
/// the scan has taken so far, 2 s to 30 s.
pub fn poll_ms(elapsed_ms: i64) -> i64 {
    (elapsed_ms / 4).clamp(2_000, 30_000)
}

impl Scans {
    pub fn parse(text: Option<&str>) -> Scans {
        text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Before the file is looked up again: is a scan of its folder pending?
    /// `running` is asked only when it matters (it costs a request).
    pub fn pending(&mut self, key: &str, now: i64, running: impl FnOnce() -> bool) -> Option<i64> {
        let scan = self.0.get_mut(key)?;
        if scan.ended.is_some() {
            return None;
        }
        let elapsed = now.saturating_sub(scan.at);
        if elapsed < SETTLE_MS {
            return Some(scan.at + SETTLE_MS);
        }
        if elapsed < MAX_WAIT_MS && running() {
            return Some(now + poll_ms(elapsed));
        }
        scan.ended = Some(now);
        None
    }

    /// After the file was not found: scan, or retry as usual.
    pub fn decide(&self, key: &str, now: i64) -> Decision {
        match self.0.get(key) {
            None => Decision::Request,
            Some(Scan { ended: None, at }) => Decision::Park(at + SETTLE_MS),
            Some(Scan { ended: Some(end), .. }) if now.saturating_sub(*end) >= RESCAN_AFTER_MS => Decision::Request,
            Some(_) => Decision::LookAgain,
        }
    }

    /// A scan was requested now. Old entries are dropped.
    pub fn requested(&mut self, key: &str, now: i64) {
        self.0.retain(|_, s| now.saturating_sub(s.ended.unwrap_or(s.at)) < RESCAN_AFTER_MS);
        while self.0.len() >= MAX_ENTRIES {
            let oldest = self.0.iter().min_by_key(|(_, s)| s.at).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.0.remove(&k),
                None => break,
            };
        }
        self.0.insert(key.to_string(), Scan { at: now, ended: None });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(kind: &str, section: Option<&str>) -> Activity {
        Activity { kind: kind.into(), section: section.map(String::from) }
    }

    #[test]
    fn one_scan_then_park_then_look_again() {
        let mut s = Scans::default();
        let k = key("1", "/data/New");
        assert_eq!(s.decide(&k, 0), Decision::Request);
        s.requested(&k, 1_000);
        assert_eq!(s.decide(&k, 1_500), Decision::Park(3_000));
        // Settling: no request needed to know it is too early.
        assert_eq!(s.pending(&k, 1_500, || panic!("not asked")), Some(3_000));
        // Running: parked, polling at a quarter of the elapsed time (≥ 2 s).
        assert_eq!(s.pending(&k, 41_000, || true), Some(41_000 + 10_000));
        // Ended: look again; the same folder is not scanned again soon.
        assert_eq!(s.pending(&k, 50_000, || false), None);
        assert_eq!(s.decide(&k, 60_000), Decision::LookAgain);
        assert_eq!(s.decide(&k, 50_000 + RESCAN_AFTER_MS), Decision::Request);
        // Round trip through the state text.
        assert_eq!(Scans::parse(Some(&s.to_json())), s);
        assert_eq!(Scans::parse(Some("garbage")), Scans::default());
    }

    #[test]
    fn a_scan_plex_never_reports_ends_after_the_bounded_wait() {
        let mut s = Scans::default();
        let k = key("1", "/x");
        s.requested(&k, 0);
        assert!(s.pending(&k, MAX_WAIT_MS - 1, || true).is_some());
        assert_eq!(s.pending(&k, MAX_WAIT_MS, || true), None);
    }

    #[test]
    fn activities_and_folders() {
        let a = [act("library.update.section", Some("2")), act("media.generate.thumbs", None)];
        assert!(scanning(&a, "2"));
        assert!(!scanning(&a, "1"));
        assert!(scanning(&[act("library.update.section", None)], "1"));
        assert_eq!(folder_of("/data/New/a.mp4"), "/data/New");
        assert_eq!(folder_of("D:\\Media\\a.mp4"), "D:\\Media");
        assert_eq!(folder_of("/a.mp4"), "/");
    }

    #[test]
    fn old_entries_are_pruned() {
        let mut s = Scans::default();
        s.requested("a", 0);
        s.0.get_mut("a").unwrap().ended = Some(10);
        s.requested("b", RESCAN_AFTER_MS + 20);
        assert!(!s.0.contains_key("a") && s.0.contains_key("b"));
    }
}
