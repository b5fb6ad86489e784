//! Reaching Stash and Plex for an invocation: the plugin settings from
//! Stash, the clients, and policy sessions with the capabilities the
//! invocation needs (everything, or the queue only).

use crate::condition::{self, Condition, Kind};
use crate::env::{CachedSettings, Env};
use crate::net::plex::PlexClient;
use crate::net::stash::StashClient;
use crate::obfuscate::Obfuscator;
use crate::plugin::log::{self, Level};
use crate::runtime::session::{PolicySession, SessionError};
use crate::settings::{self, HostSettings};
use crate::store::Queue;
use crate::text::joined;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The plugin settings as Stash stores them, validated for the host.
pub struct Connected {
    pub settings: HostSettings,
    /// The whole map (with secrets; the session removes them).
    pub map: Map<String, Value>,
    pub stash: StashClient,
}

/// Read the settings from Stash (with its API key, if it has one) and
/// validate the host's own. The copy hooks use is saved on the way.
pub fn connect(env: &Env, queue: &mut Queue) -> Result<Connected, String> {
    let conn = &env.input.connection;
    let cookie = env.session_cookie();
    let mut stash = StashClient::new(&conn.base_url(), cookie.as_deref(), conn.api_key.as_deref());
    let (map, api_key) = stash
        .plugin_settings(&env.opts.plugin_id)
        .map_err(|e| format!("could not read the plugin settings from Stash: {e}"))?;
    if api_key.is_some() {
        stash.set_api_key(api_key);
    }
    Env::cache_settings(queue, &map);
    let env_lookup = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let settings = settings::from_map(&map, &env_lookup).map_err(|problems| {
        for p in &problems {
            crate::error!("Setting problem: {p}");
        }
        let text = format!("the plugin settings need attention: {}", joined(&problems));
        let told = format!("Syncing to Plex waits: {text}. Fix them in Settings → Plugins → Stash2Plex.");
        condition::persist(queue, &Condition::new(Kind::Settings, told));
        text
    })?;
    log::register_secret(&settings.plex_token);
    if settings.debug_logging {
        log::set_min_level(Level::Trace);
    }
    Ok(Connected { settings, map, stash })
}

/// The Plex client id, kept across runs so Plex does not announce a new
/// device every time.
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

/// A policy session with every capability, and what it was started with.
pub struct Linked {
    pub session: PolicySession,
    pub settings: HostSettings,
    /// The plugin settings as Stash stored them (a drainer watches them).
    pub settings_map: Map<String, Value>,
    pub stash: Arc<StashClient>,
}

/// A configured policy with every capability: Stash, Plex, the queue.
pub fn connected_session(env: &Env) -> Result<Linked, String> {
    let mut queue = env.open_queue()?;
    let connected = connect(env, &mut queue)?;
    let client_id = device_id(&mut queue);
    let s = &connected.settings;
    let proxy = match &s.plex_proxy {
        None => None,
        Some(url) => {
            Some(ureq::Proxy::new(url).map_err(|e| format!("plex_proxy {url:?} cannot be used as a proxy ({e})"))?)
        }
    };
    let plex = PlexClient::new(&s.plex_url, &s.plex_token, &client_id, s.connect_timeout, s.read_timeout, proxy);
    let stash = Arc::new(connected.stash);
    let mut state = env.host_state(queue);
    state.log.obfuscator = Obfuscator::new(s.obfuscate_paths);
    state.plex.client = Some(Box::new(plex));
    state.plex.images = Some(stash.clone());
    state.stash.client = Some(stash.clone());
    let (runtime, why) = env.load_runtime(&connected.map)?;
    let policy_map = settings::without_secrets(&connected.map);
    let mut session = PolicySession::start_because(runtime, state, &policy_map, why).map_err(|e| {
        if let SessionError::Settings(problems) = &e
            && let Ok(mut queue) = env.open_queue()
        {
            let told = format!(
                "Syncing to Plex waits: the plugin settings need attention: {}. Fix them in Settings → Plugins → Stash2Plex.",
                joined(problems)
            );
            condition::persist(&mut queue, &Condition::new(Kind::Settings, told));
        }
        e.to_string()
    })?;
    let watch = env.policy_watch(&connected.map, &session.policy);
    session.attach_watch(watch);
    Ok(Linked { session, settings: connected.settings, settings_map: connected.map, stash })
}

/// A policy with the queue only (hooks and reports that need no network),
/// configured with the settings the last connected invocation saw.
pub fn offline_session(
    env: &Env,
    queue: Queue,
    cached: &CachedSettings,
    forbidden: &str,
) -> Result<PolicySession, String> {
    let mut state = env.host_state(queue);
    state.log.obfuscator = Obfuscator::new(cached.obfuscate_paths);
    state.plex.forbidden = Some(forbidden.into());
    let (runtime, why) = env.load_runtime(&cached.map)?;
    PolicySession::start_because(runtime, state, &cached.map, why).map_err(|e| e.to_string())
}
