//! Soak: many jobs through the shipping drain loop (the simulator: real
//! capabilities, the real policy, the fake servers on loopback, a fake
//! clock), with Plex and Stash outages on a schedule. The drain's memory
//! stays flat and the queue database does not grow without bound.
//!
//! `STASH2PLEX_SOAK_JOBS=<n>` sets the jobs (default 2,000; the long run is
//! 100,000). Every round changes every scene once, so each round is one job
//! per scene.
//!
//! During the drain the user switches policy, back and forth between the
//! built-in one and `policies/tags-as-labels`, as a changed `policy_path`
//! setting does in a drainer (the loop switches between two steps): one
//! switch per 100 jobs (1,000 in the long run), or
//! `STASH2PLEX_SOAK_SWAPS=<n>`.

use crate::resilience::SimWorld;
use serde_json::json;
use stash2plex::drain::sim::Stop;
use stash2plex::runtime::source::{Choice, Origin};
use stash2plex_testkit::FaultMode;

const MINUTE: i64 = 60_000;

fn jobs() -> usize {
    std::env::var("STASH2PLEX_SOAK_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000).max(100)
}

fn swaps(jobs: usize) -> usize {
    std::env::var("STASH2PLEX_SOAK_SWAPS").ok().and_then(|v| v.parse().ok()).unwrap_or(jobs / 100)
}

/// Resident memory of this process, in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Set in the process the soak re-runs itself in.
const ALONE: &str = "STASH2PLEX_SOAK_ALONE";

#[test]
fn a_long_drain_with_outages_keeps_memory_flat_and_the_database_bounded() {
    // The other tests of this binary run in threads beside this one, and
    // their memory would count in this process's: the soak measures itself
    // in a process of its own (this test binary, running only this test).
    if std::env::var_os(ALONE).is_none() {
        let name = "soak::a_long_drain_with_outages_keeps_memory_flat_and_the_database_bounded";
        let out = std::process::Command::new(std::env::current_exe().expect("this test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ALONE, "1")
            .output()
            .expect("the soak runs in its own process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "the soak ran: {stdout}");
        return;
    }
    let total = jobs();
    let scenes = total.min(500);
    let rounds = total.div_ceil(scenes);
    let world = SimWorld::new(scenes);
    let mut sim = world.sim(json!({}), 2026);
    sim.watch_policies();
    let data = world.dir.path().join("data");
    // The other policy, where a `policy_path` setting would name it.
    let labels = world.dir.path().join("labels.wasm");
    std::fs::write(&labels, crate::policies::tags_as_labels()).expect("the other policy is installed");
    let builtin_sha = sim.session.policy.sha256.clone();
    let labels_sha = stash2plex::runtime::Identity::sha256_of(crate::policies::tags_as_labels());
    let swaps_wanted = swaps(total);
    // Switches asked for per round, spread over its first steps (a round is
    // at least one step per job).
    let per_round = swaps_wanted.div_ceil(rounds);
    let gap = (scenes / (per_round + 1)).max(1);
    let (mut asked, mut labels_chosen) = (0usize, false);
    let mut seen_in_record = 0usize;
    let (db, wal) = (data.join("queue.db"), data.join("queue.db-wal"));
    let mut rss = Vec::new();
    let mut db_bytes = Vec::new();
    for round in 0..rounds {
        for (id, _) in &world.scenes {
            let mut scene = world.stash.scene(id).expect("scene");
            scene.title = Some(format!("Soak {round} {id}"));
            world.stash.upsert_scene(scene);
            sim.scene_changed(id).expect("recorded");
        }
        // Every other round Plex goes away for 40 s; every fourth, Stash
        // for 20 s (the policy cannot look scenes up, and waits).
        let t0 = sim.now_ms();
        let (plex, stash) = (world.plex.clone(), world.stash.clone());
        let (mut plex_down, mut stash_down) = (false, false);
        let (mut calls, mut asked_here) = (0usize, 0usize);
        let swaps_before = sim.swaps;
        let stop = sim.run_choosing(
            6 * 60 * MINUTE,
            |now| {
                let want = round % 2 == 1 && now >= t0 + 5_000 && now < t0 + 45_000;
                if want != plex_down {
                    plex.faults().set(if want { FaultMode::Refuse } else { FaultMode::Up });
                    plex_down = want;
                }
                let want = round % 4 == 2 && now >= t0 + 2_000 && now < t0 + 22_000;
                if want != stash_down {
                    stash.set_down(want);
                    stash_down = want;
                }
            },
            |_| {
                calls += 1;
                if calls % gap != 0 || asked_here >= per_round || asked >= swaps_wanted {
                    return None;
                }
                asked_here += 1;
                asked += 1;
                labels_chosen = !labels_chosen;
                Some(if labels_chosen {
                    Choice::File { path: labels.clone(), origin: Origin::Setting }
                } else {
                    Choice::Builtin
                })
            },
            |_| false,
        );
        world.plex.faults().set(FaultMode::Up);
        world.stash.set_down(false);
        assert_eq!(stop, Stop::Empty, "round {round}");
        let c = sim.counts();
        assert_eq!((c.ready, c.waiting, c.running, c.dead), (0, 0, 0, 0), "round {round}: {c:?}");
        for (id, rk) in &world.scenes {
            assert_eq!(world.plex.item(rk).expect("item").title, format!("Soak {round} {id}"), "round {round}");
        }
        // The per-job record of this round: every job completed exactly
        // once, by one of the two policies, whichever ran at the time.
        let record = stash2plex::store::Queue::open(&db).expect("queue").handled_for(None, 100_000).expect("record");
        let completes: Vec<_> = record.iter().filter(|h| h.at_ms >= t0 && h.outcome == "complete").collect();
        let mut done: Vec<&str> = completes.iter().map(|h| h.scene_id.as_str()).collect();
        done.sort_unstable();
        let jobs_done = done.len();
        done.dedup();
        assert_eq!((jobs_done, done.len()), (scenes, scenes), "round {round}: every job completed once");
        assert!(
            completes.iter().all(|h| h.policy_sha256 == builtin_sha || h.policy_sha256 == labels_sha),
            "round {round}: only the two policies ran"
        );
        let changes = completes.windows(2).filter(|w| w[0].policy_sha256 != w[1].policy_sha256).count();
        let made = (sim.swaps - swaps_before) as usize;
        // A switch with no job completed before the next one (during an
        // outage) is not visible in the record; one into a new round is
        // counted in that round.
        assert!(changes <= made + 1, "round {round}: {changes} policy changes in the record, {made} switches");
        seen_in_record += changes;
        // The fakes and the simulator keep what they saw; forget it so the
        // curve shows the drain's memory.
        world.plex.clear_requests();
        world.stash.clear_requests();
        sim.steps.clear();
        rss.push(rss_kib());
        db_bytes.push(file_len(&db) + file_len(&wal));
    }
    let summary = match sim.session.run_task("outage_summary", "{\"days\":3650}") {
        Ok(Ok(text)) => text,
        other => panic!("outage summary: {other:?}"),
    };
    let outages = rounds / 2 + rounds.div_ceil(4) / 2;
    assert!(summary.contains("outage(s)"), "{summary}");
    // Memory: the second half of the run uses no more than the first half
    // plus a margin (the page cache of a larger database, allocator slack).
    let half = rss.len() / 2;
    let first = rss[..half.max(1)].iter().copied().max().unwrap_or(0);
    let second = rss[half..].iter().copied().max().unwrap_or(0);
    assert!(second <= first + 16 * 1024, "memory grows: {rss:?} KiB");
    // The database: finished jobs leave no rows, so it stays the size of
    // one round (the WAL is capped by SQLite's checkpoints).
    let db_first = db_bytes[..half.max(1)].iter().copied().max().unwrap_or(0);
    let db_last = db_bytes.last().copied().unwrap_or(0);
    assert!(db_last <= db_first.max(1) * 2 + (1 << 20), "the database grows: {db_bytes:?}");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let rows: i64 = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM jobs) + (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM dead_letters)",
            [],
            |r| r.get(0),
        )
        .expect("rows");
    assert_eq!(rows, 0, "no finished rows are kept");
    let made = sim.swaps as usize;
    assert!(
        made + 1 >= asked && made <= asked,
        "the loop switched policy as asked: {made} switches made, {asked} asked"
    );
    assert!(made >= swaps_wanted.saturating_sub(1), "{made} switches made, {swaps_wanted} wanted");
    assert!(seen_in_record > 0 || swaps_wanted == 0, "the record shows the switches");
    println!("SOAK: {made} policy switches made ({asked} asked, {seen_in_record} visible in the per-job record)");
    println!(
        "SOAK: {} jobs in {rounds} rounds of {scenes} with ~{outages} outages; RSS per round (MiB): {:?}; database + WAL (KiB): {:?}",
        rounds * scenes,
        rss.iter().map(|k| k / 1024).collect::<Vec<_>>(),
        db_bytes.iter().map(|b| b / 1024).collect::<Vec<_>>()
    );
}
