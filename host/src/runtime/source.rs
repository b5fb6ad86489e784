//! Which policy runs, and why.
//!
//! The choice, strongest first: `--policy FILE` on the command line, the
//! `policy_path` setting, `policy.wasm` in the plugin folder, else the
//! built-in policy. A chosen component is used only once it is admitted
//! (`admission`: size, a whole-binary parse, the world and version, its
//! imports, its declaration and settings, and the conformance vectors run
//! in the sandbox). Admission is remembered per component hash and host
//! version in the queue database, so later processes only load it.
//!
//! A component that fails admission, or one put in quarantine because it
//! kept failing while it ran, is not used: the host runs the *last good*
//! policy (a copy of the last admitted component, kept in the data
//! directory under its SHA-256, so overwriting the chosen file with a
//! broken one does not lose it), else the built-in one, and says so in the
//! log and in every status report. Quarantine lasts 1 minute after the first
//! time, doubling to at most 6 hours: a poisoned component is retried
//! with back-off, never in a reload loop.
//!
//! [`PolicyWatch`] is the same choice seen from a running drainer: between
//! steps it notices a changed file (by size and mtime, then by hash) or a
//! changed `policy_path`, and hands the session an admitted runtime.

use super::wit::Version;
use super::{Limits, Runtime, admission};
use crate::store::{PolicyRecord, Queue};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where a chosen policy file was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    Setting,
    PluginFolder,
}

impl Origin {
    fn describe(self) -> &'static str {
        match self {
            Origin::CommandLine => "--policy on the command line",
            Origin::Setting => "the policy_path setting",
            Origin::PluginFolder => "policy.wasm in the plugin folder",
        }
    }
}

/// Which policy the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Builtin,
    File { path: PathBuf, origin: Origin },
}

/// Why the running policy runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// No policy is chosen: the built-in one.
    Default,
    /// The chosen component.
    Chosen { path: String, origin: Origin },
    /// The chosen one is not used; this one runs instead.
    FellBack { wanted: String, reason: String },
}

impl Why {
    pub fn describe(&self) -> String {
        match self {
            Why::Default => "no policy chosen, so the built-in one".into(),
            Why::Chosen { path, origin } => format!("chosen by {}: {path}", origin.describe()),
            Why::FellBack { wanted, reason } => format!("fallen back: {wanted} is not used ({reason})"),
        }
    }
}

/// The policy that runs, as status reports and the per-job record show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    pub name: String,
    pub version: String,
    pub world: Version,
    pub sha256: String,
    pub builtin: bool,
    pub namespace: String,
    pub state_format: Option<String>,
    pub why: Why,
}

impl PolicyRef {
    pub fn of(runtime: &Runtime, info: &super::wit::policy::PolicyInfo, why: Why) -> PolicyRef {
        PolicyRef {
            name: info.name.clone(),
            version: info.version.clone(),
            world: runtime.world,
            sha256: runtime.identity.sha256.clone(),
            builtin: runtime.identity.namespace == super::BUILTIN_NAMESPACE,
            namespace: runtime.identity.namespace.clone(),
            state_format: runtime.state_format(info),
            why,
        }
    }

    /// `name version (sha256 0123456789ab)`, or `(built-in, ...)`.
    pub fn short(&self) -> String {
        let builtin = if self.builtin { "built-in, " } else { "" };
        format!("{} {} ({builtin}sha256 {})", self.name, self.version, &self.sha256[..12.min(self.sha256.len())])
    }

    /// The lines status reports show.
    pub fn status_lines(&self) -> String {
        format!(
            "Policy: {} {} for stash2plex:policy@{}\n  sha256 {}\n  {}\n",
            self.name,
            self.version,
            self.world,
            self.sha256,
            self.why.describe()
        )
    }

    pub fn handler(&self) -> PolicyRecord {
        PolicyRecord {
            sha256: self.sha256.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            world: self.world.to_string(),
            namespace: self.namespace.clone(),
            state_format: self.state_format.clone(),
        }
    }
}

