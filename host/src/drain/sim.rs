//! The simulator: the real host capabilities, the real policy component and
//! the shipping drain loop (`drain::run`), driven by a fake clock. Plex and
//! Stash are whatever servers the caller points it at (the loopback fakes in
//! tests). Hours of outages and backoff run in seconds, and runs are
//! reproducible (fixed RNG seed). The sleeps the loop asks for advance the
//! fake clock, and each step that did work costs `step_cost_ms`.

use super::{DrainMode, Gate, Observer, Stopped};
use crate::capabilities::HostState;
use crate::clock::{Clock, FakeClock};
use crate::net::plex::PlexClient;
use crate::net::stash::StashClient;
use crate::runtime::session::{Call, PolicySession};
use crate::runtime::source::{Choice, Loader, PolicyWatch};
use crate::runtime::wit::policy::{Event, EventOutcome, StepOutcome};
use crate::runtime::{Limits, Runtime};
use crate::store::{Queue, QueueCounts};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct SimConfig<'a> {
    pub data_dir: &'a Path,
    pub plex_url: &'a str,
    pub plex_token: &'a str,
    pub stash_url: &'a str,
    /// The plugin settings (a JSON object, as Stash stores them).
    pub settings: Value,
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

/// A drain that never gives up on its own: the caller's limit ends it.
const SIMULATED: DrainMode =
    DrainMode { linger_ms: u64::MAX, max_total_wait_ms: u64::MAX, max_run_ms: u64::MAX, idle_linger_ms: 0 };

pub struct Sim {
    pub clock: FakeClock,
    pub session: PolicySession,
    pub steps: Vec<StepRecord>,
    /// Policy switches the drain loop made (seen between two steps as a
    /// change of the running component), over every `run`.
    pub swaps: u64,
    step_cost_ms: i64,
    data_dir: PathBuf,
}

/// What a stop condition can look at.
pub struct SimView<'a> {
    session: &'a PolicySession,
    now_ms: i64,
    pub steps: &'a [StepRecord],
}

