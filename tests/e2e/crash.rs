//! Kills at every step: the real binary is SIGKILLed at labelled moments of
//! a drain and at random moments of the hook path, restarted, and checked.
//! After every kill the queue database passes `integrity_check` and holds no
//! job in two states; at the end every scene's Plex item carries the newest
//! Stash title, with nothing dead-lettered.
//!
//! The labelled moments are set by tripwires in the fake Plex (the request
//! has arrived and its answer is held; or the answer has been written), so a
//! kill lands exactly there rather than somewhere near it. A catch-up is
//! killed by a tripwire in the fake Stash on its `CatchUp` query, a
//! reconciliation queueing its fixes on its `FindScenes` page; a policy
//! switch at what the drainer leaves behind as it goes (the settings answer
//! naming the new policy, its compiled artifact, its kept copy, the new
//! policy's first recorded outcome), each kill classified by the drainer's
//! log (was the switch made?).
//!
//! A killed drainer leaves its job `running` under a lease; the next drain
//! takes it once the lease (2 minutes) has expired. These tests age the
//! leases in the database instead of waiting two real minutes: the same
//! state the queue reaches on its own.
//!
//! `STASH2PLEX_CRASH_ROUNDS=<n>` sets the drain kills per point (default 6;
//! half as many at each policy-switch point, each of which compiles a
//! policy) and, ×40, the hook kills (default 240).

use crate::harness::{World, wait_until};
use serde_json::json;
use stash2plex_testkit::fake_stash::{SceneSpec, screenshot_bytes};
use stash2plex_testkit::{TripHandle, TripPoint};
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

/// How a drain armed with a tripwire ended.
enum Tripped {
    /// The tripwire fired and the drainer was SIGKILLed there.
    Killed,
    /// The drain ended (or a minute passed) without reaching it.
    Ended(std::process::Output),
}

/// Wait for `trip` to fire and SIGKILL `child` there (then let a held
/// answer go), or for the drain to end without reaching it.
fn kill_when_tripped(trip: &TripHandle, mut child: Child) -> Tripped {
    let started = std::time::Instant::now();
    loop {
        if trip.wait(Duration::from_millis(50)).is_some() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            trip.release();
            return Tripped::Killed;
        }
        if matches!(child.try_wait(), Ok(Some(_))) || started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            return Tripped::Ended(child.wait_with_output().expect("drain ends"));
        }
    }
}

