//! stash2plex as a Stash plugin: every hook shape Stash sends, the drainer
//! a hook starts, and what the user sees in Stash's log. The binary runs as
//! Stash runs it; Stash and Plex are the loopback fakes.

use crate::harness::{PLEX_TOKEN, World, wait_until};
use crate::sandbox::set_settings;
use serde_json::{Value, json};
use stash2plex::store::Queue;
use stash2plex_testkit::FaultMode;
use stash2plex_testkit::fake_stash::JobSpec;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn synced(world: &World, rating_key: &str) -> bool {
    world.plex.item(rating_key).is_some_and(|i| i.locked_fields.contains("title"))
}

fn all_synced(world: &World) -> bool {
    world.scenes.iter().all(|(_, rk)| synced(world, rk))
}

/// `SceneUpdateInput` as Go serialises it: every key, nulls included.
fn scene_update_input(id: &str, title: &str) -> Value {
    json!({"clientMutationId": null, "id": id, "title": title, "code": null, "details": null, "director": null,
           "url": null, "urls": null, "date": null, "rating100": null, "o_counter": null, "organized": null,
           "studio_id": null, "gallery_ids": null, "performer_ids": null, "movies": null, "groups": null,
           "tag_ids": null, "cover_image": null, "stash_ids": null, "resume_time": null, "play_duration": null,
           "play_count": null, "primary_file_id": null})
}

