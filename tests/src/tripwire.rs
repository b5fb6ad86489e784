//! Tripwires: stop the world at an exact moment of a client's conversation
//! with a fake server, so a test can kill the client there.
//!
//! A tripwire names a request (method and path prefix, the `nth` match) and
//! a point: [`TripPoint::Received`] fires once the whole request has arrived
//! and holds the answer until the test releases it (the client has sent the
//! request and waits); [`TripPoint::Answered`] fires once the answer has
//! been written to the socket (the client has it, or is reading it). The
//! request is handled as usual either way: a real server applies a write it
//! received even when the client dies before reading the answer.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::http_util::lock;

/// Where in one request's life a tripwire fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripPoint {
    Received,
    Answered,
}

/// The longest a [`TripPoint::Received`] tripwire holds an answer when the
/// test never releases it (a test that panicked must not hang the server).
const HOLD_LIMIT: Duration = Duration::from_secs(30);

struct Armed {
    method: String,
    path_prefix: String,
    /// Match a path that contains `path_prefix` anywhere, not only first.
    anywhere: bool,
    /// Matches still to skip before firing.
    skip: usize,
    point: TripPoint,
    fired: SyncSender<String>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

/// The tripwire slot of one server.
#[derive(Default)]
pub(crate) struct Tripwires {
    armed: Mutex<Option<Armed>>,
}

/// The test's end of an armed tripwire.
pub struct TripHandle {
    fired: Receiver<String>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl TripHandle {
    /// Wait up to `limit` for the tripwire to fire; the request line
    /// (`METHOD /path`) when it did.
    pub fn wait(&self, limit: Duration) -> Option<String> {
        self.fired.recv_timeout(limit).ok()
    }

    /// Let a held answer go.
    pub fn release(&self) {
        let (open, cv) = &*self.gate;
        *lock(open) = true;
        cv.notify_all();
    }
}

impl Drop for TripHandle {
    fn drop(&mut self) {
        self.release();
    }
}

impl Tripwires {
    /// Arm the slot (replacing an unfired tripwire).
    pub(crate) fn arm(&self, method: &str, path_prefix: &str, nth: usize, point: TripPoint) -> TripHandle {
        self.arm_matching(method, path_prefix, false, nth, point)
    }

    /// [`Tripwires::arm`] on paths that contain `needle` anywhere.
    pub(crate) fn arm_containing(&self, method: &str, needle: &str, nth: usize, point: TripPoint) -> TripHandle {
        self.arm_matching(method, needle, true, nth, point)
    }

    fn arm_matching(&self, method: &str, pattern: &str, anywhere: bool, nth: usize, point: TripPoint) -> TripHandle {
        let (tx, rx) = mpsc::sync_channel(1);
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        *lock(&self.armed) = Some(Armed {
            method: method.to_string(),
            path_prefix: pattern.to_string(),
            anywhere,
            skip: nth.saturating_sub(1),
            point,
            fired: tx,
            gate: gate.clone(),
        });
        TripHandle { fired: rx, gate }
    }

    /// Called by the server at `point` of a request; fires (and, at
    /// `Received`, holds) when the armed tripwire matches.
    pub(crate) fn at(&self, point: TripPoint, method: &str, path: &str) {
        let armed = {
            let mut slot = lock(&self.armed);
            let matches = slot.as_ref().is_some_and(|a| {
                let found = if a.anywhere { path.contains(&a.path_prefix) } else { path.starts_with(&a.path_prefix) };
                a.point == point && a.method == method && found
            });
            if !matches {
                return;
            }
            match slot.as_mut() {
                Some(a) if a.skip > 0 => {
                    a.skip -= 1;
                    return;
                }
                _ => slot.take(),
            }
        };
        let Some(armed) = armed else { return };
        let _ = armed.fired.try_send(format!("{method} {path}"));
        if point == TripPoint::Received {
            let (open, cv) = &*armed.gate;
            let guard = lock(open);
            let _ = cv.wait_timeout_while(guard, HOLD_LIMIT, |open| !*open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_on_the_nth_match_only_and_holds_until_released() {
        let t = Arc::new(Tripwires::default());
        let h = t.arm("PUT", "/library/metadata/", 2, TripPoint::Received);
        t.at(TripPoint::Received, "GET", "/library/metadata/1");
        t.at(TripPoint::Answered, "PUT", "/library/metadata/1");
        t.at(TripPoint::Received, "PUT", "/library/metadata/1");
        assert_eq!(h.wait(Duration::from_millis(10)), None, "the first match is skipped");
        let server = {
            let t = t.clone();
            std::thread::spawn(move || t.at(TripPoint::Received, "PUT", "/library/metadata/2"))
        };
        assert_eq!(h.wait(Duration::from_secs(5)).as_deref(), Some("PUT /library/metadata/2"));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!server.is_finished(), "the answer is held");
        h.release();
        server.join().unwrap();
        // Fired once: later matches pass.
        t.at(TripPoint::Received, "PUT", "/library/metadata/3");
        assert_eq!(h.wait(Duration::from_millis(10)), None);
    }
}
