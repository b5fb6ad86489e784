//! The dead-letter tasks: list, re-queue (by class, all, or the dead letters
//! of an outage the policy recorded), purge and clear.

use super::Answer;
use super::args::{self, Args};
use crate::connect::offline_session;
use crate::env::Env;
use crate::store::DeadFilter;
use crate::text::duration_text;

const DAY_MS: i64 = 86_400_000;
/// Dead letters that failed up to this long after an outage ended still
/// count as "from that outage" (their last attempt ran into it).
const OUTAGE_GRACE_MS: i64 = 5 * 60_000;

pub fn list(env: &Env, args: &Args) -> Answer {
    let limit = match args::whole(args, "limit", 50, 10_000) {
        Ok(l) => u32::try_from(l).unwrap_or(10_000),
        Err(e) => return Answer::Error(e),
    };
    let queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let filter = DeadFilter { class: args::text(args, "class").map(str::to_string), ..DeadFilter::all() };
    let rows = match queue.dead_letters_matching(&filter, limit) {
        Ok(r) => r,
        Err(e) => return Answer::Error(e.to_string()),
    };
    if rows.is_empty() {
        return Answer::ok("The dead-letter queue is empty.");
    }
    let now = env.now_ms();
    let mut out = format!("=== Dead letters ({} shown) ===\n", rows.len());
    for d in rows {
        out.push_str(&format!(
            "#{} scene {} [{}] {} attempt(s); change recorded {} ago, first failed {} ago, last failed {} ago{}: {}\n    {}\n",
            d.id,
            d.scene_id,
            d.error_class,
            d.attempts,
            duration_text(now - d.first_enqueued_ms),
            duration_text(now - d.first_failed_ms),
            duration_text(now - d.failed_ms),
            d.policy.as_deref().map(|p| format!(", by policy {p}")).unwrap_or_default(),
            d.message,
            d.detail.replace('\n', "\n    ")
        ));
    }
    Answer::ok(out)
}

pub fn requeue_matching(env: &Env, args: &Args) -> Answer {
    let class = args::text(args, "class").map(str::to_string);
    let all = match args::flag(args, "all") {
        Ok(all) => all,
        Err(e) => return Answer::Error(e),
    };
    if class.is_none() && !all {
        return Answer::Error("say which dead letters to re-queue: class (e.g. plex-unavailable) or all: true".into());
    }
    requeue(env, DeadFilter { class, ..DeadFilter::all() }, "")
}

fn requeue(env: &Env, filter: DeadFilter, what: &str) -> Answer {
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    match queue.requeue_dead(&filter, env.now_ms()) {
        Ok(0) => Answer::ok(format!("No dead letters matched{what}; nothing re-queued.")),
        Ok(n) => Answer::ok(format!("Re-queued {n} dead letter(s){what}; run Process Queue to sync them.")),
        Err(e) => Answer::Error(e.to_string()),
    }
}

/// Re-queue the dead letters of a completed outage (`index` 0 = the most
/// recent), as the policy recorded it.
pub fn recover_outage(env: &Env, args: &Args) -> Answer {
    let index = match args::whole(args, "index", 0, 1000) {
        Ok(i) => usize::try_from(i).unwrap_or(0),
        Err(e) => return Answer::Error(e),
    };
    let queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let cached = Env::cached_settings(&queue);
    let status =
        offline_session(env, queue, &cached, "this task does not contact Plex").and_then(|mut s| match s.status() {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        });
    let outages = match status {
        Ok(status) => status.outages,
        Err(e) => return Answer::Error(format!("the policy could not say when outages were: {e}")),
    };
    let Some(window) = outages.get(index) else {
        return Answer::ok(format!(
            "No completed outage number {index} to recover from (0 is the most recent; {} recorded).",
            outages.len()
        ));
    };
    let filter = DeadFilter {
        class: None,
        since_ms: window.started_ms,
        until_ms: window.ended_ms.saturating_add(OUTAGE_GRACE_MS),
    };
    requeue(env, filter, " from that outage")
}

pub fn purge(env: &Env, args: &Args) -> Answer {
    let days = match args::whole(args, "days", 30, 36_500) {
        Ok(d) => i64::try_from(d).unwrap_or(36_500),
        Err(e) => return Answer::Error(e),
    };
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    match queue.purge_dead(env.now_ms() - days * DAY_MS) {
        Ok(n) => Answer::ok(format!("Removed {n} dead letter(s) older than {days} day(s).")),
        Err(e) => Answer::Error(e.to_string()),
    }
}

pub fn clear(env: &Env) -> Answer {
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    match queue.purge_dead(i64::MAX) {
        Ok(0) => Answer::ok("The dead-letter queue is already empty."),
        Ok(n) => Answer::ok(format!("Removed {n} dead letter(s).")),
        Err(e) => Answer::Error(e.to_string()),
    }
}
