//! Fuzz target: the policy's readers of Plex JSON (`plex_json`: sections,
//! listing pages, items, posters/arts, activities), seeded from
//! `tests/fuzz/corpus/plex_json/`. (The host reads no Plex JSON: it
//! passes status, headers and body to the policy.)
//!
//! Properties: never a panic; leniency as documented — any JSON object
//! with a `MediaContainer` object reads, whatever is inside, and only
//! text that is not JSON or has no `MediaContainer` is a (short, typed)
//! error (text whose only flaw is bad UTF-8 in a field nobody reads is
//! read too); what is read keeps its promises (non-empty keys, no more items
//! than Plex listed); and an item of any field values, in any of the
//! forms Plex writes them (numbers as text, `locked` as `1`/`"1"`/`true`,
//! a single object for a list), reads back exactly.

use super::*;
use proptest::prelude::*;
use serde_json::json;
use stash2plex_testkit::fuzz;

/// What every reader returns, as text, for one body.
fn read_every_way(body: &[u8]) -> Vec<Result<String, PlexJsonError>> {
    vec![
        parse_sections(body).map(|s| {
            assert!(s.iter().all(|s| !s.key.is_empty()), "a section without a key: {s:?}");
            format!("{s:?}")
        }),
        parse_listing(body).map(|p| {
            assert!(p.items.iter().all(|i| !i.rating_key.is_empty()), "an item without a key: {p:?}");
            format!("{p:?}")
        }),
        parse_items(body).map(|items| {
            assert!(items.iter().all(|i| !i.rating_key.is_empty()), "an item without a key: {items:?}");
            format!("{items:?}")
        }),
        parse_item(body).map(|i| format!("{i:?}")),
        parse_images(body).map(|i| format!("{i:?}")),
        parse_activities(body).map(|a| format!("{a:?}")),
    ]
}

/// How many `Metadata` entries the container lists (an object is one).
fn listed(body: &[u8]) -> usize {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("MediaContainer")?.get("Metadata").cloned()) {
        Some(Value::Array(items)) => items.len(),
        Some(Value::Object(_)) => 1,
        _ => 0,
    }
}

// ---- items of any values ---------------------------------------------------

#[derive(Debug, Clone)]
struct Item {
    rating_key: u64,
    key_as_number: bool,
    title: Option<String>,
    summary: Option<String>,
    user_rating: Option<f64>,
    rating_as_text: bool,
    section: Option<(u64, bool)>,
    files: Vec<Vec<String>>,
    genres: Vec<String>,
    /// (field name, how `locked` is written, locked?)
    fields: Vec<(String, u8, bool)>,
}

fn items() -> impl Strategy<Value = Item> {
    (
        (any::<u64>(), any::<bool>(), prop::option::of(fuzz::nasty_string()), prop::option::of(fuzz::nasty_string())),
        (prop::option::of(-1e6f64..1e6), any::<bool>(), prop::option::of((any::<u64>(), any::<bool>()))),
        prop::collection::vec(prop::collection::vec(fuzz::nasty_string(), 0..3), 0..3),
        prop::collection::vec(fuzz::nasty_string(), 0..4),
        prop::collection::vec(("[a-zA-Z]{1,12}", 0u8..5, any::<bool>()), 0..4),
    )
        .prop_map(
            |(
                (rating_key, key_as_number, title, summary),
                (user_rating, rating_as_text, section),
                files,
                genres,
                fields,
            )| Item {
                rating_key,
                key_as_number,
                title,
                summary,
                user_rating,
                rating_as_text,
                section,
                files,
                genres,
                fields,
            },
        )
}

fn render(item: &Item) -> Value {
    let media: Vec<Value> = item
        .files
        .iter()
        .map(|parts| json!({"id": 1, "Part": parts.iter().map(|f| json!({"id": 2, "file": f})).collect::<Vec<_>>()}))
        .collect();
    let fields: Vec<Value> = item
        .fields
        .iter()
        .map(|(name, form, locked)| match form {
            0 => json!({"name": name, "locked": locked}),
            1 => json!({"name": name, "locked": if *locked { 1 } else { 0 }}),
            2 => json!({"name": name, "locked": if *locked { "1" } else { "0" }}),
            3 => json!({"name": name, "locked": if *locked { "true" } else { "false" }}),
            // No `locked`: Plex lists only locked fields.
            _ => json!({"name": name}),
        })
        .collect();
    let mut m = json!({
        "ratingKey": if item.key_as_number { json!(item.rating_key) } else { json!(item.rating_key.to_string()) },
        "type": "movie",
        "Media": media,
        "Genre": item.genres.iter().map(|g| json!({"id": 3, "filter": "genre=3", "tag": g})).collect::<Vec<_>>(),
        "Field": fields,
    });
    if let Some(t) = &item.title {
        m["title"] = json!(t);
    }
    if let Some(s) = &item.summary {
        m["summary"] = json!(s);
    }
    if let Some(r) = item.user_rating {
        m["userRating"] = if item.rating_as_text { json!(r.to_string()) } else { json!(r) };
    }
    if let Some((sid, as_text)) = item.section {
        m["librarySectionID"] = if as_text { json!(sid.to_string()) } else { json!(sid) };
    }
    m
}

