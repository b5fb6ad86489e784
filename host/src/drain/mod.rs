//! Draining the queue: one process at a time (`lock`), calling the policy's
//! `step` in the one loop below until `rules` says stop. How long a drain
//! waits for jobs that are not due yet, or for Plex to come back, depends
//! on who runs it (`DrainMode`): a Stash task ends soon and hands over; the
//! detached background drainer a hook starts (`background`) rides out
//! outages and near retries. The simulator (`sim`, a cargo feature the tests
//! and the lab turn on) runs this same loop with a fake clock.

pub mod background;
pub mod catchup;
mod events;
pub mod lock;
mod process;
pub mod rules;
#[cfg(feature = "sim")]
pub mod sim;
mod watch;

pub use process::process_queue;

/// What a drain answers when another process holds the drain lock.
pub const BUSY: &str = "another stash2plex process is already draining the queue";

use crate::capabilities::HostState;
use crate::clock::Clock;
use crate::runtime::session::{Call, PolicySession};
use crate::runtime::wit::policy::StepOutcome;
use rules::{Next, Rules, Step};

/// How long a drain keeps going when nothing is due right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainMode {
    /// When only jobs waiting for a retry remain, wait for the next one if
    /// it is due within this long (0: end at once).
    pub linger_ms: u64,
    /// Total time the drain may spend waiting (pacing, outages, lingering)
    /// before it ends and leaves the rest to the next drainer.
    pub max_total_wait_ms: u64,
    /// Longest a drain runs in all, whatever the policy answers.
    pub max_run_ms: u64,
    /// With nothing left at all, wait this long for a late change before
    /// ending (once per stretch of work): during a Stash scan hooks come
    /// in a trickle, and one drainer takes them instead of one each.
    pub idle_linger_ms: u64,
}

impl DrainMode {
    /// A Stash task: Stash runs one task at a time, so a task must not sit
    /// through a long Plex outage; it waits a little, then hands over.
    pub const FOREGROUND: DrainMode =
        DrainMode { linger_ms: 0, max_total_wait_ms: 120_000, max_run_ms: 3_600_000, idle_linger_ms: 0 };
    /// The detached drainer a hook starts: rides out outages and retries
    /// that are due soon, so nobody has to press a button.
    pub const BACKGROUND: DrainMode = DrainMode {
        linger_ms: 15 * 60_000,
        max_total_wait_ms: u64::MAX,
        max_run_ms: 12 * 3_600_000,
        idle_linger_ms: 2_000,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing is due and nothing waits.
    Empty,
    /// Only jobs waiting for a later retry remain.
    OnlyWaits,
    /// The drain waited as long as its mode allows; work remains.
    WaitLimit,
    /// The policy kept failing.
    PolicyFailures,
    /// The policy kept asking to wait without doing any work.
    NoProgress,
    /// The drain ran as long as its mode allows; the rest is left for the
    /// next drainer.
    RunLimit,
    /// The observer ended it (the simulator's time limit or condition).
    Observer,
    /// The plugin settings changed in Stash: the drain starts again with
    /// them (a new token, for example).
    SettingsChanged,
    /// Stash could not be reached for a while: the drainer ends, and the
    /// next hook or task starts a new one.
    StashGone,
}

#[derive(Debug, Clone)]
pub struct DrainReport {
    pub steps_worked: u64,
    /// Jobs the policy attempted (a reconciliation's steps are work but
    /// not jobs).
    pub jobs: u64,
    pub stopped: Stopped,
    mode_max_run_ms: u64,
}

impl DrainReport {
    pub fn describe(&self) -> String {
        match self.stopped {
            Stopped::Empty => "the queue is empty".into(),
            Stopped::OnlyWaits => "only jobs waiting to retry remain".into(),
            Stopped::WaitLimit => "stopped waiting for Plex; the remaining jobs are kept".into(),
            Stopped::NoProgress => format!(
                "stopped: the policy asked to wait {} times in a row without doing any work; the jobs are kept",
                rules::MAX_WAITS_WITHOUT_WORK
            ),
            Stopped::PolicyFailures => format!(
                "stopped after {} policy failures in a row; the jobs are kept and will be retried by the next drain",
                rules::MAX_CONSECUTIVE_FAILURES
            ),
            Stopped::Observer => "stopped by the caller".into(),
            Stopped::SettingsChanged => "the plugin settings changed in Stash; starting again with them".into(),
            Stopped::StashGone => {
                "Stash could not be reached for a minute; the changes are kept and sync when Stash is back".into()
            }
            Stopped::RunLimit => format!(
                "stopped after {} of draining; the remaining jobs are kept for the next drain",
                crate::text::duration_text(i64::try_from(self.mode_max_run_ms).unwrap_or(i64::MAX))
            ),
        }
    }
}

/// What the loop does before a step, as the observer decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// Do not step for this long (Stash is scanning, for example).
    Pause(u64),
    Stop(Stopped),
}

