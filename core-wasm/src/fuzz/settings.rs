//! Fuzz target: the policy's typed [`Settings`], built as in production
//! (what Stash stores → the host's one parser → `from_settings`), seeded
//! from `tests/fuzz/corpus/settings/`.
//!
//! Properties: never a panic; accepted settings keep every declared range
//! and every ordering rule, library names are trimmed, lower-cased and
//! unique, labels and the content rating are sanitised; every problem is
//! a sentence that starts with the setting's key; and settings written back
//! as Stash would store them parse to the same settings (round trip).

use super::*;
use crate::test_support::host_settings;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use stash2plex_testkit::fuzz;

fn parse_map(map: &Map<String, Value>) -> Result<Settings, Vec<String>> {
    from_settings(&host_settings(&Value::Object(map.clone()).to_string())?)
}

/// `s` as Stash would store it (`path_map` is the text it was read from).
fn render(s: &Settings, path_map: &Value) -> Map<String, Value> {
    let mut copy = s.clone();
    let mut m = Map::new();
    m.insert("plex_library".into(), json!(s.plex_library.join(", ")));
    for (key, _) in FLAGS {
        m.insert(key.into(), json!(flag_slot(&mut copy, key).map(|b| *b)));
    }
    for (key, ..) in NUMBERS {
        m.insert(key.into(), json!(number_slot(&mut copy, key).map(|n| *n)));
    }
    m.insert("content_rating".into(), json!(s.content_rating));
    m.insert("plex_labels".into(), json!(s.plex_labels.join(", ")));
    m.insert("plex_path_map".into(), path_map.clone());
    m.insert("sync_sort_title".into(), json!(s.sort_title.as_str()));
    m.insert("retry_jitter".into(), json!(s.retry_jitter.as_str()));
    m
}

/// Every declared setting with a value of its kind in one of the forms
/// users and Stash write (`"yes"`, `5.0`, `" 7 "`, `"EQUAL"`), any text.
fn well_typed() -> impl Strategy<Value = Map<String, Value>> {
    let flags = prop::collection::vec(
        prop::sample::select(vec![
            json!(true),
            json!(false),
            json!("yes"),
            json!("Off"),
            json!(1),
            json!("0"),
            json!(null),
        ]),
        FLAGS.len(),
    );
    let numbers = prop::collection::vec((any::<prop::sample::Index>(), 0u8..4), NUMBERS.len());
    let texts = (
        fuzz::nasty_string(),
        fuzz::nasty_string(),
        fuzz::nasty_string(),
        prop::option::of("[a-zA-Z/ ]{1,12}=>[a-zA-Z/ ]{1,12}"),
    );
    let choices = (
        prop::sample::select(vec!["title", "DATE", " off "]),
        prop::sample::select(vec!["full", "Decorrelated", "EQUAL"]),
    );
    (flags, numbers, texts, choices).prop_map(
        |(flags, numbers, (library, rating, labels, path_map), (sort, jitter))| {
            let mut m = Map::new();
            for ((key, _), v) in FLAGS.iter().zip(flags) {
                m.insert((*key).into(), v);
            }
            for ((key, lo, hi, _), (at, form)) in NUMBERS.iter().zip(numbers) {
                let n = u64::from(*lo) + at.index(usize::try_from(hi - lo).unwrap_or(0) + 1) as u64;
                m.insert(
                    (*key).into(),
                    match form {
                        0 => json!(n),
                        1 => json!(n as f64),
                        2 => json!(format!(" {n} ")),
                        _ => json!(format!("{n}.0")),
                    },
                );
            }
            m.insert("plex_library".into(), json!(library));
            m.insert("content_rating".into(), json!(rating));
            m.insert("plex_labels".into(), json!(labels));
            m.insert("plex_path_map".into(), json!(path_map));
            m.insert("sync_sort_title".into(), json!(sort));
            m.insert("retry_jitter".into(), json!(jitter));
            m
        },
    )
}

