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

const SCHEMA_VERSION: i64 = 4;

/// The schema, one step per version: a database at version `n` gets every
/// step after it, in order, so any older queue upgrades to the newest.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS jobs (
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
         );",
    ),
    // Hook events, recorded as they arrive and handed to the policy by the
    // drainer (see `hook.rs`).
    (
        2,
        "CREATE TABLE IF NOT EXISTS events (
             id            INTEGER PRIMARY KEY AUTOINCREMENT,
             trigger       TEXT NOT NULL,
             object_id     TEXT,
             input_fields  TEXT NOT NULL,
             input         TEXT,
             received      INTEGER NOT NULL,
             tries         INTEGER NOT NULL DEFAULT 0
         );",
    ),
    // Which policy handled each job (issue "Swappable policies").
    (
        3,
        "ALTER TABLE jobs ADD COLUMN policy TEXT;
         ALTER TABLE dead_letters ADD COLUMN policy TEXT;
         CREATE TABLE IF NOT EXISTS policies (
             sha256        TEXT PRIMARY KEY,
             name          TEXT NOT NULL,
             version       TEXT NOT NULL,
             world         TEXT NOT NULL,
             namespace     TEXT NOT NULL,
             state_format  TEXT,
             first_seen    INTEGER NOT NULL,
             last_seen     INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS handled (
             id        INTEGER PRIMARY KEY AUTOINCREMENT,
             job_id    INTEGER NOT NULL,
             scene_id  TEXT NOT NULL,
             outcome   TEXT NOT NULL,
             policy    TEXT NOT NULL,
             at        INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS handled_scene ON handled (scene_id, id);",
    ),
    // When a job for each scene last completed, so reconciliation can tell
    // a scene stash2plex never synced from one that drifted.
    (
        4,
        "CREATE TABLE IF NOT EXISTS synced (
             scene_id  TEXT PRIMARY KEY,
             at        INTEGER NOT NULL
         );",
    ),
];

/// One step, once: another process may have taken it since this one read
/// the version (hooks open the queue many at a time after an upgrade), so
/// the version is read again under the write lock.
fn migrate(conn: &Connection, to: i64, sql: &str) -> Result<(), QueueError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let step = || -> Result<(), QueueError> {
        let now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now < to {
            conn.execute_batch(sql)?;
            conn.execute_batch(&format!("PRAGMA user_version = {to}"))?;
        }
        Ok(())
    };
    match step() {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
/// Rows kept in `handled` (the per-job record of which policy did what).
const HANDLED_KEPT: i64 = 20_000;

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

pub use crate::runtime::wit::queue::{DeadLetterInfo, EnqueueOutcome, Job, QueueCounts, StateWrite};

// Generated by bindgen, so the derive cannot be added there.
#[allow(clippy::derivable_impls)]
impl Default for QueueCounts {
    fn default() -> Self {
        QueueCounts { ready: 0, waiting: 0, running: 0, dead: 0, next_due_ms: None }
    }
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
    /// The policy that dead-lettered it (`name version (sha256 …)`).
    pub policy: Option<String>,
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

/// A hook event as it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: u64,
    pub trigger: String,
    pub object_id: Option<String>,
    pub input_fields: Vec<String>,
    /// The mutation input as JSON text.
    pub input: Option<String>,
    pub received_ms: i64,
    /// How often the policy failed on it.
    pub tries: u32,
}

/// A policy as the queue records it: which one handled each job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyRecord {
    pub sha256: String,
    pub name: String,
    pub version: String,
    /// The contract version it was built for.
    pub world: String,
    /// Where its state lives.
    pub namespace: String,
    /// The state format it declares (state is carried over between two
    /// policies that declare the same one).
    pub state_format: Option<String>,
}

impl PolicyRecord {
    pub fn describe(&self) -> String {
        format!("{} {} (sha256 {})", self.name, self.version, &self.sha256[..12.min(self.sha256.len())])
    }
}

/// One outcome the policy reported for a job, and which policy it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub job_id: u64,
    pub scene_id: String,
    /// `complete`, `retry`, `release`, `dead-letter`, `given-back`.
    pub outcome: String,
    pub policy_sha256: String,
    pub at_ms: i64,
}

/// A live job as reports (and tests) see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: u64,
    pub scene_id: String,
    pub payload: String,
    /// Claimed with a lease that has not expired.
    pub running: bool,
    pub not_before_ms: i64,
    pub attempt: u32,
    pub first_enqueued_ms: i64,
    pub last_error: Option<String>,
}

