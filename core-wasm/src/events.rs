//! Stash hook events → queue records. Never talks to Plex.
//!
//! | trigger | what is recorded |
//! |---|---|
//! | `Scene.Create.Post`, `Scene.Update.Post` | a job for the scene, unless the edit only touched what Plex does not show (play count, resume position, galleries) |
//! | `Scene.Destroy.Post` | the scene's waiting job is dropped; Plex is left as it is |
//! | `Performer.Update.Post`, `Studio.Update.Post`, `Tag.Update.Post`, `Group.Update.Post` (`Movie.Update.Post` before Stash v0.27) | a job for the object (`performer:12`): the drain re-syncs every scene that carries it (`fanout`) |
//! | `Tag.Merge.Post` | a job for the destination tag |

use serde::Serialize;

use crate::host::{Describe, Event, EventOutcome, Host};
use crate::text::{clip, truncate_chars};

/// Payload format version.
pub const PAYLOAD_VERSION: u32 = 1;
const MAX_FIELDS: usize = 64;
const MAX_FIELD_CHARS: usize = 64;
const MAX_ID_CHARS: usize = 20;

/// Scene input fields whose change shows in Plex.
const SCENE_FIELDS: &[&str] = &[
    "title",
    "code",
    "details",
    "director",
    "url",
    "urls",
    "date",
    "rating100",
    "rating",
    "organized",
    "studio_id",
    "performer_ids",
    "movies",
    "groups",
    "tag_ids",
    "cover_image",
    "stash_ids",
    "primary_file_id",
];

/// Fields of a performer, studio, tag or group whose change shows on the
/// scenes that carry it.
const OBJECT_FIELDS: &[&str] =
    &["name", "disambiguation", "gender", "image", "parent_id", "front_image", "back_image", "aliases"];

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
    let object = match trigger {
        "Scene.Update.Post" | "Scene.Create.Post" | "Scene.Destroy.Post" => None,
        "Performer.Update.Post" => Some("performer"),
        "Studio.Update.Post" => Some("studio"),
        "Tag.Update.Post" | "Tag.Merge.Post" => Some("tag"),
        "Group.Update.Post" | "Movie.Update.Post" => Some("group"),
        other => return Ok(EventOutcome::Ignored(format!("no sync needed for {}", clip(other, 60)))),
    };
    let id = object_id(event);
    let id = id.as_deref().unwrap_or("").trim();
    if id.is_empty() {
        return Ok(EventOutcome::Ignored(format!("{trigger} without an id")));
    }
    if id.len() > MAX_ID_CHARS || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(EventOutcome::Ignored(format!("{trigger} with an invalid id {:?}", clip(id, 20))));
    }
    if trigger == "Scene.Destroy.Post" {
        let dropped = host.forget(id).map_err(|e| format!("could not drop the job of scene {id}: {}", e.describe()))?;
        let what = if dropped { "its waiting change was dropped" } else { "nothing was waiting for it" };
        return Ok(EventOutcome::Ignored(format!("scene {id} was deleted in Stash; {what}; Plex is left as it is")));
    }
    let relevant = if object.is_some() { OBJECT_FIELDS } else { SCENE_FIELDS };
    // An edit that names its fields and touches none that Plex shows is
    // noise (play counts, resume positions). Scans send no fields at all; a
    // merge always changes what the scenes carry.
    let noise = trigger != "Tag.Merge.Post"
        && !event.input_fields.is_empty()
        && !event.input_fields.iter().any(|f| relevant.contains(&f.as_str()));
    if noise {
        let sent: Vec<&str> = event.input_fields.iter().take(8).map(String::as_str).collect();
        return Ok(EventOutcome::Ignored(format!(
            "{trigger} for {id} changed only {} (nothing Plex shows)",
            clip(&sent.join(", "), 200)
        )));
    }
    let (key, what) = match object {
        Some(kind) => (format!("{kind}:{id}"), format!("{kind} {id} (every scene that carries it)")),
        None => (id.to_string(), format!("scene {id}")),
    };
    let payload = Payload {
        v: PAYLOAD_VERSION,
        trigger,
        fields: event.input_fields.iter().take(MAX_FIELDS).map(|f| truncate_chars(f, MAX_FIELD_CHARS)).collect(),
    };
    let payload = serde_json::to_string(&payload).map_err(|e| format!("payload: {e}"))?;
    let outcome = host
        .enqueue(&key, &payload, host.now_ms())
        .map_err(|e| format!("could not record the change to {what}: {}", e.describe()))?;
    Ok(EventOutcome::Enqueued(format!("{what}: {}", outcome.as_str())))
}

