//! End-to-end tests: the real binary, spawned as Stash spawns it, against
//! fake Stash and fake Plex servers on loopback.

mod authority;
mod bursts;
mod crash;
mod dlq;
mod harness;
mod metadata;
mod plugin_protocol;
mod policies;
mod reconcile;
mod resilience;
mod sandbox;
mod soak;
mod stash_plugin;
mod sync;
mod tasks;
