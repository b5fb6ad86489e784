//! The compiled-policy cache: Cranelift output on disk, so later processes
//! deserialize a policy in well under a millisecond instead of compiling it.
//!
//! Keyed by a SHA-256 of the component's bytes, the engine's compatibility
//! hash (wasmtime version and settings) and the host version. Artifacts are
//! written to a temp file and renamed into place; only the host writes the
//! directory. Artifacts unused for 30 days are deleted when a new one is
//! written; a used artifact's mtime is refreshed at most once a day.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAX_AGE: Duration = Duration::from_secs(30 * 86_400);
const TOUCH_EVERY: Duration = Duration::from_secs(86_400);

/// Load `wasm` (whose SHA-256 is `digest`) through the cache in `dir`;
/// `Ok((component, cache_hit))`.
pub fn load(engine: &Engine, wasm: &[u8], digest: &[u8; 32], dir: &Path) -> wasmtime::Result<(Component, bool)> {
    let path = artifact_path(engine, digest, dir);
    if path.exists() {
        // SAFETY: the cache directory is written only by this host, with the
        // bytes `precompile_component` produced, renamed into place
        // atomically; the file name pins the wasm hash and engine settings.
        match unsafe { deserialize_artifact(engine, &path) } {
            Ok(c) => {
                mark_used(&path);
                return Ok((c, true));
            }
            Err(e) => {
                crate::warn!("Ignoring an unreadable compiled-policy cache file ({e}); compiling again");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let compiled = engine.precompile_component(wasm)?;
    // SAFETY: these are the bytes `precompile_component` just produced with
    // this engine.
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    if let Err(e) = write_atomically(dir, &path, &compiled) {
        crate::debug!("Could not write the compiled-policy cache at {}: {e}", path.display());
    }
    prune(dir, SystemTime::now());
    Ok((component, false))
}

/// Unix: map the artifact (no copy). Windows: read it and deserialize the
/// bytes. A mapped file there cannot be deleted or renamed over while any
/// process has it mapped, so a long-running drainer would pin a stale
/// artifact (prune and a rewrite would fail); and wine cannot map a file
/// executable copy-on-write, which `deserialize_file` needs. The copy costs
/// a read of a few MB.
///
/// # Safety
/// `path` must hold bytes `precompile_component` produced (see `load`).
#[cfg(not(windows))]
unsafe fn deserialize_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: as the caller promises.
    unsafe { Component::deserialize_file(engine, path) }
}

/// See the Unix version.
///
/// # Safety
/// `path` must hold bytes `precompile_component` produced (see `load`).
#[cfg(windows)]
unsafe fn deserialize_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path).map_err(|e| wasmtime::format_err!("cannot read {}: {e}", path.display()))?;
    // SAFETY: as the caller promises.
    unsafe { Component::deserialize(engine, &bytes) }
}

fn mark_used(path: &Path) {
    let now = SystemTime::now();
    let stale = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > TOUCH_EVERY));
    if stale && let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(now);
    }
}

/// Delete `policy-*.cwasm` files not used for 30 days. Returns how many.
fn prune(dir: &Path, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("policy-") && name.ends_with(".cwasm")
        })
        .filter(|e| {
            e.metadata().and_then(|m| m.modified()).is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > MAX_AGE))
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

fn artifact_path(engine: &Engine, digest: &[u8; 32], dir: &Path) -> PathBuf {
    let mut h = Sha256::new();
    h.update(digest);
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut HashWriter(&mut h));
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("policy-{hex}.cwasm"))
}

struct HashWriter<'a>(&'a mut Sha256);
impl std::hash::Hasher for HashWriter<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_cache_artifacts_are_pruned_and_used_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let make = |name: &str, age_days: u64| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(now - Duration::from_secs(age_days * 86_400)).unwrap();
            p
        };
        let old = make("policy-old.cwasm", 45);
        let used = make("policy-used.cwasm", 45);
        let recent = make("policy-recent.cwasm", 3);
        let other = make("notes.txt", 400);
        mark_used(&used);
        assert_eq!(prune(dir.path(), now), 1);
        assert!(!old.exists());
        assert!(used.exists() && recent.exists() && other.exists());
    }
}
