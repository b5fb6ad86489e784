//! Stash tasks (`args.mode`). Task names and modes are the original plugin's
//! where they exist, so a user switching plugins finds the same buttons.
//!
//! Host tasks work on the queue database directly (status, dead letters).
//! Policy tasks (health check, breaker control, outage report) are passed
//! to the policy's `run-task` with the full set of capabilities.

use crate::app::Env;
use crate::drain;
use crate::obfuscate::Obfuscator;
use crate::plex_client::PlexClient;
use crate::plugin_io::Answer;
use crate::policy_session::PolicySession;
use crate::queue::{DeadFilter, Queue};
use crate::settings::{self, HostSettings};
use crate::stash_client::StashClient;
use crate::stash_log::{self, Level};
use serde_json::{Map, Value};

const DAY_MS: i64 = 86_400_000;
/// Dead letters that failed up to this long after an outage ended still
/// count as "from that outage" (their last attempt ran into it).
const OUTAGE_GRACE_MS: i64 = 5 * 60_000;

pub const MODES: &[(&str, &str)] = &[
    ("process_queue", "Process Queue: sync every due change to Plex"),
    ("queue_status", "View Queue Status (queue, dead letters, breaker, outages)"),
    ("health_check", "Health Check: probe Plex now and show the breaker"),
    ("outage_summary", "Outage Summary Report (args: days)"),
    ("breaker_open", "Pause syncing: open the circuit breaker (args: minutes)"),
    ("breaker_close", "Resume syncing: close the circuit breaker"),
    ("breaker_reset", "Reset the circuit breaker and its history of trips"),
    ("dlq_list", "List dead letters (args: class, limit)"),
    ("dlq_requeue", "Re-queue dead letters (args: class, or all: true)"),
    ("recover_outage_jobs", "Re-queue dead letters from the last outage (args: outage index, 0 = last)"),
    ("purge_dlq", "Delete dead letters older than N days (args: days, default 30)"),
    ("clear_dlq", "Delete every dead letter"),
];

/// Tasks the policy runs itself.
const POLICY_TASKS: &[&str] = &["health_check", "outage_summary", "breaker_open", "breaker_close", "breaker_reset"];

pub fn run(env: &Env, mode: Option<&str>, args: &Map<String, Value>) -> Answer {
    let Some(mode) = mode.filter(|m| !m.is_empty()) else {
        return Answer::Error(format!("no task mode given (args.mode); known modes: {}", known_modes()));
    };
    crate::info!("Task starting: {mode}");
    let answer = match mode {
        "process_queue" => process_queue(env, args),
        "queue_status" => queue_status(env),
        "dlq_list" => dlq_list(env, args),
        "dlq_requeue" => dlq_requeue(env, args),
        "recover_outage_jobs" => recover_outage_jobs(env, args),
        "purge_dlq" => purge_dlq(env, args),
        "clear_dlq" => clear_dlq(env),
        m if POLICY_TASKS.contains(&m) => policy_task(env, m, args),
        other => Answer::Error(format!("unknown task mode {other:?}; known modes: {}", known_modes())),
    };
    if let Answer::Output(Value::String(text)) = &answer {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            crate::info!("{line}");
        }
    }
    answer
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
    let policy_settings = Value::Object(settings::for_policy(&map, &settings.plex_token)).to_string();
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

/// A configured policy with every capability: Stash, Plex, the queue.
fn connected_session(env: &Env) -> Result<(PolicySession, HostSettings), String> {
    let mut queue = env.open_queue()?;
    let connected = connect(env, &mut queue)?;
    let client_id = device_id(&mut queue);
    let s = &connected.settings;
    let plex = PlexClient::new(&s.plex_url, &s.plex_token, &client_id, s.connect_timeout, s.read_timeout);
    let mut state = env.host_state(queue);
    state.obfuscator = Obfuscator::new(s.obfuscate_paths);
    state.plex = Some(plex);
    state.stash = Some(connected.stash);
    let runtime = env.load_runtime()?;
    let session = PolicySession::start(runtime, state, connected.policy_settings).map_err(|e| e.to_string())?;
    Ok((session, connected.settings))
}

