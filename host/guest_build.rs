// Building a policy guest crate for wasm32-unknown-unknown with a nested
// cargo. Shared (with `include!`) by host/build.rs, which builds the default
// policy, and by the sandbox tests, which build the misbehaving one.
//
// The nested cargo gets its own target dir (cargo holds the outer target
// dir's lock while build scripts run), and flags meant for the host
// (coverage, target-cpu, clippy's wrapper, the jobserver) are removed from
// its environment so they do not leak into the wasm build.

/// Build `package` with the `guest` profile into `target_dir` and return
/// the path of its core module `<artifact>.wasm`.
pub fn build_guest_crate(
    root: &std::path::Path,
    target_dir: &std::path::Path,
    package: &str,
    artifact: &str,
) -> Result<std::path::PathBuf, String> {
    build_guest_crate_with(root, target_dir, package, artifact, &[])
}

#[allow(dead_code)]
/// `build_guest_crate` with cargo features. Builds with other features go
/// to their own target dir (`<target_dir>-<features>`): a wasm artifact's
/// path does not depend on its features, so they would overwrite each
/// other.
pub fn build_guest_crate_with(
    root: &std::path::Path,
    target_dir: &std::path::Path,
    package: &str,
    artifact: &str,
    features: &[&str],
) -> Result<std::path::PathBuf, String> {
    let target_dir = if features.is_empty() {
        target_dir.to_path_buf()
    } else {
        let mut name = target_dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(format!("-{}", features.join("-")));
        target_dir.with_file_name(name)
    };
    let target_dir = target_dir.as_path();
    const TARGET: &str = "wasm32-unknown-unknown";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(&cargo);
    cmd.current_dir(root)
        .args(["build", "--locked", "-p", package, "--target", TARGET, "--profile", "guest"])
        .arg("--target-dir")
        .arg(target_dir);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().map_err(|e| format!("cannot run `{cargo}` to build {package}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building {package} failed ({status}). If the error says the `{TARGET}` target is not \
             installed, run: rustup target add {TARGET}"
        ));
    }
    let path = target_dir.join(TARGET).join("guest").join(format!("{artifact}.wasm"));
    if path.exists() { Ok(path) } else { Err(format!("the build of {package} succeeded but {} is missing", path.display())) }
}
