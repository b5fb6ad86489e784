//! `queue`: the SQLite queue (`store::Queue`), with the time and lease
//! tokens supplied by the host, the policy's state namespace, the claims
//! the policy holds (given back if it fails while holding them), and the
//! bounds that keep a policy from filling the disk (stated in the WIT's
//! `queue-error.refused`).

use crate::clock::Clock;
use crate::runtime::wit::{history, queue};
use crate::store::{self, Queue};
use std::sync::Arc;

/// A job's payload.
const MAX_PAYLOAD_BYTES: usize = 64 << 10;
/// A state key and value.
const MAX_STATE_KEY_CHARS: usize = 200;
const MAX_STATE_VALUE_BYTES: usize = 256 << 10;
/// State keys one policy may keep.
const MAX_STATE_KEYS: u64 = 1_000;
/// Per call into the policy.
const MAX_STATE_WRITES_PER_CALL: usize = 64;
const MAX_ENQUEUES_PER_CALL: u32 = 1_000;
/// Scene ids per `synced-at` call.
const MAX_SYNCED_AT_IDS: usize = 1_000;
/// How far ahead a job may be due.
const MAX_DUE_AHEAD_MS: i64 = 30 * 86_400_000;
/// Longest error text kept with a job or dead letter.
const MAX_ERROR_CHARS: usize = 4_000;
const MAX_DETAIL_CHARS: usize = 16_000;
const MAX_CLASS_CHARS: usize = 100;
/// What a policy may leave queued in all, over any number of calls: a few
/// hundred thousand scenes' jobs with room to spare, and never a full disk.
const MAX_QUEUED_JOBS: u64 = 1_000_000;
const MAX_QUEUED_PAYLOAD_BYTES: u64 = 1 << 30;
/// A lease is at most this long (a crashed drainer's job comes back after it).
const MAX_LEASE_MS: u32 = 30 * 60_000;

pub struct QueueCap {
    pub queue: Queue,
    clock: Arc<dyn Clock>,
    rng: fastrand::Rng,
    /// Jobs the policy claimed and has not reported an outcome for.
    open_claims: Vec<(u64, u64)>,
    /// Set while `info` runs: the policy is not admitted yet.
    pub state_closed: bool,
    /// Enqueues in the current call into the policy.
    enqueues: u32,
    /// Outcomes recorded (complete, retry-at, release, dead-letter) and jobs
    /// enqueued, ever: the drain loop tells work from a hollow `worked`.
    pub effects: u64,
    /// Jobs attempted, ever (complete, retry-at, dead-letter): what a
    /// drain's summary counts as processed.
    pub attempted: u64,
    /// The queue's jobs and payload bytes as last counted, plus what this
    /// session enqueued since (an overestimate: coalesced payloads count
    /// again); counted afresh when it reaches a bound.
    queued: Option<(u64, u64)>,
    /// The bounds on what is queued in all.
    limits: (u64, u64),
}

fn qerr(e: store::QueueError) -> queue::QueueError {
    match e {
        store::QueueError::LeaseLost => queue::QueueError::LeaseLost,
        other => queue::QueueError::Storage(other.to_string()),
    }
}

fn refused(why: String) -> queue::QueueError {
    queue::QueueError::Refused(why)
}

fn cap(s: String, n: usize) -> String {
    if s.chars().count() <= n { s } else { s.chars().take(n).collect() }
}

