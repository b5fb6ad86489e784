//! A configured policy instance and the calls the host makes on it, with
//! containment: a trap, a hang (fuel) or a memory blow-up in the policy is
//! reported in words and the instance is replaced by a fresh one from the
//! same compiled component, keeping the host's capabilities (queue
//! connection, HTTP clients) intact.

use super::wit::policy::{Event, EventOutcome, PolicyInfo, PolicyStatus, Setting, StepOutcome};
use super::{Instance, PolicyError, Runtime};
use crate::capabilities::HostState;
use crate::settings::{self, parse};
use serde_json::{Map, Value};

pub struct PolicySession {
    runtime: Runtime,
    instance: Option<Instance>,
    settings: Vec<Setting>,
    pub info: PolicyInfo,
}

/// What a call into the policy gave: the policy's own answer (which may be
/// its error sentence), or a failure of the policy itself.
pub type Call<T> = Result<Result<T, String>, SessionError>;

impl PolicySession {
    /// Instantiate, check what the policy declares, parse its settings from
    /// `settings` (the plugin's settings map, secrets removed) and configure
    /// it. Settings problems are returned as sentences.
    pub fn start(
        runtime: Runtime,
        state: HostState,
        settings: &Map<String, Value>,
    ) -> Result<PolicySession, SessionError> {
        let mut instance = runtime.instantiate(state)?;
        instance.state_mut().queue.state_closed = true;
        let info = instance.call(|b, s| b.stash2plex_policy_policy().call_info(s))?;
        check_info(&info)?;
        let state = instance.state_mut();
        state.queue.state_closed = false;
        // What the host knows, not the name the policy claims.
        state.log.prefix = format!("[{}] ", runtime.identity.label);
        state.queue.queue.set_namespace(&runtime.identity.namespace);
        let parsed = parse::parse_all(&info.settings, settings).map_err(SessionError::Settings)?;
        configure(&mut instance, &parsed)?;
        Ok(PolicySession { runtime, instance: Some(instance), settings: parsed, info })
    }

    pub fn state(&self) -> Option<&HostState> {
        self.instance.as_ref().map(Instance::state)
    }

    pub fn state_mut(&mut self) -> Option<&mut HostState> {
        self.instance.as_mut().map(Instance::state_mut)
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

    pub fn on_event(&mut self, event: &Event) -> Call<EventOutcome> {
        let inst = self.live()?;
        Ok(inst.call(|b, s| b.stash2plex_policy_policy().call_on_event(s, event))?)
    }

    pub fn step(&mut self) -> Call<StepOutcome> {
        let inst = self.live()?;
        Ok(inst.call(|b, s| b.stash2plex_policy_policy().call_step(s))?)
    }

    pub fn run_task(&mut self, name: &str, args: &str) -> Call<String> {
        let inst = self.live()?;
        Ok(inst.call(|b, s| b.stash2plex_policy_policy().call_run_task(s, name, args))?)
    }

    pub fn status(&mut self) -> Call<PolicyStatus> {
        let inst = self.live()?;
        Ok(inst.call(|b, s| b.stash2plex_policy_policy().call_status(s))?)
    }
}

fn configure(instance: &mut Instance, settings: &[Setting]) -> Result<(), SessionError> {
    match instance.call(|b, s| b.stash2plex_policy_policy().call_configure(s, settings))? {
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
    let info = instance.call(|b, s| b.stash2plex_policy_policy().call_info(s))?;
    check_info(&info)?;
    Ok(info)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("the settings need attention: {}", .0.join("; "))]
    Settings(Vec<String>),
    #[error("the policy's declaration is not usable: {0}")]
    Declaration(String),
    #[error("the policy instance is gone after an earlier failure")]
    Gone,
}
