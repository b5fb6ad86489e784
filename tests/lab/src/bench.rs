//! `stash2plex-lab bench`: measures what the roadmap sets goals for and prints a
//! report. Everything runs against the loopback simulators; nothing here is
//! asserted (tests check behaviour, this reports speed).
//!
//! - hook wall time: one process per hook, as Stash runs it: 16 at once on
//!   a fresh install (a scan of new files), and warm for a scene edit and a
//!   performer rename (the goal: under 5 ms median; under 50 ms median and
//!   none over 500 ms for the 16);
//! - bursts: 200 hooks fired 32 at a time, on a fresh and on a warm install
//!   (latency median / p95 / slowest, and the largest hook's memory);
//! - policy load: compile with Cranelift (cold) vs deserialize the cached
//!   artifact (warm), in-process, plus instantiate + configure;
//! - Plex requests per changed and unchanged scene (images excluded), for
//!   the matching itself, image uploads, and Stash requests per scene, on
//!   a library of `--scenes` (the budgets: ≤ 3 per changed scene, ≤ 1 and no
//!   write per unchanged one, uploads only for changed images, ≤ 0.1 Stash
//!   requests per scene);
//! - drain throughput on the loopback simulator;
//! - policies (issue 12): load time cold and cached of the built-in policy
//!   and of the `--policy` component (e.g. one made with componentize-js),
//!   the per-call overhead (`status`, an idle `step`), the time of a hot
//!   swap, and the fuel and memory the built-in policy uses per job (the
//!   admission vectors' recorded Plex).

use crate::spawn::Plugin;
use serde_json::{Map, json};
use stash2plex::capabilities::HostState;
use stash2plex::clock::SystemClock;
use stash2plex::runtime::admission;
use stash2plex::runtime::session::PolicySession;
use stash2plex::runtime::source::Why;
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