fn check_settings(s: &Settings) -> Result<(), TestCaseError> {
    let mut copy = s.clone();
    for (key, lo, hi, _) in NUMBERS {
        let n = number_slot(&mut copy, key).map(|n| *n).unwrap_or(0);
        prop_assert!((lo..=hi).contains(&n), "{key} = {n} outside {lo}–{hi}");
    }
    prop_assert!(s.breaker_min_calls <= s.breaker_window);
    prop_assert!(s.breaker_open_base_secs <= s.breaker_open_max_secs);
    prop_assert!(s.probe_interval_secs <= s.probe_max_interval_secs);
    prop_assert!(s.ramp_start_rps <= s.ramp_target_rps);
    for (i, lib) in s.plex_library.iter().enumerate() {
        prop_assert!(!lib.is_empty() && lib.trim() == lib && !lib.contains(','), "{lib:?}");
        prop_assert_eq!(&lib.to_lowercase(), lib);
        prop_assert!(!s.plex_library[..i].contains(lib), "a duplicate library {lib:?}");
    }
    for label in &s.plex_labels {
        prop_assert!(!label.is_empty() && !label.contains(','));
        prop_assert_eq!(&crate::sanitize::line(label, crate::sanitize::LINE_MAX_CHARS), label);
    }
    prop_assert_eq!(&crate::sanitize::line(&s.content_rating, crate::sanitize::LINE_MAX_CHARS), &s.content_rating);
    Ok(())
}

fn check_problems(problems: &[String]) -> Result<(), TestCaseError> {
    prop_assert!(!problems.is_empty());
    let keys: Vec<String> = schema().into_iter().map(|s| s.key).collect();
    for p in problems {
        prop_assert!(keys.iter().any(|k| p.starts_with(k.as_str())), "a problem that names no setting: {p}");
        // A quoted value is clipped to 80 characters (more when escaped).
        prop_assert!(p.chars().count() <= 1000 && !p.contains('\n'), "not one short sentence: {p}");
    }
    Ok(())
}

fn round_trip(map: &Map<String, Value>, s: &Settings) -> Result<(), TestCaseError> {
    let path_map = map.get("plex_path_map").cloned().unwrap_or(Value::Null);
    let again = parse_map(&render(s, &path_map)).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    prop_assert_eq!(&again, s, "written back and read again, the settings changed");
    Ok(())
}

/// Every property of one stored map.
fn check_map(map: &Map<String, Value>) -> Result<(), TestCaseError> {
    match parse_map(map) {
        Ok(s) => {
            check_settings(&s)?;
            round_trip(map, &s)
        }
        Err(problems) => check_problems(&problems),
    }
}

proptest! {
    #![proptest_config(fuzz::config(400))]

    #[test]
    fn fuzz_policy_settings_from_any_stored_map(
        map in fuzz::mutated(fuzz::corpus_json("settings")).prop_map(|v| v.as_object().cloned().unwrap_or_default()),
    ) {
        check_map(&map)?;
    }

    #[test]
    fn fuzz_policy_settings_well_typed_values_round_trip(map in well_typed()) {
        check_map(&map)?;
    }

    #[test]
    fn fuzz_policy_settings_from_any_clean_values(
        values in prop::collection::vec(
            (
                prop_oneof![3 => prop::sample::select(schema().into_iter().map(|s| s.key).collect::<Vec<_>>()), 1 => fuzz::nasty_string()],
                prop_oneof![
                    any::<bool>().prop_map(SettingValue::Flag),
                    any::<i64>().prop_map(SettingValue::Whole),
                    fuzz::nasty_string().prop_map(SettingValue::Text),
                ],
            ),
            0..20,
        ),
    ) {
        let values: Vec<Setting> = values.into_iter().map(|(key, value)| Setting { key, value }).collect();
        match from_settings(&values) {
            Ok(s) => check_settings(&s)?,
            Err(problems) => check_problems(&problems)?,
        }
    }
}
