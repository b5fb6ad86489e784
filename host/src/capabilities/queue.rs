//! `queue`: the SQLite queue (`store::Queue`), with the time and lease
//! tokens supplied by the host, the policy's state namespace, and the claims
//! the policy holds (given back if it fails while holding them).

use crate::clock::Clock;
use crate::runtime::wit::queue;
use crate::store::{self, Queue};
use std::sync::Arc;

pub struct QueueCap {
    pub queue: Queue,
    clock: Arc<dyn Clock>,
    rng: fastrand::Rng,
    /// Jobs the policy claimed and has not reported an outcome for.
    open_claims: Vec<(u64, u64)>,
    /// Set while `info` runs: the policy is not admitted yet.
    pub state_closed: bool,
}

/// Longest error text kept with a job or dead letter.
const MAX_ERROR_CHARS: usize = 4_000;
const MAX_DETAIL_CHARS: usize = 16_000;
const MAX_CLASS_CHARS: usize = 100;

fn qerr(e: store::QueueError) -> queue::QueueError {
    match e {
        store::QueueError::LeaseLost => queue::QueueError::LeaseLost,
        other => queue::QueueError::Storage(other.to_string()),
    }
}

fn cap(s: String, n: usize) -> String {
    if s.chars().count() <= n { s } else { s.chars().take(n).collect() }
}

impl QueueCap {
    pub fn new(queue: Queue, clock: Arc<dyn Clock>, seed: u64) -> QueueCap {
        QueueCap { queue, clock, rng: fastrand::Rng::with_seed(seed), open_claims: Vec::new(), state_closed: false }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn settle(&mut self, job_id: u64) {
        self.open_claims.retain(|(id, _)| *id != job_id);
    }

    /// After a policy failure: give back every job it still held, due after
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

type Answer<T> = wasmtime::Result<Result<T, queue::QueueError>>;

impl queue::Host for QueueCap {
    fn enqueue(&mut self, scene_id: String, payload: String, not_before_ms: i64) -> Answer<queue::EnqueueOutcome> {
        let now = self.now();
        Ok(self.queue.enqueue(&scene_id, &payload, not_before_ms, now).map_err(qerr))
    }

    fn claim(&mut self, lease_ms: u32) -> Answer<Option<queue::Job>> {
        let now = self.now();
        let token = self.rng.u64(1..);
        let claimed = self.queue.claim(lease_ms, now, token).map_err(qerr);
        if let Ok(Some(job)) = &claimed {
            self.open_claims.push((job.id, job.lease));
        }
        Ok(claimed)
    }

    fn renew(&mut self, job_id: u64, lease: u64, lease_ms: u32) -> Answer<()> {
        let now = self.now();
        Ok(self.queue.renew(job_id, lease, lease_ms, now).map_err(qerr))
    }

    fn complete(&mut self, job_id: u64, lease: u64, state: Vec<queue::StateWrite>) -> Answer<()> {
        let now = self.now();
        self.settle(job_id);
        Ok(self.queue.complete(job_id, lease, &state, now).map_err(qerr))
    }

    fn retry_at(
        &mut self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        error: String,
        state: Vec<queue::StateWrite>,
    ) -> Answer<()> {
        let now = self.now();
        self.settle(job_id);
        Ok(self.queue.retry_at(job_id, lease, not_before_ms, &cap(error, MAX_ERROR_CHARS), &state, now).map_err(qerr))
    }

    fn release(&mut self, job_id: u64, lease: u64, not_before_ms: i64, state: Vec<queue::StateWrite>) -> Answer<()> {
        self.settle(job_id);
        Ok(self.queue.release(job_id, lease, not_before_ms, &state).map_err(qerr))
    }

    fn dead_letter(
        &mut self,
        job_id: u64,
        lease: u64,
        info: queue::DeadLetterInfo,
        state: Vec<queue::StateWrite>,
    ) -> Answer<()> {
        let now = self.now();
        self.settle(job_id);
        let info = queue::DeadLetterInfo {
            error_class: cap(info.error_class, MAX_CLASS_CHARS),
            message: cap(info.message, MAX_ERROR_CHARS),
            detail: cap(info.detail, MAX_DETAIL_CHARS),
        };
        Ok(self.queue.dead_letter(job_id, lease, &info, &state, now).map_err(qerr))
    }

    fn counts(&mut self) -> Answer<queue::QueueCounts> {
        let now = self.now();
        Ok(self.queue.counts(now).map_err(qerr))
    }

    fn state_get(&mut self, key: String) -> Answer<Option<String>> {
        if let Some(e) = self.state_refused() {
            return Ok(Err(e));
        }
        Ok(self.queue.state_get(&key).map_err(qerr))
    }

    fn state_set(&mut self, writes: Vec<queue::StateWrite>) -> Answer<()> {
        if let Some(e) = self.state_refused() {
            return Ok(Err(e));
        }
        Ok(self.queue.state_set(&writes).map_err(qerr))
    }
}
