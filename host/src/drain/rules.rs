//! When a drain goes on and when it stops: the one place that decides.
//! Pure: the loop (`drain::run`) feeds it each step's outcome and the time,
//! and the process (`drain::process`) asks it what to do after a drain.

use super::{DrainMode, Stopped};

/// Consecutive policy failures (traps, errors) before the drain gives up.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 5;
/// Longest pause the drain honours from `wait-ms` or `idle` before re-asking.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Shortest pause: `wait-ms(0)` must not become a hot loop.
pub const MIN_WAIT_MS: u64 = 10;
/// Waits in a row without any work before the drain decides the policy is
/// stuck (a real outage alternates waits with probes).
pub const MAX_WAITS_WITHOUT_WORK: u32 = 1_000;
/// Rounds a background drainer runs for changes recorded while it was
/// finishing (each round is a full drain).
pub const MAX_ROUNDS: u32 = 100;

/// One step's outcome, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Worked,
    /// `worked`, but the host saw no effect (no queue outcome, no enqueue,
    /// no Plex request): counted like a wait.
    Hollow,
    WaitMs(u32),
    Idle(Option<i64>),
    /// The policy answered an error or failed (trap, fuel, memory).
    Failed,
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Step again now.
    Step,
    /// Sleep this long, then step again.
    Sleep(u64),
    Stop(Stopped),
}

/// The loop's counters.
#[derive(Debug, Clone)]
pub struct Rules {
    mode: DrainMode,
    started_ms: i64,
    failures: u32,
    waits_without_work: u32,
    waited_ms: u64,
    /// The idle linger was used since the last work.
    lingered: bool,
}

impl Rules {
    pub fn new(mode: DrainMode, started_ms: i64) -> Rules {
        Rules { mode, started_ms, failures: 0, waits_without_work: 0, waited_ms: 0, lingered: false }
    }

    /// `Some` once the drain has run as long as its mode allows.
    pub fn run_limit(&self, now_ms: i64) -> Option<Stopped> {
        let ran = u64::try_from(now_ms.saturating_sub(self.started_ms)).unwrap_or(0);
        (ran > self.mode.max_run_ms).then_some(Stopped::RunLimit)
    }

    /// After a step at `now_ms`.
    pub fn after(&mut self, step: Step, now_ms: i64) -> Next {
        if let Some(stopped) = self.run_limit(now_ms) {
            return Next::Stop(stopped);
        }
        let wait = match step {
            Step::Worked => {
                self.failures = 0;
                self.waits_without_work = 0;
                self.lingered = false;
                return Next::Step;
            }
            // Only work resets the failure count: failing, then waiting for
            // the released job, then failing again is still a loop.
            Step::WaitMs(ms) => u64::from(ms).clamp(MIN_WAIT_MS, MAX_WAIT_MS),
            Step::Hollow => MIN_WAIT_MS,
            Step::Idle(None) if self.lingered || self.mode.idle_linger_ms == 0 => return Next::Stop(Stopped::Empty),
            Step::Idle(None) => {
                self.lingered = true;
                self.mode.idle_linger_ms
            }
            Step::Idle(Some(due)) => {
                let until = u64::try_from(due.saturating_sub(now_ms)).unwrap_or(0).max(1);
                if until > self.mode.linger_ms {
                    return Next::Stop(Stopped::OnlyWaits);
                }
                until.clamp(MIN_WAIT_MS, MAX_WAIT_MS)
            }
            Step::Failed => {
                self.failures += 1;
                if self.failures >= MAX_CONSECUTIVE_FAILURES {
                    return Next::Stop(Stopped::PolicyFailures);
                }
                return Next::Step;
            }
        };
        self.waits_without_work += 1;
        if self.waits_without_work > MAX_WAITS_WITHOUT_WORK {
            return Next::Stop(Stopped::NoProgress);
        }
        if self.waited_ms.saturating_add(wait) > self.mode.max_total_wait_ms {
            return Next::Stop(Stopped::WaitLimit);
        }
        self.waited_ms += wait;
        Next::Sleep(wait)
    }
}

/// What a drain process does once a drain has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDrain {
    Finish,
    /// Something was recorded after the drain last looked (a hook or a task
    /// found the lock held and left it to this drain): drain again.
    AnotherRound,
    /// A Stash task leaves work for later (Plex down, retries not due yet),
    /// or a drainer ran its last round with work recorded meanwhile: start
    /// a background drainer (so Stash's task queue is free again).
    HandOver,
}

/// What the queue holds once a drain has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Left {
    /// Jobs due when the drain stopped (read while it held the lock).
    pub ready_at_stop: u64,
    /// Jobs due now, after it let go of the lock.
    pub ready: u64,
    /// Changes hooks recorded that no policy has read yet, now.
    pub events: u64,
}

