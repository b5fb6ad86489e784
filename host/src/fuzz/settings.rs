//! Fuzz target: THE settings parser (`settings::parse`) and the host's
//! own settings built on it (`settings::from_map`), seeded from
//! `tests/fuzz/corpus/settings/`.
//!
//! Properties: never a panic; a value it accepts always fits the declared
//! kind and range, and parsing that value again gives the same value
//! (round trip); every problem names its setting, is one short sentence,
//! and there is one per bad setting; a secret (`plex_token`) is never
//! repeated, wherever the user put it.

use super::*;
use crate::runtime::wit::policy::WholeRange;
use crate::settings::is_secret;
use proptest::prelude::*;
use serde_json::json;
use stash2plex_testkit::fuzz;

/// A problem is one sentence: the key, the rule, the value clipped to 60.
const MAX_PROBLEM_CHARS: usize = 400;

fn kinds() -> impl Strategy<Value = (SettingKind, SettingValue)> {
    let bound = prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), Just(-1i64), -100_000i64..100_000];
    prop_oneof![
        any::<bool>().prop_map(|b| (SettingKind::Flag, SettingValue::Flag(b))),
        (bound.clone(), bound, any::<prop::sample::Index>()).prop_map(|(a, b, at)| {
            let (min, max) = (a.min(b), a.max(b));
            let span = u64::try_from(i128::from(max) - i128::from(min)).unwrap_or(u64::MAX);
            let offset = at.index(usize::try_from(span.min(1 << 30)).unwrap_or(0).saturating_add(1));
            let default = min.saturating_add(i64::try_from(offset).unwrap_or(0));
            (SettingKind::Whole(WholeRange { min, max }), SettingValue::Whole(default))
        }),
        fuzz::nasty_string().prop_map(|t| (SettingKind::Text, SettingValue::Text(t))),
        (prop::collection::vec("[a-z]{1,8}", 1..5), any::<prop::sample::Index>()).prop_map(|(words, at)| {
            let default = words[at.index(words.len())].clone();
            (SettingKind::Choice(words), SettingValue::Text(default))
        }),
    ]
}

fn specs_of() -> impl Strategy<Value = SettingSpec> {
    let key = prop_oneof![
        4 => "[a-z_]{1,20}",
        1 => Just("plex_token".to_string()),
    ];
    (key, kinds()).prop_map(|(key, (kind, default_value))| SettingSpec {
        key,
        kind,
        default_value,
        description: String::new(),
    })
}

/// What users and tools store: the kind's own JSON, its spellings, and
/// anything else.
fn raw_values() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        3 => fuzz::scalar(),
        1 => fuzz::json_value(),
        2 => prop::sample::select(vec![
            json!("yes"), json!(" On "), json!("FALSE"), json!(1.0), json!("5.0"), json!(" 7 "), json!("1e3"),
            json!(-0.0), json!("full"), json!("EQUAL"), json!(""), json!("   "), json!(9.007_199_254_740_993e15),
        ]),
    ])
}

/// A setting's clean value as Stash would store it.
fn as_json(v: &SettingValue) -> Value {
    match v {
        SettingValue::Flag(b) => json!(b),
        SettingValue::Whole(n) => json!(n),
        SettingValue::Text(t) => json!(t),
    }
}

fn check_problem(key: &str, problem: &str) -> Result<(), TestCaseError> {
    prop_assert!(problem.starts_with(key), "the problem does not name {key:?}: {problem}");
    prop_assert!(problem.chars().count() <= MAX_PROBLEM_CHARS + key.chars().count(), "too long: {problem}");
    prop_assert!(!problem.contains('\n'), "not one line: {problem}");
    Ok(())
}

/// A mutated settings seed with `plex_token` set to `secret`, which may
/// also have been pasted into another setting (the URL, the proxy).
fn maps_with_secret() -> impl Strategy<Value = (String, Map<String, Value>)> {
    let seeds = fuzz::corpus_json("settings");
    (fuzz::secret(), 0u8..6, fuzz::mutated(seeds)).prop_map(move |(secret, misplace, mut seed)| {
        if !seed.is_object() {
            seed = json!({});
        }
        if let Some(map) = seed.as_object_mut() {
            map.insert("plex_token".into(), json!(secret));
            let (key, value) = match misplace {
                0 => ("plex_url", json!(secret)),
                1 => ("plex_url", json!(format!("http://plex:32400/?X-Plex-Token={secret}"))),
                2 => ("plex_url", json!(format!("http://user:{secret}@plex:32400"))),
                3 => ("plex_token", json!([secret])),
                4 => ("plex_proxy", json!(format!("{secret} "))),
                _ => ("plex_token", json!(format!(" {secret}\n"))),
            };
            map.insert(key.into(), value);
        }
        (secret, seed.as_object().cloned().unwrap_or_default())
    })
}

