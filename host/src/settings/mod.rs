//! The host's own settings: how to reach Plex, timeouts, logging, draining.
//! Read from the plugin's settings map that Stash stores
//! (`configuration.plugins`), with `PLEX_URL` / `PLEX_TOKEN` from the
//! environment as a fallback, through the one parser (`parse`). The policy
//! declares its own settings and gets them through the same parser, minus
//! the host's keys.
//!
//! Key names are the original plugin's, so a user who switches keeps their
//! settings; the two timeout keys its UI showed but ignored (`connect_timeout`,
//! `read_timeout`) are honoured here, as are its internal names for them.

pub mod parse;

use crate::runtime::wit::policy::{SettingKind, SettingSpec, SettingValue, WholeRange};
use serde_json::{Map, Value};
use std::time::Duration;

/// Keys never handed to the policy sandbox, and never repeated in messages.
const SECRET_KEYS: &[&str] = &["plex_token"];
/// Addresses the policy and the hooks' copy never need (they may hold
/// credentials a user pasted by mistake).
const ADDRESS_KEYS: &[&str] = &["plex_url", "plex_proxy"];

pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// Old names the original plugin read for the same settings.
const ALIASES: &[(&str, &str)] = &[("plex_connect_timeout", "connect_timeout"), ("plex_read_timeout", "read_timeout")];

#[derive(Clone, PartialEq)]
pub struct HostSettings {
    pub plex_url: String,
    pub plex_token: String,
    pub enabled: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub obfuscate_paths: bool,
    pub debug_logging: bool,
    /// Hooks start a background drainer after recording a change.
    pub auto_drain: bool,
    /// An HTTP proxy for Plex the user asked for (never used for Stash or
    /// a Plex on this machine).
    pub plex_proxy: Option<String>,
    /// Dead letters older than this many days are deleted at the start of
    /// a drain; 0 keeps them forever.
    pub dlq_retention_days: u32,
    /// Which policy runs and its bounds.
    pub policy: PolicySettings,
}

/// The settings that choose the policy and bound it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicySettings {
    /// A policy component (`.wasm`) to run instead of the built-in one.
    pub path: Option<String>,
    pub limits: crate::runtime::Limits,
}

/// The setting naming the policy component.
pub const POLICY_PATH_KEY: &str = "policy_path";

impl PolicySettings {
    /// From a settings map that may be incomplete or invalid (hooks'
    /// cached copy, reports): an invalid value counts as its default (the
    /// drainer's connected settings report it).
    pub fn from_map(map: &Map<String, Value>) -> PolicySettings {
        let specs = host_specs();
        let value = |key: &str| {
            specs
                .iter()
                .find(|s| s.key == key)
                .map(|spec| parse::parse_value(spec, map.get(key)).unwrap_or_else(|_| spec.default_value.clone()))
        };
        let whole = |key: &str| match value(key) {
            Some(SettingValue::Whole(n)) => u64::try_from(n).unwrap_or(0),
            _ => 0,
        };
        let path = match value(POLICY_PATH_KEY) {
            Some(SettingValue::Text(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
            _ => None,
        };
        let defaults = crate::runtime::Limits::default();
        let fuel = whole("policy_fuel_millions");
        let memory = whole("policy_memory_mb");
        PolicySettings {
            path,
            limits: crate::runtime::Limits {
                fuel_per_call: if fuel == 0 { defaults.fuel_per_call } else { fuel.saturating_mul(1_000_000) },
                memory_bytes: if memory == 0 {
                    defaults.memory_bytes
                } else {
                    usize::try_from(memory).unwrap_or(256).saturating_mul(1 << 20)
                },
            },
        }
    }
}

impl std::fmt::Debug for HostSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSettings")
            .field("plex_url", &self.plex_url)
            .field("plex_token", &"****")
            .field("enabled", &self.enabled)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("obfuscate_paths", &self.obfuscate_paths)
            .field("debug_logging", &self.debug_logging)
            .field("auto_drain", &self.auto_drain)
            .field("plex_proxy", &self.plex_proxy)
            .field("dlq_retention_days", &self.dlq_retention_days)
            .field("policy", &self.policy)
            .finish()
    }
}

