//! The cross toolchains, from the registries a build machine reaches and
//! nothing downloaded by hand:
//!
//! * rustup: the Rust standard library for each target;
//! * PyPI: `ziglang` (Zig as a C compiler and linker, with musl for every
//!   architecture bundled) and `cargo-zigbuild` (runs cargo with it), in a
//!   venv under the target dir, for both Linux musl targets: SQLite and
//!   ring are C, and Debian has no musl cross compiler for arm64;
//! * Debian: `gcc-mingw-w64-x86-64` for Windows (the linker rustup's
//!   `x86_64-pc-windows-gnu` expects, and the C compiler for SQLite/ring).
//!
//! Each step is skipped when its tool is already there.

use super::Target;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PyPI packages, pinned: a packaging run on another day builds with the
/// same Zig.
const PYPI_TOOLS: &[&str] = &["ziglang==0.17.1", "cargo-zigbuild==0.24.1"];
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";
const MINGW_PACKAGE: &str = "gcc-mingw-w64-x86-64";

pub struct Toolchain {
    /// `<target dir>/package-tools/venv`, when a musl target is built.
    venv: Option<PathBuf>,
}

/// Make sure every tool `targets` need is installed; install what is
/// missing unless `install` is false.
pub fn ensure(targets: &[Target], target_dir: &Path, install: bool) -> Result<Toolchain, String> {
    let mut triples: Vec<&str> = targets.iter().map(|t| t.triple()).collect();
    // host/build.rs builds the policy for wasm32 whatever the host target.
    triples.push("wasm32-unknown-unknown");
    rustup_targets(&triples, install)?;
    let venv = if targets.iter().any(|t| t.uses_zig()) { Some(zig_venv(target_dir, install)?) } else { None };
    if targets.contains(&Target::WindowsX86_64) {
        mingw(install)?;
    }
    Ok(Toolchain { venv })
}

impl Toolchain {
    /// The cargo command that builds the plugin binary for `target`.
    pub fn build_command(&self, target: Target, cargo: &OsString) -> Result<Command, String> {
        let mut cmd = if target.uses_zig() {
            let venv = self.venv.as_ref().ok_or("the Zig tools were not set up")?;
            let bin = venv_bin(venv);
            let mut cmd = Command::new(bin.join(exe("cargo-zigbuild")));
            cmd.arg("zigbuild");
            // cargo-zigbuild runs `python3 -m ziglang` from PATH: the venv's.
            cmd.env("PATH", prepend_path(&bin));
            cmd.env("CARGO", cargo);
            cmd
        } else {
            let mut cmd = Command::new(cargo);
            cmd.arg("build");
            cmd
        };
        cmd.args(["--release", "-p", "stash2plex", "--target", target.triple()]);
        Ok(cmd)
    }
}

fn rustup_targets(triples: &[&str], install: bool) -> Result<(), String> {
    let missing: Vec<&str> = triples.iter().copied().filter(|t| !std_installed(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !install {
        return Err(format!("missing Rust targets: run `rustup target add {}`", missing.join(" ")));
    }
    run(Command::new("rustup").arg("target").arg("add").args(&missing), "rustup target add")
}

/// Is the standard library for `triple` installed? (Its folder holds the
/// `lib/` of std's rlibs.)
fn std_installed(triple: &str) -> bool {
    let out = Command::new("rustc").args(["--print", "target-libdir", "--target", triple]).output();
    match out {
        Ok(o) if o.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
        }
        _ => false,
    }
}

fn zig_venv(target_dir: &Path, install: bool) -> Result<PathBuf, String> {
    let venv = target_dir.join("package-tools").join("venv");
    let stamp = venv.join("stash2plex-tools.txt");
    let wanted = PYPI_TOOLS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)
        && venv_bin(&venv).join(exe("cargo-zigbuild")).is_file()
    {
        return Ok(venv);
    }
    if !install {
        return Err(format!(
            "the Zig tools are missing: run `python3 -m venv {v} && {v}/bin/pip install {}`",
            PYPI_TOOLS.join(" "),
            v = venv.display()
        ));
    }
    eprintln!("stash2plex-lab package: installing {} from PyPI into {}", PYPI_TOOLS.join(", "), venv.display());
    let python = if which("python3").is_some() { "python3" } else { "python" };
    run(
        Command::new(python).args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    )?;
    run(
        Command::new(venv_bin(&venv).join(exe("pip")))
            .args(["install", "--disable-pip-version-check", "--quiet"])
            .args(PYPI_TOOLS),
        "pip install",
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(venv)
}

fn mingw(install: bool) -> Result<(), String> {
    if which(MINGW_GCC).is_some() {
        return Ok(());
    }
    let hint = format!(
        "the Windows cross compiler is missing: install Debian's {MINGW_PACKAGE} (apt-get install {MINGW_PACKAGE})"
    );
    if !install || which("apt-get").is_none() {
        return Err(hint);
    }
    eprintln!("stash2plex-lab package: installing {MINGW_PACKAGE} with apt-get");
    let apt_install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", MINGW_PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    // A machine that never ran `apt-get update` has no package lists yet.
    if !apt_install() {
        run(Command::new("apt-get").args(["update", "-q"]), "apt-get update")?;
        if !apt_install() {
            return Err(format!("{hint}; apt-get failed (are you root?)"));
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: cannot start it: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{what} failed ({status})")) }
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(exe(program))).find(|p| p.is_file())
}

fn venv_bin(venv: &Path) -> PathBuf {
    venv.join(if cfg!(windows) { "Scripts" } else { "bin" })
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

fn prepend_path(dir: &Path) -> OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&rest));
    std::env::join_paths(dirs).unwrap_or(rest)
}
