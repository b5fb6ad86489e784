//! The stash2plex host as a library: the plugin protocol, the wasmtime
//! embedding, the capabilities (Plex HTTP, Stash GraphQL, the SQLite queue,
//! the clock) and the tasks. `main.rs` is a thin command line over it; tests
//! and the simulator drive it in-process.

pub mod app;
pub mod autodrain;
pub mod bench;
pub mod bindings;
pub mod clock;
pub mod demo;
pub mod drain;
pub mod hook;
pub mod host_state;
pub mod http_client;
pub mod obfuscate;
pub mod plex_client;
pub mod plugin_input;
pub mod plugin_io;
pub mod plugin_spawn;
pub mod policy_session;
pub mod queue;
pub mod runtime;
pub mod settings;
pub mod sim;
pub mod stash_client;
#[macro_use]
pub mod stash_log;
pub mod tasks;
