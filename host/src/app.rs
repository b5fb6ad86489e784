//! One plugin invocation, from Stash's stdin to the answer: where the data
//! lives, which policy runs, and the dispatch to the hook path or a task.

use crate::clock::{Clock, SystemClock};
use crate::host_state::HostState;
use crate::plugin_input::{self, Invocation, PluginInput};
use crate::plugin_io::Answer;
use crate::queue::Queue;
use crate::runtime::{self, Limits, Runtime};
use crate::{hook, tasks};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The plugin id Stash gives us (the YAML's file name). The original
/// plugin's id, so a user's saved settings carry over.
pub const DEFAULT_PLUGIN_ID: &str = "Stash2Plex";

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
}

impl Env {
    pub fn open_queue(&self) -> Result<Queue, String> {
        let path = self.data_dir.join("queue.db");
        Queue::open(&path).map_err(|e| format!("cannot open the queue at {}: {e}", path.display()))
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }

    /// The policy to run: a component file given on the command line, or
    /// `policy.wasm` in the plugin folder, or the embedded default.
    ///
    /// A user component that cannot be read or does not fit the contract is
    /// reported and the embedded default runs instead, so changes keep
    /// flowing while the user fixes their component.
    pub fn load_runtime(&self) -> Result<Runtime, String> {
        let cache = self.cache_dir();
        if let Some(path) = self.policy_file() {
            let loaded = std::fs::read(&path)
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|bytes| Runtime::load(&bytes, Some(&cache), Limits::default()).map_err(|e| e.to_string()))
                .and_then(|rt| crate::policy_session::admit(&rt).map(|_| rt).map_err(|e| e.to_string()));
            match loaded {
                Ok(rt) => return Ok(rt),
                Err(e) => crate::error!(
                    "The policy component {} was not used ({e}). Running the built-in default policy instead.",
                    path.display()
                ),
            }
        }
        let rt = Runtime::load(runtime::DEFAULT_POLICY, Some(&cache), Limits::default()).map_err(|e| e.to_string())?;
        let how =
            if rt.load_stats.cache_hit { "from the compiled cache" } else { "compiled (first run after an install)" };
        crate::debug!("Built-in policy loaded {how} in {:.1} ms", rt.load_stats.load_ms);
        Ok(rt)
    }

    fn policy_file(&self) -> Option<PathBuf> {
        if let Some(p) = &self.opts.policy_path {
            return Some(p.clone());
        }
        let dir =
            self.opts.plugin_dir.clone().or_else(|| self.input.connection.plugin_dir.as_deref().map(PathBuf::from))?;
        let candidate = absolute(&dir).join("policy.wasm");
        candidate.is_file().then_some(candidate)
    }

    pub fn host_state(&self, queue: Queue) -> HostState {
        let seed = self.opts.seed.unwrap_or_else(|| fastrand::u64(..));
        HostState::new(self.opts.clock.clone(), seed, queue)
    }

    /// For invocations that do not ask Stash for the settings (hooks,
    /// offline reports): the copy the last task saved.
    pub fn cached_settings(queue: &Queue) -> CachedSettings {
        let policy_json = queue.host_get("policy_settings").ok().flatten().unwrap_or_else(|| "{}".into());
        let map = serde_json::from_str::<serde_json::Value>(&policy_json).unwrap_or_default();
        let flag = |key: &str, default: bool| map.get(key).and_then(crate::settings::parse_bool).unwrap_or(default);
        CachedSettings {
            obfuscate_paths: flag("obfuscate_paths", false),
            auto_drain: flag("auto_drain", true),
            policy_json,
        }
    }
}

/// The settings as the last task saw them (the policy's copy, which holds
/// every key but the token).
pub struct CachedSettings {
    pub policy_json: String,
    pub obfuscate_paths: bool,
    pub auto_drain: bool,
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

/// Run one plugin invocation on `raw` stdin bytes.
pub fn run_plugin(raw: &[u8], opts: Options) -> Answer {
    let input = match plugin_input::parse(raw) {
        Ok(i) => i,
        Err(e) => return Answer::Error(e.to_string()),
    };
    let data_dir = match resolve_data_dir(&opts, &input) {
        Ok(d) => d,
        Err(e) => return Answer::Error(e),
    };
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        return Answer::Error(format!("cannot create the data directory {}: {e}", data_dir.display()));
    }
    let env = Env { opts, input, data_dir };
    match env.input.invocation.clone() {
        Invocation::Hook(ctx) => hook::run(&env, &ctx),
        Invocation::Task { mode, args } => tasks::run(&env, mode.as_deref(), &args),
    }
}
