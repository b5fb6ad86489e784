//! The capabilities a policy instance gets: the store data behind every
//! import. Each function does exactly one effect and returns the contract's
//! typed result; storage failures are returned as `queue-error.storage`, and
//! only a broken host (a bug) traps.

use crate::bindings::{clock, log, plex, queue, stash};
use crate::clock::Clock;
use crate::http_client::{Method, TransportError};
use crate::obfuscate::Obfuscator;
use crate::plex_client::{PlexClient, PlexRequest};
use crate::queue::{self as q, Queue, QueueError};
use crate::stash_client::StashClient;
use crate::stash_log::{self, Level};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::StoreLimits;

/// Counters for reports and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct RequestStats {
    pub plex_requests: u64,
    pub plex_puts: u64,
    pub plex_transport_errors: u64,
    pub stash_requests: u64,
}

pub struct HostState {
    pub clock: Arc<dyn Clock>,
    pub rng: fastrand::Rng,
    pub queue: Queue,
    pub plex: Option<PlexClient>,
    pub stash: Option<StashClient>,
    pub obfuscator: Obfuscator,
    /// Shown before every policy log line.
    pub log_prefix: String,
    pub limits: StoreLimits,
    pub stats: RequestStats,
    /// Hooks set this: Plex is off limits while Stash waits on us.
    pub plex_forbidden_reason: Option<String>,
    /// Jobs the policy claimed and has not reported an outcome for. If the
    /// policy traps, the host gives them back (see `release_open_claims`).
    open_claims: Vec<(u64, u64)>,
    /// Set while `info` runs: the policy's state namespace is not known yet.
    pub state_closed: bool,
    guest_panic: Option<String>,
}

impl HostState {
    pub fn new(clock: Arc<dyn Clock>, seed: u64, queue: Queue) -> HostState {
        HostState {
            clock,
            rng: fastrand::Rng::with_seed(seed),
            queue,
            plex: None,
            stash: None,
            obfuscator: Obfuscator::default(),
            log_prefix: String::new(),
            limits: StoreLimits::default(),
            stats: RequestStats::default(),
            plex_forbidden_reason: None,
            open_claims: Vec::new(),
            state_closed: false,
            guest_panic: None,
        }
    }

    pub fn take_guest_panic(&mut self) -> Option<String> {
        self.guest_panic.take()
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn settle(&mut self, job_id: u64) {
        self.open_claims.retain(|(id, _)| *id != job_id);
    }

    /// After a trap: give back every job the policy still held, due after
    /// `delay_ms`, without counting the attempt (the job did not fail; the
    /// policy did). Returns how many.
    pub fn release_open_claims(&mut self, delay_ms: i64) -> usize {
        let claims = std::mem::take(&mut self.open_claims);
        let due = self.now() + delay_ms;
        claims.iter().filter(|(id, lease)| self.queue.release(*id, *lease, due, &[]).is_ok()).count()
    }

    fn state_refused(&self) -> Option<queue::QueueError> {
        self.state_closed.then(|| queue::QueueError::Storage("policy state is not available during `info`".into()))
    }
}

fn qerr(e: QueueError) -> queue::QueueError {
    match e {
        QueueError::LeaseLost => queue::QueueError::LeaseLost,
        other => queue::QueueError::Storage(other.to_string()),
    }
}

fn writes(ws: Vec<queue::StateWrite>) -> Vec<q::StateWrite> {
    ws.into_iter().map(|w| q::StateWrite { key: w.key, value: w.value }).collect()
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> wasmtime::Result<i64> {
        Ok(self.now())
    }
    fn random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.rng.u64(..))
    }
}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        if level == Level::Error && message.contains("panicked at") {
            self.guest_panic = Some(message.chars().take(500).collect());
        }
        stash_log::log(level, &format!("{}{}", self.log_prefix, message));
        Ok(())
    }
    fn obfuscate_path(&mut self, path: String) -> wasmtime::Result<String> {
        Ok(self.obfuscator.path(&path))
    }
    fn progress(&mut self, fraction: f64) -> wasmtime::Result<()> {
        stash_log::progress(fraction);
        Ok(())
    }
}