impl Left {
    /// Recorded after the drain last looked. A hook commits its change
    /// before it checks the lock and the drainer looks again after letting
    /// go of it, so a change whose hook saw the lock held shows up here.
    /// (A job that merely fell due meanwhile counts too: one more round.)
    pub fn late(&self) -> bool {
        self.events > 0 || self.ready > self.ready_at_stop
    }

    fn any(&self) -> bool {
        self.ready > 0 || self.events > 0
    }
}

/// Decide after a drain that stopped with `stopped`, leaving `left`, when
/// background drainers are `allowed`.
pub fn after_drain(background: bool, stopped: Stopped, left: Left, allowed: bool, round: u32) -> AfterDrain {
    let more = round + 1 < MAX_ROUNDS;
    match stopped {
        // Only a drain that ended for want of work drains again for late
        // changes: not after failures (a failing policy must not be re-run
        // in a loop), nor while the policy waits for Plex. A drain that
        // idles through a pause (token, manual) with jobs due ends with
        // them still due: that is not late.
        Stopped::Empty | Stopped::OnlyWaits if left.late() && more => AfterDrain::AnotherRound,
        // The rounds are used up and changes keep coming: a fresh drainer.
        Stopped::Empty | Stopped::OnlyWaits if left.late() && allowed => AfterDrain::HandOver,
        // New settings (a fixed token): drain again with them.
        Stopped::SettingsChanged if more => AfterDrain::AnotherRound,
        Stopped::WaitLimit | Stopped::OnlyWaits | Stopped::RunLimit if !background && allowed && left.any() => {
            AfterDrain::HandOver
        }
        _ => AfterDrain::Finish,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FG: DrainMode = DrainMode::FOREGROUND;
    const BG: DrainMode = DrainMode::BACKGROUND;

    #[test]
    fn work_goes_on_and_an_empty_queue_ends_the_drain() {
        let mut r = Rules::new(FG, 0);
        assert_eq!(r.after(Step::Worked, 0), Next::Step);
        assert_eq!(r.after(Step::Idle(None), 0), Next::Stop(Stopped::Empty));
    }

    #[test]
    fn a_background_drainer_waits_once_for_a_late_change_before_it_ends() {
        let mut r = Rules::new(BG, 0);
        assert_eq!(r.after(Step::Worked, 0), Next::Step);
        assert_eq!(r.after(Step::Idle(None), 10), Next::Sleep(BG.idle_linger_ms), "a late hook is taken");
        assert_eq!(r.after(Step::Idle(None), 2_010), Next::Stop(Stopped::Empty), "nothing came: it ends");
        // A late change came and was worked: the next empty queue lingers again.
        let mut r = Rules::new(BG, 0);
        assert_eq!(r.after(Step::Idle(None), 0), Next::Sleep(BG.idle_linger_ms));
        assert_eq!(r.after(Step::Worked, 2_000), Next::Step);
        assert_eq!(r.after(Step::Idle(None), 2_010), Next::Sleep(BG.idle_linger_ms));
        assert_eq!(r.after(Step::Idle(None), 4_010), Next::Stop(Stopped::Empty));
    }

    #[test]
    fn waits_are_clamped_and_bounded_by_the_mode() {
        let mut r = Rules::new(BG, 0);
        assert_eq!(r.after(Step::WaitMs(0), 0), Next::Sleep(MIN_WAIT_MS));
        assert_eq!(r.after(Step::WaitMs(u32::MAX), 0), Next::Sleep(MAX_WAIT_MS));
        // 120 s in all for a task: the third full minute is refused.
        let mut r = Rules::new(FG, 0);
        assert_eq!(r.after(Step::WaitMs(60_000), 0), Next::Sleep(60_000));
        assert_eq!(r.after(Step::WaitMs(60_000), 0), Next::Sleep(60_000));
        assert_eq!(r.after(Step::WaitMs(10), 0), Next::Stop(Stopped::WaitLimit));
    }

    #[test]
    fn idle_with_a_retry_due_soon_lingers_only_in_the_background() {
        assert_eq!(Rules::new(FG, 0).after(Step::Idle(Some(5_000)), 0), Next::Stop(Stopped::OnlyWaits));
        assert_eq!(Rules::new(BG, 0).after(Step::Idle(Some(5_000)), 0), Next::Sleep(5_000));
        assert_eq!(Rules::new(BG, 0).after(Step::Idle(Some(3_600_000)), 0), Next::Stop(Stopped::OnlyWaits));
        assert_eq!(Rules::new(BG, 0).after(Step::Idle(Some(-7)), 0), Next::Sleep(MIN_WAIT_MS), "overdue: step soon");
    }

    #[test]
    fn failures_in_a_row_stop_and_waiting_does_not_reset_them() {
        let mut r = Rules::new(BG, 0);
        for _ in 0..2 {
            assert_eq!(r.after(Step::Failed, 0), Next::Step);
            assert!(matches!(r.after(Step::WaitMs(10), 0), Next::Sleep(_)));
        }
        assert_eq!(r.after(Step::Failed, 0), Next::Step);
        assert_eq!(r.after(Step::Failed, 0), Next::Step);
        assert_eq!(r.after(Step::Failed, 0), Next::Stop(Stopped::PolicyFailures));
        let mut r = Rules::new(BG, 0);
        for _ in 0..4 {
            r.after(Step::Failed, 0);
        }
        r.after(Step::Worked, 0);
        assert_eq!(r.after(Step::Failed, 0), Next::Step, "work resets the count");
    }

    #[test]
    fn a_drain_runs_at_most_as_long_as_its_mode_allows() {
        let mut r = Rules::new(FG, 1_000);
        assert_eq!(r.after(Step::Worked, 1_000 + 3_600_000), Next::Step);
        assert_eq!(r.after(Step::Worked, 1_000 + 3_600_001), Next::Stop(Stopped::RunLimit));
        assert_eq!(after_drain(false, Stopped::RunLimit, left(5, 5, 0), true, 0), AfterDrain::HandOver);
    }

    #[test]
    fn worked_without_any_effect_is_no_work() {
        let mut r = Rules::new(FG, 0);
        for _ in 0..MAX_WAITS_WITHOUT_WORK {
            assert_eq!(r.after(Step::Hollow, 0), Next::Sleep(MIN_WAIT_MS));
        }
        assert_eq!(r.after(Step::Hollow, 0), Next::Stop(Stopped::NoProgress));
    }

    #[test]
    fn a_policy_that_only_waits_is_stopped() {
        let mut r = Rules::new(BG, 0);
        for _ in 0..MAX_WAITS_WITHOUT_WORK {
            assert!(matches!(r.after(Step::WaitMs(0), 0), Next::Sleep(_)));
        }
        assert_eq!(r.after(Step::WaitMs(0), 0), Next::Stop(Stopped::NoProgress));
    }

    fn left(ready_at_stop: u64, ready: u64, events: u64) -> Left {
        Left { ready_at_stop, ready, events }
    }

    #[test]
    fn after_a_drain() {
        use AfterDrain::*;
        let none = Left::default();
        assert_eq!(after_drain(true, Stopped::Empty, left(0, 1, 0), true, 0), AnotherRound);
        assert_eq!(after_drain(true, Stopped::Empty, none, true, 0), Finish);
        assert_eq!(after_drain(true, Stopped::PolicyFailures, left(3, 3, 2), true, 0), Finish);
        assert_eq!(after_drain(false, Stopped::WaitLimit, left(3, 3, 0), true, 0), HandOver);
        assert_eq!(after_drain(false, Stopped::OnlyWaits, left(3, 3, 0), false, 0), Finish, "auto_drain off");
        assert_eq!(
            after_drain(false, Stopped::OnlyWaits, none, true, 0),
            Finish,
            "nothing due: the next hook starts one"
        );
        assert_eq!(after_drain(false, Stopped::PolicyFailures, left(3, 3, 0), true, 0), Finish);
        assert_eq!(after_drain(true, Stopped::WaitLimit, left(3, 3, 0), true, 0), Finish);
        assert_eq!(after_drain(true, Stopped::SettingsChanged, none, true, 0), AnotherRound);
        assert_eq!(after_drain(false, Stopped::SettingsChanged, none, false, 0), AnotherRound);
        assert_eq!(after_drain(true, Stopped::StashGone, left(5, 5, 0), true, 0), Finish, "the next hook starts one");
    }

    #[test]
    fn a_change_recorded_while_a_drain_ends_is_drained_by_it() {
        use AfterDrain::*;
        // A hook saw the lock held while the drain was ending: its event is
        // there once the drain let go. Whoever held the lock drains again:
        // a background drainer, a Stash task, one that idled on waits.
        for background in [true, false] {
            for allowed in [true, false] {
                assert_eq!(after_drain(background, Stopped::Empty, left(0, 0, 1), allowed, 0), AnotherRound);
                assert_eq!(after_drain(background, Stopped::OnlyWaits, left(0, 0, 1), allowed, 0), AnotherRound);
                // Sync All queued jobs meanwhile.
                assert_eq!(after_drain(background, Stopped::OnlyWaits, left(2, 7, 0), allowed, 0), AnotherRound);
            }
        }
        // A pause (token rejected) idles with jobs due: nothing new, no loop.
        assert_eq!(after_drain(true, Stopped::OnlyWaits, left(4, 4, 0), true, 0), Finish);
        // The last round: a fresh drainer takes over rather than leave it.
        assert_eq!(after_drain(true, Stopped::Empty, left(0, 0, 1), true, MAX_ROUNDS - 1), HandOver);
        assert_eq!(after_drain(true, Stopped::Empty, left(0, 0, 1), false, MAX_ROUNDS - 1), Finish);
    }
}