/// Median, 95th percentile and minimum.
pub(crate) fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.95), v[0])
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
    policies(plugin, &work)?;

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
    let rename = |id: &str| {
        json!({"server_connection": conn, "args": {"hookContext": {"id": id.parse::<u64>().unwrap_or(0),
            "type": "Performer.Update.Post", "input": {"id": id, "name": "Renamed"}, "inputFields": ["id", "name"]}}})
    };

    // --- hook wall time -----------------------------------------------------
    // 16 at once on a fresh install: nothing compiled, nothing cached.
    let fresh_dir = work.join("fresh-plugin");
    std::fs::create_dir_all(&fresh_dir).map_err(|e| e.to_string())?;
    let fresh_conn = json!({"Scheme": "http", "Host": "127.0.0.1", "Port": stash.port(), "SessionCookie": null, "PluginDir": fresh_dir});
    let burst: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=16u64)
            .map(|id| {
                let stdin = json!({"server_connection": fresh_conn, "args": {"hookContext": {"id": id,
                    "type": "Scene.Create.Post", "input": null}}});
                s.spawn(move || {
                    let t = Instant::now();
                    plugin.invoke(&stdin).map(|_| t.elapsed().as_secs_f64() * 1000.0)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a hook thread panicked".to_string())))
            .collect::<Result<Vec<f64>, String>>()
    })?;
    let slowest = burst.iter().copied().fold(0.0, f64::max);
    let (b50, _, _) = stats(burst);
    let recorded = Queue::open(&fresh_dir.join("data").join("queue.db"))
        .and_then(|q| q.count_events())
        .map_err(|e| e.to_string())?;
    println!("16 hooks at once on a fresh install (a scan of new files)");
    println!("  median / slowest                             {b50:8.2} / {slowest:.2} ms   (goal < 50 / < 500 ms)");
    println!("  changes recorded                             {recorded:8} of 16");
    println!();

    // 200 hooks, 32 at a time (a scan): on a fresh install, then warm.
    let scan_dir = work.join("scan-plugin");
    std::fs::create_dir_all(&scan_dir).map_err(|e| e.to_string())?;
    let scan_conn = json!({"Scheme": "http", "Host": "127.0.0.1", "Port": stash.port(), "SessionCookie": null, "PluginDir": scan_dir});
    for pass in ["fresh install", "warm"] {
        let stdins: Vec<serde_json::Value> = (1..=200u64)
            .map(|id| {
                json!({"server_connection": scan_conn, "args": {"hookContext": {"id": id,
                    "type": "Scene.Update.Post", "input": {"id": id.to_string(), "title": "t"}, "inputFields": ["id", "title"]}}})
            })
            .collect();
        let mut took = Vec::new();
        for group in stdins.chunks(32) {
            let times: Vec<Result<f64, String>> = std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .iter()
                    .map(|stdin| {
                        s.spawn(move || {
                            let t = Instant::now();
                            plugin.invoke(stdin).map(|_| t.elapsed().as_secs_f64() * 1000.0)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a hook thread panicked".into()))).collect()
            });
            for t in times {
                took.push(t?);
            }
        }
        let slowest = took.iter().copied().fold(0.0, f64::max);
        let (m, p95, _) = stats(took);
        let recorded = Queue::open(&scan_dir.join("data").join("queue.db"))
            .and_then(|q| q.count_events())
            .map_err(|e| e.to_string())?;
        println!("200 hooks, 32 at a time, {pass}");
        println!("  median / p95 / slowest                       {m:8.2} / {p95:.2} / {slowest:.2} ms");
        println!("  events recorded (both passes so far)         {recorded:8}");
        // Memory apart from the timing (it goes through a measuring process,
        // see `spawn::child_rss`): 32 more hooks at once, each its own peak.
        let measured: Vec<Result<crate::spawn::Peak, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = stdins[..32].iter().map(|stdin| s.spawn(move || plugin.invoke_rss(stdin))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a hook thread panicked".into()))).collect()
        });
        let mut largest_rss: Option<u64> = None;
        let mut floor: Option<u64> = None;
        for m in measured {
            let peak = m?;
            largest_rss = largest_rss.max(peak.rss_kib);
            floor = floor.max(peak.floor_kib);
        }
        if let Some(kib) = largest_rss {
            println!(
                "  largest hook resident set, 32 at once        {:8.1} MiB  (wait4 via a measuring process of {:.1} MiB: a figure at that floor is at most it)",
                kib as f64 / 1024.0,
                floor.unwrap_or(0) as f64 / 1024.0
            );
        }
    }
    println!();

    plugin.invoke(&hook(&pairs[0].0))?;
    let spawns = args.spawns.max(1);
    for (label, make) in [
        ("scene edit (Scene.Update.Post)", &hook as &dyn Fn(&str) -> serde_json::Value),
        ("performer rename (Performer.Update.Post)", &rename),
    ] {
        let mut times = Vec::new();
        for k in 0..spawns {
            let (id, _) = &pairs[k % pairs.len()];
            let t = Instant::now();
            plugin.invoke(&make(id))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (h50, h95, hmin) = stats(times);
        println!("warm hook, {label}, spawn to exit ({spawns} spawns)");
        println!(
            "  median / p95 / min                           {h50:8.2} / {h95:.2} / {hmin:.2} ms   (goal < 5 ms median)"
        );
    }
    println!("  Plex requests during hooks                   {:8}", plex.requests().len());
    println!("  Stash requests during hooks                  {:8}", stash.requests().len());
    println!();
    // The bench drains itself: drop the renames' object jobs' events.
    Queue::open(&plugin_dir.join("data").join("queue.db"))
        .and_then(|mut q| q.clear_pending())
        .map_err(|e| e.to_string())?;

    // --- metadata budgets: first sync, unchanged, changed, new images ------
    let drain = |label: &str, goal_changed: Option<f64>| -> Result<(), String> {
        plex.clear_requests();
        stash.clear_requests();
        let t = Instant::now();
        let out = plugin.invoke(&json!({"server_connection": conn, "args": {"mode": "process_queue"}}))?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if out.get("error").is_some() {
            return Err(format!("process_queue failed: {out}"));
        }
        let n = pairs.len() as f64;
        let reqs = plex.requests();
        let is_image =
            |p: &str| p.ends_with("/posters") || p.ends_with("/arts") || p.ends_with("/poster") || p.ends_with("/art");
        let non_image = reqs.iter().filter(|r| !is_image(&r.path)).count();
        let matching = reqs
            .iter()
            .filter(|r| {
                r.method == "GET" && (r.path == "/library/sections" || r.path.starts_with("/library/sections/"))
            })
            .count();
        let item_reads = reqs
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/library/metadata/") && !is_image(&r.path))
            .count();
        let writes = reqs.iter().filter(|r| r.method == "PUT" && !is_image(&r.path)).count();
        let uploads = reqs.iter().filter(|r| r.method == "POST" && is_image(&r.path)).count();
        let image_reqs = reqs.iter().filter(|r| is_image(&r.path)).count();
        let graphql = stash.requests().iter().filter(|r| r.path == "/graphql").count();
        let stash_images = stash.requests().iter().filter(|r| r.path.ends_with("/screenshot")).count();
        println!("{label} ({} scenes, one Process Queue task, {ms:.0} ms)", pairs.len());
        let goal = goal_changed.map_or_else(String::new, |g| format!("; goal ≤ {g}"));
        println!("  Plex requests per scene, images excluded      {:8.3}{goal}", non_image as f64 / n);
        println!("    for matching (sections, listing pages)      {:8.3}", matching as f64 / n);
        println!("    item reads (batched + read-back)            {:8.3}", item_reads as f64 / n);
        println!("    writes (PUT edit / rate)                    {writes:8}");
        println!("  image requests / uploads                      {image_reqs:8} / {uploads}");
        println!("  Stash requests per scene (GraphQL)            {:8.3}   (goal ≤ 0.1)", graphql as f64 / n);
        println!("  Stash image downloads                         {stash_images:8}");
        println!();
        Ok(())
    };
    let hook_all = || -> Result<(), String> {
        for (id, _) in &pairs {
            plugin.invoke(&hook(id))?;
        }
        Ok(())
    };

    hook_all()?;
    drain("first sync, every scene changed, new images", Some(3.0))?;

    hook_all()?;
    drain("re-sync of unchanged scenes (goal: ≤ 1 request per scene, 0 writes, 0 uploads)", Some(1.0))?;

    for (id, _) in &pairs {
        let mut scene = stash.scene(id).ok_or("scene vanished")?;
        scene.title = Some(format!("{} (edited)", scene.title.unwrap_or_default()));
        stash.upsert_scene(scene);
    }
    hook_all()?;
    drain("every scene edited in Stash, images unchanged (goal: 0 uploads)", Some(3.0))?;

    let tenth = (pairs.len() / 10).max(1);
    stash.advance_clock(std::time::Duration::from_secs(2));
    for (id, _) in pairs.iter().take(tenth) {
        // A JPEG header, then bytes of its own: a new cover.
        let mut cover = vec![0xFF, 0xD8, 0xFF, 0xE0];
        cover.extend_from_slice(format!("new cover for {id}").as_bytes());
        stash.set_screenshot(id, cover);
    }
    hook_all()?;
    drain(
        &format!(
            "{tenth} covers regenerated in Stash, the rest unchanged (goal: {} uploads, poster + background of those only)",
            2 * tenth
        ),
        Some(1.0),
    )?;

    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The reconciliation at `n` scenes and `n` Plex items (one movie library),
/// as a user runs it: the Reconcile (report) task in one plugin process.
/// Reports wall time and the process's peak memory against the goals
/// (< 60 s and < 300 MB at 100,000), the requests to each server against
/// their budgets, and the catch-up of an unchanged library.
pub fn reconcile(plugin: &Plugin, n: usize) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("stash2plex-bench-reconcile-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let plugin_dir = work.join("plugin");
    std::fs::create_dir_all(&plugin_dir).map_err(|e| e.to_string())?;
    let stash = FakeStash::start(StashAuth::None).map_err(|e| e.to_string())?;
    let plex = FakePlex::start(Some(TOKEN)).map_err(|e| e.to_string())?;
    let t = Instant::now();
    fixtures::install_demo(&stash, &plex, n);
    let setup = t.elapsed().as_secs_f64();
    stash.set_plugin_settings("Stash2Plex", json!({"plex_url": plex.url(), "plex_token": TOKEN}));
    let conn = json!({"Scheme": "http", "Host": "127.0.0.1", "Port": stash.port(), "SessionCookie": null, "PluginDir": plugin_dir});
    // The first drain notes the catch-up watermark; it is not measured.
    plugin.invoke(&json!({"server_connection": conn, "args": {"mode": "process_queue"}}))?;

    stash.clear_requests();
    plex.clear_requests();
    let run = plugin.invoke_measured(&json!({"server_connection": conn,
        "args": {"mode": "reconcile", "scope": "all", "reconcile_mode": "report"}}))?;
    let report = run.answer.get("output").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    if let Some(e) = run.answer.get("error").and_then(|v| v.as_str()) {
        return Err(format!("the reconcile task failed: {e}"));
    }
    let plex_requests = plex.requests().len();
    let listing_pages = plex.count("GET", "/library/sections/1/all");
    let per_item = plex.count("GET", "/library/metadata");
    let asked = stash.requests();
    let stash_requests = asked.len();
    let scene_pages = stash.graphql_count("findScenes");
    let documents: Vec<&str> = asked.iter().map(|r| r.graphql.as_deref().unwrap_or_default()).collect();
    let carried = documents.iter().filter(|q| q.contains("findScenes") && q.contains("jobQueue")).count();
    let own_watch = documents.iter().filter(|q| !q.contains("findScenes") && q.contains("jobQueue")).count();
    let plex_budget = n.div_ceil(200) + 1 + 5;
    let stash_budget = n.div_ceil(250) + 5;

    stash.clear_requests();
    plugin.invoke(&json!({"server_connection": conn, "args": {"mode": "process_queue"}}))?;
    let catch_up = stash.graphql_count("findScenes");

    println!("reconciliation, {n} scenes and {n} Plex items (simulators set up in {setup:.1} s)");
    println!(
        "  wall time (one Reconcile task process)        {:8.2} s   (goal < 60 s at 100,000)",
        run.wall.as_secs_f64()
    );
    println!(
        "  peak memory of that process (VmHWM)          {:8.1} MB  (goal < 300 MB)",
        run.peak_rss_kib as f64 / 1024.0
    );
    if let Some(max) = run.max_rss_kib {
        println!("  its ru_maxrss (wait4: itself or a child)     {:8.1} MB", max as f64 / 1024.0);
    }
    if let Some(cpu) = run.cpu {
        println!(
            "  CPU time of that process                     {:8.2} s   (the rest of the wall time is the simulators)",
            cpu.as_secs_f64()
        );
    }
    println!(
        "  Plex requests                                {plex_requests:8}   (budget ceil(items/200) + sections + 5 = {plex_budget}; {listing_pages} listing pages, {per_item} item reads)"
    );
    println!(
        "  Stash requests                               {stash_requests:8}   (budget ceil(scenes/250) + 5 = {stash_budget}; {scene_pages} findScenes)"
    );
    println!(
        "    the drain's watch of Stash: {carried} carried by a findScenes page, {own_watch} asked on its own (while Plex is listed)"
    );
    let mut others: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for q in documents.iter().filter(|q| !q.contains("findScenes")) {
        let shape: String = q.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
        *others.entry(shape).or_default() += 1;
    }
    println!("    the others: {others:?}");
    println!("  catch-up, nothing changed: findScenes        {catch_up:8}   (goal 1)");
    let first = report.lines().next().unwrap_or("(no report)");
    println!("  report: {first}");
    for line in report.lines().skip(1).take_while(|l| l.starts_with("  ")) {
        println!("  {line}");
    }
    println!();
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Issue 12's figures, in-process.
fn policies(plugin: &Plugin, work: &std::path::Path) -> Result<(), String> {
    let e = |e: String| e;
    println!("policies (in-process)");
    let mut components: Vec<(String, Vec<u8>)> =
        vec![("built-in policy (as a file)".into(), runtime::DEFAULT_POLICY.to_vec())];
    if let Some(p) = &plugin.policy {
        let bytes = std::fs::read(p).map_err(|err| format!("{}: {err}", p.display()))?;
        components.push((format!("--policy {}", p.display()), bytes));
    }
    for (i, (name, bytes)) in components.iter().enumerate() {
        let cache = work.join(format!("policy-cache-{i}"));
        let t = Instant::now();
        let rt = Runtime::load(bytes, Some(&cache), Limits::default()).map_err(|err| err.to_string())?;
        let cold = ms(t);
        let t = Instant::now();
        let report = admission::admit(&rt).map_err(e)?;
        let admit = ms(t);
        let mut warm = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            Runtime::load(bytes, Some(&cache), Limits::default()).map_err(|err| err.to_string())?;
            warm.push(ms(t));
        }
        let (w50, _, _) = stats(warm);
        println!("  {name}: {} KiB, {} {}", bytes.len() / 1024, report.name, report.version);
        println!("    load cold (compile + write cache)          {cold:8.1} ms");
        println!("    load cached                                {w50:8.2} ms");
        println!(
            "    admission (4 vectors in the sandbox)       {admit:8.1} ms   {}",
            if report.passed() { "admitted" } else { "REFUSED" }
        );
        let fallback = &report.vectors[0];
        println!(
            "    one job (fallback-payload vector)          {:8.2} M fuel in all, costliest call {:.2} M, memory {:.1} MiB",
            fallback.fuel_total as f64 / 1e6,
            fallback.fuel_max as f64 / 1e6,
            fallback.memory_peak as f64 / f64::from(1 << 20)
        );
    }

    let cache = work.join("policy-cache-0");
    let builtin = Runtime::load_builtin(Some(&cache), Limits::default()).map_err(|err| err.to_string())?;
    let other_bytes = components.last().map(|(_, b)| b.clone()).unwrap_or_default();
    let other = Runtime::load(&other_bytes, Some(&cache), Limits::default()).map_err(|err| err.to_string())?;
    let q = Queue::open_in_memory().map_err(|err| err.to_string())?;
    let mut session =
        PolicySession::start(builtin.clone_loaded(), HostState::new(Arc::new(SystemClock), 1, q), &Map::new())
            .map_err(|err| err.to_string())?;
    let mut status = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        let _ = session.status();
        status.push(ms(t) * 1000.0);
        let t = Instant::now();
        let _ = session.step();
        idle.push(ms(t) * 1000.0);
    }
    let (s50, _, smin) = stats(status);
    let (i50, _, imin) = stats(idle);
    println!("  call overhead, built-in policy (median of 1000)");
    println!("    status()                                   {s50:8.1} µs   (min {smin:.1})");
    println!("    step() with nothing due                    {i50:8.1} µs   (min {imin:.1})");
    let mut swaps = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        session.swap(other.clone_loaded(), Why::Default).map_err(|err| err.to_string())?;
        swaps.push(ms(t));
        session.swap(builtin.clone_loaded(), Why::Default).map_err(|err| err.to_string())?;
    }
    let (sw50, _, swmin) = stats(swaps);
    println!(
        "  hot swap to {} (instantiate, info, configure; compiled code cached; median of 10)",
        components.last().map_or("", |(n, _)| n.as_str())
    );
    println!("    swap                                       {sw50:8.2} ms   (min {swmin:.2})");
    println!();
    Ok(())
}