impl SimView<'_> {
    pub fn counts(&self) -> QueueCounts {
        counts(self.session, self.now_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The policy said nothing is due and nothing waits.
    Empty,
    /// The caller's condition held.
    Condition,
    /// The simulated time limit passed.
    TimeLimit,
    /// The drain loop stopped for another reason (policy failures, no
    /// progress).
    Drain(Stopped),
}

fn counts(session: &PolicySession, now_ms: i64) -> QueueCounts {
    session.state().and_then(|s| s.queue.queue.counts(now_ms).ok()).unwrap_or_default()
}

fn plex_requests(session: &PolicySession) -> u64 {
    session.state().map(|s| s.plex.stats.requests).unwrap_or(0)
}

impl Sim {
    pub fn new(cfg: SimConfig<'_>) -> Result<Sim, String> {
        std::fs::create_dir_all(cfg.data_dir).map_err(|e| e.to_string())?;
        let clock = FakeClock::new(cfg.start_ms);
        let queue = Queue::open(&cfg.data_dir.join("queue.db")).map_err(|e| e.to_string())?;
        let mut state = HostState::new(Arc::new(clock.clone()), cfg.seed, queue);
        state.plex.client = Some(Box::new(PlexClient::new(
            cfg.plex_url,
            cfg.plex_token,
            "stash2plex-simulator",
            Duration::from_secs(5),
            Duration::from_secs(30),
            None,
        )));
        let stash = Arc::new(StashClient::new(cfg.stash_url, None, None));
        state.plex.images = Some(stash.clone());
        state.stash.client = Some(stash);
        let runtime =
            Runtime::load_builtin(Some(&cfg.data_dir.join("cache")), Limits::default()).map_err(|e| e.to_string())?;
        let settings = match cfg.settings {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let session = PolicySession::start(runtime, state, &settings).map_err(|e| e.to_string())?;
        Ok(Sim {
            clock,
            session,
            steps: Vec::new(),
            swaps: 0,
            step_cost_ms: cfg.step_cost_ms,
            data_dir: cfg.data_dir.to_path_buf(),
        })
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

    pub fn counts(&self) -> QueueCounts {
        counts(&self.session, self.now_ms())
    }

    pub fn plex_requests(&self) -> u64 {
        plex_requests(&self.session)
    }

    /// Follow the user's choice of policy as a drainer does: a
    /// [`PolicyWatch`] over this data directory (its compile cache and kept
    /// copies), the built-in policy chosen to begin with. A choice made in
    /// [`Sim::run_choosing`] is switched to by the drain loop between two
    /// steps (`PolicySession::between_steps`).
    pub fn watch_policies(&mut self) {
        let loader = Loader::new(&self.data_dir, Limits::default());
        let watch = PolicyWatch::new(loader, Choice::Builtin, &self.session.policy, self.now_ms());
        self.session.attach_watch(watch);
    }

    /// Drain until the queue is empty, `stop` holds, or `limit_ms` of
    /// simulated time has passed. `before_step` runs before every step with
    /// the simulated time (to change faults on a schedule).
    pub fn run(&mut self, limit_ms: i64, before_step: impl FnMut(i64), stop: impl FnMut(&SimView<'_>) -> bool) -> Stop {
        self.run_choosing(limit_ms, before_step, |_| None, stop)
    }

    /// [`Sim::run`], and before every step `choose` (given the simulated
    /// time) may choose a policy, as a changed `policy_path` setting does in
    /// a drainer; the watch (see [`Sim::watch_policies`]) takes the choice
    /// and the loop switches before the next step.
    pub fn run_choosing(
        &mut self,
        limit_ms: i64,
        before_step: impl FnMut(i64),
        choose: impl FnMut(i64) -> Option<Choice>,
        stop: impl FnMut(&SimView<'_>) -> bool,
    ) -> Stop {
        let deadline = self.now_ms().saturating_add(limit_ms);
        let running = self.session.policy.sha256.clone();
        let mut watch = Watch {
            clock: self.clock.clone(),
            steps: &mut self.steps,
            step_cost_ms: self.step_cost_ms,
            deadline,
            before_step,
            choose,
            stop,
            why: None,
            requests_before: 0,
            running,
            swaps: &mut self.swaps,
        };
        let report = super::run(&mut self.session, &self.clock, SIMULATED, 0, &mut watch);
        match (report.stopped, watch.why) {
            (Stopped::Observer, Some(why)) => why,
            (Stopped::Empty, _) => Stop::Empty,
            (other, _) => Stop::Drain(other),
        }
    }
}

struct Watch<'a, B, C, S> {
    clock: FakeClock,
    steps: &'a mut Vec<StepRecord>,
    step_cost_ms: i64,
    deadline: i64,
    before_step: B,
    choose: C,
    stop: S,
    why: Option<Stop>,
    requests_before: u64,
    /// The component that ran at the last step, and the switches seen.
    running: String,
    swaps: &'a mut u64,
}

impl<B: FnMut(i64), C: FnMut(i64) -> Option<Choice>, S: FnMut(&SimView<'_>) -> bool> Observer for Watch<'_, B, C, S> {
    fn before_step(&mut self, session: &mut PolicySession, now_ms: i64) -> Gate {
        if session.policy.sha256 != self.running {
            self.running = session.policy.sha256.clone();
            *self.swaps += 1;
        }
        let view = SimView { session, now_ms, steps: self.steps };
        if (self.stop)(&view) {
            self.why = Some(Stop::Condition);
            return Gate::Stop(Stopped::Observer);
        }
        if now_ms >= self.deadline {
            self.why = Some(Stop::TimeLimit);
            return Gate::Stop(Stopped::Observer);
        }
        (self.before_step)(now_ms);
        if let Some(choice) = (self.choose)(now_ms)
            && let Some(watch) = session.watch_mut()
        {
            watch.set_choice(choice);
        }
        self.requests_before = plex_requests(session);
        Gate::Go
    }

    fn after_step(&mut self, session: &PolicySession, started_ms: i64, outcome: &Call<StepOutcome>) {
        let text = match outcome {
            Ok(Ok(StepOutcome::Worked(s))) => format!("worked: {s}"),
            Ok(Ok(StepOutcome::WaitMs(ms))) => format!("wait {ms} ms"),
            Ok(Ok(StepOutcome::Idle(next))) => format!("idle until {next:?}"),
            Ok(Err(e)) => format!("policy error: {e}"),
            Err(e) => format!("policy failure: {e}"),
        };
        let sent = plex_requests(session) - self.requests_before;
        self.steps.push(StepRecord { at_ms: started_ms, outcome: text, plex_requests: sent });
        if matches!(outcome, Ok(Ok(StepOutcome::Worked(_))) | Ok(Err(_)) | Err(_)) {
            self.clock.advance(self.step_cost_ms);
        }
    }
}
