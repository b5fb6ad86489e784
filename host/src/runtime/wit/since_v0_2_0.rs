//! The world released as `stash2plex:policy@0.2.0` (`wit/since_v0.2.0/`),
//! the newest: its `policy` export types are the host's model of what a
//! policy answers. Its imports are 0.1.0's interfaces, mapped onto the
//! 0.1.0 binding (`with`), so both versions share one implementation of
//! every capability; only `progress` and `history` are new.

wasmtime::component::bindgen!({
    path: ["../wit/since_v0.1.0", "../wit/since_v0.2.0"],
    world: "stash2plex:policy/policy-component@0.2.0",
    imports: { default: trappable },
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    with: {
        "stash2plex:policy/clock@0.1.0": super::since_v0_1_0::stash2plex::policy::clock,
        "stash2plex:policy/log@0.1.0": super::since_v0_1_0::stash2plex::policy::log,
        "stash2plex:policy/plex@0.1.0": super::since_v0_1_0::stash2plex::policy::plex,
        "stash2plex:policy/stash@0.1.0": super::since_v0_1_0::stash2plex::policy::stash,
        "stash2plex:policy/queue@0.1.0": super::since_v0_1_0::stash2plex::policy::queue,
    },
});

/// The version of this world, as the package states it.
pub const VERSION: super::Version = super::Version { major: 0, minor: 2, patch: 0 };
