//! Bursts: a Stash scan fires one hook process per file, hundreds at once.
//! 200 hooks fired 32 at a time on a fresh and then a warm install, a task
//! and hooks at once, two drainers started together: no `database is
//! locked` reaches the user, no event is lost, one drainer at a time, every
//! change written to Plex once.

use crate::harness::{Outcome, World, run, wait_until};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

const AT_ONCE: usize = 32;

/// Set every scene's Stash title to `"{prefix} {id}"`; the hooks Stash
/// would send for those edits.
fn edit_all(world: &World, prefix: &str) -> Vec<String> {
    world
        .scenes
        .iter()
        .map(|(id, _)| {
            let mut scene = world.stash.scene(id).expect("scene");
            let title = format!("{prefix} {id}");
            scene.title = Some(title.clone());
            world.stash.upsert_scene(scene);
            world.raw_hook(
                "Scene.Update.Post",
                id.parse().unwrap_or(0),
                json!({"id": id, "title": title}),
                Some(&["id", "title"]),
            )
        })
        .collect()
}

/// Fire `stdins` `AT_ONCE` at a time (each group together, the next when it
/// is done), as a scan does; every answer.
fn fire(world: &World, stdins: &[String], autodrain: bool) -> Vec<Outcome> {
    let mut outs = Vec::new();
    for group in stdins.chunks(AT_ONCE) {
        std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|stdin| s.spawn(move || if autodrain { world.hook_autodrain(stdin) } else { run(stdin, &[]) }))
                .collect();
            outs.extend(handles.into_iter().map(|h| h.join().expect("hook thread")));
        });
    }
    outs
}

fn assert_recorded(outs: &[Outcome]) {
    for out in outs {
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(!all.contains("locked"), "a lock reached the user: {all}");
        assert_eq!(out.code, 0, "{all}");
        assert!(out.output().starts_with("recorded Scene.Update.Post"), "{}", out.stdout);
    }
}

/// What the hooks said about drainers (for a failure's message).
fn hooks_said(outs: &[Outcome]) -> String {
    let count = |needle: &str| outs.iter().filter(|o| o.stderr.contains(needle)).count();
    let other: BTreeSet<&str> = outs
        .iter()
        .flat_map(|o| o.stderr.lines())
        .filter(|l| !l.contains("Started a background drainer") && !l.contains("A drainer is already running"))
        .collect();
    format!(
        "hooks: {} started a drainer, {} found one running; other lines: {other:?}",
        count("Started a background drainer"),
        count("A drainer is already running")
    )
}

fn all_titled(world: &World, prefix: &str) -> bool {
    world.scenes.iter().all(|(id, rk)| world.plex.item(rk).is_some_and(|i| i.title == format!("{prefix} {id}")))
}

/// PUT edits of item `rk`.
fn writes_of(world: &World, rk: &str) -> usize {
    world
        .plex
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PUT"
                && r.path.ends_with("/all")
                && r.query.iter().any(|(k, v)| k == "id" && v.split(',').any(|id| id == rk))
        })
        .count()
}

#[test]
fn two_hundred_hooks_32_at_a_time_fresh_then_warm_lose_nothing_with_one_drainer() {
    let world = World::new(200);
    // Each answer takes a moment, so two drainers at work would overlap.
    world.plex.set_latency(Duration::from_millis(2));
    for pass in ["Fresh", "Warm"] {
        world.plex.clear_requests();
        let stdins = edit_all(&world, pass);
        let seen = Mutex::new(BTreeSet::new());
        let done = std::sync::atomic::AtomicBool::new(false);
        let outs = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).extend(world.drainers());
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let outs = fire(&world, &stdins, true);
            // Nobody presses a button: the drainers the hooks start do it all.
            let synced = wait_until(Duration::from_secs(180), || all_titled(&world, pass));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = sampler.join();
            assert!(synced, "{pass}: not every change reached Plex:\n{}\n{}", hooks_said(&outs), world.drainer_log());
            outs
        });
        assert_recorded(&outs);
        assert!(world.wait_for_drainers(Duration::from_secs(60)), "{pass}: the drainer ends once the queue is empty");
        // One drainer at a time: a drainer started while another drains
        // waits for the lock or leaves the queue to it, so Plex never
        // answers two of them at once.
        assert_eq!(world.plex.most_in_flight(), 1, "{pass}: Plex was sent requests by two processes at once");
        let log = world.drainer_log();
        assert!(!log.contains("locked"), "{pass}: {log}");
        for (_, rk) in &world.scenes {
            assert_eq!(writes_of(&world, rk), 1, "{pass}: item {rk} was written once");
        }
        assert_eq!(world.kept_changes(), 0);
        let started = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
        println!(
            "BURST ({pass}): 200 hooks, {AT_ONCE} at a time: all recorded and synced; {started} drainer process(es) seen, one talking to Plex at a time"
        );
    }
}

