//! What a policy instance can do: one capability per interface of the
//! world, each a plain struct implementing that interface's generated
//! `Host` trait, gathered in the store data [`HostState`]. Each function does
//! exactly one effect and returns the contract's typed result; only a broken
//! host (a bug) traps.

mod clock;
mod log;
mod plex;
pub mod plex_routes;
mod queue;
mod stash;

pub use self::clock::ClockCap;
pub use self::log::LogCap;
pub use self::plex::PlexCap;
pub use self::queue::QueueCap;
pub use self::stash::StashCap;

use crate::clock::Clock;
use crate::runtime::wit::latest::stash2plex::policy as world;
use crate::store::Queue;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::{HasSelf, Linker};

/// The store data of one policy instance: its capabilities and limits.
pub struct HostState {
    pub clock: ClockCap,
    pub log: LogCap,
    pub plex: PlexCap,
    pub stash: StashCap,
    pub queue: QueueCap,
    pub limits: StoreLimits,
}

impl HostState {
    /// Capabilities with the queue only: no Plex, no Stash. `seed` makes
    /// the policy's randomness (and lease tokens) reproducible.
    pub fn new(clock: Arc<dyn Clock>, seed: u64, queue: Queue) -> HostState {
        let stash = StashCap::default();
        let plex = PlexCap { grants: stash.grants.clone(), ..PlexCap::default() };
        HostState {
            clock: ClockCap::new(clock.clone(), seed),
            log: LogCap::default(),
            plex,
            stash,
            queue: QueueCap::new(queue, clock, seed.rotate_left(17) ^ 0x5157_4a0b),
            limits: StoreLimits::default(),
        }
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
        Ok(())
    }
}
