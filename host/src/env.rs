//! What an invocation works with: its options, Stash's input, the data
//! directory, the queue, and which policy runs.

use crate::capabilities::HostState;
use crate::clock::{Clock, SystemClock};
use crate::plugin::input::PluginInput;
use crate::runtime::Runtime;
use crate::runtime::source::{Choice, Loader, Origin, PolicyRef, PolicyWatch, Why};
use crate::settings;
use crate::store::Queue;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The plugin id Stash gives us (the YAML's file name). The original
/// plugin's id, so a user's saved settings carry over.
pub const DEFAULT_PLUGIN_ID: &str = "Stash2Plex";

/// The host-state key of the settings copy hooks and offline reports use.
const CACHED_SETTINGS_KEY: &str = "policy_settings";

#[derive(Clone)]
pub struct Options {
    pub plugin_id: String,
    pub data_dir: Option<PathBuf>,
    pub plugin_dir: Option<PathBuf>,
    /// A policy component to run instead of the embedded default.
    pub policy_path: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    pub seed: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            plugin_id: DEFAULT_PLUGIN_ID.into(),
            data_dir: None,
            plugin_dir: None,
            policy_path: None,
            clock: Arc::new(SystemClock),
            seed: None,
        }
    }
}

/// Everything an invocation works with.
pub struct Env {
    pub opts: Options,
    pub input: PluginInput,
    pub data_dir: PathBuf,
    /// Stash's session cookie as last refreshed (Stash answers with a new
    /// one and refuses old ones after an hour; a long drain keeps the
    /// newest for its next connection).
    cookie: std::sync::Mutex<Option<String>>,
}

/// Which policy the settings choose: `--policy` first, then the
/// `policy_path` setting (relative to the plugin folder), then a
/// `policy.wasm` in the plugin folder, else the built-in one.
#[derive(Debug, Clone)]
pub struct Chooser {
    command_line: Option<PathBuf>,
    plugin_dir: Option<PathBuf>,
}

impl Chooser {
    pub fn choose(&self, settings: &Map<String, Value>) -> Choice {
        if let Some(p) = &self.command_line {
            return Choice::File { path: absolute(p), origin: Origin::CommandLine };
        }
        let plugin_dir = self.plugin_dir.as_deref().map(absolute);
        if let Some(path) = settings::PolicySettings::from_map(settings).path {
            let path = PathBuf::from(path);
            let path = match (&plugin_dir, path.is_absolute()) {
                (Some(dir), false) => dir.join(path),
                _ => absolute(&path),
            };
            return Choice::File { path, origin: Origin::Setting };
        }
        match plugin_dir.map(|d| d.join("policy.wasm")).filter(|p| p.is_file()) {
            Some(path) => Choice::File { path, origin: Origin::PluginFolder },
            None => Choice::Builtin,
        }
    }
}

/// The settings as the last connected invocation saw them, secrets removed
/// (hooks and offline reports do not ask Stash).
pub struct CachedSettings {
    pub map: Map<String, Value>,
    pub obfuscate_paths: bool,
    pub auto_drain: bool,
}

impl Env {
    pub fn new(opts: Options, input: PluginInput, data_dir: PathBuf) -> Env {
        let cookie = std::sync::Mutex::new(input.connection.cookie_value().map(str::to_string));
        Env { opts, input, data_dir, cookie }
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookie.lock().ok().and_then(|c| c.clone())
    }

    /// Keep the cookie a Stash client last received.
    pub fn keep_session_cookie(&self, cookie: Option<String>) {
        if let (Some(fresh), Ok(mut c)) = (cookie, self.cookie.lock()) {
            *c = Some(fresh);
        }
    }

    pub fn open_queue(&self) -> Result<Queue, String> {
        let path = self.data_dir.join("queue.db");
        Queue::open(&path).map_err(|e| format!("cannot open the queue at {}: {e}", path.display()))
    }

    pub fn now_ms(&self) -> i64 {
        self.opts.clock.now_ms()
    }

