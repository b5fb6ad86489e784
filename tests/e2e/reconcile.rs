//! Catch-up and reconciliation, end to end: the real binary against the
//! fake Stash and Plex (which page as the real servers do).

use crate::harness::{World, run};
use crate::sandbox::set_settings;
use serde_json::json;
use stash2plex::store::Queue;
use std::time::Duration;

fn task_with(world: &World, args: serde_json::Value) -> crate::harness::Outcome {
    run(&json!({ "server_connection": world.connection(), "args": args }).to_string(), &[])
}

fn reconcile(world: &World, scope: &str, mode: &str) -> String {
    task_with(world, json!({"mode": "reconcile", "scope": scope, "reconcile_mode": mode, "examples": "20"})).output()
}

fn count(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no {label:?} line in {report}"));
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn catch_up_with_an_unchanged_library_asks_stash_once() {
    let world = World::new(5);
    // The first drain on an install only notes where Stash is.
    let first = world.task("process_queue");
    assert!(first.stderr.contains("Catch-up starts here"), "{}", first.stderr);
    assert_eq!(world.kept_changes(), 0, "the library is not queued silently");
    let mark = Queue::open(&world.queue_db()).unwrap().host_get("catchup").unwrap().unwrap();
    assert!(mark.contains(&world.stash.scenes().into_iter().filter_map(|s| s.updated_at).max().unwrap()), "{mark}");

    world.stash.clear_requests();
    world.task("process_queue").output();
    assert_eq!(world.stash.graphql_count("query CatchUp"), 1);
    assert_eq!(world.stash.graphql_count("findScenes"), 1, "nothing else reads scenes when nothing changed");
}

#[test]
fn a_change_whose_hook_never_ran_reaches_plex_through_the_catch_up() {
    let world = World::new(3);
    world.task("process_queue").output();
    // Edited in Stash while the plugin was not told (no hook).
    world.stash.advance_clock(Duration::from_secs(2));
    let mut scene = world.stash.scene("2").unwrap();
    scene.title = Some("Renamed Without A Hook".into());
    world.stash.upsert_scene(scene);
    let out = world.task("process_queue");
    let summary = out.output();
    assert!(summary.starts_with("Processed 1 job(s)"), "{summary}");
    assert!(out.stderr.contains("Catch-up: 1 scene(s) changed in Stash since the last drain, 1 had no change queued"));
    let rk = &world.scenes[1].1;
    assert_eq!(world.plex.item(rk).unwrap().title, "Renamed Without A Hook");
    // Caught up: the next drain finds nothing.
    world.stash.clear_requests();
    assert!(world.task("process_queue").output().starts_with("Processed 0 job(s)"));
    assert_eq!(world.stash.graphql_count("findScenes"), 1);
}

#[test]
fn catch_up_never_replaces_a_queued_change() {
    let world = World::new(3);
    world.task("process_queue").output();
    world.plex.faults().set(stash2plex_testkit::FaultMode::Refuse);
    world.hook("Scene.Update.Post", "1", &["id", "title"]).output();
    world.task("process_queue").output();
    let before = Queue::open(&world.queue_db()).unwrap().jobs(10, 0).unwrap();
    assert_eq!(before.len(), 1);
    world.stash.advance_clock(Duration::from_secs(2));
    world.stash.touch_scene("1");
    world.stash.touch_scene("3");
    world.task("process_queue").output();
    let after = Queue::open(&world.queue_db()).unwrap().jobs(10, 0).unwrap();
    let one = after.iter().find(|j| j.scene_id == "1").unwrap();
    assert_eq!(one.payload, before[0].payload, "the hook's change is kept as it was");
    assert!(after.iter().any(|j| j.scene_id == "3" && j.payload.contains("Host.CatchUp")));
    world.plex.faults().set(stash2plex_testkit::FaultMode::Up);
}

#[test]
fn reconcile_reports_every_class_and_enqueue_fixes_them() {
    let world = World::new(6);
    // The demo items are what a Plex scan makes: stale, never synced.
    let r = reconcile(&world, "all", "report");
    assert_eq!(count(&r, "never synced"), 6, "{r}");
    assert_eq!(world.kept_changes(), 0, "report only queues nothing");

    world.task("all").output();
    world.plex.clear_requests();
    let run = task_with(&world, json!({"mode": "reconcile", "scope": "all", "reconcile_mode": "report"}));
    // Stash's progress bar moves forward as the run goes and ends full.
    let bar: Vec<f64> =
        run.stderr.split("\x01p\x02").skip(1).filter_map(|s| s.lines().next()?.trim().parse().ok()).collect();
    assert!(bar.len() >= 2 && bar.windows(2).all(|w| w[0] <= w[1]), "{bar:?}");
    assert_eq!(bar.last().copied(), Some(1.0), "{bar:?}");
    let r = run.output();
    assert_eq!(count(&r, "in sync"), 6, "{r}");
    // No request per scene: the libraries and one page of the section.
    assert_eq!(world.plex.count("GET", "/library/metadata"), 0);
    assert_eq!(world.plex.count("GET", "/library/sections/1/all"), 1);

    // Plex drifts: an edit in Plex Web, a deleted item, an item with no scene.
    let (id, rk) = world.scenes[2].clone();
    assert!(world.plex.user_edit(&rk, "title", "Edited In Plex"));
    world.plex.remove_item(&world.scenes[4].1);
    world.plex.add_item("1", stash2plex_testkit::ItemSpec::new("Stray", "/data/Stash/stray.mp4"));
    let r = reconcile(&world, "all", "report");
    assert_eq!(count(&r, "in sync"), 4, "{r}");
    assert_eq!(count(&r, "drifted"), 1, "{r}");
    assert_eq!(count(&r, "missing from Plex"), 1, "{r}");
    assert_eq!(count(&r, "Plex items with no Stash scene"), 1, "{r}");
    let title = world.stash.scene(&id).unwrap().title.unwrap();
    assert!(
        r.contains(&format!("drifted: scene {id} {title:?} -- Plex item {rk}: title \"Edited In Plex\" → {title:?}")),
        "{r}"
    );
    assert!(r.contains("fields that differ (drifted and never synced): title 1"), "{r}");
    assert_eq!(world.plex.item(&rk).unwrap().title, "Edited In Plex", "report only changes nothing");

    let fixed = reconcile(&world, "all", "enqueue");
    assert!(fixed.contains("queued fixes: 1"), "{fixed}");
    assert_eq!(world.plex.item(&rk).unwrap().title, title, "the task's drain wrote the fix");
    let r = reconcile(&world, "since_last", "report");
    assert!(r.starts_with("Reconciliation of scenes updated since the last reconciliation"), "{r}");
    let last = task_with(&world, json!({"mode": "reconcile_report"})).output();
    assert!(last.starts_with("Reconciliation of scenes updated since the last reconciliation"), "{last}");
}

#[test]
fn a_hook_that_arrives_during_a_reconcile_is_synced_after_it() {
    let world = World::new(40);
    world.task("all").output();
    world.plex.set_latency(Duration::from_millis(1000));
    let reconciling = {
        let stdin = json!({ "server_connection": world.connection(),
            "args": {"mode": "reconcile", "scope": "all", "reconcile_mode": "report"} })
        .to_string();
        std::thread::spawn(move || run(&stdin, &[]))
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut scene = world.stash.scene("7").unwrap();
    scene.title = Some("Changed Mid-Reconcile".into());
    world.stash.upsert_scene(scene);
    let started = std::time::Instant::now();
    world.hook("Scene.Update.Post", "7", &["id", "title"]).output();
    assert!(started.elapsed() < Duration::from_secs(5), "the hook only records the change");
    assert!(!reconciling.is_finished(), "the reconciliation was still running when the hook came");
    let out = reconciling.join().unwrap();
    let text = out.output();
    assert!(text.contains("scene(s) checked against 40 Plex item(s)"), "{text}");
    assert!(text.contains("Processed 1 job(s)"), "the hook's change is synced by the same drain: {text}");
    assert_eq!(world.plex.item(&world.scenes[6].1).unwrap().title, "Changed Mid-Reconcile");
    assert_eq!(world.kept_changes(), 0);
}

#[test]
fn a_scheduled_reconcile_runs_once_per_interval_in_the_drain() {
    let world = World::new(3);
    set_settings(&world, json!({"reconcile_schedule": "daily", "reconcile_scope": "all"}));
    let first = world.task("process_queue");
    assert!(first.stderr.contains("Scheduled reconciliation (daily) of all scenes"), "{}", first.stderr);
    assert!(first.stderr.contains("never synced: 3"), "{}", first.stderr);
    // A new process a moment later: not due.
    let second = world.task("process_queue");
    assert!(!second.stderr.contains("Scheduled reconciliation"), "{}", second.stderr);
}
