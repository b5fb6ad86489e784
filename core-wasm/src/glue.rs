//! The only module that touches the generated bindings (wasm32 only):
//! [`WitHost`] implements [`Host`] with the imports, and [`Component`]
//! implements the exported `policy` interface by delegating to one
//! [`Policy`] that lives as long as the instance.

use std::cell::RefCell;

use crate::host_api::{self as api, Host};
use crate::policy::Policy;

wit_bindgen::generate!({ path: "../wit", world: "policy-component" });

use exports::stash2plex::policy::policy as wit_policy;
use stash2plex::policy::{clock, log, plex, queue, stash};

thread_local! {
    static POLICY: RefCell<Policy> = RefCell::new(Policy::new());
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

impl wit_policy::Guest for Component {
    fn info() -> wit_policy::PolicyInfo {
        install_panic_hook();
        let i = Policy::info();
        wit_policy::PolicyInfo { name: i.name, version: i.version, api_version: i.api_version }
    }

    fn configure(settings: String) -> Result<(), Vec<String>> {
        with_policy(|p, h| p.configure(h, &settings))
    }

    fn on_event(event: wit_policy::Event) -> Result<wit_policy::EventOutcome, String> {
        let event = api::Event {
            trigger: event.trigger,
            object_id: event.object_id,
            input_fields: event.input_fields,
            input: event.input,
        };
        with_policy(|p, h| p.on_event(h, &event)).map(|o| match o {
            api::EventOutcome::Enqueued(s) => wit_policy::EventOutcome::Enqueued(s),
            api::EventOutcome::Ignored(s) => wit_policy::EventOutcome::Ignored(s),
        })
    }

    fn step() -> Result<wit_policy::StepOutcome, String> {
        with_policy(|p, h| p.step(h)).map(|o| match o {
            api::StepOutcome::Worked(s) => wit_policy::StepOutcome::Worked(s),
            api::StepOutcome::WaitMs(ms) => wit_policy::StepOutcome::WaitMs(ms),
            api::StepOutcome::Idle(due) => wit_policy::StepOutcome::Idle(due),
        })
    }

    fn run_task(name: String, args: String) -> Result<String, String> {
        with_policy(|p, h| p.run_task(h, &name, &args))
    }
}

export!(Component);

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
        let level = match level {
            api::LogLevel::Trace => log::Level::Trace,
            api::LogLevel::Debug => log::Level::Debug,
            api::LogLevel::Info => log::Level::Info,
            api::LogLevel::Warn => log::Level::Warn,
            api::LogLevel::Error => log::Level::Error,
        };
        log::write(level, message);
    }

    fn obfuscate_path(&self, path: &str) -> String {
        log::obfuscate_path(path)
    }

    fn progress(&self, fraction: f64) {
        log::progress(fraction);
    }

    fn plex_server_label(&self) -> String {
        plex::server_label()
    }

    fn plex_send(&self, request: &api::PlexRequest) -> Result<api::PlexResponse, api::TransportError> {
        let request = plex::Request {
            method: match request.method {
                api::Method::Get => plex::Method::Get,
                api::Method::Put => plex::Method::Put,
                api::Method::Post => plex::Method::Post,
                api::Method::Delete => plex::Method::Delete,
            },
            path: request.path.clone(),
            query: request.query.clone(),
            headers: request.headers.clone(),
            body: match &request.body {
                api::Body::Empty => plex::Body::Empty,
                api::Body::Bytes(b) => plex::Body::Bytes(b.clone()),
                api::Body::StashImage(url) => plex::Body::StashImage(url.clone()),
            },
            timeout_ms: request.timeout_ms,
        };
        match plex::send(&request) {
            Ok(r) => {
                Ok(api::PlexResponse { status: r.status, headers: r.headers, body: r.body, elapsed_ms: r.elapsed_ms })
            }
            Err(e) => Err(match e {
                plex::TransportError::Refused(m) => api::TransportError::Refused(m),
                plex::TransportError::Timeout(m) => api::TransportError::Timeout(m),
                plex::TransportError::Reset(m) => api::TransportError::Reset(m),
                plex::TransportError::Dns(m) => api::TransportError::Dns(m),
                plex::TransportError::Tls(m) => api::TransportError::Tls(m),
                plex::TransportError::TooLarge(n) => api::TransportError::TooLarge(n),
                plex::TransportError::InvalidRequest(m) => api::TransportError::InvalidRequest(m),
                plex::TransportError::Other(m) => api::TransportError::Other(m),
            }),
        }
    }

    fn find_scene(&self, id: &str) -> Result<Option<api::Scene>, api::StashError> {
        stash::find_scene(id).map(|s| s.map(scene_from_wit)).map_err(stash_error_from_wit)
    }

    fn find_scenes(&self, query: &api::SceneQuery) -> Result<api::ScenePage, api::StashError> {
        let query = stash::SceneQuery {
            page: query.page,
            per_page: query.per_page,
            updated_after: query.updated_after.clone(),
        };
        stash::find_scenes(&query)
            .map(|p| api::ScenePage { count: p.count, scenes: p.scenes.into_iter().map(scene_from_wit).collect() })
            .map_err(stash_error_from_wit)
    }

    fn enqueue(
        &self,
        scene_id: &str,
        payload: &str,
        not_before_ms: i64,
    ) -> Result<api::EnqueueOutcome, api::QueueError> {
        queue::enqueue(scene_id, payload, not_before_ms)
            .map(|o| match o {
                queue::EnqueueOutcome::Created => api::EnqueueOutcome::Created,
                queue::EnqueueOutcome::Coalesced => api::EnqueueOutcome::Coalesced,
                queue::EnqueueOutcome::RequeuedAfterRunning => api::EnqueueOutcome::RequeuedAfterRunning,
            })
            .map_err(queue_error_from_wit)
    }

    fn claim(&self, lease_ms: u32) -> Result<Option<api::Job>, api::QueueError> {
        queue::claim(lease_ms)
            .map(|j| {
                j.map(|j| api::Job {
                    id: j.id,
                    scene_id: j.scene_id,
                    payload: j.payload,
                    attempt: j.attempt,
                    first_enqueued_ms: j.first_enqueued_ms,
                    last_enqueued_ms: j.last_enqueued_ms,
                    lease: j.lease,
                    last_error: j.last_error,
                })
            })
            .map_err(queue_error_from_wit)
    }

    fn renew(&self, job_id: u64, lease: u64, lease_ms: u32) -> Result<(), api::QueueError> {
        queue::renew(job_id, lease, lease_ms).map_err(queue_error_from_wit)
    }

    fn complete(&self, job_id: u64, lease: u64, state: &[api::StateWrite]) -> Result<(), api::QueueError> {
        queue::complete(job_id, lease, &writes_to_wit(state)).map_err(queue_error_from_wit)
    }

    fn retry_at(
        &self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        error: &str,
        state: &[api::StateWrite],
    ) -> Result<(), api::QueueError> {
        queue::retry_at(job_id, lease, not_before_ms, error, &writes_to_wit(state)).map_err(queue_error_from_wit)
    }

    fn release(
        &self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        state: &[api::StateWrite],
    ) -> Result<(), api::QueueError> {
        queue::release(job_id, lease, not_before_ms, &writes_to_wit(state)).map_err(queue_error_from_wit)
    }

    fn dead_letter(
        &self,
        job_id: u64,
        lease: u64,
        info: &api::DeadLetterInfo,
        state: &[api::StateWrite],
    ) -> Result<(), api::QueueError> {
        let info = queue::DeadLetterInfo {
            error_class: info.error_class.clone(),
            message: info.message.clone(),
            detail: info.detail.clone(),
        };
        queue::dead_letter(job_id, lease, &info, &writes_to_wit(state)).map_err(queue_error_from_wit)
    }

    fn counts(&self) -> Result<api::QueueCounts, api::QueueError> {
        queue::counts()
            .map(|c| api::QueueCounts {
                ready: c.ready,
                waiting: c.waiting,
                running: c.running,
                dead: c.dead,
                next_due_ms: c.next_due_ms,
            })
            .map_err(queue_error_from_wit)
    }

    fn state_get(&self, key: &str) -> Result<Option<String>, api::QueueError> {
        queue::state_get(key).map_err(queue_error_from_wit)
    }

    fn state_set(&self, writes: &[api::StateWrite]) -> Result<(), api::QueueError> {
        queue::state_set(&writes_to_wit(writes)).map_err(queue_error_from_wit)
    }
}

