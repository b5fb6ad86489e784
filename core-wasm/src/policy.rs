//! The policy: what the exported functions do, with its in-memory state.

use crate::drain::{self, DrainState};
use crate::events;
use crate::host::{Event, EventOutcome, Host, LogLevel, PolicyInfo, PolicyStatus, Setting, StepOutcome};
use crate::reconcile::{self, Reconciler};
use crate::settings::{self, Settings};
use crate::tasks;
use crate::text::clip;

pub const NAME: &str = "stash2plex-default";
/// The state this policy keeps (`resilience/v1`, `scans`, the image
/// records): a policy that declares the same format (a newer version of
/// this one, or a variant built from this library) gets it on a switch.
pub const STATE_FORMAT: &str = "stash2plex-default/state-1";

/// Which policy this library is built as: the default one, or a variant
/// that differs in one decision (a separate component, its own name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    pub name: &'static str,
    /// Stash tags become Plex labels instead of genres (labels exist on
    /// episodes, and Plex's sharing restrictions filter by them).
    pub tags_as_labels: bool,
}

impl Flavor {
    pub const DEFAULT: Flavor = Flavor { name: NAME, tags_as_labels: false };
    /// `policies/tags-as-labels`.
    pub const TAGS_AS_LABELS: Flavor = Flavor { name: "stash2plex-tags-as-labels", tags_as_labels: true };
}

impl Default for Flavor {
    fn default() -> Self {
        Flavor::DEFAULT
    }
}

/// State for the life of one component instance (the host keeps one
/// instance for a whole drain).
#[derive(Debug, Default)]
pub struct Policy {
    settings: Settings,
    drain: DrainState,
    reconciler: Reconciler,
    flavor: Flavor,
}

impl Policy {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_flavor(flavor: Flavor) -> Self {
        Policy { flavor, ..Self::default() }
    }

    pub fn info() -> PolicyInfo {
        Self::info_of(Flavor::DEFAULT)
    }

    pub fn info_of(flavor: Flavor) -> PolicyInfo {
        PolicyInfo {
            name: flavor.name.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            state_format: Some(STATE_FORMAT.to_string()),
            settings: settings::schema(),
            tasks: tasks::specs(),
        }
    }

    #[cfg(test)]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Check and take the settings. On errors the previous settings stay.
    pub fn configure(&mut self, host: &dyn Host, values: &[Setting]) -> Result<(), Vec<String>> {
        let mut parsed = settings::from_settings(values)?;
        parsed.tags_as_labels = self.flavor.tags_as_labels;
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
                    "{}: libraries={libraries}; sync_master={} summary={} studio={} date={}; preserve_plex_edits={}; strict_matching={}; max_retries={} jitter={} retry_budget={}%; breaker: {} in a row or {}% of {} (min {}), slow {} ms at {}%, {} trials, half-open ≤ {} s, open {}–{} s; probes {}–{} s; rate {}→{}/s",
                    self.flavor.name,
                    s.sync_master,
                    s.sync_summary,
                    s.sync_studio,
                    s.sync_date,
                    s.preserve_plex_edits,
                    s.strict_matching,
                    s.max_retries,
                    s.retry_jitter.as_str(),
                    s.retry_budget_percent,
                    s.breaker_failure_threshold,
                    s.breaker_failure_rate,
                    s.breaker_window,
                    s.breaker_min_calls,
                    s.breaker_slow_call_ms,
                    s.breaker_slow_call_rate,
                    s.breaker_half_open_trials,
                    s.breaker_half_open_max_wait_secs,
                    s.breaker_open_base_secs,
                    s.breaker_open_max_secs,
                    s.probe_interval_secs,
                    s.probe_max_interval_secs,
                    s.ramp_start_rps,
                    s.ramp_target_rps
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

    /// A due job first; when none is, a unit of a reconciliation (one a
    /// task started, or the schedule's).
    pub fn step(&mut self, host: &dyn Host) -> Result<StepOutcome, String> {
        let outcome = drain::step(&self.settings, &mut self.drain, host)?;
        if let StepOutcome::Idle(_) = outcome
            && let Some(summary) = self.reconciler.step(&self.settings, host)?
        {
            return Ok(StepOutcome::Worked(summary));
        }
        Ok(outcome)
    }

    pub fn run_task(&mut self, host: &dyn Host, name: &str, args: &str) -> Result<String, String> {
        if name == "reconcile" {
            let args = tasks::parse_args(args)?;
            let request = reconcile::request_from_args(&self.settings, &args, host.now_ms())?;
            let what = self.reconciler.start(host, request)?;
            return Ok(format!(
                "Reconciliation of {what} started; it runs in the drain, after the changes already due"
            ));
        }
        tasks::run(&self.settings, host, name, args)
    }

    pub fn status(&mut self, host: &dyn Host) -> Result<PolicyStatus, String> {
        tasks::status(&self.settings, host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{Condition, SettingValue};
    use crate::test_support::{FakeHost, host_settings};

    #[test]
    fn info_names_the_policy_and_declares_its_settings_and_tasks() {
        let info = Policy::info();
        assert_eq!(info.name, "stash2plex-default");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        let keys: Vec<&str> = info.settings.iter().map(|s| s.key.as_str()).collect();
        for key in ["plex_library", "sync_master", "strict_matching", "max_retries", "retry_jitter", "max_rps"] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        let tasks: Vec<&str> = info.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            tasks,
            [
                "health_check",
                "breaker_open",
                "breaker_close",
                "breaker_reset",
                "outage_summary",
                "reconcile",
                "reconcile_report"
            ]
        );
    }

    #[test]
    fn configure_rejects_bad_settings_and_keeps_the_old_ones() {
        let host = FakeHost::new();
        let mut p = Policy::new();
        p.configure(&host, &host_settings(r#"{"max_retries":9}"#).unwrap()).unwrap();
        assert_eq!(p.settings().max_retries, 9);
        let crossed = [
            Setting { key: "ramp_start_rps".into(), value: SettingValue::Whole(50) },
            Setting { key: "ramp_target_rps".into(), value: SettingValue::Whole(20) },
        ];
        let errs = p.configure(&host, &crossed).unwrap_err();
        assert_eq!(errs, ["ramp_start_rps (50) must not be larger than ramp_target_rps (20)."]);
        assert_eq!(p.settings().max_retries, 9);
    }

    #[test]
    fn unknown_task_lists_the_known_ones_and_status_reports_health() {
        let host = FakeHost::new();
        let mut p = Policy::new();
        let err = p.run_task(&host, "frobnicate", "{}").unwrap_err();
        assert!(err.starts_with("unknown task frobnicate; known tasks: health_check, breaker_open"), "{err}");
        let status = p.status(&host).unwrap();
        assert_eq!(status.condition, Condition::Healthy);
        assert!(status.summary.starts_with("Plex connection: healthy"), "{}", status.summary);
        assert!(status.outages.is_empty());
    }
}
