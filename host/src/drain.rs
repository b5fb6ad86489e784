//! Draining the queue: one process at a time (an OS file lock, released by
//! the kernel if the process dies), calling the policy's `step` until it
//! says nothing is due. Waiting jobs never keep the drain alive: when only
//! jobs with a later `not_before` remain, the drain ends and reports when the
//! next one is due.

use crate::bindings::exported::StepOutcome;
use crate::clock::Clock;
use crate::policy_session::PolicySession;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Consecutive policy failures (traps, errors) before the drain gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 5;
/// Longest pause the drain honours from `wait-ms` before re-asking.
const MAX_WAIT_MS: u32 = 60_000;

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

#[derive(Debug, Default, Clone)]
pub struct DrainReport {
    pub steps_worked: u64,
    pub policy_failures: u64,
    pub stopped: String,
    pub next_due_ms: Option<i64>,
}

pub fn run(session: &mut PolicySession, clock: &dyn Clock, total_hint: u64) -> DrainReport {
    let mut report = DrainReport::default();
    let mut consecutive = 0u32;
    loop {
        match session.step() {
            Ok(Ok(StepOutcome::Worked(summary))) => {
                consecutive = 0;
                report.steps_worked += 1;
                crate::debug!("step: {summary}");
                if total_hint > 0 {
                    crate::stash_log::progress(report.steps_worked as f64 / total_hint as f64);
                }
            }
            Ok(Ok(StepOutcome::WaitMs(ms))) => {
                consecutive = 0;
                clock.sleep_ms(u64::from(ms.min(MAX_WAIT_MS)));
            }
            Ok(Ok(StepOutcome::Idle(next))) => {
                report.next_due_ms = next;
                report.stopped = match next {
                    None => "the queue is empty".into(),
                    Some(_) => "only jobs waiting to retry remain".into(),
                };
                break;
            }
            Ok(Err(msg)) => {
                consecutive += 1;
                report.policy_failures += 1;
                crate::error!("The policy reported an error: {msg}");
            }
            Err(e) => {
                consecutive += 1;
                report.policy_failures += 1;
                crate::error!("The policy failed and was restarted: {e}");
            }
        }
        if consecutive >= MAX_CONSECUTIVE_FAILURES {
            report.stopped = format!(
                "stopped after {MAX_CONSECUTIVE_FAILURES} policy failures in a row; the jobs are kept and will be retried by the next drain"
            );
            break;
        }
    }
    report
}
