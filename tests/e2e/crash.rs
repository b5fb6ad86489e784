//! Kills at every step: the real binary is SIGKILLed at labelled moments of
//! a drain and at random moments of the hook path, restarted, and checked.
//! After every kill the queue database passes `integrity_check` and holds no
//! job in two states; at the end every scene's Plex item carries the newest
//! Stash title, with nothing dead-lettered.
//!
//! The labelled moments are set by tripwires in the fake Plex (the request
//! has arrived and its answer is held; or the answer has been written), so a
//! kill lands exactly there rather than somewhere near it.
//!
//! A killed drainer leaves its job `running` under a lease; the next drain
//! takes it once the lease (2 minutes) has expired. These tests age the
//! leases in the database instead of waiting two real minutes: the same
//! state the queue reaches on its own.
//!
//! `STASH2PLEX_CRASH_ROUNDS=<n>` sets the drain kills per point (default 6)
//! and, ×40, the hook kills (default 240).

use crate::harness::{World, wait_until};
use serde_json::json;
use stash2plex_testkit::TripPoint;
use stash2plex_testkit::fake_stash::{SceneSpec, screenshot_bytes};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The labelled points of a drain: (label, method, path prefix, point).
const POINTS: &[(&str, &str, &str, TripPoint)] = &[
    ("after claim: the job's item read is in flight", "GET", "/library/metadata/", TripPoint::Received),
    // Edits are multi-item PUTs on the section (`/library/sections/N/all`).
    ("the Plex edit is sent, its answer not yet read", "PUT", "/library/sections/", TripPoint::Received),
    ("the Plex edit is answered", "PUT", "/library/sections/", TripPoint::Answered),
    ("an image upload is sent", "POST", "/library/metadata/", TripPoint::Received),
    ("before the outcome is recorded: the read-back is answered", "GET", "/library/metadata/", TripPoint::Answered),
];

fn rounds() -> usize {
    std::env::var("STASH2PLEX_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6).max(1)
}

/// splitmix64: reproducible choices from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn spawn(stdin: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stash2plex"))
        .env("STASH2PLEX_AUTODRAIN", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stash2plex");
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.as_bytes());
    }
    child
}

fn process_queue_stdin(world: &World) -> String {
    json!({ "server_connection": world.connection(), "args": { "mode": "process_queue" } }).to_string()
}

/// Change scene `id`'s title in Stash and send its hook; the new title.
fn edit(world: &World, id: &str, version: usize) -> String {
    let mut scene: SceneSpec = world.stash.scene(id).expect("scene");
    let title = format!("Scene {id}, version {version}");
    scene.title = Some(title.clone());
    world.stash.upsert_scene(scene);
    let out = world.hook("Scene.Update.Post", id, &["title"]);
    assert!(out.output().contains("recorded"), "{}", out.stdout);
    title
}

fn db(world: &World) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(world.queue_db()).expect("queue database opens");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    conn
}

/// `integrity_check`, and no job in two states: one row per scene, a running
/// job has a lease and a ready one none, nothing both queued and
/// dead-lettered.
fn check_queue(world: &World, context: &str) {
    let conn = db(world);
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    assert_eq!(integrity, "ok", "{context}");
    let bad_running: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM jobs WHERE (state = 'running') <> (lease IS NOT NULL AND lease_until IS NOT NULL)",
            [],
            |r| r.get(0),
        )
        .expect("lease query");
    assert_eq!(bad_running, 0, "a job's state and lease disagree ({context})");
    let both: i64 = conn
        .query_row("SELECT COUNT(*) FROM jobs j JOIN dead_letters d ON d.scene_id = j.scene_id", [], |r| r.get(0))
        .expect("dead letter query");
    assert_eq!(both, 0, "a job is both queued and dead-lettered ({context})");
}

/// What a restart finds once the killed drainer's lease ran out.
fn expire_leases(world: &World) -> usize {
    db(world).execute("UPDATE jobs SET lease_until = 0 WHERE state = 'running'", []).expect("age leases")
}

/// Run Process Queue to its end (3 minutes at most: it only hangs if
/// something is wrong); its answer.
fn drain_fully(world: &World) -> String {
    let mut child = spawn(&process_queue_stdin(world));
    let ended = wait_until(Duration::from_secs(180), || matches!(child.try_wait(), Ok(Some(_))));
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("process queue ends");
    assert!(ended, "Process Queue did not finish: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!stdout.contains("\"error\""), "{stdout}");
    stdout
}

fn assert_plex_has(world: &World, titles: &BTreeMap<String, String>) {
    for (id, rk) in &world.scenes {
        let item = world.plex.item(rk).expect("item");
        if let Some(title) = titles.get(id) {
            assert_eq!(&item.title, title, "scene {id}: its newest title reached Plex");
        }
    }
}

