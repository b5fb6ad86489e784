//! Draining the queue: one process at a time (`lock`), calling the policy's
//! `step` in the one loop below until `rules` says stop. How long a drain
//! waits for jobs that are not due yet, or for Plex to come back, depends
//! on who runs it (`DrainMode`): a Stash task ends soon and hands over; the
//! detached background drainer a hook starts (`background`) rides out
//! outages and near retries. The simulator (`sim`, a cargo feature the tests
//! and the lab turn on) runs this same loop with a fake clock.

pub mod background;
pub mod lock;
mod process;
pub mod rules;
#[cfg(feature = "sim")]
pub mod sim;

pub use process::process_queue;

use crate::capabilities::HostState;
use crate::clock::Clock;
use crate::runtime::session::{Call, PolicySession};
use crate::runtime::wit::policy::StepOutcome;
use rules::{Next, Rules, Step};
use std::ops::ControlFlow;

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
}

impl DrainMode {
    /// A Stash task: Stash runs one task at a time, so a task must not sit
    /// through a long Plex outage; it waits a little, then hands over.
    pub const FOREGROUND: DrainMode = DrainMode { linger_ms: 0, max_total_wait_ms: 120_000, max_run_ms: 3_600_000 };
    /// The detached drainer a hook starts: rides out outages and retries
    /// that are due soon, so nobody has to press a button.
    pub const BACKGROUND: DrainMode =
        DrainMode { linger_ms: 15 * 60_000, max_total_wait_ms: u64::MAX, max_run_ms: 12 * 3_600_000 };
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
}

#[derive(Debug, Clone)]
pub struct DrainReport {
    pub steps_worked: u64,
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
            Stopped::RunLimit => format!(
                "stopped after {} of draining; the remaining jobs are kept for the next drain",
                crate::text::duration_text(i64::try_from(self.mode_max_run_ms).unwrap_or(i64::MAX))
            ),
        }
    }
}

/// Watches a drain: the simulator drives faults and time through it, a
/// drainer could refresh its settings between steps.
pub trait Observer {
    /// Before each step; `Break` ends the drain.
    fn before_step(&mut self, _session: &PolicySession, _now_ms: i64) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
    /// After each step, with when it started and what it gave.
    fn after_step(&mut self, _session: &PolicySession, _started_ms: i64, _outcome: &Call<StepOutcome>) {}
}

/// An observer that only watches nothing.
pub struct Unobserved;
impl Observer for Unobserved {}

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
    let stopped = loop {
        // Issue 12: a changed policy file or `policy_path`, or a policy that
        // keeps failing, is switched between two steps (a no-op without a
        // watch). To be folded into the production observer (issue 9).
        session.between_steps();
        if observer.before_step(session, clock.now_ms()).is_break() {
            break Stopped::Observer;
        }
        let started = clock.now_ms();
        let effects_before = session.state().map(HostState::effects);
        let outcome = session.step();
        let effects_after = session.state().map(HostState::effects);
        let step = match &outcome {
            Ok(Ok(StepOutcome::Worked(_))) if effects_before == effects_after => Step::Hollow,
            Ok(Ok(StepOutcome::Worked(summary))) => {
                worked += 1;
                crate::debug!("step: {summary}");
                if total_hint > 0 {
                    crate::plugin::log::progress(worked as f64 / total_hint as f64);
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
            Next::Sleep(ms) => clock.sleep_ms(ms),
            Next::Stop(stopped) => break stopped,
        }
    };
    DrainReport { steps_worked: worked, stopped, mode_max_run_ms: mode.max_run_ms }
}
