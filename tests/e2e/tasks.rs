//! The Stash tasks a user presses: Sync All, Sync Recent, Clear Pending
//! Queue, and what each says in Stash's log.

use crate::harness::{World, run};
use crate::sandbox::set_settings;
use serde_json::json;
use stash2plex::store::Queue;
use stash2plex_testkit::FaultMode;
use stash2plex_testkit::fake_stash::StashAuth;
use std::time::Duration;

fn task_with(world: &World, args: serde_json::Value) -> crate::harness::Outcome {
    run(&json!({ "server_connection": world.connection(), "args": args }).to_string(), &[])
}

/// The progress values (`\x01p\x02<f>`) a run wrote on stderr.
fn progress(stderr: &str) -> Vec<f64> {
    stderr.lines().filter_map(|l| l.strip_prefix("\u{1}p\u{2}")).filter_map(|v| v.trim().parse().ok()).collect()
}

#[test]
fn sync_all_reads_the_scenes_a_page_at_a_time_coalesces_and_syncs_them() {
    let world = World::new(260);
    // One change already waits for Plex.
    world.hook("Scene.Update.Post", "7", &["id", "title"]).output();
    world.plex.faults().set(FaultMode::Refuse);
    world.task("process_queue").output();
    world.plex.faults().set(FaultMode::Up);
    assert_eq!(world.kept_changes(), 1);

    world.stash.clear_requests();
    let out = world.task("all");
    let summary = out.output();
    assert!(summary.starts_with("Queued 260 scene(s) (259 new, the rest already waiting)"), "{summary}");
    assert!(summary.contains("Processed 260 job(s)"), "synced in the task (no background drainers here): {summary}");
    let pages = world.stash.graphql_count("query SceneIds");
    assert_eq!(pages, 2, "two pages of at most 250 ids, not the library at once");
    assert!(world.scenes.iter().all(|(_, rk)| world.plex.item(rk).unwrap().locked_fields.contains("title")));
    let p = progress(&out.stderr);
    assert!(p.len() >= 3 && p.windows(2).all(|w| w[0] <= w[1]), "progress only goes up: {p:?}");
    assert_eq!(p.last(), Some(&1.0));
    assert!(out.stderr.contains("\u{1}i\u{2}Queued 260 scene(s)"), "the report is in Stash's log");
    assert_eq!(world.kept_changes(), 0);

    // Again: every scene is queued once more and costs no write.
    world.plex.clear_requests();
    let again = world.task("all").output();
    assert!(again.contains("Queued 260 scene(s) (260 new"), "{again}");
    assert_eq!(world.plex.count("PUT", "/"), 0, "scenes Plex already shows as in Stash are not written");
}

#[test]
fn sync_recent_follows_the_watermark_stash_wrote() {
    let world = World::new(5);
    let newest = world.stash.scenes().into_iter().filter_map(|s| s.updated_at).max().unwrap();
    let first = world.task("recent").output();
    assert!(first.starts_with("Queued 5 scene(s) updated after "), "the last 24 hours: {first}");
    let mark = Queue::open(&world.queue_db()).unwrap().host_get("sync_recent_watermark").unwrap();
    assert_eq!(mark.as_deref(), Some(newest.as_str()), "the exact text Stash returned");

    let none = world.task("recent").output();
    assert_eq!(none, format!("No scene was updated after {newest}; nothing to sync"));

    world.stash.advance_clock(Duration::from_secs(5));
    let touched = world.stash.touch_scene("3").unwrap();
    let one = world.task("recent").output();
    assert!(one.starts_with(&format!("Queued 1 scene(s) updated after {newest}")), "{one}");
    let mark = Queue::open(&world.queue_db()).unwrap().host_get("sync_recent_watermark").unwrap();
    assert_eq!(mark, Some(touched));
}

#[test]
fn clear_pending_queue_drops_waiting_changes_and_recorded_events() {
    let world = World::new(3);
    world.hook("Scene.Update.Post", "1", &["id", "title"]).output();
    world.plex.faults().set(FaultMode::Refuse);
    world.task("process_queue").output();
    world.plex.faults().set(FaultMode::Up);
    world.hook("Scene.Update.Post", "2", &["id", "title"]).output();
    assert_eq!(world.kept_changes(), 2, "one job, one recorded event");
    let out = world.task("clear_queue");
    assert_eq!(out.output(), "Cleared 2 waiting change(s)");
    assert_eq!(world.kept_changes(), 0);
    assert_eq!(world.task("clear_queue").output(), "The queue is empty; nothing to clear");
    assert!(world.task("process_queue").output().contains("Processed 0 job(s)"));
    assert_eq!(world.plex.count("PUT", "/"), 0);
}