/// A policy with only the queue (reports that need no network).
fn offline_session(env: &Env) -> Result<PolicySession, String> {
    let queue = env.open_queue()?;
    let cached = Env::cached_settings(&queue);
    let mut state = env.host_state(queue);
    state.obfuscator = Obfuscator::new(cached.obfuscate_paths);
    state.plex_forbidden_reason = Some("this task does not contact Plex".into());
    let runtime = env.load_runtime()?;
    PolicySession::start(runtime, state, cached.policy_json).map_err(|e| e.to_string())
}

fn process_queue(env: &Env, args: &Map<String, Value>) -> Answer {
    let background = args.get("background").and_then(settings::parse_bool).unwrap_or(false);
    let mode = if background { drain::DrainMode::BACKGROUND } else { drain::DrainMode::FOREGROUND };
    let mut jobs = 0u64;
    let mut last: Option<Answer> = None;
    let mut stopped: Option<drain::Stopped> = None;
    // A background drainer re-checks after releasing the lock, so a change
    // recorded while it was finishing is never left behind (see autodrain).
    for _round in 0..100 {
        let round = match drain_once(env, mode, &mut jobs) {
            Ok(r) => r,
            Err(answer) => return last.unwrap_or(answer),
        };
        // Only when the queue was empty at the end of the round and a job is
        // due now: a hook recorded it while this drainer was finishing. Not
        // after failures (a failing policy must not be re-run in a loop) and
        // not when the policy chose to wait (breaker open, token pause).
        let again = background && round.1 == drain::Stopped::Empty && ready_now(env) > 0;
        stopped = Some(round.1.clone());
        last = Some(Answer::ok(round.0));
        if !again {
            break;
        }
    }
    let answer = last.unwrap_or_else(|| Answer::ok("nothing to do"));
    // Work is left that a drainer should come back for (Plex down, token
    // paused): hand over to a background drainer, not after failures.
    let handover = matches!(stopped, Some(drain::Stopped::WaitLimit | drain::Stopped::OnlyWaits));
    if !background && handover && handover_allowed(env) {
        // Plex did not come back while the task waited: hand over.
        match crate::autodrain::ensure_drainer(env) {
            Ok(true) => crate::info!("A background drainer keeps retrying; Stash's task queue is free again."),
            Ok(false) => {}
            Err(e) => crate::warn!("{e}"),
        }
    }
    stash_log::progress(1.0);
    answer
}

fn ready_now(env: &Env) -> u64 {
    env.open_queue().ok().and_then(|q| q.counts(env.opts.clock.now_ms()).ok()).map(|c| c.ready).unwrap_or(0)
}

/// Jobs are due and background drainers are allowed.
fn handover_allowed(env: &Env) -> bool {
    let Ok(queue) = env.open_queue() else {
        return false;
    };
    let ready = queue.counts(env.opts.clock.now_ms()).map(|c| c.ready).unwrap_or(0);
    ready > 0 && crate::autodrain::enabled(Env::cached_settings(&queue).auto_drain)
}

