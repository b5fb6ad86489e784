//! A configured policy instance and the calls the host makes on it, with
//! containment: a trap, a hang (fuel) or a memory blow-up in the policy is
//! reported in words and the instance is replaced by a fresh one from the
//! same compiled component, keeping the host's capabilities (queue
//! connection, HTTP clients) intact.

use crate::bindings::exported::{Event, EventOutcome, PolicyInfo, StepOutcome};
use crate::host_state::HostState;
use crate::runtime::{Instance, PolicyError, Runtime};

pub struct PolicySession {
    runtime: Runtime,
    instance: Option<Instance>,
    settings_json: String,
    pub info: PolicyInfo,
}

impl PolicySession {
    /// Instantiate and configure. Settings problems are returned as the
    /// policy's own sentences.
    pub fn start(runtime: Runtime, state: HostState, settings_json: String) -> Result<PolicySession, SessionError> {
        let mut instance = runtime.instantiate(state)?;
        let info = instance.call(|b, s| b.stash2plex_policy_policy().call_info(s))?;
        instance.state_mut().log_prefix = format!("[{}] ", info.name);
        instance.state_mut().queue.set_namespace(&info.name);
        let configured = instance.call(|b, s| b.stash2plex_policy_policy().call_configure(s, &settings_json))?;
        if let Err(problems) = configured {
            return Err(SessionError::Settings(problems));
        }
        Ok(PolicySession { runtime, instance: Some(instance), settings_json, info })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn state(&self) -> Option<&HostState> {
        self.instance.as_ref().map(|i| i.state())
    }

    pub fn state_mut(&mut self) -> Option<&mut HostState> {
        self.instance.as_mut().map(|i| i.state_mut())
    }

    /// After a trap: a fresh instance with the same capabilities.
    fn ensure_live(&mut self) -> Result<&mut Instance, SessionError> {
        let needs_new = self.instance.as_ref().is_none_or(Instance::is_poisoned);
        if needs_new {
            let Some(old) = self.instance.take() else {
                return Err(SessionError::Gone);
            };
            let mut state = old.into_state();
            state.log_prefix = String::new();
            let mut fresh = self.runtime.instantiate(state)?;
            fresh.state_mut().log_prefix = format!("[{}] ", self.info.name);
            let settings = self.settings_json.clone();
            let configured = fresh.call(|b, s| b.stash2plex_policy_policy().call_configure(s, &settings))?;
            if let Err(problems) = configured {
                return Err(SessionError::Settings(problems));
            }
            self.instance = Some(fresh);
        }
        self.instance.as_mut().ok_or(SessionError::Gone)
    }

    pub fn on_event(&mut self, event: &Event) -> Result<Result<EventOutcome, String>, SessionError> {
        let inst = self.ensure_live()?;
        Ok(inst.call(|b, s| b.stash2plex_policy_policy().call_on_event(s, event))?)
    }

    pub fn step(&mut self) -> Result<Result<StepOutcome, String>, SessionError> {
        let inst = self.ensure_live()?;
        Ok(inst.call(|b, s| b.stash2plex_policy_policy().call_step(s))?)
    }

    pub fn run_task(&mut self, name: &str, args: &str) -> Result<Result<String, String>, SessionError> {
        let inst = self.ensure_live()?;
        Ok(inst.call(|b, s| b.stash2plex_policy_policy().call_run_task(s, name, args))?)
    }

    pub fn into_state(self) -> Option<HostState> {
        self.instance.map(Instance::into_state)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("the policy rejected the settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    #[error("the policy instance is gone after an earlier failure")]
    Gone,
}