proptest! {
    #![proptest_config(fuzz::config(600))]

    #[test]
    fn fuzz_plex_json_reads_every_container_and_refuses_only_non_plex_text(
        body in fuzz::input_bytes(fuzz::corpus_json("plex_json")),
    ) {
        let value = serde_json::from_slice::<Value>(&body);
        let container = value.as_ref().ok().and_then(|v| v.get("MediaContainer"));
        let lossy = serde_json::from_str::<Value>(&String::from_utf8_lossy(&body)).ok();
        let lossy_container = lossy.as_ref().and_then(|v| v.as_object()?.get("MediaContainer"));
        for read in read_every_way(&body) {
            if read.is_ok() {
                prop_assert!(lossy_container.is_some_and(Value::is_object), "read without a MediaContainer object");
            }
            match (&read, container) {
                (Ok(_), _) => {}
                (Err(e), Some(Value::Object(_))) if value.as_ref().is_ok_and(Value::is_object) => {
                    prop_assert!(false, "a MediaContainer object was refused: {e}");
                }
                (Err(e), _) => {
                    prop_assert!(e.to_string().starts_with("malformed Plex JSON: "), "{e}");
                    prop_assert!(e.to_string().chars().count() <= 240, "a long error: {e}");
                }
            }
            if let (Ok(_), Err(_)) = (&read, &value) {
                // serde skips the strings of unknown fields without checking
                // their UTF-8; anything else read must be JSON.
                let lossy = String::from_utf8_lossy(&body);
                prop_assert!(serde_json::from_str::<Value>(&lossy).is_ok(), "text that is not JSON was read");
            }
        }
        if let Ok(page) = parse_listing(&body) {
            prop_assert!(page.items.len() <= listed(&body));
        }
    }

    #[test]
    fn fuzz_plex_json_an_item_of_any_values_reads_back_exactly(
        list in prop::collection::vec(items(), 0..4),
        container_section in prop::option::of(any::<u64>()),
        single in any::<bool>(),
    ) {
        let metadata: Vec<Value> = list.iter().map(render).collect();
        let mut container = json!({"size": list.len(), "Metadata": metadata});
        if single && list.len() == 1 {
            container["Metadata"] = metadata_single(&container);
        }
        if let Some(sid) = container_section {
            container["librarySectionID"] = json!(sid);
        }
        let body = serde_json::to_vec(&json!({"MediaContainer": container})).unwrap_or_default();
        let got = parse_items(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), list.len());
        for (item, read) in list.iter().zip(&got) {
            prop_assert_eq!(&read.rating_key, &item.rating_key.to_string());
            prop_assert_eq!(&read.title, &item.title);
            prop_assert_eq!(&read.summary, &item.summary);
            let rating = item.user_rating.map(|r| if item.rating_as_text { r.to_string().parse().unwrap_or(f64::NAN) } else { r });
            prop_assert_eq!(read.user_rating.is_some(), rating.is_some());
            if let (Some(r), Some(want)) = (read.user_rating, rating) {
                prop_assert!(fuzz::close(r, want), "{r} vs {want}");
            }
            prop_assert_eq!(read.library_section_id, item.section.map(|(s, _)| s).or(container_section));
            let files: Vec<String> = item.files.iter().flatten().cloned().collect();
            prop_assert_eq!(&read.files, &files);
            prop_assert_eq!(&read.genres, &item.genres);
            let locked: std::collections::BTreeSet<String> =
                item.fields.iter().filter(|(_, form, locked)| *locked || *form == 4).map(|(n, ..)| n.clone()).collect();
            prop_assert_eq!(&read.locked, &locked);
        }
        let listing = parse_listing(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let keys: Vec<String> = list.iter().map(|i| i.rating_key.to_string()).collect();
        prop_assert_eq!(listing.items.iter().map(|i| i.rating_key.clone()).collect::<Vec<_>>(), keys);
    }

    #[test]
    fn fuzz_plex_json_sections_of_any_values_read_back_exactly(
        sections in prop::collection::vec(("[0-9]{1,6}", fuzz::nasty_string(), fuzz::nasty_string(), prop::collection::vec(fuzz::nasty_string(), 0..3)), 0..4),
    ) {
        let dirs: Vec<Value> = sections.iter().map(|(key, kind, title, locations)| json!({
            "key": key, "type": kind, "title": title, "refreshing": false, "hidden": 0,
            "Location": locations.iter().enumerate().map(|(i, p)| json!({"id": i, "path": p})).collect::<Vec<_>>(),
        })).collect();
        let body = serde_json::to_vec(&json!({"MediaContainer": {"size": dirs.len(), "Directory": dirs}})).unwrap_or_default();
        let got = parse_sections(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want: Vec<SectionInfo> = sections.into_iter().map(|(key, kind, title, locations)| SectionInfo { key, kind, title, locations }).collect();
        prop_assert_eq!(got, want);
    }
}

/// The one entry of a `Metadata` list written as an object, as PMS does
/// for some answers.
fn metadata_single(container: &Value) -> Value {
    container["Metadata"].as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null)
}

#[test]
fn fuzz_plex_json_corpus_seeds_all_read() {
    for (i, seed) in fuzz::corpus("plex_json").iter().enumerate() {
        assert!(read_every_way(seed).iter().all(Result::is_ok), "seed {i}");
    }
}
