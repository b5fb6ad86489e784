//! The compiled-policy cache: Cranelift output on disk, so later processes
//! load a policy in about a millisecond instead of compiling it.
//!
//! Compiled code is native code: loading a file that was not produced by
//! this host from this component would run whatever it holds. So every
//! artifact carries a keyed hash (BLAKE3, with a key only this host's data
//! directory holds) over its file name, which pins the component's SHA-256,
//! the engine's compatibility hash and the host version, and over its
//! bytes. The file is read into memory, checked, and the checked bytes are
//! the ones deserialized. A file that fails the check (copied from another
//! policy, truncated, edited) is deleted and the component compiled again.
//!
//! Artifacts are written to a temp file and renamed into place. Artifacts
//! unused for 30 days are deleted when a new one is written; a used
//! artifact's mtime is refreshed at most once a day.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAX_AGE: Duration = Duration::from_secs(30 * 86_400);
const TOUCH_EVERY: Duration = Duration::from_secs(86_400);
/// An artifact file: this, the 32-byte tag, then wasmtime's bytes.
const MAGIC: &[u8; 8] = b"s2pcwsm1";
const HEADER: usize = MAGIC.len() + 32;
const KEY_FILE: &str = "key";

/// Load `wasm` (whose SHA-256 is `digest`) through the cache in `dir`;
/// `Ok((component, cache_hit))`.
pub fn load(engine: &Engine, wasm: &[u8], digest: &[u8; 32], dir: &Path) -> wasmtime::Result<(Component, bool)> {
    let path = artifact_path(engine, digest, dir);
    let key = key(dir);
    if let Some(key) = &key
        && let Ok(bytes) = std::fs::read(&path)
    {
        match verified(key, &path, &bytes) {
            // SAFETY: these bytes carry this host's keyed hash over this
            // artifact's name (component hash, engine settings, host
            // version) and content: `precompile_component` produced them.
            Some(artifact) => match unsafe { Component::deserialize(engine, artifact) } {
                Ok(c) => {
                    mark_used(&path);
                    return Ok((c, true));
                }
                Err(e) => crate::warn!("Ignoring an unreadable compiled-policy cache file ({e}); compiling again"),
            },
            None => crate::warn!(
                "The compiled-policy cache file {} failed its integrity check (it was not written by this host for this policy); deleting it and compiling again",
                path.display()
            ),
        }
        let _ = std::fs::remove_file(&path);
    }
    let compiled = engine.precompile_component(wasm)?;
    // SAFETY: these are the bytes `precompile_component` just produced with
    // this engine.
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    match &key {
        Some(key) => {
            let mut file = Vec::with_capacity(HEADER + compiled.len());
            file.extend_from_slice(MAGIC);
            file.extend_from_slice(tag(key, &path, &compiled).as_bytes());
            file.extend_from_slice(&compiled);
            if let Err(e) = write_atomically(dir, &path, &file) {
                crate::debug!("Could not write the compiled-policy cache at {}: {e}", path.display());
            }
        }
        None => crate::debug!("No cache key in {}; the compiled policy is not cached", dir.display()),
    }
    prune(dir, SystemTime::now());
    Ok((component, false))
}

/// The artifact in `bytes`, if its tag is right.
fn verified<'a>(key: &[u8; 32], path: &Path, bytes: &'a [u8]) -> Option<&'a [u8]> {
    let (head, artifact) = (bytes.get(..HEADER)?, bytes.get(HEADER..)?);
    if &head[..MAGIC.len()] != MAGIC {
        return None;
    }
    let stored = blake3::Hash::from_bytes(head[MAGIC.len()..].try_into().ok()?);
    // `blake3::Hash` compares in constant time.
    (stored == tag(key, path, artifact)).then_some(artifact)
}

fn tag(key: &[u8; 32], path: &Path, artifact: &[u8]) -> blake3::Hash {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&(name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(artifact);
    h.finalize()
}

/// This data directory's cache key: made once (32 random bytes from the
/// OS), never replaced while it exists.
fn key(dir: &Path) -> Option<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    let read = || std::fs::read(&path).ok().and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
    if let Some(k) = read() {
        return Some(k);
    }
    std::fs::create_dir_all(dir).ok()?;
    let mut fresh = [0u8; 32];
    for chunk in fresh.chunks_mut(8) {
        chunk.copy_from_slice(&fastrand::u64(..).to_le_bytes());
    }
    // Mix in the OS's randomness (fastrand is seeded from it once).
    let fresh: [u8; 32] = Sha256::new().chain_update(fresh).chain_update(os_random()).finalize().into();
    let tmp = dir.join(format!(".key-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::write(&tmp, fresh).ok()?;
    // A hard link never replaces an existing key (two first hooks at once
    // agree on the one that got there first).
    let _ = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    read()
}

#[cfg(unix)]
fn os_random() -> [u8; 32] {
    let mut buf = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf
}

/// The system's preferred CSPRNG (what Rust's std uses underneath too).
#[cfg(windows)]
fn os_random() -> [u8; 32] {
    use windows_sys::Win32::Security::Cryptography::{BCRYPT_USE_SYSTEM_PREFERRED_RNG, BCryptGenRandom};
    let mut buf = [0u8; 32];
    // SAFETY: a null algorithm handle is allowed with
    // BCRYPT_USE_SYSTEM_PREFERRED_RNG; the buffer is ours and its length is
    // passed with it. On failure the buffer stays zero and fastrand's bytes
    // (seeded from the OS) remain the key's entropy.
    unsafe {
        BCryptGenRandom(std::ptr::null_mut(), buf.as_mut_ptr(), buf.len() as u32, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
    }
    buf
}

#[cfg(not(any(unix, windows)))]
fn os_random() -> [u8; 32] {
    [0u8; 32]
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

    #[test]
    fn the_key_is_made_once_and_tags_bind_name_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path()).expect("a key is made");
        assert_eq!(key(dir.path()), Some(k), "and kept");
        let (a, b) = (dir.path().join("policy-a.cwasm"), dir.path().join("policy-b.cwasm"));
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(tag(&k, &a, b"artifact").as_bytes());
        file.extend_from_slice(b"artifact");
        assert_eq!(verified(&k, &a, &file), Some(&b"artifact"[..]));
        assert_eq!(verified(&k, &b, &file), None, "copied under another policy's name");
        let mut edited = file.clone();
        *edited.last_mut().unwrap() ^= 1;
        assert_eq!(verified(&k, &a, &edited), None, "edited");
        assert_eq!(verified(&[7; 32], &a, &file), None, "another install's key");
        assert_eq!(verified(&k, &a, &file[..10]), None, "truncated");
    }
}
