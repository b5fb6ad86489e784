//! Handing the hook events the hooks recorded to the policy's `on-event`,
//! oldest first, with Plex out of reach (an event only records work).
//!
//! An event the policy cannot handle (a trap, an error) is tried again at
//! once; after [`MAX_TRIES`] the host records the change itself in the
//! documented fallback format, so a broken policy never loses one.

use crate::runtime::session::PolicySession;
use crate::runtime::wit::policy::{Event, EventOutcome};
use crate::store::{Queue, QueueError, StoredEvent};
use serde_json::{Value, json};

/// Events read per batch.
const BATCH: u32 = 64;
/// Passes at the policy before the host records the change itself.
pub const MAX_TRIES: u32 = 3;
/// Why the policy cannot reach Plex while it handles an event.
const NO_PLEX: &str = "an event only records work; Plex is reached from step";

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Absorbed {
    /// Events the policy (or the host's fallback) handled.
    pub handled: u64,
    /// Events the policy failed on that remain recorded.
    pub failed: u64,
}

/// Hand every recorded event to the policy. Each event leaves the events
/// table only once its work is recorded in the queue.
pub fn absorb(session: &mut PolicySession, now_ms: i64) -> Absorbed {
    // A policy swap due now applies to the events too (a sleeping drain
    // absorbs them before its next step).
    session.between_steps();
    let mut done = Absorbed::default();
    loop {
        let batch = match session.state().map(|s| s.queue.queue.pending_events(BATCH)) {
            Some(Ok(batch)) => batch,
            Some(Err(e)) => {
                crate::error!("Could not read the recorded changes: {e}");
                return done;
            }
            None => return done,
        };
        let full = batch.len() as u32 == BATCH;
        let mut progressed = false;
        for stored in batch {
            match handle(session, &stored, now_ms) {
                Ok(()) => {
                    done.handled += 1;
                    progressed = true;
                }
                Err(()) => done.failed += 1,
            }
        }
        // Failed events stay at the head of the table: stop rather than
        // read the same batch again.
        if !full || !progressed || done.failed > 0 {
            return done;
        }
    }
}

/// One event: the policy's answer; if it fails [`MAX_TRIES`] times in a
/// row (counted in the database, so a crash does not reset it), the host's.
fn handle(session: &mut PolicySession, stored: &StoredEvent, now_ms: i64) -> Result<(), ()> {
    let event = Event {
        trigger: stored.trigger.clone(),
        object_id: stored.object_id.clone(),
        input_fields: stored.input_fields.clone(),
        input: stored.input.clone(),
    };
    let mut tries = stored.tries;
    while tries < MAX_TRIES {
        let problem = match ask_policy(session, &event) {
            Ok(outcome) => {
                match outcome {
                    EventOutcome::Enqueued(what) => crate::debug!("{}: recorded {what}", stored.trigger),
                    EventOutcome::Ignored(why) => crate::debug!("{}: {why}", stored.trigger),
                }
                return finish(session, stored.id);
            }
            Err(problem) => problem,
        };
        let Some(state) = session.state_mut() else { return Err(()) };
        tries = state.queue.queue.event_failed(stored.id).unwrap_or(MAX_TRIES);
        if tries < MAX_TRIES {
            crate::warn!("{problem} (try {tries} of {MAX_TRIES}; it is kept and tried again)");
        } else {
            crate::error!("{problem}. The host records the change itself so it is not lost.");
        }
    }
    let Some(state) = session.state_mut() else { return Err(()) };
    match record_fallback(&mut state.queue.queue, stored, now_ms) {
        Ok(what) => {
            crate::info!("Recorded {what} for {} without the policy", stored.trigger);
            finish(session, stored.id)
        }
        Err(e) => {
            crate::error!("Could not record {} without the policy: {e}. It stays recorded.", stored.trigger);
            Err(())
        }
    }
}

/// The policy's `on-event`, with Plex out of reach.
fn ask_policy(session: &mut PolicySession, event: &Event) -> Result<EventOutcome, String> {
    if let Some(state) = session.state_mut() {
        state.plex.forbidden = Some(NO_PLEX.into());
    }
    let answer = session.on_event(event);
    if let Some(state) = session.state_mut() {
        state.plex.forbidden = None;
    }
    match answer {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(msg)) => Err(format!("the policy could not handle {}: {msg}", event.trigger)),
        Err(e) => Err(format!("the policy failed on {}: {e}", event.trigger)),
    }
}