/// The restart: everything left reaches Plex. A write a killed drainer
/// had sent can land after the new drainer's (the fake applies a held
/// request when it is released, as Plex applies what it received); the
/// read-back then sees the older value and the job retries in seconds,
/// as a retry (under the retry budget, whose window is a minute). A
/// Process Queue task ends when only such waits remain, so it is run
/// again, as a user would, until the queue is empty: 3 minutes at most.
/// Asserts the queue ends empty with nothing dead-lettered; the runs.
fn drain_until_empty(world: &World) -> usize {
    let conn = db(world);
    let jobs_left = || jobs_queued(world);
    let mut answer = String::new();
    let mut drains = 0;
    wait_until(Duration::from_secs(180), || {
        answer = drain_fully(world);
        drains += 1;
        check_queue(world, "after a final drain");
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
    drains
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
            let child = spawn(&process_queue_stdin(&world));
            let context = format!("round {round}, {label}, match {nth}");
            match kill_when_tripped(&trip, child) {
                Tripped::Killed => *survived.entry(label).or_default() += 1,
                Tripped::Ended(out) => {
                    // The drain finished before reaching this match.
                    assert!(out.status.success(), "{context}: {}", String::from_utf8_lossy(&out.stderr));
                    *not_reached.entry(label).or_default() += 1;
                }
            }
            drop(trip);
            check_queue(&world, &context);
            expire_leases(&world);
        }
    }
    // The restart: everything left reaches Plex.
    let drains = drain_until_empty(&world);
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

/// The catch-up's bookmark, which it writes in the same transaction as a
/// page's jobs.
/// One run armed with `trip`: SIGKILLed there (counted under the key
/// `classify` gives, looked at right after the kill) or ended without
/// reaching it (counted in the second tally); then the queue is checked and
/// the killed drainer's leases aged.
fn armed_run<'a>(
    world: &World,
    trip: TripHandle,
    stdin: &str,
    context: &str,
    (killed, not_reached): (&mut BTreeMap<&'a str, usize>, &mut usize),
    classify: impl FnOnce() -> &'a str,
) {
    match kill_when_tripped(&trip, spawn(stdin)) {
        Tripped::Killed => *killed.entry(classify()).or_default() += 1,
        Tripped::Ended(out) => {
            assert!(out.status.success(), "{context}: {}", String::from_utf8_lossy(&out.stderr));
            *not_reached += 1;
        }
    }
    drop(trip);
    check_queue(world, context);
    expire_leases(world);
}

fn catch_up_mark(world: &World) -> Option<String> {
    stash2plex::store::Queue::open(&world.queue_db()).expect("queue").host_get("catchup").expect("bookmark")
}

/// A drain killed during its catch-up: scenes change in Stash with no hook
/// (Stash was restarted, the hook was lost), and the drain is killed while
/// the catch-up's page of changed scenes is in flight (`Received`: Stash
/// has the query, its answer held) or just answered (`Answered`: the
/// drainer is reading it and queueing those scenes, in one transaction
/// with the walk's bookmark). The restart finds every such change.
#[test]
fn a_drain_killed_during_its_catch_up_loses_no_change_whose_hook_never_ran() {
    let world = World::new(8);
    // The first drain here starts the catch-up's watermark.
    drain_fully(&world);
    let mut rng = Rng(0xca7c_4095);
    let mut titles = BTreeMap::new();
    let mut version = 0;
    let mut killed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut not_reached = 0;
    for round in 0..rounds() {
        for (label, point) in [
            ("the catch-up's page is asked for, its answer held", TripPoint::Received),
            ("the catch-up's page is answered, its jobs being queued", TripPoint::Answered),
        ] {
            // Stash's timestamps have whole seconds, and an edit in the
            // same second as the newest one the last catch-up saw is not
            // looked for (docs/reconcile.md, "Limits"); these come later.
            world.stash.advance_clock(Duration::from_secs(2));
            for _ in 0..3 {
                let (id, _) = &world.scenes[rng.below(world.scenes.len() as u64) as usize];
                version += 1;
                let mut scene: SceneSpec = world.stash.scene(id).expect("scene");
                let title = format!("Scene {id}, version {version}, no hook");
                scene.title = Some(title.clone());
                world.stash.upsert_scene(scene);
                titles.insert(id.clone(), title);
            }
            // Now and then a change with its hook too (the catch-up leaves
            // that job as it is).
            if rng.below(2) == 0 {
                let (id, _) = &world.scenes[rng.below(world.scenes.len() as u64) as usize];
                version += 1;
                titles.insert(id.clone(), edit(&world, id, version));
            }
            let before = catch_up_mark(&world);
            let trip = world.stash.tripwire("query CatchUp", 1, point);
            let context = format!("round {round}, {label}");
            let classify = || match (point, catch_up_mark(&world) != before) {
                (TripPoint::Received, _) => label,
                (_, false) => "answered, killed before its jobs were committed",
                (_, true) => "answered, killed after its jobs were committed",
            };
            let stdin = process_queue_stdin(&world);
            armed_run(&world, trip, &stdin, &context, (&mut killed, &mut not_reached), classify);
        }
    }
    let drains = drain_until_empty(&world);
    println!("CRASH (catch-up): kills {killed:?}, drains that ended first {not_reached}");
    assert_plex_has(&world, &titles);
    let kills: usize = killed.values().sum();
    assert_eq!(not_reached, 0, "every drain asked for the catch-up's page: {killed:?}");
    assert_eq!(kills, 2 * rounds(), "{killed:?}");
    println!(
        "CRASH (catch-up): kills survived {killed:?}; {} change(s) whose hook never ran all reached Plex; {drains} Process Queue run(s) to empty the queue",
        3 * 2 * rounds()
    );
}

/// Jobs queued (ready or running).
fn jobs_queued(world: &World) -> i64 {
    db(world).query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0)).expect("jobs")
}

