//! The durable job queue: SQLite in the plugin's data directory.
//!
//! - One live job per scene (`scene_id` is unique). A new change replaces the
//!   payload (newest wins); if the job is running, it is marked `dirty` and
//!   runs again after the current attempt, so a change made mid-sync is never
//!   lost.
//! - `not_before` is a column used by the claim query: a job waiting for its
//!   retry time is simply not selected, so it never blocks others and nothing
//!   spins.
//! - A claim carries a lease (`lease` token + `lease_until`). A drainer that
//!   crashes leaves a running job whose lease expires; the next claim takes
//!   it. Outcomes reported with a stale lease are refused.
//! - Policy state (breaker, counters) lives in `policy_state`, and every job
//!   outcome can carry state writes applied in the same transaction.
//! - WAL with `synchronous=FULL`: a recorded change survives a crash of the
//!   process and of the machine (see docs/architecture.md for the trade-off).
//!
//! All times are Unix milliseconds supplied by the caller (the injected clock).

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("the job's lease was lost (it expired and the job was claimed again, or the job was removed)")]
    LeaseLost,
    #[error("queue database error: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error(
        "the queue database was written by a newer stash2plex (schema {found}, this build knows {known}); upgrade stash2plex"
    )]
    NewerSchema { found: i64, known: i64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: u64,
    pub scene_id: String,
    pub payload: String,
    pub attempt: u32,
    pub first_enqueued_ms: i64,
    pub last_enqueued_ms: i64,
    pub lease: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Created,
    Coalesced,
    RequeuedAfterRunning,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub ready: u64,
    pub waiting: u64,
    pub running: u64,
    pub dead: u64,
    pub next_due_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateWrite {
    pub key: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterInfo {
    pub error_class: String,
    pub message: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: u64,
    pub scene_id: String,
    pub payload: String,
    pub error_class: String,
    pub message: String,
    pub detail: String,
    pub attempts: u32,
    pub first_enqueued_ms: i64,
    /// The first failed attempt of this change.
    pub first_failed_ms: i64,
    /// The last one (when it was dead-lettered).
    pub failed_ms: i64,
}

/// Which dead letters a task acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadFilter {
    pub class: Option<String>,
    pub since_ms: i64,
    pub until_ms: i64,
}

impl DeadFilter {
    pub fn all() -> DeadFilter {
        DeadFilter { class: None, since_ms: i64::MIN, until_ms: i64::MAX }
    }
}

/// A job as status reports show it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingJob {
    pub scene_id: String,
    pub not_before_ms: i64,
    pub attempt: u32,
    pub last_error: Option<String>,
}

pub struct Queue {
    conn: Connection,
    /// Namespace for `policy_state` keys (the policy's name).
    namespace: String,
}

impl Queue {
    /// Open (creating if needed) the queue database at `path`.
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory queue (tests, the hook dry-run).
    pub fn open_in_memory() -> Result<Queue, QueueError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Queue, QueueError> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // journal_mode returns a row; in-memory databases answer "memory".
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(QueueError::NewerSchema { found: version, known: SCHEMA_VERSION });
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS jobs (
                     id              INTEGER PRIMARY KEY AUTOINCREMENT,
                     scene_id        TEXT NOT NULL UNIQUE,
                     payload         TEXT NOT NULL,
                     state           TEXT NOT NULL CHECK (state IN ('ready', 'running')),
                     not_before      INTEGER NOT NULL,
                     attempt         INTEGER NOT NULL DEFAULT 0,
                     lease           INTEGER,
                     lease_until     INTEGER,
                     dirty           INTEGER NOT NULL DEFAULT 0,
                     first_enqueued  INTEGER NOT NULL,
                     last_enqueued   INTEGER NOT NULL,
                     last_error      TEXT,
                     first_failed    INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, not_before, id);
                 CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (state, lease_until);
                 CREATE TABLE IF NOT EXISTS dead_letters (
                     id              INTEGER PRIMARY KEY AUTOINCREMENT,
                     scene_id        TEXT NOT NULL,
                     payload         TEXT NOT NULL,
                     error_class     TEXT NOT NULL,
                     message         TEXT NOT NULL,
                     detail          TEXT NOT NULL,
                     attempts        INTEGER NOT NULL,
                     first_enqueued  INTEGER NOT NULL,
                     first_failed    INTEGER NOT NULL,
                     failed_at       INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS dead_letters_failed ON dead_letters (failed_at);
                 CREATE INDEX IF NOT EXISTS dead_letters_class ON dead_letters (error_class);
                 CREATE TABLE IF NOT EXISTS policy_state (
                     namespace TEXT NOT NULL,
                     key       TEXT NOT NULL,
                     value     TEXT NOT NULL,
                     PRIMARY KEY (namespace, key)
                 );
                 CREATE TABLE IF NOT EXISTS host_state (
                     key   TEXT PRIMARY KEY,
                     value TEXT NOT NULL
                 );
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        Ok(Queue { conn, namespace: "default".into() })
    }