fn writes_to_wit(writes: &[api::StateWrite]) -> Vec<queue::StateWrite> {
    writes.iter().map(|w| queue::StateWrite { key: w.key.clone(), value: w.value.clone() }).collect()
}

fn queue_error_from_wit(e: queue::QueueError) -> api::QueueError {
    match e {
        queue::QueueError::LeaseLost => api::QueueError::LeaseLost,
        queue::QueueError::Storage(m) => api::QueueError::Storage(m),
    }
}

fn stash_error_from_wit(e: stash::StashError) -> api::StashError {
    match e {
        stash::StashError::Unreachable(m) => api::StashError::Unreachable(m),
        stash::StashError::Unauthorized(m) => api::StashError::Unauthorized(m),
        stash::StashError::Graphql(m) => api::StashError::Graphql(m),
        stash::StashError::Malformed(m) => api::StashError::Malformed(m),
    }
}

fn scene_from_wit(s: stash::Scene) -> api::Scene {
    api::Scene {
        id: s.id,
        title: s.title,
        code: s.code,
        details: s.details,
        director: s.director,
        date: s.date,
        rating100: s.rating100,
        organized: s.organized,
        urls: s.urls,
        studio: s.studio.map(|st| api::Studio { id: st.id, name: st.name, parent_name: st.parent_name }),
        performers: s
            .performers
            .into_iter()
            .map(|p| api::Performer {
                id: p.id,
                name: p.name,
                disambiguation: p.disambiguation,
                gender: p.gender,
                image_url: p.image_url,
            })
            .collect(),
        tags: s.tags.into_iter().map(|t| api::Tag { id: t.id, name: t.name }).collect(),
        groups: s
            .groups
            .into_iter()
            .map(|g| api::Group { id: g.id, name: g.name, scene_index: g.scene_index })
            .collect(),
        files: s
            .files
            .into_iter()
            .map(|f| api::VideoFile { path: f.path, size: f.size, duration_secs: f.duration_secs })
            .collect(),
        screenshot_url: s.screenshot_url,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}
