//! Host-side bindings generated from `wit/` (the contract with policies).
//! Every import is `trappable`: a host failure that is not part of the
//! contract's typed errors stops the call instead of panicking the host.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy-component",
    imports: { default: trappable },
});

pub use self::exports::stash2plex::policy::policy as exported;
pub use self::stash2plex::policy::{clock, log, plex, queue, stash};
