//! The default stash2plex policy.
//!
//! Everything but `glue` is plain Rust that builds and tests natively; the
//! policy reaches the host only through [`host_api::Host`].

pub mod breaker;
pub mod budget;
pub mod classify;
pub mod drain;
pub mod edits;
pub mod events;
pub mod health;
pub mod host_api;
pub mod matching;
pub mod outage;
pub mod plex_json;
pub mod policy;
pub mod recovery;
pub mod resilience;
pub mod retry;
pub mod settings;
pub mod tasks;
pub mod text;

#[cfg(target_arch = "wasm32")]
mod glue;

#[cfg(test)]
pub(crate) mod test_support;

pub use host_api::Host;
pub use policy::Policy;
