//! The Process Queue task, in the foreground (a Stash task) or in the
//! background (the detached drainer a hook starts): take the lock, connect,
//! run the loop, and follow `rules::after_drain` for what comes next.

use super::rules::{self, AfterDrain, Left};
use super::watch::Watcher;
use super::{DrainMode, Stopped, background, catchup, events, lock};
use crate::condition::{self, Condition, Kind};
use crate::connect::{Linked, connected_session};
use crate::env::Env;
use crate::plugin::answer::Answer;
use crate::plugin::log;
use crate::text::duration_text;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

pub fn process_queue(env: &Env, background: bool) -> Answer {
    let mode = if background { DrainMode::BACKGROUND } else { DrainMode::FOREGROUND };
    let mut jobs = 0u64;
    let mut round = 0u32;
    let mut done: Option<String> = None;
    let answer = loop {
        let (summary, stopped, ready_at_stop) = match drain_rounds(env, mode, background, &mut jobs, &mut round) {
            Ok(Some(r)) => r,
            // Another drainer took the lock between two rounds: it drains
            // the rest; this one tells what it did.
            Ok(None) => {
                break Answer::ok(done.unwrap_or_else(|| super::BUSY.into()));
            }
            Err(answer) => break answer,
        };
        // The lock is free again: look once more (see `Left::late`).
        let left = left_now(env, ready_at_stop);
        match rules::after_drain(background, stopped, left, auto_drain_allowed(env), round) {
            AfterDrain::AnotherRound => {
                round += 1;
                done = Some(summary);
            }
            AfterDrain::Finish => break Answer::ok(summary),
            AfterDrain::HandOver => {
                match background::ensure_drainer(env) {
                    Ok(true) if !background => {
                        crate::info!("A background drainer keeps retrying; Stash's task queue is free again.")
                    }
                    Ok(true) => crate::info!("Changes keep coming; a fresh background drainer takes them."),
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

/// Drains under the lock, round after round while changes come in (the
/// lock is kept between them, so no hook starts a drainer meanwhile); the
/// last round's summary, why it stopped and the jobs due then; `None` when
/// another drainer holds the lock. `Err` carries the answer to give when
/// nothing could be drained (disabled, misconfigured).
fn drain_rounds(
    env: &Env,
    mode: DrainMode,
    background: bool,
    jobs: &mut u64,
    round: &mut u32,
) -> Result<Option<(String, Stopped, u64)>, Answer> {
    let _lock = match take_lock(env) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Answer::Error(e)),
    };
    // This drainer is the one a hook's claim asked for (or runs anyway).
    clear_start_claim(env);
    loop {
        let (summary, stopped, ready_at_stop) = drain_once(env, mode, jobs)?;
        let left = left_now(env, ready_at_stop);
        if rules::after_drain(background, stopped, left, auto_drain_allowed(env), *round) != AfterDrain::AnotherRound {
            return Ok(Some((summary, stopped, ready_at_stop)));
        }
        *round += 1;
    }
}

/// What the queue holds now: jobs due and changes hooks recorded that no
/// policy has read yet.
fn left_now(env: &Env, ready_at_stop: u64) -> Left {
    let Ok(q) = env.open_queue() else { return Left { ready_at_stop, ..Left::default() } };
    Left {
        ready_at_stop,
        ready: q.counts(env.now_ms()).map(|c| c.ready).unwrap_or(0),
        events: q.count_events().unwrap_or(0),
    }
}

fn auto_drain_allowed(env: &Env) -> bool {
    env.open_queue().is_ok_and(|q| background::enabled(Env::cached_settings(&q).auto_drain))
}

/// How long a drain waits for the lock before it leaves the queue to
/// whoever holds it. A hook checking whether a drainer runs holds it for a
/// moment, and a drainer that is ending lets go at once.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// The drain lock, or `None` when another drainer holds it. That drainer
/// looks at the queue again once it lets go, so it drains what this one
/// was started for. A hook may still hold the lock (checking it), with its
/// start claim lost to this drainer's: the claim is freed before the last
/// try, so that hook, or the next, can start a drainer.
fn take_lock(env: &Env) -> Result<Option<lock::DrainLock>, String> {
    if let Some(lock) = lock::take(&env.data_dir, LOCK_PATIENCE)? {
        return Ok(Some(lock));
    }
    clear_start_claim(env);
    lock::try_lock(&env.data_dir)
}

/// A hook's claim to start a drainer is used up: by this drainer, which
/// holds the lock, or given up, when another drainer drains instead.
fn clear_start_claim(env: &Env) {
    if let Err(e) = env.open_queue().and_then(|mut q| q.clear_drainer_start().map_err(|e| e.to_string())) {
        crate::warn!("Could not note that a drainer runs: {e}");
    }
}

/// One drain (the caller holds the lock): the summary, why it stopped,
/// and the jobs due when it did.
fn drain_once(env: &Env, mode: DrainMode, jobs: &mut u64) -> Result<(String, Stopped, u64), Answer> {
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
        after.ready,
    ))
}
