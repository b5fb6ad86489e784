//! The only module that calls the generated imports and exports the policy
//! (wasm32 only): [`WitHost`] implements [`Host`] with the imports, and
//! [`Component`] implements the exported `policy` interface by delegating to
//! one [`Policy`] that lives as long as the instance.

use std::cell::RefCell;

use crate::host::{self as api, Host};
use crate::policy::{Flavor, Policy};
use crate::wit::exports::stash2plex::policy0_2_0::policy as exported;
use crate::wit::stash2plex::policy0_1_0::{clock, log, plex, queue, stash};
use crate::wit::stash2plex::policy0_2_0::{history, progress};

/// The component this build is: the default policy, or (feature
/// `tags-as-labels`, built by `policies/tags-as-labels`) the variant.
const FLAVOR: Flavor = if cfg!(feature = "tags-as-labels") { Flavor::TAGS_AS_LABELS } else { Flavor::DEFAULT };

thread_local! {
    static POLICY: RefCell<Policy> = RefCell::new(Policy::with_flavor(FLAVOR));
}

/// Route panic messages through the `log` import (there is no stderr).
fn install_panic_hook() {
    thread_local! {
        static INSTALLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    INSTALLED.with(|installed| {
        if !installed.get() {
            installed.set(true);
            std::panic::set_hook(Box::new(|info| {
                let message = crate::text::clip(&format!("policy panic: {info}"), 4_000);
                log::write(log::Level::Error, &message);
            }));
        }
    });
}

fn with_policy<T>(f: impl FnOnce(&mut Policy, &WitHost) -> T) -> T {
    install_panic_hook();
    POLICY.with(|p| f(&mut p.borrow_mut(), &WitHost))
}

struct Component;

impl exported::Guest for Component {
    fn info() -> api::PolicyInfo {
        install_panic_hook();
        Policy::info_of(FLAVOR)
    }

    fn configure(settings: Vec<api::Setting>) -> Result<(), Vec<String>> {
        with_policy(|p, h| p.configure(h, &settings))
    }

    fn on_event(event: api::Event) -> Result<api::EventOutcome, String> {
        with_policy(|p, h| p.on_event(h, &event))
    }

    fn step() -> Result<api::StepOutcome, String> {
        with_policy(|p, h| p.step(h))
    }

    fn run_task(name: String, args: String) -> Result<String, String> {
        with_policy(|p, h| p.run_task(h, &name, &args))
    }

    fn status() -> Result<api::PolicyStatus, String> {
        with_policy(|p, h| p.status(h))
    }
}

crate::wit::export!(Component with_types_in crate::wit);

/// The host, reached through the generated imports.
struct WitHost;

impl Host for WitHost {
    fn now_ms(&self) -> i64 {
        clock::now_ms()
    }

    fn random_u64(&self) -> u64 {
        clock::random_u64()
    }

    fn log(&self, level: api::LogLevel, message: &str) {
        log::write(level, message);
    }

    fn obfuscate_path(&self, path: &str) -> String {
        log::obfuscate_path(path)
    }

    fn progress(&self, fraction: f64) {
        progress::report(fraction)
    }

    fn plex_server_label(&self) -> String {
        plex::server_label()
    }

    fn plex_send(&self, request: &api::PlexRequest) -> Result<api::PlexResponse, api::TransportError> {
        plex::send(request)
    }

    fn find_scene(&self, id: &str) -> Result<Option<api::Scene>, api::StashError> {
        stash::find_scene(id)
    }

    fn find_scenes(&self, query: &api::SceneQuery) -> Result<api::ScenePage, api::StashError> {
        stash::find_scenes(query)
    }

    fn image_digest(&self, url: &str) -> Result<api::ImageInfo, api::StashError> {
        stash::image_digest(url)
    }

    fn enqueue(
        &self,
        scene_id: &str,
        payload: &str,
        not_before_ms: i64,
    ) -> Result<api::EnqueueOutcome, api::QueueError> {
        queue::enqueue(scene_id, payload, not_before_ms)
    }

    fn claim(&self, lease_ms: u32) -> Result<Option<api::Job>, api::QueueError> {
        queue::claim(lease_ms)
    }

    fn renew(&self, job_id: u64, lease: u64, lease_ms: u32) -> Result<(), api::QueueError> {
        queue::renew(job_id, lease, lease_ms)
    }

    fn complete(&self, job_id: u64, lease: u64, state: &[api::StateWrite]) -> Result<(), api::QueueError> {
        queue::complete(job_id, lease, state)
    }

    fn retry_at(
        &self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        error: &str,
        state: &[api::StateWrite],
    ) -> Result<(), api::QueueError> {
        queue::retry_at(job_id, lease, not_before_ms, error, state)
    }

    fn release(
        &self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        state: &[api::StateWrite],
    ) -> Result<(), api::QueueError> {
        queue::release(job_id, lease, not_before_ms, state)
    }

    fn dead_letter(
        &self,
        job_id: u64,
        lease: u64,
        info: &api::DeadLetterInfo,
        state: &[api::StateWrite],
    ) -> Result<(), api::QueueError> {
        queue::dead_letter(job_id, lease, info, state)
    }

    fn counts(&self) -> Result<api::QueueCounts, api::QueueError> {
        queue::counts()
    }

    fn forget(&self, key: &str) -> Result<bool, api::QueueError> {
        queue::forget(key)
    }

    fn synced_at(&self, scene_ids: &[String]) -> Result<Vec<Option<i64>>, api::QueueError> {
        history::synced_at(scene_ids)
    }

    fn state_get(&self, key: &str) -> Result<Option<String>, api::QueueError> {
        queue::state_get(key)
    }

    fn state_set(&self, writes: &[api::StateWrite]) -> Result<(), api::QueueError> {
        queue::state_set(writes)
    }
}