/// A reconciliation with its fixes queued (Reconcile and Fix), killed while
/// its page of Stash scenes is in flight or just answered (the policy is
/// comparing that page with the Plex listing and queueing the fixes). The
/// drift is made in Plex (an edit in Plex Web), which only a reconciliation
/// finds: no hook, no catch-up. The last run killed is never started again
/// by a task: the next Process Queue finishes it, and every item ends with
/// its scene's title.
#[test]
fn a_reconciliation_killed_while_it_queues_its_fixes_loses_none() {
    let world = World::new(8);
    drain_fully(&world);
    let mut rng = Rng(0x4ec0_5c11);
    let mut killed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut not_reached = 0;
    let mut drifted = 0;
    for round in 0..rounds() {
        for (label, point) in [
            ("the reconciliation's Stash page is asked for, its answer held", TripPoint::Received),
            ("the reconciliation's Stash page is answered, its fixes being queued", TripPoint::Answered),
        ] {
            for _ in 0..2 {
                let (_, rk) = &world.scenes[rng.below(world.scenes.len() as u64) as usize];
                assert!(world.plex.user_edit(rk, "title", &format!("Edited in Plex, round {round}")));
                drifted += 1;
            }
            let queued_before = jobs_queued(&world);
            let trip = world.stash.tripwire("query FindScenes", 1, point);
            let stdin = json!({ "server_connection": world.connection(),
                "args": { "mode": "reconcile", "scope": "all", "reconcile_mode": "enqueue" } })
            .to_string();
            let context = format!("round {round}, {label}");
            let classify = || match point {
                TripPoint::Received => label,
                _ if jobs_queued(&world) > queued_before => "answered, killed after fixes were queued",
                _ => "answered, killed before its fixes were queued",
            };
            armed_run(&world, trip, &stdin, &context, (&mut killed, &mut not_reached), classify);
        }
    }
    // No task again: the killed run is finished by the next drain.
    let drains = drain_until_empty(&world);
    let titles: BTreeMap<String, String> = world
        .scenes
        .iter()
        .map(|(id, _)| (id.clone(), world.stash.scene(id).and_then(|s| s.title).expect("a title")))
        .collect();
    assert_plex_has(&world, &titles);
    let kills: usize = killed.values().sum();
    assert_eq!(not_reached, 0, "every run asked Stash for its page: {killed:?}");
    assert_eq!(kills, 2 * rounds(), "{killed:?}");
    println!(
        "CRASH (reconcile and fix): kills survived {killed:?}; {drifted} edit(s) made in Plex all undone; {drains} Process Queue run(s) finished the last run and emptied the queue"
    );
}

