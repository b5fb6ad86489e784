//! Which world a component targets, read from the name of its exported
//! `policy` interface before anything is instantiated, and the types of the
//! newest world re-exported as the host's model of the contract.

use wasmtime::Engine;
use wasmtime::component::Component;

pub mod since_v0_1_0;

pub use latest::exports::stash2plex::policy::policy;
pub use latest::stash2plex::policy::{clock, log, plex, queue, stash};
pub use latest::{PolicyComponent, PolicyComponentPre};
pub use since_v0_1_0 as latest;

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
pub const SUPPORTED: &[Version] = &[latest::VERSION];

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
        assert_eq!(supported_text(), "0.1");
    }
}
