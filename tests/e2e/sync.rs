//! A scene edit in Stash reaches Plex: hook → queue → Process Queue → Plex.

use crate::harness::{World, wait_until};
use serde_json::json;
use stash2plex::store::{Queue, QueueCounts as Counts};
use stash2plex_testkit::fake_stash::StashAuth;
use stash2plex_testkit::{FaultMode, ItemSpec, SectionKind};
use std::time::Duration;

fn counts(world: &World) -> Counts {
    Queue::open(&world.queue_db()).expect("queue opens").counts(i64::MAX / 2).expect("counts")
}

fn due_now(world: &World) -> Counts {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    Queue::open(&world.queue_db()).expect("queue opens").counts(now).expect("counts")
}

#[test]
fn a_scene_edit_reaches_plex_with_locks_and_the_queue_drains() {
    let world = World::new(3);
    let (scene_id, rk) = world.scenes[1].clone();
    let scene = world.stash.scene(&scene_id).expect("scene exists");

    let hook = world.hook("Scene.Update.Post", &scene_id, &["id", "title", "details"]);
    assert_eq!(hook.code, 0, "{}", hook.stderr);
    assert!(hook.output().contains(&format!("Scene.Update.Post for {scene_id}")), "{}", hook.stdout);
    assert_eq!(world.plex.requests().len(), 0, "a hook must never talk to Plex");
    assert_eq!(world.stash.requests().len(), 0, "nor to Stash");
    assert_eq!(world.kept_changes(), 1);

    let task = world.task("process_queue");
    assert_eq!(task.code, 0, "{}", task.stderr);
    let summary = task.output();
    assert!(summary.contains("Processed 1 job"), "{summary}");

    let item = world.plex.item(&rk).expect("item still there");
    assert_eq!(Some(item.title.as_str()), scene.title.as_deref());
    assert_eq!(item.summary, scene.details);
    assert_eq!(item.studio.as_deref(), scene.studio.as_ref().map(|s| s.name.as_str()));
    let date = scene.date.clone().expect("demo scenes have dates");
    let expected_date = match date.len() {
        4 => format!("{date}-01-01"),
        7 => format!("{date}-01"),
        _ => date,
    };
    assert_eq!(item.originally_available_at.as_deref(), Some(expected_date.as_str()));
    for field in ["title", "summary", "studio", "originallyAvailableAt"] {
        assert!(item.locked_fields.contains(field), "{field} must be locked: {:?}", item.locked_fields);
    }
    // Exactly one edit, on the right item, with type and id.
    let puts: Vec<_> = world.plex.requests().into_iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0].path, "/library/sections/1/all");
    assert_eq!(puts[0].query_param("id"), Some(rk.as_str()));
    assert_eq!(puts[0].query_param("type"), Some("1"));
    // Every Plex request carried the token as a header, never in the URL.
    for r in world.plex.requests() {
        assert_eq!(r.header("x-plex-token"), Some(crate::harness::PLEX_TOKEN));
        assert!(!r.raw_query.contains(crate::harness::PLEX_TOKEN));
    }
    // The other scenes were not touched.
    let (_, other_rk) = &world.scenes[0];
    assert!(world.plex.item(other_rk).unwrap().locked_fields.is_empty());

    let c = counts(&world);
    assert_eq!((c.ready, c.waiting, c.running, c.dead), (0, 0, 0, 0), "queue must be empty: {c:?}");
    assert!(!task.stderr.contains(crate::harness::PLEX_TOKEN), "the token must never be logged");
    assert!(!task.stderr.contains(crate::harness::COOKIE), "the cookie must never be logged");
}

#[test]
fn an_unchanged_scene_causes_no_write() {
    let world = World::new(2);
    let (scene_id, rk) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    world.task("process_queue").output();
    let synced = world.plex.item(&rk).unwrap();
    world.plex.clear_requests();

    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 1 job"), "{}", task.stdout);
    assert_eq!(world.plex.count("PUT", "/"), 0, "nothing changed, nothing written: {:?}", world.plex.requests());
    assert!(world.plex.count("GET", &format!("/library/metadata/{rk}")) >= 1, "the item was read to compare");
    assert_eq!(world.plex.item(&rk).unwrap().updated_at, synced.updated_at);
    assert_eq!(counts(&world), Counts::default());
}

#[test]
fn a_later_edit_in_stash_is_written_again() {
    let world = World::new(2);
    let (scene_id, rk) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    world.task("process_queue").output();

    let mut scene = world.stash.scene(&scene_id).unwrap();
    scene.title = Some("A New Title, edited in Stash".into());
    scene.details = None;
    world.stash.upsert_scene(scene);
    world.hook("Scene.Update.Post", &scene_id, &["id", "title", "details"]).output();
    world.task("process_queue").output();

    let item = world.plex.item(&rk).unwrap();
    assert_eq!(item.title, "A New Title, edited in Stash");
    assert_eq!(item.summary, None, "an empty Stash summary clears Plex's");
    assert!(item.locked_fields.contains("summary"));
}

