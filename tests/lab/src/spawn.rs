//! Running the stash2plex binary the way Stash does: one process, the JSON
//! on stdin, one JSON object back on stdout.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Plugin {
    pub exe: PathBuf,
    pub policy: Option<PathBuf>,
}

impl Plugin {
    /// `explicit`, or `stash2plex` beside this program. Under `cargo run`
    /// a missing one is built first (same profile), so the README's one
    /// command works on a fresh checkout.
    pub fn locate(explicit: Option<PathBuf>, policy: Option<PathBuf>) -> Result<Plugin, String> {
        if let Some(exe) = explicit {
            return if exe.is_file() {
                Ok(Plugin { exe, policy })
            } else {
                Err(format!("{} does not exist", exe.display()))
            };
        }
        let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let dir = me.parent().ok_or("this program has no folder")?;
        let exe = dir.join(format!("stash2plex{}", std::env::consts::EXE_SUFFIX));
        if !exe.is_file() {
            build_beside(dir)?;
        }
        if exe.is_file() {
            Ok(Plugin { exe, policy })
        } else {
            Err(format!("{} is missing; build it with `cargo build --release -p stash2plex`", exe.display()))
        }
    }

    /// Run one invocation with `stdin`; return the answer object.
    pub fn invoke(&self, stdin: &Value) -> Result<Value, String> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("plugin");
        if let Some(p) = &self.policy {
            cmd.arg("--policy").arg(p);
        }
        let mut child = cmd
            // The lab runs Process Queue itself.
            .env("STASH2PLEX_AUTODRAIN", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.to_string().as_bytes()).map_err(|e| format!("cannot write to the plugin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("the plugin did not finish: {e}"))?;
        serde_json::from_slice(&out.stdout).map_err(|e| format!("the plugin's answer is not JSON ({e})"))
    }
}

/// `cargo build -p stash2plex` for the profile this program was built with
/// (`target/<profile>/`), when cargo is at hand.
fn build_beside(dir: &Path) -> Result<(), String> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("release");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "stash2plex"]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("stash2plex-lab: building the stash2plex binary first");
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("building stash2plex failed ({status})")) }
}
