//! A configured policy instance and the calls the host makes on it, with
//! containment: a trap, a hang (fuel) or a memory blow-up in the policy is
//! reported in words, with the policy's name and version, and the instance
//! is replaced by a fresh one from the same compiled component, keeping the
//! host's capabilities (queue connection, HTTP clients) intact.
//!
//! A session can also change policy while it runs (`swap`): between two
//! calls, the jobs the old instance held are given back (not counted as
//! attempts), the new component is instantiated with the same capabilities,
//! checked and configured, and only then replaces the old one; if any of
//! that fails, the old policy keeps running. A [`PolicyWatch`] attached to
//! the session (`between_steps`) notices a changed policy file or setting,
//! and falls back to the last good policy when the running one fails
//! [`FAILURES_IN_WINDOW`] times within [`FAILURE_WINDOW_MS`].

use super::source::{PolicyRef, PolicyWatch, Why};
use super::wit::policy::{Event, EventOutcome, PolicyInfo, PolicyStatus, Setting, StepOutcome};
use super::{Instance, PolicyError, Runtime};
use crate::capabilities::HostState;
use crate::settings::{self, parse};
use serde_json::{Map, Value};
use std::time::Instant;

/// Policy failures (traps, fuel, memory; not the policy's own error
/// answers) within [`FAILURE_WINDOW_MS`] that make the host give up on a
/// policy and fall back to the last good one.
pub const FAILURES_IN_WINDOW: usize = 3;
pub const FAILURE_WINDOW_MS: i64 = 10 * 60_000;

pub struct PolicySession {
    runtime: Runtime,
    instance: Option<Instance>,
    /// The plugin's settings map (secrets removed), kept to configure a
    /// policy swapped in.
    settings_map: Map<String, Value>,
    settings: Vec<Setting>,
    pub info: PolicyInfo,
    /// Which policy runs, and why.
    pub policy: PolicyRef,
    /// When the running policy failed, within the window, and how.
    failures: Vec<i64>,
    last_failure: Option<String>,
    watch: Option<PolicyWatch>,
    /// Fuel used by the last call, the most any call used, and all calls.
    pub fuel_last: u64,
    pub fuel_max: u64,
    pub fuel_total: u64,
}

/// What a call into the policy gave: the policy's own answer (which may be
/// its error sentence), or a failure of the policy itself.
pub type Call<T> = Result<Result<T, String>, SessionError>;

/// What a swap did.
#[derive(Debug, Clone)]
pub struct Swapped {
    pub from: PolicyRef,
    pub to: PolicyRef,
    /// Jobs the old instance held, given back to the queue.
    pub released: usize,
    /// State keys copied from the old policy (same state format).
    pub migrated: usize,
    pub took_ms: f64,
}

impl PolicySession {
    /// Instantiate, check what the policy declares, parse its settings from
    /// `settings` (the plugin's settings map, secrets removed) and configure
    /// it. Settings problems are returned as sentences.
    pub fn start(
        runtime: Runtime,
        state: HostState,
        settings: &Map<String, Value>,
    ) -> Result<PolicySession, SessionError> {
        Self::start_because(runtime, state, settings, Why::Default)
    }

    /// `start`, saying why this policy runs (for status and reports).
    pub fn start_because(
        runtime: Runtime,
        state: HostState,
        settings: &Map<String, Value>,
        why: Why,
    ) -> Result<PolicySession, SessionError> {
        let (instance, info, parsed, policy, _) = begin(&runtime, state, settings, why).map_err(|(e, _)| e)?;
        let session = PolicySession {
            runtime,
            instance: Some(instance),
            settings_map: settings.clone(),
            settings: parsed,
            info,
            policy,
            failures: Vec::new(),
            last_failure: None,
            watch: None,
            fuel_last: 0,
            fuel_max: 0,
            fuel_total: 0,
        };
        Ok(session)
    }

    pub fn state(&self) -> Option<&HostState> {
        self.instance.as_ref().map(Instance::state)
    }

