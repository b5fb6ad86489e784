//! Task arguments: Stash passes a task's `defaultArgs` as strings, callers
//! of `runPluginTask` may pass JSON numbers and booleans.

use crate::settings::parse::flag_word;
use serde_json::{Map, Value};

pub type Args = Map<String, Value>;

/// A non-empty text argument.
pub fn text<'a>(args: &'a Args, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A yes/no argument (`"true"`, `true`, `"yes"`, ...); absent is `false`.
pub fn flag(args: &Args, key: &str) -> Result<bool, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(false),
        Some(Value::String(s)) => flag_word(s).ok_or_else(|| format!("{key} must be true or false, got {s:?}")),
        Some(other) => Err(format!("{key} must be true or false, got {other}")),
    }
}

/// A non-negative whole-number argument up to `max`.
pub fn whole(args: &Args, key: &str, default: u64, max: u64) -> Result<u64, String> {
    let bad = |shown: String| format!("{key} must be a whole number from 0 to {max}, got {shown}");
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n.as_u64().filter(|v| *v <= max).ok_or_else(|| bad(n.to_string())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(default),
        Some(Value::String(s)) => {
            s.trim().parse::<u64>().ok().filter(|v| *v <= max).ok_or_else(|| bad(format!("{s:?}")))
        }
        Some(other) => Err(bad(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Args {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn stash_string_args_and_json_values() {
        let a = args(json!({"days": "30", "limit": 5, "all": "true", "bg": true, "class": "  plex-unavailable "}));
        assert_eq!(whole(&a, "days", 1, 100), Ok(30));
        assert_eq!(whole(&a, "limit", 1, 100), Ok(5));
        assert_eq!(whole(&a, "missing", 7, 100), Ok(7));
        assert_eq!(flag(&a, "all"), Ok(true));
        assert_eq!(flag(&a, "bg"), Ok(true));
        assert_eq!(flag(&a, "missing"), Ok(false));
        assert_eq!(text(&a, "class"), Some("plex-unavailable"));
        assert!(whole(&args(json!({"days": "-1"})), "days", 1, 100).unwrap_err().contains("from 0 to 100"));
        assert!(whole(&args(json!({"days": 101})), "days", 1, 100).is_err());
        assert!(flag(&args(json!({"all": "perhaps"})), "all").is_err());
    }
}
