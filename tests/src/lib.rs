//! Loopback fakes of Stash (GraphQL) and Plex Media Server that behave like
//! the real servers — status codes, JSON shapes, paging, write semantics,
//! authentication — for the end-to-end tests and the product's `demo`
//! command.
//!
//! * [`FakePlex`]: sections, movies/episodes, `PUT /library/sections/{sid}/all`
//!   edits with value/lock/tag semantics, artwork uploads, partial scans,
//!   X-Plex-Token auth, JSON or XML; [`Faults`] injects outages
//!   ([`FaultMode::Refuse`]), error statuses, garbage, resets and delays.
//! * [`FakeStash`]: `/graphql` (gqlgen-like status codes and errors) serving
//!   `configuration`, `findScene`, `findScenes`, `version`, `jobQueue` and
//!   `configurePlugin`, projected through the query's selection set;
//!   session-cookie / ApiKey auth; screenshots.
//! * [`fixtures`]: a deterministic demo library for both.
//! * [`stash_plugins`]: Stash's plugin loader (strict YAML, exec lookup) and
//!   its package installer (index, sha256, zip modes, manifest).
//!
//! Both fakes bind `127.0.0.1:0`, serve on background threads and stop when
//! the last handle is dropped. Every request is recorded for assertions.
mod clock;
pub mod fake_plex;
pub mod fake_stash;
pub mod faults;
pub mod fixtures;
pub mod fuzz;
pub mod graphql;
mod http_util;
pub mod stash_plugins;
#[cfg(test)]
mod test_client;
pub mod tripwire;

pub use fake_plex::{FakePlex, ItemSnapshot, ItemSpec, PLEX_VERSION, RecordedRequest, SectionKind};
pub use fake_stash::{
    FakeStash, JobSpec, Performer, STASH_VERSION, SceneFile, SceneGroup, SceneSpec, StashAuth, StashId, StashRequest,
    Studio, Tag, screenshot_bytes,
};
pub use faults::{FaultMode, Faults, GARBAGE_BODY, MAINTENANCE_BODY};
pub use fixtures::{demo_library, install_demo, plex_item_for};
pub use http_util::{form_decode, parse_query, percent_decode, percent_encode};
pub use tripwire::{TripHandle, TripPoint};
