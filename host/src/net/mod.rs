//! The network: one HTTP client (`http`), the Plex transport that adds the
//! token and identity (`plex`), and Stash's GraphQL API (`stash`).

pub mod http;
pub mod plex;
pub mod stash;
