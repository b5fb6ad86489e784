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
        instance.state_mut().state_closed = true;
        let info = instance.call(|b, s| b.stash2plex_policy_policy().call_info(s))?;
        check_api_version(&info.api_version)?;
        instance.state_mut().state_closed = false;
        instance.state_mut().log_prefix = format!("[{}] ", info.name);
        instance.state_mut().queue.set_namespace(&info.name);
        let configured = instance.call(|b, s| b.stash2plex_policy_policy().call_configure(s, &settings_json))?;
        if let Err(problems) = configured {
            return Err(SessionError::Settings(problems));
        }
        Ok(PolicySession { runtime, instance: Some(instance), settings_json, info })
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
}

/// Admission check for a user's component before it replaces the built-in
/// policy: a trial instance in a throwaway store (this is where wasmtime
/// checks the export *types*), `info`, and the contract version. Calls no
/// capability with effects: the queue is in memory and Plex is off limits.
pub fn admit(runtime: &Runtime) -> Result<PolicyInfo, SessionError> {
    let queue = crate::queue::Queue::open_in_memory().map_err(|e| PolicyError::Load(e.to_string()))?;
    let mut state = HostState::new(std::sync::Arc::new(crate::clock::SystemClock), 0, queue);
    state.plex_forbidden_reason = Some("admission check".into());
    state.state_closed = true;
    let mut instance = runtime.instantiate(state)?;
    let info = instance.call(|b, s| b.stash2plex_policy_policy().call_info(s))?;
    check_api_version(&info.api_version)?;
    Ok(info)
}

/// The contract versions this host implements.
pub const HOST_API: (u64, u64) = (0, 1);

/// A policy must be written against a semver-compatible contract: same
/// major, and while < 1.0 the same minor.
pub fn check_api_version(v: &str) -> Result<(), SessionError> {
    let mut parts = v.trim().split('.').map(|p| p.parse::<u64>());
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return Err(SessionError::Version(format!(
            "the policy reports api-version {v:?}, which is not a version number"
        )));
    };
    let ok = major == HOST_API.0 && (major > 0 || minor == HOST_API.1);
    if ok {
        Ok(())
    } else {
        Err(SessionError::Version(format!(
            "the policy was written for contract {v}, this host implements {}.{}.x",
            HOST_API.0, HOST_API.1
        )))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Version(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("the policy rejected the settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    #[error("the policy instance is gone after an earlier failure")]
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        assert!(check_api_version("0.1.0").is_ok());
        assert!(check_api_version("0.1.7").is_ok());
        for bad in ["0.2.0", "1.0.0", "9.9.9", "", "x.y"] {
            assert!(check_api_version(bad).is_err(), "{bad}");
        }
    }
}
