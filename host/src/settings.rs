//! The host's own settings: how to reach Plex, timeouts, logging. Read from
//! the plugin's settings map that Stash stores (`configuration.plugins`), with
//! `PLEX_URL` / `PLEX_TOKEN` from the environment as a fallback. The policy
//! gets the same map minus secrets and validates its own keys.
//!
//! Key names are the original plugin's, so a user who switches keeps their
//! settings; the two timeout keys its UI showed but ignored (`connect_timeout`,
//! `read_timeout`) are honoured here.

use serde_json::{Map, Value};
use std::time::Duration;

/// Keys never handed to the policy sandbox.
pub const SECRET_KEYS: &[&str] = &["plex_token"];

#[derive(Debug, Clone, PartialEq)]
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
    /// Dead letters older than this many days are deleted at the start of
    /// a drain; 0 keeps them forever.
    pub dlq_retention_days: u32,
}

/// Parse and validate. Every problem is reported, each as a sentence naming
/// the setting, so the user can fix them all at once.
pub fn from_map(map: &Map<String, Value>, env: &dyn Fn(&str) -> Option<String>) -> Result<HostSettings, Vec<String>> {
    let mut problems = Vec::new();

    let plex_url = match string_setting(map, "plex_url", &mut problems).or_else(|| env("PLEX_URL")) {
        None => {
            problems.push("plex_url is not set: enter your Plex server's address (for example http://192.168.1.10:32400) in the plugin settings".into());
            String::new()
        }
        Some(url) => {
            let url = url.trim().trim_end_matches('/').to_string();
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() < "http://x".len() {
                problems.push(format!("plex_url must start with http:// or https:// (got {url:?})"));
            }
            url
        }
    };
    let plex_token = match string_setting(map, "plex_token", &mut problems).or_else(|| env("PLEX_TOKEN")) {
        None => {
            problems.push("plex_token is not set: copy your X-Plex-Token into the plugin settings (see the README for how to find it)".into());
            String::new()
        }
        Some(t) => {
            let t = t.trim().to_string();
            if t.len() < 10 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push("plex_token does not look like a Plex token (at least 10 characters, no spaces)".into());
            }
            t
        }
    };
    let enabled = bool_setting(map, "enabled", true, &mut problems);
    let connect = seconds_setting(map, &["connect_timeout", "plex_connect_timeout"], 5.0, 1.0..=30.0, &mut problems);
    let read = seconds_setting(map, &["read_timeout", "plex_read_timeout"], 30.0, 5.0..=120.0, &mut problems);
    let obfuscate_paths = bool_setting(map, "obfuscate_paths", false, &mut problems);
    let debug_logging = bool_setting(map, "debug_logging", false, &mut problems);
    let auto_drain = bool_setting(map, "auto_drain", true, &mut problems);
    let dlq_retention_days = whole_setting(map, "dlq_retention_days", 30, 0..=3650, &mut problems);

    if problems.is_empty() {
        Ok(HostSettings {
            plex_url,
            plex_token,
            enabled,
            connect_timeout: connect,
            read_timeout: read,
            obfuscate_paths,
            debug_logging,
            auto_drain,
            dlq_retention_days,
        })
    } else {
        Err(problems)
    }
}

/// The settings map as the policy sees it: secrets removed. The policy gets
/// `plex_token_id` instead of the token: a short hash that changes when the
/// user enters a new token, so a pause for a rejected token can end at once.
pub fn for_policy(map: &Map<String, Value>, token: &str) -> Map<String, Value> {
    use sha2::{Digest, Sha256};
    let mut m = map.clone();
    for k in SECRET_KEYS {
        m.remove(*k);
    }
    let digest = Sha256::digest(token.as_bytes());
    let id: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    m.insert("plex_token_id".into(), Value::String(id));
    m
}

fn string_setting(map: &Map<String, Value>, key: &str, problems: &mut Vec<String>) -> Option<String> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(format!("{key} must be text, got {other}"));
            None
        }
    }
}

/// Booleans as Stash stores them (JSON true/false), plus the spellings other
/// tools write: "true"/"false"/"yes"/"no"/"on"/"off"/"1"/"0" and 0/1.
pub fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn bool_setting(map: &Map<String, Value>, key: &str, default: bool, problems: &mut Vec<String>) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => default,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            problems.push(format!("{key} must be true or false, got {v}"));
            default
        }),
    }
}

fn whole_setting(
    map: &Map<String, Value>,
    key: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    problems: &mut Vec<String>,
) -> u32 {
    let v = match map.get(key) {
        None | Some(Value::Null) => return default,
        Some(Value::String(s)) if s.trim().is_empty() => return default,
        Some(v) => v,
    };
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n.and_then(|n| u32::try_from(n).ok()).filter(|n| range.contains(n)) {
        Some(n) => n,
        None => {
            problems.push(format!("{key} must be a whole number from {} to {}, got {v}", range.start(), range.end()));
            default
        }
    }
}

fn seconds_setting(
    map: &Map<String, Value>,
    keys: &[&str],
    default: f64,
    range: std::ops::RangeInclusive<f64>,
    problems: &mut Vec<String>,
) -> Duration {
    for key in keys {
        let v = match map.get(*key) {
            None | Some(Value::Null) => continue,
            Some(v) => v,
        };
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if !s.trim().is_empty() => s.trim().parse::<f64>().ok(),
            Value::String(_) => continue,
            _ => None,
        };
        match n {
            Some(x) if x.is_finite() && range.contains(&x) => return Duration::from_secs_f64(x),
            _ => {
                problems.push(format!(
                    "{key} must be a number of seconds between {} and {}, got {v}",
                    range.start(),
                    range.end()
                ));
                return Duration::from_secs_f64(default);
            }
        }
    }
    Duration::from_secs_f64(default)
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

    #[test]
    fn valid_settings_with_defaults() {
        let s = from_map(&map(json!({"plex_url":"http://plex:32400/","plex_token":"abcdefghijkl"})), &no_env).unwrap();
        assert_eq!(s.plex_url, "http://plex:32400");
        assert!(s.enabled);
        assert_eq!(s.read_timeout, Duration::from_secs(30));
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn ui_timeout_keys_are_honoured() {
        let s = from_map(
            &map(json!({"plex_url":"http://p","plex_token":"abcdefghijkl","read_timeout":"12","connect_timeout":3})),
            &no_env,
        )
        .unwrap();
        assert_eq!(s.read_timeout, Duration::from_secs(12));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn every_problem_is_reported() {
        let errs =
            from_map(&map(json!({"plex_url":"plex:32400","enabled":"maybe","read_timeout":900})), &no_env).unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("plex_url must start with http"), "{all}");
        assert!(all.contains("plex_token is not set"), "{all}");
        assert!(all.contains("enabled must be true or false"), "{all}");
        assert!(all.contains("read_timeout must be a number of seconds between 5 and 120"), "{all}");
    }

    #[test]
    fn retention_days() {
        let base = json!({"plex_url":"http://p","plex_token":"abcdefghijkl"});
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
    }

    #[test]
    fn the_policy_never_sees_the_token() {
        let m = for_policy(&map(json!({"plex_token":"secret-token-1","strict_matching":true})), "secret-token-1");
        assert!(!m.contains_key("plex_token"));
        assert!(m.contains_key("strict_matching"));
        let id = m["plex_token_id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 8);
        assert!(!"secret-token-1".contains(&id));
        assert_ne!(for_policy(&Map::new(), "another-token-2")["plex_token_id"], m["plex_token_id"]);
    }
}