pub struct Queue {
    conn: Connection,
    /// Namespace for `policy_state` keys (the policy's name).
    namespace: String,
    /// The SHA-256 of the policy whose outcomes are recorded.
    handler: Option<String>,
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
        // Hooks opening a new queue at once: the switch to WAL needs a lock
        // SQLite does not wait for (waiting could deadlock), so it is
        // tried again for up to 10 s instead of failing the hook.
        let mut tries = 0;
        loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 1_000 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(QueueError::NewerSchema { found: version, known: SCHEMA_VERSION });
        }
        for &(to, sql) in MIGRATIONS {
            if version < to {
                migrate(&conn, to, sql)?;
            }
        }
        Ok(Queue { conn, namespace: "default".into(), handler: None })
    }

    /// Set the namespace used for policy state keys.
    pub fn set_namespace(&mut self, ns: &str) {
        self.namespace = ns.to_string();
    }

    /// The policy whose outcomes are recorded from now on, and whose state
    /// namespace is used.
    pub fn set_policy(&mut self, policy: &PolicyRecord) {
        self.namespace = policy.namespace.clone();
        self.handler = Some(policy.sha256.clone());
    }

    /// Remember `policy` (and that it is the one running now).
    pub fn record_policy(&mut self, policy: &PolicyRecord) -> Result<(), QueueError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.conn.execute(
            "INSERT INTO policies (sha256, name, version, world, namespace, state_format, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT (sha256) DO UPDATE SET name = excluded.name, version = excluded.version,
                 world = excluded.world, namespace = excluded.namespace, state_format = excluded.state_format,
                 last_seen = excluded.last_seen",
            params![
                policy.sha256,
                policy.name,
                policy.version,
                policy.world,
                policy.namespace,
                policy.state_format,
                now
            ],
        )?;
        self.host_set("policy_running", &policy.sha256)
    }

    /// The policy that ran last (before `record_policy` of the current one).
    pub fn last_policy(&self) -> Result<Option<PolicyRecord>, QueueError> {
        let Some(sha) = self.host_get("policy_running")? else {
            return Ok(None);
        };
        self.policy(&sha)
    }

    pub fn policy(&self, sha256: &str) -> Result<Option<PolicyRecord>, QueueError> {
        Ok(self
            .conn
            .query_row(
                "SELECT sha256, name, version, world, namespace, state_format FROM policies WHERE sha256 = ?1",
                [sha256],
                |r| {
                    Ok(PolicyRecord {
                        sha256: r.get(0)?,
                        name: r.get(1)?,
                        version: r.get(2)?,
                        world: r.get(3)?,
                        namespace: r.get(4)?,
                        state_format: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    /// Copy the policy state of namespace `from` into `to` when `to` has
    /// none yet (a policy that keeps the same state format as the one
    /// before it). Returns how many keys were copied.
    pub fn copy_state(&mut self, from: &str, to: &str) -> Result<usize, QueueError> {
        let tx = self.tx()?;
        let has: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM policy_state WHERE namespace = ?1)", [to], |r| r.get(0))?;
        if has || from == to {
            return Ok(0);
        }
        let n = tx.execute(
            "INSERT INTO policy_state (namespace, key, value) SELECT ?2, key, value FROM policy_state WHERE namespace = ?1",
            params![from, to],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Record an outcome of `job_id` by the current policy (in the caller's
    /// transaction), keeping the newest [`HANDLED_KEPT`] rows.
    fn handled(
        tx: &Transaction<'_>,
        handler: &Option<String>,
        job_id: u64,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let Some(policy) = handler else { return Ok(()) };
        let id: i64 = tx.query_row(
            "INSERT INTO handled (job_id, scene_id, outcome, policy, at)
             SELECT id, scene_id, ?2, ?3, ?4 FROM jobs WHERE id = ?1 RETURNING id",
            params![job_id as i64, outcome, policy, now_ms],
            |r| r.get(0),
        )?;
        if id % 1_000 == 0 {
            tx.execute("DELETE FROM handled WHERE id <= ?1", [id - HANDLED_KEPT])?;
        }
        Ok(())
    }

    /// The recorded outcomes of `scene_id` (or all, oldest first), at most
    /// `limit`.
    pub fn handled_for(&self, scene_id: Option<&str>, limit: u32) -> Result<Vec<Handled>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT job_id, scene_id, outcome, policy, at FROM handled WHERE (?1 IS NULL OR scene_id = ?1)
             ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![scene_id, limit], |r| {
            Ok(Handled {
                job_id: r.get::<_, i64>(0)? as u64,
                scene_id: r.get(1)?,
                outcome: r.get(2)?,
                policy_sha256: r.get(3)?,
                at_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Outcomes per policy since `since_ms`: (policy, outcome, count).
    pub fn handled_by_policy(&self, since_ms: i64) -> Result<Vec<(PolicyRecord, String, u64)>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT h.policy, h.outcome, COUNT(*), p.name, p.version, p.world, p.namespace, p.state_format
             FROM handled h LEFT JOIN policies p ON p.sha256 = h.policy
             WHERE h.at >= ?1 GROUP BY h.policy, h.outcome ORDER BY MIN(h.id)",
        )?;
        let rows = stmt.query_map([since_ms], |r| {
            Ok((
                PolicyRecord {
                    sha256: r.get(0)?,
                    name: r.get::<_, Option<String>>(3)?.unwrap_or_else(|| "?".into()),
                    version: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    world: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    namespace: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                    state_format: r.get(7)?,
                },
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?.max(0) as u64,
            ))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
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
        let handler = self.handler.clone();
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
            "UPDATE jobs SET state = 'running', lease = ?2, lease_until = ?3, attempt = attempt + 1, dirty = 0,
                 policy = COALESCE(?4, policy)
             WHERE id = ?1
             RETURNING id, scene_id, payload, attempt, first_enqueued, last_enqueued, last_error",
            params![id, lease, now_ms + i64::from(lease_ms), handler],
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
        let (ns, handler) = (self.namespace.clone(), self.handler.clone());
        let tx = self.tx()?;
        let dirty = Self::check_lease(&tx, job_id, lease)?;
        // A scene's job (not an object's) completed: remember when.
        tx.execute(
            "INSERT INTO synced (scene_id, at) SELECT scene_id, ?2 FROM jobs WHERE id = ?1 AND scene_id NOT GLOB '*[^0-9]*'
             ON CONFLICT (scene_id) DO UPDATE SET at = excluded.at",
            params![job_id as i64, now_ms],
        )?;
        Self::handled(&tx, &handler, job_id, "complete", now_ms)?;
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
        let (ns, handler) = (self.namespace.clone(), self.handler.clone());
        let tx = self.tx()?;
        let dirty = Self::check_lease(&tx, job_id, lease)?;
        Self::handled(&tx, &handler, job_id, "retry", now_ms)?;
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
        self.release_as(job_id, lease, not_before_ms, state, "release")
    }

    /// The host gives back a job the policy held when it failed or was
    /// swapped out (recorded as `given-back`).
    pub fn give_back(&mut self, job_id: u64, lease: u64, not_before_ms: i64) -> Result<(), QueueError> {
        self.release_as(job_id, lease, not_before_ms, &[], "given-back")
    }

    fn release_as(
        &mut self,
        job_id: u64,
        lease: u64,
        not_before_ms: i64,
        state: &[StateWrite],
        outcome: &str,
    ) -> Result<(), QueueError> {
        let (ns, handler) = (self.namespace.clone(), self.handler.clone());
        let tx = self.tx()?;
        Self::check_lease(&tx, job_id, lease)?;
        // `at` is when the job is due again (a release is recorded as of it).
        Self::handled(&tx, &handler, job_id, outcome, not_before_ms)?;
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
        let (ns, handler) = (self.namespace.clone(), self.handler.clone());
        let tx = self.tx()?;
        let dirty = Self::check_lease(&tx, job_id, lease)?;
        Self::handled(&tx, &handler, job_id, "dead-letter", now_ms)?;
        tx.execute(
            "INSERT INTO dead_letters
                 (scene_id, payload, error_class, message, detail, attempts, first_enqueued, first_failed, failed_at,
                  policy)
             SELECT scene_id, payload, ?2, ?3, ?4, attempt, first_enqueued, COALESCE(first_failed, ?5), ?5,
                  COALESCE(?6, policy)
             FROM jobs WHERE id = ?1",
            params![job_id as i64, info.error_class, info.message, info.detail, now_ms, handler],
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

    pub fn counts(&self, now_ms: i64) -> Result<QueueCounts, QueueError> {
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
        Ok(QueueCounts {
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

    /// Whether `scene_id` has a job (waiting or running).
    pub fn is_queued(&self, scene_id: &str) -> Result<bool, QueueError> {
        Ok(self.conn.query_row("SELECT EXISTS (SELECT 1 FROM jobs WHERE scene_id = ?1)", [scene_id], |r| r.get(0))?)
    }

    /// Jobs queued and the bytes of their payloads.
    pub fn totals(&self) -> Result<(u64, u64), QueueError> {
        let (jobs, bytes): (i64, i64) =
            self.conn.query_row("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM jobs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok((jobs.max(0) as u64, bytes.max(0) as u64))
    }

    /// Record a hook event (one commit). Returns its id.
    pub fn record_event(
        &mut self,
        trigger: &str,
        object_id: Option<&str>,
        input_fields: &[String],
        input: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let fields = serde_json::to_string(input_fields).unwrap_or_else(|_| "[]".into());
        self.conn.execute(
            "INSERT INTO events (trigger, object_id, input_fields, input, received) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![trigger, object_id, fields, input, now_ms],
        )?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    /// The oldest recorded events, at most `limit`.
    pub fn pending_events(&self, limit: u32) -> Result<Vec<StoredEvent>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, trigger, object_id, input_fields, input, received, tries FROM events ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            let fields: String = r.get(3)?;
            Ok(StoredEvent {
                id: r.get::<_, i64>(0)? as u64,
                trigger: r.get(1)?,
                object_id: r.get(2)?,
                input_fields: serde_json::from_str(&fields).unwrap_or_default(),
                input: r.get(4)?,
                received_ms: r.get(5)?,
                tries: r.get::<_, i64>(6)?.clamp(0, i64::from(u32::MAX)) as u32,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Is any hook event waiting for the policy?
    pub fn has_events(&self) -> Result<bool, QueueError> {
        Ok(self.conn.query_row("SELECT EXISTS (SELECT 1 FROM events)", [], |r| r.get(0))?)
    }

    pub fn count_events(&self) -> Result<u64, QueueError> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// The policy handled the event (or the host recorded it for it).
    pub fn finish_event(&mut self, id: u64) -> Result<(), QueueError> {
        self.conn.execute("DELETE FROM events WHERE id = ?1", [id as i64])?;
        Ok(())
    }

    /// The policy failed on the event; returns how often it has now.
    pub fn event_failed(&mut self, id: u64) -> Result<u32, QueueError> {
        let tries: i64 = self.conn.query_row(
            "UPDATE events SET tries = tries + 1 WHERE id = ?1 RETURNING tries",
            [id as i64],
            |r| r.get(0),
        )?;
        Ok(tries.clamp(0, i64::from(u32::MAX)) as u32)
    }

    /// Record many changes at once (one transaction, e.g. a page of Sync
    /// All), each as `enqueue` would, due now. Returns how many were new
    /// (the rest coalesced with jobs already queued).
    pub fn enqueue_many(&mut self, jobs: &[(String, String)], now_ms: i64) -> Result<u64, QueueError> {
        let tx = self.tx()?;
        let mut created = 0;
        for (scene_id, payload) in jobs {
            let existed: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM jobs WHERE scene_id = ?1)", [scene_id], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO jobs (scene_id, payload, state, not_before, first_enqueued, last_enqueued)
                 VALUES (?1, ?2, 'ready', ?3, ?3, ?3)
                 ON CONFLICT (scene_id) DO UPDATE SET
                     payload = excluded.payload,
                     last_enqueued = excluded.last_enqueued,
                     dirty = CASE WHEN state = 'running' THEN 1 ELSE dirty END,
                     not_before = CASE WHEN state = 'running' THEN not_before ELSE MIN(not_before, ?3) END,
                     attempt = CASE WHEN state = 'running' THEN attempt ELSE 0 END",
                params![scene_id, payload, now_ms],
            )?;
            created += u64::from(!existed);
        }
        tx.commit()?;
        Ok(created)
    }

    /// Record a change, due now, for each scene that has no job yet (one
    /// transaction with `host_writes`, so a caller's bookmark moves only
    /// with the jobs it stands for). A scene that already has a job, waiting
    /// or running, keeps it exactly as it is: a newer change queued by a hook
    /// is never replaced, a running job is never reset. Returns how many
    /// jobs were created.
    pub fn enqueue_absent_many(
        &mut self,
        jobs: &[(String, String)],
        host_writes: &[(&str, &str)],
        now_ms: i64,
    ) -> Result<u64, QueueError> {
        let tx = self.tx()?;
        let mut created = 0;
        for (scene_id, payload) in jobs {
            created += tx.execute(
                "INSERT INTO jobs (scene_id, payload, state, not_before, first_enqueued, last_enqueued)
                 VALUES (?1, ?2, 'ready', ?3, ?3, ?3) ON CONFLICT (scene_id) DO NOTHING",
                params![scene_id, payload, now_ms],
            )? as u64;
        }
        for (key, value) in host_writes {
            tx.execute(
                "INSERT INTO host_state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
        }
        tx.commit()?;
        Ok(created)
    }

    /// When a job for each of these scenes last completed (`None`: never,
    /// as far as this queue knows).
    pub fn synced_at(&self, scene_ids: &[String]) -> Result<Vec<Option<i64>>, QueueError> {
        let mut stmt = self.conn.prepare_cached("SELECT at FROM synced WHERE scene_id = ?1")?;
        scene_ids.iter().map(|id| Ok(stmt.query_row([id], |r| r.get(0)).optional()?)).collect()
    }

    /// Drop the waiting job of `scene_id` (the scene is gone from Stash). A
    /// running job finishes its attempt. Returns whether a job was dropped.
    pub fn forget(&mut self, scene_id: &str) -> Result<bool, QueueError> {
        let n = self.conn.execute("DELETE FROM jobs WHERE scene_id = ?1 AND state = 'ready'", [scene_id])?;
        Ok(n > 0)
    }

    /// Clear Pending Queue: every waiting job and every recorded event (a
    /// running job finishes). Returns (jobs, events).
    pub fn clear_pending(&mut self) -> Result<(u64, u64), QueueError> {
        let tx = self.tx()?;
        let jobs = tx.execute("DELETE FROM jobs WHERE state = 'ready'", [])?;
        let events = tx.execute("DELETE FROM events", [])?;
        tx.commit()?;
        Ok((jobs as u64, events as u64))
    }

    /// How many state keys the current namespace holds.
    pub fn state_key_count(&self) -> Result<u64, QueueError> {
        let n: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM policy_state WHERE namespace = ?1", [&self.namespace], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    pub fn host_delete(&mut self, key: &str) -> Result<(), QueueError> {
        self.conn.execute("DELETE FROM host_state WHERE key = ?1", [key])?;
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

    /// Set a host value; `true` when it was different before. Atomic, so of
    /// many processes setting the same value only one sees the change (the
    /// hook that tells the user about a problem).
    pub fn host_swap(&mut self, key: &str, value: &str) -> Result<bool, QueueError> {
        let n = self.conn.execute(
            "INSERT INTO host_state (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value",
            params![key, value],
        )?;
        Ok(n > 0)
    }

    /// Claim the right to start a drainer: `true` for the one caller that
    /// finds no start claimed since `expired_before_ms` (of 32 hooks at
    /// once, one starts a drainer). The drainer clears the claim when it
    /// takes the drain lock ([`Queue::clear_drainer_start`]).
    pub fn claim_drainer_start(&mut self, now_ms: i64, expired_before_ms: i64) -> Result<bool, QueueError> {
        let n = self.conn.execute(
            "INSERT INTO host_state (key, value) VALUES ('drainer_start', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value
             WHERE value = '' OR CAST(value AS INTEGER) < ?2",
            params![now_ms.to_string(), expired_before_ms],
        )?;
        Ok(n > 0)
    }

    pub fn clear_drainer_start(&mut self) -> Result<(), QueueError> {
        self.host_set("drainer_start", "")
    }

    /// Dead letters matching `filter`, newest first.
    pub fn dead_letters_matching(&self, filter: &DeadFilter, limit: u32) -> Result<Vec<DeadLetter>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT d.id, d.scene_id, d.payload, d.error_class, d.message, d.detail, d.attempts, d.first_enqueued,
                    d.failed_at, d.first_failed, p.name, p.version, d.policy
             FROM dead_letters d LEFT JOIN policies p ON p.sha256 = d.policy
             WHERE (?1 IS NULL OR d.error_class = ?1) AND d.failed_at >= ?2 AND d.failed_at <= ?3
             ORDER BY d.failed_at DESC, d.id DESC LIMIT ?4",
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
                policy: match (
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<String>>(11)?,
                    r.get::<_, Option<String>>(12)?,
                ) {
                    (Some(name), Some(version), Some(sha)) => {
                        Some(format!("{name} {version} (sha256 {})", &sha[..12.min(sha.len())]))
                    }
                    (_, _, sha) => sha,
                },
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

    /// The live jobs, due first (for status reports), at most `limit`.
    pub fn jobs(&self, limit: u32, now_ms: i64) -> Result<Vec<JobRow>, QueueError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, scene_id, payload, state = 'running' AND lease_until > ?2, not_before, attempt,
                    first_enqueued, last_error
             FROM jobs ORDER BY not_before, id LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit, now_ms], |r| {
            Ok(JobRow {
                id: r.get::<_, i64>(0)? as u64,
                scene_id: r.get(1)?,
                payload: r.get(2)?,
                running: r.get(3)?,
                not_before_ms: r.get(4)?,
                attempt: r.get::<_, i64>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
                first_enqueued_ms: r.get(6)?,
                last_error: r.get(7)?,
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
        assert_eq!(q.counts(2000).unwrap(), QueueCounts::default());
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

    /// A queue left at each older version (as an older plugin wrote it,
    /// with a job and an event in it) upgrades to the newest, keeping them;
    /// eight processes opening it at once upgrade it once.
    #[test]
    fn every_older_schema_upgrades_and_keeps_its_rows_even_when_opened_at_once() {
        for from in 1..SCHEMA_VERSION {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("queue.db");
            {
                let conn = Connection::open(&path).unwrap();
                for &(to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to <= from) {
                    migrate(&conn, to, sql).unwrap();
                }
                conn.execute(
                    "INSERT INTO jobs (scene_id, payload, state, not_before, first_enqueued, last_enqueued)
                     VALUES ('7', 'p', 'ready', 0, 0, 0)",
                    [],
                )
                .unwrap();
                if from >= 2 {
                    conn.execute(
                        "INSERT INTO events (trigger, object_id, input_fields, received) VALUES ('Scene.Update.Post', '7', '[]', 0)",
                        [],
                    )
                    .unwrap();
                }
            }
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Queue::open(&path).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap_or_else(|e| panic!("from version {from}: {e}"));
            }
            let mut q = Queue::open(&path).unwrap();
            let version: i64 = q.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(version, SCHEMA_VERSION, "from version {from}");
            assert_eq!(q.counts(0).unwrap().ready, 1, "from version {from}: the job is kept");
            assert_eq!(q.pending_events(10).unwrap().len(), usize::from(from >= 2), "from version {from}");
            let job = q.claim(1000, 0, 1).unwrap().expect("the job can be claimed");
            q.complete(job.id, job.lease, &[], 1).unwrap();
            assert_eq!(q.counts(1).unwrap(), QueueCounts::default(), "from version {from}");
        }
    }

    #[test]
    fn hook_events_are_kept_until_handled_and_counted_when_they_fail() {
        let mut q = q();
        let fields = vec!["id".to_string(), "title".to_string()];
        let a = q.record_event("Scene.Update.Post", Some("12"), &fields, Some(r#"{"id":"12"}"#), 5).unwrap();
        let b = q.record_event("Scene.Create.Post", Some("13"), &[], None, 6).unwrap();
        assert!(q.has_events().unwrap());
        let events = q.pending_events(10).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].id, events[0].trigger.as_str(), events[0].object_id.as_deref()),
            (a, "Scene.Update.Post", Some("12"))
        );
        assert_eq!(events[0].input_fields, fields);
        assert_eq!(events[1].input, None);
        assert_eq!(q.event_failed(a).unwrap(), 1);
        assert_eq!(q.event_failed(a).unwrap(), 2);
        q.finish_event(b).unwrap();
        let left = q.pending_events(10).unwrap();
        assert_eq!((left.len(), left[0].tries), (1, 2));
        q.finish_event(a).unwrap();
        assert!(!q.has_events().unwrap());
    }

    #[test]
    fn one_drainer_start_is_claimed_until_a_drainer_takes_it_or_it_expires() {
        let mut q = q();
        assert!(q.claim_drainer_start(1_000, -9_000).unwrap(), "the first hook claims");
        assert!(!q.claim_drainer_start(1_001, -8_999).unwrap(), "the next one at once does not");
        assert!(q.claim_drainer_start(12_000, 2_000).unwrap(), "a claim nobody took up expires");
        q.clear_drainer_start().unwrap();
        assert!(q.claim_drainer_start(12_001, 2_001).unwrap(), "a running drainer frees it");
    }

    #[test]
    fn host_swap_reports_a_change_once() {
        let mut q = q();
        assert!(q.host_swap("k", "a").unwrap());
        assert!(!q.host_swap("k", "a").unwrap(), "same value: no change");
        assert!(q.host_swap("k", "b").unwrap());
        assert_eq!(q.host_get("k").unwrap().as_deref(), Some("b"));
    }

    #[test]
    fn bulk_enqueue_coalesces_and_clear_pending_keeps_running_jobs() {
        let mut q = q();
        q.enqueue("1", "old", 500, 0).unwrap();
        q.enqueue("2", "a", 0, 0).unwrap();
        let running = q.claim(60_000, 0, 1).unwrap().unwrap();
        assert_eq!(running.scene_id, "2");
        let page: Vec<(String, String)> =
            ["1", "2", "3"].iter().map(|id| (id.to_string(), "bulk".to_string())).collect();
        assert_eq!(q.enqueue_many(&page, 100).unwrap(), 1, "only scene 3 is new");
        assert_eq!(q.claim(60_000, 100, 2).unwrap().unwrap().payload, "bulk", "scene 1 coalesced and due now");
        q.record_event("Scene.Update.Post", Some("9"), &[], None, 1).unwrap();
        let (jobs, events) = q.clear_pending().unwrap();
        assert_eq!((jobs, events), (1, 1), "scene 3 and the event; the two claimed jobs stay");
        q.complete(running.id, running.lease, &[], 200).unwrap();
        assert_eq!(q.counts(200).unwrap().ready, 1, "scene 2 changed while running: runs again");
        assert!(q.forget("2").unwrap());
        assert!(!q.forget("2").unwrap());
        assert_eq!(q.counts(200).unwrap().ready, 0);
    }

    #[test]
    fn enqueue_if_absent_never_touches_a_queued_or_running_job_and_moves_the_bookmark_with_it() {
        let mut q = q();
        q.enqueue("1", "hook", 500, 0).unwrap();
        q.enqueue("2", "running", 0, 0).unwrap();
        let running = q.claim(60_000, 0, 1).unwrap().unwrap();
        let page: Vec<(String, String)> =
            ["1", "2", "3"].iter().map(|id| (id.to_string(), "catchup".to_string())).collect();
        assert_eq!(q.enqueue_absent_many(&page, &[("mark", "after-3")], 100).unwrap(), 1);
        assert_eq!(q.host_get("mark").unwrap().as_deref(), Some("after-3"));
        let jobs = q.jobs(10, 100).unwrap();
        let one = jobs.iter().find(|j| j.scene_id == "1").unwrap();
        assert_eq!((one.payload.as_str(), one.not_before_ms), ("hook", 500), "untouched");
        // The running job was not marked dirty: completing it removes it.
        q.complete(running.id, running.lease, &[], 200).unwrap();
        assert!(q.jobs(10, 200).unwrap().iter().all(|j| j.scene_id != "2"));
        assert_eq!(q.synced_at(&["2".into(), "1".into()]).unwrap(), [Some(200), None]);
    }

    /// The queue interface's promises, one test each, in the order the WIT
    /// (`wit/since_v0.1.0/policy.wit`, `interface queue`) states them. The
    /// policy's native tests run on this same queue.
    mod contract {
        use super::*;

        fn job(q: &mut Queue, now: i64, token: u64) -> Job {
            q.claim(60_000, now, token).unwrap().expect("a job is due")
        }

        #[test]
        fn enqueue_on_a_waiting_job_replaces_the_payload_resets_attempts_and_takes_the_earlier_time() {
            let mut q = q();
            q.enqueue("1", "old", 0, 0).unwrap();
            let j = job(&mut q, 0, 1);
            q.retry_at(j.id, j.lease, 50_000, "boom", &[], 1).unwrap();
            assert_eq!(q.enqueue("1", "new", 10_000, 2).unwrap(), EnqueueOutcome::Coalesced);
            assert!(q.claim(1000, 9_999, 2).unwrap().is_none(), "due at the earlier time, not before");
            let j = job(&mut q, 10_000, 3);
            assert_eq!((j.payload.as_str(), j.attempt), ("new", 1), "a fresh retry budget");
            assert_eq!((j.first_enqueued_ms, j.last_enqueued_ms), (0, 2));
            assert_eq!(j.last_error.as_deref(), Some("boom"), "the previous failure is still reported");
        }

        #[test]
        fn enqueue_on_a_running_job_runs_it_again_after_the_attempt() {
            let mut q = q();
            q.enqueue("1", "a", 0, 0).unwrap();
            let j = job(&mut q, 0, 1);
            assert_eq!(q.enqueue("1", "b", 0, 5).unwrap(), EnqueueOutcome::RequeuedAfterRunning);
            assert!(q.claim(1000, 10, 2).unwrap().is_none(), "still one live job, held by its lease");
            q.complete(j.id, j.lease, &[], 20).unwrap();
            let again = job(&mut q, 20, 3);
            assert_eq!((again.payload.as_str(), again.attempt), ("b", 1), "due at once, fresh attempts");
        }

        #[test]
        fn claim_takes_the_earliest_due_then_the_oldest_and_never_a_waiting_job() {
            let mut q = q();
            q.enqueue("late", "p", 500, 0).unwrap();
            q.enqueue("b", "p", 100, 1).unwrap();
            q.enqueue("a", "p", 100, 2).unwrap();
            q.enqueue("first", "p", 50, 3).unwrap();
            let order: Vec<String> = (0..3).map(|i| job(&mut q, 400, i + 1).scene_id).collect();
            assert_eq!(order, ["first", "b", "a"]);
            assert!(q.claim(1000, 400, 9).unwrap().is_none(), "the job due at 500 is not given out early");
        }

        #[test]
        fn renew_extends_a_live_lease_and_refuses_a_lost_one() {
            let mut q = q();
            q.enqueue("1", "p", 0, 0).unwrap();
            let j = q.claim(1_000, 0, 1).unwrap().unwrap();
            q.renew(j.id, j.lease, 10_000, 900).unwrap();
            assert!(q.claim(1_000, 5_000, 2).unwrap().is_none(), "the renewed lease still holds at 5 s");
            assert!(matches!(q.renew(j.id, j.lease + 1, 1_000, 901), Err(QueueError::LeaseLost)));
            let stolen = q.claim(1_000, 20_000, 3).unwrap().expect("expired: claimable again");
            assert_eq!(stolen.id, j.id);
            assert!(matches!(q.renew(j.id, j.lease, 1_000, 20_001), Err(QueueError::LeaseLost)));
        }

        #[test]
        fn retry_at_keeps_the_error_and_a_change_during_the_attempt_resets_attempts_but_keeps_the_time() {
            let mut q = q();
            q.enqueue("1", "a", 0, 0).unwrap();
            let j = job(&mut q, 0, 1);
            q.enqueue("1", "b", 0, 5).unwrap();
            q.retry_at(j.id, j.lease, 30_000, "plex-timeout: slow", &[], 10).unwrap();
            assert!(q.claim(1000, 29_999, 2).unwrap().is_none(), "the retry time is kept");
            let again = job(&mut q, 30_000, 3);
            assert_eq!((again.payload.as_str(), again.attempt), ("b", 1), "the new change has a fresh budget");
            assert_eq!(again.last_error.as_deref(), Some("plex-timeout: slow"));
        }

        #[test]
        fn release_does_not_count_the_attempt() {
            let mut q = q();
            q.enqueue("1", "a", 0, 0).unwrap();
            let j = job(&mut q, 0, 1);
            q.release(j.id, j.lease, 100, &[]).unwrap();
            let j = job(&mut q, 100, 2);
            assert_eq!(j.attempt, 1, "released, not failed");
            q.enqueue("1", "b", 0, 150).unwrap();
            q.release(j.id, j.lease, 200, &[]).unwrap();
            let j = job(&mut q, 200, 3);
            assert_eq!((j.payload.as_str(), j.attempt), ("b", 1), "the newer change is the one that runs");
        }

        #[test]
        fn dead_letter_never_buries_a_newer_change() {
            let mut q = q();
            q.enqueue("1", "a", 0, 0).unwrap();
            let j = job(&mut q, 0, 1);
            q.enqueue("1", "b", 0, 5).unwrap();
            let info = DeadLetterInfo { error_class: "c".into(), message: "m".into(), detail: "d".into() };
            q.dead_letter(j.id, j.lease, &info, &[], 10).unwrap();
            let dead = q.dead_letters_matching(&DeadFilter::all(), 10).unwrap();
            assert_eq!(dead.len(), 1);
            let fresh = job(&mut q, 10, 2);
            assert_eq!((fresh.payload.as_str(), fresh.attempt), ("b", 1), "due now with a fresh budget");
        }

        #[test]
        fn counts_treat_an_expired_lease_as_due() {
            let mut q = q();
            q.enqueue("1", "a", 0, 0).unwrap();
            q.enqueue("2", "b", 1_000, 0).unwrap();
            q.claim(100, 0, 1).unwrap().unwrap();
            let c = q.counts(50).unwrap();
            assert_eq!((c.ready, c.waiting, c.running, c.next_due_ms), (0, 1, 1, Some(1_000)));
            let c = q.counts(200).unwrap();
            assert_eq!((c.ready, c.running), (1, 0), "the crashed drainer's job is due again");
        }

        #[test]
        fn policy_state_is_namespaced_and_commits_only_with_its_outcome() {
            let mut q = q();
            q.set_namespace("a");
            q.state_set(&[StateWrite { key: "k".into(), value: Some("1".into()) }]).unwrap();
            q.set_namespace("b");
            assert_eq!(q.state_get("k").unwrap(), None, "another policy's state is not visible");
            q.enqueue("1", "p", 0, 0).unwrap();
            let j = job(&mut q, 0, 1);
            let w = [StateWrite { key: "k".into(), value: Some("2".into()) }];
            assert!(q.release(j.id, j.lease + 1, 0, &w).is_err());
            assert_eq!(q.state_get("k").unwrap(), None, "a refused outcome writes no state");
            q.release(j.id, j.lease, 0, &w).unwrap();
            assert_eq!(q.state_get("k").unwrap().as_deref(), Some("2"));
            q.state_set(&[StateWrite { key: "k".into(), value: None }]).unwrap();
            assert_eq!(q.state_get("k").unwrap(), None, "none deletes");
            q.set_namespace("a");
            assert_eq!(q.state_get("k").unwrap().as_deref(), Some("1"));
        }
    }
}