    /// Which policy the user chose: `--policy`, then the `policy_path`
    /// setting (relative to the plugin folder), then `policy.wasm` in the
    /// plugin folder, else the built-in one.
    pub fn policy_choice(&self, settings: &Map<String, Value>) -> Choice {
        self.chooser().choose(settings)
    }

    /// How this invocation turns settings into a [`Choice`] (a drainer
    /// keeps one to follow a changed `policy_path`).
    pub fn chooser(&self) -> Chooser {
        Chooser { command_line: self.opts.policy_path.clone(), plugin_dir: self.plugin_dir() }
    }

    fn plugin_dir(&self) -> Option<PathBuf> {
        self.opts.plugin_dir.clone().or_else(|| self.input.connection.plugin_dir.as_deref().map(PathBuf::from))
    }

    /// How this data directory loads policies, bounded by `settings`.
    pub fn loader(&self, settings: &Map<String, Value>) -> Loader {
        Loader::new(&self.data_dir, settings::PolicySettings::from_map(settings).limits)
    }

    /// The policy to run, and why: the chosen one once it is admitted, or
    /// (reported as an error in the log) the last good one, or the built-in
    /// one, so changes keep flowing while the user fixes their component.
    pub fn load_runtime(&self, settings: &Map<String, Value>) -> Result<(Runtime, Why), String> {
        let choice = self.policy_choice(settings);
        let mut queue = self.open_queue()?;
        let (rt, why) = self.loader(settings).load(&choice, &mut queue, self.now_ms())?;
        let how =
            if rt.load_stats.cache_hit { "from the compiled cache" } else { "compiled (first run after an install)" };
        crate::debug!(
            "Policy {} (stash2plex:policy@{}) loaded {how} in {:.1} ms",
            rt.identity.label,
            rt.world,
            rt.load_stats.load_ms
        );
        Ok((rt, why))
    }

    /// A watch for a running drainer over the same choice.
    pub fn policy_watch(&self, settings: &Map<String, Value>, running: &PolicyRef) -> PolicyWatch {
        PolicyWatch::new(self.loader(settings), self.policy_choice(settings), running, self.now_ms())
    }

    pub fn host_state(&self, queue: Queue) -> HostState {
        let seed = self.opts.seed.unwrap_or_else(|| fastrand::u64(..));
        HostState::new(self.opts.clock.clone(), seed, queue)
    }

    /// The copy of the settings the last connected invocation saved.
    pub fn cached_settings(queue: &Queue) -> CachedSettings {
        let map = queue
            .host_get(CACHED_SETTINGS_KEY)
            .ok()
            .flatten()
            .and_then(|text| serde_json::from_str::<Map<String, Value>>(&text).ok())
            .unwrap_or_default();
        CachedSettings {
            obfuscate_paths: settings::cached_flag(&map, "obfuscate_paths"),
            auto_drain: settings::cached_flag(&map, "auto_drain"),
            map,
        }
    }

    /// Save the settings (secrets removed) for hooks and offline reports.
    pub fn cache_settings(queue: &mut Queue, map: &Map<String, Value>) {
        let text = Value::Object(settings::without_secrets(map)).to_string();
        if let Err(e) = queue.host_set(CACHED_SETTINGS_KEY, &text) {
            crate::warn!("Could not save the settings for hooks: {e}");
        }
    }
}

pub fn resolve_data_dir(opts: &Options, input: &PluginInput) -> Result<PathBuf, String> {
    if let Some(d) = &opts.data_dir {
        return Ok(d.clone());
    }
    if let Some(d) = std::env::var_os("STASH_PLUGIN_DATA").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let plugin_dir = opts
        .plugin_dir
        .clone()
        .or_else(|| input.connection.plugin_dir.as_deref().filter(|d| !d.is_empty()).map(PathBuf::from));
    match plugin_dir {
        Some(dir) => Ok(absolute(&dir).join("data")),
        None => Err("no data directory: Stash did not send PluginDir; pass --data-dir or set STASH_PLUGIN_DATA".into()),
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|cwd| cwd.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}
