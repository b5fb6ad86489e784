//! The contract's generated bindings (`wit/since_v0.2.0`, whose imports are
//! 0.1.0's), on every target:
//! they are the policy's types. Natively the imports are stubs that are
//! never called (tests go through `host::Host`); only `wasm.rs` calls them
//! and exports the policy.

wit_bindgen::generate!({
    path: ["../wit/since_v0.1.0", "../wit/since_v0.2.0"],
    world: "stash2plex:policy/policy-component@0.2.0",
    generate_all,
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});
