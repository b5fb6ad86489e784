//! Dead letters: a permanent failure is kept with its story, can be listed,
//! re-queued and purged by tasks.

use crate::harness::{World, run};
use serde_json::json;
use stash2plex::store::Queue;
use stash2plex_testkit::FaultMode;

fn task_with(world: &World, args: serde_json::Value) -> crate::harness::Outcome {
    run(&json!({ "server_connection": world.connection(), "args": args }).to_string(), &[])
}

fn dead(world: &World) -> u64 {
    Queue::open(&world.queue_db()).unwrap().counts(0).unwrap().dead
}

#[test]
fn a_rejected_edit_is_dead_lettered_listed_requeued_and_synced() {
    let world = World::new(2);
    let (scene_id, rk) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    // Plex rejects the edit as a bad request: our bug, retrying cannot help.
    world.plex.faults().set(FaultMode::status(400));
    world.task("process_queue").output();
    world.plex.faults().set(FaultMode::Up);
    assert_eq!(dead(&world), 1, "a 400 is dead-lettered at once");

    let listing = task_with(&world, json!({"mode": "dlq_list"})).output();
    assert!(listing.contains(&format!("scene {scene_id}")), "{listing}");
    assert!(listing.contains("[plex-rejected-request]"), "{listing}");
    assert!(listing.contains("400"), "the response is shown: {listing}");
    let sha = stash2plex::runtime::Identity::sha256_of(stash2plex::runtime::DEFAULT_POLICY);
    let by = format!(", by policy stash2plex-default 0.1.0 (sha256 {})", &sha[..12]);
    assert!(listing.contains(&by), "the dead letter says which policy gave up on it: {listing}");

    let status = world.task("queue_status").output();
    assert!(status.contains("plex-rejected-request: 1"), "{status}");

    let missing = task_with(&world, json!({"mode": "dlq_requeue"}));
    assert!(missing.error().contains("class"), "requeue needs a filter: {}", missing.stdout);
    let none = task_with(&world, json!({"mode": "dlq_requeue", "class": "not-in-plex"})).output();
    assert!(none.contains("No dead letters matched"), "{none}");
    let requeued = task_with(&world, json!({"mode": "dlq_requeue", "class": "plex-rejected-request"})).output();
    assert!(requeued.contains("Re-queued 1"), "{requeued}");
    assert_eq!(dead(&world), 0);

    world.task("process_queue").output();
    assert!(world.plex.item(&rk).unwrap().locked_fields.contains("title"), "the re-queued change synced");
}

#[test]
fn purge_removes_only_old_dead_letters_and_bad_args_are_explained() {
    let world = World::new(1);
    let (scene_id, _) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();
    world.plex.faults().set(FaultMode::status(400));
    world.task("process_queue").output();
    world.plex.faults().set(FaultMode::Up);
    assert_eq!(dead(&world), 1);

    let kept = task_with(&world, json!({"mode": "purge_dlq", "days": "30"})).output();
    assert!(kept.contains("Removed 0"), "{kept}");
    assert_eq!(dead(&world), 1);
    let bad = task_with(&world, json!({"mode": "purge_dlq", "days": "soon"}));
    assert!(bad.error().contains("days must be a whole number"), "{}", bad.stdout);
    let cleared = task_with(&world, json!({"mode": "clear_dlq"})).output();
    assert!(cleared.contains("Removed 1"), "{cleared}");
    assert_eq!(dead(&world), 0);
}

#[test]
fn pause_and_resume_syncing_from_tasks_and_check_health() {
    let world = World::new(1);
    let (scene_id, rk) = world.scenes[0].clone();
    world.hook("Scene.Update.Post", &scene_id, &["id", "title"]).output();

    let paused = task_with(&world, json!({"mode": "breaker_open", "minutes": "60"})).output();
    assert!(paused.contains("Circuit breaker opened by hand"), "{paused}");
    let task = world.task("process_queue");
    assert_eq!(task.code, 0, "{}", task.stdout);
    assert_eq!(world.plex.count("PUT", "/"), 0, "nothing is written while syncing is paused");
    assert!(!world.plex.item(&rk).unwrap().locked_fields.contains("title"));
    let status = world.task("queue_status").output();
    assert!(status.contains("PAUSED, opened by hand"), "the status shows the pause: {status}");

    let health = world.task("health_check").output();
    assert!(health.contains("Policy: stash2plex-default 0.1.0 for stash2plex:policy@"), "says which policy: {health}");
    for check in ["Stash: OK (1 scene)", "Plex: OK, ", "Plex token: OK", "Libraries: OK", "Paths: OK, 1 of 1 sampled"] {
        assert!(health.lines().any(|l| l.starts_with(check)), "{check}: {health}");
    }
    // A passing health check does not end a pause made by hand.
    world.task("process_queue").output();
    assert_eq!(world.plex.count("PUT", "/"), 0, "still paused after the health check");

    task_with(&world, json!({"mode": "breaker_close"})).output();
    let task = world.task("process_queue");
    assert!(task.output().contains("the queue is empty"), "{}", task.stdout);
    assert!(world.plex.item(&rk).unwrap().locked_fields.contains("title"), "resumed and synced");
    let summary = task_with(&world, json!({"mode": "outage_summary", "days": "30"})).output();
    // The pause is listed, marked as made by hand, and left out of the metrics.
    assert!(summary.contains("0 outage(s)") && summary.contains("opened by hand"), "{summary}");
}

