//! `stash2plex-tags-as-labels`: an alternative policy component, built from
//! the default policy's library (`core-wasm`) with its `tags-as-labels`
//! flavour. It syncs everything the default policy does, except that a
//! scene's Stash tags become Plex *labels* (together with `plex_labels`)
//! instead of genres:
//!
//! - labels exist on episodes, so TV libraries get the tags too (Plex keeps
//!   genres on the show);
//! - Plex's sharing restrictions ("allow/exclude labels" for a managed or
//!   shared user) filter by label, so Stash tags can decide who sees what.
//!
//! It declares the default policy's state format, so switching to it keeps
//! the circuit breaker and the outage history. Build it as any policy:
//! `cargo build -p stash2plex-tags-as-labels --target wasm32-unknown-unknown
//! --profile guest`, then encode the core module as a component
//! (`wasm-tools component new`, or `wit_component::ComponentEncoder`; see
//! docs/policy-authors.md). The tests build it that way
//! (`tests/e2e/policies.rs`).

// The component's exports live in the library (its `wasm` module).
pub use stash2plex_policy::Policy;
