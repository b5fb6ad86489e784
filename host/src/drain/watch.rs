//! What a real drain watches between steps and while it sleeps:
//!
//! - the events hooks record: handed to the policy before the next step,
//!   and a sleeping drain wakes for them;
//! - Stash, every [`WATCH_EVERY_MS`]: changed plugin settings end the drain
//!   so it starts again with them (a fixed token syncs within seconds),
//!   except a changed `policy_path` alone, which the session switches to
//!   between two steps without ending the drain (hot swap); a
//!   scan or identify job pauses stepping (hooks still record); Stash
//!   unreachable for [`STASH_GONE_MS`] ends the drainer (the next hook or
//!   task starts a new one);
//! - how syncing stands, persisted for hooks to tell the user
//!   (`crate::condition`).

use super::events;
use super::{Gate, Observer, Stopped, Wake};
use crate::condition::{self, Condition};
use crate::env::Chooser;
use crate::net::stash::{StashClient, StashError, Watched};
use crate::runtime::session::PolicySession;
use serde_json::{Map, Value};
use std::sync::Arc;

/// How often the drain asks Stash for its settings and job queue.
pub const WATCH_EVERY_MS: i64 = 5_000;
/// Stash unreachable this long ends the drain.
pub const STASH_GONE_MS: i64 = 60_000;
/// How often the condition is saved for hooks.
const CONDITION_EVERY_MS: i64 = 2_000;
/// How long a due look waits for the policy's next scene query to carry it
/// (`StashClient::want_watch`) before asking Stash on its own. It waits only
/// while the policy is reading Stash (`StashClient::rides_soon`); otherwise
/// it asks at once.
pub const RIDE_WAIT_MS: i64 = 500;

pub struct Watcher {
    stash: Arc<StashClient>,
    plugin_id: String,
    /// The settings the session started with.
    settings: Map<String, Value>,
    cadence: Cadence,
    next_condition_ms: i64,
    /// Since when Stash has not answered.
    stash_lost_since: Option<i64>,
    /// The Stash job that pauses stepping.
    busy: Option<String>,
    /// Turns a changed `policy_path` into the policy to switch to.
    chooser: Chooser,
}

impl Watcher {
    pub fn new(
        stash: Arc<StashClient>,
        plugin_id: &str,
        settings: Map<String, Value>,
        chooser: Chooser,
        now_ms: i64,
    ) -> Watcher {
        Watcher {
            stash,
            plugin_id: plugin_id.to_string(),
            settings,
            cadence: Cadence { next_ms: now_ms, riding_until: None, looked: false },
            next_condition_ms: now_ms,
            stash_lost_since: None,
            busy: None,
            chooser,
        }
    }

    /// Look at Stash, if it is time: what the policy's last scene query
    /// carried, or else a request of its own.
    fn look(&mut self, session: &mut PolicySession, now_ms: i64) -> Option<Stopped> {
        let carried = if self.cadence.riding() { self.stash.take_watch() } else { None };
        match (self.cadence.due(now_ms, carried.is_some(), self.stash.rides_soon()), carried) {
            (Due::Carried, Some(watched)) => self.judge(session, now_ms, Ok(watched)),
            (Due::Ride, _) => {
                self.stash.want_watch(&self.plugin_id);
                None
            }
            (Due::Ask, _) => {
                let answer = self.stash.watch(&self.plugin_id);
                self.judge(session, now_ms, answer)
            }
            _ => None,
        }
    }

    /// Act on what Stash said.
    fn judge(
        &mut self,
        session: &mut PolicySession,
        now_ms: i64,
        answer: Result<Watched, StashError>,
    ) -> Option<Stopped> {
        match answer {
            Ok((settings, busy)) => {
                if let Some(since) = self.stash_lost_since.take() {
                    crate::info!("Stash answers again (after {}).", crate::text::duration_text(now_ms - since));
                }
                if settings != self.settings && only_policy_path_differs(&settings, &self.settings) {
                    crate::info!(
                        "The policy_path setting changed in Stash; the policy is switched before the next step."
                    );
                    if let Some(watch) = session.watch_mut() {
                        watch.set_choice(self.chooser.choose(&settings));
                    }
                    self.settings = settings.clone();
                }
                if settings != self.settings {
                    crate::info!("The plugin settings changed in Stash; the drain starts again with them.");
                    return Some(Stopped::SettingsChanged);
                }
                match (&self.busy, &busy) {
                    (None, Some(job)) => {
                        crate::info!("Stash is busy ({job}); syncing waits until it finishes. Changes are recorded.")
                    }
                    (Some(_), None) => crate::info!("Stash's job finished; syncing goes on."),
                    _ => {}
                }
                self.busy = busy;
                None
            }
            Err(e) => {
                let since = *self.stash_lost_since.get_or_insert(now_ms);
                if since == now_ms {
                    crate::warn!("Stash does not answer ({e}); the changes wait.");
                }
                (now_ms - since >= STASH_GONE_MS).then_some(Stopped::StashGone)
            }
        }
    }

    /// Save how syncing stands for hooks, if it is time.
    fn note_condition(&mut self, session: &mut PolicySession, now_ms: i64) {
        if now_ms < self.next_condition_ms {
            return;
        }
        self.next_condition_ms = now_ms + CONDITION_EVERY_MS;
        let Ok(Ok(status)) = session.status() else { return };
        let Some(state) = session.state_mut() else { return };
        let queue = &mut state.queue.queue;
        let waiting = queue.counts(now_ms).map(|c| c.ready + c.waiting).unwrap_or(0);
        condition::persist(queue, &Condition::from_policy(&status, waiting));
    }