#[test]
fn dead_letters_from_an_outage_window_are_recovered() {
    use stash2plex::drain::sim::{Sim, SimConfig, Stop};
    use stash2plex::store::DeadLetterInfo;
    use stash2plex_testkit::FaultMode;

    // The in-process simulator talks to Stash without a session cookie.
    let world = World::with_auth(3, stash2plex_testkit::fake_stash::StashAuth::None);
    let nothing = task_with(&world, json!({"mode": "recover_outage_jobs"})).output();
    assert!(nothing.contains("No completed outage"), "{nothing}");

    // Record a real outage in this plugin's state: the real policy, on a
    // fake clock two hours ago, with Plex refusing connections for 10 min.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = now - 2 * 3_600_000;
    let mut sim = Sim::new(SimConfig {
        data_dir: &world.data_dir(),
        plex_url: &world.plex.url(),
        plex_token: crate::harness::PLEX_TOKEN,
        stash_url: &world.stash.url(),
        settings: serde_json::json!({}),
        seed: 5,
        start_ms: start,
        step_cost_ms: 20,
    })
    .unwrap();
    for (id, _) in &world.scenes[..2] {
        sim.scene_changed(id).unwrap();
    }
    let plex = world.plex.clone();
    let mut down = false;
    let stop = sim.run(
        60 * 60_000,
        |t| {
            let want = t < start + 10 * 60_000;
            if want != down {
                plex.faults().set(if want { FaultMode::Refuse } else { FaultMode::Up });
                down = want;
            }
        },
        |_| false,
    );
    assert_eq!(stop, Stop::Empty);
    drop(sim);

    // A change that failed for good during that outage, and one long before.
    let mut q = Queue::open(&world.queue_db()).unwrap();
    let info =
        DeadLetterInfo { error_class: "plex-overloaded".into(), message: "HTTP 502".into(), detail: String::new() };
    let (inside, outside) = (&world.scenes[2].0, &world.scenes[0].0);
    for (scene, at) in [(inside, start + 5 * 60_000), (outside, start - 3_600_000)] {
        q.enqueue(scene, r#"{"v":1}"#, at, at).unwrap();
        let j = q.claim(1000, at, 77).unwrap().unwrap();
        q.dead_letter(j.id, j.lease, &info, &[], at).unwrap();
    }
    drop(q);

    let out = task_with(&world, json!({"mode": "recover_outage_jobs"})).output();
    assert!(out.contains("Re-queued 1 dead letter(s) from that outage"), "{out}");
    assert_eq!(dead(&world), 1, "the older dead letter stays");
    world.task("process_queue").output();
    let rk = &world.scenes[2].1;
    assert!(world.plex.item(rk).unwrap().locked_fields.contains("title"), "the recovered change synced");
}

#[test]
fn old_dead_letters_are_purged_automatically_by_a_drain() {
    use stash2plex::store::DeadLetterInfo;
    let world = World::new(2);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let day = 86_400_000;
    std::fs::create_dir_all(world.data_dir()).unwrap();
    let mut q = Queue::open(&world.queue_db()).unwrap();
    let info =
        DeadLetterInfo { error_class: "ambiguous-match".into(), message: "two items".into(), detail: String::new() };
    for (scene, age_days) in [(&world.scenes[0].0, 40), (&world.scenes[1].0, 10)] {
        let at = now - age_days * day;
        q.enqueue(scene, r#"{"v":1}"#, at, at).unwrap();
        let j = q.claim(1000, at, 5).unwrap().unwrap();
        q.dead_letter(j.id, j.lease, &info, &[], at).unwrap();
    }
    drop(q);
    let task = world.task("process_queue");
    assert!(task.stderr.contains("Removed 1 dead letter(s) older than 30 day(s)"), "{}", task.stderr);
    assert_eq!(dead(&world), 1, "the 10-day-old one is kept");
}
