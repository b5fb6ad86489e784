//! One drainer at a time: an OS file lock on `<data>/drain.lock`, released
//! by the kernel when the process dies, so a killed drainer never leaves a
//! stale lock. Finding out whether it is held means taking it for a moment
//! ([`is_held`]), so a drainer does not give up at the first refusal
//! ([`take`]).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often [`take`] tries again.
const RETRY_EVERY: Duration = Duration::from_millis(20);

pub struct DrainLock {
    _file: File,
}

/// Take the drain lock, or `None` if another process holds it.
pub fn try_lock(data_dir: &Path) -> Result<Option<DrainLock>, String> {
    let path = data_dir.join("drain.lock");
    let file = crate::files::no_follow(OpenOptions::new().create(true).truncate(false).write(true))
        .open(&path)
        .map_err(|e| format!("cannot open the drain lock {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(DrainLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Take the drain lock, trying again for up to `patience` while another
/// process holds it; `None` if it still does.
pub fn take(data_dir: &Path, patience: Duration) -> Result<Option<DrainLock>, String> {
    let started = Instant::now();
    loop {
        if let Some(lock) = try_lock(data_dir)? {
            return Ok(Some(lock));
        }
        if started.elapsed() >= patience {
            return Ok(None);
        }
        std::thread::sleep(RETRY_EVERY);
    }
}

/// Is a drainer running right now? (Probing takes the lock for a moment.)
pub fn is_held(data_dir: &Path) -> Result<bool, String> {
    try_lock(data_dir).map(|lock| lock.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_lock(dir.path()).unwrap().expect("the lock is free");
        assert!(try_lock(dir.path()).unwrap().is_none(), "held by the first");
        assert!(is_held(dir.path()).unwrap());
        drop(first);
        assert!(!is_held(dir.path()).unwrap());
    }

    /// A `drain.lock` planted as a symlink is not followed (it could point
    /// at a file of the user's that the lock's open would create or touch).
    #[cfg(unix)]
    #[test]
    fn the_lock_is_not_opened_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("drain.lock")).unwrap();
        let err = try_lock(dir.path()).err().expect("refused");
        assert!(err.contains("cannot open the drain lock"), "{err}");
        assert!(!target.exists(), "nothing was created through the link");
    }
}
