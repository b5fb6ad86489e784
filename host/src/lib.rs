//! The stash2plex host as a library: Stash's plugin protocol (`plugin`),
//! one invocation (`invocation`, `env`, `hook`, `tasks`), draining
//! (`drain`), the wasmtime embedding (`runtime`), what a policy may do
//! (`capabilities`), the SQLite queue (`store`), the network (`net`) and the
//! settings (`settings`). `main.rs` is a thin command line over it; the
//! end-to-end tests, the policy's native tests and the lab (demo, bench)
//! drive it in-process.

#[macro_use]
pub mod plugin;

pub mod authoring;
pub mod capabilities;
pub mod clock;
mod condition;
mod connect;
pub mod drain;
pub mod env;
mod files;
mod hook;
pub mod invocation;
mod net;
mod obfuscate;
pub mod runtime;
pub mod settings;
pub mod store;
pub mod tasks;
mod text;

pub use files::restrict_new_files;
/// The query string exactly as the host puts it on the wire (the policy's
/// tests check their edit requests against it).
pub use net::http::build_query;