fn spec(key: &str, kind: SettingKind, default_value: SettingValue, description: &str) -> SettingSpec {
    SettingSpec { key: key.into(), kind, default_value, description: description.into() }
}

fn whole(min: i64, max: i64) -> SettingKind {
    SettingKind::Whole(WholeRange { min, max })
}

/// The settings the host reads.
pub fn host_specs() -> Vec<SettingSpec> {
    use SettingValue::{Flag, Text, Whole};
    vec![
        spec("plex_url", SettingKind::Text, Text(String::new()), "Your Plex server, e.g. http://192.168.1.10:32400"),
        spec("plex_token", SettingKind::Text, Text(String::new()), "An X-Plex-Token of the server owner"),
        spec("enabled", SettingKind::Flag, Flag(true), "Off pauses syncing; changes are still recorded"),
        spec("connect_timeout", whole(1, 30), Whole(5), "Seconds to wait for a connection to Plex"),
        spec("read_timeout", whole(5, 120), Whole(30), "Seconds to wait for Plex to answer"),
        spec("obfuscate_paths", SettingKind::Flag, Flag(false), "Replace file path names in logs with stable words"),
        spec("debug_logging", SettingKind::Flag, Flag(false), "More detail in Stash's log"),
        spec("auto_drain", SettingKind::Flag, Flag(true), "Hooks start a background process that syncs"),
        spec("dlq_retention_days", whole(0, 3650), Whole(30), "Dead letters older than this are deleted; 0 keeps them"),
        spec(
            "plex_proxy",
            SettingKind::Text,
            Text(String::new()),
            "An HTTP proxy to reach Plex through (empty = none)",
        ),
        spec(
            POLICY_PATH_KEY,
            SettingKind::Text,
            Text(String::new()),
            "A policy component (.wasm) to run instead of the built-in one (relative to the plugin folder)",
        ),
        spec(
            "policy_fuel_millions",
            whole(100, 1_000_000),
            Whole(20_000),
            "CPU budget of one call into the policy, in millions of WebAssembly instructions",
        ),
        spec("policy_memory_mb", whole(16, 4096), Whole(256), "Memory a policy instance may use, in MiB"),
    ]
}

/// Is `key` one of the host's settings (a policy may not declare it)?
pub fn is_host_key(key: &str) -> bool {
    host_specs().iter().any(|s| s.key == key) || ALIASES.iter().any(|(alias, _)| *alias == key)
}

/// `map` with the original plugin's internal names moved to the keys we
/// read (when the user has not set those).
fn with_aliases(map: &Map<String, Value>) -> Map<String, Value> {
    let mut m = map.clone();
    for (alias, key) in ALIASES {
        if m.get(*key).is_none_or(Value::is_null)
            && let Some(v) = map.get(*alias)
        {
            m.insert((*key).to_string(), v.clone());
        }
    }
    m
}

