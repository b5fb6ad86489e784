//! Fault injection for the fake Plex server: outages, error statuses,
//! garbage bodies, connection resets and delays.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use crate::http_util::{ListenerSwitch, Reply, Response, lock};

/// The XML body PMS answers with while it runs database migrations.
pub const MAINTENANCE_BODY: &str = r#"<Response code="503" title="Maintenance" status="Plex Media Server is currently running database migrations."/>"#;

/// The body served by [`FaultMode::Garbage`]: a 200 whose JSON is cut short.
pub const GARBAGE_BODY: &str = r#"{"MediaContainer":{"size":3,"Metadata":[{"ratingKey":"#;

/// How the server misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultMode {
    /// Normal operation.
    Up,
    /// The listener is closed: connects are refused and open connections are
    /// dropped, like a stopped process. Set back to [`FaultMode::Up`] (or any
    /// other mode) to listen again on the same port. Used with
    /// [`Faults::fail_next`] it acts like [`FaultMode::Reset`] for those
    /// requests (an accepted request cannot be refused any more).
    Refuse,
    /// Answer every request with this status and body (`Retry-After` header
    /// when `retry_after_secs` is set). `/identity` is spared unless
    /// `include_identity`.
    Status { code: u16, retry_after_secs: Option<u32>, body: String, include_identity: bool },
    /// 200 with a truncated, unparsable JSON body.
    Garbage,
    /// Accept the request, then close the connection without answering.
    Reset,
    /// Wait this long, then answer normally.
    Delay(Duration),
}

impl FaultMode {
    /// 503 "Maintenance" with PMS's XML body, `/identity` included (as during
    /// database migrations).
    pub fn maintenance() -> FaultMode {
        FaultMode::Status {
            code: 503,
            retry_after_secs: None,
            body: MAINTENANCE_BODY.to_string(),
            include_identity: true,
        }
    }

    /// 429 with `Retry-After: secs` and an HTML body; `/identity` spared.
    pub fn too_many_requests(retry_after_secs: u32) -> FaultMode {
        FaultMode::Status {
            code: 429,
            retry_after_secs: Some(retry_after_secs),
            body: crate::http_util::error_html(429),
            include_identity: false,
        }
    }

    /// `code` with the server's generic HTML error page; `/identity` spared.
    pub fn status(code: u16) -> FaultMode {
        FaultMode::Status {
            code,
            retry_after_secs: None,
            body: crate::http_util::error_html(code),
            include_identity: false,
        }
    }

    fn applies_to(&self, path: &str) -> bool {
        match self {
            FaultMode::Up => false,
            FaultMode::Status { include_identity, .. } => *include_identity || path != "/identity",
            _ => true,
        }
    }
}

/// What the server does with one request after consulting the faults.
pub(crate) enum Injected {
    /// Answer with this instead of handling the request.
    Reply(Reply),
    /// Sleep, then handle the request normally.
    Delay(Duration),
}

#[derive(Debug)]
struct FaultState {
    mode: FaultMode,
    /// One-shot faults: (remaining requests, mode), applied before `mode`.
    next: VecDeque<(usize, FaultMode)>,
}

/// Fault controller shared between a test and the fake's server threads.
pub struct Faults {
    /// Fast path: false while nothing is configured.
    armed: AtomicBool,
    state: Mutex<FaultState>,
    faulted: AtomicU64,
    listener: Mutex<Option<Weak<dyn ListenerSwitch>>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").field("state", &*lock(&self.state)).field("faulted", &self.faulted_count()).finish()
    }
}

impl Faults {
    pub(crate) fn new() -> Faults {
        Faults {
            armed: AtomicBool::new(false),
            state: Mutex::new(FaultState { mode: FaultMode::Up, next: VecDeque::new() }),
            faulted: AtomicU64::new(0),
            listener: Mutex::new(None),
        }
    }

    pub(crate) fn attach(&self, switch: Weak<dyn ListenerSwitch>) {
        *lock(&self.listener) = Some(switch);
    }

    /// Switches the persistent mode. Leaving or entering [`FaultMode::Refuse`]
    /// closes or re-opens the listener (same port) before this returns.
    ///
    /// # Panics
    /// If the port cannot be bound again (use [`Faults::try_set`] to handle that).
    pub fn set(&self, mode: FaultMode) {
        if let Err(e) = self.try_set(mode) {
            panic!("fake server: cannot listen again on its port: {e}");
        }
    }

    /// Like [`Faults::set`] but reports a failed re-bind.
    pub fn try_set(&self, mode: FaultMode) -> io::Result<()> {
        let refuse = mode == FaultMode::Refuse;
        {
            let mut st = lock(&self.state);
            st.mode = mode;
            self.rearm(&st);
        }
        let switch = lock(&self.listener).as_ref().and_then(Weak::upgrade);
        match switch {
            Some(s) => s.set_listening(!refuse),
            None => Ok(()),
        }
    }

    /// The persistent mode.
    pub fn mode(&self) -> FaultMode {
        lock(&self.state).mode.clone()
    }

