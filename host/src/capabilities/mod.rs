//! What a policy instance can do: one capability per interface of the
//! world, each a plain struct implementing that interface's generated
//! `Host` trait, gathered in the store data [`HostState`]. Each function does
//! exactly one effect and returns the contract's typed result; only a broken
//! host (a bug) traps.

mod clock;
mod log;
pub mod plex;
pub mod plex_routes;
mod queue;
mod stash;
pub mod wasi;

pub use self::clock::ClockCap;
pub use self::log::LogCap;
pub use self::plex::PlexCap;
pub use self::queue::QueueCap;
pub use self::stash::StashCap;

use crate::clock::Clock;
use crate::runtime::wit::since_v0_1_0::stash2plex::policy as world;
use crate::store::Queue;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The store data of one policy instance: its capabilities and limits.
pub struct HostState {
    pub clock: ClockCap,
    pub log: LogCap,
    pub plex: PlexCap,
    pub stash: StashCap,
    pub queue: QueueCap,
    pub limits: Limiter,
    /// WASI, granting nothing (`wasi`); made anew for every instance.
    wasi: WasiCtx,
    table: ResourceTable,
    clock_source: Arc<dyn Clock>,
    seed: u64,
}

/// wasmtime's store limits, and the largest memory the instance grew to
/// (for the admission report).
pub struct Limiter {
    limits: StoreLimits,
    peak_memory: usize,
}

impl Limiter {
    pub fn new(limits: StoreLimits) -> Limiter {
        Limiter { limits, peak_memory: 0 }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }
    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }
    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl HostState {
    /// Capabilities with the queue only: no Plex, no Stash. `seed` makes
    /// the policy's randomness (and lease tokens) reproducible.
    pub fn new(clock: Arc<dyn Clock>, seed: u64, queue: Queue) -> HostState {
        let stash = StashCap::default();
        let plex = PlexCap { grants: stash.grants.clone(), ..PlexCap::default() };
        let (wasi, stdio) = wasi::deny_all(clock.clone(), seed);
        let mut log = LogCap::default();
        log.attach_stdio(stdio);
        HostState {
            clock: ClockCap::new(clock.clone(), seed),
            log,
            plex,
            stash,
            queue: QueueCap::new(queue, clock.clone(), seed.rotate_left(17) ^ 0x5157_4a0b),
            limits: Limiter::new(StoreLimits::default()),
            wasi,
            table: ResourceTable::new(),
            clock_source: clock,
            seed,
        }
    }

    /// A new instance is made with these capabilities: WASI resources and
    /// pipes of an earlier instance are not carried over.
    pub fn fresh_instance(&mut self) {
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let (wasi, stdio) = wasi::deny_all(self.clock_source.clone(), self.seed);
        self.wasi = wasi;
        self.table = ResourceTable::new();
        self.log.attach_stdio(stdio);
    }

    /// The injected clock's time.
    pub fn clock_now(&self) -> i64 {
        self.clock_source.now_ms()
    }

    pub fn limiter(&mut self) -> &mut dyn wasmtime::ResourceLimiter {
        &mut self.limits
    }

    /// The largest linear memory the current instance grew to.
    pub fn limits_peak(&self) -> usize {
        self.limits.peak_memory
    }

    /// A call into the policy starts: per-call bounds start again.
    pub fn begin_call(&mut self) {
        self.log.begin_call();
        self.queue.begin_call();
    }

    /// A call into the policy ended.
    pub fn end_call(&mut self) {
        self.log.end_call();
    }

    /// Effects the policy has had the host make so far (queue outcomes,
    /// enqueues, Plex requests sent): a `worked` step that changed none of
    /// them did no work.
    pub fn effects(&self) -> u64 {
        self.queue.effects + self.plex.stats.requests + self.stash.requests
    }

    /// Add every interface of the world to `linker`, each served by its
    /// capability.
    pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        world::clock::add_to_linker::<HostState, HasSelf<ClockCap>>(linker, |s| &mut s.clock)?;
        world::log::add_to_linker::<HostState, HasSelf<LogCap>>(linker, |s| &mut s.log)?;
        world::plex::add_to_linker::<HostState, HasSelf<PlexCap>>(linker, |s| &mut s.plex)?;
        world::stash::add_to_linker::<HostState, HasSelf<StashCap>>(linker, |s| &mut s.stash)?;
        world::queue::add_to_linker::<HostState, HasSelf<QueueCap>>(linker, |s| &mut s.queue)?;
        crate::runtime::wit::progress::add_to_linker::<HostState, HasSelf<LogCap>>(linker, |s| &mut s.log)?;
        crate::runtime::wit::history::add_to_linker::<HostState, HasSelf<QueueCap>>(linker, |s| &mut s.queue)?;
        wasmtime_wasi::p2::add_to_linker_sync(linker)?;
        Ok(())
    }
}
