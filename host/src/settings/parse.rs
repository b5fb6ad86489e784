//! The one settings parser: what Stash stores for a plugin setting (a JSON
//! boolean, number or string, or whatever a user typed into config.yml)
//! becomes a clean value of the declared kind, with one rule per kind and
//! messages that name the setting and what it accepts. The host's own
//! settings and every policy's declared settings go through here.

use crate::runtime::wit::policy::{Setting, SettingKind, SettingSpec, SettingValue};
use serde_json::{Map, Value};

/// Parse every declared setting from `map`. Absent, `null` and blank values
/// take the spec's default. Keys `map` has but no spec declares are ignored.
/// Every problem is reported, so the user can fix them all at once.
pub fn parse_all(specs: &[SettingSpec], map: &Map<String, Value>) -> Result<Vec<Setting>, Vec<String>> {
    let mut settings = Vec::with_capacity(specs.len());
    let mut problems = Vec::new();
    for spec in specs {
        match parse_value(spec, map.get(&spec.key)) {
            Ok(value) => settings.push(Setting { key: spec.key.clone(), value }),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() { Ok(settings) } else { Err(problems) }
}

/// One value for `spec` (`None` = not set).
pub fn parse_value(spec: &SettingSpec, raw: Option<&Value>) -> Result<SettingValue, String> {
    let raw = match raw {
        None | Some(Value::Null) => return Ok(spec.default_value.clone()),
        Some(Value::String(s)) if s.trim().is_empty() && !matches!(spec.kind, SettingKind::Text) => {
            return Ok(spec.default_value.clone());
        }
        Some(v) => v,
    };
    let key = &spec.key;
    // A secret's value is never repeated in a message.
    let shown = |v: &Value| if super::is_secret(key) { "a value that is not shown".to_string() } else { shown(v) };
    match &spec.kind {
        SettingKind::Flag => flag(raw)
            .map(SettingValue::Flag)
            .ok_or_else(|| format!("{key} must be true or false (got {}).", shown(raw))),
        SettingKind::Whole(range) => match whole(raw) {
            Some(n) if (range.min..=range.max).contains(&n) => Ok(SettingValue::Whole(n)),
            _ => Err(format!("{key} must be a whole number from {} to {} (got {}).", range.min, range.max, shown(raw))),
        },
        SettingKind::Text => match raw {
            Value::String(s) => Ok(SettingValue::Text(s.trim().to_string())),
            other => Err(format!("{key} must be text (got {}).", shown(other))),
        },
        SettingKind::Choice(choices) => {
            let word = raw.as_str().map(str::trim).unwrap_or_default();
            match choices.iter().find(|c| c.eq_ignore_ascii_case(word)) {
                Some(c) if raw.is_string() => Ok(SettingValue::Text(c.clone())),
                _ => Err(format!("{key} must be one of {} (got {}).", or_list(choices), shown(raw))),
            }
        }
    }
}

/// Does `value` fit `kind`? (For checking a policy's declared defaults.)
pub fn fits(kind: &SettingKind, value: &SettingValue) -> bool {
    match (kind, value) {
        (SettingKind::Flag, SettingValue::Flag(_)) | (SettingKind::Text, SettingValue::Text(_)) => true,
        (SettingKind::Whole(r), SettingValue::Whole(n)) => (r.min..=r.max).contains(n),
        (SettingKind::Choice(c), SettingValue::Text(t)) => c.iter().any(|c| c == t),
        _ => false,
    }
}

/// A yes/no word from outside the settings (an environment variable), by
/// the same rule as a flag setting.
pub fn flag_word(text: &str) -> Option<bool> {
    flag(&Value::String(text.to_string()))
}

/// Booleans as Stash stores them, plus the spellings people type:
/// true/false, yes/no, on/off, 1/0 (any case), and the numbers 0 and 1.
fn flag(v: &Value) -> Option<bool> {
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

/// A whole number given as a JSON integer, an integral float (`5.0`, which
/// Stash writes for NUMBER settings) or numeric text.
fn whole(v: &Value) -> Option<i64> {
    let integral = |x: f64| (x.fract() == 0.0 && x.abs() < 1e15).then_some(x as i64);
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(integral)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().filter(|x| x.is_finite()).and_then(integral))
        }
        _ => None,
    }
}

/// A bad value, short, for a sentence.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

fn or_list(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The value under `key` in parsed settings.
pub fn get<'a>(settings: &'a [Setting], key: &str) -> Option<&'a SettingValue> {
    settings.iter().find(|s| s.key == key).map(|s| &s.value)
}