/// How long a policy stays in quarantine after its `strikes`-th time.
pub fn quarantine_ms(strikes: u32) -> i64 {
    (60_000i64 << strikes.saturating_sub(1).min(12)).min(6 * 3_600_000)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Quarantine {
    until_ms: i64,
    strikes: u32,
    reason: String,
}

const LAST_GOOD_KEY: &str = "policy_last_good";
fn quarantine_key(sha: &str) -> String {
    format!("policy_quarantine/{sha}")
}
fn admitted_key(sha: &str) -> String {
    format!("policy_admitted/{sha}")
}

/// Loads policies for one data directory.
#[derive(Debug, Clone)]
pub struct Loader {
    pub cache_dir: PathBuf,
    /// Where copies of admitted components are kept (the last good one).
    pub store_dir: PathBuf,
    pub limits: Limits,
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Loader {
    pub fn new(data_dir: &Path, limits: Limits) -> Loader {
        Loader { cache_dir: data_dir.join("cache"), store_dir: data_dir.join("policies"), limits }
    }

    pub fn builtin(&self) -> Result<Runtime, String> {
        Runtime::load_builtin(Some(&self.cache_dir), self.limits).map_err(|e| e.to_string())
    }

    /// The policy `choice` names, admitted, or the one to run instead (with
    /// the reason logged as an error).
    pub fn load(&self, choice: &Choice, queue: &mut Queue, now_ms: i64) -> Result<(Runtime, Why), String> {
        let Choice::File { path, origin } = choice else {
            return self.builtin().map(|rt| (rt, Why::Default));
        };
        match self.load_file(path, queue, now_ms) {
            Ok(rt) => Ok((rt, Why::Chosen { path: path.display().to_string(), origin: *origin })),
            Err(reason) => {
                let (rt, why) = self.instead(&path.display().to_string(), &reason, queue, None, now_ms)?;
                crate::error!(
                    "The policy component {} was not used ({reason}). Running {} instead.",
                    path.display(),
                    if rt.identity.namespace == super::BUILTIN_NAMESPACE {
                        "the built-in default policy".to_string()
                    } else {
                        format!("the last good policy (sha256 {})", &rt.identity.sha256[..12])
                    }
                );
                Ok((rt, why))
            }
        }
    }

    /// Read, check quarantine, load and admit one component file.
    pub fn load_file(&self, path: &Path, queue: &mut Queue, now_ms: i64) -> Result<Runtime, String> {
        let bytes = read_capped(path)?;
        let sha = hex(&sha2::Sha256::digest(&bytes));
        if let Some(q) = self.quarantined(queue, &sha, now_ms) {
            return Err(q);
        }
        self.load_bytes(&bytes, &sha, queue)
    }

    fn load_bytes(&self, bytes: &[u8], sha: &str, queue: &mut Queue) -> Result<Runtime, String> {
        let admitted = queue.host_get(&admitted_key(sha)).ok().flatten().as_deref() == Some(env!("CARGO_PKG_VERSION"));
        if !admitted {
            admission::check_bytes(bytes)?;
        }
        let runtime = Runtime::load(bytes, Some(&self.cache_dir), self.limits).map_err(|e| e.to_string())?;
        if !admitted {
            let report = admission::admit(&runtime)?;
            if !report.passed() {
                return Err(report.failure_sentence());
            }
            let _ = queue.host_set(&admitted_key(sha), env!("CARGO_PKG_VERSION"));
            self.keep_copy(bytes, sha, queue);
        } else if queue.host_get(LAST_GOOD_KEY).ok().flatten().as_deref() != Some(sha) {
            self.keep_copy(bytes, sha, queue);
        }
        Ok(runtime)
    }

    /// Keep the admitted component as the last good one (0600 in the
    /// private data directory; older copies are removed).
    fn keep_copy(&self, bytes: &[u8], sha: &str, queue: &mut Queue) {
        let path = self.store_dir.join(format!("{sha}.wasm"));
        let written = std::fs::create_dir_all(&self.store_dir).and_then(|()| {
            if !path.is_file() {
                let tmp = self.store_dir.join(format!(".tmp-{}-{}", std::process::id(), fastrand::u64(..)));
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &path)?;
            }
            Ok(())
        });
        match written {
            Ok(()) => {
                let _ = queue.host_set(LAST_GOOD_KEY, sha);
                if let Ok(entries) = std::fs::read_dir(&self.store_dir) {
                    for e in entries.flatten() {
                        if e.path() != path && e.file_name().to_string_lossy().ends_with(".wasm") {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                }
            }
            Err(e) => crate::debug!("Could not keep a copy of the admitted policy: {e}"),
        }
    }

    /// The policy to run instead of `wanted`: the last good one (unless it
    /// is `not`), else the built-in one.
    pub fn instead(
        &self,
        wanted: &str,
        reason: &str,
        queue: &mut Queue,
        not: Option<&str>,
        now_ms: i64,
    ) -> Result<(Runtime, Why), String> {
        let why = Why::FellBack { wanted: wanted.to_string(), reason: reason.to_string() };
        if let Some(sha) = queue.host_get(LAST_GOOD_KEY).ok().flatten().filter(|s| Some(s.as_str()) != not) {
            let path = self.store_dir.join(format!("{sha}.wasm"));
            let copy = std::fs::read(&path).ok().filter(|b| hex(&sha2::Sha256::digest(b)) == sha);
            if let Some(bytes) = copy
                && self.quarantined(queue, &sha, now_ms).is_none()
                && let Ok(rt) = Runtime::load(&bytes, Some(&self.cache_dir), self.limits)
            {
                return Ok((rt, why));
            }
        }
        self.builtin().map(|rt| (rt, why))
    }

    /// Why the component `sha` is in quarantine at `now_ms`.
    fn quarantined(&self, queue: &Queue, sha: &str, now_ms: i64) -> Option<String> {
        let text = queue.host_get(&quarantine_key(sha)).ok().flatten()?;
        let q: Quarantine = serde_json::from_str(&text).ok()?;
        (now_ms < q.until_ms).then(|| {
            format!(
                "it is in quarantine: {}; it is tried again in {}",
                q.reason,
                crate::text::duration_text(q.until_ms.saturating_sub(now_ms.max(0)))
            )
        })
    }

    /// Put `policy` in quarantine for its next back-off period.
    pub fn quarantine(&self, queue: &mut Queue, policy: &PolicyRef, reason: &str, now_ms: i64) -> i64 {
        let key = quarantine_key(&policy.sha256);
        let strikes = queue
            .host_get(&key)
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<Quarantine>(&t).ok())
            .map_or(1, |q| q.strikes + 1);
        let until_ms = now_ms.saturating_add(quarantine_ms(strikes));
        let q = Quarantine { until_ms, strikes, reason: reason.to_string() };
        if let Ok(text) = serde_json::to_string(&q) {
            let _ = queue.host_set(&key, &text);
        }
        if queue.host_get(LAST_GOOD_KEY).ok().flatten().as_deref() == Some(policy.sha256.as_str()) {
            let _ = queue.host_delete(LAST_GOOD_KEY);
        }
        crate::error!(
            "Policy {} put in quarantine for {} because {reason}; its jobs stay queued",
            policy.short(),
            crate::text::duration_text(quarantine_ms(strikes))
        );
        until_ms
    }
}

/// Read a component file, refusing one over the size cap before reading it.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.len() > super::MAX_COMPONENT_BYTES as u64 {
        return Err(format!(
            "it is {} MiB, over the {} MiB limit for a policy component",
            meta.len() >> 20,
            super::MAX_COMPONENT_BYTES >> 20
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

/// The choice seen from a running drainer.
pub struct PolicyWatch {
    loader: Loader,
    choice: Choice,
    /// The hash of the component running (or refused) last, and the file's
    /// size and mtime when it was read.
    running_sha: String,
    stamp: Option<(u64, Option<SystemTime>)>,
    /// Content refused already: not tried again until it changes (or its
    /// quarantine ends).
    refused_sha: Option<String>,
    retry_at_ms: i64,
}

impl PolicyWatch {
    pub fn new(loader: Loader, choice: Choice, running: &PolicyRef, now_ms: i64) -> PolicyWatch {
        let stamp = match &choice {
            Choice::File { path, .. } => stat(path),
            Choice::Builtin => None,
        };
        // Fallen back at start: the chosen file was just refused; look at it
        // again when it changes, or in a minute (a quarantine may end).
        let fell_back = matches!(running.why, Why::FellBack { .. });
        PolicyWatch {
            loader,
            choice,
            running_sha: running.sha256.clone(),
            stamp,
            refused_sha: fell_back.then(String::new),
            retry_at_ms: if fell_back { now_ms.saturating_add(60_000) } else { 0 },
        }
    }

    pub fn choice(&self) -> &Choice {
        &self.choice
    }

    /// The user chose again (the settings were read again): the next
    /// `changed` looks at the new choice.
    pub fn set_choice(&mut self, choice: Choice) {
        if choice != self.choice {
            self.choice = choice;
            self.stamp = None;
            self.refused_sha = None;
            self.retry_at_ms = 0;
        }
    }

    /// A policy to switch to, admitted, or why the new one was refused
    /// (once per content). `None` when nothing changed.
    pub fn changed(&mut self, queue: &mut Queue, now_ms: i64) -> Option<Result<(Runtime, Why), String>> {
        let (path, origin) = match &self.choice {
            Choice::Builtin => {
                if self.running_sha == hex(&super::DEFAULT_POLICY_SHA256) {
                    return None;
                }
                let rt = self.loader.builtin();
                if let Ok(rt) = &rt {
                    self.running_sha = rt.identity.sha256.clone();
                }
                return Some(rt.map(|rt| (rt, Why::Default)));
            }
            Choice::File { path, origin } => (path.clone(), *origin),
        };
        let stamp = stat(&path);
        let retry = self.refused_sha.is_some() && now_ms >= self.retry_at_ms;
        if stamp == self.stamp && !retry {
            return None;
        }
        self.stamp = stamp;
        let bytes = match read_capped(&path) {
            Ok(b) => b,
            Err(e) => return self.refuse(format!("{}: {e}", path.display()), None, now_ms),
        };
        let sha = hex(&sha2::Sha256::digest(&bytes));
        if sha == self.running_sha || (self.refused_sha.as_deref() == Some(sha.as_str()) && !retry) {
            return None;
        }
        if let Some(q) = self.loader.quarantined(queue, &sha, now_ms) {
            return self.refuse(
                format!("The policy component {} was not used ({q})", path.display()),
                Some(sha),
                now_ms,
            );
        }
        match self.loader.load_bytes(&bytes, &sha, queue) {
            Ok(rt) => {
                self.running_sha = sha;
                self.refused_sha = None;
                Some(Ok((rt, Why::Chosen { path: path.display().to_string(), origin })))
            }
            Err(e) => self.refuse(
                format!("The new policy component {} was not used ({e}); the running policy goes on", path.display()),
                Some(sha),
                now_ms,
            ),
        }
    }

    fn refuse(&mut self, why: String, sha: Option<String>, now_ms: i64) -> Option<Result<(Runtime, Why), String>> {
        self.refused_sha = sha.or_else(|| Some(String::new()));
        self.retry_at_ms = now_ms.saturating_add(60_000);
        Some(Err(why))
    }

    /// Quarantine the running policy.
    pub fn quarantine(&mut self, queue: &mut Queue, policy: &PolicyRef, reason: &str, now_ms: i64) {
        let until = self.loader.quarantine(queue, policy, reason, now_ms);
        self.refused_sha = Some(policy.sha256.clone());
        self.retry_at_ms = until;
    }

    /// The policy to run instead of `current`.
    pub fn fallback(
        &mut self,
        queue: &mut Queue,
        current: &PolicyRef,
        reason: &str,
        now_ms: i64,
    ) -> Result<(Runtime, Why), String> {
        if current.builtin {
            return Err("the built-in policy has nothing to fall back to".into());
        }
        let (rt, why) = self.loader.instead(&current.short(), reason, queue, Some(&current.sha256), now_ms)?;
        self.running_sha = rt.identity.sha256.clone();
        Ok((rt, why))
    }
}

fn stat(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_backs_off_and_is_capped() {
        assert_eq!(quarantine_ms(1), 60_000);
        assert_eq!(quarantine_ms(2), 120_000);
        assert_eq!(quarantine_ms(4), 480_000);
        assert_eq!(quarantine_ms(30), 6 * 3_600_000);
    }
}