    /// Save how syncing stands now (the drain is ending).
    pub fn note_condition_now(&mut self, session: &mut PolicySession, now_ms: i64) {
        self.next_condition_ms = now_ms;
        self.note_condition(session, now_ms);
    }

    fn has_events(session: &PolicySession) -> bool {
        session.state().is_some_and(|s| s.queue.queue.has_events().unwrap_or(false))
    }
}

/// When the watch looks at Stash. Pure, so the tests drive it by numbers.
#[derive(Debug)]
struct Cadence {
    next_ms: i64,
    /// A due look waiting for a scene query to carry it, until then.
    riding_until: Option<i64>,
    /// The first look asks at once.
    looked: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Due {
    /// Not time yet (or a ride is still waiting for a scene query).
    Not,
    /// The scene query carried the look.
    Carried,
    /// Time: let the next scene query carry the look (the policy is
    /// reading Stash: one comes within [`RIDE_WAIT_MS`]).
    Ride,
    /// Time: ask Stash with a request of its own.
    Ask,
}

impl Cadence {
    fn riding(&self) -> bool {
        self.riding_until.is_some()
    }

    fn due(&mut self, now_ms: i64, carried: bool, can_ride: bool) -> Due {
        if carried && self.riding() {
            self.riding_until = None;
            self.next_ms = now_ms + WATCH_EVERY_MS;
            return Due::Carried;
        }
        if now_ms < self.next_ms {
            return Due::Not;
        }
        match self.riding_until {
            None if self.looked && can_ride => {
                self.riding_until = Some(now_ms + RIDE_WAIT_MS);
                Due::Ride
            }
            Some(until) if now_ms < until => Due::Not,
            _ => {
                self.looked = true;
                self.riding_until = None;
                self.next_ms = now_ms + WATCH_EVERY_MS;
                Due::Ask
            }
        }
    }
}

impl Observer for Watcher {
    fn before_step(&mut self, session: &mut PolicySession, now_ms: i64) -> Gate {
        events::absorb(session, now_ms);
        if let Some(stopped) = self.look(session, now_ms) {
            return Gate::Stop(stopped);
        }
        self.note_condition(session, now_ms);
        if self.busy.is_some() || self.stash_lost_since.is_some() {
            // Nothing can sync now (Stash is scanning, or gone).
            return Gate::Pause(WATCH_EVERY_MS as u64);
        }
        Gate::Go
    }

    fn while_sleeping(&mut self, session: &mut PolicySession, now_ms: i64) -> Wake {
        if let Some(stopped) = self.look(session, now_ms) {
            return Wake::Stop(stopped);
        }
        self.note_condition(session, now_ms);
        if Self::has_events(session) {
            events::absorb(session, now_ms);
            return Wake::Now;
        }
        Wake::Sleep
    }
}

/// The policy component is the one setting a running drain follows without
/// starting again: the settings differ in `policy_path` and nothing else.
fn only_policy_path_differs(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let key = crate::settings::POLICY_PATH_KEY;
    let without = |m: &Map<String, Value>| {
        let mut m = m.clone();
        m.remove(key);
        m
    };
    a.get(key) != b.get(key) && without(a) == without(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadence() -> Cadence {
        Cadence { next_ms: 0, riding_until: None, looked: false }
    }

    #[test]
    fn the_first_look_asks_then_looks_ride_on_scene_queries() {
        let mut c = cadence();
        assert_eq!(c.due(0, false, true), Due::Ask, "a drain looks at Stash as it starts");
        assert_eq!(c.due(4_999, false, true), Due::Not);
        assert_eq!(c.due(5_000, false, true), Due::Ride);
        assert_eq!(c.due(5_400, false, true), Due::Not, "waiting for a scene query");
        assert_eq!(c.due(5_500, true, true), Due::Carried);
        assert_eq!(c.due(10_499, false, true), Due::Not, "the next look is due a full interval after");
        assert_eq!(c.due(10_500, false, true), Due::Ride);
    }

    #[test]
    fn a_look_no_scene_query_carries_asks_after_half_a_second() {
        let mut c = cadence();
        assert_eq!(c.due(0, false, true), Due::Ask);
        assert_eq!(c.due(5_000, false, true), Due::Ride);
        assert_eq!(c.due(5_000 + RIDE_WAIT_MS - 1, false, true), Due::Not);
        assert_eq!(c.due(5_000 + RIDE_WAIT_MS, false, true), Due::Ask, "no scene query came: ask on its own");
        assert_eq!(c.due(5_600, true, true), Due::Not, "a late carrier is not a look that was due");
        assert_eq!(c.due(5_000 + RIDE_WAIT_MS + WATCH_EVERY_MS, false, true), Due::Ride);
    }

    #[test]
    fn a_stash_that_refuses_riders_is_asked_directly() {
        let mut c = cadence();
        assert_eq!(c.due(0, false, false), Due::Ask);
        assert_eq!(c.due(5_000, false, false), Due::Ask);
        assert_eq!(c.due(10_000, false, false), Due::Ask);
    }
}