proptest! {
    #![proptest_config(fuzz::config(1000))]

    #[test]
    fn fuzz_settings_accepted_values_fit_and_round_trip(spec in specs_of(), raw in raw_values()) {
        let unset = match &raw {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty() && !matches!(spec.kind, SettingKind::Text),
            Some(_) => false,
        };
        match parse_value(&spec, raw.as_ref()) {
            Ok(value) if unset => prop_assert_eq!(value, spec.default_value.clone(), "unset takes the default"),
            Ok(value) => {
                prop_assert!(fits(&spec.kind, &value), "{value:?} does not fit {:?}", spec.kind);
                let again = parse_value(&spec, Some(&as_json(&value)));
                prop_assert_eq!(again, Ok(value));
            }
            Err(problem) => {
                check_problem(&spec.key, &problem)?;
                if is_secret(&spec.key) {
                    prop_assert!(problem.ends_with("(got a value that is not shown)."), "a secret shown: {problem}");
                }
            }
        }
    }

    #[test]
    fn fuzz_settings_one_value_per_spec_or_one_problem_per_bad_setting(
        specs in prop::collection::vec(specs_of(), 0..8),
        values in prop::collection::vec(raw_values(), 8),
    ) {
        let mut map = Map::new();
        for (spec, raw) in specs.iter().zip(&values) {
            if let Some(raw) = raw {
                map.insert(spec.key.clone(), raw.clone());
            }
        }
        let bad = specs.iter().filter(|s| parse_value(s, map.get(&s.key)).is_err()).count();
        match parse_all(&specs, &map) {
            Ok(settings) => {
                prop_assert_eq!(bad, 0);
                let keys: Vec<&str> = settings.iter().map(|s| s.key.as_str()).collect();
                let want: Vec<&str> = specs.iter().map(|s| s.key.as_str()).collect();
                prop_assert_eq!(keys, want);
            }
            Err(problems) => prop_assert_eq!(problems.len(), bad),
        }
    }

    #[test]
    fn fuzz_settings_host_settings_never_repeat_the_token((secret, map) in maps_with_secret()) {
        let no_env = |_: &str| None;
        match crate::settings::from_map(&map, &no_env) {
            Ok(settings) => {
                let shown = format!("{settings:?}");
                prop_assert!(!shown.contains(&secret), "the token shown: {shown}");
            }
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                for p in &problems {
                    prop_assert!(!p.contains(&secret), "a problem repeats the token: {p}");
                    prop_assert!(p.chars().count() <= MAX_PROBLEM_CHARS, "too long: {p}");
                }
            }
        }
    }

    #[test]
    fn fuzz_settings_host_settings_from_any_corpus_mutation(
        map in fuzz::mutated(fuzz::corpus_json("settings")).prop_map(|v| v.as_object().cloned().unwrap_or_default()),
    ) {
        let no_env = |_: &str| None;
        match crate::settings::from_map(&map, &no_env) {
            Ok(s) => {
                prop_assert!(!s.plex_url.is_empty() && !s.plex_token.is_empty());
                prop_assert!((1..=30).contains(&s.connect_timeout.as_secs()), "{:?}", s.connect_timeout);
                prop_assert!((5..=120).contains(&s.read_timeout.as_secs()), "{:?}", s.read_timeout);
                prop_assert!(s.dlq_retention_days <= 3650);
            }
            Err(problems) => {
                for p in &problems {
                    let named = crate::settings::host_specs().iter().any(|spec| p.starts_with(&spec.key));
                    prop_assert!(named, "a problem that names no setting: {p}");
                    prop_assert!(p.chars().count() <= MAX_PROBLEM_CHARS, "too long: {p}");
                }
            }
        }
    }
}