    pub fn state_mut(&mut self) -> Option<&mut HostState> {
        self.instance.as_mut().map(Instance::state_mut)
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The largest linear memory the current instance grew to.
    pub fn memory_peak(&self) -> usize {
        self.instance.as_ref().map_or(0, Instance::memory_bytes)
    }

    /// Watch for a changed policy file or setting between steps.
    pub fn attach_watch(&mut self, watch: PolicyWatch) {
        self.watch = Some(watch);
    }

    pub fn watch_mut(&mut self) -> Option<&mut PolicyWatch> {
        self.watch.as_mut()
    }

    /// After a trap: a fresh instance with the same capabilities.
    fn live(&mut self) -> Result<&mut Instance, SessionError> {
        if self.instance.as_ref().is_none_or(Instance::is_poisoned) {
            let Some(old) = self.instance.take() else {
                return Err(SessionError::Gone);
            };
            let mut fresh = self.runtime.instantiate(old.into_state())?;
            configure(&mut fresh, &self.settings)?;
            self.instance = Some(fresh);
        }
        self.instance.as_mut().ok_or(SessionError::Gone)
    }

    /// One export call, with its failure counted and named.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&super::wit::Bindings, &mut wasmtime::Store<HostState>) -> wasmtime::Result<T>,
    ) -> Result<T, SessionError> {
        let label = self.policy.short();
        let inst = self.live()?;
        let result = inst.call(f);
        let fuel = inst.fuel_used();
        self.fuel_last = fuel;
        self.fuel_max = self.fuel_max.max(fuel);
        self.fuel_total = self.fuel_total.saturating_add(fuel);
        result.map_err(|e| {
            if let Some(now) = self.instance.as_ref().map(|i| i.state().clock_now()) {
                self.failures.retain(|t| now - t < FAILURE_WINDOW_MS);
                self.failures.push(now);
            }
            self.last_failure = Some(e.to_string());
            SessionError::Failed { policy: label, error: e }
        })
    }

    pub fn on_event(&mut self, event: &Event) -> Call<EventOutcome> {
        self.call(|b, s| b.call_on_event(s, event))
    }

    pub fn step(&mut self) -> Call<StepOutcome> {
        self.call(|b, s| b.call_step(s))
    }

    pub fn run_task(&mut self, name: &str, args: &str) -> Call<String> {
        self.call(|b, s| b.call_run_task(s, name, args))
    }

    pub fn status(&mut self) -> Call<PolicyStatus> {
        self.call(|b, s| b.call_status(s))
    }

    /// Has the running policy failed often enough to be given up on?
    pub fn failing(&self) -> bool {
        self.failures.len() >= FAILURES_IN_WINDOW
    }

    /// Between two steps of a drain: if the watch sees another policy
    /// chosen (or the running one's file changed), admit it and switch; if
    /// the running policy keeps failing, fall back to the last good one.
    /// Returns what was switched. The drain loop calls this before each
    /// step; it costs a `stat` of the policy file when nothing changed.
    pub fn between_steps(&mut self) -> Option<Swapped> {
        let mut watch = self.watch.take()?;
        let now = self.state().map(HostState::clock_now).unwrap_or(0);
        let mut swapped = None;
        if self.failing() {
            let reason = format!(
                "it failed {} times within {} minutes (last: {})",
                self.failures.len(),
                FAILURE_WINDOW_MS / 60_000,
                self.last_failure_text()
            );
            let current = self.policy.clone();
            let fallback = match self.state_mut().map(|s| &mut s.queue.queue) {
                Some(queue) => {
                    if !current.builtin {
                        watch.quarantine(queue, &current, &reason, now);
                    }
                    watch.fallback(queue, &current, &reason, now)
                }
                None => Err("the session has no queue".into()),
            };
            match fallback {
                Ok((runtime, why)) => swapped = self.swap_logged(runtime, why),
                Err(e) => crate::warn!("{} keeps running: {e}", current.short()),
            }
            self.failures.clear();
        } else if let Some(change) = self.state_mut().map(|s| &mut s.queue.queue).and_then(|q| watch.changed(q, now)) {
            match change {
                Ok((runtime, why)) => swapped = self.swap_logged(runtime, why),
                Err(refusal) => crate::error!("{refusal}"),
            }
        }
        self.watch = Some(watch);
        swapped
    }

