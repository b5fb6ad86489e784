//! Stash hook events → queue records. Never talks to Plex.

use serde::Serialize;

use crate::host::{Describe, Event, EventOutcome, Host};
use crate::text::{clip, truncate_chars};

/// Payload format version.
pub const PAYLOAD_VERSION: u32 = 1;
const MAX_FIELDS: usize = 64;
const MAX_FIELD_CHARS: usize = 64;
const MAX_ID_CHARS: usize = 64;

/// What the policy stores with a job (opaque to the host).
#[derive(Debug, Serialize)]
struct Payload<'a> {
    v: u32,
    trigger: &'a str,
    fields: Vec<&'a str>,
}

/// Handle one hook event.
pub fn on_event(host: &dyn Host, event: &Event) -> Result<EventOutcome, String> {
    let trigger = event.trigger.as_str();
    match trigger {
        "Scene.Update.Post" | "Scene.Create.Post" => {}
        "Scene.Destroy.Post" => {
            return Ok(EventOutcome::Ignored("scene deleted in Stash; the Plex item is left as it is".into()));
        }
        other => {
            return Ok(EventOutcome::Ignored(format!("no sync needed for {}", clip(other, 60))));
        }
    }
    let id = event.object_id.as_deref().map(str::trim).unwrap_or("");
    if id.is_empty() {
        return Ok(EventOutcome::Ignored(format!("{trigger} without a scene id")));
    }
    if id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
        return Ok(EventOutcome::Ignored(format!("{trigger} with an invalid scene id {:?}", clip(id, 20))));
    }

    let payload = Payload {
        v: PAYLOAD_VERSION,
        trigger,
        fields: event.input_fields.iter().take(MAX_FIELDS).map(|f| truncate_chars(f, MAX_FIELD_CHARS)).collect(),
    };
    let payload = serde_json::to_string(&payload).map_err(|e| format!("payload: {e}"))?;
    let outcome = host
        .enqueue(id, &payload, host.now_ms())
        .map_err(|e| format!("could not record the change to scene {id}: {}", e.describe()))?;
    Ok(EventOutcome::Enqueued(format!("scene {id}: {}", outcome.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::QueueError;
    use crate::test_support::FakeHost;

    fn event(trigger: &str, id: Option<&str>, fields: &[&str]) -> Event {
        Event {
            trigger: trigger.into(),
            object_id: id.map(String::from),
            input_fields: fields.iter().map(|s| s.to_string()).collect(),
            input: None,
        }
    }

    #[test]
    fn update_and_create_enqueue_with_payload() {
        let host = FakeHost::new();
        host.set_now(5_000);
        let out = on_event(&host, &event("Scene.Update.Post", Some("12"), &["title", "details"]));
        assert_eq!(out, Ok(EventOutcome::Enqueued("scene 12: created".into())));
        let jobs = host.jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].scene_id, "12");
        assert_eq!(jobs[0].not_before_ms, 5_000);
        let payload: serde_json::Value = serde_json::from_str(&jobs[0].payload).unwrap();
        assert_eq!(payload, serde_json::json!({"v":1,"trigger":"Scene.Update.Post","fields":["title","details"]}));
        // A second change coalesces into the same job, newest payload wins.
        let out = on_event(&host, &event("Scene.Create.Post", Some("12"), &[]));
        assert_eq!(out, Ok(EventOutcome::Enqueued("scene 12: coalesced".into())));
        let jobs = host.jobs();
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].payload.contains("Scene.Create.Post"));
    }

    #[test]
    fn change_while_running_is_requeued() {
        let host = FakeHost::new();
        on_event(&host, &event("Scene.Update.Post", Some("3"), &[])).unwrap();
        host.claim_for_test();
        let out = on_event(&host, &event("Scene.Update.Post", Some("3"), &[]));
        assert_eq!(out, Ok(EventOutcome::Enqueued("scene 3: requeued-after-running".into())));
    }

    #[test]
    fn other_events_are_ignored() {
        let host = FakeHost::new();
        for e in [
            event("Scene.Destroy.Post", Some("1"), &[]),
            event("Scene.Update.Post", None, &[]),
            event("Scene.Update.Post", Some("  "), &[]),
            event("Performer.Update.Post", Some("1"), &[]),
            event("Scene.Update.Post", Some(&"9".repeat(100)), &[]),
        ] {
            let out = on_event(&host, &e).unwrap();
            assert!(matches!(out, EventOutcome::Ignored(_)), "{e:?}");
        }
        assert!(host.jobs().is_empty());
    }

    #[test]
    fn payload_is_bounded() {
        let host = FakeHost::new();
        let long = "f".repeat(500);
        let fields: Vec<&str> = (0..200).map(|_| long.as_str()).collect();
        on_event(&host, &event("Scene.Update.Post", Some("1"), &fields)).unwrap();
        let payload = &host.jobs()[0].payload;
        assert!(payload.len() < MAX_FIELDS * (MAX_FIELD_CHARS + 3) + 100);
    }

    #[test]
    fn queue_failure_is_an_error() {
        let host = FakeHost::new();
        host.fail_queue(QueueError::Storage("disk full".into()));
        let err = on_event(&host, &event("Scene.Update.Post", Some("1"), &[])).unwrap_err();
        assert!(err.contains("disk full") && err.contains("scene 1"));
    }
}
