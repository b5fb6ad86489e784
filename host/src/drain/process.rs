//! The Process Queue task, in the foreground (a Stash task) or in the
//! background (the detached drainer a hook starts): take the lock, connect,
//! run the loop, and follow `rules::after_drain` for what comes next.

use super::rules::{self, AfterDrain};
use super::watch::Watcher;
use super::{DrainMode, Stopped, background, catchup, events, lock};
use crate::condition::{self, Condition, Kind};
use crate::connect::{Linked, connected_session};
use crate::env::Env;
use crate::plugin::answer::Answer;
use crate::plugin::log;
use crate::text::duration_text;

const DAY_MS: i64 = 86_400_000;

pub fn process_queue(env: &Env, background: bool) -> Answer {
    let mode = if background { DrainMode::BACKGROUND } else { DrainMode::FOREGROUND };
    let mut jobs = 0u64;
    let mut round = 0u32;
    let answer = loop {
        let (summary, stopped) = match drain_once(env, mode, &mut jobs) {
            Ok(r) => r,
            Err(answer) => break answer,
        };
        let ready = ready_now(env);
        match rules::after_drain(background, stopped, ready, auto_drain_allowed(env), round) {
            AfterDrain::AnotherRound => round += 1,
            AfterDrain::Finish => break Answer::ok(summary),
            AfterDrain::HandOver => {
                match background::ensure_drainer(env) {
                    Ok(true) => crate::info!("A background drainer keeps retrying; Stash's task queue is free again."),
                    Ok(false) => {}
                    Err(e) => crate::warn!("{e}"),
                }
                break Answer::ok(summary);
            }
        }
    };
    log::progress(1.0);
    answer
}

/// Jobs due now, and changes hooks recorded that no policy has read yet.
fn ready_now(env: &Env) -> u64 {
    let Ok(q) = env.open_queue() else { return 0 };
    let ready = q.counts(env.now_ms()).map(|c| c.ready).unwrap_or(0);
    ready + q.count_events().unwrap_or(0)
}

fn auto_drain_allowed(env: &Env) -> bool {
    env.open_queue().is_ok_and(|q| background::enabled(Env::cached_settings(&q).auto_drain))
}

/// One drain under the lock: the summary, and why it stopped. `Err`
/// carries the answer to give when nothing could be drained (busy,
/// disabled, misconfigured).
fn drain_once(env: &Env, mode: DrainMode, jobs: &mut u64) -> Result<(String, Stopped), Answer> {
    let _lock = match lock::try_lock(&env.data_dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Err(Answer::ok(super::BUSY)),
        Err(e) => return Err(Answer::Error(e)),
    };
    // This drainer is the one a hook's claim asked for (or runs anyway).
    if let Ok(mut queue) = env.open_queue()
        && let Err(e) = queue.clear_drainer_start()
    {
        crate::warn!("Could not note that a drainer runs: {e}");
    }
    let Linked { mut session, settings, settings_map, stash } = connected_session(env).map_err(Answer::Error)?;
    if !settings.enabled {
        let text = "disabled (the enabled setting is off); changes are still recorded and will sync when it is on";
        if let Some(state) = session.state_mut() {
            condition::persist(
                &mut state.queue.queue,
                &Condition::new(Kind::Disabled, format!("Syncing to Plex is {text}.")),
            );
        }
        return Err(Answer::ok(text));
    }
    if mode.linger_ms > 0 && !settings.auto_drain {
        return Err(Answer::ok("auto_drain is off: background draining is disabled"));
    }
    let absorbed = events::absorb(&mut session, env.now_ms());
    if absorbed.handled > 0 {
        crate::debug!("Read {} recorded change(s)", absorbed.handled);
    }
    let Some(state) = session.state_mut() else {
        return Err(Answer::Error("the policy session ended unexpectedly".into()));
    };
    catchup::run_logged(&mut state.queue.queue, &stash, env.now_ms());
    if settings.dlq_retention_days > 0 {
        let before = env.now_ms() - i64::from(settings.dlq_retention_days) * DAY_MS;
        match state.queue.queue.purge_dead(before) {
            Ok(0) => {}
            Ok(n) => crate::info!(
                "Removed {n} dead letter(s) older than {} day(s) (dlq_retention_days)",
                settings.dlq_retention_days
            ),
            Err(e) => crate::warn!("Could not purge old dead letters: {e}"),
        }
    }
    let before =
        state.queue.queue.counts(env.now_ms()).map_err(|e| Answer::Error(format!("cannot read the queue: {e}")))?;
    crate::info!(
        "Processing the queue: {} due, {} waiting to retry, {} dead-lettered",
        before.ready,
        before.waiting,
        before.dead
    );
    let mut watcher = Watcher::new(stash.clone(), &env.opts.plugin_id, settings_map, env.chooser(), env.now_ms());
    let report = super::run(&mut session, env.opts.clock.as_ref(), mode, before.ready, &mut watcher);
    env.keep_session_cookie(stash.session_cookie());
    watcher.note_condition_now(&mut session, env.now_ms());
    *jobs += report.jobs;
    let Some(state) = session.state() else {
        return Err(Answer::Error("the policy session ended unexpectedly".into()));
    };
    let now = env.now_ms();
    let after = state.queue.queue.counts(now).unwrap_or_default();
    let next = match after.next_due_ms {
        Some(t) => format!("; next retry in {}", duration_text(t - now)),
        None => String::new(),
    };
    Ok((
        format!(
            "Processed {} job(s) with {} Plex request(s) ({} edits); {}. Left: {} due, {} waiting, {} dead-lettered{next}. Policy: {}",
            *jobs,
            state.plex.stats.requests,
            state.plex.stats.puts,
            report.describe(),
            after.ready,
            after.waiting,
            after.dead,
            session.policy.short()
        ),
        report.stopped,
    ))
}