fn finish(session: &mut PolicySession, id: u64) -> Result<(), ()> {
    let Some(state) = session.state_mut() else { return Err(()) };
    state.queue.queue.finish_event(id).map_err(|e| crate::error!("Could not mark a recorded change as read: {e}"))
}

/// The documented fallback: a job for the scene (or the performer, studio,
/// tag or group: `performer:12`), payload
/// `{"v":1,"trigger":…,"fields":[…],"recorded_by":"host"}`; a deleted scene
/// drops its waiting job. Anything else has nothing to sync.
pub fn record_fallback(queue: &mut Queue, event: &StoredEvent, now_ms: i64) -> Result<String, QueueError> {
    let Some(key) = fallback_key(event) else {
        return Ok("nothing (no change to sync)".into());
    };
    if event.trigger == "Scene.Destroy.Post" {
        let dropped = queue.forget(&key)?;
        return Ok(if dropped { format!("the removal of scene {key}") } else { "nothing".into() });
    }
    let payload =
        json!({"v": 1, "trigger": event.trigger, "fields": event.input_fields, "recorded_by": "host"}).to_string();
    queue.enqueue(&key, &payload, now_ms, now_ms)?;
    Ok(format!("a job for {key}"))
}

/// The queue key an event's change goes under, if it has one.
fn fallback_key(event: &StoredEvent) -> Option<String> {
    let kind = match event.trigger.as_str() {
        "Scene.Create.Post" | "Scene.Update.Post" | "Scene.Destroy.Post" => None,
        "Performer.Update.Post" => Some("performer"),
        "Studio.Update.Post" => Some("studio"),
        "Tag.Update.Post" | "Tag.Merge.Post" => Some("tag"),
        "Group.Update.Post" | "Movie.Update.Post" => Some("group"),
        _ => return None,
    };
    let id = if event.trigger == "Tag.Merge.Post" {
        let input: Value = serde_json::from_str(event.input.as_deref()?).ok()?;
        match input.get("destination")? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        }
    } else {
        event.object_id.clone()?
    };
    let valid = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| match kind {
        Some(kind) => format!("{kind}:{id}"),
        None => id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(trigger: &str, id: Option<&str>, input: Option<&str>) -> StoredEvent {
        StoredEvent {
            id: 1,
            trigger: trigger.into(),
            object_id: id.map(str::to_string),
            input_fields: vec!["title".into()],
            input: input.map(str::to_string),
            received_ms: 0,
            tries: MAX_TRIES,
        }
    }

    #[test]
    fn the_fallback_records_scene_and_object_changes() {
        let mut q = Queue::open_in_memory().unwrap();
        record_fallback(&mut q, &stored("Scene.Update.Post", Some("12"), None), 5).unwrap();
        record_fallback(&mut q, &stored("Performer.Update.Post", Some("3"), None), 5).unwrap();
        record_fallback(&mut q, &stored("Tag.Merge.Post", Some("0"), Some(r#"{"source":["4"],"destination":"9"}"#)), 5)
            .unwrap();
        record_fallback(&mut q, &stored("Movie.Update.Post", Some("2"), None), 5).unwrap();
        let jobs = q.jobs(10, 5).unwrap();
        let keys: Vec<&str> = jobs.iter().map(|j| j.scene_id.as_str()).collect();
        assert_eq!(keys, ["12", "performer:3", "tag:9", "group:2"]);
        let payload: Value = serde_json::from_str(&jobs[0].payload).unwrap();
        assert_eq!(
            payload,
            json!({"v": 1, "trigger": "Scene.Update.Post", "fields": ["title"], "recorded_by": "host"})
        );
    }

    #[test]
    fn the_fallback_drops_a_deleted_scene_and_ignores_what_it_cannot_key() {
        let mut q = Queue::open_in_memory().unwrap();
        record_fallback(&mut q, &stored("Scene.Update.Post", Some("12"), None), 5).unwrap();
        let what = record_fallback(&mut q, &stored("Scene.Destroy.Post", Some("12"), None), 5).unwrap();
        assert_eq!(what, "the removal of scene 12");
        for odd in [
            stored("Image.Update.Post", Some("1"), None),
            stored("Scene.Update.Post", None, None),
            stored("Scene.Update.Post", Some("1; DROP"), None),
            stored("Tag.Merge.Post", Some("1"), Some("not json")),
            stored("Tag.Merge.Post", Some("1"), Some(r#"{"destination":[1]}"#)),
        ] {
            assert_eq!(record_fallback(&mut q, &odd, 5).unwrap(), "nothing (no change to sync)", "{odd:?}");
        }
        assert!(q.jobs(10, 5).unwrap().is_empty());
    }
}