impl From<TransportError> for plex::TransportError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Refused(m) => plex::TransportError::Refused(m),
            TransportError::Timeout(m) => plex::TransportError::Timeout(m),
            TransportError::Reset(m) => plex::TransportError::Reset(m),
            TransportError::Dns(m) => plex::TransportError::Dns(m),
            TransportError::Tls(m) => plex::TransportError::Tls(m),
            TransportError::TooLarge(n) => plex::TransportError::TooLarge(n),
            TransportError::InvalidRequest(m) => plex::TransportError::InvalidRequest(m),
            TransportError::Other(m) => plex::TransportError::Other(m),
        }
    }
}

impl plex::Host for HostState {
    fn server_label(&mut self) -> wasmtime::Result<String> {
        Ok(self.plex.as_ref().map(|p| p.label()).unwrap_or_else(|| "(Plex not configured)".into()))
    }

    fn send(&mut self, request: plex::Request) -> wasmtime::Result<Result<plex::Response, plex::TransportError>> {
        if let Some(why) = &self.plex_forbidden_reason {
            return Ok(Err(plex::TransportError::InvalidRequest(why.clone())));
        }
        let Some(client) = &self.plex else {
            return Ok(Err(plex::TransportError::InvalidRequest(
                "Plex is not configured (plex_url/plex_token)".into(),
            )));
        };
        let body = match request.body {
            plex::Body::Empty => None,
            plex::Body::Bytes(b) => Some(b),
            plex::Body::StashImage(url) => match &self.stash {
                None => {
                    return Ok(Err(plex::TransportError::InvalidRequest(
                        "no Stash connection to fetch the image from".into(),
                    )));
                }
                Some(stash) => {
                    self.stats.stash_requests += 1;
                    match stash.fetch_image(&url) {
                        Ok(b) => Some(b),
                        Err(e) => return Ok(Err(e.into())),
                    }
                }
            },
        };
        let method = match request.method {
            plex::Method::Get => Method::Get,
            plex::Method::Put => Method::Put,
            plex::Method::Post => Method::Post,
            plex::Method::Delete => Method::Delete,
        };
        let req = PlexRequest {
            method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body,
            timeout: request.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        };
        self.stats.plex_requests += 1;
        if method == Method::Put {
            self.stats.plex_puts += 1;
        }
        Ok(match client.send(&req) {
            Ok(resp) => Ok(plex::Response {
                status: resp.status,
                headers: resp.headers,
                body: resp.body,
                elapsed_ms: u32::try_from(resp.elapsed.as_millis()).unwrap_or(u32::MAX),
            }),
            Err(e) => {
                self.stats.plex_transport_errors += 1;
                Err(e.into())
            }
        })
    }
}

impl stash::Host for HostState {
    fn find_scene(&mut self, id: String) -> wasmtime::Result<Result<Option<stash::Scene>, stash::StashError>> {
        let Some(client) = &self.stash else {
            return Ok(Err(stash::StashError::Unreachable("no Stash connection in this invocation".into())));
        };
        self.stats.stash_requests += 1;
        Ok(client.find_scene(&id).map_err(Into::into))
    }

    fn find_scenes(
        &mut self,
        query: stash::SceneQuery,
    ) -> wasmtime::Result<Result<stash::ScenePage, stash::StashError>> {
        let Some(client) = &self.stash else {
            return Ok(Err(stash::StashError::Unreachable("no Stash connection in this invocation".into())));
        };
        self.stats.stash_requests += 1;
        Ok(client.find_scenes(&query).map_err(Into::into))
    }
}

