//! The hook path. Stash waits for every hook process before it finishes a
//! save or moves on in a scan, so this only records the change durably and
//! returns: no Plex, no Stash round trips. The policy decides what to record
//! (`on-event`); if the policy cannot run, the host records the change
//! itself so nothing is lost.

use crate::connect::offline_session;
use crate::drain::background;
use crate::env::Env;
use crate::plugin::answer::Answer;
use crate::plugin::input::HookContext;
use crate::runtime::wit::policy::{Event, EventOutcome};
use serde_json::json;

/// Triggers whose change must never be dropped when the policy is broken.
const SCENE_CHANGE_TRIGGERS: &[&str] = &["Scene.Update.Post", "Scene.Create.Post"];

pub fn run(env: &Env, ctx: &HookContext) -> Answer {
    let queue = match env.open_queue() {
        Ok(queue) => queue,
        Err(e) => return Answer::Error(e),
    };
    // The last settings a drainer saw (hooks don't ask Stash for them).
    let cached = Env::cached_settings(&queue);
    let auto_drain = background::enabled(cached.auto_drain);
    let event = Event {
        trigger: ctx.trigger.clone(),
        object_id: ctx.id.clone(),
        input_fields: ctx.input_fields.clone(),
        input: ctx.input.as_ref().map(|v| v.to_string()),
    };
    let forbidden = "hooks never talk to Plex; the change is synced by the Process Queue task";
    let outcome =
        offline_session(env, queue, &cached, forbidden).and_then(|mut session| match session.on_event(&event) {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(msg)) => Err(format!("the policy could not handle the event: {msg}")),
            Err(e) => Err(e.to_string()),
        });

    match outcome {
        Ok(EventOutcome::Enqueued(what)) => {
            crate::debug!("Recorded {}: {what}", ctx.trigger);
            start_drainer(env, auto_drain);
            Answer::ok(format!("recorded: {what}"))
        }
        Ok(EventOutcome::Ignored(why)) => Answer::ok(format!("ignored: {why}")),
        Err(problem) => fallback(env, ctx, &problem, auto_drain),
    }
}

/// The policy failed: record a scene change with the host's own payload
/// (the documented fallback format every policy must accept).
fn fallback(env: &Env, ctx: &HookContext, problem: &str, auto_drain: bool) -> Answer {
    let (Some(id), true) = (&ctx.id, SCENE_CHANGE_TRIGGERS.contains(&ctx.trigger.as_str())) else {
        crate::error!("{problem}");
        return Answer::Error(format!("{} not handled: {problem}", ctx.trigger));
    };
    crate::error!("{problem}. Recording the change for scene {id} anyway; it will sync when the policy works again.");
    let payload =
        json!({ "v": 1, "trigger": ctx.trigger, "fields": ctx.input_fields, "recorded_by": "host" }).to_string();
    let now = env.now_ms();
    match env.open_queue().and_then(|mut q| q.enqueue(id, &payload, now, now).map_err(|e| e.to_string())) {
        Ok(_) => {
            start_drainer(env, auto_drain);
            Answer::ok(format!("recorded scene {id} (policy failed: {problem})"))
        }
        Err(e) => Answer::Error(format!("could not record the change for scene {id}: {e}")),
    }
}

/// Make sure a drainer will pick the change up (after it is committed).
fn start_drainer(env: &Env, auto_drain: bool) {
    if !auto_drain {
        return;
    }
    match background::ensure_drainer(env) {
        Ok(true) => crate::debug!("Started a background drainer"),
        Ok(false) => crate::debug!("A drainer is already running"),
        Err(e) => crate::warn!("{e}. The change is recorded; run the Process Queue task to sync it."),
    }
}