#[cfg(test)]
#[path = "../fuzz/settings.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::wit::policy::WholeRange;
    use serde_json::json;

    fn spec(key: &str, kind: SettingKind, default_value: SettingValue) -> SettingSpec {
        SettingSpec { key: key.into(), kind, default_value, description: String::new() }
    }

    fn specs() -> Vec<SettingSpec> {
        vec![
            spec("on", SettingKind::Flag, SettingValue::Flag(true)),
            spec("n", SettingKind::Whole(WholeRange { min: 1, max: 20 }), SettingValue::Whole(5)),
            spec("name", SettingKind::Text, SettingValue::Text(String::new())),
            spec("jitter", SettingKind::Choice(vec!["full".into(), "equal".into()]), SettingValue::Text("full".into())),
        ]
    }

    fn one(key: &str, raw: Value) -> Result<SettingValue, String> {
        let specs = specs();
        let spec = specs.iter().find(|s| s.key == key).unwrap();
        parse_value(spec, Some(&raw))
    }

    #[test]
    fn every_flag_spelling_people_use() {
        for t in [json!(true), json!("yes"), json!(" On "), json!("TRUE"), json!("1"), json!(1), json!(1.0)] {
            assert_eq!(one("on", t.clone()), Ok(SettingValue::Flag(true)), "{t}");
        }
        for f in [json!(false), json!("no"), json!("off"), json!("False"), json!("0"), json!(0)] {
            assert_eq!(one("on", f.clone()), Ok(SettingValue::Flag(false)), "{f}");
        }
        for bad in [json!("maybe"), json!(2), json!([true]), json!({})] {
            let e = one("on", bad.clone()).unwrap_err();
            assert!(e.starts_with("on must be true or false (got "), "{e}");
        }
    }

    #[test]
    fn whole_numbers_in_range() {
        assert_eq!(one("n", json!(7)), Ok(SettingValue::Whole(7)));
        assert_eq!(one("n", json!("20")), Ok(SettingValue::Whole(20)));
        assert_eq!(one("n", json!(1.0)), Ok(SettingValue::Whole(1)));
        assert_eq!(one("n", json!(" 3.0 ")), Ok(SettingValue::Whole(3)));
        for bad in [json!(0), json!(21), json!(5.5), json!("five"), json!(true), json!(-1)] {
            let e = one("n", bad.clone()).unwrap_err();
            assert!(e.starts_with("n must be a whole number from 1 to 20 (got "), "{bad}: {e}");
        }
    }

    #[test]
    fn text_and_choices() {
        assert_eq!(one("name", json!("  Movies ")), Ok(SettingValue::Text("Movies".into())));
        assert!(one("name", json!(5)).unwrap_err().starts_with("name must be text"));
        assert_eq!(one("jitter", json!("EQUAL")), Ok(SettingValue::Text("equal".into())));
        assert_eq!(
            one("jitter", json!("wobbly")).unwrap_err(),
            "jitter must be one of full or equal (got \"wobbly\")."
        );
    }

    #[test]
    fn absent_null_and_blank_take_defaults_and_all_problems_are_reported() {
        let parsed = parse_all(&specs(), &Map::new()).unwrap();
        assert_eq!(get(&parsed, "on"), Some(&SettingValue::Flag(true)));
        assert_eq!(get(&parsed, "n"), Some(&SettingValue::Whole(5)));
        let m = json!({"on": null, "n": "", "name": "", "other": 9}).as_object().cloned().unwrap();
        let parsed = parse_all(&specs(), &m).unwrap();
        assert_eq!(get(&parsed, "n"), Some(&SettingValue::Whole(5)));
        assert_eq!(get(&parsed, "name"), Some(&SettingValue::Text(String::new())));
        assert_eq!(get(&parsed, "other"), None, "undeclared keys are not passed on");
        let m = json!({"on": "maybe", "n": 99, "jitter": 3}).as_object().cloned().unwrap();
        assert_eq!(parse_all(&specs(), &m).unwrap_err().len(), 3);
    }

    #[test]
    fn defaults_are_checked_against_their_kind() {
        assert!(fits(&SettingKind::Whole(WholeRange { min: 1, max: 3 }), &SettingValue::Whole(3)));
        assert!(!fits(&SettingKind::Whole(WholeRange { min: 1, max: 3 }), &SettingValue::Whole(4)));
        assert!(!fits(&SettingKind::Flag, &SettingValue::Text("true".into())));
        assert!(!fits(&SettingKind::Choice(vec!["a".into()]), &SettingValue::Text("b".into())));
    }
}