/// Parse and validate. Every problem is reported, each as a sentence naming
/// the setting, so the user can fix them all at once.
pub fn from_map(map: &Map<String, Value>, env: &dyn Fn(&str) -> Option<String>) -> Result<HostSettings, Vec<String>> {
    let mut map = with_aliases(map);
    for (key, var) in [("plex_url", "PLEX_URL"), ("plex_token", "PLEX_TOKEN")] {
        let unset = map.get(key).is_none_or(|v| v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()));
        if unset && let Some(value) = env(var) {
            map.insert(key.into(), Value::String(value));
        }
    }
    let parsed = parse::parse_all(&host_specs(), &map).map_err(|problems| hide_token(problems, &map))?;
    let text = |k| match parse::get(&parsed, k) {
        Some(SettingValue::Text(s)) => s.clone(),
        _ => String::new(),
    };
    let flag = |k| matches!(parse::get(&parsed, k), Some(SettingValue::Flag(true)));
    let number = |k| match parse::get(&parsed, k) {
        Some(SettingValue::Whole(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    };

    let mut problems = Vec::new();
    let plex_url = text("plex_url").trim_end_matches('/').to_string();
    if plex_url.is_empty() {
        problems.push("plex_url is not set: enter your Plex server's address (for example http://192.168.1.10:32400) in the plugin settings".into());
    } else {
        problems.extend(url_problem("plex_url", &plex_url, "Plex server"));
    }
    let plex_proxy = text("plex_proxy").trim_end_matches('/').to_string();
    if !plex_proxy.is_empty() {
        problems.extend(url_problem("plex_proxy", &plex_proxy, "proxy"));
    }
    let plex_token = text("plex_token");
    if plex_token.is_empty() {
        problems.push("plex_token is not set: copy your X-Plex-Token into the plugin settings (see the README for how to find it)".into());
    } else if plex_token.len() < 10 || plex_token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push("plex_token does not look like a Plex token (at least 10 characters, no spaces)".into());
    }
    if !problems.is_empty() {
        return Err(hide_token(problems, &map));
    }
    Ok(HostSettings {
        plex_url,
        plex_token,
        enabled: flag("enabled"),
        connect_timeout: Duration::from_secs(number("connect_timeout")),
        read_timeout: Duration::from_secs(number("read_timeout")),
        obfuscate_paths: flag("obfuscate_paths"),
        debug_logging: flag("debug_logging"),
        auto_drain: flag("auto_drain"),
        plex_proxy: (!plex_proxy.is_empty()).then_some(plex_proxy),
        dlq_retention_days: u32::try_from(number("dlq_retention_days")).unwrap_or(30),
        policy: PolicySettings::from_map(&map),
    })
}

/// `problems` with the token replaced by `****` wherever it appears: a
/// user who pasted it into another setting (the URL, the proxy) must not
/// find it in Stash's log, and this runs before the log knows the token.
fn hide_token(problems: Vec<String>, map: &Map<String, Value>) -> Vec<String> {
    match map.get("plex_token").and_then(Value::as_str).map(str::trim).filter(|t| t.len() >= 4) {
        Some(token) => problems.into_iter().map(|p| p.replace(token, "****")).collect(),
        None => problems,
    }
}

/// What is wrong with a server address setting, if anything. The address is
/// shown only when it has no credentials in it.
fn url_problem(key: &str, url: &str, what: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://"));
    let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    // Any '@' (a password may hold a '/', which would end the authority).
    if rest.is_some_and(|r| r.contains('@')) {
        return Some(format!(
            "{key} must not contain a user name or password; enter just the {what}'s address (for example http://192.168.1.10:32400)"
        ));
    }
    if url.contains('?') || url.contains('#') {
        return Some(format!(
            "{key} must be just the {what}'s address, without ?query or #fragment (put the token in plex_token)"
        ));
    }
    match authority {
        Some(a) if !a.is_empty() && url.parse::<ureq::http::Uri>().is_ok() => None,
        _ => Some(format!("{key} must start with http:// or https:// and name a server (got {url:?})")),
    }
}

/// The settings map as the policy and the hooks' cached copy see it:
/// secrets removed.
pub fn without_secrets(map: &Map<String, Value>) -> Map<String, Value> {
    let mut m = map.clone();
    for k in SECRET_KEYS.iter().chain(ADDRESS_KEYS) {
        m.remove(*k);
    }
    m
}