    /// Applies `mode` to the next `n` requests it concerns, then reverts to
    /// the persistent mode. Calls queue up in order.
    pub fn fail_next(&self, n: usize, mode: FaultMode) {
        if n == 0 || mode == FaultMode::Up {
            return;
        }
        let mut st = lock(&self.state);
        st.next.push_back((n, mode));
        self.rearm(&st);
    }

    /// Requests still to be hit by [`Faults::fail_next`] faults.
    pub fn pending(&self) -> usize {
        lock(&self.state).next.iter().map(|(n, _)| n).sum()
    }

    /// Back to [`FaultMode::Up`], dropping queued one-shot faults.
    pub fn clear(&self) {
        lock(&self.state).next.clear();
        self.set(FaultMode::Up);
    }

    /// Requests that were answered by a fault (error status, garbage, reset,
    /// delay). Connections refused by the OS while in `Refuse` are invisible
    /// to the server and not counted.
    pub fn faulted_count(&self) -> u64 {
        self.faulted.load(Ordering::Relaxed)
    }

    fn rearm(&self, st: &FaultState) {
        let armed = st.mode != FaultMode::Up || !st.next.is_empty();
        self.armed.store(armed, Ordering::Release);
    }

    /// Decides the fault for one request to `path`, consuming a one-shot
    /// fault if one applies.
    pub(crate) fn take(&self, path: &str) -> Option<Injected> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let mode = {
            let mut st = lock(&self.state);
            let one_shot = match st.next.front_mut() {
                Some((n, m)) if m.applies_to(path) => {
                    let m = m.clone();
                    *n -= 1;
                    if *n == 0 {
                        st.next.pop_front();
                    }
                    self.rearm(&st);
                    Some(m)
                }
                _ => None,
            };
            match one_shot {
                Some(FaultMode::Refuse) => FaultMode::Reset,
                Some(m) => m,
                None if st.mode.applies_to(path) && st.mode != FaultMode::Refuse => st.mode.clone(),
                None => return None,
            }
        };
        self.faulted.fetch_add(1, Ordering::Relaxed);
        Some(match mode {
            FaultMode::Up | FaultMode::Refuse | FaultMode::Reset => Injected::Reply(Reply::Reset),
            FaultMode::Delay(d) => Injected::Delay(d),
            FaultMode::Garbage => {
                Injected::Reply(Reply::Send(Response::with_body(200, "application/json", GARBAGE_BODY)))
            }
            FaultMode::Status { code, retry_after_secs, body, .. } => {
                let trimmed = body.trim_start();
                let ctype = if trimmed.starts_with("<html") || trimmed.starts_with("<!DOCTYPE") {
                    "text/html"
                } else if trimmed.starts_with('<') {
                    "text/xml;charset=utf-8"
                } else if trimmed.starts_with('{') {
                    "application/json"
                } else {
                    "text/plain"
                };
                let mut resp = Response::with_body(code, ctype, body);
                if let Some(secs) = retry_after_secs {
                    resp = resp.header("Retry-After", secs.to_string());
                }
                Injected::Reply(Reply::Send(resp))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(i: Option<Injected>) -> Option<u16> {
        match i {
            Some(Injected::Reply(r)) => Some(r.status()),
            Some(Injected::Delay(_)) => Some(1),
            None => None,
        }
    }

    #[test]
    fn one_shot_faults_are_consumed_then_revert() {
        let f = Faults::new();
        assert!(f.take("/library/sections").is_none());
        f.fail_next(2, FaultMode::status(500));
        f.fail_next(1, FaultMode::Reset);
        assert_eq!(f.pending(), 3);
        // /identity is spared by Status faults and does not consume them.
        assert_eq!(status_of(f.take("/identity")), None);
        assert_eq!(status_of(f.take("/x")), Some(500));
        assert_eq!(status_of(f.take("/x")), Some(500));
        assert_eq!(status_of(f.take("/x")), Some(0));
        assert_eq!(status_of(f.take("/x")), None);
        assert_eq!(f.faulted_count(), 3);
    }

    #[test]
    fn maintenance_includes_identity_and_sets_xml() {
        let f = Faults::new();
        f.set(FaultMode::maintenance());
        match f.take("/identity") {
            Some(Injected::Reply(Reply::Send(r))) => {
                assert_eq!(r.status, 503);
                assert!(String::from_utf8_lossy(&r.body).contains("Maintenance"));
                assert!(r.headers.iter().any(|(_, v)| v.starts_with("text/xml")));
            }
            _ => panic!("expected a 503"),
        }
        f.set(FaultMode::too_many_requests(7));
        assert!(f.take("/identity").is_none());
        match f.take("/") {
            Some(Injected::Reply(Reply::Send(r))) => {
                assert_eq!(r.status, 429);
                assert!(r.headers.contains(&("Retry-After".to_string(), "7".to_string())));
            }
            _ => panic!("expected a 429"),
        }
    }
}