impl queue::Host for HostState {
    fn enqueue(
        &mut self,
        scene_id: String,
        payload: String,
        not_before_ms: i64,
    ) -> wasmtime::Result<Result<queue::EnqueueOutcome, queue::QueueError>> {
        let now = self.now();
        Ok(self
            .queue
            .enqueue(&scene_id, &payload, not_before_ms, now)
            .map(|o| match o {
                q::EnqueueOutcome::Created => queue::EnqueueOutcome::Created,
                q::EnqueueOutcome::Coalesced => queue::EnqueueOutcome::Coalesced,
                q::EnqueueOutcome::RequeuedAfterRunning => queue::EnqueueOutcome::RequeuedAfterRunning,
            })
            .map_err(qerr))
    }

    fn claim(&mut self, lease_ms: u32) -> wasmtime::Result<Result<Option<queue::Job>, queue::QueueError>> {
        let now = self.now();
        let token = self.rng.u64(1..);
        Ok(self
            .queue
            .claim(lease_ms, now, token)
            .inspect(|j| {
                if let Some(j) = j {
                    self.open_claims.push((j.id, j.lease));
                }
            })
            .map(|j| {
                j.map(|j| queue::Job {
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
            .map_err(qerr))
    }

    fn renew(&mut self, job_id: u64, lease: u64, lease_ms: u32) -> wasmtime::Result<Result<(), queue::QueueError>> {
        let now = self.now();
        Ok(self.queue.renew(job_id, lease, lease_ms, now).map_err(qerr))
    }

    fn complete(
        &mut self,
        job_id: u64,
        lease: u64,
        state: Vec<queue::StateWrite>,
    ) -> wasmtime::Result<Result<(), queue::QueueError>> {
        let now = self.now();
        self.settle(job_id);
        Ok(self.queue.complete(job_id, lease, &writes(state), now).map_err(qerr))
    }

    fn retry_at(
        &mut self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        error: String,
        state: Vec<queue::StateWrite>,
    ) -> wasmtime::Result<Result<(), queue::QueueError>> {
        let error: String = error.chars().take(4000).collect();
        self.settle(job_id);
        let now = self.now();
        Ok(self.queue.retry_at(job_id, lease, not_before_ms, &error, &writes(state), now).map_err(qerr))
    }

    fn release(
        &mut self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        state: Vec<queue::StateWrite>,
    ) -> wasmtime::Result<Result<(), queue::QueueError>> {
        self.settle(job_id);
        Ok(self.queue.release(job_id, lease, not_before_ms, &writes(state)).map_err(qerr))
    }

    fn dead_letter(
        &mut self,
        job_id: u64,
        lease: u64,
        info: queue::DeadLetterInfo,
        state: Vec<queue::StateWrite>,
    ) -> wasmtime::Result<Result<(), queue::QueueError>> {
        let now = self.now();
        self.settle(job_id);
        let cap = |s: String, n: usize| -> String { s.chars().take(n).collect() };
        let info = q::DeadLetterInfo {
            error_class: cap(info.error_class, 100),
            message: cap(info.message, 4000),
            detail: cap(info.detail, 16_000),
        };
        Ok(self.queue.dead_letter(job_id, lease, &info, &writes(state), now).map_err(qerr))
    }

    fn counts(&mut self) -> wasmtime::Result<Result<queue::QueueCounts, queue::QueueError>> {
        let now = self.now();
        Ok(self
            .queue
            .counts(now)
            .map(|c| queue::QueueCounts {
                ready: c.ready,
                waiting: c.waiting,
                running: c.running,
                dead: c.dead,
                next_due_ms: c.next_due_ms,
            })
            .map_err(qerr))
    }

    fn state_get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, queue::QueueError>> {
        if let Some(e) = self.state_refused() {
            return Ok(Err(e));
        }
        Ok(self.queue.state_get(&key).map_err(qerr))
    }

    fn state_set(&mut self, writes_: Vec<queue::StateWrite>) -> wasmtime::Result<Result<(), queue::QueueError>> {
        if let Some(e) = self.state_refused() {
            return Ok(Err(e));
        }
        Ok(self.queue.state_set(&writes(writes_)).map_err(qerr))
    }
}
