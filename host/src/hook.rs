//! The hook path. Stash waits for every hook process before it finishes a
//! save or moves on in a scan (a scan of new files fires hundreds at once),
//! so a hook only commits the event to the queue database and returns: no
//! policy (no compilation, not even loading it), no Plex, no Stash. The
//! drainer hands recorded events to the policy (`drain::events`), finds the
//! scenes a renamed performer carries, and syncs.
//!
//! After the commit a hook does two cheap things: it tells Stash's log how
//! syncing stands if that changed (`condition`), and makes sure a drainer
//! runs.

use crate::condition;
use crate::drain::background;
use crate::env::Env;
use crate::plugin::answer::Answer;
use crate::plugin::input::HookContext;
use crate::text::clip;
use serde_json::Value;

/// The most of a mutation's input a hook keeps (the policy needs little of
/// it: `inputFields` and, for a tag merge, the destination).
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
const MAX_TRIGGER_CHARS: usize = 100;
const MAX_FIELDS: usize = 256;
const MAX_FIELD_CHARS: usize = 64;

pub fn run(env: &Env, ctx: &HookContext) -> Answer {
    let mut queue = match env.open_queue() {
        Ok(queue) => queue,
        Err(e) => return Answer::Error(e),
    };
    let trigger = clip(&ctx.trigger, MAX_TRIGGER_CHARS);
    if trigger.trim().is_empty() {
        return Answer::Error("the hook context has no type (args.hookContext.type); nothing was recorded".into());
    }
    let fields: Vec<String> = ctx.input_fields.iter().take(MAX_FIELDS).map(|f| clip(f, MAX_FIELD_CHARS)).collect();
    let input = ctx.input.as_ref().and_then(|v| kept_input(v, ctx.id.as_deref()));
    let recorded = queue
        .record_event(&trigger, ctx.id.as_deref(), &fields, input.as_deref(), env.now_ms())
        .map_err(|e| format!("could not record {trigger} for {}: {e}", ctx.id.as_deref().unwrap_or("(no id)")));
    if let Err(e) = recorded {
        return Answer::Error(e);
    }
    // Committed: from here on nothing can lose the change.
    condition::announce(&mut queue);
    let cached = Env::cached_settings(&queue);
    let what = match &ctx.id {
        Some(id) => format!("{trigger} for {id}"),
        None => trigger,
    };
    if !background::enabled(cached.auto_drain) {
        return Answer::ok(format!("recorded {what}; run the Process Queue task to sync it"));
    }
    drop(queue);
    match background::ensure_drainer(env) {
        Ok(true) => crate::debug!("Started a background drainer"),
        Ok(false) => crate::debug!("A drainer is already running"),
        Err(e) => crate::warn!("{e}. The change is recorded; run the Process Queue task to sync it."),
    }
    Answer::ok(format!("recorded {what}"))
}

/// The part of a mutation's input worth keeping for one object: of
/// `scenesUpdate`'s whole array the element for `id`, of
/// `bulkSceneUpdate`'s `ids` only `id`. `None` when nothing fits in
/// [`MAX_INPUT_BYTES`] (the event is still recorded, with its fields).
fn kept_input(input: &Value, id: Option<&str>) -> Option<String> {
    let same = |v: &Value| match (v, id) {
        (Value::String(s), Some(id)) => s == id,
        (Value::Number(n), Some(id)) => n.to_string() == id,
        _ => false,
    };
    let kept = match input {
        Value::Array(items) => items.iter().find(|item| item.get("id").is_some_and(same))?.clone(),
        Value::Object(map) if map.get("ids").is_some_and(Value::is_array) => {
            let mut map = map.clone();
            let mine: Vec<Value> = match map.get("ids") {
                Some(Value::Array(ids)) => ids.iter().filter(|v| same(v)).cloned().collect(),
                _ => Vec::new(),
            };
            map.insert("ids".into(), Value::Array(mine));
            Value::Object(map)
        }
        other => other.clone(),
    };
    let text = kept.to_string();
    (text.len() <= MAX_INPUT_BYTES).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_multi_scene_input_keeps_only_this_scene() {
        let all = json!([{"id": "1", "title": "a"}, {"id": "2", "title": "b"}, {"id": "3"}]);
        assert_eq!(kept_input(&all, Some("2")).as_deref(), Some(r#"{"id":"2","title":"b"}"#));
        assert_eq!(kept_input(&all, Some("9")), None, "not in the array: nothing kept");
        let bulk = json!({"ids": ["4", "5", 6], "tag_ids": {"ids": ["1"], "mode": "ADD"}});
        let kept: Value = serde_json::from_str(&kept_input(&bulk, Some("6")).unwrap()).unwrap();
        assert_eq!(kept, json!({"ids": [6], "tag_ids": {"ids": ["1"], "mode": "ADD"}}));
        let merge = json!({"source": ["4"], "destination": "5"});
        assert_eq!(kept_input(&merge, Some("5")).as_deref(), Some(r#"{"destination":"5","source":["4"]}"#));
    }

    #[test]
    fn an_oversized_input_is_dropped() {
        let huge = json!({"id": "1", "details": "x".repeat(MAX_INPUT_BYTES)});
        assert_eq!(kept_input(&huge, Some("1")), None);
    }
}