/// One drain under the lock: the summary, and why it stopped. `Err`
/// carries the answer to give when nothing could be drained (busy,
/// disabled, misconfigured).
fn drain_once(env: &Env, mode: drain::DrainMode, jobs: &mut u64) -> Result<(String, drain::Stopped), Answer> {
    let _lock = match drain::try_lock(&env.data_dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Err(Answer::ok("another stash2plex process is already draining the queue")),
        Err(e) => return Err(Answer::Error(e)),
    };
    let (mut session, settings) = connected_session(env).map_err(Answer::Error)?;
    if !settings.enabled {
        return Err(Answer::ok(
            "disabled (the enabled setting is off); changes are still recorded and will sync when it is on",
        ));
    }
    if mode.linger_ms > 0 && !settings.auto_drain {
        return Err(Answer::ok("auto_drain is off: background draining is disabled"));
    }
    if settings.dlq_retention_days > 0
        && let Some(state) = session.state_mut()
    {
        let before = env.opts.clock.now_ms() - i64::from(settings.dlq_retention_days) * DAY_MS;
        match state.queue.purge_dead(before) {
            Ok(0) => {}
            Ok(n) => crate::info!(
                "Removed {n} dead letter(s) older than {} day(s) (dlq_retention_days)",
                settings.dlq_retention_days
            ),
            Err(e) => crate::warn!("Could not purge old dead letters: {e}"),
        }
    }
    let now = env.opts.clock.now_ms();
    let Some(before) = session.state().and_then(|s| s.queue.counts(now).ok()) else {
        return Err(Answer::Error("cannot read the queue".into()));
    };
    crate::info!(
        "Processing the queue: {} due, {} waiting to retry, {} dead-lettered",
        before.ready,
        before.waiting,
        before.dead
    );
    let report = drain::run(&mut session, env.opts.clock.as_ref(), before.ready, mode);
    *jobs += report.steps_worked;
    let Some(state) = session.state() else {
        return Err(Answer::Error("the policy session ended unexpectedly".into()));
    };
    let now = env.opts.clock.now_ms();
    let after = state.queue.counts(now).unwrap_or_default();
    let next = match after.next_due_ms {
        Some(t) => format!("; next retry in {}", human_secs((t - now).max(0) / 1000)),
        None => String::new(),
    };
    Ok((
        format!(
            "Processed {} job(s) with {} Plex request(s) ({} edits); {}. Left: {} due, {} waiting, {} dead-lettered{next}",
            *jobs,
            state.stats.plex_requests,
            state.stats.plex_puts,
            report.describe(),
            after.ready,
            after.waiting,
            after.dead
        ),
        report.stopped,
    ))
}

fn policy_task(env: &Env, name: &str, args: &Map<String, Value>) -> Answer {
    let mut session = match connected_session(env) {
        Ok((s, _)) => s,
        Err(e) => return Answer::Error(e),
    };
    match session.run_task(name, &Value::Object(args.clone()).to_string()) {
        Ok(Ok(report)) => Answer::ok(report),
        Ok(Err(msg)) => Answer::Error(msg),
        Err(e) => Answer::Error(e.to_string()),
    }
}

fn queue_status(env: &Env) -> Answer {
    let queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let now = env.opts.clock.now_ms();
    let mut report = match status_report(&queue, now) {
        Ok(r) => r,
        Err(e) => return Answer::Error(e),
    };
    drop(queue);
    // The policy's view: breaker, probes, outages. Best effort: the queue
    // report stands on its own if the policy cannot answer.
    match offline_session(env).and_then(|mut s| match s.run_task("resilience_status", "{}") {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(e.to_string()),
    }) {
        Ok(text) => {
            report.push_str(text.trim_end());
            report.push('\n');
        }
        Err(e) => report.push_str(&format!("(the policy could not report its state: {e})\n")),
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
        out.push_str(&format!("Next retry in: {}\n", human_secs((t - now).max(0) / 1000)));
    }
    let pending = queue.pending(5).map_err(|e| e.to_string())?;
    for p in pending.iter().filter(|p| p.attempt > 0) {
        out.push_str(&format!(
            "  scene {}: attempt {}, due in {}, last error: {}\n",
            p.scene_id,
            p.attempt,
            human_secs((p.not_before_ms - now).max(0) / 1000),
            p.last_error.as_deref().unwrap_or("-")
        ));
    }
    if c.dead > 0 {
        out.push_str("Dead letters by class:\n");
        for (class, n) in queue.dead_letter_classes().map_err(|e| e.to_string())? {
            out.push_str(&format!("  {class}: {n}\n"));
        }
    }
    Ok(out)
}

fn human_secs(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

fn arg_str<'a>(args: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A non-negative integer argument; Stash passes `defaultArgs` as strings.
fn arg_u64(args: &Map<String, Value>, key: &str, default: u64, max: u64) -> Result<u64, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) if let Some(v) = n.as_u64().filter(|v| *v <= max) => Ok(v),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(default),
        Some(Value::String(s)) => match s.trim().parse::<u64>() {
            Ok(v) if v <= max => Ok(v),
            _ => Err(format!("{key} must be a whole number from 0 to {max}, got {s:?}")),
        },
        Some(other) => Err(format!("{key} must be a whole number from 0 to {max}, got {other}")),
    }
}