#[test]
fn the_section_is_the_longest_matching_library_folder() {
    let world = World::new(1);
    // A second library whose folder is a deeper prefix of a new scene's path.
    world.plex.add_section("7", "Stash Extras", SectionKind::Movie, &["/data/Stash/Extras"]);
    let rk = world.plex.add_item("7", ItemSpec::new("clip", "/data/Stash/Extras/clip.mp4"));
    let mut scene = stash2plex_testkit::fake_stash::SceneSpec::new("50");
    scene.title = Some("The Extra Clip".into());
    scene.files = vec![stash2plex_testkit::fake_stash::SceneFile::new("900", "/data/Stash/Extras/clip.mp4")];
    world.stash.upsert_scene(scene);

    world.hook("Scene.Update.Post", "50", &["id", "title"]).output();
    world.task("process_queue").output();
    assert_eq!(world.plex.item(&rk).unwrap().title, "The Extra Clip");
    assert_eq!(world.plex.count("GET", "/library/sections/1/all"), 0, "the shallower library is not searched");
    let put = world.plex.requests().into_iter().find(|r| r.method == "PUT").expect("one edit");
    assert_eq!(put.path, "/library/sections/7/all");
}

#[test]
fn a_scene_plex_has_not_scanned_yet_waits_without_blocking_others() {
    let world = World::new(2);
    let mut scene = stash2plex_testkit::fake_stash::SceneSpec::new("77");
    scene.title = Some("Not scanned yet".into());
    scene.files = vec![stash2plex_testkit::fake_stash::SceneFile::new("901", "/data/Stash/New/fresh.mp4")];
    world.stash.upsert_scene(scene);
    let (other_id, other_rk) = world.scenes[0].clone();

    world.hook("Scene.Create.Post", "77", &[]).output();
    world.hook("Scene.Update.Post", &other_id, &["id", "title"]).output();
    let task = world.task("process_queue");
    let summary = task.output();
    assert!(summary.contains("waiting"), "{summary}");
    // The other scene synced although scene 77's job came first.
    assert!(world.plex.item(&other_rk).unwrap().locked_fields.contains("title"));
    let c = due_now(&world);
    assert_eq!((c.ready, c.waiting, c.dead), (0, 1, 0), "scene 77 waits to retry, not dead: {c:?}");
    assert!(c.next_due_ms.is_some());
}

#[test]
fn plex_down_keeps_the_change_for_later() {
    let world = World::new(1);
    let (scene_id, rk) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    world.plex.faults().set(FaultMode::Refuse);
    let task = world.task("process_queue");
    assert_eq!(task.code, 0, "an outage is not an error of the task: {}", task.stdout);
    // The job is kept for a probe a few seconds on; on a loaded machine that
    // time may already have come by now, so "kept" is ready or waiting.
    let c = due_now(&world);
    assert_eq!((c.ready + c.waiting, c.running, c.dead), (1, 0, 0), "the change waits for Plex: {c:?}");
    assert!(world.plex.item(&rk).unwrap().locked_fields.is_empty(), "nothing reached Plex");
    world.plex.faults().set(FaultMode::Up);
    // The breaker probes Plex once the job's time has come.
    assert!(wait_until(Duration::from_secs(10), || due_now(&world).ready == 1), "the probe comes due within seconds");
    let task = world.task("process_queue");
    assert_eq!(task.code, 0, "{}", task.stdout);
    assert!(
        world.plex.item(&rk).unwrap().locked_fields.contains("title"),
        "the kept change is written once Plex is back: {}",
        task.stdout
    );
    assert_eq!(world.kept_changes(), 0, "and the queue is empty");
}

#[test]
fn stash_api_key_auth_works_and_bad_credentials_are_explained() {
    let world = World::with_auth(1, StashAuth::ApiKey("stash-api-key-123".into()));
    // Stash never sends an ApiKey on stdin; without one this Stash refuses us.
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    let task = world.task("process_queue");
    assert_ne!(task.code, 0);
    let err = task.error();
    assert!(err.contains("Stash refused the plugin's credentials"), "{err}");
    assert_eq!(world.kept_changes(), 1, "the recorded change is kept");

    let mut conn = world.connection();
    conn["ApiKey"] = json!("stash-api-key-123");
    let stdin = json!({"server_connection": conn, "args": {"mode": "process_queue"}});
    let ok = crate::harness::run(&stdin.to_string(), &[]);
    assert!(ok.output().contains("Processed 1 job"), "{}", ok.stdout);
    assert!(!ok.stderr.contains("stash-api-key-123"));
}

#[test]
fn missing_plex_settings_are_a_clear_error_and_lose_nothing() {
    let world = World::new(1);
    world.stash.set_plugin_settings("Stash2Plex", json!({ "plex_url": "plex.local:32400" }));
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    let task = world.task("process_queue");
    assert_eq!(task.code, 1);
    let err = task.error();
    assert!(err.contains("plex_url must start with http"), "{err}");
    assert!(err.contains("plex_token is not set"), "{err}");
    assert_eq!(world.plex.requests().len(), 0);
    assert_eq!(world.kept_changes(), 1);
}

