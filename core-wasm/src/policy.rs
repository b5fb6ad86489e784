//! The policy: what the exported functions do, with its in-memory state.

use crate::drain::{self, DrainState};
use crate::events;
use crate::host_api::{Event, EventOutcome, Host, LogLevel, PolicyInfo, StepOutcome};
use crate::settings::{self, Settings};
use crate::text::clip;

pub const NAME: &str = "stash2plex-default";
/// The WIT contract version this policy is written against.
pub const API_VERSION: &str = "0.1.0";

/// State for the life of one component instance (the host keeps one
/// instance for a whole drain).
#[derive(Debug, Default)]
pub struct Policy {
    settings: Settings,
    drain: DrainState,
}

impl Policy {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn info() -> PolicyInfo {
        PolicyInfo {
            name: NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: API_VERSION.to_string(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Check and take the settings. On errors the previous settings stay.
    pub fn configure(&mut self, host: &dyn Host, json: &str) -> Result<(), Vec<String>> {
        let parsed = settings::parse(json)?;
        if parsed != self.settings {
            // Library filter or matching rules may have changed.
            self.drain.reset();
        }
        let s = &parsed;
        let libraries = if s.plex_library.is_empty() { "all".to_string() } else { s.plex_library.join(", ") };
        host.log(
            LogLevel::Debug,
            &clip(
                &format!(
                    "{NAME}: libraries={libraries}; sync_master={} summary={} studio={} date={}; preserve_plex_edits={}; strict_matching={}; max_retries={}",
                    s.sync_master,
                    s.sync_summary,
                    s.sync_studio,
                    s.sync_date,
                    s.preserve_plex_edits,
                    s.strict_matching,
                    s.max_retries
                ),
                1_000,
            ),
        );
        self.settings = parsed;
        Ok(())
    }

    pub fn on_event(&mut self, host: &dyn Host, event: &Event) -> Result<EventOutcome, String> {
        events::on_event(host, event)
    }

    pub fn step(&mut self, host: &dyn Host) -> Result<StepOutcome, String> {
        drain::step(&self.settings, &mut self.drain, host)
    }

    pub fn run_task(&mut self, _host: &dyn Host, name: &str, _args: &str) -> Result<String, String> {
        Err(format!("unknown task {}", clip(name, 100)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::FakeHost;

    #[test]
    fn info_names_the_contract() {
        let info = Policy::info();
        assert_eq!(info.name, "stash2plex-default");
        assert_eq!(info.api_version, "0.1.0");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn configure_rejects_bad_settings_and_keeps_the_old_ones() {
        let host = FakeHost::new();
        let mut p = Policy::new();
        p.configure(&host, r#"{"max_retries":9}"#).unwrap();
        assert_eq!(p.settings().max_retries, 9);
        let errs = p.configure(&host, r#"{"max_retries":99,"sync_date":"perhaps"}"#).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(p.settings().max_retries, 9);
    }

    #[test]
    fn unknown_task() {
        let host = FakeHost::new();
        let mut p = Policy::new();
        assert_eq!(p.run_task(&host, "frobnicate", "{}"), Err("unknown task frobnicate".to_string()));
    }
}
