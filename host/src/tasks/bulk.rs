//! Sync All and Sync Recent: queue every scene (or every scene updated since
//! the last Sync Recent), reading scene ids from Stash a page at a time,
//! never the library at once; each page is one transaction and coalesces
//! with what is already queued. Then the drain: a background drainer when
//! one may run (Stash's task queue is free again at once), else this task.
//!
//! Sync Recent remembers the newest `updated_at` it queued, exactly as Stash
//! wrote it (Stash compares these timestamps as text, so only its own form
//! and offset compare right). The first run takes the last 24 hours, written
//! in the form of the newest scene's timestamp.

use super::Answer;
use crate::connect::connect;
use crate::drain::background;
use crate::env::Env;
use crate::net::stash::{MAX_PER_PAGE, StashClient};
use crate::plugin::log;
use crate::store::Queue;
use crate::text::{parse_timestamp, timestamp_like};
use serde_json::json;

/// The host-state key of Sync Recent's watermark.
const WATERMARK_KEY: &str = "sync_recent_watermark";
/// How far back the first Sync Recent reaches.
const FIRST_RECENT_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Recent,
}

impl Scope {
    fn trigger(self) -> &'static str {
        match self {
            Scope::All => "Task.SyncAll",
            Scope::Recent => "Task.SyncRecent",
        }
    }
}

pub fn sync(env: &Env, scope: Scope) -> Answer {
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let connected = match connect(env, &mut queue) {
        Ok(c) => c,
        Err(e) => return Answer::Error(e),
    };
    if !connected.settings.enabled {
        return Answer::ok("disabled (the enabled setting is off); turn it on, then run this task again");
    }
    let stash = connected.stash;
    let since = match scope {
        Scope::All => None,
        Scope::Recent => match recent_since(&queue, &stash, env.now_ms()) {
            Ok(Some(since)) => Some(since),
            Ok(None) => return Answer::ok("Stash has no scenes; nothing to sync"),
            Err(e) => return Answer::Error(e),
        },
    };
    // Queuing fills the first tenth of the progress bar, syncing the rest.
    log::progress_span(0.0, 0.1);
    let walked = walk(&mut queue, &stash, scope, since.as_deref(), env.now_ms());
    log::progress_span(0.1, 1.0);
    env.keep_session_cookie(stash.session_cookie());
    let walked = match walked {
        Ok(w) => w,
        Err(e) => return Answer::Error(e),
    };
    if scope == Scope::Recent
        && let Some(newest) = &walked.newest
        && let Err(e) = queue.host_set(WATERMARK_KEY, newest)
    {
        crate::warn!("Could not save where Sync Recent got to ({e}); the next run starts from the same point.");
    }
    let what = match (&since, walked.seen) {
        (_, 0) => return Answer::ok(nothing_found(since.as_deref())),
        (None, n) => format!("Queued {n} scene(s) ({} new, the rest already waiting)", walked.new),
        (Some(s), n) => format!("Queued {n} scene(s) updated after {s} ({} new, the rest already waiting)", walked.new),
    };
    drop(queue);
    crate::info!("{what}");
    hand_to_drainer(env, what)
}

fn nothing_found(since: Option<&str>) -> String {
    match since {
        None => "Stash has no scenes; nothing to sync".into(),
        Some(s) => format!("No scene was updated after {s}; nothing to sync"),
    }
}

/// What a walk over the scenes queued.
#[derive(Debug, Default)]
struct Walked {
    seen: u64,
    new: u64,
    /// The newest `updated_at` seen (text order is Stash's order).
    newest: Option<String>,
}

fn walk(queue: &mut Queue, stash: &StashClient, scope: Scope, since: Option<&str>, now: i64) -> Result<Walked, String> {
    let payload = json!({"v": 1, "trigger": scope.trigger(), "fields": [], "recorded_by": "host"}).to_string();
    let mut walked = Walked::default();
    let mut after = None;
    let mut total = None;
    loop {
        let (left, rows) = stash.scene_ids(after, since).map_err(|e| {
            format!(
                "could not read the scenes from Stash after queuing {} ({e}); run the task again to finish",
                walked.seen
            )
        })?;
        let total = *total.get_or_insert(left.max(1));
        let Some((last, _)) = rows.last() else { break };
        after =
            Some(last.parse::<u64>().map_err(|_| format!("Stash returned a scene id that is not a number: {last:?}"))?);
        let jobs: Vec<(String, String)> = rows.iter().map(|(id, _)| (id.clone(), payload.clone())).collect();
        walked.new += queue.enqueue_many(&jobs, now).map_err(|e| format!("could not queue the scenes: {e}"))?;
        walked.seen += rows.len() as u64;
        if let Some(max) = rows.iter().map(|(_, u)| u).filter(|u| !u.is_empty()).max()
            && walked.newest.as_ref().is_none_or(|n| max > n)
        {
            walked.newest = Some(max.clone());
        }
        log::progress(walked.seen as f64 / total as f64);
        if rows.len() < MAX_PER_PAGE as usize {
            break;
        }
    }
    Ok(walked)
}

