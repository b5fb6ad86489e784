//! Every field, true list sync, images, matching and new files, end to end:
//! the real binary against the fake Plex (value/lock/tag replace/remove,
//! uploads, `/posters`, partial scans and `/activities`).

use crate::harness::{PLEX_TOKEN, World};
use serde_json::{Value, json};
use stash2plex_testkit::fake_stash::{Performer, SceneFile, SceneSpec, Studio, Tag};
use stash2plex_testkit::{ItemSpec, SectionKind, screenshot_bytes};
use std::time::Duration;

fn configure(world: &World, extra: Value) {
    let mut settings = json!({ "plex_url": world.plex.url(), "plex_token": PLEX_TOKEN });
    if let (Some(s), Value::Object(more)) = (settings.as_object_mut(), extra) {
        s.extend(more);
    }
    world.stash.set_plugin_settings("Stash2Plex", settings);
}

fn sync(world: &World, scene_id: &str) -> String {
    let hook = world.hook("Scene.Update.Post", scene_id, &["id", "title"]);
    assert_eq!(hook.code, 0, "{}", hook.stderr);
    let task = world.task("process_queue");
    assert_eq!(task.code, 0, "{}", task.stderr);
    task.output();
    task.stderr
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn tag(id: &str, name: &str) -> Tag {
    Tag { id: id.into(), name: name.into() }
}

fn performer(id: &str, name: &str) -> Performer {
    Performer { id: id.into(), name: name.into(), ..Performer::default() }
}

/// A scene with one file at `path` and every field filled.
fn full_scene(id: &str, path: &str) -> SceneSpec {
    SceneSpec {
        title: Some("Harbor Lights — Part 1".into()),
        code: Some("NW-0042".into()),
        details: Some("First paragraph.\n\nSecond paragraph, with 50% & more.".into()),
        date: Some("2023-07".into()),
        rating100: Some(85),
        studio: Some(Studio {
            id: "2".into(),
            name: "Harbor Films".into(),
            parent: Some(Box::new(Studio { id: "1".into(), name: "Northwind".into(), parent: None })),
        }),
        performers: vec![performer("1", "Ava Stone"), performer("2", "Zoë Park")],
        tags: vec![tag("1", "Drama"), tag("2", "Sci-Fi & Fantasy"), tag("3", "drama")],
        groups: vec![stash2plex_testkit::fake_stash::SceneGroup {
            scene_index: Some(1),
            group_id: "9".into(),
            group_name: "Harbor Series".into(),
        }],
        files: vec![SceneFile::new("1", path)],
        ..SceneSpec::new(id)
    }
}

const PATH: &str = "/data/Stash/Harbor/Harbor Lights.mp4";

fn world_with_scene(extra: Value) -> (World, String) {
    let world = World::new(0);
    world.plex.add_section("1", "Stash", SectionKind::Movie, &["/data/Stash"]);
    let rk = world.plex.add_item("1", ItemSpec::new("Harbor Lights", PATH));
    world.stash.upsert_scene(full_scene("40", PATH));
    configure(&world, extra);
    (world, rk)
}

#[test]
fn every_field_reaches_plex_in_one_locked_put_and_is_verified() {
    let (world, rk) = world_with_scene(json!({
        "sync_rating": true, "content_rating": "X", "plex_labels": "Stash, Synced", "studio_with_parent": true,
    }));
    let log = sync(&world, "40");
    let item = world.plex.item(&rk).unwrap();
    assert_eq!(item.title, "Harbor Lights — Part 1");
    assert_eq!(item.title_sort.as_deref(), Some("Harbor Lights — Part 1"));
    assert_eq!(item.summary.as_deref(), Some("First paragraph.\n\nSecond paragraph, with 50% & more."));
    assert_eq!(item.tagline.as_deref(), Some("NW-0042"));
    assert_eq!(item.originally_available_at.as_deref(), Some("2023-07-01"));
    assert_eq!(item.studio.as_deref(), Some("Northwind / Harbor Films"));
    assert_eq!(item.content_rating.as_deref(), Some("X"));
    assert_eq!(item.actors, ["Ava Stone", "Zoë Park"]);
    assert_eq!(item.genres, ["Drama", "Sci-Fi & Fantasy"], "case-insensitive duplicates dropped, order kept");
    assert_eq!(item.collections, ["Harbor Films", "Harbor Series"]);
    assert_eq!(item.labels, ["Stash", "Synced"]);
    assert_eq!(item.user_rating, Some(8.5));
    for f in ["title", "titleSort", "summary", "tagline", "originallyAvailableAt", "studio", "contentRating"] {
        assert!(item.locked_fields.contains(f), "{f} locked: {:?}", item.locked_fields);
    }
    for f in ["actor", "genre", "collection", "label", "thumb", "art"] {
        assert!(item.locked_fields.contains(f), "{f} locked: {:?}", item.locked_fields);
    }
    // The poster and the background are the screenshot (a real image), each
    // uploaded once and selected.
    let sha = sha1_hex(&screenshot_bytes("40"));
    assert_eq!(item.selected_poster.as_deref(), Some(format!("upload://posters/{sha}").as_str()));
    assert_eq!(item.selected_art.as_deref(), Some(format!("upload://arts/{sha}").as_str()));
    assert_eq!(item.poster_uploads.len(), 1);
    assert_eq!(item.art_uploads.len(), 1);
    assert_eq!(world.plex.count("PUT", "/library/sections/1/all"), 1, "one edit");
    assert_eq!(world.plex.count("PUT", "/:/rate"), 1);
    assert!(log.contains("verified"), "{log}");
    assert!(log.contains("poster uploaded and verified"), "{log}");

    // A re-sync of the unchanged scene writes nothing and uploads nothing.
    world.plex.clear_requests();
    sync(&world, "40");
    let writes: Vec<_> = world.plex.requests().into_iter().filter(|r| r.method != "GET").collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[test]
fn each_setting_turns_its_field_off() {
    let cases: [(&str, Value); 12] = [
        ("title", json!({"sync_title": false})),
        ("titleSort", json!({"sync_sort_title": "off"})),
        ("summary", json!({"sync_summary": false})),
        ("tagline", json!({"sync_tagline": false})),
        ("originallyAvailableAt", json!({"sync_date": false})),
        ("studio", json!({"sync_studio": false})),
        ("actor", json!({"sync_performers": false})),
        ("genre", json!({"sync_tags": false})),
        ("collection", json!({"sync_collection": false, "sync_group_collections": false})),
        ("thumb", json!({"sync_poster": false})),
        ("art", json!({"sync_background": false})),
        ("everything", json!({"sync_master": false})),
    ];
    for (field, settings) in cases {
        let (world, rk) = world_with_scene(settings);
        sync(&world, "40");
        let item = world.plex.item(&rk).unwrap();
        let has = |f: &str| item.locked_fields.contains(f);
        match field {
            "everything" => {
                assert!(item.locked_fields.is_empty(), "{:?}", item.locked_fields);
                assert_eq!(item.title, "Harbor Lights");
            }
            "thumb" => assert!(item.poster_uploads.is_empty() && !has("thumb") && has("art")),
            "art" => assert!(item.art_uploads.is_empty() && !has("art") && has("thumb")),
            f => {
                assert!(!has(f), "{f} must be left alone: {:?}", item.locked_fields);
                assert!(has("summary") || f == "summary", "{f}: the other fields are still written");
            }
        }
        match field {
            "title" => assert_eq!(item.title, "Harbor Lights"),
            "summary" => assert_eq!(item.summary, None),
            "studio" => assert_eq!(item.studio, None),
            "actor" => assert!(item.actors.is_empty()),
            "genre" => assert!(item.genres.is_empty()),
            "collection" => assert!(item.collections.is_empty()),
            _ => {}
        }
    }
}

#[test]
fn preserve_mode_only_fills_what_plex_lacks() {
    let world = World::new(0);
    world.plex.add_section("1", "Stash", SectionKind::Movie, &["/data/Stash"]);
    let rk = world.plex.add_item(
        "1",
        ItemSpec {
            summary: Some("My own summary".into()),
            genres: vec!["Curated".into()],
            ..ItemSpec::new("My Plex Title", PATH)
        },
    );
    world.stash.upsert_scene(full_scene("40", PATH));
    configure(&world, json!({"preserve_plex_edits": true}));
    sync(&world, "40");
    let item = world.plex.item(&rk).unwrap();
    assert_eq!(item.title, "My Plex Title");
    assert_eq!(item.summary.as_deref(), Some("My own summary"));
    assert_eq!(item.genres, ["Curated"]);
    // Empty in Plex, so filled from Stash.
    assert_eq!(item.studio.as_deref(), Some("Harbor Films"));
    assert_eq!(item.actors, ["Ava Stone", "Zoë Park"]);
}

#[test]
fn removing_a_tag_and_a_performer_in_stash_removes_them_in_plex() {
    let (world, rk) = world_with_scene(json!({}));
    sync(&world, "40");
    let mut scene = world.stash.scene("40").unwrap();
    scene.tags = vec![tag("2", "Sci-Fi & Fantasy")];
    scene.performers = vec![performer("2", "Zoë Park")];
    world.stash.upsert_scene(scene);
    world.plex.clear_requests();
    sync(&world, "40");
    let item = world.plex.item(&rk).unwrap();
    assert_eq!(item.genres, ["Sci-Fi & Fantasy"]);
    assert_eq!(item.actors, ["Zoë Park"]);
    let put = world.plex.requests().into_iter().find(|r| r.method == "PUT").expect("one edit");
    assert!(put.raw_query.contains("genre%5B%5D.tag.tag-=Drama&"), "{}", put.raw_query);
    assert!(put.raw_query.contains("actor%5B%5D.tag.tag-=Ava%2520Stone&"), "{}", put.raw_query);
}

#[test]
fn a_scene_without_metadata_clears_nothing() {
    let world = World::new(0);
    world.plex.add_section("1", "Stash", SectionKind::Movie, &["/data/Stash"]);
    let rk = world.plex.add_item(
        "1",
        ItemSpec {
            summary: Some("Keep me".into()),
            studio: Some("Old Studio".into()),
            genres: vec!["Drama".into()],
            actors: vec!["Ava Stone".into()],
            ..ItemSpec::new("Harbor Lights", PATH)
        },
    );
    // Just scanned in Stash: a file and a title, nothing identified yet.
    let scene = SceneSpec {
        title: Some("Harbor Lights".into()),
        files: vec![SceneFile::new("1", PATH)],
        ..SceneSpec::new("41")
    };
    world.stash.upsert_scene(scene);
    configure(&world, json!({}));
    let log = sync(&world, "41");
    let item = world.plex.item(&rk).unwrap();
    assert_eq!(item.summary.as_deref(), Some("Keep me"));
    assert_eq!(item.studio.as_deref(), Some("Old Studio"));
    assert_eq!(item.genres, ["Drama"]);
    assert_eq!(item.actors, ["Ava Stone"]);
    assert!(log.contains("no meaningful metadata yet"), "{log}");
}

#[test]
fn two_files_with_the_same_name_in_different_folders_match_their_own_items() {
    let world = World::new(0);
    world.plex.add_section("1", "Stash", SectionKind::Movie, &["/data/Stash"]);
    let a = world.plex.add_item("1", ItemSpec::new("clip", "/data/Stash/A/clip.mp4"));
    let b = world.plex.add_item("1", ItemSpec::new("clip", "/data/Stash/B/clip.mp4"));
    for (id, folder, title) in [("1", "A", "Scene in A"), ("2", "B", "Scene in B")] {
        let scene = SceneSpec {
            title: Some(title.into()),
            details: Some(format!("In {folder}.")),
            files: vec![SceneFile::new(id, &format!("/data/Stash/{folder}/clip.mp4"))],
            ..SceneSpec::new(id)
        };
        world.stash.upsert_scene(scene);
    }
    configure(&world, json!({}));
    world.hook("Scene.Update.Post", "1", &["id", "title"]).output();
    world.hook("Scene.Update.Post", "2", &["id", "title"]).output();
    world.task("process_queue").output();
    assert_eq!(world.plex.item(&a).unwrap().title, "Scene in A");
    assert_eq!(world.plex.item(&b).unwrap().title, "Scene in B");
}

#[test]
fn a_windows_plex_server_matches_through_the_path_map() {
    let world = World::new(0);
    world.plex.add_section("3", "Stash", SectionKind::Movie, &["\\\\?\\D:\\Media\\Stash"]);
    let rk = world.plex.add_item("3", ItemSpec::new("x", "D:\\Media\\Stash\\Harbor\\Harbor Lights.MP4"));
    world.stash.upsert_scene(full_scene("40", PATH));
    configure(&world, json!({"plex_path_map": "/data/Stash=>D:\\Media\\Stash"}));
    sync(&world, "40");
    assert_eq!(world.plex.item(&rk).unwrap().title, "Harbor Lights — Part 1");
}

#[test]
fn an_episode_in_a_show_section_gets_the_episode_fields_only() {
    let world = World::new(0);
    world.plex.add_section("2", "Stash Series", SectionKind::Show, &["/data/Series"]);
    let path = "/data/Series/Harbor/S01E01.mp4";
    let rk = world.plex.add_item("2", ItemSpec::new("Episode 1", path));
    world.stash.upsert_scene(full_scene("40", path));
    configure(&world, json!({}));
    sync(&world, "40");
    let item = world.plex.item(&rk).unwrap();
    assert_eq!(item.item_type, "episode");
    assert_eq!(item.title, "Harbor Lights — Part 1");
    assert_eq!(item.summary.as_deref(), Some("First paragraph.\n\nSecond paragraph, with 50% & more."));
    // Studio, tagline, genres and actors live on the show in Plex.
    assert_eq!(item.studio, None);
    assert_eq!(item.tagline, None);
    assert!(item.genres.is_empty() && item.actors.is_empty());
    assert_eq!(item.collections, ["Harbor Films", "Harbor Series"]);
    let put = world.plex.requests().into_iter().find(|r| r.method == "PUT" && r.path.ends_with("/all")).unwrap();
    assert_eq!(put.query_param("type"), Some("4"));
}

#[test]
fn a_file_plex_scans_later_is_synced_after_one_partial_scan() {
    let world = World::new(0);
    world.plex.add_section("1", "Stash", SectionKind::Movie, &["/data/Stash"]);
    world.plex.set_scan_delay(Duration::from_millis(1500));
    world.plex.stage_item("1", ItemSpec::new("Harbor Lights", PATH));
    world.stash.upsert_scene(full_scene("40", PATH));
    configure(&world, json!({"trigger_plex_scan": true}));
    world.hook("Scene.Create.Post", "40", &[]).output();
    let mut rounds = 0;
    while world.plex.find_by_file(PATH).is_none_or(|i| i.title != "Harbor Lights — Part 1") && rounds < 10 {
        world.task("process_queue").output();
        rounds += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let item = world.plex.find_by_file(PATH).expect("scanned in");
    assert_eq!(item.title, "Harbor Lights — Part 1");
    assert_eq!(world.plex.count("GET", "/library/sections/1/refresh"), 1, "one scan, no storm");
    let scan = world.plex.requests().into_iter().find(|r| r.path.ends_with("/refresh")).unwrap();
    assert_eq!(scan.query_param("path"), Some("/data/Stash/Harbor"));
    assert!(world.plex.count("GET", "/activities") >= 1, "the scan's end was watched");
    let counts = stash2plex::store::Queue::open(&world.queue_db()).unwrap().counts(i64::MAX / 2).unwrap();
    assert_eq!((counts.ready, counts.waiting, counts.running, counts.dead), (0, 0, 0, 0), "{counts:?}");
}

#[test]
fn a_changed_image_is_uploaded_once_and_an_unchanged_one_never() {
    let (world, rk) = world_with_scene(json!({"sync_background": false}));
    sync(&world, "40");
    assert_eq!(world.plex.item(&rk).unwrap().poster_uploads.len(), 1);

    // An edit that does not change the screenshot: no upload.
    world.stash.advance_clock(Duration::from_secs(5));
    let mut scene = world.stash.scene("40").unwrap();
    scene.title = Some("Retitled".into());
    world.stash.upsert_scene(scene);
    sync(&world, "40");
    let item = world.plex.item(&rk).unwrap();
    assert_eq!(item.title, "Retitled");
    assert_eq!(item.poster_uploads.len(), 1, "same image bytes: nothing uploaded");

    // A new cover in Stash: exactly one new upload, selected.
    world.stash.advance_clock(Duration::from_secs(5));
    let cover = b"\xFF\xD8\xFF\xE0 a new cover \xFF\xD9".to_vec();
    world.stash.set_screenshot("40", cover.clone());
    sync(&world, "40");
    let item = world.plex.item(&rk).unwrap();
    assert_eq!(item.poster_uploads.len(), 2);
    assert_eq!(item.selected_poster, Some(format!("upload://posters/{}", sha1_hex(&cover))));

    // And again with nothing changed: no upload.
    sync(&world, "40");
    assert_eq!(world.plex.item(&rk).unwrap().poster_uploads.len(), 2);
}

/// The host allows a policy at most 1,000 state keys, and a library can be
/// larger: every scene syncs, and the policy's image records (kept in
/// shards, not one key per scene) hold for all of them.
#[test]
fn a_library_larger_than_the_policy_state_cap_syncs_every_scene_and_keeps_every_image_record() {
    const N: usize = 1_010;
    let world = World::new(N);
    let out = world.task("all");
    let summary = out.output();
    assert!(summary.contains("the queue is empty"), "{summary}");
    assert_eq!(world.kept_changes(), 0, "{summary}");
    let conn = rusqlite::Connection::open(world.queue_db()).expect("queue db");
    let dead: i64 = conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0)).expect("count");
    assert_eq!(dead, 0, "{summary}");
    let unsynced =
        world.scenes.iter().filter(|(_, rk)| !world.plex.item(rk).unwrap().locked_fields.contains("thumb")).count();
    assert_eq!(unsynced, 0, "every scene's poster reached Plex");

    // Every scene's image record was kept: syncing them all again asks
    // Plex about no image (a record lost past the cap would cost a look at
    // the item's posters and backgrounds each time).
    world.plex.clear_requests();
    let again = world.task("all").output();
    assert!(again.contains("the queue is empty"), "{again}");
    let image_requests =
        world.plex.requests().iter().filter(|r| r.path.ends_with("/posters") || r.path.ends_with("/arts")).count();
    assert_eq!(image_requests, 0, "{again}");
}
