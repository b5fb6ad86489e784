//! The world released as `stash2plex:policy@0.1.0` (`wit/since_v0.1.0/`).
//! It is the newest world, so its generated types are the host's model of
//! the contract: the queue, the capabilities and the session use them
//! directly. An older world added later gets its own file beside this one,
//! with conversions into these types.

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