/// Where Sync Recent starts: after the saved watermark, else 24 hours ago,
/// written in the form of Stash's newest timestamp. `None` when Stash has
/// no scenes.
fn recent_since(queue: &Queue, stash: &StashClient, now: i64) -> Result<Option<String>, String> {
    let newest = stash.newest_update().map_err(|e| format!("could not ask Stash for its newest scene: {e}"))?;
    let Some(newest) = newest else { return Ok(None) };
    let mark = queue.host_get(WATERMARK_KEY).ok().flatten().filter(|m| !m.is_empty());
    let since = match &mark {
        Some(mark) => recent_query(mark, &newest),
        None => timestamp_like(now - FIRST_RECENT_MS, &newest),
    };
    since
        .map(Some)
        .ok_or_else(|| format!("Stash's timestamps have an unexpected form ({newest:?}); run Sync All instead"))
}

/// The `updated_at` value Sync Recent asks for, given its watermark and
/// Stash's newest timestamp. Stash compares the text, so while the server's
/// offset is the same the watermark is used exactly as Stash wrote it. After
/// the offset changed (daylight saving, a moved server) the watermark is
/// rewritten in the new form, reaching back by the change: scenes written
/// in the old form just after the watermark still compare as newer.
pub fn recent_query(watermark: &str, newest: &str) -> Option<String> {
    let (mark_ms, mark_offset) = parse_timestamp(watermark)?;
    let (_, offset) = parse_timestamp(newest)?;
    if offset == mark_offset {
        return Some(watermark.to_string());
    }
    timestamp_like(mark_ms - (offset - mark_offset).abs() * 1000, newest)
}

/// The queued scenes sync in a background drainer when one may run, else
/// in this task.
fn hand_to_drainer(env: &Env, what: String) -> Answer {
    let allowed = env.open_queue().is_ok_and(|q| background::enabled(Env::cached_settings(&q).auto_drain));
    if allowed {
        return match background::ensure_drainer(env) {
            Ok(_) => {
                log::progress(1.0);
                Answer::ok(format!("{what}; a background drainer syncs them (see View Queue Status)"))
            }
            Err(e) => {
                crate::warn!("{e}; syncing in this task instead");
                crate::drain::process_queue(env, false)
            }
        };
    }
    match crate::drain::process_queue(env, false) {
        Answer::Output(serde_json::Value::String(done)) => Answer::ok(format!("{what}. {done}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_used_as_written_until_the_offset_changes() {
        let mark = "2026-03-29T01:59:30+01:00";
        assert_eq!(recent_query(mark, "2026-03-29T01:59:59+01:00").as_deref(), Some(mark));
        // Spring forward: +01:00 becomes +02:00. A scene written at 01:59:50
        // in the old form must still compare newer than the query.
        let q = recent_query(mark, "2026-03-29T03:00:10+02:00").unwrap();
        assert_eq!(q, "2026-03-29T01:59:30+02:00");
        assert!("2026-03-29T01:59:50+01:00" > q.as_str());
        assert!("2026-03-29T03:00:10+02:00" > q.as_str());
        // Fall back: +02:00 becomes +01:00.
        let q = recent_query("2026-10-25T02:50:00+02:00", "2026-10-25T02:10:00+01:00").unwrap();
        assert_eq!(q, "2026-10-25T00:50:00+01:00");
        assert!("2026-10-25T02:55:00+02:00" > q.as_str());
        assert!("2026-10-25T02:10:00+01:00" > q.as_str());
        assert_eq!(recent_query("garbage", "2026-10-25T02:10:00+01:00"), None);
    }
}