/// `component` with a custom section naming `tag` appended: the same
/// policy, a component this host has not compiled or admitted yet.
fn fresh_copy(component: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"stash2plex-crash-test";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // a custom section
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// The moments of a policy switch in a running drain, in order: the
/// drainer's look at the settings answers with the new `policy_path` (the
/// switch is announced; the old policy finishes its step), the new
/// component is compiled (its artifact is in the cache; admission runs it
/// against the conformance fixture), and it is admitted (its copy is kept;
/// the jobs the old policy held are given back and the new one is
/// instantiated and configured), and the switch is made (the new policy
/// has recorded its first outcome).
#[derive(Debug, Clone, Copy)]
enum SwapPoint {
    Announced,
    Compiled,
    Admitted,
    Switched,
}

/// A drain killed while it switches policy: every scene changes, a drain
/// starts with the built-in policy, and once it works the user chooses
/// `policies/tags-as-labels` (a fresh build each round, so the switch
/// compiles and admits it); the drainer is killed at one moment of the
/// switch. The restart goes on with the chosen policy; nothing is lost.
#[test]
fn a_drain_killed_while_it_switches_policy_loses_nothing() {
    use crate::sandbox::{install_policy, set_settings};
    const N: usize = 60;
    let world = World::new(N);
    let plain = json!({ "sync_poster": false, "sync_background": false });
    // Plex answers in 60 ms, so the drain (about 7 s) outlasts the
    // drainer's look at the settings (every 5 s, up to half a second later
    // when it rides on a scene query).
    world.plex.faults().set(stash2plex_testkit::FaultMode::Delay(Duration::from_millis(60)));
    let (cache, kept) = (world.data_dir().join("cache"), world.data_dir().join("policies"));
    let mut titles = BTreeMap::new();
    let mut version = 0;
    let mut killed: BTreeMap<String, usize> = BTreeMap::new();
    let mut not_reached: BTreeMap<String, usize> = BTreeMap::new();
    // Each kill compiles a new policy, so this test takes half the rounds.
    for round in 0..rounds().div_ceil(2) {
        for point in [SwapPoint::Announced, SwapPoint::Compiled, SwapPoint::Admitted, SwapPoint::Switched] {
            for (id, _) in &world.scenes {
                version += 1;
                titles.insert(id.clone(), edit(&world, id, version));
            }
            let component = fresh_copy(crate::policies::tags_as_labels(), &format!("{round} {point:?}"));
            let sha = stash2plex::runtime::Identity::sha256_of(&component);
            let name = format!("labels-{round}-{point:?}.wasm");
            install_policy(&world, &name, &component);
            set_settings(&world, plain.clone());
            let plex_puts = || world.plex.requests().iter().filter(|r| r.method == "PUT").count();
            let puts = plex_puts();
            let mut child = spawn(&process_queue_stdin(&world));
            let context = format!("round {round}, {point:?}");
            assert!(wait_until(Duration::from_secs(60), || plex_puts() > puts), "{context}: the drain works");
            let mut chosen = plain.clone();
            chosen["policy_path"] = json!(name);
            set_settings(&world, chosen);
            // The drainer's look at the settings, in a query of its own or
            // riding on a scene query.
            let announced = world.stash.tripwire_containing("configuration { plugins(include", 1, TripPoint::Answered);
            // The running policy's artifact is in the cache by now; a new
            // one is the new component's.
            let artifacts = || -> usize {
                std::fs::read_dir(&cache)
                    .map_or(0, |d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm")).count())
            };
            let cached = artifacts();
            let copy = kept.join(format!("{sha}.wasm"));
            let conn = db(&world);
            let by_new = || -> i64 {
                conn.query_row("SELECT COUNT(*) FROM handled WHERE policy = ?1", [&sha], |r| r.get(0)).unwrap_or(0)
            };
            // The moment comes (polled closely for the files), or the drain
            // ends first.
            let started = std::time::Instant::now();
            let reached = loop {
                let at = match point {
                    SwapPoint::Announced => announced.wait(Duration::from_millis(1)).is_some(),
                    SwapPoint::Compiled => artifacts() > cached,
                    SwapPoint::Admitted => copy.is_file(),
                    SwapPoint::Switched => by_new() > 0,
                };
                if at {
                    child.kill().expect("SIGKILL");
                    break true;
                }
                if matches!(child.try_wait(), Ok(Some(_))) || started.elapsed() > Duration::from_secs(90) {
                    let _ = child.kill();
                    break false;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            let out = child.wait_with_output().expect("the drainer ends");
            drop(announced);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let key = if !reached {
                format!("{point:?}: the drain ended first")
            } else if stderr.contains("Switched policy: ") {
                format!("{point:?}: killed after the switch")
            } else {
                format!("{point:?}: killed before the switch was made")
            };
            if reached {
                *killed.entry(key).or_default() += 1;
            } else {
                *not_reached.entry(key).or_default() += 1;
            }
            check_queue(&world, &context);
            expire_leases(&world);
        }
    }
    // The restart: the chosen policy (the last round's) takes over and
    // syncs everything left.
    world.plex.faults().set(stash2plex_testkit::FaultMode::Up);
    let drains = drain_until_empty(&world);
    assert_plex_has(&world, &titles);
    let before_switch: usize = killed.iter().filter(|(k, _)| k.contains("before the switch")).map(|(_, n)| n).sum();
    assert!(before_switch > 0, "some kills landed inside a switch: {killed:?} (not reached {not_reached:?})");
    let after_switch: usize = killed.iter().filter(|(k, _)| k.contains("after the switch")).map(|(_, n)| n).sum();
    assert!(after_switch > 0, "some kills landed after a switch: {killed:?} (not reached {not_reached:?})");
    for point in ["Announced", "Compiled", "Admitted", "Switched"] {
        assert!(killed.keys().any(|k| k.starts_with(point)), "{point} was reached: {killed:?} ({not_reached:?})");
    }
    println!(
        "CRASH (policy switch): kills survived {killed:?}; drains that ended first {not_reached:?}; {drains} Process Queue run(s) to empty the queue"
    );
}