    /// Set the namespace used for policy state keys.
    pub fn set_namespace(&mut self, ns: &str) {
        self.namespace = ns.to_string();
    }

    fn tx(&mut self) -> Result<Transaction<'_>, QueueError> {
        Ok(self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// Record a change for a scene, due at `not_before_ms`.
    pub fn enqueue(
        &mut self,
        scene_id: &str,
        payload: &str,
        not_before_ms: i64,
        now_ms: i64,
    ) -> Result<EnqueueOutcome, QueueError> {
        let tx = self.tx()?;
        let existing: Option<(i64, String)> = tx
            .query_row("SELECT id, state FROM jobs WHERE scene_id = ?1", [scene_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let outcome = match existing {
            None => {
                tx.execute(
                    "INSERT INTO jobs (scene_id, payload, state, not_before, first_enqueued, last_enqueued)
                     VALUES (?1, ?2, 'ready', ?3, ?4, ?4)",
                    params![scene_id, payload, not_before_ms, now_ms],
                )?;
                EnqueueOutcome::Created
            }
            Some((id, state)) if state == "running" => {
                tx.execute(
                    "UPDATE jobs SET payload = ?2, dirty = 1, last_enqueued = ?3 WHERE id = ?1",
                    params![id, payload, now_ms],
                )?;
                EnqueueOutcome::RequeuedAfterRunning
            }
            Some((id, _)) => {
                // A fresh change gets a fresh retry budget and is due no later
                // than it asks to be.
                tx.execute(
                    "UPDATE jobs SET payload = ?2, attempt = 0, not_before = MIN(not_before, ?3), last_enqueued = ?4
                     WHERE id = ?1",
                    params![id, payload, not_before_ms, now_ms],
                )?;
                EnqueueOutcome::Coalesced
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Claim the next due job for `lease_ms`: an expired lease first (a
    /// crashed drainer's job), then the earliest due ready job.
    pub fn claim(&mut self, lease_ms: u32, now_ms: i64, lease_token: u64) -> Result<Option<Job>, QueueError> {
        let tx = self.tx()?;
        let expired: Option<i64> = tx
            .query_row(
                "SELECT id FROM jobs WHERE state = 'running' AND lease_until <= ?1 ORDER BY lease_until, id LIMIT 1",
                [now_ms],
                |r| r.get(0),
            )
            .optional()?;
        let id = match expired {
            Some(id) => Some(id),
            None => tx
                .query_row(
                    "SELECT id FROM jobs WHERE state = 'ready' AND not_before <= ?1 ORDER BY not_before, id LIMIT 1",
                    [now_ms],
                    |r| r.get(0),
                )
                .optional()?,
        };
        let Some(id) = id else {
            return Ok(None);
        };
        let lease = lease_token as i64;
        let job = tx.query_row(
            "UPDATE jobs SET state = 'running', lease = ?2, lease_until = ?3, attempt = attempt + 1, dirty = 0
             WHERE id = ?1
             RETURNING id, scene_id, payload, attempt, first_enqueued, last_enqueued, last_error",
            params![id, lease, now_ms + i64::from(lease_ms)],
            |r| {
                Ok(Job {
                    id: r.get::<_, i64>(0)? as u64,
                    scene_id: r.get(1)?,
                    payload: r.get(2)?,
                    attempt: r.get::<_, i64>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
                    first_enqueued_ms: r.get(4)?,
                    last_enqueued_ms: r.get(5)?,
                    lease: lease_token,
                    last_error: r.get(6)?,
                })
            },
        )?;
        tx.commit()?;
        Ok(Some(job))
    }

    fn check_lease(tx: &Transaction<'_>, job_id: u64, lease: u64) -> Result<bool, QueueError> {
        let dirty: Option<i64> = tx
            .query_row(
                "SELECT dirty FROM jobs WHERE id = ?1 AND state = 'running' AND lease = ?2",
                params![job_id as i64, lease as i64],
                |r| r.get(0),
            )
            .optional()?;
        match dirty {
            None => Err(QueueError::LeaseLost),
            Some(d) => Ok(d != 0),
        }
    }

    fn apply_state(tx: &Transaction<'_>, namespace: &str, writes: &[StateWrite]) -> Result<(), QueueError> {
        for w in writes {
            match &w.value {
                Some(v) => tx.execute(
                    "INSERT INTO policy_state (namespace, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                    params![namespace, w.key, v],
                )?,
                None => {
                    tx.execute("DELETE FROM policy_state WHERE namespace = ?1 AND key = ?2", params![namespace, w.key])?
                }
            };
        }
        Ok(())
    }

    pub fn renew(&mut self, job_id: u64, lease: u64, lease_ms: u32, now_ms: i64) -> Result<(), QueueError> {
        let tx = self.tx()?;
        Self::check_lease(&tx, job_id, lease)?;
        tx.execute(
            "UPDATE jobs SET lease_until = ?2 WHERE id = ?1",
            params![job_id as i64, now_ms + i64::from(lease_ms)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The job succeeded. If a newer change arrived meanwhile, it runs again.
    pub fn complete(&mut self, job_id: u64, lease: u64, state: &[StateWrite], now_ms: i64) -> Result<(), QueueError> {
        let ns = self.namespace.clone();
        let tx = self.tx()?;
        let dirty = Self::check_lease(&tx, job_id, lease)?;
        if dirty {
            tx.execute(
                "UPDATE jobs SET state = 'ready', not_before = ?2, attempt = 0, lease = NULL, lease_until = NULL,
                 dirty = 0, last_error = NULL, first_failed = NULL WHERE id = ?1",
                params![job_id as i64, now_ms],
            )?;
        } else {
            tx.execute("DELETE FROM jobs WHERE id = ?1", [job_id as i64])?;
        }
        Self::apply_state(&tx, &ns, state)?;
        tx.commit()?;
        Ok(())
    }

    /// The attempt failed; due again at `not_before_ms`. A newer change that
    /// arrived meanwhile starts a fresh retry budget but keeps the time.
    pub fn retry_at(
        &mut self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        error: &str,
        state: &[StateWrite],
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let ns = self.namespace.clone();
        let tx = self.tx()?;
        let dirty = Self::check_lease(&tx, job_id, lease)?;
        tx.execute(
            "UPDATE jobs SET state = 'ready', not_before = ?2, lease = NULL, lease_until = NULL, dirty = 0,
             last_error = ?3, attempt = CASE WHEN ?4 THEN 0 ELSE attempt END,
             first_failed = CASE WHEN ?4 THEN NULL ELSE COALESCE(first_failed, ?5) END WHERE id = ?1",
            params![job_id as i64, not_before_ms, error, dirty, now_ms],
        )?;
        Self::apply_state(&tx, &ns, state)?;
        tx.commit()?;
        Ok(())
    }

    /// Give the job back without counting the attempt.
    pub fn release(
        &mut self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        state: &[StateWrite],
    ) -> Result<(), QueueError> {
        let ns = self.namespace.clone();
        let tx = self.tx()?;
        Self::check_lease(&tx, job_id, lease)?;
        tx.execute(
            "UPDATE jobs SET state = 'ready', not_before = ?2, lease = NULL, lease_until = NULL, dirty = 0,
             attempt = MAX(attempt - 1, 0) WHERE id = ?1",
            params![job_id as i64, not_before_ms],
        )?;
        Self::apply_state(&tx, &ns, state)?;
        tx.commit()?;
        Ok(())
    }

    /// Move the job to the dead-letter table. If a newer change arrived while
    /// it ran, that change is kept as a fresh job instead of being buried.
    pub fn dead_letter(
        &mut self,
        job_id: u64,
        lease: u64,
        info: &DeadLetterInfo,
        state: &[StateWrite],
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let ns = self.namespace.clone();
        let tx = self.tx()?;
        let dirty = Self::check_lease(&tx, job_id, lease)?;
        tx.execute(
            "INSERT INTO dead_letters
                 (scene_id, payload, error_class, message, detail, attempts, first_enqueued, first_failed, failed_at)
             SELECT scene_id, payload, ?2, ?3, ?4, attempt, first_enqueued, COALESCE(first_failed, ?5), ?5
             FROM jobs WHERE id = ?1",
            params![job_id as i64, info.error_class, info.message, info.detail, now_ms],
        )?;
        if dirty {
            tx.execute(
                "UPDATE jobs SET state = 'ready', not_before = ?2, attempt = 0, lease = NULL, lease_until = NULL,
                 dirty = 0, last_error = NULL, first_failed = NULL, first_enqueued = last_enqueued WHERE id = ?1",
                params![job_id as i64, now_ms],
            )?;
        } else {
            tx.execute("DELETE FROM jobs WHERE id = ?1", [job_id as i64])?;
        }
        Self::apply_state(&tx, &ns, state)?;
        tx.commit()?;
        Ok(())
    }

    pub fn counts(&self, now_ms: i64) -> Result<Counts, QueueError> {
        let (ready, waiting, running, next_due): (i64, i64, i64, Option<i64>) = self.conn.query_row(
            "SELECT
                 COALESCE(SUM(state = 'ready' AND not_before <= ?1), 0)
                   + COALESCE(SUM(state = 'running' AND lease_until <= ?1), 0),
                 COALESCE(SUM(state = 'ready' AND not_before > ?1), 0),
                 COALESCE(SUM(state = 'running' AND lease_until > ?1), 0),
                 MIN(CASE WHEN state = 'ready' AND not_before > ?1 THEN not_before END)
             FROM jobs",
            [now_ms],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let dead: i64 = self.conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
        Ok(Counts {
            ready: ready.max(0) as u64,
            waiting: waiting.max(0) as u64,
            running: running.max(0) as u64,
            dead: dead.max(0) as u64,
            next_due_ms: next_due,
        })
    }

    pub fn state_get(&self, key: &str) -> Result<Option<String>, QueueError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM policy_state WHERE namespace = ?1 AND key = ?2",
                params![self.namespace, key],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn state_set(&mut self, writes: &[StateWrite]) -> Result<(), QueueError> {
        let ns = self.namespace.clone();
        let tx = self.tx()?;
        Self::apply_state(&tx, &ns, writes)?;
        tx.commit()?;
        Ok(())
    }

    /// Host bookkeeping (cached settings, device id).
    pub fn host_get(&self, key: &str) -> Result<Option<String>, QueueError> {
        Ok(self.conn.query_row("SELECT value FROM host_state WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn host_set(&mut self, key: &str, value: &str) -> Result<(), QueueError> {
        self.conn.execute(
            "INSERT INTO host_state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Dead letters matching `filter`, newest first.
    pub fn dead_letters_matching(&self, filter: &DeadFilter, limit: u32) -> Result<Vec<DeadLetter>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, scene_id, payload, error_class, message, detail, attempts, first_enqueued, failed_at,
                    first_failed
             FROM dead_letters
             WHERE (?1 IS NULL OR error_class = ?1) AND failed_at >= ?2 AND failed_at <= ?3
             ORDER BY failed_at DESC, id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![filter.class, filter.since_ms, filter.until_ms, limit], |r| {
            Ok(DeadLetter {
                id: r.get::<_, i64>(0)? as u64,
                scene_id: r.get(1)?,
                payload: r.get(2)?,
                error_class: r.get(3)?,
                message: r.get(4)?,
                detail: r.get(5)?,
                attempts: r.get::<_, i64>(6)?.clamp(0, i64::from(u32::MAX)) as u32,
                first_enqueued_ms: r.get(7)?,
                failed_ms: r.get(8)?,
                first_failed_ms: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Dead letters per error class.
    pub fn dead_letter_classes(&self) -> Result<Vec<(String, u64)>, QueueError> {
        let mut stmt = self
            .conn
            .prepare("SELECT error_class, COUNT(*) FROM dead_letters GROUP BY error_class ORDER BY COUNT(*) DESC")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Put matching dead letters back in the queue (due now, fresh retry
    /// budget, coalescing with any live job of the same scene) and remove
    /// them from the dead-letter table, in one transaction. Returns how many.
    pub fn requeue_dead(&mut self, filter: &DeadFilter, now_ms: i64) -> Result<u64, QueueError> {
        let tx = self.tx()?;
        let rows: Vec<(i64, String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT id, scene_id, payload FROM dead_letters
                 WHERE (?1 IS NULL OR error_class = ?1) AND failed_at >= ?2 AND failed_at <= ?3
                 ORDER BY failed_at, id",
            )?;
            let mapped = stmt.query_map(params![filter.class, filter.since_ms, filter.until_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            mapped.collect::<Result<Vec<_>, _>>()?
        };
        for (id, scene_id, payload) in &rows {
            tx.execute(
                "INSERT INTO jobs (scene_id, payload, state, not_before, first_enqueued, last_enqueued)
                 VALUES (?1, ?2, 'ready', ?3, ?3, ?3)
                 ON CONFLICT (scene_id) DO UPDATE SET
                     dirty = CASE WHEN state = 'running' THEN 1 ELSE dirty END,
                     not_before = CASE WHEN state = 'running' THEN not_before ELSE MIN(not_before, ?3) END,
                     attempt = CASE WHEN state = 'running' THEN attempt ELSE 0 END",
                params![scene_id, payload, now_ms],
            )?;
            tx.execute("DELETE FROM dead_letters WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(rows.len() as u64)
    }

    /// Delete dead letters that failed before `before_ms`. Returns how many.
    pub fn purge_dead(&mut self, before_ms: i64) -> Result<u64, QueueError> {
        let n = self.conn.execute("DELETE FROM dead_letters WHERE failed_at < ?1", [before_ms])?;
        Ok(n as u64)
    }

    /// The pending jobs, due first (for status reports).
    pub fn pending(&self, limit: u32) -> Result<Vec<PendingJob>, QueueError> {
        let mut stmt = self
            .conn
            .prepare("SELECT scene_id, not_before, attempt, last_error FROM jobs ORDER BY not_before, id LIMIT ?1")?;
        let rows = stmt.query_map([limit], |r| {
            Ok(PendingJob {
                scene_id: r.get(0)?,
                not_before_ms: r.get(1)?,
                attempt: r.get::<_, i64>(2)?.clamp(0, i64::from(u32::MAX)) as u32,
                last_error: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Queue {
        Queue::open_in_memory().unwrap()
    }

    #[test]
    fn one_live_job_per_scene_newest_wins() {
        let mut q = q();
        assert_eq!(q.enqueue("1", "a", 100, 100).unwrap(), EnqueueOutcome::Created);
        assert_eq!(q.enqueue("1", "b", 100, 101).unwrap(), EnqueueOutcome::Coalesced);
        assert_eq!(q.counts(200).unwrap().ready, 1);
        let job = q.claim(1000, 200, 7).unwrap().unwrap();
        assert_eq!(job.payload, "b");
        assert_eq!(job.first_enqueued_ms, 100);
        assert_eq!(job.last_enqueued_ms, 101);
    }

    #[test]
    fn a_change_during_a_run_is_not_lost() {
        let mut q = q();
        q.enqueue("1", "a", 0, 0).unwrap();
        let job = q.claim(1000, 10, 1).unwrap().unwrap();
        assert_eq!(q.enqueue("1", "b", 20, 20).unwrap(), EnqueueOutcome::RequeuedAfterRunning);
        q.complete(job.id, job.lease, &[], 30).unwrap();
        let again = q.claim(1000, 30, 2).unwrap().expect("the newer change must run again");
        assert_eq!(again.payload, "b");
        assert_eq!(again.attempt, 1);
        q.complete(again.id, again.lease, &[], 40).unwrap();
        assert!(q.claim(1000, 50, 3).unwrap().is_none());
    }

    #[test]
    fn waiting_jobs_never_block_due_ones() {
        let mut q = q();
        q.enqueue("1", "a", 0, 0).unwrap();
        q.enqueue("2", "b", 0, 0).unwrap();
        let j1 = q.claim(1000, 1, 1).unwrap().unwrap();
        q.retry_at(j1.id, j1.lease, 10_000, "boom", &[], 1).unwrap();
        let j2 = q.claim(1000, 2, 2).unwrap().unwrap();
        assert_eq!(j2.scene_id, "2");
        q.complete(j2.id, j2.lease, &[], 3).unwrap();
        assert!(q.claim(1000, 4, 3).unwrap().is_none(), "scene 1 waits until 10000");
        let c = q.counts(4).unwrap();
        assert_eq!((c.ready, c.waiting, c.next_due_ms), (0, 1, Some(10_000)));
        let j1 = q.claim(1000, 10_000, 4).unwrap().unwrap();
        assert_eq!(j1.attempt, 2);
        assert_eq!(j1.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn expired_leases_come_back_and_stale_outcomes_are_refused() {
        let mut q = q();
        q.enqueue("1", "a", 0, 0).unwrap();
        let crashed = q.claim(1000, 0, 1).unwrap().unwrap();
        assert!(q.claim(1000, 500, 2).unwrap().is_none(), "lease still live");
        let again = q.claim(1000, 1000, 3).unwrap().expect("expired lease is claimable");
        assert_eq!(again.id, crashed.id);
        assert!(matches!(q.complete(crashed.id, crashed.lease, &[], 1001), Err(QueueError::LeaseLost)));
        q.complete(again.id, again.lease, &[], 1002).unwrap();
        assert_eq!(q.counts(2000).unwrap(), Counts::default());
    }

    #[test]
    fn state_writes_commit_with_the_outcome() {
        let mut q = q();
        q.enqueue("1", "a", 0, 0).unwrap();
        let j = q.claim(1000, 0, 1).unwrap().unwrap();
        let w = [StateWrite { key: "breaker".into(), value: Some("closed".into()) }];
        q.complete(j.id, j.lease, &w, 1).unwrap();
        assert_eq!(q.state_get("breaker").unwrap().as_deref(), Some("closed"));
        // A refused outcome writes no state either.
        q.enqueue("2", "b", 0, 0).unwrap();
        let j = q.claim(1000, 2, 2).unwrap().unwrap();
        let w = [StateWrite { key: "breaker".into(), value: Some("open".into()) }];
        assert!(q.complete(j.id, 999, &w, 3).is_err());
        assert_eq!(q.state_get("breaker").unwrap().as_deref(), Some("closed"));
    }

    #[test]
    fn dead_letters_keep_the_story() {
        let mut q = q();
        q.enqueue("9", "p", 0, 5).unwrap();
        let j = q.claim(1000, 6, 1).unwrap().unwrap();
        let info = DeadLetterInfo {
            error_class: "plex-rejected-request".into(),
            message: "400".into(),
            detail: "PUT ...".into(),
        };
        q.dead_letter(j.id, j.lease, &info, &[], 7).unwrap();
        let dl = q.dead_letters_matching(&DeadFilter::all(), 10).unwrap();
        assert_eq!(dl.len(), 1);
        assert_eq!((dl[0].scene_id.as_str(), dl[0].attempts, dl[0].first_enqueued_ms, dl[0].failed_ms), ("9", 1, 5, 7));
        assert_eq!(dl[0].first_failed_ms, 7, "failed for good on its first attempt");

        // A job that failed, retried, then failed for good keeps both times.
        q.enqueue("10", "p", 0, 10).unwrap();
        let j = q.claim(1000, 20, 3).unwrap().unwrap();
        q.retry_at(j.id, j.lease, 30, "timeout", &[], 21).unwrap();
        let j = q.claim(1000, 30, 4).unwrap().unwrap();
        q.dead_letter(j.id, j.lease, &info, &[], 40).unwrap();
        let dl = q.dead_letters_matching(&DeadFilter::all(), 1).unwrap();
        assert_eq!((dl[0].first_failed_ms, dl[0].failed_ms, dl[0].attempts), (21, 40, 2));
        assert_eq!(q.counts(50).unwrap().dead, 2);
        assert!(q.claim(1000, 50, 5).unwrap().is_none(), "dead letters are never claimed");
    }

    #[test]
    fn dead_letters_can_be_requeued_by_class_and_window_and_purged() {
        let mut q = q();
        let info = |c: &str| DeadLetterInfo { error_class: c.into(), message: "m".into(), detail: "d".into() };
        for (scene, class, t) in
            [("1", "plex-unavailable", 100), ("2", "not-in-plex", 200), ("3", "plex-unavailable", 300)]
        {
            q.enqueue(scene, &format!("p{scene}"), 0, 0).unwrap();
            let j = q.claim(1000, t, t as u64).unwrap().unwrap();
            q.dead_letter(j.id, j.lease, &info(class), &[], t).unwrap();
        }
        assert_eq!(q.dead_letter_classes().unwrap(), vec![("plex-unavailable".into(), 2), ("not-in-plex".into(), 1)]);
        // By class and window: only scene 3 (scene 1 failed before the window).
        let f = DeadFilter { class: Some("plex-unavailable".into()), since_ms: 250, until_ms: 400 };
        assert_eq!(q.requeue_dead(&f, 500).unwrap(), 1);
        let j = q.claim(1000, 500, 9).unwrap().unwrap();
        assert_eq!((j.scene_id.as_str(), j.payload.as_str(), j.attempt), ("3", "p3", 1));
        assert_eq!(q.counts(500).unwrap().dead, 2);
        // Requeueing onto a running job marks it to run again, nothing lost.
        q.enqueue("1", "newer", 0, 600).unwrap();
        let running = q.claim(1000, 600, 10).unwrap().unwrap();
        assert_eq!(running.scene_id, "1");
        let f = DeadFilter { class: Some("plex-unavailable".into()), ..DeadFilter::all() };
        assert_eq!(q.requeue_dead(&f, 700).unwrap(), 1);
        q.complete(running.id, running.lease, &[], 800).unwrap();
        assert_eq!(q.counts(800).unwrap().ready, 1, "the requeued change runs again");
        assert_eq!(q.purge_dead(250).unwrap(), 1, "scene 2's letter is older than 250");
        assert_eq!(q.counts(800).unwrap().dead, 0);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        {
            let mut q = Queue::open(&path).unwrap();
            q.enqueue("1", "a", 0, 0).unwrap();
            q.claim(1000, 0, 1).unwrap().unwrap();
        }
        let mut q = Queue::open(&path).unwrap();
        assert_eq!(q.counts(0).unwrap().running, 1);
        assert_eq!(q.claim(1000, 5000, 2).unwrap().unwrap().payload, "a");
    }
}