#[test]
fn a_drain_killed_at_every_labelled_point_loses_nothing() {
    let world = World::new(8);
    let mut rng = Rng(0x5eed_c2a5);
    let mut titles = BTreeMap::new();
    let mut version = 0;
    let mut survived: BTreeMap<&str, usize> = BTreeMap::new();
    let mut not_reached: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..rounds() {
        for &(label, method, prefix, point) in POINTS {
            // A few scenes change in Stash; their hooks record the changes.
            for _ in 0..3 {
                let (id, _) = &world.scenes[rng.below(world.scenes.len() as u64) as usize];
                version += 1;
                titles.insert(id.clone(), edit(&world, id, version));
                if rng.below(2) == 0 || label.contains("upload") {
                    // A new image too (a JPEG, as Stash serves), so uploads happen.
                    world.stash.set_screenshot(id, screenshot_bytes(&format!("{id}, cover {version}")));
                }
            }
            let nth = 1 + rng.below(3) as usize;
            let trip = world.plex.tripwire(method, prefix, nth, point);
            let mut child = spawn(&process_queue_stdin(&world));
            let context = format!("round {round}, {label}, match {nth}");
            // The tripwire fires, or the drain ends without reaching it.
            let started = std::time::Instant::now();
            let fired = loop {
                if let Some(line) = trip.wait(Duration::from_millis(50)) {
                    break Some(line);
                }
                if matches!(child.try_wait(), Ok(Some(_))) || started.elapsed() > Duration::from_secs(60) {
                    break None;
                }
            };
            match fired {
                Some(_) => {
                    child.kill().expect("SIGKILL");
                    let _ = child.wait();
                    trip.release();
                    *survived.entry(label).or_default() += 1;
                }
                None => {
                    // The drain finished before reaching this match.
                    let out = child.wait_with_output().expect("drain ends");
                    assert!(out.status.success(), "{context}: {}", String::from_utf8_lossy(&out.stderr));
                    *not_reached.entry(label).or_default() += 1;
                }
            }
            drop(trip);
            check_queue(&world, &context);
            expire_leases(&world);
        }
    }
    // The restart: everything left reaches Plex. A write a killed drainer
    // had sent can land after the new drainer's (the fake applies a held
    // request when it is released, as Plex applies what it received); the
    // read-back then sees the older value and the job retries in seconds,
    // as a retry (under the retry budget, whose window is a minute). A
    // Process Queue task ends when only such waits remain, so it is run
    // again, as a user would, until the queue is empty: 3 minutes at most.
    let conn = db(&world);
    let jobs_left = || -> i64 { conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0)).expect("jobs") };
    let mut answer = String::new();
    let mut drains = 0;
    wait_until(Duration::from_secs(180), || {
        answer = drain_fully(&world);
        drains += 1;
        check_queue(&world, "after a final drain");
        jobs_left() == 0 || {
            std::thread::sleep(Duration::from_secs(1));
            false
        }
    });
    let left = jobs_left();
    let dead: i64 = conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0)).expect("dead");
    let events: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).expect("events");
    assert_eq!(
        (left, dead, events),
        (0, 0, 0),
        "the queue ends empty, nothing dead-lettered, after {drains} Process Queue run(s): {answer}"
    );
    assert_plex_has(&world, &titles);
    assert!(survived.len() == POINTS.len(), "every labelled point was hit: {survived:?} (not reached {not_reached:?})");
    println!(
        "CRASH (drain): kills survived per point {survived:?}; drains that ended before the match {not_reached:?}; {drains} Process Queue run(s) to empty the queue"
    );
}

#[test]
fn hooks_killed_at_random_moments_lose_no_answered_change() {
    let world = World::new(40);
    let mut rng = Rng(0x4004_c2a5);
    // Warm: the database exists (a first hook creates it).
    world.hook("Scene.Update.Post", &world.scenes[0].0, &["title"]).output();
    let events = |world: &World| -> i64 {
        db(world).query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).expect("events")
    };
    // How long a hook takes here, start to exit: the kills spread over 1.5×
    // that, so they land before, during and after the commit.
    let mut took: Vec<u128> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            world.hook("Scene.Update.Post", &world.scenes[1].0, &["title"]).output();
            t.elapsed().as_micros()
        })
        .collect();
    took.sort_unstable();
    let span = u64::try_from(took[2] * 3 / 2).unwrap_or(6_000).max(1_000);
    let (mut before_commit, mut after_commit, mut answered) = (0, 0, 0);
    let mut titles = BTreeMap::new();
    let hooks = rounds() * 40;
    for k in 0..hooks {
        let (id, _) = &world.scenes[rng.below(world.scenes.len() as u64) as usize];
        let mut scene = world.stash.scene(id).expect("scene");
        let title = format!("Scene {id}, hook {k}");
        scene.title = Some(title.clone());
        world.stash.upsert_scene(scene);
        let stdin = world.raw_hook(
            "Scene.Update.Post",
            id.parse().unwrap_or(0),
            json!({"id": id, "title": title}),
            Some(&["id", "title"]),
        );
        let n0 = events(&world);
        let mut child = spawn(&stdin);
        // Kill anywhere from exec to exit.
        std::thread::sleep(Duration::from_micros(rng.below(span)));
        let _ = child.kill();
        let out = child.wait_with_output().expect("hook ends");
        let recorded = events(&world) - n0;
        assert!((0..=1).contains(&recorded), "one hook records one event at most");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.contains("recorded") {
            answered += 1;
            assert_eq!(recorded, 1, "hook {k} answered that it recorded the change, so it is in the queue");
            titles.insert(id.clone(), title);
        } else if recorded == 1 {
            after_commit += 1;
            titles.insert(id.clone(), title);
        } else {
            before_commit += 1;
            // Stash logs the failed hook; its change was never acknowledged.
            titles.remove(id);
        }
        if k % 20 == 0 {
            check_queue(&world, &format!("hook {k}"));
        }
    }
    check_queue(&world, "after the hooks");
    drain_fully(&world);
    check_queue(&world, "after the drain");
    assert_plex_has(&world, &titles);
    assert!(
        answered > 0 && before_commit > 0,
        "kills landed on both sides of the commit: {before_commit} before, {after_commit} after, {answered} answered (span {span} µs)"
    );
    println!(
        "CRASH (hooks): {hooks} hooks killed at random moments: {before_commit} before the commit, \
         {after_commit} after it (not answered), {answered} answered; every recorded change reached Plex"
    );
}