fn dlq_list(env: &Env, args: &Map<String, Value>) -> Answer {
    let queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let limit = match arg_u64(args, "limit", 50, 10_000) {
        Ok(l) => l as u32,
        Err(e) => return Answer::Error(e),
    };
    let filter = DeadFilter { class: arg_str(args, "class").map(str::to_string), ..DeadFilter::all() };
    let rows = match queue.dead_letters_matching(&filter, limit) {
        Ok(r) => r,
        Err(e) => return Answer::Error(e.to_string()),
    };
    if rows.is_empty() {
        return Answer::ok("The dead-letter queue is empty.");
    }
    let now = env.opts.clock.now_ms();
    let mut out = format!("=== Dead letters ({} shown) ===\n", rows.len());
    for d in rows {
        out.push_str(&format!(
            "#{} scene {} [{}] {} attempt(s); change recorded {} ago, first failed {} ago, last failed {} ago: {}\n    {}\n",
            d.id,
            d.scene_id,
            d.error_class,
            d.attempts,
            human_secs((now - d.first_enqueued_ms).max(0) / 1000),
            human_secs((now - d.first_failed_ms).max(0) / 1000),
            human_secs((now - d.failed_ms).max(0) / 1000),
            d.message,
            d.detail.replace('\n', "\n    ")
        ));
    }
    Answer::ok(out)
}

fn dlq_requeue(env: &Env, args: &Map<String, Value>) -> Answer {
    let class = arg_str(args, "class").map(str::to_string);
    let all = args.get("all").and_then(settings::parse_bool).unwrap_or(false);
    if class.is_none() && !all {
        return Answer::Error("say which dead letters to re-queue: class (e.g. plex-unavailable) or all: true".into());
    }
    requeue(env, DeadFilter { class, ..DeadFilter::all() }, "")
}

fn requeue(env: &Env, filter: DeadFilter, what: &str) -> Answer {
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    match queue.requeue_dead(&filter, env.opts.clock.now_ms()) {
        Ok(0) => Answer::ok(format!("No dead letters matched{what}; nothing re-queued.")),
        Ok(n) => Answer::ok(format!("Re-queued {n} dead letter(s){what}; run Process Queue to sync them.")),
        Err(e) => Answer::Error(e.to_string()),
    }
}

fn recover_outage_jobs(env: &Env, args: &Map<String, Value>) -> Answer {
    let index = match arg_u64(args, "index", 0, 1000) {
        Ok(i) => i,
        Err(e) => return Answer::Error(e),
    };
    let window = offline_session(env).and_then(|mut s| {
        match s.run_task("outage_window", &serde_json::json!({ "index": index }).to_string()) {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }
    });
    let text = match window {
        Ok(t) => t,
        Err(e) => return Answer::ok(format!("No completed outage to recover from ({e}).")),
    };
    let mut parts = text.split_whitespace().map(str::parse::<i64>);
    let (Some(Ok(start)), Some(Ok(end))) = (parts.next(), parts.next()) else {
        return Answer::Error(format!("the policy answered an outage window that is not two times: {text:?}"));
    };
    let filter = DeadFilter { class: None, since_ms: start, until_ms: end.saturating_add(OUTAGE_GRACE_MS) };
    requeue(env, filter, " from that outage")
}

fn purge_dlq(env: &Env, args: &Map<String, Value>) -> Answer {
    let days = match arg_u64(args, "days", 30, 36_500) {
        Ok(d) => d as i64,
        Err(e) => return Answer::Error(e),
    };
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    let before = env.opts.clock.now_ms() - days * DAY_MS;
    match queue.purge_dead(before) {
        Ok(n) => Answer::ok(format!("Removed {n} dead letter(s) older than {days} day(s).")),
        Err(e) => Answer::Error(e.to_string()),
    }
}

fn clear_dlq(env: &Env) -> Answer {
    let mut queue = match env.open_queue() {
        Ok(q) => q,
        Err(e) => return Answer::Error(e),
    };
    match queue.purge_dead(i64::MAX) {
        Ok(0) => Answer::ok("The dead-letter queue is already empty."),
        Ok(n) => Answer::ok(format!("Removed {n} dead letter(s).")),
        Err(e) => Answer::Error(e.to_string()),
    }
}