#[test]
fn every_scene_hook_shape_stash_sends_is_recorded_and_synced() {
    let world = World::new(6);
    let hooks = [
        // sceneUpdate from the edit form.
        world.raw_hook("Scene.Update.Post", 1, scene_update_input("1", "One"), Some(&["id", "title"])),
        // scenesUpdate: the whole array, once per scene.
        world.raw_hook(
            "Scene.Update.Post",
            2,
            json!([scene_update_input("2", "Two"), scene_update_input("3", "Three")]),
            Some(&["id", "title"]),
        ),
        world.raw_hook(
            "Scene.Update.Post",
            3,
            json!([scene_update_input("2", "Two"), scene_update_input("3", "Three")]),
            Some(&["id", "title"]),
        ),
        // bulkSceneUpdate: the input with every id, once per scene.
        world.raw_hook(
            "Scene.Update.Post",
            4,
            json!({"ids": ["4", "5"], "tag_ids": {"ids": ["1"], "mode": "ADD"}}),
            Some(&["ids", "tag_ids"]),
        ),
        world.raw_hook(
            "Scene.Update.Post",
            5,
            json!({"ids": ["4", "5"], "tag_ids": {"ids": ["1"], "mode": "ADD"}}),
            Some(&["ids", "tag_ids"]),
        ),
        // A scan: a new file's scene, and a changed file of an existing one.
        world.raw_hook("Scene.Create.Post", 6, Value::Null, None),
        world.raw_hook("Scene.Update.Post", 6, Value::Null, None),
    ];
    for stdin in &hooks {
        let out = crate::harness::run(stdin, &[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.output().starts_with("recorded Scene."), "{}", out.stdout);
    }
    assert_eq!(world.stash.requests().len(), 0, "hooks never call Stash");
    assert_eq!(world.plex.requests().len(), 0, "nor Plex");

    // What was kept of each input: only this scene's part.
    let events = Queue::open(&world.queue_db()).unwrap().pending_events(100).unwrap();
    assert_eq!(events.len(), 7);
    let input = |i: usize| -> Value { serde_json::from_str(events[i].input.as_deref().unwrap_or("null")).unwrap() };
    assert_eq!(input(1)["id"], json!("2"), "scenesUpdate keeps its own element");
    assert_eq!(input(2)["title"], json!("Three"));
    assert_eq!(input(3)["ids"], json!(["4"]), "bulkSceneUpdate keeps its own id");
    assert_eq!(input(3)["tag_ids"]["mode"], json!("ADD"));
    assert_eq!((events[5].input.as_deref(), events[5].input_fields.len()), (None, 0), "a scan sends nothing");

    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 6 job(s)"), "{}", task.stdout);
    assert!(all_synced(&world), "every scene reached Plex");
    assert_eq!(world.kept_changes(), 0);
}

#[test]
fn a_deleted_scene_drops_its_waiting_change_and_plex_keeps_the_item() {
    let world = World::new(2);
    let (id, rk) = world.scenes[0].clone();
    crate::harness::run(
        &world.raw_hook("Scene.Update.Post", 1, scene_update_input(&id, "x"), Some(&["id", "title"])),
        &[],
    )
    .output();
    let destroy = json!({"id": id, "delete_file": null, "delete_generated": true, "checksum": "",
                         "oshash": "0123456789abcdef", "path": "/data/Stash/gone.mp4"});
    let out =
        crate::harness::run(&world.raw_hook("Scene.Destroy.Post", 1, destroy, Some(&["id", "delete_generated"])), &[]);
    assert_eq!(out.output(), "recorded Scene.Destroy.Post for 1; run the Process Queue task to sync it");
    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 0 job(s)"), "{}", task.stdout);
    assert_eq!(world.kept_changes(), 0, "the waiting change was dropped");
    assert!(world.plex.item(&rk).is_some_and(|i| i.locked_fields.is_empty()), "Plex is left as it is");
    assert_eq!(world.plex.count("PUT", "/"), 0);
    assert_eq!(world.plex.count("DELETE", "/"), 0);
}

#[test]
fn play_counts_and_other_noise_are_not_synced() {
    let world = World::new(1);
    let input = json!({"id": "1", "play_count": 4, "resume_time": 12.5});
    crate::harness::run(
        &world.raw_hook("Scene.Update.Post", 1, input, Some(&["id", "play_count", "resume_time"])),
        &[],
    )
    .output();
    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 0 job(s)"), "{}", task.stdout);
    assert_eq!(world.plex.count("PUT", "/"), 0);
    assert_eq!(world.kept_changes(), 0);
}

/// Scene ids carrying something, as the fake Stash holds them.
fn scenes_with(world: &World, has: impl Fn(&stash2plex_testkit::fake_stash::SceneSpec) -> bool) -> BTreeSet<String> {
    world.stash.scenes().into_iter().filter(|s| has(s)).map(|s| s.id).collect()
}

fn rating_key(world: &World, scene_id: &str) -> String {
    world.scenes.iter().find(|(id, _)| id == scene_id).map(|(_, rk)| rk.clone()).expect("scene exists")
}

#[test]
fn renaming_a_tag_performer_or_studio_resyncs_every_scene_that_carries_it() {
    // Enough scenes that the tag is on more than one page (250) of them.
    let world = World::new(700);
    let tagged = scenes_with(&world, |s| s.tags.iter().any(|t| t.id == "1"));
    assert!(tagged.len() > 250, "the test needs two pages: {}", tagged.len());
    world.stash.rename_tag("1", "Drama Classics");
    let out = crate::harness::run(
        &world.raw_hook("Tag.Update.Post", 1, json!({"id": "1", "name": "Drama Classics"}), Some(&["id", "name"])),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(world.stash.requests().len(), 0, "the hook does not look the scenes up");
    let task = world.task("process_queue");
    // The tag's job (once per page of its scenes) and one edit per scene.
    assert!(task.output().contains(&format!("({} edits)", tagged.len())), "{}", task.stdout);
    for id in &world.stash.scenes().iter().map(|s| s.id.clone()).collect::<Vec<_>>() {
        let item = world.plex.item(&rating_key(&world, id)).unwrap();
        assert_eq!(
            item.genres.contains(&"Drama Classics".to_string()),
            tagged.contains(id),
            "scene {id}: {:?}",
            item.genres
        );
        assert_eq!(!item.locked_fields.is_empty(), tagged.contains(id), "only the tagged scenes were written: {id}");
    }

    // A performer: Group, Studio and Tag.Merge go the same way.
    let performer = world.stash.scenes()[0].performers[0].clone();
    let carrying = scenes_with(&world, |s| s.performers.iter().any(|p| p.id == performer.id));
    world.stash.rename_performer(&performer.id, "Ava Stone-Rivera");
    let id: u64 = performer.id.parse().unwrap();
    let hook = world.raw_hook(
        "Performer.Update.Post",
        id,
        json!({"id": performer.id, "name": "Ava Stone-Rivera"}),
        Some(&["id", "name"]),
    );
    crate::harness::run(&hook, &[]).output();
    world.task("process_queue").output();
    for id in &carrying {
        let item = world.plex.item(&rating_key(&world, id)).unwrap();
        assert!(item.actors.contains(&"Ava Stone-Rivera".to_string()), "scene {id}: {:?}", item.actors);
        assert!(!item.actors.contains(&performer.name), "the old name is gone from scene {id}");
    }

    // A studio rename, then a tag merge into tag 2 (the destination's scenes).
    let studio = world.stash.scenes()[1].studio.clone().unwrap();
    let in_studio = scenes_with(&world, |s| s.studio.as_ref().is_some_and(|x| x.id == studio.id));
    world.stash.rename_studio(&studio.id, "Harbor Light Films");
    let hook = world.raw_hook(
        "Studio.Update.Post",
        studio.id.parse().unwrap(),
        json!({"id": studio.id, "name": "Harbor Light Films"}),
        Some(&["id", "name"]),
    );
    crate::harness::run(&hook, &[]).output();
    world.stash.rename_tag("2", "Comedy & Satire");
    let merge = world.raw_hook(
        "Tag.Merge.Post",
        2,
        json!({"source": ["9"], "destination": "2"}),
        Some(&["source", "destination"]),
    );
    crate::harness::run(&merge, &[]).output();
    world.task("process_queue").output();
    for id in &in_studio {
        let item = world.plex.item(&rating_key(&world, id)).unwrap();
        assert_eq!(item.studio.as_deref(), Some("Harbor Light Films"), "scene {id}");
    }
    for id in &scenes_with(&world, |s| s.tags.iter().any(|t| t.id == "2")) {
        let item = world.plex.item(&rating_key(&world, id)).unwrap();
        assert!(item.genres.contains(&"Comedy & Satire".to_string()), "scene {id}: {:?}", item.genres);
    }
    assert_eq!(world.kept_changes(), 0);
}

#[test]
fn a_bulk_edit_of_fifty_scenes_syncs_all_fifty() {
    let world = World::new(50);
    let ids: Vec<String> = world.scenes.iter().map(|(id, _)| id.clone()).collect();
    for mut scene in world.stash.scenes() {
        scene.title = Some(format!("Bulk {}", scene.id));
        world.stash.upsert_scene(scene);
    }
    let input = json!({"ids": ids, "organized": true, "title": null});
    // Stash fires the hook once per scene, each with the whole input.
    for id in &ids {
        let stdin = world.raw_hook(
            "Scene.Update.Post",
            id.parse().unwrap(),
            input.clone(),
            Some(&["ids", "organized", "title"]),
        );
        assert_eq!(crate::harness::run(&stdin, &[]).code, 0);
    }
    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 50 job(s)"), "{}", task.stdout);
    for (id, rk) in &world.scenes {
        assert_eq!(world.plex.item(rk).unwrap().title, format!("Bulk {id}"));
    }
}

#[test]
fn thirty_two_hooks_at_once_lose_nothing_and_start_one_drainer() {
    let world = World::new(32);
    let stdins: Vec<String> = world
        .scenes
        .iter()
        .map(|(id, _)| {
            world.raw_hook(
                "Scene.Update.Post",
                id.parse().unwrap(),
                scene_update_input(id, "t"),
                Some(&["id", "title"]),
            )
        })
        .collect();
    let seen = std::sync::Mutex::new(BTreeSet::new());
    std::thread::scope(|s| {
        let handles: Vec<_> = stdins.iter().map(|stdin| s.spawn(|| world.hook_autodrain(stdin))).collect();
        for h in handles {
            let out = h.join().unwrap();
            assert_eq!(out.code, 0, "{}", out.stderr);
            assert!(out.output().starts_with("recorded Scene.Update.Post"), "{}", out.stdout);
        }
        assert!(
            wait_until(Duration::from_secs(90), || {
                seen.lock().unwrap().extend(world.drainers());
                all_synced(&world)
            }),
            "not every change reached Plex:\n{}",
            world.drainer_log()
        );
    });
    assert!(world.wait_for_drainers(Duration::from_secs(30)), "the drainer ends once the queue is empty");
    // A hook that arrives after the drainer took its lock (and gave up the
    // start claim) may start another one; it finds the lock held and ends
    // at once without touching the queue. What must hold: one drain at a
    // time, so every item is written once.
    let log = world.drainer_log();
    assert!(seen.lock().unwrap().len() <= 2, "drainers: {:?}\n{log}", seen.lock().unwrap());
    for (_, rk) in &world.scenes {
        let edits_of = |r: &stash2plex_testkit::RecordedRequest| {
            r.method == "PUT"
                && r.path.ends_with("/all")
                && r.query.iter().any(|(k, v)| k == "id" && v.split(',').any(|id| id == rk))
        };
        let puts = world.plex.requests().iter().filter(|r| edits_of(r)).count();
        assert_eq!(puts, 1, "item {rk} was written once");
    }
    assert_eq!(world.kept_changes(), 0);
}

#[test]
fn sixteen_hooks_at_once_on_a_fresh_install_record_everything_and_compile_nothing() {
    let world = World::new(16);
    let stdins: Vec<String> = world
        .scenes
        .iter()
        .map(|(id, _)| world.raw_hook("Scene.Create.Post", id.parse().unwrap(), Value::Null, None))
        .collect();
    let started = Instant::now();
    let mut took = std::thread::scope(|s| {
        let handles: Vec<_> = stdins
            .iter()
            .map(|stdin| {
                s.spawn(move || {
                    let t = Instant::now();
                    let out = crate::harness::run(stdin, &[]);
                    (out, t.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (out, t) = h.join().unwrap();
                assert_eq!(out.code, 0, "{}", out.stderr);
                t
            })
            .collect::<Vec<_>>()
    });
    took.sort();
    eprintln!(
        "[hooks] 16 at once on a fresh install: median {:?}, slowest {:?}, all in {:?} (the bench measures this)",
        took[8],
        took[15],
        started.elapsed()
    );
    assert_eq!(world.kept_changes(), 16, "every change is recorded");
    let cache = world.data_dir().join("cache");
    let compiled = std::fs::read_dir(&cache).into_iter().flatten().flatten().count();
    assert_eq!(compiled, 0, "no hook compiled or even loaded the policy");
    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 16 job(s)"), "{}", task.stdout);
}

#[test]
fn a_wrong_token_is_told_in_stashs_log_and_fixing_it_in_the_settings_syncs_within_seconds() {
    let world = World::new(3);
    set_settings(&world, json!({ "plex_token": "wrong-token-000000" }));
    let hook = |i: usize| {
        let (id, _) = &world.scenes[i];
        world.hook_autodrain(&world.raw_hook(
            "Scene.Update.Post",
            id.parse().unwrap(),
            scene_update_input(id, "t"),
            Some(&["id", "title"]),
        ))
    };
    assert_eq!(hook(0).code, 0);
    // The drainer finds out; the next hooks say it in Stash's log, once.
    let mut told = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let out = hook(1);
            told = out.stderr.lines().find(|l| l.contains("Plex rejects the token")).unwrap_or("").to_string();
            !told.is_empty()
        }),
        "Stash's log never said the token is wrong:\n{}",
        world.drainer_log()
    );
    assert!(told.starts_with("\u{1}w\u{2}"), "a warning: {told:?}");
    assert!(told.contains("plex_token"), "it says what to fix: {told}");
    assert!(!hook(2).stderr.contains("Plex rejects the token"), "said once, not on every save");
    assert!(!world.drainers().is_empty(), "the drainer waits for the fix");
    assert_eq!(world.plex.count("PUT", "/"), 0);

    set_settings(&world, json!({ "plex_token": PLEX_TOKEN }));
    let fixed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || all_synced(&world)),
        "not synced within 30 s of the fix:\n{}",
        world.drainer_log()
    );
    eprintln!("[token] synced {:?} after the fix", fixed.elapsed());
    assert!(world.wait_for_drainers(Duration::from_secs(30)));
    let out = hook(0);
    assert!(out.stderr.contains("Syncing to Plex works again"), "the end of the problem is told: {}", out.stderr);
    assert!(world.wait_for_drainers(Duration::from_secs(30)));
}

