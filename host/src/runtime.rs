//! Running a policy component with wasmtime.
//!
//! - One `Engine` per process, configured for fuel (a deterministic CPU bound
//!   per call) and nothing else: no WASI is linked, so a component that
//!   imports anything outside our world is rejected at load time with a
//!   message naming the import.
//! - Compiled code is cached on disk, keyed by a SHA-256 of the component's
//!   bytes and the engine's compatibility hash (wasmtime version + settings),
//!   so later invocations deserialize in well under a millisecond instead of
//!   compiling with Cranelift. Artifacts are written to a temp file and
//!   renamed into place; only the host writes that directory.
//! - Every call runs with a fresh fuel budget and a memory limit. A trap
//!   poisons the store, so after a trap the instance is dropped and a new
//!   one is made from the cached `InstancePre` for the next call.

use crate::bindings::{PolicyComponent, PolicyComponentPre};
use crate::host_state::HostState;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder, Trap};

/// The default policy, built by `build.rs` from `core-wasm/`.
pub static DEFAULT_POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy.wasm"));

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Fuel (wasm operators) per export call.
    pub fuel_per_call: u64,
    /// Linear memory cap for the whole store.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A step that parses a 200-item Plex page uses a few million; this is
        // a bound against runaway loops, about a second of CPU.
        Limits { fuel_per_call: 20_000_000_000, memory_bytes: 256 << 20 }
    }
}

/// Why a policy could not be loaded or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy component could not be loaded: {0}")]
    Load(String),
    #[error("the policy does not fit this host's contract (stash2plex:policy@0.1.x): {0}")]
    Contract(String),
    #[error("the policy used up its CPU budget ({0} fuel) in one call and was stopped")]
    OutOfFuel(u64),
    #[error("the policy exceeded its memory limit ({0} MiB) and was stopped")]
    OutOfMemory(usize),
    #[error("the policy trapped: {0}")]
    Trap(String),
}

pub struct Runtime {
    engine: Engine,
    pre: PolicyComponentPre<HostState>,
    limits: Limits,
    pub load_stats: LoadStats,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadStats {
    pub cache_hit: bool,
    pub load_ms: f64,
}

pub fn engine() -> Result<Engine, PolicyError> {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.wasm_component_model(true);
    Engine::new(&config).map_err(|e| PolicyError::Load(format!("{e:#}")))
}

impl Runtime {
    /// Load `wasm` (a component), using `cache_dir` for compiled code.
    pub fn load(wasm: &[u8], cache_dir: Option<&Path>, limits: Limits) -> Result<Runtime, PolicyError> {
        let start = Instant::now();
        let engine = engine()?;
        let (component, cache_hit) = load_component(&engine, wasm, cache_dir)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        PolicyComponent::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| PolicyError::Load(format!("{e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::Contract(describe_mismatch(&engine, &component, &e)))?;
        let pre = PolicyComponentPre::new(instance_pre)
            .map_err(|e| PolicyError::Contract(describe_mismatch(&engine, &component, &e)))?;
        let load_ms = start.elapsed().as_secs_f64() * 1000.0;
        Ok(Runtime { engine, pre, limits, load_stats: LoadStats { cache_hit, load_ms } })
    }

    /// A fresh instance with `state` as its capabilities.
    pub fn instantiate(&self, state: HostState) -> Result<Instance, PolicyError> {
        let mut state = state;
        state.limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .table_elements(100_000)
            .instances(4)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel_per_call).map_err(|e| PolicyError::Load(format!("{e:#}")))?;
        let bindings = self.pre.instantiate(&mut store).map_err(|e| PolicyError::Contract(format!("{e:#}")))?;
        Ok(Instance { store, bindings, limits: self.limits, poisoned: false })
    }
}

/// After a policy failure, the jobs it held become due again after this
/// long, so the same drain does not grab the job straight back; a drain
/// stops after a few failures in a row anyway.
const TRAP_RELEASE_DELAY_MS: i64 = 1_000;

pub struct Instance {
    store: Store<HostState>,
    bindings: PolicyComponent,
    limits: Limits,
    poisoned: bool,
}

impl Instance {
    /// Run one export call with a fresh fuel budget. After a trap the
    /// instance refuses further calls (wasmtime poisons the store).
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&PolicyComponent, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        if self.poisoned {
            return Err(PolicyError::Trap("the instance trapped earlier and cannot be entered again".into()));
        }
        self.store.set_fuel(self.limits.fuel_per_call).map_err(|e| PolicyError::Trap(format!("{e:#}")))?;
        let result = f(&self.bindings, &mut self.store);
        result.map_err(|e| {
            self.poisoned = true;
            let err = self.classify(e);
            let released = self.store.data_mut().release_open_claims(TRAP_RELEASE_DELAY_MS);
            if released > 0 {
                crate::warn!("Gave back {released} job(s) the policy held when it failed; they are kept in the queue");
            }
            err
        })
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn state(&self) -> &HostState {
        self.store.data()
    }

