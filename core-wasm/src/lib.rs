//! The default stash2plex policy.
//!
//! The generated bindings (`wit`) are the policy's types on every target.
//! Everything but `wasm` is plain Rust that builds and tests natively; the
//! policy reaches the host only through [`host::Host`].

mod breaker;
mod budget;
mod calendar;
mod classify;
mod desired;
mod drain;
mod edits;
mod events;
mod fanout;
mod health;
pub mod host;
mod matching;
mod outage;
mod pathmap;
mod plex_json;
mod policy;
mod reconcile;
mod recovery;
mod resilience;
mod retry;
mod sanitize;
mod scan;
mod settings;
mod tasks;
mod text;
mod wit;

#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(test)]
mod test_support;

pub use host::Host;
pub use policy::Policy;
