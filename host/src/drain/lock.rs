//! One drainer at a time: an OS file lock on `<data>/drain.lock`, released
//! by the kernel when the process dies, so a killed drainer never leaves a
//! stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

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

/// Is a drainer running right now?
pub fn is_held(data_dir: &Path) -> Result<bool, String> {
    try_lock(data_dir).map(|lock| lock.is_none())
}
