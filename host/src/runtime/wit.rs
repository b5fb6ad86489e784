//! Which world a component targets, read from the name of its exported
//! `policy` interface before anything is instantiated, and the types of the
//! newest world re-exported as the host's model of the contract.
//!
//! The version ladder (as Zed's extension host keeps one): each released
//! world has its WIT in `wit/since_vX.Y.Z/` and its binding in
//! `wit/since_vX_Y_Z.rs`; [`Pre`] and [`Bindings`] hold whichever one a
//! component was built for and adapt its answers to the newest world's
//! types, so the rest of the host only knows the newest.

use crate::capabilities::HostState;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store};

pub mod since_v0_1_0;
pub mod since_v0_2_0;

pub use latest::exports::stash2plex::policy0_2_0::policy;
pub use latest::stash2plex::policy0_2_0::{history, progress};
pub use since_v0_1_0::stash2plex::policy::{clock, log, plex, queue, stash};
pub use since_v0_2_0 as latest;

/// A linked component of one of the supported worlds.
#[derive(Clone)]
pub enum Pre {
    V0_2(since_v0_2_0::PolicyComponentPre<HostState>),
    V0_1(since_v0_1_0::PolicyComponentPre<HostState>),
}

impl Pre {
    /// Resolve the exports of `version`'s world on a linked component.
    pub fn new(version: Version, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        if version.compatible_with(since_v0_1_0::VERSION) {
            Ok(Pre::V0_1(since_v0_1_0::PolicyComponentPre::new(pre)?))
        } else {
            Ok(Pre::V0_2(since_v0_2_0::PolicyComponentPre::new(pre)?))
        }
    }

    pub fn component(&self) -> &Component {
        match self {
            Pre::V0_2(p) => p.instance_pre().component(),
            Pre::V0_1(p) => p.instance_pre().component(),
        }
    }

    pub fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::V0_2(p) => Bindings::V0_2(p.instantiate(store)?),
            Pre::V0_1(p) => Bindings::V0_1(p.instantiate(store)?),
        })
    }
}

/// An instance's exports, whatever world it was built for, answering in
/// the newest world's types.
pub enum Bindings {
    V0_2(since_v0_2_0::PolicyComponent),
    V0_1(since_v0_1_0::PolicyComponent),
}

/// An export value of an older world as the newest world's (the types
/// are the same records, variants and enums, or the newer one only adds
/// `option` fields, which an older policy leaves out).
fn up<A: Serialize, B: DeserializeOwned>(a: &A) -> wasmtime::Result<B> {
    let value = serde_json::to_value(a).map_err(|e| wasmtime::format_err!("adapting an older world's value: {e}"))?;
    serde_json::from_value(value).map_err(|e| wasmtime::format_err!("adapting an older world's value: {e}"))
}

type Store0 = Store<HostState>;

impl Bindings {
    pub fn call_info(&self, s: &mut Store0) -> wasmtime::Result<policy::PolicyInfo> {
        match self {
            Bindings::V0_2(b) => b.stash2plex_policy0_2_0_policy().call_info(s),
            Bindings::V0_1(b) => up(&b.stash2plex_policy_policy().call_info(s)?),
        }
    }

    pub fn call_configure(
        &self,
        s: &mut Store0,
        settings: &[policy::Setting],
    ) -> wasmtime::Result<Result<(), Vec<String>>> {
        match self {
            Bindings::V0_2(b) => b.stash2plex_policy0_2_0_policy().call_configure(s, settings),
            Bindings::V0_1(b) => {
                let old: Vec<since_v0_1_0::exports::stash2plex::policy::policy::Setting> = up(&settings)?;
                b.stash2plex_policy_policy().call_configure(s, &old)
            }
        }
    }

    pub fn call_on_event(
        &self,
        s: &mut Store0,
        event: &policy::Event,
    ) -> wasmtime::Result<Result<policy::EventOutcome, String>> {
        match self {
            Bindings::V0_2(b) => b.stash2plex_policy0_2_0_policy().call_on_event(s, event),
            Bindings::V0_1(b) => up(&b.stash2plex_policy_policy().call_on_event(s, &up(event)?)?),
        }
    }

