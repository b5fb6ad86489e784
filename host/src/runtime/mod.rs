//! Running a policy component with wasmtime.
//!
//! - One `Engine` per process, configured for fuel (a deterministic CPU bound
//!   per call). The linker holds our world and WASI 0.2 granting nothing
//!   (`capabilities::wasi`), so a component that imports anything else is
//!   rejected at load time with a message naming the import.
//! - The world a component targets is read from its exports before anything
//!   is instantiated (`wit`); a version this host does not implement is a
//!   sentence, not a linker error.
//! - Compiled code is cached on disk (`cache`).
//! - Every call runs with a fresh fuel budget and a memory limit. A trap
//!   poisons the store, so after a trap the instance is dropped and a new
//!   one is made from the cached `InstancePre` for the next call (`session`).

pub mod admission;
mod cache;
pub mod fixture;
pub mod session;
pub mod source;
pub mod wit;

use crate::capabilities::HostState;
use sha2::Digest;
use std::path::Path;
use std::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder, Trap};
use wit::{Bindings, Pre, Version};

/// The default policy, built by `build.rs` from `core-wasm/`.
pub static DEFAULT_POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy.wasm"));
/// Its SHA-256, computed by `build.rs`.
pub static DEFAULT_POLICY_SHA256: [u8; 32] = *include_bytes!(concat!(env!("OUT_DIR"), "/policy.sha256"));

/// The largest component file a user may install (a componentize-py
/// component, CPython inside, is about 40 MB).
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (wasm operators) per export call.
    pub fuel_per_call: u64,
    /// Linear memory cap for the whole store.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A step that parses a 200-item Plex page uses a few million; this is
        // a bound against runaway loops, about a second of CPU (the
        // `policy_fuel_millions` and `policy_memory_mb` settings change it).
        Limits { fuel_per_call: 20_000_000_000, memory_bytes: 256 << 20 }
    }
}

/// Why a policy could not be loaded or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy component could not be loaded: {0}")]
    Load(String),
    #[error("the policy does not fit this host's contract: {0}")]
    Contract(String),
    #[error("the policy used up its CPU budget ({0} fuel) in one call and was stopped")]
    OutOfFuel(u64),
    #[error("the policy exceeded its memory limit ({0} MiB) and was stopped")]
    OutOfMemory(usize),
    #[error("the policy trapped: {0}")]
    Trap(String),
}

/// The state namespace of the built-in policy.
pub const BUILTIN_NAMESPACE: &str = "stash2plex-default";

/// What the host knows a policy to be, whatever name it claims: the
/// built-in one, or a component by its SHA-256. Its state namespace and its
/// log prefix come from this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Where its state lives in the queue database.
    pub namespace: String,
    /// Shown before its log lines.
    pub label: String,
    /// The component's SHA-256, hex.
    pub sha256: String,
}

impl Identity {
    /// The SHA-256 of a component, hex (what status reports show).
    pub fn sha256_of(wasm: &[u8]) -> String {
        sha2::Sha256::digest(wasm).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn of(digest: &[u8; 32], builtin: bool) -> Identity {
        let sha256: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if builtin {
            // The name the built-in policy's state has always been kept under.
            Identity { namespace: BUILTIN_NAMESPACE.into(), label: BUILTIN_NAMESPACE.into(), sha256 }
        } else {
            Identity {
                namespace: format!("policy-{}", &sha256[..16]),
                label: format!("policy {}", &sha256[..8]),
                sha256,
            }
        }
    }
}

/// A compiled, linked policy component, ready to be instantiated.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    pre: Pre,
    limits: Limits,
    /// The world version the component was built against.
    pub world: Version,
    pub identity: Identity,
    pub load_stats: LoadStats,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadStats {
    pub cache_hit: bool,
    pub load_ms: f64,
}

fn engine() -> Result<Engine, PolicyError> {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.wasm_component_model(true);
    // No `.eh_frame` for compiled policy code outside Windows (whose ABI
    // requires it). Only a native unwinder walking through wasm frames would
    // use it; wasmtime's own traps and backtraces do not, and host panics
    // are caught before they reach wasm frames. Registering it costs per
    // function, and the static musl build's unwinder (LLVM libunwind) keeps
    // a list it searches linearly: deregistering at exit was 8.0 M of a musl
    // hook's 11.9 M instructions (callgrind; the glibc build's hook: 3.9 M).
    #[cfg(not(windows))]
    config.native_unwind_info(false);
    Engine::new(&config).map_err(|e| PolicyError::Load(format!("{e:#}")))
}

impl Runtime {
    /// Load `wasm` (a component), using `cache_dir` for compiled code.
    pub fn load(wasm: &[u8], cache_dir: Option<&Path>, limits: Limits) -> Result<Runtime, PolicyError> {
        let digest: [u8; 32] = sha2::Sha256::digest(wasm).into();
        Self::load_hashed(wasm, &digest, false, cache_dir, limits)
    }

    /// The built-in policy.
    pub fn load_builtin(cache_dir: Option<&Path>, limits: Limits) -> Result<Runtime, PolicyError> {
        Self::load_hashed(DEFAULT_POLICY, &DEFAULT_POLICY_SHA256, true, cache_dir, limits)
    }