    pub fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    pub fn into_state(self) -> HostState {
        self.store.into_data()
    }

    fn classify(&mut self, e: wasmtime::Error) -> PolicyError {
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PolicyError::OutOfFuel(self.limits.fuel_per_call),
            Some(trap) => {
                let panic = self.store.data_mut().take_guest_panic();
                PolicyError::Trap(match panic {
                    Some(p) => format!("{trap} ({p})"),
                    None => trap.to_string(),
                })
            }
            None => {
                let text = format!("{e:#}");
                if text.contains("growing memory") || text.contains("memory") && text.contains("limit") {
                    PolicyError::OutOfMemory(self.limits.memory_bytes >> 20)
                } else {
                    PolicyError::Trap(text)
                }
            }
        }
    }
}

fn load_component(engine: &Engine, wasm: &[u8], cache_dir: Option<&Path>) -> Result<(Component, bool), PolicyError> {
    if wasm.len() >= 4 && &wasm[..4] != b"\0asm" {
        return Err(PolicyError::Load("the file is not WebAssembly (no \\0asm header)".into()));
    }
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm).map(|c| (c, false)).map_err(|e| PolicyError::Load(format!("{e:#}")));
    };
    let path = cache_path(engine, wasm, dir);
    if path.exists() {
        // SAFETY: the cache directory is written only by this host, with the
        // bytes `precompile_component` produced, renamed into place
        // atomically; the file name pins the wasm hash and engine settings.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => {
                mark_used(&path);
                return Ok((c, true));
            }
            Err(e) => {
                crate::warn!("Ignoring an unreadable compiled-policy cache file ({e}); compiling again");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let compiled = engine.precompile_component(wasm).map_err(|e| PolicyError::Load(format!("{e:#}")))?;
    let component = Component::new(engine, wasm).map_err(|e| PolicyError::Load(format!("{e:#}")))?;
    if let Err(e) = write_atomically(dir, &path, &compiled) {
        crate::debug!("Could not write the compiled-policy cache at {}: {e}", path.display());
    }
    prune_cache(dir, std::time::SystemTime::now());
    Ok((component, false))
}

/// Cached artifacts unused for this long are deleted (after upgrades, or a
/// user policy that was replaced).
const CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
/// A used artifact's mtime is refreshed at most this often (one small write
/// a day, not one per hook).
const CACHE_TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(86_400);

fn mark_used(path: &Path) {
    let now = std::time::SystemTime::now();
    let stale = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > CACHE_TOUCH_EVERY));
    if stale && let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(now);
    }
}

/// Delete `policy-*.cwasm` files not used for `CACHE_MAX_AGE`. Returns how many.
pub fn prune_cache(dir: &Path, now: std::time::SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("policy-") && name.ends_with(".cwasm")
        })
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > CACHE_MAX_AGE))
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

fn cache_path(engine: &Engine, wasm: &[u8], dir: &Path) -> PathBuf {
    let mut h = Sha256::new();
    h.update(wasm);
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut HashWriter(&mut h));
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("policy-{hex}.cwasm"))
}

struct HashWriter<'a>(&'a mut Sha256);
impl std::hash::Hasher for HashWriter<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Turn wasmtime's linker error into a sentence that lists what the component
/// imports and exports, so a policy author sees the mismatch.
fn describe_mismatch(engine: &Engine, component: &Component, e: &wasmtime::Error) -> String {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    format!("{e:#}; the component imports {imports:?} and exports {exports:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn old_cache_artifacts_are_pruned_and_used_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let make = |name: &str, age_days: u64| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(now - Duration::from_secs(age_days * 86_400)).unwrap();
            p
        };
        let old = make("policy-old.cwasm", 45);
        let used = make("policy-used.cwasm", 45);
        let recent = make("policy-recent.cwasm", 3);
        let other = make("notes.txt", 400);
        mark_used(&used);
        assert_eq!(prune_cache(dir.path(), now), 1);
        assert!(!old.exists());
        assert!(used.exists() && recent.exists() && other.exists());
    }
}
