//! `stash2plex-lab bench`: measures what the roadmap sets goals for and prints a
//! report. Everything runs against the loopback simulators; nothing here is
//! asserted (tests check behaviour, this reports speed).
//!
//! - hook wall time: one process per hook, as Stash runs it, warm cache;
//! - policy load: compile with Cranelift (cold) vs deserialize the cached
//!   artifact (warm), in-process, plus instantiate + configure;
//! - Plex requests per synced scene, first sync and steady state;
//! - drain throughput on the loopback simulator.

use crate::spawn::Plugin;
use serde_json::{Map, json};
use stash2plex::capabilities::HostState;
use stash2plex::clock::SystemClock;
use stash2plex::runtime::session::PolicySession;
use stash2plex::runtime::{self, Limits, Runtime};
use stash2plex::store::Queue;
use stash2plex_testkit::fake_stash::StashAuth;
use stash2plex_testkit::{FakePlex, FakeStash, fixtures};
use std::sync::Arc;
use std::time::Instant;

const TOKEN: &str = "bench-plex-token-0001";

pub struct BenchArgs {
    pub spawns: usize,
    pub scenes: usize,
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.9), v[0])
}

pub fn run(plugin: &Plugin, args: BenchArgs) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("stash2plex-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;

    println!(
        "stash2plex bench (stash2plex {}, policy {} KiB, plugin binary {} KiB)",
        env!("CARGO_PKG_VERSION"),
        runtime::DEFAULT_POLICY.len() / 1024,
        std::fs::metadata(&plugin.exe).map(|m| m.len() / 1024).unwrap_or(0)
    );
    println!();

    // --- policy load, in-process -------------------------------------------
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut inst = Vec::new();
    for i in 0..5 {
        let cache = work.join(format!("cache-{i}"));
        let t = Instant::now();
        Runtime::load_builtin(Some(&cache), Limits::default()).map_err(|e| e.to_string())?;
        cold.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let rt = Runtime::load_builtin(Some(&cache), Limits::default()).map_err(|e| e.to_string())?;
        warm.push(t.elapsed().as_secs_f64() * 1000.0);
        let q = Queue::open_in_memory().map_err(|e| e.to_string())?;
        let t = Instant::now();
        PolicySession::start(rt, HostState::new(Arc::new(SystemClock), 1, q), &Map::new())
            .map_err(|e| e.to_string())?;
        inst.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (c50, _, _) = stats(cold);
    let (w50, _, wmin) = stats(warm);
    let (i50, _, _) = stats(inst);
    println!("policy load (in-process, median of 5)");
    println!("  cold: compile with Cranelift + write cache   {c50:8.2} ms");
    println!("  warm: deserialize cached code + link         {w50:8.2} ms   (min {wmin:.2}; goal < 5 ms)");
    println!("  instantiate + configure                      {i50:8.2} ms");
    println!();

    // --- the simulated world ------------------------------------------------
    let stash = FakeStash::start(StashAuth::None).map_err(|e| e.to_string())?;
    let plex = FakePlex::start(Some(TOKEN)).map_err(|e| e.to_string())?;
    let pairs = fixtures::install_demo(&stash, &plex, args.scenes.max(1));
    stash.set_plugin_settings(
        stash2plex::env::DEFAULT_PLUGIN_ID,
        json!({ "plex_url": plex.url(), "plex_token": TOKEN }),
    );
    let plugin_dir = work.join("plugin");
    std::fs::create_dir_all(&plugin_dir).map_err(|e| e.to_string())?;
    let conn = json!({"Scheme": "http", "Host": "127.0.0.1", "Port": stash.port(), "SessionCookie": null, "PluginDir": plugin_dir});
    let hook = |id: &str| {
        json!({"server_connection": conn, "args": {"hookContext": {"id": id.parse::<u64>().unwrap_or(0),
            "type": "Scene.Update.Post", "input": {"id": id}, "inputFields": ["id", "title"]}}})
    };

    // --- hook wall time -----------------------------------------------------
    let t = Instant::now();
    plugin.invoke(&hook(&pairs[0].0))?;
    let first = t.elapsed().as_secs_f64() * 1000.0;
    let mut times = Vec::new();
    for k in 0..args.spawns.max(1) {
        let (id, _) = &pairs[k % pairs.len()];
        let t = Instant::now();
        plugin.invoke(&hook(id))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (h50, h90, hmin) = stats(times);
    println!("hook process, spawn to exit ({} spawns after a warm-up)", args.spawns.max(1));
    println!("  first hook (compiles the policy)             {first:8.2} ms");
    println!("  median                                       {h50:8.2} ms   (goal < 5 ms)");
    println!("  p90 / min                                    {h90:8.2} / {hmin:.2} ms");
    println!("  Plex requests during hooks                   {:8}", plex.requests().len());
    println!();

    // --- first sync of every scene -----------------------------------------
    for (id, _) in &pairs {
        plugin.invoke(&hook(id))?;
    }
    plex.clear_requests();
    let t = Instant::now();
    let out = plugin.invoke(&json!({"server_connection": conn, "args": {"mode": "process_queue"}}))?;
    let drain_ms = t.elapsed().as_secs_f64() * 1000.0;
    if out.get("error").is_some() {
        return Err(format!("process_queue failed: {out}"));
    }
    let n = pairs.len() as f64;
    let first_total = plex.requests().len();
    let listing = plex.count("GET", "/library/sections");
    println!("first sync of {} scenes (one Process Queue task)", pairs.len());
    println!(
        "  Plex requests                                {first_total:8}   ({:.2} per scene; goal ≤ 3)",
        first_total as f64 / n
    );
    println!("  of which sections + listing pages            {listing:8}");
    println!("  edits (PUT)                                  {:8}", plex.count("PUT", "/"));
    println!(
        "  task wall time                               {drain_ms:8.0} ms   ({:.0} scenes/s)",
        n / (drain_ms / 1000.0)
    );

    // --- steady state: one changed scene ------------------------------------
    let (id, _) = &pairs[pairs.len() / 2];
    let mut scene = stash.scene(id).ok_or("scene vanished")?;
    scene.title = Some(format!("{} (edited)", scene.title.unwrap_or_default()));
    stash.upsert_scene(scene);
    plugin.invoke(&hook(id))?;
    plex.clear_requests();
    plugin.invoke(&json!({"server_connection": conn, "args": {"mode": "process_queue"}}))?;
    println!("one edited scene, next Process Queue");
    println!(
        "  Plex requests                                {:8}   (sections + listing are re-read once per drain)",
        plex.requests().len()
    );
    println!(
        "  of which for the scene itself                {:8}",
        plex.requests().len() - plex.count("GET", "/library/sections")
    );

    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
