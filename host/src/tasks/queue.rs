//! View Queue Status: the queue from the database, and how syncing stands
//! from the policy.

use super::Answer;
use crate::connect::offline_session;
use crate::env::Env;
use crate::store::Queue;
use crate::text::duration_text;

/// Shown in the report: the first few jobs that have failed before.
const RETRYING_SHOWN: u32 = 5;

pub fn queue_status(env: &Env) -> Answer {
    let queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let now = env.now_ms();
    let mut report = match status_report(&queue, now) {
        Ok(r) => r,
        Err(e) => return Answer::Error(e),
    };
    // The policy's view: breaker, probes, outages. Best effort: the queue
    // report stands on its own if the policy cannot answer.
    let cached = Env::cached_settings(&queue);
    let status = offline_session(env, queue, &cached, "this task does not contact Plex").and_then(|mut s| {
        let policy = s.policy.status_lines().trim_end().to_string();
        match s.status() {
            Ok(Ok(status)) => Ok((policy, status)),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }
    });
    match status {
        Ok((policy, status)) => {
            report.push_str(&policy);
            report.push('\n');
            report.push_str(&status.summary);
            report.push('\n');
            for line in &status.details {
                report.push_str(line);
                report.push('\n');
            }
        }
        Err(e) => report.push_str(&format!("(the policy could not report its state: {e})\n")),
    }
    Answer::ok(report)
}

/// Clear Pending Queue: every waiting change and every recorded event that
/// no policy has read yet. A change being synced right now finishes; dead
/// letters stay (they have their own tasks).
pub fn clear_queue(env: &Env) -> Answer {
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    match queue.clear_pending() {
        Ok((0, 0)) => Answer::ok("The queue is empty; nothing to clear"),
        Ok((jobs, events)) => {
            let left = queue.counts(env.now_ms()).map(|c| c.running).unwrap_or(0);
            let running = match left {
                0 => String::new(),
                n => format!("; {n} change(s) being synced right now finish"),
            };
            Answer::ok(format!("Cleared {} waiting change(s){running}", jobs + events))
        }
        Err(e) => Answer::Error(format!("could not clear the queue: {e}")),
    }
}

/// The queue part of the status report (also `stash2plex status`).
pub fn status_report(queue: &Queue, now: i64) -> Result<String, String> {
    let c = queue.counts(now).map_err(|e| e.to_string())?;
    let mut out = String::from("=== Queue Status ===\n");
    let recorded = queue.count_events().map_err(|e| e.to_string())?;
    if recorded > 0 {
        out.push_str(&format!("Recorded, not yet read by the drainer: {recorded}\n"));
    }
    out.push_str(&format!(
        "Due now: {}\nWaiting to retry: {}\nIn progress: {}\nDead letters: {}\n",
        c.ready, c.waiting, c.running, c.dead
    ));
    if let Some(t) = c.next_due_ms {
        out.push_str(&format!("Next retry in: {}\n", duration_text(t - now)));
    }
    let jobs = queue.jobs(RETRYING_SHOWN, now).map_err(|e| e.to_string())?;
    for j in jobs.iter().filter(|j| j.attempt > 0) {
        out.push_str(&format!(
            "  scene {}: attempt {}, due in {}, last error: {}\n",
            j.scene_id,
            j.attempt,
            duration_text(j.not_before_ms - now),
            j.last_error.as_deref().unwrap_or("-")
        ));
    }
    let day_ago = now - 86_400_000;
    let by_policy = queue.handled_by_policy(day_ago).map_err(|e| e.to_string())?;
    if !by_policy.is_empty() {
        out.push_str("Jobs handled in the last 24 hours, by policy:\n");
        for (policy, outcome, n) in by_policy {
            out.push_str(&format!("  {}: {n} {outcome}\n", policy.describe()));
        }
    }
    if c.dead > 0 {
        out.push_str("Dead letters by class:\n");
        for (class, n) in queue.dead_letter_classes().map_err(|e| e.to_string())? {
            out.push_str(&format!("  {class}: {n}\n"));
        }
    }
    Ok(out)
}