/// A job key: a Stash scene id (1-20 digits), or an object whose scenes a
/// change concerns (`performer:12`, `studio:3`, `tag:7`, `group:4`).
fn key_ok(key: &str) -> bool {
    let id = match key.split_once(':') {
        Some(("performer" | "studio" | "tag" | "group", id)) => id,
        Some(_) => return false,
        None => key,
    };
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

impl QueueCap {
    pub fn new(queue: Queue, clock: Arc<dyn Clock>, seed: u64) -> QueueCap {
        QueueCap {
            queue,
            clock,
            rng: fastrand::Rng::with_seed(seed),
            open_claims: Vec::new(),
            state_closed: false,
            enqueues: 0,
            effects: 0,
            attempted: 0,
            queued: None,
            limits: (MAX_QUEUED_JOBS, MAX_QUEUED_PAYLOAD_BYTES),
        }
    }

    /// Refuse an enqueue that would take the queue past its bounds in all
    /// (a change to a scene already queued adds no job).
    fn check_total(&mut self, scene_id: &str, payload_len: u64) -> Result<(), queue::QueueError> {
        let (max_jobs, max_bytes) = self.limits;
        let over = |(jobs, bytes): (u64, u64)| jobs + 1 > max_jobs || bytes + payload_len > max_bytes;
        let totals = match self.queued {
            Some(estimate) if !over(estimate) => return Ok(()),
            _ => self.queue.totals().map_err(qerr)?,
        };
        self.queued = Some(totals);
        let bytes_fit = totals.1 + payload_len <= max_bytes;
        if !over(totals) || (bytes_fit && self.queue.is_queued(scene_id).map_err(qerr)?) {
            return Ok(());
        }
        Err(refused(format!(
            "the queue holds {} job(s) and {} MiB of payloads; a policy may keep at most {max_jobs} and {} MiB",
            totals.0,
            totals.1 >> 20,
            max_bytes >> 20
        )))
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A new call into the policy starts: the per-call bounds start again.
    pub fn begin_call(&mut self) {
        self.enqueues = 0;
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
        claims.iter().filter(|(id, lease)| self.queue.give_back(*id, *lease, due).is_ok()).count()
    }

    fn state_refused(&self) -> Option<queue::QueueError> {
        self.state_closed.then(|| queue::QueueError::Storage("policy state is not available during `info`".into()))
    }

    /// The writes, if they stay within the bounds.
    fn check_writes(&self, writes: &[queue::StateWrite]) -> Result<(), queue::QueueError> {
        if writes.len() > MAX_STATE_WRITES_PER_CALL {
            return Err(refused(format!(
                "{} state writes in one call; at most {MAX_STATE_WRITES_PER_CALL}",
                writes.len()
            )));
        }
        // Keys the writes add and remove: a call that moves a record to a
        // new key and deletes its old one adds none in all.
        let (mut new_keys, mut removed_keys) = (0u64, 0u64);
        for w in writes {
            if w.key.is_empty() || w.key.chars().count() > MAX_STATE_KEY_CHARS {
                return Err(refused(format!("a state key is 1-{MAX_STATE_KEY_CHARS} characters")));
            }
            if w.value.as_ref().is_some_and(|v| v.len() > MAX_STATE_VALUE_BYTES) {
                return Err(refused(format!(
                    "the state value of {:?} is over {} KiB",
                    cap(w.key.clone(), 60),
                    MAX_STATE_VALUE_BYTES >> 10
                )));
            }
            let exists = self.queue.state_get(&w.key).map_err(qerr)?.is_some();
            match (&w.value, exists) {
                (Some(_), false) => new_keys += 1,
                (None, true) => removed_keys += 1,
                _ => {}
            }
        }
        if new_keys > removed_keys
            && self.queue.state_key_count().map_err(qerr)? + new_keys - removed_keys > MAX_STATE_KEYS
        {
            return Err(refused(format!("a policy keeps at most {MAX_STATE_KEYS} state keys")));
        }
        Ok(())
    }

    fn due(&self, not_before_ms: i64) -> i64 {
        not_before_ms.min(self.now().saturating_add(MAX_DUE_AHEAD_MS))
    }
}

type Answer<T> = wasmtime::Result<Result<T, queue::QueueError>>;

impl queue::Host for QueueCap {
    fn enqueue(&mut self, scene_id: String, payload: String, not_before_ms: i64) -> Answer<queue::EnqueueOutcome> {
        if !key_ok(&scene_id) {
            return Ok(Err(refused(format!(
                "{:?} is not a Stash scene id (1-20 digits) or an object key like performer:12",
                cap(scene_id, 40)
            ))));
        }
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Ok(Err(refused(format!(
                "a payload of {} KiB is over {} KiB",
                payload.len() >> 10,
                MAX_PAYLOAD_BYTES >> 10
            ))));
        }
        if self.enqueues >= MAX_ENQUEUES_PER_CALL {
            return Ok(Err(refused(format!("at most {MAX_ENQUEUES_PER_CALL} enqueues per call"))));
        }
        if let Err(e) = self.check_total(&scene_id, payload.len() as u64) {
            return Ok(Err(e));
        }
        self.enqueues += 1;
        let (now, due) = (self.now(), self.due(not_before_ms));
        let outcome = self.queue.enqueue(&scene_id, &payload, due, now).map_err(qerr);
        if let (Ok(made), Some((jobs, bytes))) = (&outcome, self.queued.as_mut()) {
            *jobs += u64::from(matches!(made, queue::EnqueueOutcome::Created));
            *bytes += payload.len() as u64;
        }
        self.effects += u64::from(outcome.is_ok());
        Ok(outcome)
    }

    fn claim(&mut self, lease_ms: u32) -> Answer<Option<queue::Job>> {
        let now = self.now();
        let token = self.rng.u64(1..);
        let claimed = self.queue.claim(lease_ms.clamp(1_000, MAX_LEASE_MS), now, token).map_err(qerr);
        if let Ok(Some(job)) = &claimed {
            self.open_claims.push((job.id, job.lease));
        }
        Ok(claimed)
    }

    fn renew(&mut self, job_id: u64, lease: u64, lease_ms: u32) -> Answer<()> {
        let now = self.now();
        Ok(self.queue.renew(job_id, lease, lease_ms.clamp(1_000, MAX_LEASE_MS), now).map_err(qerr))
    }

    fn complete(&mut self, job_id: u64, lease: u64, state: Vec<queue::StateWrite>) -> Answer<()> {
        if let Err(e) = self.check_writes(&state) {
            return Ok(Err(e));
        }
        let now = self.now();
        self.settle(job_id);
        self.effects += 1;
        self.attempted += 1;
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
        if let Err(e) = self.check_writes(&state) {
            return Ok(Err(e));
        }
        let (now, due) = (self.now(), self.due(not_before_ms));
        self.settle(job_id);
        self.effects += 1;
        self.attempted += 1;
        Ok(self.queue.retry_at(job_id, lease, due, &cap(error, MAX_ERROR_CHARS), &state, now).map_err(qerr))
    }

    fn release(&mut self, job_id: u64, lease: u64, not_before_ms: i64, state: Vec<queue::StateWrite>) -> Answer<()> {
        if let Err(e) = self.check_writes(&state) {
            return Ok(Err(e));
        }
        let due = self.due(not_before_ms);
        self.settle(job_id);
        self.effects += 1;
        Ok(self.queue.release(job_id, lease, due, &state).map_err(qerr))
    }

    fn dead_letter(
        &mut self,
        job_id: u64,
        lease: u64,
        info: queue::DeadLetterInfo,
        state: Vec<queue::StateWrite>,
    ) -> Answer<()> {
        if let Err(e) = self.check_writes(&state) {
            return Ok(Err(e));
        }
        let now = self.now();
        self.settle(job_id);
        self.effects += 1;
        self.attempted += 1;
        let info = queue::DeadLetterInfo {
            error_class: cap(info.error_class, MAX_CLASS_CHARS),
            message: cap(info.message, MAX_ERROR_CHARS),
            detail: cap(info.detail, MAX_DETAIL_CHARS),
        };
        Ok(self.queue.dead_letter(job_id, lease, &info, &state, now).map_err(qerr))
    }

    fn forget(&mut self, scene_id: String) -> Answer<bool> {
        if !key_ok(&scene_id) {
            return Ok(Err(refused(format!("{:?} is not a job key", cap(scene_id, 40)))));
        }
        let forgotten = self.queue.forget(&scene_id).map_err(qerr);
        self.effects += u64::from(matches!(forgotten, Ok(true)));
        Ok(forgotten)
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
        if let Err(e) = self.check_writes(&writes) {
            return Ok(Err(e));
        }
        Ok(self.queue.state_set(&writes).map_err(qerr))
    }
}

/// The 0.2.0 `history` import: when each scene last synced.
impl history::Host for QueueCap {
    fn synced_at(&mut self, scene_ids: Vec<String>) -> Answer<Vec<Option<i64>>> {
        if scene_ids.len() > MAX_SYNCED_AT_IDS {
            return Ok(Err(refused(format!("at most {MAX_SYNCED_AT_IDS} ids per synced-at call"))));
        }
        if let Some(bad) = scene_ids.iter().find(|id| id.contains(':') || !key_ok(id)) {
            return Ok(Err(refused(format!("{:?} is not a Stash scene id", cap(bad.clone(), 40)))));
        }
        Ok(self.queue.synced_at(&scene_ids).map_err(qerr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use queue::Host as _;

    fn enqueue(cap: &mut QueueCap, id: &str, payload: &str) -> Result<queue::EnqueueOutcome, queue::QueueError> {
        cap.begin_call();
        cap.enqueue(id.into(), payload.into(), 0).expect("no trap")
    }

    #[test]
    fn at_the_state_key_cap_a_record_can_move_to_a_new_key_but_not_add_one() {
        let mut queue = Queue::open_in_memory().expect("queue");
        let full: Vec<store::StateWrite> = (0..MAX_STATE_KEYS)
            .map(|i| store::StateWrite { key: format!("img/{i}"), value: Some("r".into()) })
            .collect();
        queue.state_set(&full).expect("fill the state");
        let cap = QueueCap::new(queue, Arc::new(FakeClock::new(1_000)), 7);
        let write =
            |key: &str, value: Option<&str>| queue::StateWrite { key: key.into(), value: value.map(Into::into) };
        let added = cap.check_writes(&[write("img-shard/1", Some("r"))]);
        assert!(matches!(&added, Err(queue::QueueError::Refused(m)) if m.contains("1000 state keys")), "{added:?}");
        let moved = cap.check_writes(&[write("img-shard/1", Some("r")), write("img/7", None)]);
        assert!(moved.is_ok(), "{moved:?}");
        let not_there = cap.check_writes(&[write("img-shard/1", Some("r")), write("img/absent", None)]);
        assert!(not_there.is_err(), "deleting a key that is not there frees nothing");
    }

    #[test]
    fn a_policy_cannot_queue_past_the_bounds_in_all_over_many_calls() {
        let queue = Queue::open_in_memory().expect("queue");
        let mut cap = QueueCap::new(queue, Arc::new(FakeClock::new(1_000)), 7);
        cap.limits = (3, 1 << 20);
        for id in ["1", "2", "3"] {
            assert!(enqueue(&mut cap, id, "p").is_ok());
        }
        let refused = enqueue(&mut cap, "4", "p");
        assert!(matches!(&refused, Err(queue::QueueError::Refused(m)) if m.contains("at most 3")), "{refused:?}");
        assert!(enqueue(&mut cap, "2", "newer").is_ok(), "a change to a queued scene is not a new job");
        // Jobs that finish make room again (counted afresh at the bound).
        let job = cap.claim(60_000).expect("no trap").expect("claim").expect("a job");
        assert!(cap.complete(job.id, job.lease, Vec::new()).expect("no trap").is_ok());
        assert!(enqueue(&mut cap, "4", "p").is_ok());

        // And payload bytes in all.
        let queue = Queue::open_in_memory().expect("queue");
        let mut cap = QueueCap::new(queue, Arc::new(FakeClock::new(1_000)), 7);
        cap.limits = (1_000, 100);
        assert!(enqueue(&mut cap, "1", &"x".repeat(60)).is_ok());
        let refused = enqueue(&mut cap, "2", &"x".repeat(60));
        assert!(matches!(&refused, Err(queue::QueueError::Refused(m)) if m.contains("MiB")), "{refused:?}");
        assert!(enqueue(&mut cap, "2", &"x".repeat(30)).is_ok());
    }
}
