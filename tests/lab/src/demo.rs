//! `stash2plex-lab demo`: the real engine against a simulated Stash and Plex
//! on loopback. It spawns the stash2plex binary the way Stash does, once per
//! hook and once for the Process Queue task, then shows what changed in Plex.

use crate::spawn::Plugin;
use serde_json::{Value, json};
use stash2plex_testkit::fake_stash::StashAuth;
use stash2plex_testkit::{FakePlex, FakeStash, fixtures};
use std::time::Instant;

const TOKEN: &str = "demo-plex-token-0001";

pub fn run(plugin: &Plugin, n: usize) -> Result<(), String> {
    let stash = FakeStash::start(StashAuth::None).map_err(|e| format!("cannot start the simulated Stash: {e}"))?;
    let plex = FakePlex::start(Some(TOKEN)).map_err(|e| format!("cannot start the simulated Plex: {e}"))?;
    let pairs = fixtures::install_demo(&stash, &plex, n);
    stash.set_plugin_settings(
        stash2plex::env::DEFAULT_PLUGIN_ID,
        json!({ "plex_url": plex.url(), "plex_token": TOKEN }),
    );
    let tmp = std::env::temp_dir().join(format!("stash2plex-demo-{}", std::process::id()));
    let plugin_dir = tmp.clone();
    std::fs::create_dir_all(&plugin_dir).map_err(|e| format!("cannot create {}: {e}", plugin_dir.display()))?;
    let connection = json!({"Scheme": "http", "Host": "0.0.0.0", "Port": stash.port(),
        "SessionCookie": null, "PluginDir": plugin_dir});

    println!("stash2plex demo");
    println!("  simulated Stash  {}  ({n} scenes)", stash.url());
    println!("  simulated Plex   {}  (library \"Stash\" at {})", plex.url(), fixtures::DEMO_LIBRARY_ROOT);
    println!("  plugin folder    {}", plugin_dir.display());
    println!();
    let before: Vec<_> = pairs.iter().map(|(_, rk)| plex.item(rk)).collect();

    // 1. Stash saves each scene and runs the hook: the change is recorded.
    let mut hook_ms = Vec::new();
    for (id, _) in &pairs {
        let stdin = json!({"server_connection": connection,
            "args": {"hookContext": {"id": id.parse::<u64>().unwrap_or(0), "type": "Scene.Update.Post",
                     "input": {"id": id, "title": null}, "inputFields": ["id", "title"]}}});
        let start = Instant::now();
        let answer = plugin.invoke(&stdin)?;
        hook_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        if answer.get("error").is_some() {
            return Err(format!("the hook for scene {id} failed: {answer}"));
        }
    }
    let requests_during_hooks = plex.requests().len() + stash.requests().len();
    let first_hook_ms = hook_ms.first().copied().unwrap_or(0.0);
    hook_ms.sort_by(f64::total_cmp);
    println!(
        "1. Recorded {} scene changes through the hook: median {:.1} ms per hook process \
         (the first one, on a fresh install: {:.1} ms; hooks never load the policy); \
         requests to Plex or Stash during hooks: {}",
        pairs.len(),
        hook_ms[hook_ms.len() / 2],
        first_hook_ms,
        requests_during_hooks
    );

    // 2. The user (or the plugin) runs Process Queue.
    let start = Instant::now();
    let answer = plugin.invoke(&json!({"server_connection": connection, "args": {"mode": "process_queue"}}))?;
    let took = start.elapsed();
    let summary =
        answer.get("output").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| answer.to_string());
    println!("2. Process Queue ({:.0} ms): {summary}", took.as_secs_f64() * 1000.0);
    println!();

    // 3. What Plex has now.
    println!("{:<6} {:<34} {:<24} {:<11} locked", "scene", "Plex title before → after", "studio", "date");
    let mut synced = 0;
    for ((id, rk), before) in pairs.iter().zip(before) {
        let Some(after) = plex.item(rk) else { continue };
        let before_title = before.map(|b| b.title).unwrap_or_default();
        if after.locked_fields.contains("title") {
            synced += 1;
        }
        println!(
            "{:<6} {:<34} {:<24} {:<11} {}",
            id,
            cut(&format!("{} → {}", cut(&before_title, 14), after.title), 34),
            cut(after.studio.as_deref().unwrap_or("-"), 24),
            after.originally_available_at.as_deref().unwrap_or("-"),
            after.locked_fields.iter().cloned().collect::<Vec<_>>().join(",")
        );
    }
    let puts = plex.count("PUT", "/");
    println!();
    println!(
        "{synced}/{} scenes synced; {} Plex requests in all ({} edits), {:.2} per scene.",
        pairs.len(),
        plex.requests().len(),
        puts,
        plex.requests().len() as f64 / pairs.len() as f64
    );

    // 4. Run it again: nothing changed, so nothing is written.
    plex.clear_requests();
    for (id, _) in pairs.iter().take(3) {
        let stdin = json!({"server_connection": connection,
            "args": {"hookContext": {"id": id.parse::<u64>().unwrap_or(0), "type": "Scene.Update.Post", "input": null}}});
        plugin.invoke(&stdin)?;
    }
    plugin.invoke(&json!({"server_connection": connection, "args": {"mode": "process_queue"}}))?;
    println!(
        "Re-syncing 3 unchanged scenes: {} requests, {} edits (Plex already matches).",
        plex.requests().len(),
        plex.count("PUT", "/")
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}