    fn last_failure_text(&self) -> String {
        self.last_failure.clone().unwrap_or_else(|| "a trap".into())
    }

    fn swap_logged(&mut self, runtime: Runtime, why: Why) -> Option<Swapped> {
        match self.swap(runtime, why) {
            Ok(s) => {
                crate::info!(
                    "Switched policy: {} → {} ({}); {} held job(s) given back, {} state key(s) carried over, in {:.1} ms",
                    s.from.short(),
                    s.to.short(),
                    s.to.why.describe(),
                    s.released,
                    s.migrated,
                    s.took_ms
                );
                Some(s)
            }
            Err(e) => {
                crate::error!("The policy was not switched; {} keeps running: {e}", self.policy.short());
                None
            }
        }
    }

    /// Switch to `runtime` between two calls, keeping the capabilities (and
    /// so the queue, the clients and the image grants). The jobs the old
    /// instance holds are given back first, due now, without counting the
    /// attempt; nothing is lost and nothing runs twice (an outcome the old
    /// instance might still report carries a lease that is no longer
    /// valid). If the new policy cannot be instantiated, checked or
    /// configured, the old one keeps running and the error is returned.
    pub fn swap(&mut self, runtime: Runtime, why: Why) -> Result<Swapped, SessionError> {
        let started = Instant::now();
        let Some(mut old) = self.instance.take() else {
            return Err(SessionError::Gone);
        };
        let released = old.state_mut().queue.release_open_claims(0);
        let from = self.policy.clone();
        match begin(&runtime, old.into_state(), &self.settings_map, why) {
            Ok((instance, info, parsed, policy, migrated)) => {
                self.instance = Some(instance);
                self.info = info;
                self.settings = parsed;
                self.policy = policy;
                self.runtime = runtime;
                self.failures.clear();
                Ok(Swapped {
                    from,
                    to: self.policy.clone(),
                    released,
                    migrated,
                    took_ms: started.elapsed().as_secs_f64() * 1000.0,
                })
            }
            Err((e, state)) => {
                // The old policy again, on a fresh instance.
                let mut back = self.runtime.instantiate(*state)?;
                configure(&mut back, &self.settings)?;
                let st = back.state_mut();
                st.log.prefix = format!("[{}] ", self.runtime.identity.label);
                st.queue.queue.set_policy(&self.policy.handler());
                let _ = st.queue.queue.record_policy(&self.policy.handler());
                self.instance = Some(back);
                Err(e)
            }
        }
    }
}

/// Remember in the queue database which policy runs now; when it is not
/// the one that ran last, say so and carry its state over if both keep the
/// same state format (before the new one is configured). Returns how many
/// state keys were copied.
fn record_switch(queue: &mut crate::store::Queue, policy: &PolicyRef) -> usize {
    let previous = queue.last_policy().ok().flatten();
    if let Err(e) = queue.record_policy(&policy.handler()) {
        crate::warn!("Could not record which policy runs: {e}");
    }
    let Some(previous) = previous.filter(|p| p.sha256 != policy.sha256) else {
        return 0;
    };
    let copied = match (&previous.state_format, &policy.state_format) {
        (Some(a), Some(b)) if a == b => queue.copy_state(&previous.namespace, &policy.namespace).unwrap_or(0),
        _ => 0,
    };
    crate::info!(
        "This policy is new here: {} ran before, now {} runs ({}){}",
        previous.describe(),
        policy.short(),
        policy.why.describe(),
        if copied > 0 { format!("; carried over {copied} state key(s) (same state format)") } else { String::new() }
    );
    copied
}

