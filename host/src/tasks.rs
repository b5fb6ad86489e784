//! Stash tasks (`args.mode`). Task names and modes are the original plugin's
//! where they exist, so a user switching plugins finds the same buttons.

use crate::app::Env;
use crate::drain;
use crate::obfuscate::Obfuscator;
use crate::plex_client::PlexClient;
use crate::plugin_io::Answer;
use crate::policy_session::PolicySession;
use crate::queue::Queue;
use crate::settings::{self, HostSettings};
use crate::stash_client::StashClient;
use crate::stash_log::{self, Level};
use serde_json::{Map, Value};

pub const MODES: &[(&str, &str)] =
    &[("process_queue", "Process Queue: sync every due change to Plex"), ("queue_status", "View Queue Status")];

pub fn run(env: &Env, mode: Option<&str>, _args: &Map<String, Value>) -> Answer {
    let Some(mode) = mode.filter(|m| !m.is_empty()) else {
        return Answer::Error(format!("no task mode given (args.mode); known modes: {}", known_modes()));
    };
    crate::info!("Task starting: {mode}");
    match mode {
        "process_queue" => process_queue(env),
        "queue_status" => queue_status(env),
        other => Answer::Error(format!("unknown task mode {other:?}; known modes: {}", known_modes())),
    }
}

fn known_modes() -> String {
    MODES.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
}

/// Stash connection + validated settings, for tasks that talk to Plex.
pub struct Connected {
    pub settings: HostSettings,
    pub policy_settings: String,
    pub stash: StashClient,
}

pub fn connect(env: &Env, queue: &mut Queue) -> Result<Connected, String> {
    let conn = &env.input.connection;
    let mut stash = StashClient::new(&conn.base_url(), conn.cookie_value(), conn.api_key.as_deref());
    let (map, api_key) = stash
        .plugin_settings(&env.opts.plugin_id)
        .map_err(|e| format!("could not read the plugin settings from Stash: {e}"))?;
    if api_key.is_some() {
        stash.set_api_key(api_key);
    }
    let env_lookup = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let settings = settings::from_map(&map, &env_lookup).map_err(|problems| {
        for p in &problems {
            crate::error!("Setting problem: {p}");
        }
        format!("the plugin settings need attention: {}", problems.join("; "))
    })?;
    stash_log::register_secret(&settings.plex_token);
    if settings.debug_logging {
        stash_log::set_min_level(Level::Trace);
    }
    let policy_settings = Value::Object(settings::for_policy(&map)).to_string();
    // Hooks run the policy with the settings the last task saw.
    if let Err(e) = queue.host_set("policy_settings", &policy_settings) {
        crate::warn!("Could not save the settings for hooks: {e}");
    }
    Ok(Connected { settings, policy_settings, stash })
}

fn device_id(queue: &mut Queue) -> String {
    if let Ok(Some(id)) = queue.host_get("device_id") {
        return id;
    }
    let id = format!("stash2plex-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    if let Err(e) = queue.host_set("device_id", &id) {
        crate::warn!("Could not save the Plex client id: {e}");
    }
    id
}

fn process_queue(env: &Env) -> Answer {
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let connected = match connect(env, &mut queue) {
        Ok(c) => c,
        Err(e) => return Answer::Error(e),
    };
    if !connected.settings.enabled {
        return Answer::ok(
            "disabled (the enabled setting is off); changes are still recorded and will sync when it is on",
        );
    }
    let _lock = match drain::try_lock(&env.data_dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Answer::ok("another stash2plex process is already draining the queue"),
        Err(e) => return Answer::Error(e),
    };
    let now = env.opts.clock.now_ms();
    let before = queue.counts(now).unwrap_or_default();
    let client_id = device_id(&mut queue);
    let s = &connected.settings;
    let plex = PlexClient::new(&s.plex_url, &s.plex_token, &client_id, s.connect_timeout, s.read_timeout);
    let mut state = env.host_state(queue);
    state.obfuscator = Obfuscator::new(s.obfuscate_paths);
    state.plex = Some(plex);
    state.stash = Some(connected.stash);

    let runtime = match env.load_runtime() {
        Ok(r) => r,
        Err(e) => return Answer::Error(e),
    };
    let mut session = match PolicySession::start(runtime, state, connected.policy_settings) {
        Ok(s) => s,
        Err(e) => return Answer::Error(e.to_string()),
    };
    crate::info!(
        "Processing the queue: {} due, {} waiting to retry, {} dead-lettered",
        before.ready,
        before.waiting,
        before.dead
    );
    let report = drain::run(&mut session, env.opts.clock.as_ref(), before.ready);
    let Some(state) = session.state() else {
        return Answer::Error("the policy session ended unexpectedly".into());
    };
    let now = env.opts.clock.now_ms();
    let after = state.queue.counts(now).unwrap_or_default();
    let next = match report.next_due_ms {
        Some(t) => format!("; next retry in {}s", ((t - now).max(0) + 999) / 1000),
        None => String::new(),
    };
    let summary = format!(
        "Processed {} job(s) with {} Plex request(s) ({} edits); {}. Left: {} due, {} waiting, {} dead-lettered{next}",
        report.steps_worked,
        state.stats.plex_requests,
        state.stats.plex_puts,
        report.stopped,
        after.ready,
        after.waiting,
        after.dead
    );
    crate::info!("{summary}");
    stash_log::progress(1.0);
    Answer::ok(summary)
}

fn queue_status(env: &Env) -> Answer {
    let queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let now = env.opts.clock.now_ms();
    let report = match status_report(&queue, now) {
        Ok(r) => r,
        Err(e) => return Answer::Error(e),
    };
    for line in report.lines() {
        crate::info!("{line}");
    }
    Answer::ok(report)
}

pub fn status_report(queue: &Queue, now: i64) -> Result<String, String> {
    let c = queue.counts(now).map_err(|e| e.to_string())?;
    let mut out = String::from("=== Queue Status ===\n");
    out.push_str(&format!(
        "Due now: {}\nWaiting to retry: {}\nIn progress: {}\nDead letters: {}\n",
        c.ready, c.waiting, c.running, c.dead
    ));
    if let Some(t) = c.next_due_ms {
        out.push_str(&format!("Next retry in: {}s\n", ((t - now).max(0) + 999) / 1000));
    }
    let pending = queue.pending(5).map_err(|e| e.to_string())?;
    for p in pending.iter().filter(|p| p.attempt > 0) {
        out.push_str(&format!(
            "  scene {}: attempt {}, due in {}s, last error: {}\n",
            p.scene_id,
            p.attempt,
            ((p.not_before_ms - now).max(0) + 999) / 1000,
            p.last_error.as_deref().unwrap_or("-")
        ));
    }
    let dead = queue.dead_letters(5).map_err(|e| e.to_string())?;
    if !dead.is_empty() {
        out.push_str("Recent dead letters:\n");
        for d in dead {
            out.push_str(&format!(
                "  scene {} [{}] after {} attempt(s): {}\n",
                d.scene_id, d.error_class, d.attempts, d.message
            ));
        }
    }
    Ok(out)
}