    /// Load `wasm` whose SHA-256 is `digest`.
    fn load_hashed(
        wasm: &[u8],
        digest: &[u8; 32],
        builtin: bool,
        cache_dir: Option<&Path>,
        limits: Limits,
    ) -> Result<Runtime, PolicyError> {
        let start = Instant::now();
        if wasm.len() >= 4 && &wasm[..4] != b"\0asm" {
            return Err(PolicyError::Load("the file is not WebAssembly (no \\0asm header)".into()));
        }
        let engine = engine()?;
        let (component, cache_hit) = match cache_dir {
            Some(dir) => cache::load(&engine, wasm, digest, dir),
            None => Component::new(&engine, wasm).map(|c| (c, false)),
        }
        .map_err(|e| PolicyError::Load(format!("{e:#}")))?;
        let world = wit::world_version(&engine, &component).map_err(PolicyError::Contract)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        HostState::link(&mut linker).map_err(|e| PolicyError::Load(format!("{e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::Contract(describe_mismatch(&engine, &component, &e)))?;
        let pre = Pre::new(world, instance_pre)
            .map_err(|e| PolicyError::Contract(describe_mismatch(&engine, &component, &e)))?;
        let load_ms = start.elapsed().as_secs_f64() * 1000.0;
        let identity = Identity::of(digest, builtin);
        Ok(Runtime { engine, pre, limits, world, identity, load_stats: LoadStats { cache_hit, load_ms } })
    }

    /// The same compiled component, loaded once more (admission runs its
    /// vectors on a copy while the caller keeps this one).
    pub fn clone_loaded(&self) -> Runtime {
        self.clone()
    }

    /// The names of what the component imports and exports.
    pub fn component_type_names(&self) -> (Vec<String>, Vec<String>) {
        let ty = self.pre.component().component_type();
        let imports = ty.imports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let exports = ty.exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        (imports, exports)
    }

    /// The state format a policy declares (worlds from 0.2.0 on).
    pub fn state_format(&self, info: &wit::policy::PolicyInfo) -> Option<String> {
        wit::state_format(info)
    }

    /// A fresh instance with `state` as its capabilities.
    pub fn instantiate(&self, state: HostState) -> Result<Instance, PolicyError> {
        self.instantiate_or_return(state).map_err(|(e, _)| e)
    }

    /// Like `instantiate`, but a failure gives the capabilities back (a swap
    /// that fails keeps the running policy's queue connection and clients).
    pub fn instantiate_or_return(&self, state: HostState) -> Result<Instance, (PolicyError, Box<HostState>)> {
        let mut state = state;
        state.fresh_instance();
        state.limits = crate::capabilities::Limiter::new(
            StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .table_elements(100_000)
                .instances(16)
                .memories(16)
                .tables(64)
                .trap_on_grow_failure(true)
                .build(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s.limiter());
        if let Err(e) = store.set_fuel(self.limits.fuel_per_call) {
            return Err((PolicyError::Load(format!("{e:#}")), Box::new(store.into_data())));
        }
        match self.pre.instantiate(&mut store) {
            Ok(bindings) => Ok(Instance { store, bindings, limits: self.limits, poisoned: false }),
            Err(e) => Err((PolicyError::Contract(format!("{e:#}")), Box::new(store.into_data()))),
        }
    }
}

/// After a policy failure, the jobs it held become due again after this
/// long, so the same drain does not grab the job straight back; a drain
/// stops after a few failures in a row anyway.
const TRAP_RELEASE_DELAY_MS: i64 = 1_000;

/// One instance of a policy and its store.
pub struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    limits: Limits,
    poisoned: bool,
}

impl Instance {
    /// Run one export call with a fresh fuel budget. After a trap the
    /// instance refuses further calls (wasmtime poisons the store).
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        if self.poisoned {
            return Err(PolicyError::Trap("the instance trapped earlier and cannot be entered again".into()));
        }
        self.store.set_fuel(self.limits.fuel_per_call).map_err(|e| PolicyError::Trap(format!("{e:#}")))?;
        self.store.data_mut().begin_call();
        let result = f(&self.bindings, &mut self.store);
        self.store.data_mut().end_call();
        result.map_err(|e| {
            self.poisoned = true;
            let err = self.classify(e);
            let released = self.store.data_mut().queue.release_open_claims(TRAP_RELEASE_DELAY_MS);
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

    /// Fuel the last call used.
    pub fn fuel_used(&self) -> u64 {
        self.limits.fuel_per_call.saturating_sub(self.store.get_fuel().unwrap_or(0))
    }

    /// The instance's linear memory now (its high-water: wasm memories
    /// never shrink).
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits_peak()
    }

    fn classify(&mut self, e: wasmtime::Error) -> PolicyError {
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PolicyError::OutOfFuel(self.limits.fuel_per_call),
            Some(trap) => {
                let panic = self.store.data_mut().log.take_guest_panic();
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

/// Turn wasmtime's linker error into a sentence that lists what the component
/// imports and exports, so a policy author sees the mismatch.
fn describe_mismatch(engine: &Engine, component: &Component, e: &wasmtime::Error) -> String {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    format!("{e:#}; the component imports {imports:?} and exports {exports:?}")
}