/// What the loop does while it sleeps between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Sleep on.
    Sleep,
    /// Step now (a hook recorded a change).
    Now,
    Stop(Stopped),
}

/// Watches a drain: the simulator drives faults and time through it; the
/// drainer hands hook events to the policy, follows the settings in Stash
/// and notices Stash going away (`watch`).
pub trait Observer {
    /// Before each step.
    fn before_step(&mut self, _session: &mut PolicySession, _now_ms: i64) -> Gate {
        Gate::Go
    }
    /// After each step, with when it started and what it gave.
    fn after_step(&mut self, _session: &PolicySession, _started_ms: i64, _outcome: &Call<StepOutcome>) {}
    /// Every [`SLEEP_SLICE_MS`] while the loop sleeps.
    fn while_sleeping(&mut self, _session: &mut PolicySession, _now_ms: i64) -> Wake {
        Wake::Sleep
    }
}

/// The loop sleeps in slices this long, so the observer can wake it.
pub const SLEEP_SLICE_MS: u64 = 1_000;

/// The drain loop. `total_hint` (jobs due at the start) scales the task
/// progress shown in Stash.
pub fn run(
    session: &mut PolicySession,
    clock: &dyn Clock,
    mode: DrainMode,
    total_hint: u64,
    observer: &mut dyn Observer,
) -> DrainReport {
    let mut rules = Rules::new(mode, clock.now_ms());
    let mut worked = 0u64;
    let mut jobs = 0u64;
    let stopped = 'drain: loop {
        // A changed policy file or choice, or a policy that keeps failing,
        // is switched here, between two steps (the events the observer
        // hands over next go to the new policy).
        session.between_steps();
        match observer.before_step(session, clock.now_ms()) {
            Gate::Go => {}
            Gate::Stop(stopped) => break stopped,
            Gate::Pause(ms) => {
                if let Some(stopped) = rules.run_limit(clock.now_ms()) {
                    break stopped;
                }
                if let Some(stopped) = sleep(session, clock, observer, ms) {
                    break stopped;
                }
                continue;
            }
        }
        let started = clock.now_ms();
        let effects_before = session.state().map(HostState::effects);
        let attempted_before = session.state().map_or(0, |s| s.queue.attempted);
        let outcome = session.step();
        let effects_after = session.state().map(HostState::effects);
        // A restarted instance starts its count again.
        jobs += session.state().map_or(0, |s| s.queue.attempted).saturating_sub(attempted_before);
        let step = match &outcome {
            Ok(Ok(StepOutcome::Worked(_))) if effects_before == effects_after => Step::Hollow,
            Ok(Ok(StepOutcome::Worked(summary))) => {
                worked += 1;
                crate::debug!("step: {summary}");
                if total_hint > 0 && !session.state().is_some_and(|s| s.log.reports_progress()) {
                    crate::plugin::log::progress(jobs as f64 / total_hint as f64);
                }
                Step::Worked
            }
            Ok(Ok(StepOutcome::WaitMs(ms))) => Step::WaitMs(*ms),
            Ok(Ok(StepOutcome::Idle(next))) => Step::Idle(*next),
            Ok(Err(msg)) => {
                crate::error!("The policy reported an error: {msg}");
                Step::Failed
            }
            Err(e) => {
                crate::error!("The policy failed and was restarted: {e}");
                Step::Failed
            }
        };
        observer.after_step(session, started, &outcome);
        match rules.after(step, clock.now_ms()) {
            Next::Step => {}
            Next::Sleep(ms) => {
                if let Some(stopped) = sleep(session, clock, observer, ms) {
                    break 'drain stopped;
                }
            }
            Next::Stop(stopped) => break stopped,
        }
    };
    DrainReport { steps_worked: worked, jobs, stopped, mode_max_run_ms: mode.max_run_ms }
}

/// Sleep `ms` in slices, asking the observer between them; `Some` when it
/// stops the drain.
fn sleep(session: &mut PolicySession, clock: &dyn Clock, observer: &mut dyn Observer, ms: u64) -> Option<Stopped> {
    let mut left = ms;
    while left > 0 {
        let slice = left.min(SLEEP_SLICE_MS);
        clock.sleep_ms(slice);
        left -= slice;
        match observer.while_sleeping(session, clock.now_ms()) {
            Wake::Sleep => {}
            Wake::Now => return None,
            Wake::Stop(stopped) => return Some(stopped),
        }
    }
    None
}