/// The object an event is about: `hookContext.id`, or for a tag merge the
/// destination tag of the input.
fn object_id(event: &Event) -> Option<String> {
    if event.trigger == "Tag.Merge.Post" {
        let input: serde_json::Value = serde_json::from_str(event.input.as_deref().unwrap_or("null")).ok()?;
        let dest = input.get("destination")?;
        return dest.as_str().map(str::to_string).or_else(|| dest.as_u64().map(|n| n.to_string()));
    }
    event.object_id.clone()
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
    fn noise_and_other_events_are_ignored() {
        let host = FakeHost::new();
        for e in [
            event("Scene.Update.Post", None, &[]),
            event("Scene.Update.Post", Some("  "), &[]),
            event("Image.Update.Post", Some("1"), &[]),
            event("Scene.Update.Post", Some(&"9".repeat(100)), &[]),
            event("Scene.Update.Post", Some("1x"), &[]),
            event("Scene.Update.Post", Some("4"), &["id", "play_count", "resume_time", "play_duration"]),
            event("Scene.Update.Post", Some("4"), &["id", "o_counter", "gallery_ids"]),
            event("Performer.Update.Post", Some("4"), &["id", "favorite", "birthdate"]),
        ] {
            let out = on_event(&host, &e).unwrap();
            assert!(matches!(out, EventOutcome::Ignored(_)), "{e:?}");
        }
        assert!(host.jobs().is_empty());
        // A metadata edit among the noise counts.
        let out = on_event(&host, &event("Scene.Update.Post", Some("4"), &["id", "play_count", "tag_ids"])).unwrap();
        assert!(matches!(out, EventOutcome::Enqueued(_)));
    }

    #[test]
    fn a_deleted_scene_drops_its_waiting_job_and_leaves_plex_alone() {
        let host = FakeHost::new();
        on_event(&host, &event("Scene.Update.Post", Some("8"), &["title"])).unwrap();
        let out = on_event(&host, &event("Scene.Destroy.Post", Some("8"), &["id", "delete_generated"])).unwrap();
        assert_eq!(
            out,
            EventOutcome::Ignored(
                "scene 8 was deleted in Stash; its waiting change was dropped; Plex is left as it is".into()
            )
        );
        assert!(host.jobs().is_empty());
        assert!(host.requests().is_empty());
    }

    #[test]
    fn renames_record_a_job_for_the_object() {
        let host = FakeHost::new();
        for (trigger, id, fields, key) in [
            ("Performer.Update.Post", Some("12"), vec!["id", "name"], "performer:12"),
            ("Studio.Update.Post", Some("3"), vec![], "studio:3"),
            ("Tag.Update.Post", Some("7"), vec!["name"], "tag:7"),
            ("Group.Update.Post", Some("4"), vec!["name"], "group:4"),
            ("Movie.Update.Post", Some("4"), vec!["name"], "group:4"),
        ] {
            let out = on_event(&host, &event(trigger, id, &fields)).unwrap();
            assert!(
                matches!(out, EventOutcome::Enqueued(ref s) if s.contains("every scene that carries it")),
                "{trigger}: {out:?}"
            );
            assert!(host.jobs().iter().any(|j| j.scene_id == key), "{key}");
        }
        let mut merge = event("Tag.Merge.Post", Some("99"), &["source", "destination"]);
        merge.input = Some(r#"{"source":["5","6"],"destination":"21"}"#.into());
        on_event(&host, &merge).unwrap();
        assert!(host.jobs().iter().any(|j| j.scene_id == "tag:21"), "the destination tag");
    }

    #[test]
    fn payload_is_bounded() {
        let host = FakeHost::new();
        let long = "f".repeat(500);
        let mut fields: Vec<&str> = (0..200).map(|_| long.as_str()).collect();
        fields.push("title");
        on_event(&host, &event("Scene.Update.Post", Some("1"), &fields)).unwrap();
        let payload = &host.jobs()[0].payload;
        assert!(payload.len() < MAX_FIELDS * (MAX_FIELD_CHARS + 3) + 100);
    }

    #[test]
    fn queue_failure_is_an_error() {
        let host = FakeHost::new();
        host.fail_queue(QueueError::Storage("disk full".into()));
        let err = on_event(&host, &event("Scene.Update.Post", Some("1"), &[])).unwrap_err();
        assert!(err.contains("disk full") && err.contains("scene") && err.contains('1'), "{err}");
    }
}
