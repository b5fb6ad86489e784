//! Draining the queue: one process at a time (an OS file lock, released by
//! the kernel if the process dies), calling the policy's `step` until it
//! says nothing is due. How long a drain waits for jobs that are not due
//! yet, or for Plex to come back, depends on who runs it (`DrainMode`): a
//! Stash task ends soon and hands over; the detached background drainer a
//! hook starts rides out outages and near retries.

use crate::bindings::exported::StepOutcome;
use crate::clock::Clock;
use crate::policy_session::PolicySession;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Consecutive policy failures (traps, errors) before the drain gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 5;
/// Longest pause the drain honours from `wait-ms` before re-asking.
const MAX_WAIT_MS: u32 = 60_000;
/// Shortest pause: `wait-ms(0)` must not become a hot loop.
const MIN_WAIT_MS: u32 = 10;
/// Waits in a row without any work before the drain decides the policy is
/// stuck (a real outage alternates waits with probes).
const MAX_WAITS_WITHOUT_WORK: u32 = 1_000;

pub struct DrainLock {
    _file: File,
}

/// Take the drain lock, or `None` if another process holds it.
pub fn try_lock(data_dir: &Path) -> Result<Option<DrainLock>, String> {
    let path = data_dir.join("drain.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open the drain lock {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(DrainLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// How long a drain keeps going when nothing is due right now.
#[derive(Debug, Clone, Copy)]
pub struct DrainMode {
    /// When only jobs waiting for a retry remain, wait for the next one if
    /// it is due within this long (0: end at once).
    pub linger_ms: u64,
    /// Total time the drain may spend waiting (pacing, outages, lingering)
    /// before it ends and leaves the rest to the next drainer.
    pub max_total_wait_ms: u64,
}

impl DrainMode {
    /// A Stash task: Stash runs one task at a time, so a task must not sit
    /// through a long Plex outage; it waits a little, then hands over.
    pub const FOREGROUND: DrainMode = DrainMode { linger_ms: 0, max_total_wait_ms: 120_000 };
    /// The detached drainer a hook starts: rides out outages and retries
    /// that are due soon, so nobody has to press a button.
    pub const BACKGROUND: DrainMode = DrainMode { linger_ms: 15 * 60_000, max_total_wait_ms: u64::MAX };
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
}

#[derive(Debug, Clone)]
pub struct DrainReport {
    pub steps_worked: u64,
    pub stopped: Stopped,
}

impl DrainReport {
    pub fn describe(&self) -> String {
        match self.stopped {
            Stopped::Empty => "the queue is empty".into(),
            Stopped::OnlyWaits => "only jobs waiting to retry remain".into(),
            Stopped::WaitLimit => "stopped waiting for Plex; the remaining jobs are kept".into(),
            Stopped::NoProgress => format!(
                "stopped: the policy asked to wait {MAX_WAITS_WITHOUT_WORK} times in a row without doing any work; the jobs are kept"
            ),
            Stopped::PolicyFailures => format!(
                "stopped after {MAX_CONSECUTIVE_FAILURES} policy failures in a row; the jobs are kept and will be retried by the next drain"
            ),
        }
    }
}

pub fn run(session: &mut PolicySession, clock: &dyn Clock, total_hint: u64, mode: DrainMode) -> DrainReport {
    let mut report = DrainReport { steps_worked: 0, stopped: Stopped::Empty };
    let mut waited_ms = 0u64;
    let mut consecutive = 0u32;
    let mut waits_without_work = 0u32;
    loop {
        let wait = match session.step() {
            Ok(Ok(StepOutcome::Worked(summary))) => {
                consecutive = 0;
                waits_without_work = 0;
                report.steps_worked += 1;
                crate::debug!("step: {summary}");
                if total_hint > 0 {
                    crate::stash_log::progress(report.steps_worked as f64 / total_hint as f64);
                }
                0
            }
            Ok(Ok(StepOutcome::WaitMs(ms))) => {
                // Only work resets the failure count: failing, then waiting
                // for the released job, then failing again is still a loop.
                u64::from(ms.clamp(MIN_WAIT_MS, MAX_WAIT_MS))
            }
            Ok(Ok(StepOutcome::Idle(next))) => {
                let Some(due) = next else {
                    report.stopped = Stopped::Empty;
                    break;
                };
                let until = (due - clock.now_ms()).max(1) as u64;
                if until > mode.linger_ms {
                    report.stopped = Stopped::OnlyWaits;
                    break;
                }
                until.min(u64::from(MAX_WAIT_MS))
            }
            Ok(Err(msg)) => {
                consecutive += 1;
                crate::error!("The policy reported an error: {msg}");
                0
            }
            Err(e) => {
                consecutive += 1;
                crate::error!("The policy failed and was restarted: {e}");
                0
            }
        };
        if consecutive >= MAX_CONSECUTIVE_FAILURES {
            report.stopped = Stopped::PolicyFailures;
            break;
        }
        if wait > 0 {
            waits_without_work += 1;
            if waits_without_work > MAX_WAITS_WITHOUT_WORK {
                report.stopped = Stopped::NoProgress;
                break;
            }
            if waited_ms.saturating_add(wait) > mode.max_total_wait_ms {
                report.stopped = Stopped::WaitLimit;
                break;
            }
            waited_ms += wait;
            clock.sleep_ms(wait);
        }
    }
    report
}
