//! Running this binary the way Stash does (for `demo` and `bench`): one
//! process, the JSON on stdin, one JSON object back on stdout.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

pub fn invoke(exe: &Path, args: &[String], stdin: &Value) -> Result<Value, String> {
    let mut child = Command::new(exe)
        .arg("plugin")
        .args(args)
        // demo and bench run Process Queue themselves.
        .env("STASH2PLEX_AUTODRAIN", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.to_string().as_bytes()).map_err(|e| format!("cannot write to the plugin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("the plugin did not finish: {e}"))?;
    serde_json::from_slice(&out.stdout).map_err(|e| format!("the plugin's answer is not JSON ({e})"))
}