    pub fn call_step(&self, s: &mut Store0) -> wasmtime::Result<Result<policy::StepOutcome, String>> {
        match self {
            Bindings::V0_2(b) => b.stash2plex_policy0_2_0_policy().call_step(s),
            Bindings::V0_1(b) => up(&b.stash2plex_policy_policy().call_step(s)?),
        }
    }

    pub fn call_run_task(&self, s: &mut Store0, name: &str, args: &str) -> wasmtime::Result<Result<String, String>> {
        match self {
            Bindings::V0_2(b) => b.stash2plex_policy0_2_0_policy().call_run_task(s, name, args),
            Bindings::V0_1(b) => b.stash2plex_policy_policy().call_run_task(s, name, args),
        }
    }

    pub fn call_status(&self, s: &mut Store0) -> wasmtime::Result<Result<policy::PolicyStatus, String>> {
        match self {
            Bindings::V0_2(b) => b.stash2plex_policy0_2_0_policy().call_status(s),
            Bindings::V0_1(b) => up(&b.stash2plex_policy_policy().call_status(s)?),
        }
    }
}

/// The state format a policy declares, if any (0.1.0 policies declare none).
pub fn state_format(info: &policy::PolicyInfo) -> Option<String> {
    info.state_format.clone().map(|f| f.trim().to_string()).filter(|f| !f.is_empty() && f.len() <= 100)
}

/// The interface every policy exports (without its version).
pub const POLICY_INTERFACE: &str = "stash2plex:policy/policy";

/// A contract version as semver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let v = Version { major: parts.next()??, minor: parts.next()??, patch: parts.next()?? };
        parts.next().is_none().then_some(v)
    }

    /// Semver compatibility as the component model matches it: the same
    /// major version, and below 1.0 the same minor version.
    pub fn compatible_with(self, released: Version) -> bool {
        self.major == released.major && (self.major > 0 || self.minor == released.minor)
    }
}

/// The worlds this host implements, newest first.
pub const SUPPORTED: &[Version] = &[since_v0_2_0::VERSION, since_v0_1_0::VERSION];

/// "0.1" or "0.1–0.2": the releases this host runs, for messages.
pub fn supported_text() -> String {
    let minor = |v: &Version| format!("{}.{}", v.major, v.minor);
    match (SUPPORTED.last(), SUPPORTED.first()) {
        (Some(old), Some(new)) if old != new => format!("{}–{}", minor(old), minor(new)),
        (Some(v), _) => minor(v),
        _ => String::new(),
    }
}

/// The world version a component targets, or a sentence saying why it
/// targets none this host supports.
pub fn world_version(engine: &Engine, component: &Component) -> Result<Version, String> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    let prefix = format!("{POLICY_INTERFACE}@");
    let Some(exported) = exports.iter().find_map(|name| name.strip_prefix(&prefix)) else {
        return Err(format!(
            "it does not export the {POLICY_INTERFACE} interface (it exports {}); build it against wit/ of this project",
            list_or_nothing(&exports)
        ));
    };
    let Some(version) = Version::parse(exported) else {
        return Err(format!("it exports {POLICY_INTERFACE}@{exported}, which is not a version number"));
    };
    if SUPPORTED.iter().any(|released| version.compatible_with(*released)) {
        Ok(version)
    } else {
        Err(format!(
            "this policy targets stash2plex:policy@{version}, this host supports {}; rebuild the policy against one of those or upgrade stash2plex",
            supported_text()
        ))
    }
}

fn list_or_nothing(names: &[String]) -> String {
    if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_match_like_semver() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(v("0.1.0"), Version { major: 0, minor: 1, patch: 0 });
        assert_eq!(v("1.2.3-rc.1"), Version { major: 1, minor: 2, patch: 3 });
        for bad in ["", "0.1", "0.1.x", "1.2.3.4", "v0.1.0"] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        assert!(v("0.1.7").compatible_with(v("0.1.0")));
        assert!(!v("0.2.0").compatible_with(v("0.1.0")));
        assert!(v("1.4.0").compatible_with(v("1.0.0")));
        assert!(!v("2.0.0").compatible_with(v("1.0.0")));
        assert_eq!(supported_text(), "0.1–0.2");
    }
}