/// A host flag from a settings map that may be incomplete or invalid (the
/// copy cached for hooks): its value, or its default.
pub fn cached_flag(map: &Map<String, Value>, key: &str) -> bool {
    let specs = host_specs();
    let Some(spec) = specs.iter().find(|s| s.key == key) else {
        return false;
    };
    let value = parse::parse_value(spec, map.get(key)).unwrap_or_else(|_| spec.default_value.clone());
    matches!(value, SettingValue::Flag(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// Found by the settings fuzz target: a token pasted into another
    /// setting was repeated in that setting's problem (the log does not
    /// know the token yet when the settings are refused).
    #[test]
    fn a_token_pasted_into_another_setting_is_not_repeated() {
        let token = "AbCdEfGhIjKlMnOpQrSt";
        let with_slash = json!("http://user:pass/word@plex:32400");
        let problems =
            from_map(&json!({"plex_token": token, "plex_url": with_slash}).as_object().cloned().unwrap(), &|_| None);
        assert!(problems.unwrap_err()[0].contains("must not contain a user name or password"));
        for (key, value) in [("plex_url", json!(token)), ("plex_proxy", json!([token])), ("enabled", json!(token))] {
            let mut map = Map::new();
            map.insert("plex_token".into(), json!(token));
            map.insert(key.into(), value);
            let problems = from_map(&map, &|_| None).unwrap_err();
            assert!(problems.iter().all(|p| !p.contains(token)), "{problems:?}");
            assert!(problems.iter().any(|p| p.starts_with(key) && p.contains("****")), "{problems:?}");
        }
    }

    #[test]
    fn valid_settings_with_defaults() {
        let s = from_map(&map(json!({"plex_url":"http://plex:32400/","plex_token":"abcdefghijkl"})), &no_env).unwrap();
        assert_eq!(s.plex_url, "http://plex:32400");
        assert!(s.enabled && s.auto_drain && !s.debug_logging);
        assert_eq!(s.read_timeout, Duration::from_secs(30));
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
        assert!(!format!("{s:?}").contains("abcdefghijkl"), "Debug hides the token");
    }

    #[test]
    fn ui_timeout_keys_and_the_originals_internal_names_are_honoured() {
        let s = from_map(
            &map(json!({"plex_url":"http://p.x","plex_token":"abcdefghijkl","read_timeout":"12","connect_timeout":3})),
            &no_env,
        )
        .unwrap();
        assert_eq!(s.read_timeout, Duration::from_secs(12));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        let s = from_map(
            &map(json!({"plex_url":"http://p.x","plex_token":"abcdefghijkl","plex_read_timeout":45.0})),
            &no_env,
        )
        .unwrap();
        assert_eq!(s.read_timeout, Duration::from_secs(45));
    }

    #[test]
    fn every_problem_is_reported() {
        let errs =
            from_map(&map(json!({"plex_url":"plex:32400","enabled":"maybe","read_timeout":900})), &no_env).unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("enabled must be true or false (got \"maybe\")"), "{all}");
        assert!(all.contains("read_timeout must be a whole number from 5 to 120 (got 900)"), "{all}");
        let errs = from_map(&map(json!({"plex_url":"plex:32400"})), &no_env).unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("plex_url must start with http"), "{all}");
        assert!(all.contains("plex_token is not set"), "{all}");
    }

    #[test]
    fn credentials_in_addresses_are_refused_and_never_repeated() {
        let base = |url: &str| json!({"plex_url": url, "plex_token": "abcdefghijkl"});
        for (url, expected) in [
            ("http://admin:hunter2@plex:32400", "must not contain a user name or password"),
            ("http://plex:32400/?X-Plex-Token=tok-secret-1", "without ?query"),
            ("http://plex:32400#frag", "without ?query or #fragment"),
            ("http://", "must start with http:// or https:// and name a server"),
        ] {
            let errs = from_map(&map(base(url)), &no_env).unwrap_err();
            let all = errs.join(" ");
            assert!(all.contains(expected), "{url}: {all}");
            assert!(!all.contains("hunter2") && !all.contains("tok-secret-1"), "{all}");
        }
        let errs =
            from_map(&map(json!({"plex_url": "http://p.x", "plex_token": 1234567890123_i64})), &no_env).unwrap_err();
        assert!(errs[0].contains("plex_token must be text (got a value that is not shown)"), "{errs:?}");
        assert!(!errs[0].contains("1234567890123"));
        let s = from_map(
            &map(json!({"plex_url": "http://plex.lan:32400/", "plex_token": "abcdefghijkl",
            "plex_proxy": "http://proxy.lan:3128"})),
            &no_env,
        )
        .unwrap();
        assert_eq!(s.plex_proxy.as_deref(), Some("http://proxy.lan:3128"));
        assert!(
            from_map(
                &map(json!({"plex_url": "http://p.x", "plex_token": "abcdefghijkl", "plex_proxy": "proxy"})),
                &no_env
            )
            .is_err()
        );
    }

    #[test]
    fn retention_days() {
        let base = json!({"plex_url":"http://p.x","plex_token":"abcdefghijkl"});
        let s = from_map(&map(base.clone()), &no_env).unwrap();
        assert_eq!(s.dlq_retention_days, 30);
        let mut m = map(base);
        m.insert("dlq_retention_days".into(), json!("0"));
        assert_eq!(from_map(&m, &no_env).unwrap().dlq_retention_days, 0);
        m.insert("dlq_retention_days".into(), json!(7.5));
        let errs = from_map(&m, &no_env).unwrap_err();
        assert!(errs[0].contains("dlq_retention_days must be a whole number from 0 to 3650"), "{errs:?}");
    }

    #[test]
    fn environment_fallback() {
        let env = |k: &str| match k {
            "PLEX_URL" => Some("https://plex.example:32400".to_string()),
            "PLEX_TOKEN" => Some("0123456789abcdef".to_string()),
            _ => None,
        };
        let s = from_map(&Map::new(), &env).unwrap();
        assert_eq!(s.plex_url, "https://plex.example:32400");
        assert_eq!(s.plex_token, "0123456789abcdef");
    }

    #[test]
    fn the_policy_never_sees_the_token_and_cached_flags_fall_back_to_defaults() {
        let m = without_secrets(&map(json!({"plex_token":"secret-token-1","strict_matching":true})));
        assert!(!m.contains_key("plex_token"));
        assert!(m.contains_key("strict_matching"));
        let m = without_secrets(&map(json!({"plex_url":"http://u:pw@plex:32400","plex_proxy":"http://p"})));
        assert!(m.is_empty(), "{m:?}");
        assert!(cached_flag(&map(json!({"auto_drain": "off"})), "obfuscate_paths").eq(&false));
        assert!(!cached_flag(&map(json!({"auto_drain": "off"})), "auto_drain"));
        assert!(cached_flag(&map(json!({"auto_drain": "perhaps"})), "auto_drain"), "invalid → default on");
        assert!(is_host_key("plex_read_timeout") && is_host_key("plex_url") && !is_host_key("sync_tags"));
        assert!(is_host_key("policy_path") && is_host_key("policy_fuel_millions") && is_host_key("policy_memory_mb"));
    }

    #[test]
    fn the_policy_is_chosen_and_bounded_by_settings_with_safe_defaults() {
        let p = PolicySettings::from_map(&Map::new());
        assert_eq!(p, PolicySettings::default());
        assert_eq!(p.limits, crate::runtime::Limits::default());
        let p = PolicySettings::from_map(&map(
            json!({"policy_path": " policies/labels.wasm ", "policy_fuel_millions": "500", "policy_memory_mb": 64.0}),
        ));
        assert_eq!(p.path.as_deref(), Some("policies/labels.wasm"));
        assert_eq!((p.limits.fuel_per_call, p.limits.memory_bytes), (500_000_000, 64 << 20));
        // Out of range: the connected settings say so; the policy runs with the defaults.
        let bad = map(json!({"plex_url":"http://p.x","plex_token":"abcdefghijkl","policy_memory_mb": 1}));
        assert_eq!(PolicySettings::from_map(&bad).limits, crate::runtime::Limits::default());
        let errs = from_map(&bad, &no_env).unwrap_err();
        assert!(errs[0].contains("policy_memory_mb must be a whole number from 16 to 4096"), "{errs:?}");
    }
}
