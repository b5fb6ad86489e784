//! Durable storage: the SQLite queue in the plugin's data directory (jobs,
//! dead letters, the policy's state and the host's bookkeeping).

mod queue;

pub use queue::{
    DeadFilter, DeadLetter, DeadLetterInfo, EnqueueOutcome, Handled, Job, JobRow, PolicyRecord, Queue, QueueCounts,
    QueueError, StateWrite, StoredEvent,
};
