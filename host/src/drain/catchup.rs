//! Catch-up: every drain starts by asking Stash for the scenes updated
//! since the last catch-up, and queues those that have no job yet, so a
//! change whose hook never ran (Stash restarted, the process was killed, the
//! first hook after an install timed out) still reaches Plex with no button
//! pressed.
//!
//! - One walk: the keyset walk of Sync All / Sync Recent
//!   (`tasks::bulk::walk_pages`), filtered by `updated_at` greater than the
//!   watermark, the exact text Stash wrote (Stash compares these as text).
//! - Nothing changed costs one Stash query (an empty first page).
//! - A scene that already has a job keeps it untouched
//!   (`Queue::enqueue_absent_many`): a newer change a hook queued is never
//!   replaced and a running job is never reset.
//! - Where the walk got to is written in the same transaction as the page's
//!   jobs, so a crash repeats at most one page and never skips one. The
//!   watermark moves to the newest `updated_at` seen only when the walk is
//!   complete (the walk goes by id, not by time).
//! - At most [`MAX_PAGES`] pages per drain start, so due jobs are not held
//!   up by a large backlog; the next drain start continues after the last
//!   page.
//! - The first drain on an install (or after an upgrade) only notes Stash's
//!   newest `updated_at`: the library is not queued silently (Sync All does
//!   that when asked).

use crate::net::stash::{MAX_PER_PAGE, StashClient};
use crate::store::Queue;
use crate::tasks::bulk::{WalkEnd, WalkError, newest_of, walk_pages};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The host-state key of the catch-up bookmark.
pub const KEY: &str = "catchup";
/// Pages read per drain start.
pub const MAX_PAGES: u32 = 8;

/// The bookmark, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Scenes updated after this are looked for; `""` = every scene
    /// (Stash had none when catch-up started).
    pub watermark: String,
    /// A walk under way: continue after this scene id.
    #[serde(default)]
    pub after: Option<u64>,
    /// The newest `updated_at` the walk under way has seen.
    #[serde(default)]
    pub newest: Option<String>,
}

impl Mark {
    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a catch-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// The first drain here: the watermark starts at Stash's newest scene.
    Started(String),
    /// Scenes updated since the watermark: how many, how many got a new
    /// job, and whether the walk is complete.
    Walked { seen: u64, queued: u64, complete: bool },
}

fn load(queue: &Queue) -> Option<Mark> {
    let text = queue.host_get(KEY).ok().flatten()?;
    serde_json::from_str(&text).ok()
}

/// Run the catch-up for one drain start.
pub fn run(queue: &mut Queue, stash: &StashClient, now_ms: i64) -> Result<CatchUp, String> {
    let Some(mut mark) = load(queue) else {
        let newest = stash.newest_update().map_err(|e| format!("could not ask Stash for its newest scene: {e}"))?;
        let mark = Mark { watermark: newest.clone().unwrap_or_default(), ..Mark::default() };
        queue.host_set(KEY, &mark.text()).map_err(|e| format!("could not save the catch-up watermark: {e}"))?;
        return Ok(CatchUp::Started(newest.unwrap_or_default()));
    };
    let payload = json!({"v": 1, "trigger": "Host.CatchUp", "fields": [], "recorded_by": "host"}).to_string();
    let since = (!mark.watermark.is_empty()).then(|| mark.watermark.clone());
    let (mut seen, mut queued) = (0u64, 0u64);
    let end = walk_pages(stash, "CatchUp", since.as_deref(), mark.after, MAX_PAGES, |_, rows, last| {
        if let Some(max) = newest_of(rows)
            && mark.newest.as_deref().is_none_or(|n| max > n)
        {
            mark.newest = Some(max.to_string());
        }
        mark.after = rows.last().and_then(|(id, _)| id.parse().ok());
        if last {
            finish(&mut mark);
        }
        let jobs: Vec<(String, String)> = rows.iter().map(|(id, _)| (id.clone(), payload.clone())).collect();
        queued += queue
            .enqueue_absent_many(&jobs, &[(KEY, &mark.text())], now_ms)
            .map_err(|e| format!("could not queue the changed scenes: {e}"))?;
        seen += rows.len() as u64;
        Ok(())
    })
    .map_err(|e| match e {
        WalkError::Stash(e) => format!("could not ask Stash for the scenes updated since the last drain: {e}"),
        WalkError::Page(e) => e,
    })?;
    let complete = end == WalkEnd::Done;
    // A walk that ended on an empty page (nothing changed, or the last page
    // was full) has not moved the watermark yet.
    if complete && (mark.after.is_some() || mark.newest.is_some()) {
        finish(&mut mark);
        queue.host_set(KEY, &mark.text()).map_err(|e| format!("could not save the catch-up watermark: {e}"))?;
    }
    Ok(CatchUp::Walked { seen, queued, complete })
}

/// The walk is complete: the watermark becomes the newest scene it saw.
fn finish(mark: &mut Mark) {
    if let Some(newest) = mark.newest.take() {
        mark.watermark = newest;
    }
    mark.after = None;
}

/// Run it, saying in the log what it found; never stops the drain.
pub fn run_logged(queue: &mut Queue, stash: &StashClient, now_ms: i64) {
    match run(queue, stash, now_ms) {
        Ok(CatchUp::Started(mark)) if mark.is_empty() => {
            crate::debug!("Catch-up starts with an empty Stash: every scene added from now on is looked for")
        }
        Ok(CatchUp::Started(mark)) => crate::info!(
            "Catch-up starts here: scenes updated in Stash after {mark} are synced even if their hook never ran (Sync All queues the whole library)"
        ),
        Ok(CatchUp::Walked { seen: 0, .. }) => {}
        Ok(CatchUp::Walked { seen, queued, complete }) => {
            let rest = if complete {
                String::new()
            } else {
                format!("; more than {} remain and are read at the next drain start", MAX_PAGES * MAX_PER_PAGE)
            };
            crate::info!(
                "Catch-up: {seen} scene(s) changed in Stash since the last drain, {queued} had no change queued and were queued{rest}"
            );
        }
        Err(e) => {
            crate::warn!("Catch-up skipped: {e}. The queued changes sync as usual; it is tried at the next drain.")
        }
    }
}