#[test]
fn a_hook_starts_a_background_drainer_that_syncs_without_a_button() {
    let world = World::new(3);
    let (scene_id, rk) = world.scenes[2].clone();
    let input = json!({
        "server_connection": world.connection(),
        "args": {"hookContext": {"id": scene_id.parse::<u64>().unwrap(), "type": "Scene.Update.Post",
                 "input": {"id": scene_id}, "inputFields": ["id", "title"]}},
    });
    let hook = crate::harness::run_with_env(&input.to_string(), &[], None, &[("STASH2PLEX_AUTODRAIN", "1")]);
    assert_eq!(hook.code, 0, "{}", hook.stderr);
    // The hook returned before the drain: it never waits for Plex.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !world.plex.item(&rk).unwrap().locked_fields.contains("title") {
        assert!(std::time::Instant::now() < deadline, "the background drainer did not sync the scene");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // It ends on its own once the queue is empty (the lock is released).
    while stash2plex::drain::lock::try_lock(&world.data_dir()).unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the background drainer did not exit");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(counts(&world), Counts::default());
    let log = std::fs::read_to_string(world.data_dir().join("drainer.log")).unwrap();
    assert!(log.contains("Processed 1 job"), "the drainer logs to its own file: {log}");
    assert!(!log.contains(crate::harness::PLEX_TOKEN));
}

#[test]
fn a_bad_token_pauses_without_using_up_retries_and_says_so() {
    let world = World::new(2);
    world.stash.set_plugin_settings(
        "Stash2Plex",
        json!({ "plex_url": world.plex.url(), "plex_token": "wrong-token-0000000" }),
    );
    for (id, _) in &world.scenes {
        world.hook("Scene.Update.Post", id, &["id", "title"]).output();
    }
    let task = world.task("process_queue");
    assert_eq!(task.code, 0, "a rejected token is a pause, not a crash: {}", task.stdout);
    let said: Vec<&str> =
        task.stderr.lines().filter(|l| l.starts_with("\u{1}e\u{2}") && l.contains("Plex rejected the token")).collect();
    assert_eq!(said.len(), 1, "one plain message, at error level: {}", task.stderr);
    assert!(
        said[0].contains("Check plex_token in the plugin settings") && said[0].contains("nothing is lost"),
        "{}",
        said[0]
    );
    assert!(!task.stderr.contains("wrong-token-0000000"), "the token is never logged");
    let puts = world.plex.count("PUT", "/");
    assert_eq!(puts, 0);
    let q = Queue::open(&world.queue_db()).unwrap();
    let pending = q.jobs(10, 0).unwrap();
    assert_eq!(pending.len(), 2, "both changes wait");
    assert!(pending.iter().all(|p| p.attempt == 0), "no retries were used: {pending:?}");
    assert_eq!(q.counts(0).unwrap().dead, 0);
    drop(q);

    // The user fixes the token: the next drain checks it at once and syncs.
    world.stash.set_plugin_settings(
        "Stash2Plex",
        json!({ "plex_url": world.plex.url(), "plex_token": crate::harness::PLEX_TOKEN }),
    );
    let task = world.task("process_queue");
    assert!(task.output().contains("the queue is empty"), "{}\n{}", task.stdout, task.stderr);
    assert!(task.stderr.contains("Plex accepts the token again"), "{}", task.stderr);
    for (_, rk) in &world.scenes {
        assert!(world.plex.item(rk).unwrap().locked_fields.contains("title"), "{}\n{}", task.stdout, task.stderr);
    }
}

#[test]
fn a_long_drain_keeps_the_refreshed_stash_session() {
    // Stash refuses a session cookie after a while and refreshes it on every
    // request; here each cookie is good for 3 requests, and the drain makes 7.
    let world = World::new(6);
    world.stash.set_session_lifetime(3);
    let task = record_all_and_drain(&world);
    assert!(!task.stderr.contains("fresh-session-"), "refreshed cookies are never logged");
}

#[test]
fn an_older_stash_without_scene_groups_still_syncs() {
    let world = World::new(2);
    world.stash.set_version("v0.26.2");
    record_all_and_drain(&world);
    // It asked once with groups, then without for the rest of the drain.
    let with_groups = world.stash.graphql_count("groups");
    assert_eq!(with_groups, 1, "the fallback is remembered");
}

/// A hook for every scene, one Process Queue, and every scene synced.
fn record_all_and_drain(world: &World) -> crate::harness::Outcome {
    for (id, _) in &world.scenes {
        world.hook("Scene.Update.Post", id, &["id", "title"]).output();
    }
    let task = world.task("process_queue");
    assert!(task.output().contains("the queue is empty"), "{}\n{}", task.stdout, task.stderr);
    for (_, rk) in &world.scenes {
        assert!(world.plex.item(rk).unwrap().locked_fields.contains("title"));
    }
    task
}
