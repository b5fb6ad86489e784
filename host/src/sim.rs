//! An in-process simulator: the real host capabilities and the real policy
//! component, driven by a fake clock. Plex and Stash are whatever servers the
//! caller points it at (the loopback fakes in tests). Hours of outages and
//! backoff run in seconds, and runs are reproducible (fixed RNG seed).
//!
//! The drive loop mirrors `drain::run`, except that time is simulated:
//! `wait-ms(n)` advances the clock by n, `idle(Some(t))` jumps to t, and each
//! step that worked costs `step_cost_ms` of simulated time.

use crate::bindings::exported::{Event, EventOutcome, StepOutcome};
use crate::clock::{Clock, FakeClock};
use crate::host_state::HostState;
use crate::plex_client::PlexClient;
use crate::policy_session::PolicySession;
use crate::queue::{Counts, Queue};
use crate::runtime::{self, Limits, Runtime};
use crate::stash_client::StashClient;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct SimConfig<'a> {
    pub data_dir: &'a Path,
    pub plex_url: &'a str,
    pub plex_token: &'a str,
    pub stash_url: &'a str,
    /// The plugin settings as the policy sees them (JSON object).
    pub policy_settings: String,
    pub seed: u64,
    pub start_ms: i64,
    /// Simulated time one step that did work takes.
    pub step_cost_ms: i64,
}

/// One step, as the simulator saw it.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// Simulated time when the step started.
    pub at_ms: i64,
    pub outcome: String,
    /// Plex requests the host sent during this step.
    pub plex_requests: u64,
}

pub struct Sim {
    pub clock: FakeClock,
    pub session: PolicySession,
    pub steps: Vec<StepRecord>,
    step_cost_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The policy said nothing is due and nothing waits.
    Empty,
    /// The caller's condition held.
    Condition,
    /// The simulated time limit passed.
    TimeLimit,
    /// The policy failed this many times in a row.
    PolicyFailures(u32),
}

impl Sim {
    pub fn new(cfg: SimConfig<'_>) -> Result<Sim, String> {
        std::fs::create_dir_all(cfg.data_dir).map_err(|e| e.to_string())?;
        let clock = FakeClock::new(cfg.start_ms);
        let queue = Queue::open(&cfg.data_dir.join("queue.db")).map_err(|e| e.to_string())?;
        let mut state = HostState::new(Arc::new(clock.clone()), cfg.seed, queue);
        state.plex = Some(PlexClient::new(
            cfg.plex_url,
            cfg.plex_token,
            "stash2plex-simulator",
            Duration::from_secs(5),
            Duration::from_secs(30),
        ));
        state.stash = Some(StashClient::new(cfg.stash_url, None, None));
        let runtime = Runtime::load(runtime::DEFAULT_POLICY, Some(&cfg.data_dir.join("cache")), Limits::default())
            .map_err(|e| e.to_string())?;
        let session = PolicySession::start(runtime, state, cfg.policy_settings).map_err(|e| e.to_string())?;
        Ok(Sim { clock, session, steps: Vec::new(), step_cost_ms: cfg.step_cost_ms })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Record a scene change the way a hook does.
    pub fn scene_changed(&mut self, scene_id: &str) -> Result<EventOutcome, String> {
        let event = Event {
            trigger: "Scene.Update.Post".into(),
            object_id: Some(scene_id.into()),
            input_fields: vec!["id".into(), "title".into()],
            input: None,
        };
        match self.session.on_event(&event) {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn counts(&self) -> Counts {
        self.session.state().and_then(|s| s.queue.counts(self.now_ms()).ok()).unwrap_or_default()
    }

    pub fn plex_requests(&self) -> u64 {
        self.session.state().map(|s| s.stats.plex_requests).unwrap_or(0)
    }

    /// Step until the queue is empty, `stop` holds, or `limit_ms` of simulated
    /// time has passed. `before_step` runs before every step with the
    /// simulated time (to change faults on a schedule).
    pub fn run(&mut self, limit_ms: i64, mut before_step: impl FnMut(i64), mut stop: impl FnMut(&Sim) -> bool) -> Stop {
        let deadline = self.now_ms().saturating_add(limit_ms);
        let mut failures = 0u32;
        loop {
            if stop(self) {
                return Stop::Condition;
            }
            let now = self.now_ms();
            if now >= deadline {
                return Stop::TimeLimit;
            }
            before_step(now);
            let before = self.plex_requests();
            let outcome = self.session.step();
            let sent = self.plex_requests() - before;
            let text = match &outcome {
                Ok(Ok(StepOutcome::Worked(s))) => format!("worked: {s}"),
                Ok(Ok(StepOutcome::WaitMs(ms))) => format!("wait {ms} ms"),
                Ok(Ok(StepOutcome::Idle(next))) => format!("idle until {next:?}"),
                Ok(Err(e)) => format!("policy error: {e}"),
                Err(e) => format!("policy failure: {e}"),
            };
            self.steps.push(StepRecord { at_ms: now, outcome: text, plex_requests: sent });
            match outcome {
                Ok(Ok(StepOutcome::Worked(_))) => {
                    failures = 0;
                    self.clock.advance(self.step_cost_ms);
                }
                Ok(Ok(StepOutcome::WaitMs(ms))) => {
                    failures = 0;
                    self.clock.advance(i64::from(ms).max(1));
                }
                Ok(Ok(StepOutcome::Idle(None))) => return Stop::Empty,
                Ok(Ok(StepOutcome::Idle(Some(t)))) => {
                    failures = 0;
                    self.clock.set(t.max(now + 1));
                }
                Ok(Err(_)) | Err(_) => {
                    failures += 1;
                    if failures >= 5 {
                        return Stop::PolicyFailures(failures);
                    }
                    self.clock.advance(self.step_cost_ms);
                }
            }
        }
    }
}
