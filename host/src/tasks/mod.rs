//! Stash tasks (`args.mode`). Task names and modes are the original plugin's
//! where they exist, so a user switching plugins finds the same buttons.
//!
//! Host tasks work on the queue database (status, dead letters) or run the
//! drain. Every other mode goes to the policy's `run-task` with the full set
//! of capabilities, if the policy lists it in `policy-info.tasks`.

mod args;
pub(crate) mod bulk;
mod dead_letters;
mod queue;

pub use queue::status_report;

use crate::connect::connected_session;
use crate::env::Env;
use crate::plugin::answer::Answer;
use crate::runtime::session;
use args::Args;
use serde_json::Value;

/// The tasks the host runs itself.
pub const HOST_MODES: &[(&str, &str)] = &[
    ("all", "Sync All Scenes to Plex: queue every scene, then sync"),
    ("recent", "Sync Recent Scenes to Plex: queue the scenes updated since the last run (24 h the first time)"),
    ("process_queue", "Process Queue: sync every due change to Plex"),
    ("clear_queue", "Clear Pending Queue: drop every waiting change (one being synced finishes)"),
    ("queue_status", "View Queue Status (queue, dead letters, breaker, outages)"),
    ("dlq_list", "List dead letters (args: class, limit)"),
    ("dlq_requeue", "Re-queue dead letters (args: class, or all: true)"),
    ("recover_outage_jobs", "Re-queue dead letters from the last outage (args: outage index, 0 = last)"),
    ("purge_dlq", "Delete dead letters older than N days (args: days, default 30)"),
    ("clear_dlq", "Delete every dead letter"),
];

pub fn run(env: &Env, mode: Option<&str>, args: &Args) -> Answer {
    let Some(mode) = mode.filter(|m| !m.is_empty()) else {
        return Answer::Error(format!("no task mode given (args.mode); known modes: {}", known_modes(env)));
    };
    crate::info!("Task starting: {mode}");
    let answer = match mode {
        "process_queue" => match args::flag(args, "background") {
            Ok(background) => crate::drain::process_queue(env, background),
            Err(e) => Answer::Error(e),
        },
        "all" => bulk::sync(env, bulk::Scope::All),
        "recent" => bulk::sync(env, bulk::Scope::Recent),
        "queue_status" => queue::queue_status(env),
        "clear_queue" => queue::clear_queue(env),
        "dlq_list" => dead_letters::list(env, args),
        "dlq_requeue" => dead_letters::requeue_matching(env, args),
        "recover_outage_jobs" => dead_letters::recover_outage(env, args),
        "purge_dlq" => dead_letters::purge(env, args),
        "clear_dlq" => dead_letters::clear(env),
        other => policy_task(env, other, args),
    };
    if let Answer::Output(Value::String(text)) = &answer {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            crate::info!("{line}");
        }
    }
    // How syncing stands, if no hook or task has said it yet (in Stash's
    // log: a background drainer's log is its own file).
    let background = mode == "process_queue" && args::flag(args, "background").unwrap_or(false);
    if !background && let Ok(mut queue) = env.open_queue() {
        crate::condition::announce(&mut queue);
    }
    answer
}

/// The tasks the policy that would run declares.
fn policy_modes(env: &Env) -> Vec<String> {
    let cached = env.open_queue().map(|q| Env::cached_settings(&q).map).unwrap_or_default();
    env.load_runtime(&cached)
        .ok()
        .and_then(|(rt, _)| session::admit(&rt).ok())
        .map(|info| info.tasks.into_iter().map(|t| t.name).collect())
        .unwrap_or_default()
}

fn known_modes(env: &Env) -> String {
    let mut modes: Vec<String> = HOST_MODES.iter().map(|(m, _)| m.to_string()).collect();
    modes.extend(policy_modes(env));
    modes.join(", ")
}

/// A reconciliation runs in a drain, after the changes already due: this
/// task's own (so Stash shows it and its report), or the drainer's that is
/// running already.
fn reconcile_in_drain(env: &Env, started: String) -> Answer {
    crate::info!("{started}");
    let done = match crate::drain::process_queue(env, false) {
        Answer::Output(Value::String(done)) => done,
        other => return other,
    };
    if done.contains(crate::drain::BUSY) {
        return Answer::ok(format!(
            "{started}. A drainer is running: it does the reconciliation after its due changes and writes the report to its log; see Last Reconciliation Report."
        ));
    }
    let report = connected_session(env).map_err(|e| e.to_string()).and_then(|mut linked| {
        match linked.session.run_task("reconcile_report", "{}") {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(msg)) => Err(msg),
            Err(e) => Err(e.to_string()),
        }
    });
    match report {
        Ok(report) => Answer::ok(format!("{report}\n{done}")),
        Err(e) => Answer::ok(format!("{started}. {done}. (The report could not be read: {e}.)")),
    }
}

fn policy_task(env: &Env, name: &str, args: &Args) -> Answer {
    if !policy_modes(env).iter().any(|m| m == name) {
        return Answer::Error(format!("unknown task mode {name:?}; known modes: {}", known_modes(env)));
    }
    let mut session = match connected_session(env) {
        Ok(linked) => linked.session,
        Err(e) => return Answer::Error(e),
    };
    match session.run_task(name, &Value::Object(args.clone()).to_string()) {
        // A reconciliation is done by the drain's steps (never beside a
        // drain): start one, or leave it to the one running.
        Ok(Ok(started)) if name == "reconcile" => {
            let lines = session.policy.status_lines();
            drop(session);
            match reconcile_in_drain(env, started) {
                Answer::Output(Value::String(out)) => Answer::ok(format!("{}\n{}", out.trim_end(), lines.trim_end())),
                other => other,
            }
        }
        // Every report says which policy made it, and why that one runs.
        Ok(Ok(report)) => Answer::ok(format!("{}\n{}", report.trim_end(), session.policy.status_lines().trim_end())),
        Ok(Err(msg)) => Answer::Error(msg),
        Err(e) => Answer::Error(e.to_string()),
    }
}
