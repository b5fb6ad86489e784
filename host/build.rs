//! Builds the default policy (`core-wasm`) for `wasm32-unknown-unknown`,
//! encodes the core module as a component with `wit-component`, and leaves it
//! in `OUT_DIR/policy.wasm` for the host to embed with `include_bytes!`.
//!
//! Why here and why this way (measured, see docs/architecture.md):
//! - `wasm32-unknown-unknown` + `ComponentEncoder` gives a component whose only
//!   imports are our world's interfaces (a `wasm32-wasip2` build imports ~15
//!   WASI interfaces even when it does no I/O).
//! - The nested cargo gets its own `--target-dir`: cargo holds the outer
//!   target dir's lock while build scripts run, so sharing it deadlocks.
//! - Flags meant for the host (coverage, target-cpu, clippy's wrapper) must not
//!   leak into the wasm build, so they are removed from the environment.

use std::env;
use std::path::{Path, PathBuf};

const GUEST_PACKAGE: &str = "stash2plex-policy";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace root").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    for watched in ["core-wasm/src", "core-wasm/Cargo.toml", "wit", "Cargo.lock", "host/guest_build.rs"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=STASH2PLEX_GUEST_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=STASH2PLEX_POLICY_WASM");

    let dest = out_dir.join("policy.wasm");
    // A prebuilt policy component (packaging, or checking the host alone).
    if let Some(prebuilt) = env::var_os("STASH2PLEX_POLICY_WASM") {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        let bytes =
            std::fs::read(&prebuilt).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", prebuilt.display())));
        std::fs::write(&dest, &bytes).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", dest.display())));
        write_digest(&out_dir, &bytes);
        return;
    }

    let guest_target_dir = env::var_os("STASH2PLEX_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("policy-build"));

    let core = build_guest(&root, &guest_target_dir);
    let bytes = std::fs::read(&core).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", core.display())));
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .and_then(|enc| enc.encode())
        .unwrap_or_else(|e| fail(&format!("cannot encode the policy as a component: {e:#}")));
    std::fs::write(&dest, &component).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", dest.display())));
    write_digest(&out_dir, &component);
}

/// `OUT_DIR/policy.sha256`: the component's SHA-256, 32 raw bytes.
fn write_digest(out_dir: &Path, component: &[u8]) {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(component);
    let path = out_dir.join("policy.sha256");
    std::fs::write(&path, digest).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}

include!("guest_build.rs");

fn build_guest(root: &Path, target_dir: &Path) -> PathBuf {
    build_guest_crate(root, target_dir, GUEST_PACKAGE, "stash2plex_policy").unwrap_or_else(|e| fail(&e))
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
