//! The world released as `stash2plex:policy@0.1.0` (`wit/since_v0.1.0/`).
//! Its imports are also the imports of every later world (0.2.0 imports
//! them unchanged), so their generated types are the host's model of the
//! capabilities: the queue, the capabilities and the session use them
//! directly. Its `policy` export is adapted to the newest world's in
//! `wit.rs` (`Bindings`).

wasmtime::component::bindgen!({
    path: "../wit/since_v0.1.0",
    world: "policy-component",
    // A host failure that is not one of the contract's typed errors stops
    // the call instead of panicking the host.
    imports: { default: trappable },
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});

/// The version of this world, as the package states it.
pub const VERSION: super::Version = super::Version { major: 0, minor: 1, patch: 0 };
