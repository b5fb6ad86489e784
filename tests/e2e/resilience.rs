//! Riding out Plex outages: the real host capabilities and the real policy
//! component in-process, driven by a fake clock, against the fake Plex with
//! injected faults. Simulated hours run in seconds and are reproducible.

use serde_json::json;
use stash2plex::drain::sim::{Sim, SimConfig, Stop};
use stash2plex::runtime::wit::policy::Condition;
use stash2plex_testkit::fake_stash::StashAuth;
use stash2plex_testkit::{FakePlex, FakeStash, FaultMode, fixtures};

pub const TOKEN: &str = "sim-plex-token-0123456789";
/// 2026-01-01T00:00:00Z
const START_MS: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;

pub struct SimWorld {
    pub stash: FakeStash,
    pub plex: FakePlex,
    pub scenes: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl SimWorld {
    pub fn new(n: usize) -> SimWorld {
        // The policy logs a line per job; keep the test output readable.
        stash2plex::plugin::log::set_min_level(stash2plex::plugin::log::Level::Warn);
        let stash = FakeStash::start(StashAuth::None).expect("fake Stash");
        let plex = FakePlex::start(Some(TOKEN)).expect("fake Plex");
        let scenes = fixtures::install_demo(&stash, &plex, n);
        SimWorld { stash, plex, scenes, dir: tempfile::tempdir().expect("temp dir") }
    }

    /// The simulator with `settings`. Image uploads are off unless a test
    /// turns them on: these tests count requests per job against the
    /// breaker's and the ramp's limits, and the first upload of a poster and
    /// a background adds six requests to a job (see tests/e2e/metadata.rs).
    pub fn sim(&self, mut settings: serde_json::Value, seed: u64) -> Sim {
        if let Some(map) = settings.as_object_mut() {
            map.entry("sync_poster").or_insert(serde_json::json!(false));
            map.entry("sync_background").or_insert(serde_json::json!(false));
        }
        Sim::new(SimConfig {
            data_dir: &self.dir.path().join("data"),
            plex_url: &self.plex.url(),
            plex_token: TOKEN,
            stash_url: &self.stash.url(),
            settings,
            seed,
            start_ms: START_MS,
            step_cost_ms: 20,
        })
        .expect("simulator starts")
    }

    /// A simulator with a change recorded for every scene.
    pub fn sim_with_all_recorded(&self, settings: serde_json::Value, seed: u64) -> Sim {
        let mut sim = self.sim(settings, seed);
        for (id, _) in &self.scenes {
            sim.scene_changed(id).expect("recorded");
        }
        sim
    }

    /// Every scene's Plex item carries its Stash fields, locked.
    pub fn assert_all_synced(&self) {
        for (id, rk) in &self.scenes {
            let scene = self.stash.scene(id).expect("scene");
            let item = self.plex.item(rk).expect("item");
            assert_eq!(Some(item.title.as_str()), scene.title.as_deref(), "scene {id}");
            assert_eq!(item.summary, scene.details, "scene {id}");
            assert_eq!(item.studio.as_deref(), scene.studio.as_ref().map(|s| s.name.as_str()), "scene {id}");
            assert!(item.locked_fields.contains("title") && item.locked_fields.contains("summary"), "scene {id}");
        }
    }
}

fn run_task(sim: &mut Sim, name: &str, args: serde_json::Value) -> String {
    match sim.session.run_task(name, &args.to_string()) {
        Ok(Ok(text)) => text,
        other => panic!("task {name} failed: {other:?}"),
    }
}

#[test]
fn a_ten_minute_outage_in_the_middle_of_1000_scenes() {
    let world = SimWorld::new(1000);
    let mut sim = world.sim_with_all_recorded(json!({}), 42);
    assert_eq!(sim.counts().ready, 1000);

    // Phase 1: Plex is up until half the library is synced.
    let stop = sim.run(24 * 60 * MINUTE, |_| {}, |s| s.counts().ready <= 500);
    assert_eq!(stop, Stop::Condition);
    let outage_start = sim.now_ms();
    let outage_end = outage_start + 10 * MINUTE;

    // Phase 2: Plex refuses connections for ten simulated minutes.
    let plex = world.plex.clone();
    let mut down = false;
    let stop = sim.run(
        6 * 60 * MINUTE,
        |now| {
            let want_down = now >= outage_start && now < outage_end;
            if want_down != down {
                plex.faults().set(if want_down { FaultMode::Refuse } else { FaultMode::Up });
                down = want_down;
            }
        },
        |_| false,
    );
    assert_eq!(stop, Stop::Empty, "the queue drains completely after the outage");
    world.assert_all_synced();
    let c = sim.counts();
    assert_eq!(c.dead, 0, "nothing is dead-lettered because of an outage");

    // Requests while Plex was down: the breaker trips, then only probes.
    let during: Vec<_> = sim.steps.iter().filter(|s| s.at_ms >= outage_start && s.at_ms < outage_end).collect();
    let sent_during: u64 = during.iter().map(|s| s.plex_requests).sum();
    let probes = during.iter().filter(|s| s.outcome.contains("probe")).count();
    assert!(probes >= 2, "recovery is probed during a 10 minute outage: {probes}");
    let busiest = busiest_window(&sim, outage_start, outage_end, 40_000);
    assert!(busiest <= 20, "Plex is not hammered while down: {busiest} requests in one 40 s window");
    assert!(sent_during <= 130, "{sent_during} requests in 10 minutes");
    // No two probes closer than 3 s (probe intervals are never ~0), and
    // once the outage is old they are a minute apart.
    let probe_times: Vec<i64> = during.iter().filter(|s| s.outcome.contains("probe")).map(|s| s.at_ms).collect();
    for w in probe_times.windows(2) {
        assert!(w[1] - w[0] >= 3_000, "probes too close: {probe_times:?}");
    }
    let late = probe_times.iter().filter(|t| **t >= outage_end - 2 * MINUTE).count();
    assert!(late <= 4, "an old outage is probed about once a minute: {probe_times:?}");

    // After recovery: the first successful write, and a gradual ramp.
    let first_write = sim
        .steps
        .iter()
        .find(|s| s.at_ms >= outage_end && s.outcome.starts_with("worked") && s.outcome.contains("synced"))
        .map(|s| s.at_ms)
        .expect("a write after recovery");
    let recovery_to_write = first_write - outage_end;
    let drain_end = sim.now_ms();
    let mut max_per_second = 0u64;
    let after: Vec<_> = sim.steps.iter().filter(|s| s.at_ms >= first_write).collect();
    let mut i = 0;
    while i < after.len() {
        let second = after[i].at_ms / 1000;
        let n: u64 = after.iter().filter(|s| s.at_ms / 1000 == second).map(|s| s.plex_requests).sum();
        max_per_second = max_per_second.max(n);
        i += after[i..].iter().take_while(|s| s.at_ms / 1000 == second).count();
    }

    // The ramp: 1 request/s right after recovery, doubling every 10 s (the
    // defaults); a few unpaced trial jobs and a probe come first.
    for (i, limit) in [1u64, 2, 4, 8, 16].iter().enumerate() {
        let from = first_write + 10_000 * i as i64;
        let n: u64 = after.iter().filter(|s| s.at_ms >= from && s.at_ms < from + 10_000).map(|s| s.plex_requests).sum();
        assert!(n <= limit * 10 + 10, "ramp step {i}: {n} requests in 10 s, limit {limit}/s");
    }
    // One outage: the breaker opened and closed once.
    let summary = run_task(&mut sim, "outage_summary", json!({"days": 30}));
    assert!(summary.contains("1 outage(s)"), "{summary}");
    assert!(summary.contains("1 trip(s)"), "{summary}");
    let status = match sim.session.status() {
        Ok(Ok(status)) => status,
        other => panic!("the policy's status failed: {other:?}"),
    };
    assert_eq!(status.condition, Condition::Healthy, "{}", status.summary);
    assert!(status.summary.to_lowercase().contains("closed"), "the breaker ends closed: {}", status.summary);
    println!(
        "OUTAGE NUMBERS: requests during the outage {sent_during} ({probes} probes); recovery → first write {:.1} s; \
         total drain {:.1} simulated min; peak {max_per_second} requests/s once ramped (20 ms simulated per job); dead-lettered {}",
        recovery_to_write as f64 / 1000.0,
        (drain_end - START_MS) as f64 / 60_000.0,
        c.dead
    );
    println!("{summary}");
    assert!((0..=6 * MINUTE).contains(&recovery_to_write), "recovery detected within the probe cap");
}

/// The most Plex requests sent in any `window_ms` window that starts in
/// [from, until).
fn busiest_window(sim: &Sim, from: i64, until: i64, window_ms: i64) -> u64 {
    sim.steps
        .iter()
        .filter(|s| s.at_ms >= from && s.at_ms < until)
        .map(|start| {
            sim.steps
                .iter()
                .filter(|s| s.at_ms >= start.at_ms && s.at_ms < (start.at_ms + window_ms).min(until))
                .map(|s| s.plex_requests)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

/// Plex refuses connections for `outage_ms` once 20 of 60 changes are
/// synced; returns (time from Plex's return to the first write, the most
/// requests in a 40 s window of the outage).
fn short_outage(outage_ms: i64, seed: u64) -> (i64, u64) {
    let world = SimWorld::new(60);
    let mut sim = world.sim_with_all_recorded(json!({}), seed);
    assert_eq!(sim.run(60 * MINUTE, |_| {}, |s| s.counts().ready <= 40), Stop::Condition);
    let start = sim.now_ms();
    let end = start + outage_ms;
    let plex = world.plex.clone();
    let mut down = false;
    let stop = sim.run(
        60 * MINUTE,
        |now| {
            let want = now >= start && now < end;
            if want != down {
                plex.faults().set(if want { FaultMode::Refuse } else { FaultMode::Up });
                down = want;
            }
        },
        |_| false,
    );
    assert_eq!(stop, Stop::Empty);
    world.assert_all_synced();
    assert_eq!(sim.counts().dead, 0);
    let failed_during = sim.steps.iter().filter(|s| s.at_ms >= start && s.at_ms < end).count();
    assert!(failed_during > 0, "the outage was seen");
    let first_write = sim
        .steps
        .iter()
        .find(|s| s.at_ms >= end && s.outcome.contains("synced"))
        .map(|s| s.at_ms)
        .expect("a write after the outage");
    (first_write - end, busiest_window(&sim, start, end, 40_000))
}

#[test]
fn after_outages_of_up_to_five_minutes_the_first_write_follows_within_5_s() {
    let mut report = Vec::new();
    for (outage_ms, seeds) in [(40_000, 1..=4u64), (2 * MINUTE, 5..=6), (5 * MINUTE, 7..=8)] {
        for seed in seeds {
            let (to_write, busiest) = short_outage(outage_ms, seed);
            assert!(to_write <= 5_000, "{} s outage, seed {seed}: first write {to_write} ms after", outage_ms / 1000);
            assert!(busiest <= 20, "{} s outage, seed {seed}: {busiest} requests in 40 s", outage_ms / 1000);
            report.push(format!(
                "{} s outage (seed {seed}): first write {to_write} ms after, busiest 40 s {busiest} requests",
                outage_ms / 1000
            ));
        }
    }
    println!("SHORT OUTAGES:\n{}", report.join("\n"));
}

/// Run until the queue is empty with `fault` active over the simulated
/// window [from, until) (relative to the start of this run).
fn run_with_fault(world: &SimWorld, sim: &mut Sim, fault: FaultMode, from: i64, until: i64) -> Stop {
    let plex = world.plex.clone();
    let t0 = sim.now_ms();
    let mut active = false;
    sim.run(
        6 * 60 * MINUTE,
        |now| {
            let want = now >= t0 + from && now < t0 + until;
            if want != active {
                plex.faults().set(if want { fault.clone() } else { FaultMode::Up });
                active = want;
            }
        },
        |_| false,
    )
}

fn synced_at(sim: &Sim) -> Vec<i64> {
    sim.steps.iter().filter(|s| s.outcome.contains("synced")).map(|s| s.at_ms).collect()
}

#[test]
fn database_migrations_503_wait_and_drain_without_dead_letters() {
    let world = SimWorld::new(60);
    let mut sim = world.sim_with_all_recorded(json!({}), 7);
    // Plex answers 503 "Maintenance" to everything, /identity included,
    // for 90 simulated seconds from the start.
    let stop = run_with_fault(&world, &mut sim, FaultMode::maintenance(), 0, 90_000);
    assert_eq!(stop, Stop::Empty);
    world.assert_all_synced();
    assert_eq!(sim.counts().dead, 0, "a restart is not a reason to give up on a change");
    let first = synced_at(&sim)[0];
    assert!(first >= START_MS + 90_000, "nothing was written while Plex was migrating");
    let busiest = busiest_window(&sim, START_MS, START_MS + 90_000, 40_000);
    assert!(busiest <= 20, "Plex is left alone while it migrates: {busiest} requests in one 40 s window");
    let summary = run_task(&mut sim, "outage_summary", json!({}));
    assert!(summary.contains("1 outage(s)"), "{summary}");
}

#[test]
fn retry_after_from_a_429_is_honoured() {
    let world = SimWorld::new(1);
    let mut sim = world.sim(json!({}), 11);
    sim.scene_changed(&world.scenes[0].0).expect("recorded");
    world.plex.faults().fail_next(1, FaultMode::too_many_requests(120));
    let stop = sim.run(60 * MINUTE, |_| {}, |_| false);
    assert_eq!(stop, Stop::Empty);
    world.assert_all_synced();
    let synced = synced_at(&sim);
    assert_eq!(synced.len(), 1);
    assert!(synced[0] >= START_MS + 120_000, "the retry waited for Retry-After: {} ms", synced[0] - START_MS);
    assert!(synced[0] <= START_MS + 10 * MINUTE, "and not much longer");
    assert_eq!(sim.counts().dead, 0);
}

#[test]
fn garbage_bodies_are_retried_not_dead_lettered() {
    let world = SimWorld::new(5);
    let mut sim = world.sim_with_all_recorded(json!({}), 13);
    world.plex.faults().fail_next(3, FaultMode::Garbage);
    let stop = sim.run(60 * MINUTE, |_| {}, |_| false);
    assert_eq!(stop, Stop::Empty);
    world.assert_all_synced();
    assert_eq!(sim.counts().dead, 0);
    assert!(
        sim.steps.iter().any(|s| s.outcome.contains("retrying in") && s.outcome.contains("(attempt 1 of")),
        "the garbage answer was retried as a counted attempt: {:?}",
        sim.steps.iter().take(6).map(|s| &s.outcome).collect::<Vec<_>>()
    );
}

#[test]
fn slow_responses_trip_the_breaker_then_it_recovers() {
    let world = SimWorld::new(12);
    // A small window so a few real 2 s responses are enough.
    let settings = json!({"breaker_slow_call_ms": 1000, "breaker_window": 4, "breaker_min_calls": 4,
                          "breaker_slow_call_rate": 75});
    let mut sim = world.sim_with_all_recorded(settings, 17);
    world.plex.faults().set(FaultMode::Delay(std::time::Duration::from_secs(2)));
    // Plex is slow until the breaker notices (its first probe).
    let stop = sim.run(60 * MINUTE, |_| {}, |s| s.steps.iter().any(|x| x.outcome.contains("probe")));
    assert_eq!(stop, Stop::Condition, "slow calls opened the breaker");
    let slow_requests: u64 = sim.steps.iter().map(|s| s.plex_requests).sum();
    assert!(slow_requests <= 12, "the breaker stopped the slow calls early: {slow_requests}");
    world.plex.faults().set(FaultMode::Up);
    let stop = sim.run(60 * MINUTE, |_| {}, |_| false);
    assert_eq!(stop, Stop::Empty);
    world.assert_all_synced();
    assert_eq!(sim.counts().dead, 0);
    let summary = run_task(&mut sim, "outage_summary", json!({}));
    assert!(summary.contains("1 outage(s)") && summary.to_lowercase().contains("slow"), "{summary}");
}