/// Instantiate `runtime` with `state`, check its declaration, and configure
/// it. On failure the capabilities are given back.
#[allow(clippy::type_complexity)]
fn begin(
    runtime: &Runtime,
    state: HostState,
    settings: &Map<String, Value>,
    why: Why,
) -> Result<(Instance, PolicyInfo, Vec<Setting>, PolicyRef, usize), (SessionError, Box<HostState>)> {
    let mut instance = runtime.instantiate_or_return(state).map_err(|(e, s)| (SessionError::Policy(e), s))?;
    let give_back = |instance: Instance, e: SessionError| {
        let mut state = instance.into_state();
        state.queue.state_closed = false;
        (e, Box::new(state))
    };
    instance.state_mut().queue.state_closed = true;
    let info = match instance.call(|b, s| b.call_info(s)) {
        Ok(info) => info,
        Err(e) => return Err(give_back(instance, e.into())),
    };
    if let Err(e) = check_info(&info) {
        return Err(give_back(instance, e));
    }
    let policy = PolicyRef::of(runtime, &info, why);
    let state = instance.state_mut();
    state.queue.state_closed = false;
    // What the host knows, not the name the policy claims.
    state.log.prefix = format!("[{}] ", runtime.identity.label);
    state.queue.queue.set_policy(&policy.handler());
    let migrated = record_switch(&mut state.queue.queue, &policy);
    let parsed = match parse::parse_all(&info.settings, settings) {
        Ok(p) => p,
        Err(problems) => return Err(give_back(instance, SessionError::Settings(problems))),
    };
    if let Err(e) = configure(&mut instance, &parsed) {
        return Err(give_back(instance, e));
    }
    Ok((instance, info, parsed, policy, migrated))
}

fn configure(instance: &mut Instance, settings: &[Setting]) -> Result<(), SessionError> {
    match instance.call(|b, s| b.call_configure(s, settings))? {
        Ok(()) => Ok(()),
        Err(problems) => Err(SessionError::Settings(problems)),
    }
}

/// What a policy declares must make sense before it is used: its settings
/// are not the host's, appear once, and have defaults of their own kind.
pub fn check_info(info: &PolicyInfo) -> Result<(), SessionError> {
    let mut problems = Vec::new();
    if info.name.trim().is_empty() || info.name.chars().any(char::is_control) || info.name.chars().count() > 64 {
        problems.push(format!("its name {:?} is not 1-64 printable characters", info.name));
    }
    if info.version.trim().is_empty() || info.version.chars().any(char::is_control) || info.version.chars().count() > 32
    {
        problems.push(format!("its version {:?} is not 1-32 printable characters", info.version));
    }
    for (i, spec) in info.settings.iter().enumerate() {
        if settings::is_host_key(&spec.key) {
            problems.push(format!("it declares the setting {}, which belongs to the host", spec.key));
        }
        if info.settings[..i].iter().any(|s| s.key == spec.key) {
            problems.push(format!("it declares the setting {} twice", spec.key));
        }
        if !parse::fits(&spec.kind, &spec.default_value) {
            problems.push(format!("the default of its setting {} does not fit the setting's kind", spec.key));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(SessionError::Declaration(problems.join("; "))) }
}

/// Admission check for a user's component before it replaces the built-in
/// policy: a trial instance in a throwaway store (this is where wasmtime
/// checks the export *types*), and `info`. Calls no capability with effects:
/// the queue is in memory and Plex is off limits.
pub fn admit(runtime: &Runtime) -> Result<PolicyInfo, SessionError> {
    let queue = crate::store::Queue::open_in_memory().map_err(|e| PolicyError::Load(e.to_string()))?;
    let mut state = HostState::new(std::sync::Arc::new(crate::clock::SystemClock), 0, queue);
    state.plex.forbidden = Some("admission check".into());
    state.queue.state_closed = true;
    let mut instance = runtime.instantiate(state)?;
    let info = instance.call(|b, s| b.call_info(s))?;
    check_info(&info)?;
    Ok(info)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A call failed (trap, fuel, memory), with the policy named.
    #[error("{policy}: {error}")]
    Failed { policy: String, error: PolicyError },
    #[error("the settings need attention: {}", crate::text::joined(.0))]
    Settings(Vec<String>),
    #[error("the policy's declaration is not usable: {0}")]
    Declaration(String),
    #[error("the policy instance is gone after an earlier failure")]
    Gone,
}
