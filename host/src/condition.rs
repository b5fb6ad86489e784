//! How syncing stands, told where the user looks: Stash's log.
//!
//! The drainer's own log goes to `drainer.log`, which nobody reads. So the
//! drainer (and any task) persists the condition in the queue database, and
//! hooks and tasks, whose stderr Stash shows in Settings → Logs, read it and
//! say it once per problem: the first invocation after it starts says what
//! is wrong and what to do, the first after it ends says syncing works
//! again. Saving a scene ten times in a row says it once.

use crate::runtime::wit::policy::{Condition as PolicyCondition, PolicyStatus};
use crate::store::Queue;
use serde::{Deserialize, Serialize};

const CONDITION_KEY: &str = "condition";
const ANNOUNCED_KEY: &str = "announced";

/// The persisted condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// What kind of problem (or `healthy`): announced once per kind.
    pub kind: Kind,
    /// What to tell the user, in words.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Healthy,
    PlexUnavailable,
    PlexTokenRejected,
    PausedByUser,
    /// The plugin settings cannot be used.
    Settings,
    /// The `enabled` setting is off.
    Disabled,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Healthy => "healthy",
            Kind::PlexUnavailable => "plex-unavailable",
            Kind::PlexTokenRejected => "plex-token-rejected",
            Kind::PausedByUser => "paused-by-user",
            Kind::Settings => "settings",
            Kind::Disabled => "disabled",
        }
    }
}

impl Condition {
    pub fn new(kind: Kind, text: impl Into<String>) -> Condition {
        Condition { kind, text: text.into() }
    }

    /// The condition a policy reports, in words for the user; `waiting` is
    /// how many changes wait for Plex.
    pub fn from_policy(status: &PolicyStatus, waiting: u64) -> Condition {
        let changes = match waiting {
            0 => "No change is waiting".to_string(),
            1 => "1 change waits".to_string(),
            n => format!("{n} changes wait"),
        };
        match status.condition {
            PolicyCondition::Healthy | PolicyCondition::Recovering => {
                Condition::new(Kind::Healthy, "Syncing to Plex works again.")
            }
            PolicyCondition::PlexUnavailable => Condition::new(
                Kind::PlexUnavailable,
                format!(
                    "Plex cannot be reached; syncing waits for it. {changes} and will sync when Plex is back; nothing needs doing. ({})",
                    status.summary
                ),
            ),
            PolicyCondition::PlexTokenRejected => Condition::new(
                Kind::PlexTokenRejected,
                format!(
                    "Syncing to Plex is paused: Plex rejects the token. Set plex_token in Settings → Plugins → Stash2Plex; {} sync within seconds of the fix.",
                    if waiting == 1 {
                        "the waiting change will".to_string()
                    } else {
                        format!("the {waiting} waiting changes")
                    }
                ),
            ),
            PolicyCondition::PausedByUser => Condition::new(
                Kind::PausedByUser,
                format!(
                    "Syncing to Plex is paused by hand (breaker_open). {changes}; run the breaker_close task to resume."
                ),
            ),
        }
    }
}

/// Persist the current condition (a drainer or task that knows it).
pub fn persist(queue: &mut Queue, condition: &Condition) {
    let Ok(text) = serde_json::to_string(condition) else { return };
    if let Err(e) = queue.host_swap(CONDITION_KEY, &text) {
        crate::debug!("Could not save how syncing stands: {e}");
    }
}

/// The persisted condition, if any.
pub fn current(queue: &Queue) -> Option<Condition> {
    let text = queue.host_get(CONDITION_KEY).ok().flatten()?;
    serde_json::from_str(&text).ok()
}

/// Tell the user about the persisted condition if nobody has yet (cheap:
/// two reads, and one write when it changed). Returns what was said.
pub fn announce(queue: &mut Queue) -> Option<Condition> {
    let condition = current(queue)?;
    let before = queue.host_get(ANNOUNCED_KEY).ok().flatten();
    if before.as_deref() == Some(condition.kind.name()) {
        return None;
    }
    // Of many hooks at once, only the one whose write changed it speaks.
    if !queue.host_swap(ANNOUNCED_KEY, condition.kind.name()).unwrap_or(false) {
        return None;
    }
    match condition.kind {
        // Healthy from the start is not news.
        Kind::Healthy if before.is_none() => return None,
        Kind::Healthy => crate::info!("{}", condition.text),
        _ => crate::warn!("{}", condition.text),
    }
    Some(condition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(condition: PolicyCondition) -> PolicyStatus {
        PolicyStatus { condition, summary: "Plex connection: PAUSED".into(), details: vec![], outages: vec![] }
    }

    #[test]
    fn a_problem_is_announced_once_and_its_end_once() {
        let mut q = Queue::open_in_memory().unwrap();
        assert_eq!(announce(&mut q), None, "nothing persisted yet");
        persist(&mut q, &Condition::from_policy(&status(PolicyCondition::Healthy), 0));
        assert_eq!(announce(&mut q), None, "healthy from the start is not news");

        persist(&mut q, &Condition::from_policy(&status(PolicyCondition::PlexTokenRejected), 3));
        let said = announce(&mut q).expect("the problem is told");
        assert_eq!(said.kind, Kind::PlexTokenRejected);
        assert!(said.text.contains("plex_token") && said.text.contains("the 3 waiting changes"), "{}", said.text);
        assert_eq!(announce(&mut q), None, "said once");
        // The same problem in other words is still the same problem.
        persist(&mut q, &Condition::from_policy(&status(PolicyCondition::PlexTokenRejected), 4));
        assert_eq!(announce(&mut q), None);

        persist(&mut q, &Condition::from_policy(&status(PolicyCondition::Recovering), 4));
        assert_eq!(announce(&mut q).map(|c| c.kind), Some(Kind::Healthy), "its end is told");
        assert_eq!(announce(&mut q), None);
    }

    #[test]
    fn an_unreadable_condition_is_not_announced() {
        let mut q = Queue::open_in_memory().unwrap();
        q.host_set(CONDITION_KEY, "{not json").unwrap();
        assert_eq!(announce(&mut q), None);
        assert_eq!(current(&q), None);
    }
}