#[test]
fn a_long_task_keeps_working_after_stashs_session_cookie_is_renewed() {
    let world = World::new(40);
    // Each cookie is good for 3 requests; Stash hands out fresh ones.
    world.stash.set_session_lifetime(3);
    let out = world.task("all");
    assert!(out.output().contains("Processed 40 job(s)"), "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn settings_in_the_types_stash_stores_work_and_bad_ones_are_named() {
    let world = World::new(1);
    set_settings(
        &world,
        json!({"enabled": "true", "max_tags": "50", "max_retries": 7.0, "sync_tags": "false", "strict_matching": 1}),
    );
    world.hook("Scene.Update.Post", "1", &["id", "title"]).output();
    let task = world.task("process_queue");
    assert!(task.output().contains("Processed 1 job(s)"), "{}\n{}", task.stdout, task.stderr);
    let item = world.plex.item(&world.scenes[0].1).unwrap();
    assert!(item.genres.is_empty(), "sync_tags \"false\" is off: {:?}", item.genres);

    // The host's settings, then the policy's, are checked by name and range.
    set_settings(&world, json!({"read_timeout": 1000, "enabled": "maybe"}));
    world.hook("Scene.Update.Post", "1", &["id", "title"]).output();
    let bad = world.task("process_queue");
    let err = bad.error();
    assert!(err.contains("read_timeout must be a whole number from 5 to 120 (got 1000)"), "{err}");
    assert!(err.contains("enabled must be true or false (got \"maybe\")"), "{err}");
    assert!(
        bad.stderr.contains("\u{1}w\u{2}Syncing to Plex waits: the plugin settings need attention"),
        "Stash's log says what to fix: {}",
        bad.stderr
    );
    set_settings(&world, json!({"max_tags": "lots"}));
    let err = world.task("process_queue").error();
    assert!(err.contains("max_tags must be a whole number from 10 to 500 (got \"lots\")"), "{err}");
    assert_eq!(world.kept_changes(), 1, "nothing is lost");
    // Fixed: the change syncs, and the log says syncing works again.
    set_settings(&world, json!({}));
    let fixed = world.task("process_queue");
    assert!(fixed.output().contains("Processed 1 job(s)"), "{}", fixed.stdout);
    assert!(fixed.stderr.contains("Syncing to Plex works again"), "{}", fixed.stderr);
}

#[test]
fn stash_with_authentication_on_or_off_and_its_errors() {
    // Off: no cookie at all works.
    let open = World::with_auth(1, StashAuth::None);
    let mut conn = open.connection();
    conn["SessionCookie"] = serde_json::Value::Null;
    let stdin = |conn: &serde_json::Value, args: serde_json::Value| {
        json!({"server_connection": conn, "args": args}).to_string()
    };
    run(&open.raw_hook("Scene.Create.Post", 1, serde_json::Value::Null, None), &[]).output();
    assert!(run(&stdin(&conn, json!({"mode": "process_queue"})), &[]).output().contains("Processed 1 job(s)"));

    // On, with a cookie Stash no longer accepts: 401, explained, kept.
    let world = World::new(1);
    world.hook("Scene.Update.Post", "1", &["id", "title"]).output();
    let mut stale = world.connection();
    stale["SessionCookie"]["Value"] = json!("expired-cookie-value");
    let out = run(&stdin(&stale, json!({"mode": "process_queue"})), &[]);
    assert!(out.error().contains("Stash refused the plugin's credentials"), "{}", out.stdout);
    assert!(!out.stderr.contains("expired-cookie-value"), "the cookie is never logged");
    assert_eq!(world.kept_changes(), 1);

    // GraphQL errors with HTTP 200: the message is passed on, nothing lost.
    world.stash.fail_next_graphql(1, "database is locked");
    let out = world.task("process_queue");
    assert!(out.error().contains("database is locked"), "{}", out.stdout);
    assert_eq!(world.kept_changes(), 1);
    assert!(world.task("process_queue").output().contains("Processed 1 job(s)"));
    let _ = task_with(&world, json!({"mode": "queue_status"})).output();
}