#[test]
fn a_task_and_a_burst_of_hooks_at_once_lose_nothing() {
    let world = World::new(64);
    // 64 changes queued, then a Process Queue that takes a while (Plex
    // answers in 15 ms) while the same 64 scenes change again.
    assert_recorded(&fire(&world, &edit_all(&world, "First"), false));
    world.plex.set_latency(Duration::from_millis(15));
    let second = edit_all(&world, "Second");
    let (task, outs) = std::thread::scope(|s| {
        let task = s.spawn(|| world.task("process_queue"));
        // The hooks come once the task drains (it holds the lock; checking
        // takes it for a moment, which a drain waits out).
        let draining = wait_until(Duration::from_secs(60), || {
            stash2plex::drain::lock::is_held(&world.data_dir()).unwrap_or(false)
        });
        assert!(draining, "the task took the drain lock");
        let outs = fire(&world, &second, true);
        (task.join().expect("task thread"), outs)
    });
    assert_recorded(&outs);
    let all = format!("{}{}", task.stdout, task.stderr);
    assert!(!all.contains("locked"), "{all}");
    assert!(task.output().contains("Processed"), "{}", task.stdout);
    // What the task did not take (the hooks that saw it hold the lock left
    // their changes to it; the others started a drainer) reaches Plex
    // without anyone running the task again.
    world.plex.set_latency(Duration::ZERO);
    let ok = wait_until(Duration::from_secs(180), || all_titled(&world, "Second"));
    assert!(ok, "the second edits reached Plex:\n{}\n{}", hooks_said(&outs), world.drainer_log());
    assert!(world.wait_for_drainers(Duration::from_secs(60)));
    assert_eq!(world.kept_changes(), 0);
}

#[test]
fn two_drainers_started_together_do_each_job_once() {
    let world = World::new(50);
    assert_recorded(&fire(&world, &edit_all(&world, "Pair"), false));
    world.plex.set_latency(Duration::from_millis(5));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| world.task("process_queue"));
        let b = s.spawn(|| world.task("process_queue"));
        (a.join().expect("first"), b.join().expect("second"))
    });
    let (a, b) = (a.output(), b.output());
    // One drains everything; the other finds the lock taken (or, if it
    // started after the first had finished, nothing left to do).
    let idle = |t: &str| {
        t == "another stash2plex process is already draining the queue" || t.starts_with("Processed 0 job(s)")
    };
    assert!(
        (a.contains("Processed 50 job(s)") && idle(&b)) || (b.contains("Processed 50 job(s)") && idle(&a)),
        "one drains, the other does nothing: {a:?} / {b:?}"
    );
    assert!(all_titled(&world, "Pair"));
    for (_, rk) in &world.scenes {
        assert_eq!(writes_of(&world, rk), 1, "item {rk} was written once");
    }
}

#[test]
fn a_drain_that_finds_the_lock_held_for_a_moment_still_drains() {
    // A hook checks whether a drainer runs by taking the drain lock for a
    // moment. A drainer starting just then must not take the hook for a
    // drainer and leave: the change it was started for would wait for the
    // next hook. Here the moment is stretched to a second.
    let world = World::new(2);
    let stdins = edit_all(&world, "Held");
    assert_recorded(&fire(&world, &stdins, false));
    let held = stash2plex::drain::lock::try_lock(&world.data_dir()).expect("the lock opens");
    assert!(held.is_some(), "no drainer runs yet");
    let task = std::thread::scope(|s| {
        let task = s.spawn(|| world.task("process_queue"));
        std::thread::sleep(Duration::from_secs(1));
        drop(held);
        task.join().expect("task thread")
    });
    assert!(task.output().starts_with("Processed 2 job(s)"), "{}", task.stdout);
    assert!(all_titled(&world, "Held"));
}