#[test]
fn stash_stopping_mid_drain_uses_no_attempt_ends_the_drainer_and_syncs_after_it_is_back() {
    let world = World::new(12);
    world.plex.faults().set(FaultMode::Delay(Duration::from_millis(400)));
    for (id, _) in &world.scenes {
        let stdin = world.raw_hook(
            "Scene.Update.Post",
            id.parse().unwrap(),
            scene_update_input(id, "t"),
            Some(&["id", "title"]),
        );
        assert_eq!(world.hook_autodrain(&stdin).code, 0);
    }
    assert!(wait_until(Duration::from_secs(30), || world.scenes.iter().any(|(_, rk)| synced(&world, rk))));
    world.stash.set_down(true);
    let stopped = Instant::now();
    world.plex.faults().set(FaultMode::Up);
    assert!(!all_synced(&world), "the drain was in the middle");
    assert!(world.wait_for_drainers(Duration::from_secs(120)), "the drainer outlived Stash by two minutes");
    eprintln!("[stash gone] the drainer ended {:?} after Stash stopped", stopped.elapsed());
    let q = Queue::open(&world.queue_db()).unwrap();
    let jobs = q.jobs(100, i64::MAX / 2).unwrap();
    assert!(!jobs.is_empty());
    assert!(jobs.iter().all(|j| j.attempt == 0), "Stash being away used no attempt: {jobs:?}");
    assert_eq!(q.counts(0).unwrap().dead, 0);
    assert!(world.drainer_log().contains("Stash could not be reached for a minute"), "{}", world.drainer_log());

    world.stash.set_down(false);
    let (id, _) = &world.scenes[0];
    let stdin =
        world.raw_hook("Scene.Update.Post", id.parse().unwrap(), scene_update_input(id, "t"), Some(&["id", "title"]));
    assert_eq!(world.hook_autodrain(&stdin).code, 0);
    assert!(wait_until(Duration::from_secs(60), || all_synced(&world)), "{}", world.drainer_log());
    assert!(world.wait_for_drainers(Duration::from_secs(30)));
}

#[test]
fn while_stash_scans_changes_are_recorded_and_syncing_waits() {
    let world = World::new(2);
    world.stash.set_jobs(vec![JobSpec {
        id: "7".into(),
        status: "RUNNING".into(),
        description: "Scanning...".into(),
        progress: Some(0.3),
    }]);
    let (id, rk) = world.scenes[0].clone();
    let stdin =
        world.raw_hook("Scene.Update.Post", id.parse().unwrap(), scene_update_input(&id, "t"), Some(&["id", "title"]));
    assert_eq!(world.hook_autodrain(&stdin).code, 0);
    assert!(
        wait_until(Duration::from_secs(20), || world.drainer_log().contains("Stash is busy (Scanning...)")),
        "{}",
        world.drainer_log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!synced(&world, &rk), "nothing syncs during the scan");
    assert_eq!(world.plex.count("PUT", "/"), 0);
    world.stash.set_jobs(Vec::new());
    assert!(wait_until(Duration::from_secs(30), || synced(&world, &rk)), "{}", world.drainer_log());
    assert!(world.wait_for_drainers(Duration::from_secs(30)));
}
